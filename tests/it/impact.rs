//! A plan change's impact before it is made (issue 15 item 1) on SQLite and
//! PostgreSQL: `tally plans import --dry-run` on the demo writes nothing and lists
//! exactly the accounts, with the same new totals, that the real import and a sync
//! then change; its table and JSON through the binary; `?dry_run=true` on the API's
//! plan and override writes answers the impact and leaves the account as it was.

use crate::api_support::{call, get, post, start_server_with, token};
use crate::demo::load_demo;
use crate::helpers::{at, id, on_both_backends, reconcile_all, TestStore};
use reqwest::Method;
use rust_decimal::Decimal;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use tally::config::Settings;
use tally::demo::{DemoData, DemoSpec};
use tally::domain::changes::FirstCommit;
use tally::domain::summary::GregorianSeconds;
use tally::domain::AccountId;
use tally::jobs::context::JobContext;
use tally::ops::{Caller, FixedClock, Operations};
use tally::store::{Store, SyncScope};
use tokio_util::sync::CancellationToken;

const T0: i64 = 63_965_851_200;

fn ops(store: &Store) -> Operations {
    let context = JobContext::new(store.clone(), Settings::default()).expect("context builds");
    Operations::new(context).with_clock(FixedClock(GregorianSeconds(T0)))
}

async fn sync(store: &Store, scope: SyncScope, now: i64) {
    let context = JobContext::new(store.clone(), Settings::default()).expect("context builds");
    let options = context.sync_options(scope, None, FirstCommit::Baseline, at(now), CancellationToken::new());
    let report = tally::jobs::sync::run_once(store, &options).await.expect("sync runs");
    assert!(report.skipped.is_empty(), "{:?}", report.skipped);
}

/// The demo, reconciled and synced: every account's computed invoices are current.
async fn synced_demo(store: &Store, accounts: u64) -> DemoData {
    let spec = DemoSpec { accounts, seed: 1 };
    load_demo(store, spec).await;
    reconcile_all(store, at(T0)).await;
    sync(store, SyncScope::All, T0).await;
    tally::demo::generate(spec)
}

/// The vendor whose `tiered_users` is assigned to the most accounts, and that plan
/// with its top tier repriced (6 → 7 above 10 users): a change some of its accounts
/// feel and others (10 users or fewer) do not.
fn repriced_tiered_users(data: &DemoData) -> (String, Value) {
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    for assignment in data.assignments.iter().filter(|a| a.plan_id == "tiered_users") {
        *counts.entry(assignment.vendor_id.as_str()).or_default() += 1;
    }
    let (vendor, _) = counts
        .iter()
        .max_by_key(|(vendor, count)| (**count, std::cmp::Reverse(**vendor)))
        .expect("tiered_users is assigned");
    let plan = data
        .plans
        .iter()
        .find(|plan| plan.vendor_id == *vendor && plan.plan_id == "tiered_users")
        .expect("the vendor has the plan");
    let mut document: Value = serde_json::from_str(&plan.document).expect("plan JSON");
    document["id"] = json!("tiered_users");
    document["plan"]["users"]["user"]["rates"]["20"] = json!(7);
    ((*vendor).to_owned(), document)
}

/// Each account's computed recurring total (`None` without invoices), the plan as
/// stored and the accounts marked for repricing: everything a dry run must not touch.
#[derive(Debug, PartialEq)]
struct Written {
    recurring: BTreeMap<AccountId, Option<Decimal>>,
    plan: Option<Value>,
    marked: Vec<AccountId>,
}

async fn written(store: &Store, data: &DemoData, vendor: &str) -> Written {
    let mut recurring = BTreeMap::new();
    for account in &data.accounts {
        let account = id(&account.id);
        let invoices = store.invoice_snapshot(&account, false).await.expect("snapshot");
        let total = (!invoices.is_empty()).then(|| invoices.iter().map(|invoice| invoice.recurring.amount()).sum());
        recurring.insert(account, total);
    }
    let plan = store
        .catalog_plan(vendor, "tiered_users")
        .await
        .expect("reads")
        .map(|plan| plan.document);
    let marked = store.sync_candidates(&SyncScope::Marked).await.expect("marked");
    Written {
        recurring,
        plan,
        marked,
    }
}

fn decimal(value: &Value) -> Decimal {
    value
        .to_string()
        .parse()
        .unwrap_or_else(|_| panic!("{value} is not a number"))
}

async fn a_dry_run_lists_exactly_what_the_import_and_sync_then_change(store: &Store) {
    let data = synced_demo(store, 20).await;
    let (vendor, document) = repriced_tiered_users(&data);
    let ops = ops(store);
    let operator = Caller::operator("alice");
    let before = written(store, &data, &vendor).await;
    assert!(before.marked.is_empty(), "the synced demo has nothing left to reprice");

    let answer = ops
        .import_plans_impact(&operator, &id(&vendor), &document)
        .await
        .expect("dry run");
    assert_eq!(written(store, &data, &vendor).await, before, "a dry run writes nothing");
    assert_eq!(answer["updated"], json!(["tiered_users"]));
    let impact = &answer["impact"];
    let listed: BTreeMap<AccountId, Decimal> = impact["accounts"]
        .as_array()
        .expect("accounts")
        .iter()
        .map(|account| {
            (
                id(account["account_id"].as_str().expect("id")),
                decimal(&account["new_recurring"]),
            )
        })
        .collect();
    let touched = data
        .assignments
        .iter()
        .filter(|a| a.plan_id == "tiered_users" && a.vendor_id == vendor)
        .count();
    assert_eq!(impact["accounts_touched"], json!(touched));
    assert!(
        !listed.is_empty() && listed.len() < touched,
        "the change is felt by some touched accounts, not all: {impact}"
    );
    let differences: Vec<Decimal> = impact["accounts"]
        .as_array()
        .expect("accounts")
        .iter()
        .map(|account| decimal(&account["difference"]).abs())
        .collect();
    assert!(
        differences.windows(2).all(|pair| pair[0] >= pair[1]),
        "largest change first"
    );
    let reseller_sum: Decimal = impact["resellers"]
        .as_array()
        .expect("resellers")
        .iter()
        .map(|reseller| decimal(&reseller["difference"]))
        .sum();
    let account_sum: Decimal = impact["accounts"]
        .as_array()
        .expect("accounts")
        .iter()
        .map(|account| decimal(&account["difference"]))
        .sum();
    assert_eq!(reseller_sum, account_sum, "the reseller sums add up the accounts");

    ops.import_plans(&operator, &id(&vendor), &document)
        .await
        .expect("imports");
    sync(store, SyncScope::Marked, T0 + 60).await;
    let after = written(store, &data, &vendor).await;
    let changed: BTreeMap<AccountId, Decimal> = after
        .recurring
        .iter()
        .filter(|(account, total)| before.recurring[*account] != **total)
        .map(|(account, total)| (account.clone(), total.expect("still invoiced")))
        .collect();
    assert_eq!(
        listed, changed,
        "the dry run listed exactly what sync changed, with its totals"
    );
}

async fn the_cli_prints_the_impact_as_a_table_and_as_json(test_store: &TestStore) {
    let data = synced_demo(&test_store.store, 20).await;
    let (vendor, document) = repriced_tiered_users(&data);
    let file = tempfile::NamedTempFile::new().expect("temp file");
    std::fs::write(file.path(), document.to_string()).expect("written");
    let path = file.path().to_str().expect("UTF-8 path");

    let output = test_store.tally(&["plans", "import", path, "--vendor", &vendor, "--dry-run", "--json"]);
    assert_eq!(
        output.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let answer: Value = serde_json::from_slice(&output.stdout).expect("JSON");
    let accounts = answer["impact"]["accounts"].as_array().expect("accounts");
    assert!(!accounts.is_empty(), "{answer}");
    let first = &accounts[0];
    assert_eq!(first["items"][0]["category"], "users");
    assert_eq!(first["items"][0]["change"], "modified");

    let output = test_store.tally(&["plans", "import", path, "--vendor", &vendor, "--dry-run", "--table"]);
    assert_eq!(
        output.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(
        text.starts_with("dry run, nothing written: plans created none, updated tiered_users, unchanged none"),
        "{text}"
    );
    let row = format!(
        "{:<32}  {:<32}  {:>12}  {:>12}  {:>12}",
        first["account_id"].as_str().expect("id"),
        first["reseller_id"].as_str().expect("id"),
        first["old_recurring"].to_string(),
        first["new_recurring"].to_string(),
        format!("+{}", first["difference"])
    );
    assert!(text.contains(&row), "the largest change as a row {row:?}: {text}");
    assert!(
        text.contains(&format!(
            "    users.user modified: {} -> {}",
            first["items"][0]["old_total"], first["items"][0]["new_total"]
        )),
        "{text}"
    );
    assert!(text.contains("\nper reseller\n"), "{text}");
    let stored = test_store
        .store
        .catalog_plan(&vendor, "tiered_users")
        .await
        .expect("reads")
        .expect("exists");
    assert_ne!(
        stored.document["plan"], document["plan"],
        "the CLI dry run wrote nothing"
    );
}

async fn the_api_dry_run_answers_the_impact_and_changes_nothing(store: &Store) {
    let data = synced_demo(store, 20).await;
    // A customer with the demo's `tiered_users`, `flat_trunks` and `http_dids`.
    let customer = data
        .accounts
        .iter()
        .find(|account| {
            !account.is_reseller
                && data
                    .assignments
                    .iter()
                    .any(|a| a.account_id == account.id && a.plan_id == "flat_trunks")
        })
        .expect("a customer with flat_trunks");
    let master = token(store, &data.accounts[0].id, true).await;
    let (base, server) = start_server_with(ops(store)).await;
    let account_url = format!("{base}/v2/accounts/{}", customer.id);
    let plans_before = get(&format!("{account_url}/services"), Some(&master)).await.body["data"].clone();
    let overrides_before = get(&format!("{account_url}/services/overrides"), Some(&master))
        .await
        .body["data"]
        .clone();
    let revision_before = store.services_revision(&id(&customer.id)).await.expect("revision");

    let removed = call(
        Method::DELETE,
        &format!("{account_url}/service_plans/flat_trunks?dry_run=true"),
        Some(&master),
        None,
        &[],
    )
    .await;
    assert_eq!(removed.status, 200, "{}", removed.body);
    assert_eq!(removed.body["status"], "success");
    let impact = &removed.body["data"];
    assert_eq!(impact["accounts_touched"], json!(1));
    let account = &impact["accounts"][0];
    assert_eq!(account["account_id"], json!(customer.id));
    assert!(
        decimal(&account["difference"]) < Decimal::ZERO,
        "removing a plan lowers the bill: {impact}"
    );
    let trunks = account["items"]
        .as_array()
        .expect("items")
        .iter()
        .find(|item| item["category"] == "limits")
        .unwrap_or_else(|| panic!("the trunk line goes: {impact}"));
    assert_eq!(trunks["change"], "removed");
    assert_eq!(trunks["new_total"], json!(0));

    let raised = post(
        &format!("{account_url}/services/overrides?dry_run=true"),
        Some(&master),
        r#"{"data": {"plan": {"limits": {"twoway_trunks": {"minimum": 100, "flat_rates": {}}}}}}"#,
    )
    .await;
    assert_eq!(raised.status, 200, "{}", raised.body);
    assert!(
        decimal(&raised.body["data"]["accounts"][0]["difference"]) > Decimal::ZERO,
        "{}",
        raised.body
    );

    // A plan not assigned yet: its document is read for the dry run alone.
    let assigned = post(
        &format!("{account_url}/services/did_minimum?dry_run=true"),
        Some(&master),
        r#"{"data": {}}"#,
    )
    .await;
    assert_eq!(assigned.status, 200, "{}", assigned.body);
    let items = assigned.body["data"]["accounts"][0]["items"]
        .as_array()
        .expect("items")
        .clone();
    assert!(
        items.iter().any(|item| item["bookkeeper"]["type"] == "default"
            && item["plan_item"] == "did_us"
            && item["change"] == "created"
            && decimal(&item["new_total"]) >= Decimal::TEN),
        "the DID minimum of 10 is billed on the default invoice: {items:?}"
    );

    let refused = post(
        &format!("{account_url}/services/manual?dry_run=true"),
        Some(&master),
        r#"{"data": {"users": {"user": 3}}}"#,
    )
    .await;
    assert_eq!(
        refused.status, 400,
        "a route without a dry run says so: {}",
        refused.body
    );

    assert_eq!(
        get(&format!("{account_url}/services"), Some(&master)).await.body["data"],
        plans_before
    );
    assert_eq!(
        get(&format!("{account_url}/services/overrides"), Some(&master))
            .await
            .body["data"],
        overrides_before
    );
    assert_eq!(
        store.services_revision(&id(&customer.id)).await.expect("revision"),
        revision_before,
        "nothing was written"
    );
    assert!(store
        .sync_candidates(&SyncScope::Marked)
        .await
        .expect("marked")
        .is_empty());
    server.abort();
}

on_both_backends!(
    a_dry_run_lists_exactly_what_the_import_and_sync_then_change,
    the_api_dry_run_answers_the_impact_and_changes_nothing,
);
on_both_backends!(@with database => &database; the_cli_prints_the_impact_as_a_table_and_as_json);
