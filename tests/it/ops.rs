//! The operations layer (issue 6) on SQLite and PostgreSQL: every operation's happy
//! path, its permission rules and its input errors, with the audit rows it writes.
//!
//! The tree: master `m` > reseller `r` > customers `a`, `b`; and another branch,
//! master `m` > reseller `s` > customer `x`. `r` sells `devices` and `extras`; `m`
//! sells `wholesale`. `a` has two SIP devices and one softphone.

use crate::helpers::{at, id, on_both_backends, reconcile_all};
use serde_json::{json, Value};
use tally::config::Settings;
use tally::domain::summary::GregorianSeconds;
use tally::domain::AccountId;
use tally::jobs::context::JobContext;
use tally::ops::{Caller, FixedClock, ListQuery, Operations, OpsError, Rights, WriteMode};
use tally::store::Store;

/// 2026-12-30 12:00:00 UTC.
const T0: i64 = 63_965_851_200;
const DAY: i64 = 86_400;

const DEVICES: &str = r#"{"name": "Devices", "description": "Per device", "category": "voice",
    "plan": {"devices": {"sip_device": {"rate": 5, "activation_charge": 10}, "softphone": {"rate": 1.25}}}}"#;
const EXTRAS: &str = r#"{"name": "Extras", "plan": {"users": {"user": {"rate": 2}}}}"#;
const WHOLESALE: &str = r#"{"name": "Wholesale", "plan": {"devices": {"_all": {"rate": 0.5, "cascade": true}}}}"#;

async fn seeded(store: &Store) {
    let mut sql = String::from(
        "INSERT INTO accounts (id, parent_id, name, is_reseller) VALUES ('m', NULL, 'Master', FALSE);\n\
         INSERT INTO accounts (id, parent_id, name, is_reseller) VALUES ('r', 'm', 'Reseller', TRUE);\n\
         INSERT INTO accounts (id, parent_id, name, is_reseller) VALUES ('a', 'r', 'Acme', FALSE);\n\
         INSERT INTO accounts (id, parent_id, name, is_reseller) VALUES ('b', 'r', 'Bolt', FALSE);\n\
         INSERT INTO accounts (id, parent_id, name, is_reseller) VALUES ('s', 'm', 'Second', TRUE);\n\
         INSERT INTO accounts (id, parent_id, name, is_reseller) VALUES ('x', 's', 'Xeno', FALSE);\n",
    );
    for (vendor, plan, document) in [
        ("r", "devices", DEVICES),
        ("r", "extras", EXTRAS),
        ("m", "wholesale", WHOLESALE),
    ] {
        sql.push_str(&format!(
            "INSERT INTO service_plans (vendor_id, plan_id, name, description, category, document) \
             VALUES ('{vendor}', '{plan}', '{plan}', '', NULL, '{document}');\n"
        ));
    }
    for (device, kind) in [("d1", "sip_device"), ("d2", "sip_device"), ("d3", "softphone")] {
        sql.push_str(&format!(
            "INSERT INTO devices (id, account_id, device_type) VALUES ('{device}', 'a', '{kind}');\n"
        ));
    }
    store.execute_script(&sql).await.expect("seed runs");
    reconcile_all(store, at(T0 - DAY)).await;
}

fn ops(store: &Store, now: i64) -> Operations {
    let context = JobContext::new(store.clone(), Settings::default()).expect("context builds");
    Operations::new(context).with_clock(FixedClock(GregorianSeconds(now)))
}

fn token(account: &str, super_admin: bool) -> Caller {
    Caller {
        rights: Rights::Token {
            account: id(account),
            super_admin,
        },
        audit: json!({"crossbar_request": true, "authentication": {"type": "x-auth-token", "account_id": account}}),
    }
}

fn alice() -> Caller {
    Caller::operator("alice")
}

fn forbidden<T: std::fmt::Debug>(result: Result<T, OpsError>) {
    assert!(
        matches!(result, Err(OpsError::Forbidden)),
        "expected 403, got {result:?}"
    );
}

fn field_error<T: std::fmt::Debug>(result: Result<T, OpsError>, field: &str) {
    match result {
        Err(OpsError::Validation(fields)) => assert!(
            fields.iter().any(|error| error.field == field),
            "expected an error on {field}, got {fields:?}"
        ),
        other => panic!("expected a validation error on {field}, got {other:?}"),
    }
}

fn a() -> AccountId {
    id("a")
}

async fn audit_rows(ops: &Operations, account: &str) -> Vec<Value> {
    let mut query = ListQuery::new();
    query.paginate = false;
    ops.audit_logs(&alice(), &id(account), &query)
        .await
        .expect("audit lists")
        .rows
}

async fn assigning_a_plan_prices_the_account_and_the_audit_log_names_who(store: &Store) {
    seeded(store).await;
    let ops = ops(store, T0);

    let plans = ops
        .assign_plan(&alice(), &a(), "devices", &json!({}), WriteMode::Replace)
        .await
        .expect("assigns");
    assert_eq!(plans, json!({"devices": {"vendor_id": "r", "overrides": {}}}));
    assert_eq!(ops.services_plans(&alice(), &a()).await.expect("reads"), plans);

    let rows = audit_rows(&ops, "a").await;
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(rows[0]["status"], json!("completed"), "default bookkeeper");
    assert_eq!(rows[0]["summary"]["recurring"], json!(11.25));
    let log = ops
        .audit_log(&alice(), &a(), rows[0]["id"].as_str().expect("id"))
        .await
        .expect("fetches");
    assert_eq!(log["audit"]["agent"], json!({"type": "operator", "user": "alice"}));
    assert_eq!(log["audit"]["account"]["id"], json!("a"));
    assert_eq!(log["invoice"]["summary"]["recurring"], json!(11.25));

    let summary = ops.services_summary(&alice(), &a()).await.expect("summary");
    assert_eq!(summary["plans"], plans);
    assert_eq!(summary["invoices"][0]["summary"]["recurring"], json!(11.25));
    assert_eq!(summary["invoices"][0]["summary"]["today"], json!(0));
    assert_eq!(
        summary["quantities"]["account"]["devices"],
        json!({"sip_device": 2, "softphone": 1})
    );
    assert_eq!(summary["reseller"], json!({"id": "r", "is_reseller": false}));
    // 2027-01-01T00:00:00Z.
    assert_eq!(summary["billing_cycle"]["next"], json!(63_965_980_800i64));
    assert_eq!(summary["status"]["acceptable"], json!(true));

    // Merging overrides onto the assignment, a minute later, then removing it.
    let ops = self::ops(store, T0 + 60);
    let merged = ops
        .assign_plan(
            &alice(),
            &a(),
            "devices",
            &json!({"overrides": {"plan": {"devices": {"sip_device": {"rate": 4}}}}}),
            WriteMode::Merge,
        )
        .await
        .expect("re-assigns");
    assert_eq!(
        merged["devices"]["overrides"]["plan"]["devices"]["sip_device"]["rate"],
        json!(4)
    );
    let rows = audit_rows(&ops, "a").await;
    assert_eq!(rows.len(), 2, "the rate change is a second audit log");
    assert_eq!(rows[0]["summary"]["recurring"], json!(9.25), "newest first");

    assert_eq!(
        ops.unassign_plan(&alice(), &a(), "devices").await.expect("unassigns"),
        json!({})
    );
    assert!(matches!(
        ops.unassign_plan(&alice(), &a(), "devices").await,
        Err(OpsError::PlanNotAssigned { .. })
    ));
    assert!(matches!(
        ops.assign_plan(&alice(), &a(), "nope", &json!({}), WriteMode::Replace).await,
        Err(OpsError::BadIdentifier { cause }) if cause == "nope"
    ));
}

async fn updating_services_checks_deletions_additions_and_billing_ids_in_order(store: &Store) {
    seeded(store).await;
    let ops = ops(store, T0);

    let plans = ops
        .update_services(
            &alice(),
            &a(),
            &json!({"add": ["devices", {"id": "extras", "overrides": {"plan": {"users": {"user": {"rate": 3}}}}}],
                    "overrides": {"plan": {"devices": {"softphone": {"rate": 2}}}}}),
            WriteMode::Replace,
        )
        .await
        .expect("updates");
    let order: Vec<&String> = plans.as_object().expect("map").keys().collect();
    assert_eq!(order, ["devices", "extras"], "assignment order is kept");
    assert_eq!(
        ops.overrides(&alice(), &a()).await.expect("reads"),
        json!({"plan": {"devices": {"softphone": {"rate": 2}}}})
    );

    assert!(matches!(
        ops.update_services(&alice(), &a(), &json!({"delete": ["wholesale"], "add": ["nope"]}), WriteMode::Replace)
            .await,
        Err(OpsError::PlanNotAssigned { plan }) if plan == "wholesale"
    ));
    assert!(matches!(
        ops.update_services(&alice(), &a(), &json!({"plans": ["nope"]}), WriteMode::Replace).await,
        Err(OpsError::BadIdentifier { cause }) if cause == "nope"
    ));
    assert!(matches!(
        ops.update_services(&alice(), &a(), &json!({"billing_id": "b"}), WriteMode::Replace)
            .await,
        Err(OpsError::InvalidBillingId { .. })
    ));
    field_error(
        ops.update_services(&alice(), &a(), &json!({"add": "devices"}), WriteMode::Replace)
            .await,
        "add",
    );
    field_error(
        ops.update_services(
            &alice(),
            &a(),
            &json!({"add": [{"vendor_id": "r"}]}),
            WriteMode::Replace,
        )
        .await,
        "add.0.id",
    );
    ops.update_services(&alice(), &a(), &json!({"billing_id": "r"}), WriteMode::Replace)
        .await
        .expect("the parent is a valid billing id");
    let current = ops.current_services(&alice(), &a()).await.expect("current");
    assert_eq!(current["billing_id"], json!("r"));
    assert_eq!(current["reseller_id"], json!("r"));
    assert_eq!(current["items"]["devices"]["softphone"]["rate"], json!(2));
    assert_eq!(current["items"]["users"]["user"]["quantity"], json!(0), "no users yet");

    let after_delete = ops
        .update_services(&alice(), &a(), &json!({"delete": ["extras"]}), WriteMode::Replace)
        .await
        .expect("deletes");
    assert_eq!(after_delete.as_object().expect("map").len(), 1);
}

async fn tokens_act_on_their_tree_only(store: &Store) {
    seeded(store).await;
    let ops = ops(store, T0);
    let assign = json!({"add": ["devices"]});

    // Access: the account itself, its ancestors' tokens, super admins.
    ops.services_plans(&token("a", false), &a()).await.expect("itself");
    ops.services_plans(&token("r", false), &a())
        .await
        .expect("its reseller");
    ops.services_plans(&token("m", false), &a()).await.expect("the master");
    forbidden(ops.services_plans(&token("s", false), &a()).await);
    forbidden(ops.services_plans(&token("x", false), &a()).await);
    forbidden(ops.services_plans(&token("b", false), &a()).await);
    forbidden(ops.services_plans(&token("a", false), &id("r")).await);
    ops.services_plans(&token("x", true), &a())
        .await
        .expect("a super admin");
    // Whether an account exists is not revealed outside one's tree (issue 12): a
    // missing account is refused like a foreign one; a super admin learns it is missing.
    forbidden(ops.services_plans(&token("r", false), &id("ghost")).await);
    assert!(matches!(
        ops.services_plans(&token("x", true), &id("ghost")).await,
        Err(OpsError::BadIdentifier { cause }) if cause == "ghost"
    ));

    // Reseller-only: the account's reseller, never the account or another ancestor.
    forbidden(
        ops.update_services(&token("a", false), &a(), &assign, WriteMode::Replace)
            .await,
    );
    forbidden(
        ops.update_services(&token("m", false), &a(), &assign, WriteMode::Replace)
            .await,
    );
    forbidden(
        ops.set_manual_quantities(&token("a", false), &a(), &json!({}), WriteMode::Replace)
            .await,
    );
    forbidden(
        ops.set_overrides(&token("a", false), &a(), &json!({}), WriteMode::Replace)
            .await,
    );
    forbidden(ops.reconcile_account(&token("a", false), &a()).await);
    forbidden(ops.synchronize_account(&token("s", false), &a()).await);
    ops.update_services(&token("r", false), &a(), &assign, WriteMode::Replace)
        .await
        .expect("the reseller assigns");
    let log = audit_rows(&ops, "a").await;
    let fetched = ops
        .audit_log(&token("a", false), &a(), log[0]["id"].as_str().expect("id"))
        .await
        .expect("the account reads its own audit log");
    assert_eq!(fetched["audit"]["crossbar_request"], json!(true));
    assert_eq!(fetched["audit"]["authentication"]["account_id"], json!("r"));

    // Super admin only.
    forbidden(
        ops.set_services_status(&token("r", false), &a(), &json!({"in_good_standing": false}))
            .await,
    );
    forbidden(
        ops.override_service_plans(&token("r", false), &a(), &json!({"overrides": {}}))
            .await,
    );
    forbidden(ops.quote(&token("r", false), None, &json!({"plans": []})).await);
    ops.editable(&token("x", false), None).await.expect("any caller");
    // Top-up needs access only: the account itself may top up.
    forbidden(ops.topup(&token("s", false), &a(), &json!({"amount": 10})).await);
}

async fn standing_is_read_and_set_by_a_super_admin(store: &Store) {
    seeded(store).await;
    let ops = ops(store, T0);
    assert_eq!(
        ops.services_status(&token("a", false), &a()).await.expect("reads"),
        json!({"in_good_standing": true})
    );
    let set = ops
        .set_services_status(
            &token("m", true),
            &a(),
            &json!({"in_good_standing": "false", "reason": "unpaid", "reason_code": 402}),
        )
        .await
        .expect("sets");
    assert_eq!(
        set,
        json!({"in_good_standing": false, "reason": "unpaid", "reason_code": 402})
    );
    assert_eq!(ops.services_status(&alice(), &a()).await.expect("reads"), set);
    let summary = ops.services_summary(&alice(), &a()).await.expect("summary");
    assert_eq!(summary["status"]["acceptable"], json!(true), "no plans: acceptable");
    field_error(
        ops.set_services_status(&alice(), &a(), &json!({"reason": "x"})).await,
        "in_good_standing",
    );
    field_error(
        ops.set_services_status(&alice(), &a(), &json!({"in_good_standing": "maybe"}))
            .await,
        "in_good_standing",
    );
    let good = ops
        .set_services_status(&alice(), &a(), &json!({"in_good_standing": true}))
        .await
        .expect("sets");
    assert_eq!(good, json!({"in_good_standing": true}));
}

async fn manual_quantities_are_replaced_merged_and_checked(store: &Store) {
    seeded(store).await;
    let ops = ops(store, T0);
    ops.assign_plan(&alice(), &a(), "extras", &json!({}), WriteMode::Replace)
        .await
        .expect("assigns");
    let ops = self::ops(store, T0 + 60);
    let set = ops
        .set_manual_quantities(
            &alice(),
            &a(),
            &json!({"users": {"user": 3}, "spacely": {"sprockets": 1}}),
            WriteMode::Replace,
        )
        .await
        .expect("sets");
    assert_eq!(set, json!({"spacely": {"sprockets": 1}, "users": {"user": 3}}));
    let rows = audit_rows(&ops, "a").await;
    assert_eq!(rows[0]["summary"]["recurring"], json!(6), "3 manual users at 2");
    assert_eq!(rows[0]["type"], json!(["manual"]));
    assert_eq!(rows[1].get("type"), None, "a plan change has no bucket");

    let patched = ops
        .set_manual_quantities(
            &alice(),
            &a(),
            &json!({"spacely": {"sprockets": null}, "users": {"admin": 1}}),
            WriteMode::Merge,
        )
        .await
        .expect("merges");
    assert_eq!(patched, json!({"users": {"admin": 1, "user": 3}}));
    assert_eq!(ops.manual_quantities(&alice(), &a()).await.expect("reads"), patched);

    field_error(
        ops.set_manual_quantities(&alice(), &a(), &json!({"users": {"user": -1}}), WriteMode::Replace)
            .await,
        "users.user",
    );
    field_error(
        ops.set_manual_quantities(&alice(), &a(), &json!({"users": {"user": 1.5}}), WriteMode::Replace)
            .await,
        "users.user",
    );
    field_error(
        ops.set_manual_quantities(&alice(), &a(), &json!({"users": 4}), WriteMode::Replace)
            .await,
        "users",
    );
    field_error(
        ops.set_manual_quantities(&alice(), &a(), &json!([1]), WriteMode::Replace)
            .await,
        "data",
    );
    assert_eq!(
        ops.manual_quantities(&alice(), &a()).await.expect("reads"),
        patched,
        "nothing lost"
    );

    let cleared = ops
        .set_manual_quantities(&alice(), &a(), &json!({}), WriteMode::Replace)
        .await
        .expect("an empty object clears");
    assert_eq!(cleared, json!({}));
}

async fn overrides_are_replaced_merged_and_checked(store: &Store) {
    seeded(store).await;
    let ops = ops(store, T0);
    let first = ops
        .set_overrides(
            &alice(),
            &a(),
            &json!({"plan": {"devices": {"sip_device": {"rate": 12}}}, "bookkeeper": {"type": "default"}}),
            WriteMode::Replace,
        )
        .await
        .expect("sets");
    let merged = ops
        .set_overrides(
            &alice(),
            &a(),
            &json!({"plan": {"devices": {"softphone": {"rate": 1}}}, "bookkeeper": null}),
            WriteMode::Merge,
        )
        .await
        .expect("merges");
    assert_eq!(
        merged,
        json!({"plan": {"devices": {"sip_device": {"rate": 12}, "softphone": {"rate": 1}}}})
    );
    assert_ne!(first, merged);
    let replaced = ops
        .set_overrides(&alice(), &a(), &json!({"plan": {}}), WriteMode::Replace)
        .await
        .expect("replaces");
    assert_eq!(replaced, json!({"plan": {}}));
    field_error(
        ops.set_overrides(
            &alice(),
            &a(),
            &json!({"plan": {"devices": {"sip_device": {"rate": "lots"}}}}),
            WriteMode::Replace,
        )
        .await,
        "plan.devices.sip_device.rate",
    );
    field_error(
        ops.set_overrides(
            &alice(),
            &a(),
            &json!({"merge": {"strategy": "random"}}),
            WriteMode::Replace,
        )
        .await,
        "merge.strategy",
    );
    assert_eq!(
        ops.overrides(&alice(), &a()).await.expect("reads"),
        replaced,
        "nothing lost"
    );
}

async fn a_quote_prices_a_hypothetical_plan_set_and_saves_nothing(store: &Store) {
    seeded(store).await;
    let ops = ops(store, T0);
    ops.assign_plan(&alice(), &a(), "extras", &json!({}), WriteMode::Replace)
        .await
        .expect("assigns");
    let logs_before = audit_rows(&ops, "a").await.len();

    let quote = ops
        .quote(&token("a", false), Some(&a()), &json!({"plans": ["devices", "ghost"]}))
        .await
        .expect("quotes");
    let invoice = &quote["invoices"][0];
    assert_eq!(invoice["summary"]["recurring"], json!(11.25));
    assert_eq!(
        invoice["summary"]["today"],
        json!(20),
        "two new SIP devices at 10 activation"
    );
    let sip = invoice["items"]
        .as_array()
        .expect("items")
        .iter()
        .find(|item| item["item"] == "sip_device")
        .expect("sip item");
    assert_eq!(sip["changes"]["type"], json!("created"));
    assert_eq!(quote["warnings"], json!(["plan ghost not found; ignored"]));
    assert_eq!(quote["plans"].as_object().expect("map").len(), 1);

    assert_eq!(audit_rows(&ops, "a").await.len(), logs_before, "no audit log");
    assert_eq!(
        ops.services_plans(&alice(), &a()).await.expect("reads"),
        json!({"extras": {"vendor_id": "r", "overrides": {}}}),
        "nothing saved"
    );

    let accountless = ops
        .quote(
            &token("m", true),
            None,
            &json!({"plans": [{"id": "wholesale", "vendor_id": "m"}]}),
        )
        .await
        .expect("a super admin quotes without an account");
    assert_eq!(
        accountless["invoices"][0]["summary"],
        json!({"today": 0, "recurring": 0}),
        "no quantities without an account"
    );
    field_error(ops.quote(&alice(), Some(&a()), &json!({"plans": 3})).await, "plans");
}

async fn plans_are_imported_listed_and_offered(store: &Store) {
    seeded(store).await;
    let ops = ops(store, T0);
    let documents = json!([
        {"_id": "gold", "name": "Gold", "description": "All in", "category": "bundles",
         "plan": {"users": {"_all": {"rate": 9}}}},
        {"id": "silver", "name": "Silver", "plan": {"users": {"_all": {"rate": 4}}}}
    ]);
    let report = ops.import_plans(&alice(), &id("r"), &documents).await.expect("imports");
    assert_eq!(report.created, ["gold", "silver"]);
    let again = ops
        .import_plans(&alice(), &id("r"), &documents)
        .await
        .expect("imports again");
    assert_eq!(again.unchanged, ["gold", "silver"], "a rerun changes nothing");
    forbidden(ops.import_plans(&token("a", false), &id("r"), &documents).await);
    let bad = json!([{"id": "bronze", "plan": {"users": {"_all": {"rate": "cheap"}}}}, {"name": "no id"}]);
    match ops.import_plans(&alice(), &id("r"), &bad).await {
        Err(OpsError::Validation(fields)) => {
            let names: Vec<&str> = fields.iter().map(|field| field.field.as_str()).collect();
            assert_eq!(names, ["\"[0]\".plan.users._all.rate", "[1].id"], "{fields:?}");
        }
        other => panic!("expected validation errors, got {other:?}"),
    }

    let mut query = ListQuery::new();
    query.page_size = Some(2);
    let page = ops
        .vendor_plans(&token("r", false), &id("r"), &query)
        .await
        .expect("lists");
    assert_eq!(page.rows.len(), 2);
    assert_eq!(
        page.rows[0],
        json!({"id": "devices", "name": "devices", "description": "", "category": null})
    );
    assert_eq!(page.next_start_key.as_deref(), Some("gold"));
    query.start_key = page.next_start_key.clone();
    let next = ops
        .available_plans(&token("a", false), &a(), &query)
        .await
        .expect("lists");
    let ids: Vec<&Value> = next.rows.iter().map(|row| &row["id"]).collect();
    assert_eq!(ids, [&json!("gold"), &json!("silver")]);
    assert_eq!(next.next_start_key, None);

    let gold = ops
        .available_plan(&token("a", false), &a(), "gold")
        .await
        .expect("offered");
    assert_eq!(gold["description"], json!("All in"));
    assert_eq!(gold["plan"]["users"]["_all"]["rate"], json!(9));
    assert!(matches!(
        ops.available_plan(&alice(), &a(), "wholesale").await,
        Err(OpsError::BadIdentifier { .. })
    ));
    ops.vendor_plan(&alice(), &id("m"), "wholesale")
        .await
        .expect("the master's own");
    assert!(matches!(
        ops.vendor_plan(&alice(), &id("r"), "wholesale").await,
        Err(OpsError::BadIdentifier { .. })
    ));

    let merged = ops
        .add_service_plan(&token("r", false), &a(), "gold")
        .await
        .expect("adds");
    assert_eq!(merged["plan"]["users"]["_all"]["rate"], json!(9));
    let merged = ops
        .update_service_plans(
            &token("r", false),
            &a(),
            &json!({"add": ["devices"], "delete": ["gold"]}),
        )
        .await
        .expect("updates");
    assert_eq!(merged["plan"]["devices"]["sip_device"]["rate"], json!(5));
    assert_eq!(merged["plan"]["users"], Value::Null);
    let overridden = ops
        .override_service_plans(
            &token("m", true),
            &a(),
            &json!({"overrides": {"devices": {"plan": {"devices": {"sip_device": {"rate": 1}}}}, "ghost": {}}}),
        )
        .await
        .expect("overrides");
    // The answer is the merged plan's categories (`api.md` §3).
    assert_eq!(overridden["devices"]["sip_device"]["rate"], json!(1), "{overridden}");
    assert_eq!(
        ops.remove_service_plan(&token("r", false), &a(), "devices")
            .await
            .expect("removes"),
        json!({})
    );
    let editable = ops.editable(&alice(), Some(&a())).await.expect("editable");
    assert!(editable["devices"]["_all"]["as"].is_object());
    assert!(
        editable["devices"]["sip_device"]["as"].is_null(),
        "items cannot masquerade"
    );
}

async fn audit_logs_page_and_refuse_bad_ranges(store: &Store) {
    seeded(store).await;
    for (step, rate) in [1, 2, 3].into_iter().enumerate() {
        ops(store, T0 + i64::try_from(step).expect("small") * 60)
            .set_overrides(
                &alice(),
                &a(),
                &json!({"plan": {"devices": {"sip_device": {"rate": rate}}}}),
                WriteMode::Replace,
            )
            .await
            .expect("sets");
    }
    ops(store, T0)
        .assign_plan(&alice(), &a(), "devices", &json!({}), WriteMode::Replace)
        .await
        .expect("assigns");
    let ops = ops(store, T0 + 600);
    for rate in [7, 8] {
        ops.set_overrides(
            &alice(),
            &a(),
            &json!({"plan": {"devices": {"sip_device": {"rate": rate}}}}),
            WriteMode::Replace,
        )
        .await
        .expect("sets");
    }
    let all = audit_rows(&ops, "a").await;
    assert_eq!(all.len(), 3, "assignment, then two rate changes: {all:?}");

    let mut query = ListQuery::new();
    query.page_size = Some(2);
    let first = ops.audit_logs(&alice(), &a(), &query).await.expect("page 1");
    assert_eq!(first.rows.len(), 2);
    assert_eq!(first.page_size, Some(2));
    query.start_key = first.next_start_key.clone();
    let second = ops.audit_logs(&alice(), &a(), &query).await.expect("page 2");
    assert_eq!(second.rows.len(), 1);
    assert_eq!(
        second.page_size,
        Some(1),
        "page_size counts the rows returned, as Kazoo's"
    );
    assert_eq!(second.next_start_key, None);
    let mut paged: Vec<Value> = first.rows;
    paged.extend(second.rows);
    assert_eq!(paged, all, "pages cover the listing once, in order");

    let mut ascending = ListQuery::new();
    ascending.ascending = true;
    ascending.paginate = false;
    let oldest_first = ops.audit_logs(&alice(), &a(), &ascending).await.expect("lists");
    assert_eq!(oldest_first.rows.first(), all.last());

    let mut late = ListQuery::new();
    late.created_from = Some(T0 + 601);
    late.created_to = Some(T0 + 1_000);
    assert!(ops
        .audit_logs(&alice(), &a(), &late)
        .await
        .expect("lists")
        .rows
        .is_empty());
    let mut backwards = ListQuery::new();
    backwards.created_from = Some(T0);
    backwards.created_to = Some(T0 - 1);
    field_error(ops.audit_logs(&alice(), &a(), &backwards).await, "created_from");
    let mut too_long = ListQuery::new();
    too_long.created_from = Some(T0 - 40 * DAY);
    too_long.created_to = Some(T0);
    field_error(ops.audit_logs(&alice(), &a(), &too_long).await, "created_from");
    let mut bad_key = ListQuery::new();
    bad_key.start_key = Some("nonsense".to_owned());
    field_error(ops.audit_logs(&alice(), &a(), &bad_key).await, "start_key");
    assert!(matches!(
        ops.audit_log(&alice(), &a(), "not-a-log").await,
        Err(OpsError::BadIdentifier { cause }) if cause == "not-a-log"
    ));
    assert!(
        matches!(
            ops.audit_log(&alice(), &id("b"), all[0]["id"].as_str().expect("id"))
                .await,
            Err(OpsError::BadIdentifier { .. })
        ),
        "another account's log is not found"
    );
}

/// Manual changes on reseller `r` on 2026-12-30, 2026-12-31 and 2027-01-02: the
/// summaries span two months and two years.
async fn audit_summaries_span_days_months_and_years(store: &Store) {
    seeded(store).await;
    let r = id("r");
    let changes = [
        (T0, json!({"users": {"user": 2}})),
        (T0 + 3600, json!({"users": {"user": 5}})),
        (T0 + DAY, json!({"users": {"user": 4}, "devices": {"softphone": 1}})),
        (T0 + 3 * DAY, json!({"users": {"user": 6}})),
    ];
    for (now, manual) in changes {
        ops(store, now)
            .set_manual_quantities(&alice(), &r, &manual, WriteMode::Replace)
            .await
            .expect("sets");
    }
    let ops = ops(store, T0 + 3 * DAY + 60);
    let mut range = ListQuery::new();
    range.created_from = Some(T0 + 3600);
    range.created_to = Some(T0 + 3 * DAY);
    let summary = ops
        .audit_summary(&token("r", false), &r, &range, None)
        .await
        .expect("summary");
    let row = |addition: i64, removal: i64, quantity: i64, last: i64| json!({"addition": addition, "last_timestamp": last, "quantity": quantity, "removal": removal, "sum_quantity": false});
    assert_eq!(
        summary,
        json!([{
            "softphone": {
                "2026-12-31": row(1, 0, 1, T0 + DAY),
                // Replacing the bucket without it removes it.
                "2027-01-02": row(0, 1, 0, T0 + 3 * DAY),
            },
            "user": {
                // Whole days: the first change of 2026-12-30 is before created_from but counts.
                "2026-12-30": row(5, 0, 5, T0 + 3600),
                "2026-12-31": row(0, 1, 4, T0 + DAY),
                "2027-01-02": row(2, 0, 6, T0 + 3 * DAY),
            },
        }])
    );
    let user = ops
        .audit_summary(&alice(), &r, &range, Some("user"))
        .await
        .expect("by source");
    assert_eq!(
        user,
        json!([
            {"2027-01-02": row(2, 0, 6, T0 + 3 * DAY)},
            {"2026-12-31": row(0, 1, 4, T0 + DAY)},
            {"2026-12-30": row(5, 0, 5, T0 + 3600)},
        ])
    );
    range.ascending = true;
    let ascending = ops
        .audit_summary(&alice(), &r, &range, Some("user"))
        .await
        .expect("by source");
    assert_eq!(ascending[0], json!({"2026-12-30": row(5, 0, 5, T0 + 3600)}));
    // Without created_to: the last 31 days and an hour up to now.
    let recent = ops
        .audit_summary(&alice(), &r, &ListQuery::new(), Some("softphone"))
        .await
        .expect("recent");
    assert_eq!(
        recent,
        json!([
            {"2027-01-02": row(0, 1, 0, T0 + 3 * DAY)},
            {"2026-12-31": row(1, 0, 1, T0 + DAY)},
            // The first reconcile counted a's softphone in r's cascade bucket.
            {"2026-12-29": row(1, 0, 1, T0 - DAY)},
        ])
    );

    // Only resellers have summaries; the range is checked first.
    assert_eq!(
        ops.audit_summary(&alice(), &a(), &range, None).await.expect("summary"),
        json!([])
    );
    forbidden(ops.audit_summary(&token("a", false), &r, &range, None).await);
    let mut year_and_more = ListQuery::new();
    year_and_more.created_from = Some(T0 - 366 * DAY);
    year_and_more.created_to = Some(T0);
    field_error(
        ops.audit_summary(&alice(), &r, &year_and_more, None).await,
        "created_from",
    );
}

async fn reconciliation_and_synchronisation_run_for_one_account(store: &Store) {
    seeded(store).await;
    let ops = ops(store, T0);
    ops.assign_plan(&alice(), &a(), "devices", &json!({}), WriteMode::Replace)
        .await
        .expect("assigns");
    store
        .execute_script("INSERT INTO devices (id, account_id, device_type) VALUES ('d4', 'a', 'sip_device');")
        .await
        .expect("a new device");
    let ops = self::ops(store, T0 + 60);
    assert_eq!(
        ops.reconcile_account(&token("r", false), &a())
            .await
            .expect("reconciles"),
        json!({})
    );
    let rows = audit_rows(&ops, "a").await;
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[0]["summary"]["recurring"], json!(16.25), "three SIP devices now");
    assert_eq!(rows[0]["summary"]["today"], json!(10), "one activation");

    // A full synchronisation delivers every invoice, changed or not.
    let ops = self::ops(store, T0 + 120);
    assert_eq!(
        ops.synchronize_account(&token("r", false), &a())
            .await
            .expect("synchronises"),
        json!({})
    );
    let rows = audit_rows(&ops, "a").await;
    assert_eq!(rows.len(), 3, "an unchanged invoice still gets its audit log");
    assert_eq!(rows[0]["summary"]["recurring"], json!(16.25));
    assert_eq!(rows[0]["status"], json!("completed"));
}

/// One change whose entries share a source (the same item in two categories): its day
/// summary is one row that sums both entries, the quantity being the last entry's
/// (§4.2.4 order: category `devices` before `users`). Then a second change folds in.
async fn a_manual_change_folds_entries_of_one_source_into_one_day_summary(store: &Store) {
    seeded(store).await;
    let r = id("r");
    let manual = json!({"users": {"user": 2}, "devices": {"user": 3}});
    ops(store, T0)
        .set_manual_quantities(&alice(), &r, &manual, WriteMode::Replace)
        .await
        .expect("sets");
    ops(store, T0 + 60)
        .set_manual_quantities(&alice(), &r, &json!({"users": {"user": 1}}), WriteMode::Replace)
        .await
        .expect("sets again");
    let ops = ops(store, T0 + 120);
    assert_eq!(
        ops.manual_quantities(&alice(), &r).await.expect("reads"),
        json!({"users": {"user": 1}})
    );
    let mut range = ListQuery::new();
    range.created_from = Some(T0);
    range.created_to = Some(T0 + 60);
    let summary = ops
        .audit_summary(&alice(), &r, &range, Some("user"))
        .await
        .expect("summary");
    // +3 and +2, then -1 (users) and -3 (devices removed); the last value is users' 1.
    assert_eq!(
        summary,
        json!([{"2026-12-30": {"addition": 5, "removal": 4, "quantity": 1, "last_timestamp": T0 + 60, "sum_quantity": false}}])
    );
}

on_both_backends!(
    assigning_a_plan_prices_the_account_and_the_audit_log_names_who,
    updating_services_checks_deletions_additions_and_billing_ids_in_order,
    tokens_act_on_their_tree_only,
    standing_is_read_and_set_by_a_super_admin,
    manual_quantities_are_replaced_merged_and_checked,
    overrides_are_replaced_merged_and_checked,
    a_quote_prices_a_hypothetical_plan_set_and_saves_nothing,
    plans_are_imported_listed_and_offered,
    audit_logs_page_and_refuse_bad_ranges,
    audit_summaries_span_days_months_and_years,
    a_manual_change_folds_entries_of_one_source_into_one_day_summary,
    reconciliation_and_synchronisation_run_for_one_account,
);
