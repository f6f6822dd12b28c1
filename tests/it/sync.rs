//! The sync and bookkeeper-sync jobs against SQLite and PostgreSQL, with a real HTTP
//! bookkeeper on 127.0.0.1 (issue 4).
//!
//! The tree: master `m` > reseller `r` > customers `a`, `b`. Reseller `r` sells plan
//! `devices_http` (billed through the HTTP bookkeeper `bk1`) to `a` and `b`; the
//! master bills `r` with the cascade plan `wholesale` (default bookkeeper).

use crate::fake_bookkeeper::{FakeBookkeeper, Reply};
use crate::helpers::{at, id, on_both_backends, reconcile_all};
use serde_json::{json, Value};
use std::time::Duration;
use tally::bookkeepers::{Bookkeepers, HttpBookkeeperSettings, RetryPolicy, SecretString};
use tally::domain::changes::FirstCommit;
use tally::domain::merge::StrategyPriorities;
use tally::domain::summary::GregorianSeconds;
use tally::jobs::bookkeeper_sync::{self, BookkeeperSyncOptions, BookkeeperSyncReport};
use tally::jobs::sync::{self, SyncOptions, SyncReport};
use tally::store::{RepricedAccount, Store, SyncScope};

const T0: i64 = 63_900_000_000;

const DEVICES_HTTP: &str = r#"{"name": "Devices", "bookkeeper": {"type": "http", "id": "bk1"},
    "plan": {"devices": {"sip_device": {"rate": 5, "activation_charge": 10},
                         "softphone": {"rate": 1.25, "minimum": 2}}}}"#;
const WHOLESALE: &str = r#"{"name": "Wholesale",
    "plan": {"devices": {"_all": {"rate": 0.5, "cascade": true, "name": "All devices"}}}}"#;

fn seed_sql(extra_devices_for_a: usize) -> String {
    let mut sql = String::from(
        "INSERT INTO accounts (id, parent_id, name, is_reseller) VALUES ('m', NULL, 'Master', FALSE);\n\
         INSERT INTO accounts (id, parent_id, name, is_reseller) VALUES ('r', 'm', 'Reseller', TRUE);\n\
         INSERT INTO accounts (id, parent_id, name, is_reseller) VALUES ('a', 'r', 'Acme', FALSE);\n\
         INSERT INTO accounts (id, parent_id, name, is_reseller) VALUES ('b', 'r', 'Bolt', FALSE);\n\
         INSERT INTO accounts (id, parent_id, name, is_reseller) VALUES ('n', 'r', 'No plans', FALSE);\n",
    );
    sql.push_str(&format!(
        "INSERT INTO service_plans (vendor_id, plan_id, name, document) VALUES ('r', 'devices_http', 'Devices', '{DEVICES_HTTP}');\n\
         INSERT INTO service_plans (vendor_id, plan_id, name, document) VALUES ('m', 'wholesale', 'Wholesale', '{WHOLESALE}');\n\
         INSERT INTO service_plan_assignments (account_id, plan_id, vendor_id, position) VALUES ('a', 'devices_http', 'r', 0);\n\
         INSERT INTO service_plan_assignments (account_id, plan_id, vendor_id, position) VALUES ('b', 'devices_http', 'r', 0);\n\
         INSERT INTO service_plan_assignments (account_id, plan_id, vendor_id, position) VALUES ('r', 'wholesale', 'm', 0);\n"
    ));
    let devices = [
        ("a", "sip_device", 3 + extra_devices_for_a),
        ("a", "softphone", 1),
        ("b", "sip_device", 1),
        ("n", "sip_device", 4),
    ];
    for (account, kind, count) in devices {
        for index in 0..count {
            sql.push_str(&format!(
                "INSERT INTO devices (id, account_id, device_type) VALUES ('{account}-{kind}-{index}', '{account}', '{kind}');\n"
            ));
        }
    }
    sql
}

async fn seeded(store: &Store) {
    store.execute_script(&seed_sql(0)).await.expect("seed runs");
    reconcile_all(store, at(T0)).await;
}

fn sync_options(scope: SyncScope, now: i64) -> SyncOptions {
    SyncOptions {
        scope,
        dry_run: false,
        first_commit: FirstCommit::Baseline,
        now: GregorianSeconds(now),
        batch_size: 2,
        run_id: format!("test-{now}"),
        master_account_bookkeeper: "default".to_owned(),
        show_master_audit_logs: false,
        priorities: StrategyPriorities::default(),
        initiator: None,
        every_invoice: false,
        stop: tokio_util::sync::CancellationToken::new(),
    }
}

async fn sync_marked(store: &Store, now: i64) -> SyncReport {
    sync::run_once(store, &sync_options(SyncScope::Marked, now))
        .await
        .expect("sync runs")
}

fn http_settings(url: &str, request_timeout_ms: u64) -> HttpBookkeeperSettings {
    HttpBookkeeperSettings {
        http_url: url.to_owned(),
        authorization_header: SecretString::new("Bearer test"),
        connect_timeout_ms: 2_000,
        request_timeout_ms,
        ..HttpBookkeeperSettings::default()
    }
}

async fn deliver_with(store: &Store, settings: &HttpBookkeeperSettings, now: i64) -> BookkeeperSyncReport {
    let bookkeepers = Bookkeepers::from_settings(settings).expect("bookkeepers build");
    let options = BookkeeperSyncOptions {
        now: GregorianSeconds(now),
        batch_size: 10,
        parallelism: 4,
        lease: Duration::from_secs(60),
        retry: RetryPolicy::new(Duration::from_secs(600), Duration::from_secs(3600), 3).expect("valid policy"),
        account: None,
        stop: tokio_util::sync::CancellationToken::new(),
    };
    bookkeeper_sync::run_once(store, &bookkeepers, &options)
        .await
        .expect("bookkeeper-sync runs")
}

async fn deliver(store: &Store, bookkeeper: &FakeBookkeeper, now: i64) -> BookkeeperSyncReport {
    deliver_with(store, &http_settings(&bookkeeper.url(), 5_000), now).await
}

async fn rows(store: &Store, sql: &str) -> i64 {
    store.query_count(sql).await.expect("count query runs")
}

async fn audit_statuses(store: &Store, account: &str) -> Vec<String> {
    let pending = rows(
        store,
        &format!("SELECT COUNT(*) FROM audit_logs WHERE account_id = '{account}' AND status = 'pending'"),
    )
    .await;
    let completed = rows(
        store,
        &format!("SELECT COUNT(*) FROM audit_logs WHERE account_id = '{account}' AND status = 'completed'"),
    )
    .await;
    let failed = rows(
        store,
        &format!("SELECT COUNT(*) FROM audit_logs WHERE account_id = '{account}' AND status = 'failed'"),
    )
    .await;
    vec![
        format!("pending={pending}"),
        format!("completed={completed}"),
        format!("failed={failed}"),
    ]
}

fn body_item<'a>(body: &'a Value, item: &str) -> &'a Value {
    body["invoice"]["items"]
        .as_array()
        .expect("delivered items")
        .iter()
        .find(|entry| entry["plan_item"] == item)
        .unwrap_or_else(|| panic!("no item {item} in {body}"))
}

async fn an_accepted_delivery_completes_the_audit_rows_and_keeps_good_standing(store: &Store) {
    seeded(store).await;
    let report = sync_marked(store, T0 + 10).await;
    assert_eq!(
        report.accounts_scanned, 5,
        "every account was marked by its first reconcile"
    );
    assert_eq!(
        audit_statuses(store, "a").await,
        ["pending=1", "completed=0", "failed=0"]
    );
    assert_eq!(
        audit_statuses(store, "r").await,
        ["pending=0", "completed=1", "failed=0"],
        "default bookkeeper"
    );

    let bookkeeper = FakeBookkeeper::start().await;
    let delivered = deliver(store, &bookkeeper, T0 + 20).await;

    assert_eq!(
        (delivered.deliveries, delivered.acknowledged, delivered.failed.len()),
        (2, 2, 0)
    );
    assert_eq!(
        audit_statuses(store, "a").await,
        ["pending=0", "completed=1", "failed=0"]
    );
    let standing = store.standing(&id("a")).await.expect("reads").expect("known account");
    assert!(standing.in_good_standing());
    let requests = bookkeeper.requests();
    let to_a = requests
        .iter()
        .find(|request| request.header("x-account-id") == Some("a"))
        .expect("a was delivered");
    assert_eq!(to_a.header("authorization"), Some("Bearer test"));
    assert!(to_a.header("idempotency-key").is_some());
    let body = to_a.json();
    // 3 SIP devices at 5; 1 softphone billed at its minimum of 2 × 1.25.
    assert_eq!(body["invoice"]["summary"]["recurring"], json!(17.5));
    assert_eq!(
        body_item(&body, "sip_device")["changes"]["difference"]["billable"],
        json!(3)
    );
    assert_eq!(
        body["invoice"]["summary"]["today"],
        json!(0),
        "a baseline charges no activation"
    );
    assert_eq!(body["items"]["devices"]["sip_device"]["quantity"], json!(3));
}

async fn a_402_marks_the_account_delinquent_and_is_not_retried(store: &Store) {
    seeded(store).await;
    sync_marked(store, T0 + 10).await;
    let bookkeeper = FakeBookkeeper::start().await;
    bookkeeper.script([Reply::Status(402), Reply::Status(402)]);

    let delivered = deliver(store, &bookkeeper, T0 + 20).await;

    assert_eq!((delivered.refused, delivered.failed.len()), (2, 0));
    assert_eq!(
        audit_statuses(store, "a").await,
        ["pending=0", "completed=0", "failed=1"]
    );
    let standing = store.standing(&id("a")).await.expect("reads").expect("known account");
    assert_eq!(standing.status, "delinquent");
    let again = deliver(store, &bookkeeper, T0 + 100_000).await;
    assert_eq!(again.deliveries, 0, "a refusal is final");
}

async fn a_500_is_retried_after_its_backoff_with_the_same_key_then_completes(store: &Store) {
    seeded(store).await;
    sync_marked(store, T0 + 10).await;
    let bookkeeper = FakeBookkeeper::start().await;
    bookkeeper.script([Reply::Status(500), Reply::Status(500)]);

    let first = deliver(store, &bookkeeper, T0 + 20).await;
    assert_eq!(first.failed.len(), 2);
    assert!(!first.failed[0].needs_attention);
    assert_eq!(
        audit_statuses(store, "a").await,
        ["pending=1", "completed=0", "failed=0"]
    );

    let too_early = deliver(store, &bookkeeper, T0 + 20 + 60).await;
    assert_eq!(too_early.deliveries, 0, "nothing is due before the backoff");

    let retried = deliver(store, &bookkeeper, T0 + 20 + 601).await;
    assert_eq!((retried.deliveries, retried.acknowledged), (2, 2));
    assert_eq!(
        audit_statuses(store, "a").await,
        ["pending=0", "completed=1", "failed=0"]
    );
    let keys: Vec<Option<String>> = bookkeeper
        .requests()
        .iter()
        .filter(|request| request.header("x-account-id") == Some("a"))
        .map(|request| request.header("idempotency-key").map(str::to_owned))
        .collect();
    assert_eq!(keys.len(), 2);
    assert_eq!(keys[0], keys[1], "the retry is the same request");
}

async fn a_timeout_leaves_the_delivery_pending_for_a_retry(store: &Store) {
    seeded(store).await;
    sync_marked(store, T0 + 10).await;
    let bookkeeper = FakeBookkeeper::start().await;
    let slow = Reply::Slow {
        delay: Duration::from_secs(3),
        status: 500,
    };
    bookkeeper.script([slow.clone(), slow]);

    let report = deliver_with(store, &http_settings(&bookkeeper.url(), 300), T0 + 20).await;

    assert_eq!(report.failed.len(), 2);
    assert!(
        report.failed[0].error.contains("timed out") || report.failed[0].error.contains("timeout"),
        "{}",
        report.failed[0].error
    );
    assert_eq!(
        audit_statuses(store, "a").await,
        ["pending=1", "completed=0", "failed=0"]
    );
    let recorded = rows(
        store,
        "SELECT COUNT(*) FROM deliveries WHERE status = 'in_flight' AND attempts = 1 AND last_error IS NOT NULL",
    )
    .await;
    assert_eq!(recorded, 2);
}

async fn a_refused_connection_leaves_the_delivery_pending(store: &Store) {
    seeded(store).await;
    sync_marked(store, T0 + 10).await;
    let closed = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.local_addr().expect("address")
    };

    let report = deliver_with(
        store,
        &http_settings(&format!("http://{closed}/bookkeeper"), 2_000),
        T0 + 20,
    )
    .await;

    assert_eq!(report.failed.len(), 2);
    assert_eq!(
        audit_statuses(store, "a").await,
        ["pending=1", "completed=0", "failed=0"]
    );
    assert_eq!(
        audit_statuses(store, "b").await,
        ["pending=1", "completed=0", "failed=0"]
    );
}

async fn a_response_lost_after_the_charge_is_retried_with_the_same_key_and_charged_once(store: &Store) {
    seeded(store).await;
    sync_marked(store, T0 + 10).await;
    let bookkeeper = FakeBookkeeper::start().await;
    bookkeeper.script([Reply::ChargeThenDrop, Reply::ChargeThenDrop]);

    let lost = deliver(store, &bookkeeper, T0 + 20).await;
    assert_eq!(lost.failed.len(), 2);
    // A new change arrives before the retry: it must not alter the frozen delivery.
    store
        .execute_script("INSERT INTO devices (id, account_id, device_type) VALUES ('a-late', 'a', 'sip_device');")
        .await
        .expect("insert");
    reconcile_all(store, at(T0 + 30)).await;
    sync_marked(store, T0 + 40).await;

    let retried = deliver(store, &bookkeeper, T0 + 20 + 601).await;

    assert_eq!(retried.failed.len(), 0);
    let charges_for_a: Vec<_> = bookkeeper
        .charges()
        .into_iter()
        .filter(|charge| charge.account_id.as_deref() == Some("a"))
        .collect();
    assert_eq!(
        charges_for_a.len(),
        2,
        "the lost delivery once, then the later change once"
    );
    assert_ne!(charges_for_a[0].idempotency_key, charges_for_a[1].idempotency_key);
    let requests_for_a: Vec<_> = bookkeeper
        .requests()
        .into_iter()
        .filter(|request| request.header("x-account-id") == Some("a"))
        .collect();
    assert_eq!(
        requests_for_a.len(),
        3,
        "lost, resent (deduplicated), then the new change"
    );
    assert_eq!(requests_for_a[0].body, requests_for_a[1].body, "resent byte for byte");
    let last = requests_for_a[2].json();
    assert_eq!(
        body_item(&last, "sip_device")["changes"]["difference"]["billable"],
        json!(1)
    );
    assert_eq!(
        last["invoice"]["summary"]["today"],
        json!(10),
        "the added device's activation"
    );
    assert_eq!(
        audit_statuses(store, "a").await,
        ["pending=0", "completed=2", "failed=0"]
    );
}

async fn a_plan_change_reprices_every_account_of_the_reseller(store: &Store) {
    seeded(store).await;
    sync_marked(store, T0 + 10).await;
    let bookkeeper = FakeBookkeeper::start().await;
    deliver(store, &bookkeeper, T0 + 20).await;

    let cheaper = DEVICES_HTTP.replace("\"rate\": 5", "\"rate\": 4");
    store
        .execute_script(&format!(
            "UPDATE service_plans SET document = '{cheaper}' WHERE vendor_id = 'r' AND plan_id = 'devices_http';"
        ))
        .await
        .expect("plan edit");
    // An account named twice is marked once (one upsert may not touch a row twice).
    store
        .mark_for_repricing(&[id("b"), id("a"), id("b")], at(T0 + 30))
        .await
        .expect("marks");
    let report = sync_marked(store, T0 + 40).await;

    assert_eq!((report.accounts_changed, report.invoices_changed), (2, 2));
    let delivered = deliver(store, &bookkeeper, T0 + 50).await;
    assert_eq!(delivered.acknowledged, 2);
    for account in ["a", "b"] {
        let request = bookkeeper
            .requests()
            .into_iter()
            .rev()
            .find(|request| request.header("x-account-id") == Some(account))
            .expect("delivered");
        let body = request.json();
        assert_eq!(body_item(&body, "sip_device")["rate"], json!(4), "{account}");
        assert_eq!(
            body_item(&body, "sip_device")["changes"]["difference"]["rate"],
            json!(-1),
            "{account}"
        );
    }
}

async fn cascade_items_are_billed_on_the_reseller_when_a_sub_account_grows(store: &Store) {
    seeded(store).await;
    sync_marked(store, T0 + 10).await;
    let before = store.invoice_snapshot(&id("r"), false).await.expect("reads");
    // r's cascade: a 3 SIP + 1 softphone, b 1 SIP, n 4 SIP = 9 devices at 0.5.
    assert_eq!(before[0].recurring.to_string(), "4.5");

    store
        .execute_script("INSERT INTO devices (id, account_id, device_type) VALUES ('a-new-1', 'a', 'sip_device'), ('a-new-2', 'a', 'softphone');")
        .await
        .expect("insert");
    reconcile_all(store, at(T0 + 30)).await;
    let report = sync_marked(store, T0 + 40).await;

    assert_eq!(report.accounts_changed, 2, "a and its reseller");
    let after = store.invoice_snapshot(&id("r"), false).await.expect("reads");
    assert_eq!(after[0].recurring.to_string(), "5.5");
    assert_eq!(
        audit_statuses(store, "r").await,
        ["pending=0", "completed=2", "failed=0"]
    );
}

async fn an_account_without_plans_gets_no_invoice_and_nothing_is_sent(store: &Store) {
    seeded(store).await;
    sync_marked(store, T0 + 10).await;
    let bookkeeper = FakeBookkeeper::start().await;
    deliver(store, &bookkeeper, T0 + 20).await;

    assert!(store.invoice_snapshot(&id("n"), false).await.expect("reads").is_empty());
    assert_eq!(
        rows(store, "SELECT COUNT(*) FROM audit_logs WHERE account_id = 'n'").await,
        0
    );
    assert!(bookkeeper
        .requests()
        .iter()
        .all(|request| request.header("x-account-id") != Some("n")));
}

async fn rerunning_with_nothing_changed_writes_nothing_and_sends_nothing(store: &Store) {
    seeded(store).await;
    sync_marked(store, T0 + 10).await;
    let bookkeeper = FakeBookkeeper::start().await;
    deliver(store, &bookkeeper, T0 + 20).await;
    let audit_rows = rows(store, "SELECT COUNT(*) FROM audit_logs").await;
    let last_write = rows(store, "SELECT MAX(updated_at) FROM invoice_snapshots").await;
    let requests = bookkeeper.requests().len();

    reconcile_all(store, at(T0 + 30)).await;
    let marked = sync_marked(store, T0 + 40).await;
    let all = sync::run_once(store, &sync_options(SyncScope::All, T0 + 50))
        .await
        .expect("sync runs");
    let delivered = deliver(store, &bookkeeper, T0 + 60).await;

    assert_eq!(marked.accounts_scanned, 0, "nothing was marked");
    assert_eq!(
        (all.accounts_scanned, all.accounts_changed),
        (3, 0),
        "a, b and r have plans"
    );
    assert_eq!(delivered.deliveries, 0);
    assert_eq!(rows(store, "SELECT COUNT(*) FROM audit_logs").await, audit_rows);
    assert_eq!(
        rows(store, "SELECT MAX(updated_at) FROM invoice_snapshots").await,
        last_write,
        "no snapshot was rewritten"
    );
    assert_eq!(bookkeeper.requests().len(), requests);
}

async fn a_dry_run_reports_changes_and_writes_nothing(store: &Store) {
    seeded(store).await;
    let options = SyncOptions {
        dry_run: true,
        ..sync_options(SyncScope::Marked, T0 + 10)
    };
    let report = sync::run_once(store, &options).await.expect("sync runs");

    assert_eq!(report.invoices_changed, 3, "a, b and r");
    assert_eq!(report.changes.len(), 3);
    assert_eq!(rows(store, "SELECT COUNT(*) FROM audit_logs").await, 0);
    assert_eq!(rows(store, "SELECT COUNT(*) FROM invoice_snapshots").await, 0);
    assert_eq!(
        rows(store, "SELECT COUNT(*) FROM services WHERE dirty").await,
        5,
        "still marked"
    );
}

async fn charging_activations_on_the_first_sync_bills_every_unit(store: &Store) {
    seeded(store).await;
    let options = SyncOptions {
        first_commit: FirstCommit::ChargeActivations,
        ..sync_options(SyncScope::Marked, T0 + 10)
    };
    sync::run_once(store, &options).await.expect("sync runs");
    let bookkeeper = FakeBookkeeper::start().await;
    deliver(store, &bookkeeper, T0 + 20).await;

    let to_a = bookkeeper
        .requests()
        .into_iter()
        .find(|request| request.header("x-account-id") == Some("a"))
        .expect("delivered");
    assert_eq!(
        to_a.json()["invoice"]["summary"]["today"],
        json!(30),
        "3 SIP devices × 10"
    );
}

/// A mark set after an account's inputs were read (by reconcile or a plan change, which
/// leave its revision alone) is newer than the one its repricing clears: it survives
/// the write, and the next sync reprices the account again. The mark that was read is
/// cleared.
async fn a_mark_set_while_an_account_is_repriced_survives_the_write(store: &Store) {
    seeded(store).await;
    let marked = || async { store.sync_candidates(&SyncScope::Marked).await.expect("lists marks") };
    assert!(marked().await.contains(&id("a")), "reconcile marked a");
    let read = |account: &'static str| async move {
        let (mut read, unreadable) = store.pricing_inputs(&[id(account)]).await.expect("reads");
        assert!(unreadable.is_empty(), "{unreadable:?}");
        let stored = read.pop().expect("the account is read");
        RepricedAccount {
            account: stored.account,
            snapshot: Vec::new(),
            audit_rows: Vec::new(),
            acknowledged: Vec::new(),
            marked_since: stored.marked_since,
            revision: stored.revision,
        }
    };

    let repriced = read("a").await;
    store
        .mark_for_repricing(&[id("a")], at(T0 + 20))
        .await
        .expect("marks again");
    store.save_repricing(&[repriced], at(T0 + 30)).await.expect("writes");
    assert!(marked().await.contains(&id("a")), "the newer mark survives");

    let repriced = read("a").await;
    store.save_repricing(&[repriced], at(T0 + 40)).await.expect("writes");
    assert!(!marked().await.contains(&id("a")), "the mark that was read is cleared");
}

on_both_backends!(
    an_accepted_delivery_completes_the_audit_rows_and_keeps_good_standing,
    a_mark_set_while_an_account_is_repriced_survives_the_write,
    a_402_marks_the_account_delinquent_and_is_not_retried,
    a_500_is_retried_after_its_backoff_with_the_same_key_then_completes,
    a_timeout_leaves_the_delivery_pending_for_a_retry,
    a_refused_connection_leaves_the_delivery_pending,
    a_response_lost_after_the_charge_is_retried_with_the_same_key_and_charged_once,
    a_plan_change_reprices_every_account_of_the_reseller,
    cascade_items_are_billed_on_the_reseller_when_a_sub_account_grows,
    an_account_without_plans_gets_no_invoice_and_nothing_is_sent,
    rerunning_with_nothing_changed_writes_nothing_and_sends_nothing,
    a_dry_run_reports_changes_and_writes_nothing,
    charging_activations_on_the_first_sync_bills_every_unit,
);

/// Issue 4, done when: after reconcile, sync and bookkeeper-sync on the demo data,
/// every account with plans has an invoice equal to what `tally quote` gives for its
/// plans and quantities, and the bookkeeper received each exactly once.
async fn the_demo_bills_every_account_as_quote_prices_it_and_delivers_each_invoice_once(store: &Store) {
    use tally::demo::DemoSpec;
    use tally::domain::Quantities;
    use tally::store::SyncScope;
    use tally::wire::invoice::invoice as invoice_json;

    let spec = DemoSpec { accounts: 60, seed: 7 };
    crate::demo::load_demo(store, spec).await;
    reconcile_all(store, at(T0)).await;
    let synced = sync_marked(store, T0 + 10).await;
    assert!(synced.skipped.is_empty(), "{:?}", synced.skipped);
    let bookkeeper = FakeBookkeeper::start().await;
    let delivered = deliver(store, &bookkeeper, T0 + 20).await;
    assert!(delivered.failed.is_empty(), "{:?}", delivered.failed);

    let accounts = store.sync_candidates(&SyncScope::All).await.expect("lists");
    let (stored, unreadable) = store.pricing_inputs(&accounts).await.expect("reads");
    assert!(unreadable.is_empty());
    let bucket = |quantities: &Quantities| {
        let mut json = json!({});
        for (category, item, count) in quantities.iter() {
            json[category.as_str()][item.as_str()] = json!(count);
        }
        json
    };
    let mut http_invoices = 0;
    for account in stored.iter().filter(|account| !account.assignments.is_empty()) {
        let plans: Vec<Value> = account
            .assignments
            .iter()
            .filter_map(|assignment| {
                let document = assignment.document.as_ref()?;
                let mut entry: Value =
                    serde_json::to_value(tally::wire::document::Document::Map(document)).expect("json");
                entry["id"] = json!(assignment.plan_id.as_str());
                entry["vendor_id"] = json!(assignment.vendor_id.as_str());
                entry["overrides"] =
                    serde_json::to_value(tally::wire::document::Document::Map(&assignment.overrides)).expect("json");
                Some(entry)
            })
            .collect();
        let quantities = if account.quantities.deleted {
            json!({})
        } else {
            json!({
                "account": bucket(&account.quantities.account),
                "cascade": bucket(&account.quantities.cascade),
                "manual": bucket(&account.quantities.manual),
            })
        };
        let request = json!({
            "plans": plans,
            "overrides": serde_json::to_value(tally::wire::document::Document::Map(&account.overrides)).expect("json"),
            "quantities": quantities,
            "bookkeeper": { "type": "default", "vendor_id": account.reseller_id.as_str(), "id": "default_bookkeeper" },
        });
        let quoted = tally::quote::quote_json(&request.to_string(), &StrategyPriorities::default()).expect("quotes");
        let billed: Vec<Value> = store
            .invoice_snapshot(&account.account, false)
            .await
            .expect("reads")
            .iter()
            .map(invoice_json)
            .collect();
        assert_eq!(
            quoted["invoices"],
            Value::Array(billed.clone()),
            "account {}",
            account.account
        );

        let http_for_account = billed
            .iter()
            .filter(|invoice| invoice["bookkeeper"]["type"] == "http")
            .count();
        let received = bookkeeper
            .requests()
            .iter()
            .filter(|request| request.header("x-account-id") == Some(account.account.as_str()))
            .count();
        assert_eq!(
            received, http_for_account,
            "account {} received each invoice once",
            account.account
        );
        http_invoices += http_for_account;
    }
    assert!(
        http_invoices > 0,
        "the demo bills some accounts through the HTTP bookkeeper"
    );
    assert_eq!(bookkeeper.charges().len(), http_invoices);
}

on_both_backends!(the_demo_bills_every_account_as_quote_prices_it_and_delivers_each_invoice_once);

/// A run keeps the ancestors it read for its later batches (`AncestorCache`): read in
/// batches of three through one cache, every demo account gets the reseller the
/// recursive chain query gives it alone (`account_node`). Stored reseller ids are
/// cleared first, so every answer comes from walking the tree, sub-resellers included.
async fn batches_sharing_the_ancestors_they_read_find_each_account_s_reseller(store: &Store) {
    use tally::demo::DemoSpec;
    use tally::store::{AncestorCache, PendingChange};

    crate::demo::load_demo(store, DemoSpec { accounts: 60, seed: 7 }).await;
    store
        .execute_script("UPDATE accounts SET reseller_id = NULL;")
        .await
        .expect("clears stored reseller ids");
    let accounts = store.sync_candidates(&SyncScope::All).await.expect("lists");
    assert!(accounts.len() > 30, "the demo's accounts have plans");
    let mut ancestors = AncestorCache::default();
    let mut below_a_reseller = 0;
    for batch in accounts.chunks(3) {
        let (stored, unreadable) = store
            .pricing_inputs_cached(batch, &PendingChange::default(), &mut ancestors)
            .await
            .expect("reads");
        assert!(unreadable.is_empty(), "{unreadable:?}");
        assert_eq!(stored.len(), batch.len());
        for account in stored {
            let node = store
                .account_node(&account.account)
                .await
                .expect("reads")
                .expect("known");
            let alone = node.reseller_id.unwrap_or_else(|| node.id.clone());
            assert_eq!(account.reseller_id, alone, "{}", account.account);
            if !account.billed_by_master {
                below_a_reseller += 1;
            }
        }
    }
    assert!(below_a_reseller > 0, "some accounts are billed by a reseller");
}

on_both_backends!(batches_sharing_the_ancestors_they_read_find_each_account_s_reseller);

/// Sync starts by analysing those of the tables it reads that changed past
/// autovacuum's threshold (`Store::refresh_statistics`): on a first night reconcile
/// has just filled `service_quantities`, which the planner still takes for empty.
#[tokio::test]
async fn sync_analyses_the_quantities_reconcile_has_just_written() {
    let Some(database) = crate::helpers::postgres_store().await else {
        return;
    };
    let store = &database.store;
    seeded(store).await;
    // 2,000 quantities more, of an account without plans; the activity counts are
    // published at once rather than within the server's second.
    store
        .execute_script(
            "INSERT INTO service_quantities (account_id, bucket, category, item, quantity) \
             SELECT 'n', 'manual', 'devices', 'kind_' || g, 1 FROM generate_series(1, 2000) g; \
             SELECT pg_stat_force_next_flush();",
        )
        .await
        .expect("quantities written");
    let estimate = "SELECT reltuples::bigint FROM pg_class WHERE relname = 'service_quantities' AND relkind = 'r'";
    assert!(rows(store, estimate).await < 2_000, "not analysed yet");

    sync_marked(store, T0 + 10).await;

    assert!(rows(store, estimate).await >= 2_000, "analysed by sync");
}
