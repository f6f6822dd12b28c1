//! The units in `systemd/` verify with `systemd-analyze verify` (where it exists), pass
//! `systemd-analyze security` under a threshold, run as the one `tally` user and use
//! the documented exit codes; the crontab line parses; and, as root, the recipes of
//! `systemd/README.md` work as written (`systemd/check-recipes.sh`).

use std::path::{Path, PathBuf};
use std::process::Command;

use tally::exit::ExitCode;

const UNITS: [&str; 3] = ["tally.service", "tally-billing.service", "tally-billing.timer"];

fn systemd_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("systemd")
}

fn read_unit(name: &str) -> String {
    std::fs::read_to_string(systemd_dir().join(name))
        .unwrap_or_else(|error| panic!("cannot read systemd/{name}: {error}"))
}

fn which(program: &str) -> Option<PathBuf> {
    let output = Command::new("which").arg(program).output().ok()?;
    if !output.status.success() {
        return None;
    }
    let path = String::from_utf8(output.stdout).ok()?.trim().to_owned();
    (!path.is_empty()).then(|| PathBuf::from(path))
}

fn systemd_analyze() -> Option<PathBuf> {
    which("systemd-analyze")
}

/// Copies of the units in a temp dir, with ExecStart pointing at an existing binary
/// (`verify` and `security` insist that it exists).
fn units_with_an_existing_binary() -> (tempfile::TempDir, Vec<PathBuf>) {
    let this_binary = std::env::current_exe().expect("the test binary has a path");
    let dir = tempfile::tempdir().expect("temp dir");
    let mut paths = Vec::new();
    for name in UNITS {
        let text = read_unit(name).replace("/usr/local/bin/tally", &this_binary.to_string_lossy());
        let path = dir.path().join(name);
        std::fs::write(&path, text).expect("temp dir is writable");
        paths.push(path);
    }
    (dir, paths)
}

#[test]
fn the_units_verify_with_systemd_analyze() {
    let Some(analyze) = systemd_analyze() else {
        eprintln!("SKIPPED: systemd-analyze not found; the systemd units were NOT verified");
        return;
    };
    let (_dir, paths) = units_with_an_existing_binary();

    let output = Command::new(analyze)
        .arg("verify")
        .args(&paths)
        .output()
        .expect("systemd-analyze runs");

    let stderr = String::from_utf8_lossy(&output.stderr);
    // systemd-analyze only warns about unknown keys and bad values ("..., ignoring"),
    // so any line about our units is a failure too.
    let about_our_units: Vec<&str> = stderr
        .lines()
        .filter(|line| UNITS.iter().any(|unit| line.contains(unit)))
        .collect();
    assert!(
        output.status.success() && about_our_units.is_empty(),
        "systemd-analyze verify failed ({}):\n{stderr}",
        output.status
    );
}

/// The values of every `key=` line of a unit, space-separated lists flattened.
fn values(unit: &str, key: &str) -> Vec<String> {
    unit.lines()
        .filter_map(|line| line.strip_prefix(&format!("{key}=")))
        .flat_map(|value| value.split_whitespace().map(str::to_owned))
        .collect()
}

/// The highest overall exposure `systemd-analyze security --offline=yes` may give a
/// service (0 is best, 10 worst). Measured with systemd 252 (Debian 12): 1.4 for both
/// units, with `User=tally` as with the former `DynamicUser=yes`.
const EXPOSURE_THRESHOLD: f64 = 2.0;

#[test]
fn the_services_pass_systemd_analyze_security_under_the_threshold() {
    let Some(analyze) = systemd_analyze() else {
        eprintln!("SKIPPED: systemd-analyze not found; the units' security was NOT checked");
        return;
    };
    let (_dir, paths) = units_with_an_existing_binary();
    for path in paths
        .iter()
        .filter(|path| path.extension().is_some_and(|ext| ext == "service"))
    {
        let output = Command::new(&analyze)
            .args(["security", "--offline=yes"])
            .arg(format!("--threshold={}", (EXPOSURE_THRESHOLD * 10.0) as u32))
            .arg(path)
            .output()
            .expect("systemd-analyze runs");
        let stdout = String::from_utf8_lossy(&output.stdout);
        let exposure: f64 = stdout
            .lines()
            .find_map(|line| line.split("Overall exposure level for ").nth(1))
            .and_then(|rest| rest.split(": ").nth(1))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|number| number.parse().ok())
            .unwrap_or_else(|| {
                panic!(
                    "no overall exposure in the output of {}:\n{stdout}\n{}",
                    path.display(),
                    String::from_utf8_lossy(&output.stderr)
                )
            });
        eprintln!("{}: overall exposure {exposure}", path.display());
        assert!(
            exposure <= EXPOSURE_THRESHOLD && output.status.success(),
            "{}: exposure {exposure} over {EXPOSURE_THRESHOLD} ({}):\n{stdout}",
            path.display(),
            output.status
        );
    }
}

#[test]
fn both_services_run_as_the_one_tally_user_over_one_state_directory() {
    for name in ["tally.service", "tally-billing.service"] {
        let unit = read_unit(name);
        assert_eq!(values(&unit, "User"), vec!["tally"], "{name}");
        assert_eq!(values(&unit, "Group"), vec!["tally"], "{name}");
        assert!(
            values(&unit, "DynamicUser").is_empty(),
            "{name}: DynamicUser= would give each unit its own user"
        );
        assert_eq!(values(&unit, "StateDirectory"), vec!["tally"], "{name}");
    }
    let sysusers = std::fs::read_to_string(systemd_dir().join("tally.sysusers.conf")).expect("sysusers snippet");
    let user_line: Vec<&str> = sysusers
        .lines()
        .filter(|line| !line.trim_start().starts_with('#') && !line.trim().is_empty())
        .collect();
    assert_eq!(user_line.len(), 1, "{sysusers}");
    assert_eq!(
        user_line[0].split_whitespace().take(2).collect::<Vec<_>>(),
        ["u", "tally"]
    );
}

#[test]
fn the_units_never_restart_on_bad_configuration_usage_or_data_errors() {
    // The codes that need a person; 75 (temporary) and 1 (anything else) restart.
    let expected: Vec<String> = [ExitCode::Usage, ExitCode::DataErrors, ExitCode::BadConfiguration]
        .iter()
        .map(|code| code.code().to_string())
        .collect();
    for name in ["tally.service", "tally-billing.service"] {
        let unit = read_unit(name);
        assert_eq!(values(&unit, "RestartPreventExitStatus"), expected, "{name}");
        assert_eq!(values(&unit, "Restart"), vec!["on-failure"], "{name}");
        assert_eq!(
            values(&unit, "Environment")
                .iter()
                .filter(|value| value.starts_with("TALLY_DATABASE_URL="))
                .collect::<Vec<_>>(),
            vec!["TALLY_DATABASE_URL=sqlite:///var/lib/tally/tally.db"],
            "{name}"
        );
        assert_eq!(values(&unit, "StateDirectory"), vec!["tally"], "{name}");
        assert_eq!(values(&unit, "ProtectSystem"), vec!["strict"], "{name}");
    }
}

#[test]
fn the_daemon_is_a_notify_service_with_a_watchdog_and_billing_a_persistent_timer() {
    let daemon = read_unit("tally.service");
    assert_eq!(values(&daemon, "Type"), vec!["notify"]);
    assert_eq!(values(&daemon, "WatchdogSec"), vec!["60s"]);
    assert_eq!(values(&daemon, "ExecStart")[..2], ["/usr/local/bin/tally", "schedule"]);
    let billing = read_unit("tally-billing.service");
    assert_eq!(values(&billing, "Type"), vec!["oneshot"]);
    assert_eq!(
        values(&billing, "ExecStart"),
        vec!["/usr/local/bin/tally", "run", "billing"]
    );
    let timer = read_unit("tally-billing.timer");
    assert_eq!(values(&timer, "Persistent"), vec!["true"]);
    assert_eq!(values(&timer, "RandomizedDelaySec"), vec!["15min"]);
    assert_eq!(values(&timer, "Unit"), vec!["tally-billing.service"]);
}

/// The crontab line of `systemd/tally.cron`: its time fields, its user, its lock.
#[test]
fn the_crontab_line_runs_billing_as_tally_under_a_lock_at_0230_system_time() {
    use tally::scheduler::schedule::{next_fire, Schedule};
    let crontab = std::fs::read_to_string(systemd_dir().join("tally.cron")).expect("tally.cron is shipped");
    let lines: Vec<&str> = crontab
        .lines()
        .filter(|line| !line.trim_start().starts_with('#') && !line.trim().is_empty())
        .collect();
    let (variables, jobs): (Vec<&str>, Vec<&str>) = lines.iter().partition(|line| {
        line.split_once('=')
            .is_some_and(|(name, _)| name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'))
    });
    // Debian's cron ignores both; a recipe relying on them runs at another hour.
    assert!(
        variables
            .iter()
            .all(|line| !line.starts_with("CRON_TZ=") && !line.starts_with("TZ=")),
        "{variables:?}"
    );
    assert!(variables.contains(&"MAILTO=root"), "{variables:?}");
    assert_eq!(jobs.len(), 1, "{jobs:?}");
    let fields: Vec<&str> = jobs[0].splitn(7, ' ').collect();
    let schedule = Schedule::parse(&fields[..5].join(" ")).expect("the five time fields parse");
    let after = chrono::DateTime::parse_from_rfc3339("2026-11-27T12:00:00Z")
        .expect("RFC 3339")
        .with_timezone(&chrono::Utc);
    let next = next_fire(&schedule, chrono_tz::Tz::UTC, after).expect("fires");
    assert_eq!(next.to_rfc3339(), "2026-11-28T02:30:00+00:00");
    assert_eq!(fields[5], "tally", "the user field");
    let command = fields[6];
    assert!(
        command.starts_with("flock -n -E 75 /run/lock/tally-billing.lock /usr/local/bin/tally run billing "),
        "{command}"
    );
    assert!(!command.contains('%'), "cron turns % into a newline: {command}");
    assert!(
        command.contains(">>/var/log/tally/billing.log 2>&1 || echo "),
        "{command}"
    );
    let readme = std::fs::read_to_string(systemd_dir().join("README.md")).expect("systemd/README.md");
    for line in &lines {
        assert!(
            readme.contains(&format!("\n{line}\n")),
            "systemd/README.md lacks the line {line}"
        );
    }
}

/// As root with systemd's tools: the user, the directories, the metrics file and the
/// crontab line work as `systemd/README.md` says (`systemd/check-recipes.sh`).
#[test]
fn the_readme_recipes_work_as_written() {
    let is_root = Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|output| String::from_utf8_lossy(&output.stdout).trim() == "0");
    let tools = ["systemd-sysusers", "systemd-tmpfiles", "setpriv", "flock"];
    let missing: Vec<&str> = tools.into_iter().filter(|tool| which(tool).is_none()).collect();
    if !is_root || !missing.is_empty() {
        eprintln!("SKIPPED: systemd/check-recipes.sh needs root and {tools:?} (root: {is_root}, missing: {missing:?}); the recipes were NOT checked");
        return;
    }
    let output = Command::new("sh")
        .arg(systemd_dir().join("check-recipes.sh"))
        .arg(env!("CARGO_BIN_EXE_tally"))
        .output()
        .expect("sh runs");
    assert!(
        output.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// The units run with `UMask=0077`; the node exporter reads the file as another user.
#[test]
fn the_metrics_file_is_readable_by_others_under_a_private_umask() {
    let dir = tempfile::tempdir().expect("temp dir");
    let metrics = dir.path().join("tally_reconcile.prom");
    let under_umask = |args: &[&str]| {
        let mut shell = Command::new("sh");
        shell.args(["-c", "umask 0077 && exec \"$@\"", "sh", env!("CARGO_BIN_EXE_tally")]);
        crate::helpers::on_sqlite_in(&mut shell, dir.path())
            .args(args)
            .output()
            .expect("tally runs")
    };
    assert!(under_umask(&["migrate"]).status.success());
    let run = under_umask(&["run", "reconcile", "--metrics-file", metrics.to_str().expect("utf-8")]);
    assert!(run.status.success(), "{}", String::from_utf8_lossy(&run.stderr));
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&metrics)
        .expect("metrics written")
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o644, "{mode:o}");
}
