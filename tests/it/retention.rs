//! Retention (issue 14): `tally run prune` deletes finished records older than the
//! `[retention]` days, a batch at a time, and never what is still needed: running
//! runs and the newest run of each job, deliveries not acknowledged, pending audit
//! rows and those a waiting delivery carries, invoice snapshots. On both backends.

use crate::helpers::on_both_backends;
use std::process::Command;
use tally::domain::retention::{Prunable, Retention};
use tally::domain::summary::GregorianSeconds;
use tally::jobs::prune::{run_once, PruneOptions, PruneReport};
use tally::store::{PrunedRows, Store};
use tokio_util::sync::CancellationToken;

const DAY: i64 = 86_400;
const NOW: i64 = 63_900_000_000;
const OLD: i64 = NOW - 100 * DAY;
const NEW: i64 = NOW - DAY;

/// Rows old and new of every prunable kind, and what must survive them.
fn fixture() -> String {
    let run = |job: &str, scheduled: i64, status: &str, ended: Option<i64>| {
        let ended = ended.map_or("NULL".to_owned(), |ended| ended.to_string());
        format!(
            "INSERT INTO runs (job, kind, scheduled_for, started_at, ended_at, status, host, instance_id, lease_until) \
             VALUES ('{job}', '{job}', {scheduled}, {scheduled}, {ended}, '{status}', 'h', 'h:1:1', {scheduled});"
        )
    };
    let delivery = |id: &str, status: &str, bookkeeper: &str, updated: i64| {
        format!(
            "INSERT INTO deliveries (id, account_id, bookkeeper_type, bookkeeper_vendor_id, bookkeeper_id, \
             idempotency_key, body, acknowledged_invoice, status, next_attempt_at, created_at, updated_at) \
             VALUES ('{id}', 'acct', 'http', 'vendor', '{bookkeeper}', 'key-{id}', '{{}}', '{{}}', '{status}', \
             {updated}, {updated}, {updated});"
        )
    };
    let audit = |id: &str, status: &str, delivery: Option<&str>, created: i64| {
        let delivery = delivery.map_or("NULL".to_owned(), |delivery| format!("'{delivery}'"));
        format!(
            "INSERT INTO audit_logs (id, account_id, created_at, modified_at, status, bookkeeper_type, \
             bookkeeper_vendor_id, bookkeeper_id, invoice, audit, today_units, recurring_units, delivery_id) \
             VALUES ('{id}', 'acct', {created}, {created}, '{status}', 'http', 'vendor', 'b', '{{}}', '{{}}', 0, 0, \
             {delivery});"
        )
    };
    let record = |id: &str, created: i64, entries: usize| {
        let entry = r#"{"bucket":"account","category":"users","source":"user","quantity":1,"billable":1}"#;
        format!(
            "INSERT INTO quantity_change_records (id, account_id, run_id, created_at, entries) \
             VALUES ('{id}', 'acct', 'run-{id}', {created}, '[{}]');",
            vec![entry; entries].join(",")
        )
    };
    [
        // sync: two old finished runs go; the recent one stays.
        run("sync", OLD, "succeeded", Some(OLD)),
        run("sync", OLD + 60, "failed", Some(OLD + 60)),
        run("sync", NEW, "succeeded", Some(NEW)),
        // topup: its only run is old, but the newest of its job: the scheduler reads
        // the job's last scheduled time from it.
        run("topup", OLD, "succeeded", Some(OLD)),
        // billing: an old finished run goes; the running one stays.
        run("billing", OLD - DAY, "interrupted", Some(OLD - DAY)),
        run("billing", OLD, "running", None),
        delivery("acked-old", "acknowledged", "b1", OLD),
        delivery("acked-new", "acknowledged", "b2", NEW),
        delivery("refused-old", "refused", "b3", OLD),
        delivery("waiting-old", "in_flight", "b4", OLD),
        audit("audit-completed-old", "completed", Some("acked-old"), OLD),
        audit("audit-failed-old", "failed", None, OLD),
        audit("audit-pending-old", "pending", Some("waiting-old"), OLD),
        audit("audit-carried-old", "completed", Some("waiting-old"), OLD),
        audit("audit-completed-new", "completed", None, NEW),
        record("record-old", OLD, 2),
        record("record-new", NEW, 1),
        format!(
            "INSERT INTO invoice_snapshots (account_id, kind, bookkeeper_type, bookkeeper_vendor_id, bookkeeper_id, \
             invoice, recurring_units, updated_at) VALUES ('acct', 'computed', 'http', 'vendor', 'b', '{{}}', 0, {OLD});"
        ),
    ]
    .concat()
}

fn thirty_days_of_everything() -> Retention {
    Retention {
        runs_days: 30,
        deliveries_days: 30,
        change_records_days: 30,
        audit_logs_days: 30,
    }
}

async fn prune(store: &Store, retention: Retention, dry_run: bool, batch_size: u64) -> PruneReport {
    let options = PruneOptions {
        retention,
        now: GregorianSeconds(NOW),
        batch_size,
        dry_run,
        stop: CancellationToken::new(),
    };
    run_once(store, &options).await.expect("prune runs")
}

fn pruned(report: &PruneReport, kind: Prunable) -> PrunedRows {
    report
        .kinds
        .iter()
        .find(|pruned| pruned.kind == kind)
        .map(|pruned| pruned.pruned)
        .expect("every kind is reported")
}

fn rows(count: u64) -> PrunedRows {
    PrunedRows {
        rows: count,
        entries: 0,
    }
}

/// The row count of every table pruning may touch, to compare before and after.
async fn table_counts(store: &Store) -> Vec<(&'static str, i64)> {
    let mut counts = Vec::new();
    for table in [
        "runs",
        "deliveries",
        "audit_logs",
        "quantity_change_records",
        "invoice_snapshots",
    ] {
        let count = store
            .query_count(&format!("SELECT COUNT(*) FROM {table}"))
            .await
            .expect("counts");
        counts.push((table, count));
    }
    counts
}

async fn pruning_deletes_old_finished_records_and_keeps_what_is_still_needed(store: &Store) {
    store.execute_script(&fixture()).await.expect("fixture");
    let before = table_counts(store).await;

    let dry = prune(store, thirty_days_of_everything(), true, 1000).await;
    let expected = [
        (Prunable::Runs, rows(3)),
        (Prunable::Deliveries, rows(1)),
        (Prunable::ChangeRecords, PrunedRows { rows: 1, entries: 2 }),
        (Prunable::AuditLogs, rows(2)),
    ];
    for (kind, count) in expected {
        assert_eq!(pruned(&dry, kind), count, "dry run, {kind:?}");
    }
    assert_eq!(table_counts(store).await, before, "a dry run deletes nothing");

    // One row per batch: several batches, each its own transaction.
    let report = prune(store, thirty_days_of_everything(), false, 1).await;
    for (kind, count) in expected {
        assert_eq!(pruned(&report, kind), count, "{kind:?}");
    }
    assert!(!report.interrupted);

    let count = |sql: &'static str| async move { store.query_count(sql).await.expect("counts") };
    let kept_runs = "SELECT COUNT(*) FROM runs WHERE (job = 'sync' AND scheduled_for = 63899913600) \
                     OR job = 'topup' OR (job = 'billing' AND status = 'running')";
    assert_eq!(
        (count("SELECT COUNT(*) FROM runs").await, count(kept_runs).await),
        (3, 3)
    );
    let kept_deliveries = "SELECT COUNT(*) FROM deliveries WHERE id IN ('acked-new', 'refused-old', 'waiting-old')";
    assert_eq!(
        (
            count("SELECT COUNT(*) FROM deliveries").await,
            count(kept_deliveries).await
        ),
        (3, 3)
    );
    let kept_audit_logs = "SELECT COUNT(*) FROM audit_logs \
                           WHERE id IN ('audit-pending-old', 'audit-carried-old', 'audit-completed-new')";
    assert_eq!(
        (
            count("SELECT COUNT(*) FROM audit_logs").await,
            count(kept_audit_logs).await
        ),
        (3, 3)
    );
    let kept_records = "SELECT COUNT(*) FROM quantity_change_records WHERE id = 'record-new'";
    assert_eq!(
        (
            count("SELECT COUNT(*) FROM quantity_change_records").await,
            count(kept_records).await
        ),
        (1, 1)
    );
    assert_eq!(
        count("SELECT COUNT(*) FROM invoice_snapshots").await,
        1,
        "snapshots are never pruned"
    );

    let again = prune(store, thirty_days_of_everything(), false, 1000).await;
    assert_eq!(again.total(), 0, "a second prune finds nothing: {:?}", again.kinds);
}

async fn nothing_is_pruned_without_retention_settings_and_audit_logs_only_when_configured(store: &Store) {
    store.execute_script(&fixture()).await.expect("fixture");
    let before = table_counts(store).await;
    let report = prune(store, Retention::default(), false, 1000).await;
    assert!(
        report.kinds.iter().all(|kind| kind.before.is_none()),
        "{:?}",
        report.kinds
    );
    assert_eq!(table_counts(store).await, before);

    let without_audit = Retention {
        audit_logs_days: 0,
        ..thirty_days_of_everything()
    };
    let report = prune(store, without_audit, false, 1000).await;
    assert_eq!(pruned(&report, Prunable::AuditLogs), rows(0));
    assert_eq!(pruned(&report, Prunable::Deliveries), rows(1));
    assert_eq!(
        store
            .query_count("SELECT COUNT(*) FROM audit_logs")
            .await
            .expect("counts"),
        5
    );
}

async fn a_stopped_prune_deletes_nothing_more_and_is_interrupted(store: &Store) {
    use tally::runs::{JobReport, RunEnd};
    store.execute_script(&fixture()).await.expect("fixture");
    let before = table_counts(store).await;
    let stop = CancellationToken::new();
    stop.cancel();
    let options = PruneOptions {
        retention: thirty_days_of_everything(),
        now: GregorianSeconds(NOW),
        batch_size: 1,
        dry_run: false,
        stop,
    };
    let report = run_once(store, &options).await.expect("prune runs");
    assert!(report.interrupted);
    assert_eq!(report.outcome().end, RunEnd::Interrupted, "the next run does the rest");
    assert_eq!(table_counts(store).await, before);
}

on_both_backends!(
    pruning_deletes_old_finished_records_and_keeps_what_is_still_needed,
    nothing_is_pruned_without_retention_settings_and_audit_logs_only_when_configured,
    a_stopped_prune_deletes_nothing_more_and_is_interrupted,
);

/// `tally run prune` reads `[retention]`, reports per table and is a recorded run.
#[test]
fn tally_run_prune_reports_counts_per_table_and_is_recorded() {
    let dir = tempfile::tempdir().expect("temp dir");
    let tally = |args: &[&str]| {
        crate::helpers::on_sqlite_in(&mut Command::new(env!("CARGO_BIN_EXE_tally")), dir.path())
            .args(args)
            .env("TALLY_RETENTION__RUNS_DAYS", "1")
            .env("RUST_LOG", "warn")
            .output()
            .expect("tally runs")
    };
    assert!(tally(&["migrate"]).status.success());
    let output = tally(&["run", "prune", "--dry-run", "--json"]);
    assert_eq!(
        output.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).expect("one JSON object");
    assert_eq!(report["dry_run"], true);
    assert_eq!(report["status"], "succeeded");
    assert_eq!(report["runs"]["deleted"], 0);
    assert!(report["runs"]["before"].is_string(), "{report}");
    assert!(
        report["audit_logs"]["before"].is_null(),
        "audit logs are kept unless configured: {report}"
    );
    assert_eq!(report["change_records"]["entries_deleted"], 0);

    let output = tally(&["run", "prune", "--json"]);
    assert_eq!(
        output.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let runs = tally(&["runs", "--json"]);
    assert!(
        String::from_utf8_lossy(&runs.stdout).contains("\"prune\""),
        "the prune run is recorded"
    );
}
