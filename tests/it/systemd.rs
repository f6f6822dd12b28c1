//! The units in `systemd/` verify with `systemd-analyze verify` (where it exists) and
//! use the documented exit codes.

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

fn systemd_analyze() -> Option<PathBuf> {
    let output = Command::new("which").arg("systemd-analyze").output().ok()?;
    if !output.status.success() {
        return None;
    }
    let path = String::from_utf8(output.stdout).ok()?.trim().to_owned();
    (!path.is_empty()).then(|| PathBuf::from(path))
}

#[test]
fn the_units_verify_with_systemd_analyze() {
    let Some(analyze) = systemd_analyze() else {
        eprintln!("SKIPPED: systemd-analyze not found; the systemd units were NOT verified");
        return;
    };
    // `verify` insists that ExecStart names an existing executable, so the copies
    // point at this test binary instead of /usr/local/bin/tally.
    let this_binary = std::env::current_exe().expect("the test binary has a path");
    let dir = tempfile::tempdir().expect("temp dir");
    let mut paths = Vec::new();
    for name in UNITS {
        let text = read_unit(name).replace("/usr/local/bin/tally", &this_binary.to_string_lossy());
        let path = dir.path().join(name);
        std::fs::write(&path, text).expect("temp dir is writable");
        paths.push(path);
    }

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

#[test]
fn the_units_never_restart_on_bad_configuration_or_data_errors() {
    let expected = vec![
        ExitCode::DataErrors.code().to_string(),
        ExitCode::BadConfiguration.code().to_string(),
    ];
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
