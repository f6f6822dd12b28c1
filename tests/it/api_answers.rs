//! Issue 12 items 3, 8, 9, 10: Kazoo's answers over HTTP, on both backends.
//!
//! Every documented refusal of `api.md`, route by route, with its status and Kazoo's
//! `message` (system errors carry their code, `bad_identifier`, with the text in
//! `data.message`); no error body repeats the token it was sent; `/healthz` and
//! `/metrics` outside the Kazoo tree; one access-log line per request; the legacy
//! override endpoint with the Service_plans seed's payload; validation at the door;
//! and the two override merges of `plans.md` §6 through the API.

use crate::api_support::{call, get, post, seed_tree, start_server, token};
use crate::helpers::on_both_backends;
use reqwest::Method;
use serde_json::{json, Value};
use std::io::Write;
use std::sync::{Arc, Mutex};
use tally::store::Store;

/// Plan `devices` (SIP devices at 1) and plan `wl` (whitelabel at 5, activation 10),
/// both sold by reseller `r`.
const PLANS_SQL: &str = "\
    INSERT INTO service_plans (vendor_id, plan_id, name, document) VALUES \
    ('r', 'devices', 'Devices', '{\"plan\": {\"devices\": {\"sip_device\": {\"rate\": 1}}}}');\n\
    INSERT INTO service_plans (vendor_id, plan_id, name, document) VALUES \
    ('r', 'wl', 'Whitelabel', '{\"plan\": {\"whitelabel\": {\"_all\": {\"rate\": 5, \"activation_charge\": 10}}}}');\n";

async fn seed(store: &Store) {
    seed_tree(store).await;
    store.execute_script(PLANS_SQL).await.expect("plans seeded");
}

/// One documented refusal: who asks what, and Kazoo's status and message.
struct Refusal {
    method: Method,
    path: &'static str,
    caller: Caller,
    body: Option<&'static str>,
    status: u16,
    message: &'static str,
    /// The field a validation error names, or the `cause` of a 404.
    names: Option<&'static str>,
}

#[derive(Clone, Copy)]
enum Caller {
    Nobody,
    /// The customer `a` itself.
    Customer,
    /// `a`'s reseller `r`.
    Reseller,
    /// The master's super-admin token.
    Admin,
}

const fn refusal(
    method: Method,
    path: &'static str,
    caller: Caller,
    body: Option<&'static str>,
    status: u16,
    message: &'static str,
    names: Option<&'static str>,
) -> Refusal {
    Refusal {
        method,
        path,
        caller,
        body,
        status,
        message,
        names,
    }
}

fn refusals() -> Vec<Refusal> {
    use Caller::{Admin, Customer, Nobody, Reseller};
    vec![
        // §1.3: no token, no access.
        refusal(
            Method::GET,
            "/v2/accounts/a/services",
            Nobody,
            None,
            401,
            "invalid_credentials",
            None,
        ),
        // Unknown account, unknown path.
        refusal(
            Method::GET,
            "/v2/accounts/nobody/services",
            Admin,
            None,
            404,
            "bad_identifier",
            Some("nobody"),
        ),
        refusal(
            Method::GET,
            "/v2/accounts/a/nothing_here",
            Admin,
            None,
            404,
            "not_found",
            None,
        ),
        // §2.3 in order: reseller-only, delete of an unassigned plan, unknown add / plans ids, billing id.
        refusal(
            Method::POST,
            "/v2/accounts/a/services",
            Customer,
            Some(r#"{"data": {"add": ["devices"]}}"#),
            403,
            "forbidden",
            None,
        ),
        refusal(
            Method::POST,
            "/v2/accounts/a/services",
            Reseller,
            Some(r#"{"data": {"delete": ["devices"]}}"#),
            400,
            "plan_is_not_assigned",
            None,
        ),
        refusal(
            Method::POST,
            "/v2/accounts/a/services",
            Reseller,
            Some(r#"{"data": {"add": ["ghost"]}}"#),
            404,
            "bad_identifier",
            Some("ghost"),
        ),
        refusal(
            Method::POST,
            "/v2/accounts/a/services",
            Reseller,
            Some(r#"{"data": {"plans": [{"id": "ghost"}]}}"#),
            404,
            "bad_identifier",
            Some("ghost"),
        ),
        refusal(
            Method::POST,
            "/v2/accounts/a/services",
            Reseller,
            Some(r#"{"data": {"billing_id": "s"}}"#),
            400,
            "invalid_billing_id",
            None,
        ),
        // §2.5: super admins only; the standing is required.
        refusal(
            Method::POST,
            "/v2/accounts/a/services/status",
            Reseller,
            Some(r#"{"data": {"in_good_standing": true}}"#),
            403,
            "forbidden",
            None,
        ),
        refusal(
            Method::POST,
            "/v2/accounts/a/services/status",
            Admin,
            Some(r#"{"data": {}}"#),
            400,
            "validation error",
            Some("in_good_standing"),
        ),
        // §2.6-§2.8: ranges and audit ids.
        refusal(
            Method::GET,
            "/v2/accounts/a/services/audit?created_from=63800000000&created_to=63900000000",
            Customer,
            None,
            400,
            "validation error",
            Some("created_from"),
        ),
        refusal(
            Method::GET,
            "/v2/accounts/a/services/audit/202601-0123456789abcdef0123456789abcdef",
            Customer,
            None,
            404,
            "bad_identifier",
            Some("202601-0123456789abcdef0123456789abcdef"),
        ),
        refusal(
            Method::GET,
            "/v2/accounts/a/services/audit/summary?created_from=63800000000&created_to=63900000000",
            Customer,
            None,
            400,
            "validation error",
            Some("created_from"),
        ),
        // §2.9, §2.10.
        refusal(
            Method::POST,
            "/v2/accounts/a/services/ghost",
            Reseller,
            Some("{}"),
            404,
            "bad_identifier",
            Some("ghost"),
        ),
        refusal(
            Method::POST,
            "/v2/accounts/a/services/devices",
            Customer,
            Some("{}"),
            403,
            "forbidden",
            None,
        ),
        refusal(
            Method::DELETE,
            "/v2/accounts/a/services/devices",
            Reseller,
            None,
            400,
            "plan_is_not_assigned",
            None,
        ),
        // §2.11, §2.12.
        refusal(
            Method::POST,
            "/v2/accounts/a/services/manual",
            Customer,
            Some(r#"{"data": {}}"#),
            403,
            "forbidden",
            None,
        ),
        refusal(
            Method::POST,
            "/v2/accounts/a/services/manual",
            Reseller,
            Some(r#"{"data": {"devices": {"sip_device": -1}}}"#),
            400,
            "validation error",
            Some("devices.sip_device"),
        ),
        refusal(
            Method::PATCH,
            "/v2/accounts/a/services/overrides",
            Customer,
            Some(r#"{"data": {}}"#),
            403,
            "forbidden",
            None,
        ),
        refusal(
            Method::POST,
            "/v2/accounts/a/services/overrides",
            Reseller,
            Some(r#"{"data": {"merge": {"strategy": "bogus"}}}"#),
            400,
            "validation error",
            Some("merge.strategy"),
        ),
        // §2.13: the account-less quote is for super admins.
        refusal(
            Method::POST,
            "/v2/services/quote",
            Reseller,
            Some(r#"{"data": {}}"#),
            403,
            "forbidden",
            None,
        ),
        // §2.14, §2.15: reseller-only.
        refusal(
            Method::POST,
            "/v2/accounts/a/services/reconciliation",
            Customer,
            None,
            403,
            "forbidden",
            None,
        ),
        refusal(
            Method::POST,
            "/v2/accounts/a/services/synchronization",
            Customer,
            None,
            403,
            "forbidden",
            None,
        ),
        // §2.16 and item 9: the amount is refused at the door, naming it.
        refusal(
            Method::POST,
            "/v2/accounts/a/services/topup",
            Customer,
            Some(r#"{"data": {}}"#),
            400,
            "validation error",
            Some("amount"),
        ),
        refusal(
            Method::POST,
            "/v2/accounts/a/services/topup",
            Customer,
            Some(r#"{"data": {"amount": -3}}"#),
            400,
            "validation error",
            Some("amount"),
        ),
        // §3.
        refusal(
            Method::GET,
            "/v2/accounts/r/service_plans/ghost",
            Reseller,
            None,
            404,
            "bad_identifier",
            Some("ghost"),
        ),
        refusal(
            Method::POST,
            "/v2/accounts/a/service_plans/ghost",
            Reseller,
            Some("{}"),
            404,
            "bad_identifier",
            Some("ghost"),
        ),
        refusal(
            Method::DELETE,
            "/v2/accounts/a/service_plans/devices",
            Reseller,
            None,
            400,
            "plan_is_not_assigned",
            None,
        ),
        refusal(
            Method::POST,
            "/v2/accounts/a/service_plans/override",
            Reseller,
            Some(r#"{"overrides": {}}"#),
            403,
            "forbidden",
            None,
        ),
        refusal(
            Method::GET,
            "/v2/accounts/a/service_plans/available/ghost",
            Customer,
            None,
            404,
            "bad_identifier",
            Some("ghost"),
        ),
        refusal(
            Method::POST,
            "/v2/accounts/a/service_plans",
            Customer,
            Some(r#"{"data": {"add": ["devices"]}}"#),
            403,
            "forbidden",
            None,
        ),
    ]
}

async fn every_documented_refusal_has_kazoos_status_and_message(store: &Store) {
    seed(store).await;
    let (base, _server) = start_server(store).await;
    let customer = token(store, "a", false).await;
    let reseller = token(store, "r", false).await;
    let admin = token(store, "m", true).await;
    for case in refusals() {
        let sent = match case.caller {
            Caller::Nobody => None,
            Caller::Customer => Some(customer.as_str()),
            Caller::Reseller => Some(reseller.as_str()),
            Caller::Admin => Some(admin.as_str()),
        };
        let url = format!("{base}{}", case.path);
        let answer = call(case.method.clone(), &url, sent, case.body, &[]).await;
        let what = format!("{} {}: {}", case.method, case.path, answer.body);
        assert_eq!(answer.status, case.status, "{what}");
        assert_eq!(answer.body["status"], "error", "{what}");
        assert_eq!(answer.body["error"], case.status.to_string(), "{what}");
        assert_eq!(answer.body["message"], case.message, "{what}");
        assert_eq!(answer.body["auth_token"], "", "no token echoed: {what}");
        if let Some(token) = sent {
            assert!(!answer.body.to_string().contains(token), "{what}");
        }
        match (case.status, case.names) {
            (404, Some(cause)) => {
                assert_eq!(answer.body["data"]["cause"], cause, "{what}");
                assert_eq!(answer.body["data"]["message"], "bad identifier", "{what}");
            }
            (400, Some(field)) => assert!(answer.body["data"].get(field).is_some(), "names {field}: {what}"),
            _ => {}
        }
    }
}

/// A made-up token in an error answer is never written back (`X-Auth-Token` pasted
/// by mistake, someone else's token).
async fn error_bodies_never_repeat_a_token_they_were_sent(store: &Store) {
    seed(store).await;
    let (base, _server) = start_server(store).await;
    let stranger = "d41d8cd98f00b204e9800998ecf8427e-not-issued-here";
    for (method, path) in [
        (Method::GET, "/v2/accounts/a/services"),
        (Method::PUT, "/v2/accounts/a/services"),
        (Method::GET, "/v2/nowhere"),
        (Method::POST, "/v2/accounts/a/services/topup"),
    ] {
        let answer = call(
            method.clone(),
            &format!("{base}{path}"),
            Some(stranger),
            Some("{\"data\": 1"),
            &[],
        )
        .await;
        assert!(answer.status >= 400, "{method} {path}: {}", answer.body);
        assert!(
            !answer.body.to_string().contains(stranger),
            "{method} {path}: {}",
            answer.body
        );
    }
    // A success echoes the token it accepted, as Kazoo does.
    let admin = token(store, "m", true).await;
    let answer = get(&format!("{base}/v2/accounts/a/services"), Some(&admin)).await;
    assert_eq!(answer.status, 200);
    assert_eq!(answer.body["auth_token"], admin.as_str());
}

async fn text(url: &str) -> (u16, String, Option<String>) {
    let response = reqwest::get(url).await.expect("request sent");
    let status = response.status().as_u16();
    let content_type = response
        .headers()
        .get("content-type")
        .and_then(|value| value.to_str().ok())
        .map(str::to_owned);
    (status, response.text().await.expect("body"), content_type)
}

async fn healthz_checks_the_database_and_metrics_count_by_route_template(store: &Store) {
    seed(store).await;
    let (base, _server) = start_server(store).await;
    let (status, body, _) = text(&format!("{base}/healthz")).await;
    assert_eq!(status, 200, "{body}");
    let health: Value = serde_json::from_str(&body).expect("JSON");
    assert_eq!(health["status"], "ok");
    assert_eq!(health["checks"]["database"], "ok");

    let customer = token(store, "a", false).await;
    for account in ["a", "b"] {
        get(&format!("{base}/v2/accounts/{account}/services"), Some(&customer)).await;
    }
    get(&format!("{base}/v2/no/such/path"), None).await;
    let (status, exposition, content_type) = text(&format!("{base}/metrics")).await;
    assert_eq!(status, 200);
    assert!(
        content_type.is_some_and(|kind| kind.starts_with("text/plain; version=0.0.4")),
        "Prometheus text format"
    );
    let route = "/v2/accounts/{account_id}/services";
    for line in [
        format!("tally_http_requests_total{{method=\"GET\",route=\"{route}\",status=\"200\"}} 1"),
        format!("tally_http_requests_total{{method=\"GET\",route=\"{route}\",status=\"403\"}} 1"),
        "tally_http_requests_total{method=\"GET\",route=\"unmatched\",status=\"404\"} 1".to_owned(),
        "tally_http_requests_total{method=\"GET\",route=\"/healthz\",status=\"200\"} 1".to_owned(),
        format!("tally_http_request_duration_seconds_count{{method=\"GET\",route=\"{route}\",status=\"200\"}} 1"),
        format!("tally_http_request_duration_seconds_bucket{{method=\"GET\",route=\"{route}\",status=\"403\",le=\"+Inf\"}} 1"),
    ] {
        assert!(exposition.lines().any(|found| found == line), "{line} in:\n{exposition}");
    }
    assert!(
        !exposition.contains("/v2/accounts/a/"),
        "route templates, never raw paths"
    );

    // The database gone: not ready.
    store.close().await;
    let (status, body, _) = text(&format!("{base}/healthz")).await;
    assert_eq!(status, 503, "{body}");
    let health: Value = serde_json::from_str(&body).expect("JSON");
    assert_eq!(health["status"], "unavailable");
    assert_eq!(health["checks"]["database"], "unavailable");
}

/// A log writer shared with the test.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("not poisoned").extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'writer> tracing_subscriber::fmt::MakeWriter<'writer> for Captured {
    type Writer = Captured;
    fn make_writer(&'writer self) -> Self::Writer {
        self.clone()
    }
}

async fn every_request_writes_one_json_access_line(store: &Store) {
    seed(store).await;
    let captured = Captured::default();
    let filter = tally::telemetry::filter_from(Some("tally::api::access=info"), "info").expect("filter");
    let subscriber = tally::telemetry::subscriber(filter, tally::telemetry::LogFormat::Json, captured.clone());
    // The test runtime has one thread: the server's tasks log through this default.
    let _logging = tracing::subscriber::set_default(subscriber);
    let (base, _server) = start_server(store).await;
    let admin = token(store, "m", true).await;
    let given = call(
        Method::GET,
        &format!("{base}/v2/accounts/a/services"),
        Some(&admin),
        None,
        &[("X-Request-ID", "trace-7")],
    )
    .await;
    assert_eq!(given.status, 200);
    let refused = get(&format!("{base}/v2/accounts/a/services/summary"), None).await;
    assert_eq!(refused.status, 401);
    let made_up_id = refused.request_id.clone().expect("an id is answered");

    let text = String::from_utf8(captured.0.lock().expect("not poisoned").clone()).expect("UTF-8");
    let lines: Vec<Value> = text
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|error| panic!("{error}: {line}")))
        .collect();
    assert_eq!(lines.len(), 2, "one line per request: {text}");
    let first = &lines[0];
    assert_eq!(first["method"], "GET");
    assert_eq!(first["route"], "/v2/accounts/{account_id}/services");
    assert_eq!(first["status"].to_string(), "200");
    assert_eq!(first["request_id"], "trace-7");
    assert_eq!(first["account_id"], "m", "the account the token acts as");
    assert!(first["duration_ms"].to_string().parse::<f64>().is_ok(), "{first}");
    let second = &lines[1];
    assert_eq!(second["route"], "/v2/accounts/{account_id}/services/summary");
    assert_eq!(second["status"].to_string(), "401");
    assert_eq!(second["request_id"], made_up_id.as_str());
    assert!(second.get("account_id").is_none(), "nobody authenticated: {second}");
    assert!(!text.contains(&admin), "the access log holds no token");
}

/// The activation charges (`summary.today`) of an account's audit rows
/// (`GET …/services/audit`), in no particular order: rows of one second tie.
async fn charged_today(base: &str, token: &str, account: &str) -> Vec<rust_decimal::Decimal> {
    let answer = get(&format!("{base}/v2/accounts/{account}/services/audit"), Some(token)).await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    let mut today: Vec<rust_decimal::Decimal> = answer.body["data"]
        .as_array()
        .expect("rows")
        .iter()
        .filter_map(|row| crate::support::decimal(&row["summary"]["today"]))
        .filter(|amount| !amount.is_zero())
        .collect();
    today.sort();
    today
}

async fn the_seeds_legacy_override_payload_changes_the_invoice(store: &Store) {
    seed(store).await;
    let (base, _server) = start_server(store).await;
    let admin = token(store, "m", true).await;
    for account in ["a", "b"] {
        let assigned = post(
            &format!("{base}/v2/accounts/{account}/service_plans/wl"),
            Some(&admin),
            "{}",
        )
        .await;
        assert_eq!(assigned.status, 200, "{}", assigned.body);
    }
    // The Service_plans seed's request: a category map per plan (Kazoo 4.x).
    let seed_payload =
        r#"{"overrides": {"wl": {"whitelabel": {"_all": {"activation_charge": 700}}}, "not_assigned": {"x": {}}}}"#;
    let answer = post(
        &format!("{base}/v2/accounts/a/service_plans/override"),
        Some(&admin),
        seed_payload,
    )
    .await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert_eq!(
        answer.body["data"],
        json!({"whitelabel": {"_all": {"rate": 5, "activation_charge": 700}}}),
        "the merged plan's categories"
    );
    let stored = get(&format!("{base}/v2/accounts/a/services"), Some(&admin)).await;
    assert_eq!(
        stored.body["data"]["wl"]["overrides"],
        json!({"plan": {"whitelabel": {"_all": {"activation_charge": 700}}}})
    );

    // Two whitelabel units on both accounts: `a` pays the overridden activation.
    for account in ["a", "b"] {
        let manual = post(
            &format!("{base}/v2/accounts/{account}/services/manual"),
            Some(&admin),
            r#"{"data": {"whitelabel": {"whitelabel": 2}}}"#,
        )
        .await;
        assert_eq!(manual.status, 200, "{}", manual.body);
    }
    // 2 units × 700 where the override applies, × 10 (the plan's) where it does not.
    assert_eq!(charged_today(&base, &admin, "a").await, vec![1400.into()]);
    assert_eq!(charged_today(&base, &admin, "b").await, vec![20.into()]);

    // The partial-plan form still reads as it is.
    let answer = post(
        &format!("{base}/v2/accounts/a/service_plans/override"),
        Some(&admin),
        r#"{"data": {"overrides": {"wl": {"plan": {"whitelabel": {"_all": {"rate": 7}}}}}}}"#,
    )
    .await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert_eq!(
        answer.body["data"],
        json!({"whitelabel": {"_all": {"rate": 7, "activation_charge": 10}}})
    );
}

async fn top_up_amounts_are_refused_at_the_door_by_rule(store: &Store) {
    seed(store).await;
    let (base, _server) = start_server(store).await;
    let customer = token(store, "a", false).await;
    let url = format!("{base}/v2/accounts/a/services/topup");
    for (amount, rule) in [
        ("null", "required"),
        ("\"ten\"", "type"),
        ("0", "minimum"),
        ("-3", "minimum"),
        ("\"-0.01\"", "minimum"),
        ("0.00001", "minimum"),
        ("1e30", "maximum"),
        ("922337203685477.5808", "maximum"),
    ] {
        let answer = post(
            &url,
            Some(&customer),
            &format!("{{\"data\": {{\"amount\": {amount}}}}}"),
        )
        .await;
        assert_eq!(answer.status, 400, "{amount}: {}", answer.body);
        assert!(
            answer.body["data"]["amount"][rule]["message"].is_string(),
            "{amount} breaks {rule}: {}",
            answer.body
        );
    }
    let ledgers = store
        .query_count("SELECT COUNT(*) FROM ledgers")
        .await
        .expect("ledgers counted");
    assert_eq!(ledgers, 0, "nothing refused was stored");
}

async fn page_size_is_the_number_of_rows_returned(store: &Store) {
    seed(store).await;
    let (base, _server) = start_server(store).await;
    let reseller = token(store, "r", false).await;
    let answer = get(
        &format!("{base}/v2/accounts/r/service_plans?page_size=5"),
        Some(&reseller),
    )
    .await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert_eq!(answer.body["data"].as_array().map(Vec::len), Some(2));
    assert_eq!(answer.body["page_size"], 2, "{}", answer.body);
    let answer = get(
        &format!("{base}/v2/accounts/r/service_plans?page_size=1"),
        Some(&reseller),
    )
    .await;
    assert_eq!(answer.body["page_size"], 1);
    assert_eq!(answer.body["next_start_key"], "wl");
}

/// `plans.md` §6 through the API: a PATCH of global overrides lets an empty object
/// replace and a `null` delete; a per-plan merge ignores an empty object.
async fn override_writes_merge_by_the_rules_of_plans_md(store: &Store) {
    seed(store).await;
    let (base, _server) = start_server(store).await;
    let reseller = token(store, "r", false).await;
    let account = format!("{base}/v2/accounts/a/services");
    let assigned = post(&format!("{account}/devices"), Some(&reseller), "{}").await;
    assert_eq!(assigned.status, 200, "{}", assigned.body);
    let manual = post(
        &format!("{account}/manual"),
        Some(&reseller),
        r#"{"data": {"devices": {"sip_device": 3}}}"#,
    )
    .await;
    assert_eq!(manual.status, 200, "{}", manual.body);
    let set = post(
        &format!("{account}/overrides"),
        Some(&reseller),
        r#"{"data": {"plan": {"devices": {"sip_device": {"rate": 12, "minimum": 5}}}}}"#,
    )
    .await;
    assert_eq!(set.status, 200, "{}", set.body);
    let recurring = |summary: &Value| crate::support::decimal(&summary["data"]["invoices"][0]["summary"]["recurring"]);
    let summary = get(&format!("{account}/summary"), Some(&reseller)).await;
    assert_eq!(recurring(&summary.body), Some(60.into()), "5 × 12: {}", summary.body);

    let patch = |body: &'static str| {
        let url = format!("{account}/overrides");
        let reseller = reseller.clone();
        async move { call(Method::PATCH, &url, Some(&reseller), Some(body), &[]).await }
    };
    let answer = patch(r#"{"data": {"plan": {"devices": {"sip_device": {"minimum": null}}}}}"#).await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert_eq!(
        answer.body["data"],
        json!({"plan": {"devices": {"sip_device": {"rate": 12}}}})
    );
    let summary = get(&format!("{account}/summary"), Some(&reseller)).await;
    assert_eq!(recurring(&summary.body), Some(36.into()), "3 × 12: {}", summary.body);

    let answer = patch(r#"{"data": {"plan": {}}}"#).await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert_eq!(answer.body["data"], json!({"plan": {}}), "an empty object replaces");
    let summary = get(&format!("{account}/summary"), Some(&reseller)).await;
    assert_eq!(
        recurring(&summary.body),
        Some(3.into()),
        "the plan's rate again: {}",
        summary.body
    );

    // Per-plan overrides merged with `merge: true`: an empty object changes nothing.
    let url = format!("{account}/devices");
    let first = post(
        &url,
        Some(&reseller),
        r#"{"data": {"overrides": {"plan": {"devices": {"sip_device": {"rate": 2}}}}}}"#,
    )
    .await;
    assert_eq!(first.status, 200, "{}", first.body);
    let merged = post(
        &url,
        Some(&reseller),
        r#"{"merge": true, "data": {"overrides": {"plan": {"devices": {}}}}}"#,
    )
    .await;
    assert_eq!(merged.status, 200, "{}", merged.body);
    assert_eq!(
        merged.body["data"]["devices"]["overrides"],
        json!({"plan": {"devices": {"sip_device": {"rate": 2}}}})
    );
}

/// `revision` is the services record's revision where the answer is that record, and
/// `undefined` where there is no document (Kazoo's `_rev`).
async fn revision_is_the_services_records_own(store: &Store) {
    seed(store).await;
    let (base, _server) = start_server(store).await;
    let reseller = token(store, "r", false).await;
    let account = format!("{base}/v2/accounts/a/services");
    let before = get(&account, Some(&reseller)).await;
    assert_eq!(before.body["revision"], "undefined", "no services record yet");
    let assigned = post(&format!("{account}/devices"), Some(&reseller), "{}").await;
    let stored = || async {
        store
            .query_count("SELECT revision FROM services WHERE account_id = 'a'")
            .await
            .expect("revision read")
            .to_string()
    };
    assert_eq!(assigned.body["revision"], stored().await.as_str(), "{}", assigned.body);
    let read = get(&account, Some(&reseller)).await;
    let again = get(&format!("{account}/overrides"), Some(&reseller)).await;
    assert_eq!(read.body["revision"], assigned.body["revision"], "reads change nothing");
    assert_eq!(again.body["revision"], assigned.body["revision"]);
    let written = post(
        &format!("{account}/overrides"),
        Some(&reseller),
        r#"{"data": {"plan": {"devices": {"sip_device": {"rate": 2}}}}}"#,
    )
    .await;
    let number = |answer: &Value| {
        answer["revision"]
            .as_str()
            .and_then(|text| text.parse::<i64>().ok())
            .unwrap_or_else(|| panic!("a numeric revision: {answer}"))
    };
    assert!(
        number(&written.body) > number(&assigned.body),
        "a write makes a new revision"
    );
    assert_eq!(written.body["revision"], stored().await.as_str());
    let listing = get(&format!("{base}/v2/accounts/r/service_plans"), Some(&reseller)).await;
    assert_eq!(listing.body["revision"], "undefined", "a listing is no document");
}

on_both_backends!(
    revision_is_the_services_records_own,
    every_documented_refusal_has_kazoos_status_and_message,
    error_bodies_never_repeat_a_token_they_were_sent,
    healthz_checks_the_database_and_metrics_count_by_route_template,
    every_request_writes_one_json_access_line,
    the_seeds_legacy_override_payload_changes_the_invoice,
    top_up_amounts_are_refused_at_the_door_by_rule,
    page_size_is_the_number_of_rows_returned,
    override_writes_merge_by_the_rules_of_plans_md,
);
