//! Issue 12: per-plan overrides follow Kazoo (`plans.md` §6 "Where a `null` acts") on
//! the database path, against SQLite and PostgreSQL.
//!
//! Reseller `r` sells plan `p` (`sip_device {rate 5, minimum 10}`) to three accounts
//! with three SIP devices each: `per_plan` nulls the minimum in its per-plan overrides
//! (Kazoo keeps the plan's minimum: 50), `account_wide` nulls it account-wide (3 × 5 =
//! 15), and `both` has an account-wide minimum of 20 that its per-plan null removes
//! (the plan's minimum is back: 50). `fresh` has three SIP devices and no plan, for
//! the operations layer's quote and assignment and for deliver 5's labels.

use crate::helpers::{at, id, on_both_backends, reconcile_all};
use serde_json::{json, Value};
use tally::config::Settings;
use tally::domain::changes::FirstCommit;
use tally::domain::merge::StrategyPriorities;
use tally::domain::summary::GregorianSeconds;
use tally::jobs::context::JobContext;
use tally::jobs::sync::{self, SyncOptions};
use tally::ops::{Caller, FixedClock, Operations, WriteMode};
use tally::store::{Store, SyncScope};

const T0: i64 = 63_900_000_000;
const PLAN: &str = r#"{"name": "Devices", "plan": {"devices": {"sip_device": {"rate": 5, "minimum": 10}}}}"#;
const NULL_MINIMUM: &str = r#"{"plan": {"devices": {"sip_device": {"minimum": null}}}}"#;
const MINIMUM_20: &str = r#"{"plan": {"devices": {"sip_device": {"minimum": 20}}}}"#;

fn seed_sql() -> String {
    let mut sql = String::from(
        "INSERT INTO accounts (id, parent_id, name, is_reseller) VALUES ('m', NULL, 'Master', FALSE);\n\
         INSERT INTO accounts (id, parent_id, name, is_reseller) VALUES ('r', 'm', 'Reseller', TRUE);\n",
    );
    sql.push_str(&format!(
        "INSERT INTO service_plans (vendor_id, plan_id, name, document) VALUES ('r', 'p', 'Devices', '{PLAN}');\n"
    ));
    // (account, account-wide overrides, per-plan overrides)
    let accounts = [
        ("per_plan", "{}", NULL_MINIMUM),
        ("account_wide", NULL_MINIMUM, "{}"),
        ("both", MINIMUM_20, NULL_MINIMUM),
    ];
    // `fresh` has devices and no plan: the operations tests assign and quote on it.
    sql.push_str("INSERT INTO accounts (id, parent_id, name, is_reseller) VALUES ('fresh', 'r', 'fresh', FALSE);\n");
    for index in 0..3 {
        sql.push_str(&format!(
            "INSERT INTO devices (id, account_id, device_type) VALUES ('fresh-{index}', 'fresh', 'sip_device');\n"
        ));
    }
    for (account, account_wide, per_plan) in accounts {
        sql.push_str(&format!(
            "INSERT INTO accounts (id, parent_id, name, is_reseller) VALUES ('{account}', 'r', '{account}', FALSE);\n\
             INSERT INTO services (account_id, overrides) VALUES ('{account}', '{account_wide}');\n\
             INSERT INTO service_plan_assignments (account_id, plan_id, vendor_id, position, overrides) \
             VALUES ('{account}', 'p', 'r', 0, '{per_plan}');\n"
        ));
        for index in 0..3 {
            sql.push_str(&format!(
                "INSERT INTO devices (id, account_id, device_type) VALUES ('{account}-{index}', '{account}', 'sip_device');\n"
            ));
        }
    }
    sql
}

fn sync_options(now: i64) -> SyncOptions {
    SyncOptions {
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
    }
}

async fn recurring(store: &Store, account: &str) -> String {
    let invoices = store.invoice_snapshot(&id(account), false).await.expect("reads");
    assert_eq!(invoices.len(), 1, "{account} has one invoice");
    invoices[0].recurring.to_string()
}

async fn a_per_plan_null_never_deletes_the_plan_value_in_the_database_path(store: &Store) {
    store.execute_script(&seed_sql()).await.expect("seed runs");
    reconcile_all(store, at(T0)).await;
    sync::run_once(store, &sync_options(T0 + 10)).await.expect("sync runs");

    assert_eq!(recurring(store, "per_plan").await, "50", "the plan's minimum stays");
    assert_eq!(
        recurring(store, "account_wide").await,
        "15",
        "an account-wide null deletes it"
    );
    assert_eq!(
        recurring(store, "both").await,
        "50",
        "the per-plan null removes only the account-wide minimum"
    );
}

fn operations(store: &Store) -> Operations {
    let context = JobContext::new(store.clone(), Settings::default()).expect("context builds");
    Operations::new(context).with_clock(FixedClock(GregorianSeconds(T0 + 20)))
}

fn sip_device_item(invoices: &Value) -> Value {
    invoices["invoices"][0]["items"]
        .as_array()
        .expect("items")
        .iter()
        .find(|item| item["plan_item"] == "sip_device")
        .cloned()
        .unwrap_or_else(|| panic!("no sip_device in {invoices}"))
}

/// The quote the API answers (`POST .../services/quote`) and an assignment through the
/// operations layer price the issue's example 50 too.
async fn the_api_quote_and_an_assignment_keep_the_plan_minimum(store: &Store) {
    store.execute_script(&seed_sql()).await.expect("seed runs");
    reconcile_all(store, at(T0)).await;
    let ops = operations(store);
    let per_plan_null: Value = serde_json::from_str(NULL_MINIMUM).expect("json");
    let caller = Caller::operator("alice");

    let quote = ops
        .quote(
            &caller,
            Some(&id("fresh")),
            &json!({"plans": [{"id": "p", "overrides": per_plan_null}]}),
        )
        .await
        .expect("quotes");
    let sip_device = sip_device_item(&quote);
    assert_eq!(
        (sip_device["quantity"].clone(), sip_device["billable"].clone()),
        (json!(3), json!(10))
    );
    assert_eq!(quote["invoices"][0]["summary"]["recurring"], json!(50));

    ops.assign_plan(
        &caller,
        &id("fresh"),
        "p",
        &json!({"overrides": per_plan_null}),
        WriteMode::Replace,
    )
    .await
    .expect("assigns");
    sync::run_once(store, &sync_options(T0 + 30)).await.expect("sync runs");
    assert_eq!(recurring(store, "fresh").await, "50");
}

/// Deliver 5 on the stored path: a plan whose item has a numeric name and an empty
/// `as` is accepted on import and invoiced under the item's own key.
async fn a_numeric_name_and_an_empty_as_are_accepted_and_invoiced(store: &Store) {
    store.execute_script(&seed_sql()).await.expect("seed runs");
    reconcile_all(store, at(T0)).await;
    let ops = operations(store);
    let caller = Caller::operator("alice");
    let documents = json!([{"id": "labelled", "name": "Labelled",
        "plan": {"devices": {"sip_device": {"rate": 2, "name": 42, "as": "NULL"}}}}]);
    let report = ops.import_plans(&caller, &id("r"), &documents).await.expect("imports");
    assert_eq!(report.created, ["labelled"]);
    ops.assign_plan(&caller, &id("fresh"), "labelled", &json!({}), WriteMode::Replace)
        .await
        .expect("assigns");

    sync::run_once(store, &sync_options(T0 + 30)).await.expect("sync runs");
    let invoices = store.invoice_snapshot(&id("fresh"), false).await.expect("reads");
    let sip_device = &invoices[0].items[0];
    assert_eq!(
        (sip_device.item.as_str(), sip_device.name.as_str()),
        ("sip_device", "42")
    );
    assert_eq!(invoices[0].recurring.to_string(), "6");
}

on_both_backends!(
    a_per_plan_null_never_deletes_the_plan_value_in_the_database_path,
    the_api_quote_and_an_assignment_keep_the_plan_minimum,
    a_numeric_name_and_an_empty_as_are_accepted_and_invoiced,
);
