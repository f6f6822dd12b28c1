//! The job commands as an operator runs them (issue 5): the nightly billing run, the
//! daemon and its SIGTERM, job files, metrics, and the exit code of each case.

use serde_json::Value;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

fn command(directory: &Path, args: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_tally"));
    command
        .args(args)
        .current_dir(directory)
        .env_remove("TALLY_DATABASE_URL")
        .env_remove("TALLY_CONFIG")
        .env("RUST_LOG", "warn");
    command
}

fn tally(directory: &Path, args: &[&str]) -> Output {
    command(directory, args).output().expect("tally runs")
}

fn json(output: &Output) -> Value {
    let text = String::from_utf8_lossy(&output.stdout);
    serde_json::from_str(text.trim()).unwrap_or_else(|error| panic!("{error}: {text}"))
}

#[test]
fn billing_on_the_demo_reports_and_a_rerun_changes_nothing() {
    let directory = tempfile::tempdir().expect("temp dir");
    let metrics = directory.path().join("tally.prom");
    let metrics_arg = metrics.to_str().expect("utf-8 path");

    let first = tally(
        directory.path(),
        &["run", "billing", "--demo", "--json", "--metrics-file", metrics_arg],
    );
    assert_eq!(
        first.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&first.stderr)
    );
    let report = json(&first);
    assert_eq!(report["status"], "succeeded");
    assert_eq!(report["accounts_scanned"], 1000);
    assert!(report["invoices_changed"].as_u64() > Some(100));
    assert!(report["deliveries_acknowledged"].as_u64() > Some(0));
    assert_eq!(report["deliveries_failed"], 0);
    assert!(report["recurring_by_reseller"]
        .as_array()
        .is_some_and(|totals| !totals.is_empty()));
    let text = std::fs::read_to_string(&metrics).expect("metrics written");
    assert!(text.contains("tally_run_accounts{job=\"billing\"} 1000"), "{text}");

    let again = tally(directory.path(), &["run", "billing", "--demo", "--json"]);
    assert_eq!(again.status.code(), Some(0));
    let report = json(&again);
    assert_eq!(
        (report["accounts_changed"].as_u64(), report["invoices_changed"].as_u64()),
        (Some(0), Some(0))
    );
    assert_eq!(report["deliveries"], 0, "nothing is sent twice");
}

#[test]
fn undeliverable_invoices_exit_75_and_are_left_to_retry() {
    let directory = tempfile::tempdir().expect("temp dir");
    assert!(tally(directory.path(), &["demo", "--accounts", "80"]).status.success());
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("address");
    let output = command(directory.path(), &["run", "billing", "--json"])
        .env(
            "TALLY_BOOKKEEPERS__HTTP__HTTP_URL",
            format!("http://{closed}/bookkeeper"),
        )
        .output()
        .expect("tally runs");
    assert_eq!(
        output.status.code(),
        Some(75),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let report = json(&output);
    assert_eq!(report["status"], "temporary-failure");
    assert!(report["deliveries_failed"].as_u64() > Some(0));
}

#[test]
fn a_bad_setting_exits_78() {
    let directory = tempfile::tempdir().expect("temp dir");
    let output = command(directory.path(), &["run", "billing"])
        .env("TALLY_SYNC__BATCH_SIZE", "0")
        .output()
        .expect("tally runs");
    assert_eq!(output.status.code(), Some(78));
    assert!(String::from_utf8_lossy(&output.stderr).contains("batch_size"));
}

#[test]
fn a_bad_job_file_is_refused_at_start_with_its_path_and_line() {
    let directory = tempfile::tempdir().expect("temp dir");
    let jobs = directory.path().join("jobs");
    std::fs::create_dir(&jobs).expect("jobs dir");
    std::fs::write(
        jobs.join("nightly.toml"),
        "name = \"nightly\"\njob = \"billing\"\nschedule = \"61 2 * * *\"\n",
    )
    .expect("job file");

    let output = tally(
        directory.path(),
        &["schedule", "--jobs-dir", jobs.to_str().expect("utf-8")],
    );

    assert_eq!(output.status.code(), Some(78));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("nightly.toml:3"), "{stderr}");
}

#[test]
fn sigterm_stops_the_daemon_with_exit_0_and_the_next_run_completes_the_work() {
    let directory = tempfile::tempdir().expect("temp dir");
    assert!(tally(directory.path(), &["demo", "--accounts", "300"]).status.success());
    let jobs = directory.path().join("jobs");
    std::fs::create_dir(&jobs).expect("jobs dir");
    std::fs::write(
        jobs.join("billing.toml"),
        "name = \"billing\"\njob = \"billing\"\nschedule = \"* * * * * *\"\n",
    )
    .expect("job file");

    let mut daemon = command(
        directory.path(),
        &["schedule", "--jobs-dir", jobs.to_str().expect("utf-8")],
    )
    .env("TALLY_BOOKKEEPERS__HTTP__HTTP_URL", "http://127.0.0.1:9/unused")
    .stdout(Stdio::null())
    .stderr(Stdio::null())
    .spawn()
    .expect("the daemon starts");
    std::thread::sleep(Duration::from_millis(1_500));
    let killed = Command::new("kill")
        .args(["-TERM", &daemon.id().to_string()])
        .status()
        .expect("kill runs");
    assert!(killed.success());
    let stopping = Instant::now();
    let status = loop {
        if let Some(status) = daemon.try_wait().expect("wait") {
            break status;
        }
        assert!(
            stopping.elapsed() < Duration::from_secs(40),
            "the daemon stops within its grace period"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(status.code(), Some(0));

    // Whatever the daemon finished or left, one more run brings the database to the
    // state of a clean run: reconciled, every account repriced.
    let next = command(directory.path(), &["run", "billing", "--json"])
        .env("TALLY_BOOKKEEPERS__HTTP__HTTP_URL", "http://127.0.0.1:9/unused")
        .output()
        .expect("tally runs");
    let report = json(&next);
    assert_eq!(
        report["accounts_changed"], 0,
        "the reconcile of the interrupted run had committed"
    );
    let sync = command(directory.path(), &["run", "sync", "--json"])
        .output()
        .expect("tally runs");
    assert_eq!(json(&sync)["accounts_scanned"], 0, "no account is left to reprice");
}

#[test]
fn one_shot_runs_are_listed_and_a_job_running_elsewhere_exits_75() {
    let directory = tempfile::tempdir().expect("temp dir");
    assert!(tally(directory.path(), &["demo", "--accounts", "40"]).status.success());
    assert_eq!(
        tally(directory.path(), &["run", "reconcile", "--json"]).status.code(),
        Some(0)
    );

    let listed = tally(directory.path(), &["runs", "--json"]);
    let first: Value = serde_json::from_str(String::from_utf8_lossy(&listed.stdout).lines().next().expect("one run"))
        .expect("a JSON line");
    assert_eq!(
        (first["job"].as_str(), first["status"].as_str()),
        (Some("reconcile"), Some("succeeded"))
    );
    assert_eq!(first["accounts"], 40);

    // Another host holds a live billing run.
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    runtime.block_on(async {
        let url = tally::config::DatabaseUrl::new(format!("sqlite://{}", directory.path().join("tally.db").display()));
        let store = tally::store::Store::open(&url).await.expect("opens");
        store
            .execute_script(
                "INSERT INTO runs (job, scheduled_for, started_at, status, host, instance_id, lease_until) \
                 VALUES ('billing', 1, 1, 'running', 'elsewhere', 'elsewhere:1:1', 99999999999999);",
            )
            .await
            .expect("insert");
        store.close().await;
    });
    let refused = tally(directory.path(), &["run", "billing"]);
    assert_eq!(refused.status.code(), Some(75));
    assert!(String::from_utf8_lossy(&refused.stderr).contains("already running on elsewhere"));
}

/// The runs recorded for `job`, as `tally runs --json` lists them (newest first).
fn recorded_runs(directory: &Path, database: &str, job: &str) -> Vec<Value> {
    let listed = command(directory, &["runs", "--json", "--limit", "20"])
        .env("TALLY_DATABASE_URL", database)
        .output()
        .expect("tally runs");
    String::from_utf8_lossy(&listed.stdout)
        .lines()
        .map(|line| serde_json::from_str::<Value>(line).expect("a JSON line"))
        .filter(|run| run["job"] == job)
        .collect()
}

/// Issue 11: `kill -9` of `tally run billing` left its run `running`, and every later
/// `tally run billing` exited 75 for good unless a scheduler took the run over. With
/// the job files out of the picture (an empty jobs directory), the next one-shot run
/// waits out nothing but the dead run's lease: it exits 0, a log line names the dead
/// holder, the dead run is recorded interrupted, and a further run finds nothing left.
fn killed_billing_is_taken_over_by_the_next_one_shot_run(database: &str) {
    let directory = tempfile::tempdir().expect("temp dir");
    let jobs = directory.path().join("jobs");
    std::fs::create_dir(&jobs).expect("an empty jobs dir");
    let billing = |args: &[&str]| {
        let mut billing = command(directory.path(), args);
        billing
            .env("TALLY_DATABASE_URL", database)
            .env("TALLY_SCHEDULER__JOBS_DIR", &jobs)
            .env("TALLY_SCHEDULER__LEASE_SECONDS", "2")
            .env("TALLY_SCHEDULER__HEARTBEAT_SECONDS", "1");
        billing
    };
    let demo = billing(&["demo", "--accounts", "600", "--seed", "7"])
        .output()
        .expect("tally demo");
    assert!(demo.status.success(), "{}", String::from_utf8_lossy(&demo.stderr));

    let mut victim = billing(&["run", "billing", "--demo", "--json"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("billing starts");
    let waiting = Instant::now();
    while !recorded_runs(directory.path(), database, "billing")
        .iter()
        .any(|run| run["status"] == "running")
    {
        assert!(
            victim.try_wait().expect("wait").is_none(),
            "billing ended before it could be killed mid-run"
        );
        assert!(waiting.elapsed() < Duration::from_secs(60), "billing never started");
        std::thread::sleep(Duration::from_millis(20));
    }
    victim.kill().expect("SIGKILL");
    victim.wait().expect("reaped");
    let killed = recorded_runs(directory.path(), database, "billing");
    assert_eq!(
        (killed.len(), killed[0]["status"].as_str()),
        (1, Some("running")),
        "SIGKILL leaves the run marked running: {killed:?}"
    );
    // Past the dead run's lease: two seconds after its last heartbeat at most.
    std::thread::sleep(Duration::from_millis(3_200));

    let rerun = billing(&["run", "billing", "--demo", "--json"])
        .output()
        .expect("tally runs");
    let stderr = String::from_utf8_lossy(&rerun.stderr);
    assert_eq!(rerun.status.code(), Some(0), "{stderr}");
    assert_eq!(json(&rerun)["status"], "succeeded");
    let dead_holder = format!(":{}:", victim.id());
    assert!(
        stderr
            .lines()
            .any(|line| line.contains("dead holder") && line.contains(&dead_holder)),
        "a log line names the dead holder {dead_holder}: {stderr}"
    );

    let runs = recorded_runs(directory.path(), database, "billing");
    let statuses: Vec<&str> = runs.iter().filter_map(|run| run["status"].as_str()).collect();
    assert_eq!(statuses, vec!["succeeded", "interrupted"], "{runs:?}");
    let message = runs[1]["message"].as_str().unwrap_or_default();
    assert!(message.contains(&dead_holder), "{message}");

    // Converged: another run finds nothing to recount or reprice.
    let again = billing(&["run", "billing", "--demo", "--json"])
        .output()
        .expect("tally runs");
    assert_eq!(again.status.code(), Some(0));
    let report = json(&again);
    assert_eq!(
        (report["accounts_changed"].as_u64(), report["invoices_changed"].as_u64()),
        (Some(0), Some(0)),
        "{report}"
    );
}

#[test]
fn killed_billing_is_taken_over_by_the_next_one_shot_run_on_sqlite() {
    let directory = tempfile::tempdir().expect("temp dir");
    let database = format!("sqlite://{}", directory.path().join("tally.db").display());
    killed_billing_is_taken_over_by_the_next_one_shot_run(&database);
}

#[test]
fn killed_billing_is_taken_over_by_the_next_one_shot_run_on_postgres() {
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let Some(database) = runtime.block_on(crate::helpers::postgres_store()) else {
        return;
    };
    let url = database.postgres_url().expect("a PostgreSQL store");
    killed_billing_is_taken_over_by_the_next_one_shot_run(&url);
    drop(database);
}

/// Issue 11: an unwritable `--metrics-file` exited 1 and hid the report, yet the run
/// was recorded as succeeded. It is a warning now, in the report and the log; the
/// run's status and exit code stand.
#[test]
fn an_unwritable_metrics_file_is_a_warning_and_the_run_stands() {
    let directory = tempfile::tempdir().expect("temp dir");
    assert!(tally(directory.path(), &["demo", "--accounts", "40"]).status.success());
    let nowhere = directory.path().join("no-such-dir").join("tally.prom");
    let nowhere = nowhere.to_str().expect("utf-8 path");

    let json_run = tally(
        directory.path(),
        &["run", "reconcile", "--json", "--metrics-file", nowhere],
    );
    let stderr = String::from_utf8_lossy(&json_run.stderr);
    assert_eq!(json_run.status.code(), Some(0), "{stderr}");
    let report = json(&json_run);
    assert_eq!(report["accounts_scanned"], 40);
    let warnings = report["warnings"].as_array().cloned().unwrap_or_default();
    assert_eq!(warnings.len(), 1, "{report}");
    assert!(warnings[0]
        .as_str()
        .is_some_and(|warning| warning.contains("no-such-dir")));
    assert!(stderr.contains("metrics were not written"), "{stderr}");

    let text_run = tally(
        directory.path(),
        &["run", "billing", "--demo", "--metrics-file", nowhere],
    );
    assert_eq!(text_run.status.code(), Some(0));
    let stdout = String::from_utf8_lossy(&text_run.stdout);
    assert!(stdout.starts_with("billing succeeded"), "{stdout}");
    assert!(
        stdout
            .lines()
            .any(|line| line.starts_with("warning: ") && line.contains("no-such-dir")),
        "{stdout}"
    );

    let listed = tally(directory.path(), &["runs", "--json"]);
    let statuses: Vec<String> = String::from_utf8_lossy(&listed.stdout)
        .lines()
        .map(|line| serde_json::from_str::<Value>(line).expect("a JSON line")["status"].to_string())
        .collect();
    assert_eq!(statuses, vec!["\"succeeded\"", "\"succeeded\""]);
}
