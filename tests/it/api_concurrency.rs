//! The API under concurrency (issue 11, deliver 4), on both backends, through a real
//! server on 127.0.0.1:
//! - every route answers on a pool of ONE connection: a path that holds a connection
//!   while it waits for a second one would stall there (and, on a pool of four, as
//!   soon as four requests did the same);
//! - 32 writers on one account, each on its own keys of the manual quantities, the
//!   overrides and the plan assignments, all get 200 within 5 s, and the final state
//!   is the last acknowledged write of each key, repriced once, while readers of the
//!   summary, quotes and the current view never get a 500.

use crate::api_support::{token, TREE_SQL};
use crate::helpers::{postgres_store, sqlite_store};
use reqwest::Method;
use serde_json::{json, Value};
use std::time::{Duration, Instant};
use tally::api::{routes, Op, Route};
use tally::config::Settings;
use tally::jobs::context::JobContext;
use tally::jobs::sync;
use tally::ops::{Clock, Operations, SystemClock};
use tally::store::{Store, SyncScope};

/// Each request must be answered within this (the issue's bound).
const ANSWER_WITHIN: Duration = Duration::from_secs(5);

/// Plans at the reseller `r`: every device priced (so each manual write changes the
/// invoice), and four plans the writers assign and unassign.
fn catalog_sql() -> String {
    let mut sql = String::from(
        "INSERT INTO devices (id, account_id, device_type) VALUES ('d1', 'a', 'sip_device');\n\
         INSERT INTO service_plans (vendor_id, plan_id, name, document) VALUES ('r', 'devices', 'Devices', \
             '{\"name\": \"Devices\", \"plan\": {\"devices\": {\"_all\": {\"rate\": 1.5, \"activation_charge\": 2}}}}');\n\
         INSERT INTO service_plans (vendor_id, plan_id, name, document) VALUES ('r', 'extras', 'Extras', \
             '{\"name\": \"Extras\", \"plan\": {\"users\": {\"user\": {\"rate\": 2}}}}');\n",
    );
    for plan in 0..PLAN_WRITERS {
        sql.push_str(&format!(
            "INSERT INTO service_plans (vendor_id, plan_id, name, document) VALUES ('r', 'p{plan}', 'P{plan}', \
                 '{{\"name\": \"P{plan}\", \"plan\": {{\"ips\": {{\"dedicated\": {{\"rate\": {plan}}}}}}}}}');\n"
        ));
    }
    sql
}

async fn seed(store: &Store) {
    store.execute_script(TREE_SQL).await.expect("tree seeded");
    store.execute_script(&catalog_sql()).await.expect("catalog seeded");
    // Credentials for the logins of the sweep (md5 of "sweep:pw").
    store
        .execute_script(
            "UPDATE accounts SET api_key = 'key-of-a' WHERE id = 'a';\n\
             INSERT INTO users (id, account_id, username, md5_auth) \
                 VALUES ('u-sweep', 'a', 'sweep', '306974956ed919d6e6beae56f4f95da2');\n",
        )
        .await
        .expect("credentials seeded");
}

/// Serves the API over its own pool of `connections` on the same database.
async fn serve_with_pool(store: &Store, connections: u32) -> (String, Store, tokio::task::JoinHandle<()>) {
    let pooled = store.with_pool_size(connections).await.expect("second pool");
    let context = JobContext::new(pooled.clone(), Settings::default()).expect("job context");
    let (base, server) = crate::api_support::start_server_with(Operations::new(context)).await;
    (base, pooled, server)
}

struct Client {
    http: reqwest::Client,
    base: String,
    token: String,
}

impl Client {
    fn new(base: &str, token: &str) -> Client {
        Client {
            http: reqwest::Client::builder()
                .timeout(ANSWER_WITHIN)
                .build()
                .expect("client"),
            base: base.to_owned(),
            token: token.to_owned(),
        }
    }

    /// One request; the status and body, or why there is none (a timeout: stalled).
    async fn send(&self, method: Method, path: &str, body: Option<&Value>) -> Result<(u16, Value), String> {
        let mut request = self
            .http
            .request(method.clone(), format!("{}{path}", self.base))
            .header("X-Auth-Token", &self.token);
        if let Some(body) = body {
            request = request
                .header("Content-Type", "application/json")
                .body(body.to_string());
        }
        let started = Instant::now();
        let response = request
            .send()
            .await
            .map_err(|error| format!("{method} {path}: no answer after {:?}: {error}", started.elapsed()))?;
        let status = response.status().as_u16();
        let text = response
            .text()
            .await
            .map_err(|error| format!("{method} {path}: body lost after {:?}: {error}", started.elapsed()))?;
        let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
        Ok((status, body))
    }

    /// A request that must succeed: its `data`.
    async fn ok(&self, method: Method, path: &str, body: Option<Value>) -> Value {
        match self.send(method.clone(), path, body.as_ref()).await {
            Ok((200, body)) => body["data"].clone(),
            Ok((status, body)) => panic!("{method} {path}: {status} {body}"),
            Err(problem) => panic!("{problem}"),
        }
    }
}

/// The request that exercises `route` on account `a` and succeeds, given the state
/// the routes before it in the table left.
fn sweep_request(route: &Route, audit_id: &str) -> (String, Option<Value>) {
    let on = |account: &str| {
        route
            .path
            .replace("{account_id}", account)
            .replace("{audit_id}", audit_id)
            .replace("{source}", "sip_device")
    };
    let path = on("a");
    let data = |data: Value| Some(json!({ "data": data }));
    match route.op {
        Op::ServicesPlans
        | Op::ServicesStatus
        | Op::AuditLogs
        | Op::AuditLog
        | Op::AuditSummary
        | Op::AuditSummaryOfSource
        | Op::ManualQuantities
        | Op::Overrides
        | Op::Summary
        | Op::Explain
        | Op::AvailablePlans
        | Op::Editable
        | Op::EditableWithoutAccount
        | Op::VendorPlans
        | Op::CurrentServices => (path, None),
        Op::VendorPlan => (on("r").replace("{plan_id}", "devices"), None),
        Op::AvailablePlan => (path.replace("{plan_id}", "devices"), None),
        Op::UpdateServices => (path, data(json!({ "add": ["extras"] }))),
        Op::SetServicesStatus => (path, data(json!({ "in_good_standing": true }))),
        Op::AssignPlan => (
            path.replace("{plan_id}", "p0"),
            data(json!({ "overrides": { "ips": { "dedicated": { "rate": 3 } } } })),
        ),
        Op::UnassignPlan => (path.replace("{plan_id}", "p0"), None),
        Op::SetManualQuantities => (path, data(json!({ "devices": { "softphone": 2 } }))),
        Op::SetOverrides => (
            path,
            data(json!({ "plan": { "devices": { "sip_device": { "rate": 4 } } } })),
        ),
        Op::Quote | Op::QuoteWithoutAccount => (path, data(json!({ "plans": ["devices", "extras"] }))),
        Op::Reconcile | Op::Synchronize => (path, data(json!({}))),
        Op::Topup => (path, data(json!({ "amount": 10 }))),
        Op::UpdateServicePlans => (path, data(json!({ "add": ["p1"] }))),
        Op::AddServicePlan => (path.replace("{plan_id}", "p2"), None),
        Op::RemoveServicePlan => (path.replace("{plan_id}", "p2"), None),
        Op::OverrideServicePlans => (
            path,
            data(json!({ "overrides": { "devices": { "devices": { "_all": { "rate": 2 } } } } })),
        ),
        Op::ApiAuth => (path, data(json!({ "api_key": "key-of-a" }))),
        Op::UserAuth => (
            path,
            data(json!({ "credentials": "306974956ed919d6e6beae56f4f95da2", "account_name": "Acme" })),
        ),
        Op::Inventory => (
            format!("{path}?database=accounts"),
            Some(json!({ "_id": "f00000000000000000000000000000e9", "pvt_tree": ["m"] })),
        ),
    }
}

async fn every_route_answers_on_a_pool_of_one_connection(store: &Store) {
    seed(store).await;
    let admin = token(store, "m", true).await;
    let (base, pooled, _server) = serve_with_pool(store, 1).await;
    let client = Client::new(&base, &admin);
    client
        .ok(
            Method::POST,
            "/v2/accounts/a/services",
            Some(json!({ "data": { "add": ["devices"] } })),
        )
        .await;
    let audit_logs = client.ok(Method::GET, "/v2/accounts/a/services/audit", None).await;
    let audit_id = audit_logs[0]["id"]
        .as_str()
        .expect("the commit wrote an audit log")
        .to_owned();
    let mut failures = Vec::new();
    for route in routes() {
        let (path, body) = sweep_request(route, &audit_id);
        let method = Method::from_bytes(route.verb.as_str().as_bytes()).expect("method");
        match client.send(method.clone(), &path, body.as_ref()).await {
            Ok((200, _)) => {}
            // The logins answer 201, as Kazoo's PUT.
            Ok((201, _)) if !route.op.needs_token() => {}
            Ok((status, body)) => failures.push(format!("{method} {path}: {status} {body}")),
            Err(problem) => failures.push(problem),
        }
    }
    assert!(
        failures.is_empty(),
        "on a pool of one connection:\n{}",
        failures.join("\n")
    );
    pooled.close().await;
}

/// Writers on manual quantities (one item each), on overrides (one item each) and on
/// plan assignments (one plan each, assigned then unassigned in turn).
const MANUAL_WRITERS: usize = 24;
const OVERRIDE_WRITERS: usize = 4;
const PLAN_WRITERS: usize = 4;
const ROUNDS: i64 = 6;
const READERS: usize = 4;

/// What a writer last had acknowledged.
#[derive(Debug)]
enum Acknowledged {
    Manual { item: String, quantity: i64 },
    Override { item: String, rate: i64 },
    Plan { plan: String, assigned: bool },
}

async fn writer(client: &Client, index: usize) -> Acknowledged {
    let services = "/v2/accounts/a/services";
    let mut last = None;
    for round in 1..=ROUNDS {
        last = Some(if index < MANUAL_WRITERS {
            let item = format!("item{index}");
            let data = client
                .ok(
                    Method::PATCH,
                    &format!("{services}/manual"),
                    Some(json!({ "data": { "devices": { item.as_str(): round } } })),
                )
                .await;
            assert_eq!(data["devices"][&item], round, "the answer shows the write: {data}");
            Acknowledged::Manual { item, quantity: round }
        } else if index < MANUAL_WRITERS + OVERRIDE_WRITERS {
            let item = format!("override{index}");
            let data = client
                .ok(
                    Method::PATCH,
                    &format!("{services}/overrides"),
                    Some(json!({ "data": { "plan": { "devices": { item.as_str(): { "rate": round } } } } })),
                )
                .await;
            assert_eq!(data["plan"]["devices"][&item]["rate"], round, "{data}");
            Acknowledged::Override { item, rate: round }
        } else {
            let plan = format!("p{}", index - MANUAL_WRITERS - OVERRIDE_WRITERS);
            let assigned = round % 2 == 1;
            let data = if assigned {
                client
                    .ok(Method::POST, &format!("{services}/{plan}"), Some(json!({ "data": {} })))
                    .await
            } else {
                client.ok(Method::DELETE, &format!("{services}/{plan}"), None).await
            };
            assert_eq!(data.get(&plan).is_some(), assigned, "{data}");
            Acknowledged::Plan { plan, assigned }
        });
    }
    last.expect("at least one round")
}

/// Reads until told to stop; every answer must be a 200.
async fn reader(client: &Client, index: usize, stop: tokio_util::sync::CancellationToken) -> usize {
    let mut answered = 0;
    while !stop.is_cancelled() {
        match index % 3 {
            0 => client.ok(Method::GET, "/v2/accounts/a/services/summary", None).await,
            1 => {
                client
                    .ok(
                        Method::POST,
                        "/v2/accounts/a/services/quote",
                        Some(json!({ "data": { "plans": ["devices", "p1"] } })),
                    )
                    .await
            }
            _ => {
                client
                    .ok(Method::GET, "/v2/accounts/a/service_plans/current", None)
                    .await
            }
        };
        answered += 1;
    }
    answered
}

async fn concurrent_writers_lose_nothing_and_readers_never_fail(store: &Store) {
    seed(store).await;
    let reseller = token(store, "r", false).await;
    let (base, pooled, _server) = serve_with_pool(store, 2).await;
    let setup = Client::new(&base, &reseller);
    setup
        .ok(
            Method::POST,
            "/v2/accounts/a/services",
            Some(json!({ "data": { "add": ["devices"] } })),
        )
        .await;

    let stop = tokio_util::sync::CancellationToken::new();
    let readers: Vec<_> = (0..READERS)
        .map(|index| {
            let client = Client::new(&base, &reseller);
            let stop = stop.clone();
            tokio::spawn(async move { reader(&client, index, stop).await })
        })
        .collect();
    let writers: Vec<_> = (0..MANUAL_WRITERS + OVERRIDE_WRITERS + PLAN_WRITERS)
        .map(|index| {
            let client = Client::new(&base, &reseller);
            tokio::spawn(async move { writer(&client, index).await })
        })
        .collect();
    let mut acknowledged = Vec::new();
    for writer in writers {
        acknowledged.push(writer.await.expect("writer finished"));
    }
    stop.cancel();
    for reader in readers {
        assert!(reader.await.expect("reader finished") > 0, "every reader was answered");
    }

    let manual = setup.ok(Method::GET, "/v2/accounts/a/services/manual", None).await;
    let overrides = setup.ok(Method::GET, "/v2/accounts/a/services/overrides", None).await;
    let plans = setup.ok(Method::GET, "/v2/accounts/a/services", None).await;
    for last in &acknowledged {
        match last {
            Acknowledged::Manual { item, quantity } => {
                assert_eq!(manual["devices"][item], *quantity, "{item} in {manual}")
            }
            Acknowledged::Override { item, rate } => {
                assert_eq!(
                    overrides["plan"]["devices"][item]["rate"], *rate,
                    "{item} in {overrides}"
                )
            }
            Acknowledged::Plan { plan, assigned } => {
                assert_eq!(plans.get(plan).is_some(), *assigned, "{plan} in {plans}")
            }
        }
    }
    assert_eq!(
        manual["devices"].as_object().map(|items| items.len()),
        Some(MANUAL_WRITERS),
        "{manual}"
    );
    assert!(plans.get("devices").is_some(), "{plans}");

    // The last commit repriced the final state: nothing is left marked, and a dry
    // run finds the stored invoices equal to the stored inputs' prices.
    let account = crate::helpers::id("a");
    assert_eq!(store.dirty(&account).await.expect("dirty flag"), None);
    let context = JobContext::new(store.clone(), Settings::default()).expect("job context");
    let mut options = context.sync_options(
        SyncScope::Accounts(vec![account.clone()]),
        None,
        tally::domain::changes::FirstCommit::Baseline,
        SystemClock.now(),
        tokio_util::sync::CancellationToken::new(),
    );
    options.dry_run = true;
    let report = sync::run_once(store, &options).await.expect("dry run");
    assert_eq!(report.invoices_changed, 0, "{:?}", report.changes);
    // Every unit added was charged its activation once: each manual item went up by
    // one unit a round, at 2.00 (in units of 0.0001). A change recorded by two
    // commits would be charged twice.
    let charged = store
        .query_count("SELECT CAST(COALESCE(SUM(today_units), 0) AS BIGINT) FROM audit_logs WHERE account_id = 'a'")
        .await
        .expect("sum of activation charges");
    let added_units = i64::try_from(MANUAL_WRITERS).expect("small") * ROUNDS;
    assert_eq!(charged, added_units * 2 * 10_000);
    pooled.close().await;
}

/// Runs a test body on SQLite and on PostgreSQL, with a runtime of several threads
/// (the server, its clients and the database connections run in parallel).
macro_rules! on_both_backends_in_parallel {
    ($($name:ident),* $(,)?) => {
        $(
            mod $name {
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn sqlite() {
                    let database = super::sqlite_store().await;
                    super::$name(&database.store).await;
                }

                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn postgres() {
                    let Some(database) = super::postgres_store().await else {
                        return;
                    };
                    super::$name(&database.store).await;
                }
            }
        )*
    };
}

on_both_backends_in_parallel!(
    every_route_answers_on_a_pool_of_one_connection,
    concurrent_writers_lose_nothing_and_readers_never_fail,
);
