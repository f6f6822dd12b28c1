//! The HTTP API's framework rules (issue 6): authentication, the access rule, 404,
//! 405, bad input, the envelope and the request id, on both backends. Operation
//! bodies have their own tests.

use crate::api_support::{call, get, post, seed_tree, start_server, token};
use crate::helpers::{id, on_both_backends};
use reqwest::Method;
use serde_json::{json, Value};
use tally::domain::summary::GregorianSeconds;
use tally::domain::token::TokenVerdict;
use tally::store::{NewToken, Store, StoreError, TokenOrigin};

fn is_hex(text: &str, length: usize) -> bool {
    text.len() == length
        && text
            .bytes()
            .all(|byte| byte.is_ascii_digit() || (b'a'..=b'f').contains(&byte))
}

fn assert_error_envelope(body: &Value, status: u16, message: &str) {
    assert_eq!(body["status"], "error", "{body}");
    assert_eq!(body["error"], status.to_string(), "{body}");
    assert_eq!(body["message"], message, "{body}");
    assert!(body.get("data").is_some(), "{body}");
    for member in ["timestamp", "version", "node", "request_id"] {
        assert!(body[member].is_string(), "{member} in {body}");
    }
    assert_eq!(body["auth_token"], "", "an error echoes no token: {body}");
}

async fn tokens_are_stored_hashed_and_refused_for_unknown_accounts(store: &Store) {
    seed_tree(store).await;
    let plain = token(store, "a", false).await;
    assert!(is_hex(&plain, 64), "{plain}");
    let now = GregorianSeconds(63_900_000_000);
    let presented = store.token_access(&plain).await.expect("lookup").expect("known");
    assert_eq!(presented.account, id("a"));
    assert_eq!(
        presented.stored.verdict(now),
        TokenVerdict::Granted { super_admin: false }
    );
    let admin = token(store, "m", true).await;
    assert_ne!(admin, plain);
    let presented = store.token_access(&admin).await.expect("lookup").expect("known");
    assert_eq!(presented.account, id("m"));
    assert_eq!(
        presented.stored.verdict(now),
        TokenVerdict::Granted { super_admin: true }
    );
    assert_eq!(store.token_access("not-a-token").await.expect("lookup"), None);
    let stored = store
        .query_count(&format!(
            "SELECT COUNT(*) FROM auth_tokens WHERE token_hash = '{plain}'"
        ))
        .await
        .expect("count");
    assert_eq!(stored, 0, "the plain token is not stored");
    let refused = store
        .create_token(
            NewToken {
                account: &id("nobody"),
                super_admin: false,
                expires_at: None,
                origin: TokenOrigin::Cli,
                owner_id: None,
                description: None,
            },
            now,
        )
        .await;
    assert!(matches!(refused, Err(StoreError::Refused(_))), "{refused:?}");
}

async fn missing_or_unknown_tokens_are_401(store: &Store) {
    seed_tree(store).await;
    let (base, _server) = start_server(store).await;
    let url = format!("{base}/v2/accounts/a/services");
    for answer in [get(&url, None).await, get(&url, Some("0123456789abcdef")).await] {
        assert_eq!(answer.status, 401, "{:?}", answer.body);
        assert_error_envelope(&answer.body, 401, "invalid_credentials");
        assert_eq!(answer.body["data"], json!({"message": "invalid credentials"}));
    }
    let answer = get(&format!("{base}/v2/services/editable"), None).await;
    assert_eq!(answer.status, 401, "account-less routes need a token too");
}

async fn other_branches_and_ancestors_are_403(store: &Store) {
    seed_tree(store).await;
    let (base, _server) = start_server(store).await;
    let acme = token(store, "a", false).await;
    // `b` is a sibling of `a`, `s` is on another branch, `r` and `m` are ancestors.
    for target in ["b", "s", "r", "m"] {
        let answer = get(&format!("{base}/v2/accounts/{target}/services"), Some(&acme)).await;
        assert_eq!(answer.status, 403, "{target}: {:?}", answer.body);
        assert_error_envelope(&answer.body, 403, "forbidden");
        assert_eq!(answer.body["auth_token"], "", "an error never echoes the token");
    }
}

async fn unknown_accounts_are_404(store: &Store) {
    seed_tree(store).await;
    let (base, _server) = start_server(store).await;
    let admin = token(store, "m", true).await;
    let answer = get(&format!("{base}/v2/accounts/nobody/services"), Some(&admin)).await;
    assert_eq!(answer.status, 404, "{:?}", answer.body);
    assert_error_envelope(&answer.body, 404, "bad_identifier");
    assert_eq!(
        answer.body["data"],
        json!({"cause": "nobody", "message": "bad identifier"})
    );
    // An unknown path is a 404 in the same envelope.
    let answer = get(&format!("{base}/v2/accounts/a/nothing_here"), Some(&admin)).await;
    assert_eq!(answer.status, 404);
    assert_error_envelope(&answer.body, 404, "not_found");
}

async fn other_methods_are_405_with_allow(store: &Store) {
    seed_tree(store).await;
    let (base, _server) = start_server(store).await;
    let admin = token(store, "m", true).await;
    let cases = [
        (Method::PUT, "/v2/accounts/a/services", "GET, POST"),
        (Method::DELETE, "/v2/accounts/a/services/status", "GET, POST"),
        // A plan id only takes POST and DELETE.
        (Method::GET, "/v2/accounts/a/services/some_plan", "POST, DELETE"),
        (Method::PATCH, "/v2/accounts/a/services/audit", "GET"),
        (Method::GET, "/v2/services/quote", "POST"),
        (Method::GET, "/v2/accounts/a/service_plans/override", "POST"),
    ];
    for (method, path, allow) in cases {
        let answer = call(method.clone(), &format!("{base}{path}"), Some(&admin), None, &[]).await;
        assert_eq!(answer.status, 405, "{method} {path}: {:?}", answer.body);
        assert_error_envelope(&answer.body, 405, "method not allowed");
        assert_eq!(answer.allow.as_deref(), Some(allow), "{method} {path}");
    }
    // Before credentials, as Kazoo checks the method first.
    let answer = call(Method::PUT, &format!("{base}/v2/accounts/a/services"), None, None, &[]).await;
    assert_eq!(answer.status, 405);
}

async fn invalid_json_and_bad_page_sizes_are_400(store: &Store) {
    seed_tree(store).await;
    let (base, _server) = start_server(store).await;
    let admin = token(store, "m", true).await;
    for body in ["{\"data\": ", "not json", "[1, 2]"] {
        let answer = post(&format!("{base}/v2/accounts/a/services"), Some(&admin), body).await;
        assert_eq!(answer.status, 400, "{body}: {:?}", answer.body);
        assert_error_envelope(&answer.body, 400, "validation error");
        let message = answer.body["data"]["data"]["type"]["message"]
            .as_str()
            .unwrap_or_else(|| panic!("field data, rule type: {}", answer.body));
        assert!(message.contains("JSON"), "{message}");
    }
    let answer = get(
        &format!("{base}/v2/accounts/a/services/audit?page_size=zero"),
        Some(&admin),
    )
    .await;
    assert_eq!(answer.status, 400, "{:?}", answer.body);
    assert!(
        answer.body["data"]["page_size"]["type"]["message"].is_string(),
        "{}",
        answer.body
    );
}

async fn success_envelope_and_request_ids(store: &Store) {
    seed_tree(store).await;
    let (base, _server) = start_server(store).await;
    let bolt = token(store, "b", false).await;
    let url = format!("{base}/v2/accounts/b/services");
    let answer = call(Method::GET, &url, Some(&bolt), None, &[("X-Request-ID", "req-42")]).await;
    assert_eq!(answer.status, 200, "{:?}", answer.body);
    let body = &answer.body;
    assert_eq!(body["status"], "success");
    assert_eq!(body["data"], json!({}), "no plans assigned");
    assert_eq!(body["revision"], "undefined");
    assert_eq!(body["version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(body["auth_token"], bolt.as_str());
    assert!(body["node"].as_str().is_some_and(|node| !node.is_empty()));
    let timestamp = body["timestamp"].as_str().expect("timestamp");
    assert!(
        chrono::DateTime::parse_from_rfc3339(timestamp).is_ok() && timestamp.ends_with('Z'),
        "{timestamp}"
    );
    assert_eq!(body["request_id"], "req-42");
    assert_eq!(answer.request_id.as_deref(), Some("req-42"));

    // Without one, each request gets a new id, in the header and the body alike.
    let first = get(&url, Some(&bolt)).await;
    let second = get(&url, None).await;
    for answer in [&first, &second] {
        let header = answer.request_id.as_deref().expect("X-Request-ID answered");
        assert!(is_hex(header, 32), "{header}");
        assert_eq!(answer.body["request_id"], header);
    }
    assert_ne!(first.request_id, second.request_id);
}

/// Request ids on refusals that come before any operation runs.
async fn request_ids_are_echoed_or_generated(store: &Store) {
    seed_tree(store).await;
    let (base, _server) = start_server(store).await;
    let url = format!("{base}/v2/accounts/a/services");
    let given = call(Method::GET, &url, None, None, &[("X-Request-ID", "abc-123")]).await;
    assert_eq!(given.status, 401);
    assert_eq!(given.request_id.as_deref(), Some("abc-123"));
    assert_eq!(given.body["request_id"], "abc-123");
    let first = call(Method::PUT, &url, None, None, &[]).await;
    let second = call(Method::PUT, &url, None, None, &[]).await;
    for answer in [&first, &second] {
        assert_eq!(answer.status, 405);
        let header = answer.request_id.as_deref().expect("X-Request-ID answered");
        assert!(is_hex(header, 32), "{header}");
        assert_eq!(answer.body["request_id"], header);
        assert_eq!(answer.body["auth_token"], "", "{}", answer.body);
    }
    assert_ne!(first.request_id, second.request_id);
}

async fn setting_the_status_needs_a_super_admin(store: &Store) {
    seed_tree(store).await;
    let (base, _server) = start_server(store).await;
    let body = r#"{"data": {"in_good_standing": false, "reason": "unpaid"}}"#;
    // The reseller of `a`, and `a` itself: access, but not super admins.
    for account in ["r", "a"] {
        let plain = token(store, account, false).await;
        let answer = post(&format!("{base}/v2/accounts/a/services/status"), Some(&plain), body).await;
        assert_eq!(answer.status, 403, "{account}: {:?}", answer.body);
        assert_error_envelope(&answer.body, 403, "forbidden");
    }
}

on_both_backends!(
    tokens_are_stored_hashed_and_refused_for_unknown_accounts,
    missing_or_unknown_tokens_are_401,
    other_branches_and_ancestors_are_403,
    unknown_accounts_are_404,
    other_methods_are_405_with_allow,
    invalid_json_and_bad_page_sizes_are_400,
    success_envelope_and_request_ids,
    request_ids_are_echoed_or_generated,
    setting_the_status_needs_a_super_admin,
);
