//! One nearest-reseller rule (issue 12, deliver 6): billing, top-up and the services
//! operations read an account's reseller through `domain::reseller`, so they agree even
//! where the stored `pvt_reseller_id` and the tree disagree.
//!
//! The tree: master `m` > reseller `r` > customers `stale` and `fresh`. `stale` has a
//! stored reseller id `m` (written before `r` was promoted and never cascaded); the tree
//! alone would say `r`. `fresh` has no stored reseller id. `m` sells `wholesale`, `r`
//! sells `devices`.

use crate::helpers::{at, id, on_both_backends, reconcile_all};
use serde_json::{json, Value};
use tally::config::Settings;
use tally::domain::summary::GregorianSeconds;
use tally::jobs::context::JobContext;
use tally::ops::{Caller, FixedClock, ListQuery, Operations, OpsError, Rights, WriteMode};
use tally::store::Store;

/// 2026-12-30 12:00:00 UTC.
const T0: i64 = 63_965_851_200;

async fn seeded(store: &Store) {
    let plan = r#"{"name": "P", "plan": {"devices": {"sip_device": {"rate": 5}}}}"#;
    let sql = format!(
        "INSERT INTO accounts (id, parent_id, name, is_reseller, reseller_id) VALUES ('m', NULL, 'Master', FALSE, NULL);\n\
         INSERT INTO accounts (id, parent_id, name, is_reseller, reseller_id) VALUES ('r', 'm', 'Reseller', TRUE, 'm');\n\
         INSERT INTO accounts (id, parent_id, name, is_reseller, reseller_id) VALUES ('stale', 'r', 'Stale', FALSE, 'm');\n\
         INSERT INTO accounts (id, parent_id, name, is_reseller, reseller_id) VALUES ('fresh', 'r', 'Fresh', FALSE, NULL);\n\
         INSERT INTO service_plans (vendor_id, plan_id, name, description, category, document) \
             VALUES ('m', 'wholesale', 'wholesale', '', NULL, '{plan}');\n\
         INSERT INTO service_plans (vendor_id, plan_id, name, description, category, document) \
             VALUES ('r', 'devices', 'devices', '', NULL, '{plan}');\n"
    );
    store.execute_script(&sql).await.expect("seed runs");
    reconcile_all(store, at(T0 - 86_400)).await;
}

fn ops(store: &Store) -> Operations {
    let context = JobContext::new(store.clone(), Settings::default()).expect("context builds");
    Operations::new(context).with_clock(FixedClock(GregorianSeconds(T0)))
}

fn token(account: &str) -> Caller {
    Caller {
        rights: Rights::Token {
            account: id(account),
            super_admin: false,
        },
        audit: json!({"crossbar_request": true, "authentication": {"type": "x-auth-token", "account_id": account}}),
    }
}

/// Every face's answer to "who is this account's reseller, and is it billed by the master".
async fn seen_by_every_face(store: &Store, account: &str) -> Vec<(&'static str, Value)> {
    let ops = ops(store);
    let operator = Caller::operator("alice");
    let (billing, unreadable) = store.pricing_inputs(&[id(account)]).await.expect("billing reads");
    assert!(unreadable.is_empty(), "{unreadable:?}");
    let billing = billing.into_iter().next().expect("billing reads the account");
    let (topup, unreadable) = store
        .topup_accounts(Some(&[id(account)]), at(T0 - 86_400))
        .await
        .expect("top-up reads");
    assert!(unreadable.is_empty(), "{unreadable:?}");
    let topup = topup.into_iter().next().expect("top-up reads the account");
    let node = store
        .account_node(&id(account))
        .await
        .expect("node reads")
        .expect("account known");
    let current = ops
        .current_services(&operator, &id(account))
        .await
        .expect("services read");
    let summary = ops
        .services_summary(&operator, &id(account))
        .await
        .expect("summary reads");
    let mut query = ListQuery::new();
    query.paginate = false;
    let available = ops
        .available_plans(&operator, &id(account), &query)
        .await
        .expect("available plans list");
    let offered: Vec<Value> = available.rows.iter().map(|row| row["id"].clone()).collect();
    vec![
        ("billing reseller", json!(billing.reseller_id.as_str())),
        ("billing billed by master", json!(billing.billed_by_master)),
        ("top-up billed by master", json!(topup.billed_by_master)),
        ("node reseller", json!(node.reseller_id.as_ref().map(|id| id.as_str()))),
        ("services reseller_id", current["reseller_id"].clone()),
        ("summary reseller", summary["reseller"]["id"].clone()),
        ("available plans", json!(offered)),
    ]
}

async fn a_stored_reseller_id_that_disagrees_with_the_tree_wins_everywhere(store: &Store) {
    seeded(store).await;

    assert_eq!(
        seen_by_every_face(store, "stale").await,
        vec![
            ("billing reseller", json!("m")),
            ("billing billed by master", json!(true)),
            ("top-up billed by master", json!(true)),
            ("node reseller", json!("m")),
            ("services reseller_id", json!("m")),
            ("summary reseller", json!("m")),
            ("available plans", json!(["wholesale"])),
        ]
    );

    // The reseller-only rule follows the same reseller: the master may assign, the
    // tree's nearest reseller may not.
    let ops = ops(store);
    let refused = ops
        .assign_plan(&token("r"), &id("stale"), "devices", &json!({}), WriteMode::Replace)
        .await;
    assert!(matches!(refused, Err(OpsError::Forbidden)), "{refused:?}");
    let plans = ops
        .assign_plan(&token("m"), &id("stale"), "wholesale", &json!({}), WriteMode::Replace)
        .await
        .expect("the stored reseller assigns");
    assert_eq!(plans, json!({"wholesale": {"vendor_id": "m", "overrides": {}}}));
}

async fn without_a_stored_reseller_id_the_nearest_flagged_ancestor_wins_everywhere(store: &Store) {
    seeded(store).await;

    assert_eq!(
        seen_by_every_face(store, "fresh").await,
        vec![
            ("billing reseller", json!("r")),
            ("billing billed by master", json!(false)),
            ("top-up billed by master", json!(false)),
            ("node reseller", json!("r")),
            ("services reseller_id", json!("r")),
            ("summary reseller", json!("r")),
            ("available plans", json!(["devices"])),
        ]
    );

    let ops = ops(store);
    let refused = ops
        .assign_plan(&token("m"), &id("fresh"), "wholesale", &json!({}), WriteMode::Replace)
        .await;
    assert!(matches!(refused, Err(OpsError::Forbidden)), "{refused:?}");
    let plans = ops
        .assign_plan(&token("r"), &id("fresh"), "devices", &json!({}), WriteMode::Replace)
        .await
        .expect("the nearest reseller assigns");
    assert_eq!(plans, json!({"devices": {"vendor_id": "r", "overrides": {}}}));
}

async fn the_master_is_its_own_reseller_for_billing_and_top_up(store: &Store) {
    seeded(store).await;
    store
        .execute_script("UPDATE accounts SET reseller_id = 'r' WHERE id = 'm';")
        .await
        .expect("update runs");

    let (billing, _) = store.pricing_inputs(&[id("m")]).await.expect("billing reads");
    assert_eq!(billing[0].reseller_id.as_str(), "m");
    assert!(billing[0].billed_by_master);
    let (topup, _) = store
        .topup_accounts(Some(&[id("m")]), at(T0 - 86_400))
        .await
        .expect("top-up reads");
    assert!(topup[0].billed_by_master);
    let node = store.account_node(&id("m")).await.expect("node reads").expect("known");
    assert_eq!(
        node.reseller_id, None,
        "no account above the master holds reseller rights on it"
    );
}

on_both_backends!(
    a_stored_reseller_id_that_disagrees_with_the_tree_wins_everywhere,
    without_a_stored_reseller_id_the_nearest_flagged_ancestor_wins_everywhere,
    the_master_is_its_own_reseller_for_billing_and_top_up,
);
