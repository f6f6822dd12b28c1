//! `tally services explain` and `GET …/services/explain` (issue 15 item 3) on SQLite
//! and PostgreSQL: a known account explained field by field through the binary and
//! through the API, and every line of every demo account re-added to its total.
//!
//! The known account `a` (reseller `r`, master `m`) has two SIP devices, a softphone
//! and 7 manual users. `r` sells `devices` (simple, priority 10) and `extras` (simple,
//! priority 5); `a` has `devices` with a per-plan override `minimum 4`, `extras`, and
//! an account-wide override `sip_device.rate 6`.

use crate::api_support::{get, start_server_with, token};
use crate::demo::load_demo;
use crate::helpers::{at, id, on_both_backends, reconcile_all, TestStore};
use crate::support::decimal;
use rust_decimal::{Decimal, RoundingStrategy};
use serde_json::{json, Value};
use tally::config::Settings;
use tally::demo::DemoSpec;
use tally::domain::summary::GregorianSeconds;
use tally::jobs::context::JobContext;
use tally::ops::{Caller, FixedClock, Operations, WriteMode};
use tally::store::Store;

const T0: i64 = 63_965_851_200;

const DEVICES: &str = r#"{"name": "Devices", "merge": {"strategy": "simple", "priority": 10},
    "plan": {"devices": {"sip_device": {"rate": 5, "activation_charge": 10, "discounts": {"single": {"rate": 1}}},
                         "_all": {"rate": 0.5, "cascade": true, "exceptions": ["sip_device"]}}}}"#;
const EXTRAS: &str = r#"{"name": "Extras", "merge": {"strategy": "simple", "priority": 5},
    "plan": {"devices": {"sip_device": {"rate": 4}}, "users": {"user": {"rates": {"5": 2, "10": 1.5}}}}}"#;

fn ops(store: &Store) -> Operations {
    let context = JobContext::new(store.clone(), Settings::default()).expect("context builds");
    Operations::new(context).with_clock(FixedClock(GregorianSeconds(T0)))
}

/// The known account of the module documentation, set up through the operations.
async fn known_account(store: &Store) {
    let mut sql = String::from(
        "INSERT INTO accounts (id, parent_id, name, is_reseller) VALUES ('m', NULL, 'Master', FALSE);\n\
         INSERT INTO accounts (id, parent_id, name, is_reseller) VALUES ('r', 'm', 'Reseller', TRUE);\n\
         INSERT INTO accounts (id, parent_id, name, is_reseller) VALUES ('a', 'r', 'Acme', FALSE);\n",
    );
    for (plan, document) in [("devices", DEVICES), ("extras", EXTRAS)] {
        sql.push_str(&format!(
            "INSERT INTO service_plans (vendor_id, plan_id, name, description, category, document) \
             VALUES ('r', '{plan}', '{plan}', '', NULL, '{document}');\n"
        ));
    }
    for (device, kind) in [("d1", "sip_device"), ("d2", "sip_device"), ("d3", "softphone")] {
        sql.push_str(&format!(
            "INSERT INTO devices (id, account_id, device_type) VALUES ('{device}', 'a', '{kind}');\n"
        ));
    }
    store.execute_script(&sql).await.expect("seed runs");
    reconcile_all(store, at(T0 - 86_400)).await;

    let ops = ops(store);
    let operator = Caller::operator("alice");
    let a = id("a");
    let per_plan = json!({"overrides": {"plan": {"devices": {"sip_device": {"minimum": 4}}}}});
    ops.assign_plan(&operator, &a, "devices", &per_plan, WriteMode::Replace)
        .await
        .expect("assigns devices");
    ops.assign_plan(&operator, &a, "extras", &json!({}), WriteMode::Replace)
        .await
        .expect("assigns extras");
    let account_wide = json!({"plan": {"devices": {"sip_device": {"rate": 6}}}});
    ops.set_overrides(&operator, &a, &account_wide, WriteMode::Replace)
        .await
        .expect("sets overrides");
    ops.set_manual_quantities(&operator, &a, &json!({"users": {"user": 7}}), WriteMode::Replace)
        .await
        .expect("sets manual users");
}

fn line<'a>(answer: &'a Value, category: &str, item: &str) -> &'a Value {
    answer["invoices"][0]["lines"]
        .as_array()
        .expect("lines")
        .iter()
        .find(|line| line["category"] == category && line["item"] == item)
        .unwrap_or_else(|| panic!("no line {category}.{item} in {answer}"))
}

fn field<'a>(line: &'a Value, path: &str) -> &'a Value {
    line["fields"]
        .as_array()
        .expect("fields")
        .iter()
        .find(|field| field["path"] == path)
        .unwrap_or_else(|| panic!("no field {path} in {line}"))
}

/// The known account's explanation, checked field by field.
fn check_known_account(answer: &Value) {
    assert_eq!(answer["account_id"], "a");
    let invoice = &answer["invoices"][0];
    assert_eq!(invoice["recurring"], json!(34), "23 + 0.5 + 10.5");
    assert_eq!(
        invoice["plans"],
        json!([
            {"id": "devices", "vendor_id": "r", "strategy": "simple", "priority": 10},
            {"id": "extras", "vendor_id": "r", "strategy": "simple", "priority": 5},
        ])
    );

    let sip = line(answer, "devices", "sip_device");
    // The account-wide override reaches both plans; the higher-priority plan's copy wins.
    assert_eq!(
        field(sip, "rate"),
        &json!({"path": "rate", "value": 6, "from": [{"plan": "devices", "vendor_id": "r", "layer": "account_override"}]})
    );
    assert_eq!(
        field(sip, "minimum"),
        &json!({"path": "minimum", "value": 4, "from": [{"plan": "devices", "vendor_id": "r", "layer": "plan_override"}]})
    );
    assert_eq!(
        field(sip, "discounts.single.rate"),
        &json!({"path": "discounts.single.rate", "value": 1, "from": [{"plan": "devices", "vendor_id": "r", "layer": "plan"}]})
    );
    assert_eq!(
        sip["quantity"],
        json!({"value": 2, "counts": "item", "cascade": false, "deleted": false,
               "sources": [{"item": "sip_device", "account": 2, "manual": null, "used": "account"}], "excepted": []})
    );
    assert_eq!(
        sip["billable"],
        json!({"step": 1, "stepped_quantity": 2, "minimum": 4, "maximum": 2, "bound": "minimum", "value": 4})
    );
    assert_eq!(
        sip["rate"],
        json!({"rule": "rate", "threshold": null, "value": 6, "billable": 4})
    );
    assert_eq!(sip["charge"], json!(24));
    assert_eq!(
        sip["discounts"]["single"],
        json!({"outcome": "applied", "rate": 1, "rate_from": "discounts.single.rate"})
    );
    assert_eq!(sip["discounts"]["cumulative"], json!({"outcome": "not_configured"}));
    assert_eq!(sip["activation_charge"], json!(10));
    assert_eq!(
        sip["total"],
        json!({"exact": 23, "rounded": 23, "rounding": "4 places, half away from zero"})
    );

    let all = line(answer, "devices", "_all");
    assert_eq!(
        all["quantity"],
        json!({"value": 1, "counts": "category", "cascade": true, "deleted": false,
               "sources": [{"item": "softphone", "account": 1, "manual": null, "used": "account", "cascade": null}],
               "excepted": ["sip_device"]})
    );
    assert_eq!(all["total"]["rounded"], json!(0.5));

    let users = line(answer, "users", "user");
    assert_eq!(
        users["quantity"]["sources"],
        json!([{"item": "user", "account": null, "manual": 7, "used": "manual"}])
    );
    assert_eq!(
        users["rate"],
        json!({"rule": "rates", "threshold": 10, "value": 1.5, "billable": 7})
    );
    assert_eq!(
        field(users, "rates.\"10\""),
        &json!({"path": "rates.\"10\"", "value": 1.5, "from": [{"plan": "extras", "vendor_id": "r", "layer": "plan"}]})
    );
    assert_eq!(users["total"]["rounded"], json!(10.5));
}

async fn the_cli_explains_the_known_account_field_by_field(test_store: &TestStore) {
    known_account(&test_store.store).await;

    let output = test_store.tally(&["services", "explain", "a", "--json"]);
    assert_eq!(
        output.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let answer: Value = serde_json::from_slice(&output.stdout).expect("JSON");
    check_known_account(&answer);

    let output = test_store.tally(&["services", "explain", "a", "users.user"]);
    assert_eq!(
        output.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(text.contains("users.user \"users/user\": total 10.5"), "{text}");
    assert!(text.contains("quantity 7: the item; user manual 7"), "{text}");
    assert!(text.contains("rate 1.5 (rates tier up to 10 units)"), "{text}");
    assert!(
        text.contains("within the bounds (minimum 0, no maximum)"),
        "a plan without a maximum has none, whatever the quantity: {text}"
    );
    assert!(text.contains("rates.\"10\" = 1.5 ← plan extras"), "{text}");
    assert!(!text.contains("devices.sip_device"), "only the line asked for: {text}");

    let output = test_store.tally(&["services", "explain", "a", "users.nope"]);
    assert_eq!(output.status.code(), Some(65), "an unknown line is a data error");
}

async fn the_api_explains_the_known_account_with_the_services_rights(test_store: &TestStore) {
    let store = &test_store.store;
    known_account(store).await;
    store
        .execute_script("INSERT INTO accounts (id, parent_id, name, is_reseller) VALUES ('s', 'm', 'Sibling', FALSE);")
        .await
        .expect("sibling");
    let (base, server) = start_server_with(ops(store)).await;
    let url = format!("{base}/v2/accounts/a/services/explain");

    let own = token(store, "a", false).await;
    let answer = get(&url, Some(&own)).await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert_eq!(answer.body["status"], "success");
    check_known_account(&answer.body["data"]);

    let reseller = token(store, "r", false).await;
    let one = get(&format!("{url}?item=devices.sip_device"), Some(&reseller)).await;
    assert_eq!(one.status, 200, "{}", one.body);
    let lines = one.body["data"]["invoices"][0]["lines"].as_array().expect("lines");
    assert_eq!(lines.len(), 1);
    assert_eq!(lines[0]["plan_item"], "sip_device");

    let sibling = token(store, "s", false).await;
    assert_eq!(get(&url, Some(&sibling)).await.status, 403, "a foreign account");
    assert_eq!(get(&url, None).await.status, 401);
    assert_eq!(get(&format!("{url}?item=devices"), Some(&own)).await.status, 400);
    server.abort();
}

/// The demo at 40 accounts, loaded and reconciled, and operations over it.
async fn reconciled_demo(store: &Store) -> (tally::demo::DemoData, Operations) {
    let spec = DemoSpec { accounts: 40, seed: 1 };
    load_demo(store, spec).await;
    reconcile_all(store, at(T0)).await;
    (tally::demo::generate(spec), ops(store))
}

/// Every figure of one explained line re-adds to the next, exactly.
fn check_line_readds(line: &Value) -> Decimal {
    let number = |value: &Value| -> Decimal {
        value
            .to_string()
            .parse()
            .unwrap_or_else(|_| panic!("{value} is not a number in {line}"))
    };
    let quantity = &line["quantity"];
    if quantity["deleted"] == false {
        let counted: i64 = quantity["sources"]
            .as_array()
            .expect("sources")
            .iter()
            .map(|source| {
                let own = if source["manual"].is_null() {
                    &source["account"]
                } else {
                    &source["manual"]
                };
                own.as_i64().unwrap_or(0) + source["cascade"].as_i64().unwrap_or(0)
            })
            .sum();
        assert_eq!(json!(counted), quantity["value"], "quantity of {line}");
    }
    let rate = &line["rate"];
    let charge = number(&rate["value"]) * number(&rate["billable"]);
    assert_eq!(charge, number(&line["charge"]), "charge of {line}");
    let discounts = &line["discounts"];
    let mut discount = Decimal::ZERO;
    if discounts["single"]["outcome"] == "applied" {
        discount += number(&discounts["single"]["rate"]);
    }
    if discounts["cumulative"]["outcome"] == "applied" {
        discount += number(&discounts["cumulative"]["quantity"]) * number(&discounts["cumulative"]["rate"]);
    }
    assert_eq!(discount, number(&discounts["exact"]), "discount of {line}");
    let exact = charge - discount;
    assert_eq!(exact, number(&line["total"]["exact"]), "exact total of {line}");
    let rounded = exact.round_dp_with_strategy(4, RoundingStrategy::MidpointAwayFromZero);
    assert_eq!(rounded, number(&line["total"]["rounded"]), "rounded total of {line}");
    rounded
}

async fn every_line_of_every_demo_account_readds_to_its_priced_total(test_store: &TestStore) {
    let (data, ops) = reconciled_demo(&test_store.store).await;
    let operator = Caller::operator("alice");
    let mut lines = 0;
    for account in &data.accounts {
        let account = id(&account.id);
        let explained = ops.explain(&operator, &account, None).await.expect("explains");
        let summary = ops.services_summary(&operator, &account).await.expect("summary");
        let invoices = explained["invoices"].as_array().expect("invoices");
        let priced = summary["invoices"].as_array().expect("invoices");
        assert_eq!(invoices.len(), priced.len(), "{account}");
        for (invoice, priced) in invoices.iter().zip(priced) {
            let items = priced["items"].as_array().expect("items");
            let explained_lines = invoice["lines"].as_array().expect("lines");
            assert_eq!(
                explained_lines.len(),
                items.len(),
                "{account}: one explanation per line"
            );
            let mut sum = Decimal::ZERO;
            for (line, item) in explained_lines.iter().zip(items) {
                let total = check_line_readds(line);
                assert_eq!(Some(total), decimal(&item["total"]), "{account}: the priced line");
                assert_eq!(line["item"], item["item"]);
                sum += total;
                lines += 1;
            }
            assert_eq!(Some(sum), decimal(&priced["summary"]["recurring"]), "{account}");
            assert_eq!(invoice["recurring"], priced["summary"]["recurring"], "{account}");
        }
    }
    assert!(lines > 40, "the demo's accounts have priced lines: {lines}");
}

/// One account's explanation reads the store a fixed number of times: fast at any size.
async fn explaining_one_demo_account_takes_under_50_ms(test_store: &TestStore) {
    let (data, ops) = reconciled_demo(&test_store.store).await;
    let operator = Caller::operator("alice");
    let customer = data
        .accounts
        .iter()
        .rev()
        .find(|account| !account.is_reseller)
        .expect("a customer");
    let account = id(&customer.id);
    ops.explain(&operator, &account, None).await.expect("warms up");
    let runs = 20u32;
    let started = std::time::Instant::now();
    for _ in 0..runs {
        ops.explain(&operator, &account, None).await.expect("explains");
    }
    let each = started.elapsed() / runs;
    eprintln!("explain of one demo account: {each:?} per call");
    assert!(each < std::time::Duration::from_millis(50), "{each:?}");
}

on_both_backends!(@with database => &database;
    the_cli_explains_the_known_account_field_by_field,
    the_api_explains_the_known_account_with_the_services_rights,
    every_line_of_every_demo_account_readds_to_its_priced_total,
    explaining_one_demo_account_takes_under_50_ms,
);
