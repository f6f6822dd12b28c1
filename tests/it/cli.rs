//! The `tally` binary end to end on a SQLite file: commands, output and exit codes.

use std::path::Path;
use std::process::{Command, Output};

fn tally(directory: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_tally"))
        .args(args)
        .current_dir(directory)
        .env_remove("TALLY_DATABASE_URL")
        .env_remove("TALLY_CONFIG")
        .output()
        .expect("tally runs")
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

#[test]
fn demo_then_reconcile_then_rerun_reports_no_change_as_json() {
    let directory = tempfile::tempdir().expect("temp dir");
    let demo = tally(directory.path(), &["demo", "--accounts", "60", "--seed", "5"]);
    assert!(demo.status.success(), "{}", String::from_utf8_lossy(&demo.stderr));
    assert!(
        directory.path().join("tally.db").exists(),
        "the default database is ./tally.db"
    );

    let first = tally(directory.path(), &["run", "reconcile", "--json"]);
    assert_eq!(first.status.code(), Some(0));
    let summary: serde_json::Value = serde_json::from_str(stdout(&first).trim()).expect("one JSON object");
    assert_eq!(summary["accounts_scanned"], 60);
    assert!(summary["items_changed"].as_u64() > Some(0));
    assert!(summary["duration_ms"].is_u64());

    let again = tally(directory.path(), &["run", "reconcile", "--json"]);
    let summary: serde_json::Value = serde_json::from_str(stdout(&again).trim()).expect("one JSON object");
    assert_eq!(summary["accounts_changed"], 0);
    assert_eq!(summary["items_changed"], 0);
}

#[test]
fn a_broken_tree_exits_65_and_names_the_account() {
    let directory = tempfile::tempdir().expect("temp dir");
    assert!(tally(directory.path(), &["demo", "--accounts", "5"]).status.success());
    // Re-parent one account onto an id that does not exist, through a raw connection.
    let script = directory.path().join("break.sql");
    std::fs::write(
        &script,
        "UPDATE accounts SET parent_id = 'ghost' WHERE name = 'Reseller 2';",
    )
    .expect("write");
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    runtime.block_on(async {
        let url = tally::config::DatabaseUrl::new(format!("sqlite://{}", directory.path().join("tally.db").display()));
        let store = tally::store::Store::open(&url).await.expect("opens");
        store
            .execute_script(&std::fs::read_to_string(&script).expect("read"))
            .await
            .expect("breaks the tree");
        store.close().await;
    });
    let run = tally(directory.path(), &["run", "reconcile"]);
    assert_eq!(run.status.code(), Some(65));
    let errors = String::from_utf8_lossy(&run.stderr);
    assert!(errors.contains("does not exist"), "{errors}");
    assert!(stdout(&run).contains("4 accounts scanned"), "{}", stdout(&run));
}

#[test]
fn an_unsupported_database_url_exits_78() {
    let directory = tempfile::tempdir().expect("temp dir");
    let output = Command::new(env!("CARGO_BIN_EXE_tally"))
        .args(["run", "reconcile"])
        .current_dir(directory.path())
        .env("TALLY_DATABASE_URL", "mysql://nope")
        .output()
        .expect("tally runs");
    assert_eq!(output.status.code(), Some(78));
}

#[test]
fn a_dry_run_prints_changes_and_the_summary_says_nothing_was_written() {
    let directory = tempfile::tempdir().expect("temp dir");
    assert!(tally(directory.path(), &["demo", "--accounts", "3"]).status.success());
    let dry = tally(directory.path(), &["run", "reconcile", "--dry-run"]);
    assert_eq!(dry.status.code(), Some(0));
    let text = stdout(&dry);
    assert!(text.contains(" account accounts.account 0 -> 1 (+1)"), "{text}");
    assert!(
        text.lines()
            .last()
            .is_some_and(|line| line.contains("dry run, nothing written")),
        "{text}"
    );
    let real = tally(directory.path(), &["run", "reconcile", "--dry-run", "--json"]);
    assert!(stdout(&real).contains("\"items_changed\""));
}
