//! The command line and the HTTP API give the same data for the same operation: both
//! faces run over one SQLite file, every operation is asked through each, and the
//! CLI's JSON is compared with the API's `data` member.
//!
//! Reads are asked twice on the same state. Writes are asked through the API first,
//! then the same write through the CLI: writes are idempotent, so both must answer
//! with the same resulting state.

use crate::api_support::{call, start_server, token};
use crate::helpers::{at, reconcile_all};
use reqwest::Method;
use serde_json::{json, Value};
use std::path::Path;
use std::process::{Command, Output};
use tally::config::DatabaseUrl;
use tally::store::Store;

const SEED: &str = "\
    INSERT INTO accounts (id, parent_id, name, is_reseller) VALUES ('m', NULL, 'Master', FALSE);\n\
    INSERT INTO accounts (id, parent_id, name, is_reseller) VALUES ('r', 'm', 'Reseller', TRUE);\n\
    INSERT INTO accounts (id, parent_id, name, is_reseller) VALUES ('a', 'r', 'Acme', FALSE);\n\
    INSERT INTO devices (id, account_id, device_type) VALUES ('d1', 'a', 'sip_device');\n\
    INSERT INTO devices (id, account_id, device_type) VALUES ('d2', 'a', 'softphone');\n\
    INSERT INTO service_plans (vendor_id, plan_id, name, description, category, document) VALUES \
        ('r', 'devices', 'Devices', 'Per device', 'voice', \
         '{\"name\": \"Devices\", \"plan\": {\"devices\": {\"sip_device\": {\"rate\": 5}, \"softphone\": {\"rate\": 1.5}}}}');\n\
    INSERT INTO service_plans (vendor_id, plan_id, name, description, category, document) VALUES \
        ('r', 'extras', 'Extras', '', NULL, '{\"name\": \"Extras\", \"plan\": {\"users\": {\"user\": {\"rate\": 2}}}}');\n";

fn cli(directory: &Path, args: &[&str]) -> Value {
    let output: Output = Command::new(env!("CARGO_BIN_EXE_tally"))
        .args(args)
        .arg("--json")
        .current_dir(directory)
        .env_remove("TALLY_DATABASE_URL")
        .env_remove("TALLY_CONFIG")
        .env_remove("RUST_LOG")
        .env("USER", "parity")
        .output()
        .expect("tally runs");
    assert!(
        output.status.success(),
        "tally {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).expect("JSON on stdout")
}

struct Api {
    base: String,
    token: String,
}

impl Api {
    async fn data(&self, method: Method, path: &str, body: Option<Value>) -> Value {
        let body = body.map(|body| body.to_string());
        let answer = call(
            method.clone(),
            &format!("{}/v2{path}", self.base),
            Some(&self.token),
            body.as_deref(),
            &[],
        )
        .await;
        assert_eq!(answer.status, 200, "{method} {path}: {}", answer.body);
        answer.body["data"].clone()
    }

    async fn get(&self, path: &str) -> Value {
        self.data(Method::GET, path, None).await
    }

    async fn post(&self, path: &str, data: Value) -> Value {
        self.data(Method::POST, path, Some(json!({ "data": data }))).await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_operation_gives_the_same_data_on_both_faces() {
    let directory = tempfile::tempdir().expect("temp dir");
    let url = DatabaseUrl::new(format!("sqlite://{}", directory.path().join("tally.db").display()));
    let store = Store::open(&url).await.expect("store opens");
    store.execute_script(SEED).await.expect("seeded");
    reconcile_all(
        &store,
        at(tally::domain::summary::GregorianSeconds::from_utc(chrono::Utc::now()).0 - 86_400),
    )
    .await;
    let (base, _server) = start_server(&store).await;
    let api = Api {
        base,
        token: token(&store, "m", true).await,
    };
    let dir = directory.path();
    let same = |what: &str, cli: Value, api: Value| assert_eq!(cli, api, "{what}: CLI (left) and API (right) differ");

    // Writes, API first, then the same write by the CLI.
    let plans = api.post("/accounts/a/services", json!({"add": ["devices"]})).await;
    same(
        "services update",
        cli(dir, &["services", "update", "a", "--add", "devices"]),
        plans,
    );
    let assigned = api
        .post(
            "/accounts/a/services/extras",
            json!({"overrides": {"plan": {"users": {"user": {"rate": 3}}}}}),
        )
        .await;
    same(
        "services assign",
        cli(
            dir,
            &[
                "services",
                "assign",
                "a",
                "extras",
                "--overrides",
                r#"{"plan": {"users": {"user": {"rate": 3}}}}"#,
            ],
        ),
        assigned,
    );
    let manual = api
        .post("/accounts/a/services/manual", json!({"users": {"user": 2}}))
        .await;
    same(
        "services manual (set)",
        cli(dir, &["services", "manual", "a", "--data", r#"{"users": {"user": 2}}"#]),
        manual,
    );
    let overrides = api
        .post(
            "/accounts/a/services/overrides",
            json!({"plan": {"devices": {"softphone": {"rate": 2}}}}),
        )
        .await;
    same(
        "services overrides (set)",
        cli(
            dir,
            &[
                "services",
                "overrides",
                "a",
                "--data",
                r#"{"plan": {"devices": {"softphone": {"rate": 2}}}}"#,
            ],
        ),
        overrides,
    );
    let status = api
        .post(
            "/accounts/a/services/status",
            json!({"in_good_standing": false, "reason": "unpaid"}),
        )
        .await;
    same(
        "services status (set)",
        cli(dir, &["services", "status", "a", "--bad", "--reason", "unpaid"]),
        status,
    );
    let billing = api.post("/accounts/a/services", json!({"billing_id": "r"})).await;
    same("billing id", cli(dir, &["services", "get", "a"]), billing);
    same(
        "services billing-id",
        cli(dir, &["services", "billing-id", "a", "r"]),
        json!({"billing_id": "r"}),
    );
    same(
        "services reconcile",
        cli(dir, &["services", "reconcile", "a"]),
        api.post("/accounts/a/services/reconciliation", json!({})).await,
    );
    same(
        "services sync",
        cli(dir, &["services", "sync", "a"]),
        api.post("/accounts/a/services/synchronization", json!({})).await,
    );
    let overridden = api
        .post(
            "/accounts/a/service_plans/override",
            json!({"overrides": {"devices": {"plan": {"devices": {"sip_device": {"rate": 4}}}}}}),
        )
        .await;
    same(
        "plans override",
        cli(
            dir,
            &[
                "plans",
                "override",
                "a",
                "--data",
                r#"{"overrides": {"devices": {"plan": {"devices": {"sip_device": {"rate": 4}}}}}}"#,
            ],
        ),
        overridden,
    );
    let merged = api.post("/accounts/a/service_plans", json!({"add": ["extras"]})).await;
    same(
        "plans update",
        cli(dir, &["plans", "update", "a", "--add", "extras"]),
        merged,
    );
    same(
        "plans add",
        cli(dir, &["plans", "add", "a", "devices"]),
        api.post("/accounts/a/service_plans/devices", json!({})).await,
    );
    let top_up_api = api.post("/accounts/a/services/topup", json!({"amount": "12.5"})).await;
    let top_up_cli = cli(dir, &["services", "topup", "a", "12.5"]);
    same(
        "services topup (amount)",
        top_up_cli["ledger"]["amount"].clone(),
        top_up_api["ledger"]["amount"].clone(),
    );
    same(
        "services topup (members)",
        json!(top_up_cli
            .as_object()
            .map(|map| map.keys().cloned().collect::<Vec<_>>())),
        json!(top_up_api
            .as_object()
            .map(|map| map.keys().cloned().collect::<Vec<_>>())),
    );

    // Reads, on the same state.
    same(
        "services get",
        cli(dir, &["services", "get", "a"]),
        api.get("/accounts/a/services").await,
    );
    same(
        "services status",
        cli(dir, &["services", "status", "a"]),
        api.get("/accounts/a/services/status").await,
    );
    same(
        "services manual",
        cli(dir, &["services", "manual", "a"]),
        api.get("/accounts/a/services/manual").await,
    );
    same(
        "services overrides",
        cli(dir, &["services", "overrides", "a"]),
        api.get("/accounts/a/services/overrides").await,
    );
    let audit_cli = cli(dir, &["services", "audit", "a"]);
    let audit_api = api.get("/accounts/a/services/audit").await;
    same("services audit", audit_cli["data"].clone(), audit_api.clone());
    let first = audit_api[0]["id"].as_str().expect("an audit log").to_owned();
    same(
        "services audit-log",
        cli(dir, &["services", "audit-log", "a", &first]),
        api.get(&format!("/accounts/a/services/audit/{first}")).await,
    );
    same(
        "services audit-summary",
        cli(dir, &["services", "audit-summary", "r"]),
        api.get("/accounts/r/services/audit/summary").await,
    );
    same(
        "services audit-summary SOURCE",
        cli(dir, &["services", "audit-summary", "r", "sip_device"]),
        api.get("/accounts/r/services/audit/summary/sip_device").await,
    );
    let quote = json!({"plans": ["devices"]});
    let mut quote_cli = cli(dir, &["services", "quote", "a", "--data", &quote.to_string()]);
    let mut quote_api = api.post("/accounts/a/services/quote", quote).await;
    // The next billing cycle is computed from the clock of each call.
    quote_cli["billing_cycle"].take();
    quote_api["billing_cycle"].take();
    same("services quote", quote_cli, quote_api);
    let mut summary_cli = cli(dir, &["services", "summary", "a"]);
    let mut summary_api = api.get("/accounts/a/services/summary").await;
    summary_cli["billing_cycle"].take();
    summary_api["billing_cycle"].take();
    same("services summary", summary_cli, summary_api);
    same(
        "services available",
        cli(dir, &["services", "available", "a"]),
        api.get("/accounts/a/services/available?paginate=false").await,
    );
    same(
        "services editable",
        cli(dir, &["services", "editable", "a"]),
        api.get("/accounts/a/services/editable").await,
    );
    same(
        "plans list",
        cli(dir, &["plans", "list", "r", "--details"]),
        api.get("/accounts/r/service_plans?paginate=false&details=true").await,
    );
    same(
        "plans get",
        cli(dir, &["plans", "get", "r", "extras"]),
        api.get("/accounts/r/service_plans/extras").await,
    );
    same(
        "plans current",
        cli(dir, &["plans", "current", "a"]),
        api.get("/accounts/a/service_plans/current").await,
    );
    same(
        "plans available PLAN",
        cli(dir, &["plans", "available", "a", "devices"]),
        api.get("/accounts/a/service_plans/available/devices").await,
    );

    // Unassigning: once through each face, so each answers from the same state.
    let after_api = api.data(Method::DELETE, "/accounts/a/services/extras", None).await;
    let after_cli = cli(dir, &["services", "assign", "a", "extras"]);
    assert_ne!(after_api, after_cli, "the CLI re-assigned it");
    same(
        "services unassign",
        cli(dir, &["services", "unassign", "a", "extras"]),
        after_api,
    );
    same(
        "plans remove",
        cli(dir, &["plans", "remove", "a", "devices"]),
        json!({}),
    );
    assert_eq!(
        api.get("/accounts/a/services").await,
        json!({}),
        "both faces saw every plan removed"
    );
}
