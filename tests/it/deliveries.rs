//! The delivery queue tells the truth (issue 11): a run that leaves deliveries pending
//! says why and when they go next, and ends as a temporary failure (exit 75); an
//! unconfigured HTTP bookkeeper spends no attempts; `tally deliveries retry` makes
//! them due; `services.dirty` is true while audit rows wait. Against SQLite and
//! PostgreSQL, and through the `tally` binary, with real HTTP bookkeepers on 127.0.0.1.

use crate::fake_bookkeeper::{FakeBookkeeper, Reply};
use crate::helpers::{at, id, on_both_backends, reconcile_all};
use serde_json::Value;
use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;
use tally::bookkeepers::{Bookkeepers, HttpBookkeeperSettings, RetryPolicy};
use tally::domain::changes::FirstCommit;
use tally::domain::merge::StrategyPriorities;
use tally::domain::summary::GregorianSeconds;
use tally::jobs::bookkeeper_sync::{self, BookkeeperSyncOptions, BookkeeperSyncReport};
use tally::jobs::sync::{self, SyncOptions, SyncReport};
use tally::store::{DeliveryState, PendingDeliveries, Store, SyncScope};

const T0: i64 = 63_900_000_000;
/// The retry policy's first delay in these tests.
const BACKOFF: i64 = 600;

const DEVICES_HTTP: &str = r#"{"name": "Devices", "bookkeeper": {"type": "http", "id": "bk1"},
    "plan": {"devices": {"sip_device": {"rate": 5}}}}"#;

/// Master `m` > reseller `r` > customers `a` (2 devices) and `b` (1 device), both on
/// an HTTP-billed plan: two deliveries after the first sync.
async fn seeded(store: &Store) {
    let mut sql = String::from(
        "INSERT INTO accounts (id, parent_id, name, is_reseller) VALUES ('m', NULL, 'Master', FALSE);\n\
         INSERT INTO accounts (id, parent_id, name, is_reseller) VALUES ('r', 'm', 'Reseller', TRUE);\n\
         INSERT INTO accounts (id, parent_id, name, is_reseller) VALUES ('a', 'r', 'Acme', FALSE);\n\
         INSERT INTO accounts (id, parent_id, name, is_reseller) VALUES ('b', 'r', 'Bolt', FALSE);\n",
    );
    sql.push_str(&format!(
        "INSERT INTO service_plans (vendor_id, plan_id, name, document) VALUES ('r', 'devices_http', 'Devices', '{DEVICES_HTTP}');\n\
         INSERT INTO service_plan_assignments (account_id, plan_id, vendor_id, position) VALUES ('a', 'devices_http', 'r', 0);\n\
         INSERT INTO service_plan_assignments (account_id, plan_id, vendor_id, position) VALUES ('b', 'devices_http', 'r', 0);\n\
         INSERT INTO devices (id, account_id, device_type) VALUES ('a1', 'a', 'sip_device');\n\
         INSERT INTO devices (id, account_id, device_type) VALUES ('a2', 'a', 'sip_device');\n\
         INSERT INTO devices (id, account_id, device_type) VALUES ('b1', 'b', 'sip_device');\n"
    ));
    store.execute_script(&sql).await.expect("seed runs");
    reconcile_all(store, at(T0)).await;
    let report = sync_marked(store, T0 + 10).await;
    assert_eq!(report.invoices_changed, 2, "a and b have an invoice to deliver");
}

async fn sync_marked(store: &Store, now: i64) -> SyncReport {
    let options = SyncOptions {
        scope: SyncScope::Marked,
        dry_run: false,
        first_commit: FirstCommit::Baseline,
        now: GregorianSeconds(now),
        batch_size: 10,
        run_id: format!("test-{now}"),
        master_account_bookkeeper: "default".to_owned(),
        show_master_audit_logs: false,
        priorities: StrategyPriorities::default(),
        initiator: None,
        every_invoice: false,
        stop: tokio_util::sync::CancellationToken::new(),
    };
    sync::run_once(store, &options).await.expect("sync runs")
}

fn http_settings(url: &str, request_timeout_ms: u64) -> HttpBookkeeperSettings {
    HttpBookkeeperSettings {
        http_url: url.to_owned(),
        connect_timeout_ms: 2_000,
        request_timeout_ms,
        ..HttpBookkeeperSettings::default()
    }
}

async fn deliver_with(
    store: &Store,
    settings: &HttpBookkeeperSettings,
    max_attempts: u32,
    now: i64,
) -> BookkeeperSyncReport {
    let bookkeepers = Bookkeepers::from_settings(settings).expect("bookkeepers build");
    bookkeeper_sync::run_once(store, &bookkeepers, &delivery_options(now, max_attempts))
        .await
        .expect("bookkeeper-sync runs")
}

fn delivery_options(now: i64, max_attempts: u32) -> BookkeeperSyncOptions {
    BookkeeperSyncOptions {
        now: GregorianSeconds(now),
        batch_size: 10,
        parallelism: 4,
        lease: Duration::from_secs(300),
        retry: RetryPolicy::new(
            Duration::from_secs(BACKOFF as u64),
            Duration::from_secs(3600),
            max_attempts,
        )
        .expect("valid policy"),
        account: None,
        stop: tokio_util::sync::CancellationToken::new(),
    }
}

async fn deliver(store: &Store, bookkeeper: &FakeBookkeeper, now: i64) -> BookkeeperSyncReport {
    deliver_with(store, &http_settings(&bookkeeper.url(), 5_000), 5, now).await
}

async fn rows(store: &Store, sql: &str) -> i64 {
    store.query_count(sql).await.expect("count query runs")
}

async fn dirty(store: &Store, account: &str) -> bool {
    store.dirty(&id(account)).await.expect("reads").is_some()
}

fn waiting_retry(count: u64, next: i64) -> PendingDeliveries {
    PendingDeliveries {
        waiting_retry: count,
        next_attempt_at: Some(GregorianSeconds(next)),
        ..PendingDeliveries::default()
    }
}

/// A bookkeeper fault leaves both deliveries pending, reported with their retry time,
/// and an immediate rerun still says so; `retry` then a healthy bookkeeper delivers.
async fn a_fault_is_reported_pending_until_retried_and_delivered(store: &Store, fault: Reply, timeout_ms: u64) {
    seeded(store).await;
    let faulty = FakeBookkeeper::start().await;
    faulty.script([fault.clone(), fault]);

    let first = deliver_with(store, &http_settings(&faulty.url(), timeout_ms), 5, T0 + 20).await;

    assert_eq!((first.deliveries, first.failed.len()), (2, 2));
    assert_eq!(first.pending, waiting_retry(2, T0 + 20 + BACKOFF));
    assert!(
        first.has_failures(),
        "a run leaving deliveries pending is a temporary failure"
    );
    assert_eq!(first.to_json()["pending"]["total"], 2);
    assert!((dirty(store, "a").await, dirty(store, "b").await) == (true, true));

    let rerun = deliver_with(store, &http_settings(&faulty.url(), timeout_ms), 5, T0 + 30).await;
    assert_eq!(rerun.deliveries, 0, "nothing is due before the backoff");
    assert_eq!(rerun.pending, waiting_retry(2, T0 + 20 + BACKOFF));
    assert!(rerun.has_failures(), "the rerun does not report success with work left");

    assert_eq!(store.retry_deliveries(at(T0 + 40), None).await.expect("retries"), 2);
    let healthy = FakeBookkeeper::start().await;
    let delivered = deliver(store, &healthy, T0 + 40).await;
    assert_eq!((delivered.deliveries, delivered.acknowledged), (2, 2));
    assert_eq!(delivered.pending, PendingDeliveries::default());
    assert!(!delivered.has_failures());
    assert!((dirty(store, "a").await, dirty(store, "b").await) == (false, false));
    assert_eq!(
        rows(store, "SELECT COUNT(*) FROM audit_logs WHERE status = 'completed'").await,
        2
    );
}

async fn a_bookkeeper_answering_500_is_reported_pending(store: &Store) {
    a_fault_is_reported_pending_until_retried_and_delivered(store, Reply::Status(500), 5_000).await;
}

async fn a_bookkeeper_hanging_past_the_timeout_is_reported_pending(store: &Store) {
    let hang = Reply::Slow {
        delay: Duration::from_secs(3),
        status: 500,
    };
    a_fault_is_reported_pending_until_retried_and_delivered(store, hang, 300).await;
}

async fn a_bookkeeper_dropping_the_connection_is_reported_pending(store: &Store) {
    a_fault_is_reported_pending_until_retried_and_delivered(store, Reply::ChargeThenDrop, 5_000).await;
}

async fn deliveries_leased_by_a_dead_worker_are_pending_until_the_lease_expires(store: &Store) {
    seeded(store).await;
    let bookkeeper = FakeBookkeeper::start().await;
    bookkeeper.script([Reply::Status(500), Reply::Status(500)]);
    deliver(store, &bookkeeper, T0 + 20).await;
    // A worker takes both retries under a lease, then dies (kill -9) before sending.
    let due_at = T0 + 20 + BACKOFF;
    let taken = store
        .due_deliveries(at(due_at), at(due_at + 300), 10, None, None)
        .await
        .expect("leases");
    assert_eq!(taken.deliveries.len(), 2);
    let second_worker = store
        .due_deliveries(at(due_at), at(due_at + 300), 10, None, None)
        .await
        .expect("reads");
    assert!(
        second_worker.deliveries.is_empty(),
        "a leased delivery goes to one worker only"
    );

    let while_leased = deliver(store, &bookkeeper, due_at + 100).await;

    assert_eq!(while_leased.deliveries, 0);
    assert_eq!(
        while_leased.pending,
        PendingDeliveries {
            leased: 2,
            next_attempt_at: Some(at(due_at + 301)),
            ..PendingDeliveries::default()
        }
    );
    assert!(while_leased.has_failures());
    let listed = store
        .waiting_deliveries(at(due_at + 100), None, 10)
        .await
        .expect("lists");
    assert!(
        listed.iter().all(|delivery| delivery.state == DeliveryState::Leased),
        "{listed:?}"
    );

    let after_expiry = deliver(store, &bookkeeper, due_at + 301).await;
    assert_eq!((after_expiry.deliveries, after_expiry.acknowledged), (2, 2));
    assert_eq!(after_expiry.pending.total(), 0);
    assert!(!after_expiry.has_failures());
    assert_eq!(bookkeeper.charges().len(), 2, "each invoice charged once");
}

async fn an_unconfigured_bookkeeper_keeps_deliveries_waiting_without_spending_attempts(store: &Store) {
    seeded(store).await;
    let unconfigured = http_settings("", 5_000);

    let first = deliver_with(store, &unconfigured, 5, T0 + 20).await;
    let second = deliver_with(store, &unconfigured, 5, T0 + 21).await;

    for report in [&first, &second] {
        assert_eq!((report.deliveries, report.failed.len()), (0, 0));
        assert_eq!(report.awaiting_configuration, 2);
        assert_eq!(
            report.pending,
            PendingDeliveries {
                awaiting_configuration: 2,
                ..PendingDeliveries::default()
            }
        );
        assert!(report.has_failures());
    }
    assert_eq!(
        rows(
            store,
            "SELECT COUNT(*) FROM deliveries WHERE attempts = 0 AND last_error_code = 'not_configured'"
        )
        .await,
        2
    );
    assert_eq!(
        rows(store, "SELECT COUNT(*) FROM audit_logs WHERE attempts > 0").await,
        0
    );
    let listed = store.waiting_deliveries(at(T0 + 22), None, 10).await.expect("lists");
    assert_eq!(listed.len(), 2);
    assert!(listed
        .iter()
        .all(|delivery| delivery.state == DeliveryState::AwaitingConfiguration && delivery.attempts == 0));

    // Configured at last: the next run delivers at once, no backoff to wait out.
    let bookkeeper = FakeBookkeeper::start().await;
    let configured = deliver(store, &bookkeeper, T0 + 22).await;
    assert_eq!((configured.deliveries, configured.acknowledged), (2, 2));
    assert_eq!(configured.pending.total(), 0);
}

async fn a_delivery_failed_for_good_is_listed_and_retry_makes_it_due(store: &Store) {
    seeded(store).await;
    let bookkeeper = FakeBookkeeper::start().await;
    bookkeeper.script([Reply::Status(503), Reply::Status(503)]);

    let failed = deliver_with(store, &http_settings(&bookkeeper.url(), 5_000), 1, T0 + 20).await;

    assert!(failed.failed.iter().all(|failure| failure.needs_attention));
    assert_eq!(
        failed.pending,
        PendingDeliveries {
            failed: 2,
            next_attempt_at: None,
            ..PendingDeliveries::default()
        }
    );
    let listed = store.waiting_deliveries(at(T0 + 30), None, 10).await.expect("lists");
    assert_eq!(
        listed.iter().map(|delivery| delivery.state).collect::<Vec<_>>(),
        [DeliveryState::Failed, DeliveryState::Failed]
    );
    assert_eq!(listed[0].account, "a");
    assert_eq!(listed[0].attempts, 1);
    assert_eq!(listed[0].next_attempt_at, None);
    assert!(listed[0]
        .last_error
        .as_deref()
        .is_some_and(|error| error.contains("503")));
    assert_eq!(
        deliver(store, &bookkeeper, T0 + 100_000).await.deliveries,
        0,
        "no automatic retry"
    );

    assert_eq!(
        store
            .retry_deliveries(at(T0 + 100_001), Some(&id("a")))
            .await
            .expect("retries"),
        1,
        "only a's delivery"
    );
    let retried = deliver(store, &bookkeeper, T0 + 100_001).await;
    assert_eq!((retried.deliveries, retried.acknowledged), (1, 1));
    assert_eq!(retried.pending.failed, 1, "b still waits for an operator");
}

async fn dirty_is_held_while_audit_rows_wait_and_a_newer_mark_survives_delivery(store: &Store) {
    seeded(store).await;
    assert!(dirty(store, "a").await && dirty(store, "b").await);
    let held_only = sync_marked(store, T0 + 15).await;
    assert_eq!(held_only.accounts_scanned, 0, "a hold is not a repricing mark");

    store.mark_for_repricing(&[id("b")], at(T0 + 16)).await.expect("marks");
    let bookkeeper = FakeBookkeeper::start().await;
    deliver(store, &bookkeeper, T0 + 20).await;

    assert!(!dirty(store, "a").await, "delivered: clean");
    assert!(
        dirty(store, "b").await,
        "marked after its rows were written: still to reprice"
    );
    let repriced = sync_marked(store, T0 + 30).await;
    assert_eq!(repriced.accounts_scanned, 1);
    assert!(!dirty(store, "b").await);
}

/// An account repriced with nothing new to record writes no audit row, yet its older
/// rows still wait for the bookkeeper: it stays held, and a delivery frees it.
async fn a_repricing_without_changes_keeps_the_hold_of_older_undelivered_rows(store: &Store) {
    seeded(store).await;
    store.mark_for_repricing(&[id("a")], at(T0 + 16)).await.expect("marks");
    let repriced = sync_marked(store, T0 + 17).await;
    assert_eq!((repriced.accounts_scanned, repriced.invoices_changed), (1, 0));

    assert!(dirty(store, "a").await, "its rows of T0 + 10 still wait: held");
    let marked = store.sync_candidates(&SyncScope::Marked).await.expect("lists marks");
    assert!(marked.is_empty(), "held, not marked: {marked:?}");
    let bookkeeper = FakeBookkeeper::start().await;
    deliver(store, &bookkeeper, T0 + 20).await;
    assert!(!dirty(store, "a").await, "delivered: clean");
}

/// One delivery whose stored audit row cannot be read is one bad delivery (issue 13):
/// it is skipped and named with its row and why, and the other account is delivered.
async fn an_unreadable_audit_row_skips_only_its_delivery_and_is_named(store: &Store) {
    seeded(store).await;
    store
        .execute_script("UPDATE audit_logs SET invoice = '{not json' WHERE account_id = 'b';")
        .await
        .expect("b's pending row is damaged");
    let bookkeeper = FakeBookkeeper::start().await;

    let report = deliver(store, &bookkeeper, T0 + 20).await;

    assert_eq!((report.deliveries, report.acknowledged), (1, 1), "a is delivered");
    assert_eq!(bookkeeper.requests().len(), 1);
    assert_eq!(report.unreadable.len(), 1, "{:?}", report.unreadable);
    let skipped = &report.unreadable[0];
    assert_eq!(skipped.account, "b");
    assert!(skipped.row.starts_with("audit row "), "{skipped:?}");
    assert!(skipped.reason.contains("stored invoice"), "{skipped:?}");
    assert!(report.to_text().contains(&skipped.row), "{}", report.to_text());
    assert_eq!(report.to_json()["unreadable"][0]["account_id"], "b");
    assert!(report.has_failures(), "a skipped delivery needs attention");
    assert_eq!(report.pending.queued, 1, "b's row still waits");
    assert!(!dirty(store, "a").await && dirty(store, "b").await);
}

/// Batches of one: every delivery goes out once, each batch sent while the next is
/// frozen and the previous recorded.
async fn small_batches_deliver_everything_once_in_one_run(store: &Store) {
    seeded(store).await;
    let bookkeeper = FakeBookkeeper::start().await;
    let options = BookkeeperSyncOptions {
        batch_size: 1,
        parallelism: 1,
        ..delivery_options(T0 + 20, 5)
    };
    let bookkeepers = Bookkeepers::from_settings(&http_settings(&bookkeeper.url(), 5_000)).expect("bookkeepers build");

    let report = bookkeeper_sync::run_once(store, &bookkeepers, &options)
        .await
        .expect("bookkeeper-sync runs");

    assert_eq!((report.deliveries, report.acknowledged), (2, 2));
    let mut accounts: Vec<String> = bookkeeper
        .requests()
        .iter()
        .filter_map(|request| request.header("X-Account-ID").map(str::to_owned))
        .collect();
    accounts.sort();
    assert_eq!(accounts, ["a", "b"], "one request per account");
    assert_eq!(report.pending, PendingDeliveries::default());
    assert_eq!(
        rows(store, "SELECT COUNT(*) FROM audit_logs WHERE status = 'completed'").await,
        2
    );
}

/// Rows written while a delivery waits for its retry are queued behind it; the run
/// that delivers the retry delivers them next, in the same run.
async fn rows_queued_behind_a_retry_go_in_the_run_that_delivers_it(store: &Store) {
    seeded(store).await;
    let faulty = FakeBookkeeper::start().await;
    faulty.script([Reply::Status(500), Reply::Status(500)]);
    deliver(store, &faulty, T0 + 20).await;
    store
        .execute_script("INSERT INTO devices (id, account_id, device_type) VALUES ('a3', 'a', 'sip_device');")
        .await
        .expect("a gets a device");
    reconcile_all(store, at(T0 + 25)).await;
    let synced = sync_marked(store, T0 + 30).await;
    assert_eq!(synced.invoices_changed, 1, "a has a new invoice");
    assert_eq!(store.retry_deliveries(at(T0 + 40), None).await.expect("retries"), 2);

    let healthy = FakeBookkeeper::start().await;
    let delivered = deliver(store, &healthy, T0 + 40).await;

    assert_eq!((delivered.deliveries, delivered.acknowledged), (3, 3));
    assert_eq!(delivered.pending, PendingDeliveries::default());
    assert_eq!(
        rows(store, "SELECT COUNT(*) FROM audit_logs WHERE status = 'pending'").await,
        0
    );
}

on_both_backends!(
    a_repricing_without_changes_keeps_the_hold_of_older_undelivered_rows,
    an_unreadable_audit_row_skips_only_its_delivery_and_is_named,
    small_batches_deliver_everything_once_in_one_run,
    rows_queued_behind_a_retry_go_in_the_run_that_delivers_it,
    a_bookkeeper_answering_500_is_reported_pending,
    a_bookkeeper_hanging_past_the_timeout_is_reported_pending,
    a_bookkeeper_dropping_the_connection_is_reported_pending,
    deliveries_leased_by_a_dead_worker_are_pending_until_the_lease_expires,
    an_unconfigured_bookkeeper_keeps_deliveries_waiting_without_spending_attempts,
    a_delivery_failed_for_good_is_listed_and_retry_makes_it_due,
    dirty_is_held_while_audit_rows_wait_and_a_newer_mark_survives_delivery,
);

// Through the `tally` binary.

fn tally(directory: &Path, args: &[&str], http_url: &str) -> Output {
    Command::new(env!("CARGO_BIN_EXE_tally"))
        .args(args)
        .current_dir(directory)
        .env_remove("TALLY_DATABASE_URL")
        .env_remove("TALLY_CONFIG")
        .env("RUST_LOG", "warn")
        .env("TALLY_BOOKKEEPERS__HTTP__HTTP_URL", http_url)
        .output()
        .expect("tally runs")
}

fn json(output: &Output) -> Value {
    let text = String::from_utf8_lossy(&output.stdout);
    serde_json::from_str(text.trim()).unwrap_or_else(|error| panic!("{error}: {text}"))
}

fn exit_code(output: &Output) -> Option<i32> {
    if !matches!(output.status.code(), Some(0 | 75)) {
        eprintln!("{}", String::from_utf8_lossy(&output.stderr));
    }
    output.status.code()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn billing_against_a_failing_bookkeeper_exits_75_until_retried_then_0() {
    let directory = tempfile::tempdir().expect("temp dir");
    let dir = directory.path();
    assert!(tally(dir, &["demo", "--accounts", "80"], "").status.success());
    let failing = FakeBookkeeper::start().await;
    failing.script(std::iter::repeat_n(Reply::Status(500), 500));

    let first = tally(dir, &["run", "billing", "--json"], &failing.url());
    assert_eq!(exit_code(&first), Some(75));
    let report = json(&first);
    let sent = report["deliveries_failed"].as_u64().expect("a count");
    assert!(sent > 0, "{report}");
    assert_eq!(report["status"], "temporary-failure");
    assert_eq!(report["pending_deliveries"]["total"].as_u64(), Some(sent));
    assert_eq!(report["pending_deliveries"]["waiting_retry"].as_u64(), Some(sent));
    let next = report["pending_deliveries"]["next_attempt_at"].clone();
    assert!(next.as_str().is_some_and(|time| time.ends_with('Z')), "{next}");
    for stage in ["reconcile", "sync", "bookkeeper_sync"] {
        assert!(report["stage_durations_ms"][stage].is_u64(), "{stage}: {report}");
    }

    let rerun = tally(dir, &["run", "billing", "--json"], &failing.url());
    assert_eq!(
        exit_code(&rerun),
        Some(75),
        "an immediate rerun does not report success"
    );
    let report = json(&rerun);
    assert_eq!(report["deliveries"], 0);
    assert_eq!(report["pending_deliveries"]["total"].as_u64(), Some(sent));
    assert_eq!(report["pending_deliveries"]["next_attempt_at"], next);
    let text = tally(dir, &["run", "billing"], &failing.url());
    let stdout = String::from_utf8_lossy(&text.stdout);
    assert!(
        stdout.contains(&format!("pending deliveries: {sent} ({sent} waiting for a retry)")),
        "{stdout}"
    );

    let listed = json(&tally(dir, &["deliveries", "--json"], ""));
    let deliveries = listed["deliveries"].as_array().expect("a list");
    assert_eq!(deliveries.len() as u64, sent);
    assert!(deliveries
        .iter()
        .all(|delivery| delivery["state"] == "waiting-retry" && delivery["attempts"] == 1));
    assert!(deliveries[0]["last_error"]
        .as_str()
        .is_some_and(|error| error.contains("HTTP 500")));

    let retried = tally(dir, &["deliveries", "retry", "--json"], "");
    assert_eq!(exit_code(&retried), Some(0));
    assert_eq!(json(&retried)["made_due"].as_u64(), Some(sent));
    let healthy = FakeBookkeeper::start().await;
    let delivered = tally(dir, &["run", "billing", "--json"], &healthy.url());
    assert_eq!(exit_code(&delivered), Some(0));
    let report = json(&delivered);
    assert_eq!(report["status"], "succeeded");
    assert_eq!(report["deliveries_acknowledged"].as_u64(), Some(sent));
    assert_eq!(report["pending_deliveries"]["total"], 0);
    assert_eq!(healthy.charges().len() as u64, sent);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unconfigured_bookkeeper_warns_once_per_run_and_delivers_once_configured() {
    let directory = tempfile::tempdir().expect("temp dir");
    let dir = directory.path();
    let demo = tally(dir, &["demo", "--accounts", "80"], "");
    assert!(demo.status.success());
    assert!(
        !String::from_utf8_lossy(&demo.stderr).contains("not configured"),
        "no delivery needed it yet"
    );

    let first = tally(dir, &["run", "billing", "--json"], "");
    assert_eq!(exit_code(&first), Some(75));
    let report = json(&first);
    let waiting = report["pending_deliveries"]["awaiting_configuration"]
        .as_u64()
        .expect("a count");
    assert!(waiting > 0, "{report}");
    assert_eq!(report["pending_deliveries"]["total"].as_u64(), Some(waiting));
    assert_eq!(report["deliveries_failed"], 0);
    let stderr = String::from_utf8_lossy(&first.stderr);
    assert_eq!(
        stderr.matches("not configured").count(),
        1,
        "one warning per run: {stderr}"
    );

    let second = tally(dir, &["run", "billing", "--json"], "");
    assert_eq!(exit_code(&second), Some(75));
    let listed = json(&tally(dir, &["deliveries", "--json"], ""));
    let deliveries = listed["deliveries"].as_array().expect("a list");
    assert_eq!(deliveries.len() as u64, waiting);
    assert!(deliveries
        .iter()
        .all(|delivery| delivery["state"] == "waiting-for-configuration" && delivery["attempts"] == 0));

    let bookkeeper = FakeBookkeeper::start().await;
    let configured = tally(dir, &["run", "billing", "--json"], &bookkeeper.url());
    assert_eq!(exit_code(&configured), Some(0));
    assert_eq!(json(&configured)["deliveries_acknowledged"].as_u64(), Some(waiting));
}

/// Bookkeeper-sync analyses the tables sync has just filled (`Store::refresh_statistics`):
/// a table changed by more than a tenth of its size and 1,000 rows since its last
/// analysis is analysed, once; one changed by less is left to autovacuum. SQLite has
/// nothing to refresh.
#[tokio::test]
async fn tables_changed_past_the_threshold_are_analysed_once() {
    let sqlite = crate::helpers::sqlite_store().await;
    assert_eq!(
        sqlite
            .store
            .refresh_statistics(&["users"])
            .await
            .expect("sqlite refreshes"),
        Vec::<String>::new()
    );
    let Some(database) = crate::helpers::postgres_store().await else {
        return;
    };
    let store = &database.store;
    // The activity counts are published when the writing connection goes idle; forced
    // here so that the test does not wait for the server's own second.
    let write = |users: u32, from: u32| {
        format!(
            "INSERT INTO users (id, account_id) SELECT 'u' || g, 'a' FROM generate_series({from}, {}) g; \
             SELECT pg_stat_force_next_flush();",
            from + users - 1
        )
    };
    store.execute_script(&write(999, 1)).await.expect("999 users");
    assert_eq!(
        store
            .refresh_statistics(&["users", "devices"])
            .await
            .expect("reads statistics"),
        Vec::<String>::new(),
        "999 changed rows are under the floor"
    );
    store
        .execute_script(&write(1_001, 1_000))
        .await
        .expect("1,001 more users");
    assert_eq!(
        store.refresh_statistics(&["users", "devices"]).await.expect("analyses"),
        vec!["users".to_owned()]
    );
    let estimated = store
        .query_count("SELECT reltuples::bigint FROM pg_class WHERE relname = 'users' AND relkind = 'r'")
        .await
        .expect("reads the estimate");
    assert_eq!(estimated, 2_000, "the planner now knows the table's size");
    assert_eq!(
        store.refresh_statistics(&["users"]).await.expect("reads statistics"),
        Vec::<String>::new(),
        "nothing changed since"
    );
    // A tenth of 2,000 is under the floor: 1,001 more rows pass it, 1,000 do not.
    store
        .execute_script(&write(1_000, 2_001))
        .await
        .expect("1,000 more users");
    assert_eq!(
        store.refresh_statistics(&["users"]).await.expect("reads statistics"),
        Vec::<String>::new()
    );
}
