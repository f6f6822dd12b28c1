//! Issue 12, items 1 and 7: Kazoo's logins (`PUT /v2/api_auth`, `PUT /v2/user_auth`),
//! tokens that expire and can be listed and revoked, the rate limit on failed logins,
//! and tokens that match Kazoo's model (deleted and disabled accounts, super admin for
//! the master only, 401 before the body, existence hidden outside one's tree), on both
//! backends.

use crate::api_support::{call, get, post, seed_tree, token};
use crate::helpers::{id, on_both_backends};
use md5::{Digest, Md5};
use reqwest::Method;
use serde_json::{json, Value};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tally::api::LoginSettings;
use tally::config::Settings;
use tally::domain::summary::GregorianSeconds;
use tally::jobs::context::JobContext;
use tally::ops::{Clock, Operations};
use tally::store::{NewToken, Store, StoreError, TokenOrigin, TOKEN_ID_LENGTH};

const START: i64 = 63_900_000_000;

/// A clock the test moves.
#[derive(Clone)]
struct TestClock(Arc<AtomicI64>);

impl Clock for TestClock {
    fn now(&self) -> GregorianSeconds {
        GregorianSeconds(self.0.load(Ordering::SeqCst))
    }
}

impl TestClock {
    fn advance(&self, seconds: i64) {
        self.0.fetch_add(seconds, Ordering::SeqCst);
    }
}

struct Server {
    base: String,
    clock: TestClock,
    _task: tokio::task::JoinHandle<()>,
}

async fn serve(store: &Store, login: LoginSettings) -> Server {
    let clock = TestClock(Arc::new(AtomicI64::new(START)));
    let context = JobContext::new(store.clone(), Settings::default()).expect("job context");
    let ops = Operations::new(context).with_clock(clock.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("address"));
    let app = tally::api::router_with_login(ops, login).into_make_service_with_connect_info::<SocketAddr>();
    let task = tokio::spawn(async move {
        axum::serve(listener, app).await.expect("server runs");
    });
    Server {
        base,
        clock,
        _task: task,
    }
}

fn md5_hex(text: &str) -> String {
    hex::encode(Md5::digest(text.as_bytes()))
}

/// The tree of `api_support` with api keys, users and a number.
async fn seed_credentials(store: &Store) {
    seed_tree(store).await;
    let ann = md5_hex("ann:secret");
    let bob = md5_hex("bob:hunter2");
    store
        .execute_script(&format!(
            "UPDATE accounts SET api_key = 'key-of-acme' WHERE id = 'a';\n\
             UPDATE accounts SET api_key = 'key-of-master' WHERE id = 'm';\n\
             UPDATE accounts SET api_key = 'key-of-bolt' WHERE id = 'b';\n\
             UPDATE accounts SET name = 'Acme Corp.' WHERE id = 'a';\n\
             INSERT INTO users (id, account_id, username, md5_auth) VALUES ('u-ann', 'a', 'ann', '{ann}');\n\
             INSERT INTO users (id, account_id, username, md5_auth, enabled) VALUES ('u-bob', 'a', 'bob', '{bob}', FALSE);\n\
             INSERT INTO phone_numbers (id, account_id, carrier_module) VALUES ('+14155550100', 'a', 'knm_local');\n"
        ))
        .await
        .expect("credentials seeded");
}

async fn put(url: &str, body: &Value) -> crate::api_support::Answer {
    call(Method::PUT, url, None, Some(&body.to_string()), &[]).await
}

fn assert_no_token_in(body: &Value, token: &str) {
    assert!(!body.to_string().contains(token), "the token is echoed: {body}");
    assert_eq!(body["auth_token"], "", "{body}");
}

async fn api_auth_answers_a_token_that_expires_after_the_configured_lifetime(store: &Store) {
    seed_credentials(store).await;
    let server = serve(store, LoginSettings::default()).await;
    let answer = put(
        &format!("{}/v2/api_auth", server.base),
        &json!({"data": {"api_key": "key-of-acme"}}),
    )
    .await;
    assert_eq!(answer.status, 201, "{}", answer.body);
    assert_eq!(answer.body["status"], "success");
    let issued = answer.body["auth_token"].as_str().expect("auth_token").to_owned();
    assert_eq!(issued.len(), 64, "{issued}");
    assert_eq!(answer.body["data"]["account_id"], "a");
    assert_eq!(answer.body["data"]["account_name"], "Acme Corp.");
    assert_eq!(answer.body["data"]["reseller_id"], "r");
    assert_eq!(answer.body["data"]["is_reseller"], false);
    assert!(answer.body["data"].get("owner_id").is_none(), "an api key has no owner");

    let services = format!("{}/v2/accounts/a/services", server.base);
    let used = get(&services, Some(&issued)).await;
    assert_eq!(used.status, 200, "{}", used.body);
    assert_eq!(used.body["auth_token"], issued.as_str());
    let listed = store.list_tokens(Some(&id("a"))).await.expect("listed");
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].origin, "api_auth");
    assert_eq!(listed[0].expires_at, Some(START + 3600));
    assert!(!listed[0].super_admin);

    server.clock.advance(3599);
    assert_eq!(get(&services, Some(&issued)).await.status, 200, "one second left");
    server.clock.advance(1);
    let expired = get(&services, Some(&issued)).await;
    assert_eq!(expired.status, 401, "{}", expired.body);
    assert_eq!(expired.body["message"], "invalid_credentials");
    assert_no_token_in(&expired.body, &issued);
}

async fn api_auth_refuses_unknown_keys_with_401_and_missing_keys_with_400(store: &Store) {
    seed_credentials(store).await;
    let server = serve(store, LoginSettings::default()).await;
    let url = format!("{}/v2/api_auth", server.base);
    let unknown = put(&url, &json!({"data": {"api_key": "not-a-key"}})).await;
    assert_eq!(unknown.status, 401, "{}", unknown.body);
    assert_eq!(unknown.body["error"], "401");
    assert_eq!(unknown.body["auth_token"], "");
    let missing = put(&url, &json!({"data": {}})).await;
    assert_eq!(missing.status, 400, "{}", missing.body);
    assert!(missing.body["data"].get("api_key").is_some(), "{}", missing.body);
    let counted = store.list_tokens(None).await.expect("listed");
    assert!(counted.is_empty(), "no token issued: {counted:?}");
}

async fn user_auth_checks_md5_credentials_in_the_named_account(store: &Store) {
    seed_credentials(store).await;
    let server = serve(store, LoginSettings::default()).await;
    let url = format!("{}/v2/user_auth", server.base);
    let ann = md5_hex("ann:secret");
    // Kazoo's name normalisation: case and punctuation do not matter.
    for identifier in [
        json!({"account_name": "ACME corp"}),
        json!({"account_id": "a"}),
        json!({"phone_number": "+14155550100"}),
    ] {
        let mut data = identifier.clone();
        data["credentials"] = json!(ann);
        let answer = put(&url, &json!({ "data": data })).await;
        assert_eq!(answer.status, 201, "{identifier}: {}", answer.body);
        assert_eq!(answer.body["data"]["account_id"], "a");
        assert_eq!(answer.body["data"]["owner_id"], "u-ann");
        let issued = answer.body["auth_token"].as_str().expect("auth_token");
        let used = get(&format!("{}/v2/accounts/a/services", server.base), Some(issued)).await;
        assert_eq!(used.status, 200, "{}", used.body);
    }
    for (data, why) in [
        (json!({"credentials": ann, "account_name": "Bolt"}), "another account"),
        (
            json!({"credentials": md5_hex("ann:wrong"), "account_name": "Acme Corp."}),
            "a wrong password",
        ),
        (
            json!({"credentials": md5_hex("bob:hunter2"), "account_name": "Acme Corp."}),
            "a disabled user",
        ),
        (
            json!({"credentials": ann, "phone_number": "+19995550000"}),
            "an unknown number",
        ),
    ] {
        let answer = put(&url, &json!({ "data": data })).await;
        assert_eq!(answer.status, 401, "{why}: {}", answer.body);
    }
    let without_account = put(&url, &json!({"data": {"credentials": ann}})).await;
    assert_eq!(without_account.status, 400, "{}", without_account.body);
    assert!(without_account.body["data"].get("account_name").is_some());
    let realm = put(
        &url,
        &json!({"data": {"credentials": ann, "account_realm": "acme.example"}}),
    )
    .await;
    assert_eq!(realm.status, 400, "{}", realm.body);
    assert!(realm.body["data"].get("account_realm").is_some());
    let tokens = store.list_tokens(Some(&id("a"))).await.expect("listed");
    assert_eq!(tokens.len(), 3);
    assert!(tokens
        .iter()
        .all(|token| token.origin == "user_auth" && token.owner_id.as_deref() == Some("u-ann")));
}

async fn failed_logins_are_limited_per_source_address(store: &Store) {
    seed_credentials(store).await;
    let login = LoginSettings {
        failures_allowed: 2,
        failure_window: Duration::from_secs(120),
        ..LoginSettings::default()
    };
    let server = serve(store, login).await;
    let url = format!("{}/v2/api_auth", server.base);
    for _ in 0..2 {
        let answer = put(&url, &json!({"data": {"api_key": "guess"}})).await;
        assert_eq!(answer.status, 401);
    }
    // Even the right key waits now: the limit is on the address, not the key.
    let response = reqwest::Client::new()
        .put(&url)
        .header("Content-Type", "application/json")
        .body(json!({"data": {"api_key": "key-of-acme"}}).to_string())
        .send()
        .await
        .expect("sent");
    assert_eq!(response.status().as_u16(), 429);
    let wait: u64 = response
        .headers()
        .get("retry-after")
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse().ok())
        .expect("Retry-After in seconds");
    assert!((1..=120).contains(&wait), "{wait}");
    let body: Value = response.json().await.expect("JSON");
    assert_eq!(body["error"], "429");
    let user = put(
        &format!("{}/v2/user_auth", server.base),
        &json!({"data": {"credentials": md5_hex("ann:secret"), "account_id": "a"}}),
    )
    .await;
    assert_eq!(user.status, 429, "both logins share the address's count");
}

async fn tokens_of_deleted_or_disabled_accounts_are_refused(store: &Store) {
    seed_credentials(store).await;
    let server = serve(store, LoginSettings::default()).await;
    let acme = token(store, "a", false).await;
    let bolt = token(store, "b", false).await;
    store
        .execute_script(
            "UPDATE accounts SET deleted = TRUE WHERE id = 'a';\n\
             UPDATE accounts SET enabled = FALSE WHERE id = 'b';\n",
        )
        .await
        .expect("a deleted, b disabled");
    let write = r#"{"data": {"devices": {"sip_device": 3}}}"#;
    let deleted = post(
        &format!("{}/v2/accounts/a/services/manual", server.base),
        Some(&acme),
        write,
    )
    .await;
    assert_eq!(
        deleted.status, 401,
        "a deleted account's token acts for nobody: {}",
        deleted.body
    );
    assert_no_token_in(&deleted.body, &acme);
    let disabled = post(
        &format!("{}/v2/accounts/b/services/manual", server.base),
        Some(&bolt),
        write,
    )
    .await;
    assert_eq!(disabled.status, 403, "{}", disabled.body);
    assert_eq!(disabled.body["message"], "forbidden");
    assert_eq!(
        store
            .query_count("SELECT COUNT(*) FROM service_quantities WHERE bucket = 'manual'")
            .await
            .expect("count"),
        0,
        "nothing written"
    );
    let url = format!("{}/v2/api_auth", server.base);
    let login_deleted = put(&url, &json!({"data": {"api_key": "key-of-acme"}})).await;
    assert_eq!(login_deleted.status, 401, "{}", login_deleted.body);
    let login_disabled = put(&url, &json!({"data": {"api_key": "key-of-bolt"}})).await;
    assert_eq!(login_disabled.status, 403, "{}", login_disabled.body);
}

async fn only_the_master_account_holds_super_admin_tokens(store: &Store) {
    seed_credentials(store).await;
    let server = serve(store, LoginSettings::default()).await;
    let refused = store
        .create_token(
            NewToken {
                account: &id("r"),
                super_admin: true,
                expires_at: None,
                origin: TokenOrigin::Cli,
                owner_id: None,
                description: None,
            },
            GregorianSeconds(START),
        )
        .await;
    assert!(
        matches!(&refused, Err(StoreError::Refused(reason)) if reason.contains("master")),
        "{refused:?}"
    );
    // A row written before the rule (or by hand) is refused at use, even on its own tree.
    let forged = "f".repeat(64);
    let forged_hash = hex::encode(sha2::Sha256::digest(forged.as_bytes()));
    store
        .execute_script(&format!(
            "INSERT INTO auth_tokens (token_hash, account_id, super_admin, created_at) \
             VALUES ('{forged_hash}', 'r', TRUE, {START});"
        ))
        .await
        .expect("forged row");
    for target in ["m", "a"] {
        let answer = get(&format!("{}/v2/accounts/{target}/services", server.base), Some(&forged)).await;
        assert_eq!(answer.status, 403, "{target}: {}", answer.body);
    }
    // The master's logins are super admin, as Kazoo's super-duper admin account.
    let master = put(
        &format!("{}/v2/api_auth", server.base),
        &json!({"data": {"api_key": "key-of-master"}}),
    )
    .await;
    assert_eq!(master.status, 201, "{}", master.body);
    let issued = master.body["auth_token"].as_str().expect("token");
    let status = post(
        &format!("{}/v2/accounts/a/services/status", server.base),
        Some(issued),
        r#"{"data": {"in_good_standing": false, "reason": "unpaid"}}"#,
    )
    .await;
    assert_eq!(status.status, 200, "super-admin operation: {}", status.body);
}

async fn a_missing_or_invalid_token_is_401_before_the_body_is_read(store: &Store) {
    seed_credentials(store).await;
    let server = serve(store, LoginSettings::default()).await;
    let url = format!("{}/v2/accounts/a/services/manual", server.base);
    for bad_body in ["{not json", r#"{"data": "nonsense"}"#] {
        let anonymous = post(&url, None, bad_body).await;
        assert_eq!(anonymous.status, 401, "{bad_body}: {}", anonymous.body);
        let guessed = "0123456789abcdef".repeat(4);
        let invalid = post(&url, Some(&guessed), bad_body).await;
        assert_eq!(invalid.status, 401, "{bad_body}: {}", invalid.body);
        assert_no_token_in(&invalid.body, &guessed);
    }
}

async fn outside_its_tree_a_token_cannot_tell_missing_accounts_from_foreign_ones(store: &Store) {
    seed_credentials(store).await;
    let server = serve(store, LoginSettings::default()).await;
    let acme = token(store, "a", false).await;
    let mut answers = Vec::new();
    for target in ["s", "nobody"] {
        for path in ["services", "services/summary", "service_plans/current"] {
            let answer = get(&format!("{}/v2/accounts/{target}/{path}", server.base), Some(&acme)).await;
            answers.push((
                answer.status,
                answer.body["message"].clone(),
                answer.body["data"].clone(),
            ));
        }
    }
    let (foreign, missing) = answers.split_at(3);
    assert_eq!(foreign, missing, "existence is not revealed");
    assert!(foreign.iter().all(|(status, _, _)| *status == 403), "{foreign:?}");
    let admin = token(store, "m", true).await;
    let unknown = get(&format!("{}/v2/accounts/nobody/services", server.base), Some(&admin)).await;
    assert_eq!(unknown.status, 404, "a super admin still learns it: {}", unknown.body);
}

async fn tokens_are_listed_without_their_secret_and_revoked_by_id(store: &Store) {
    seed_credentials(store).await;
    let server = serve(store, LoginSettings::default()).await;
    let first = token(store, "a", false).await;
    let second = token(store, "a", false).await;
    let listed = store.list_tokens(Some(&id("a"))).await.expect("listed");
    assert_eq!(listed.len(), 2);
    for row in &listed {
        assert_eq!(row.id.len(), TOKEN_ID_LENGTH);
        assert!(
            !first.starts_with(&row.id) && !second.starts_with(&row.id),
            "ids are not the tokens"
        );
    }
    let first_id = hex::encode(sha2::Sha256::digest(first.as_bytes()))[..TOKEN_ID_LENGTH].to_owned();
    assert_eq!(store.revoke_token(&first_id).await.expect("revoked"), 1);
    assert_eq!(store.revoke_token(&first_id).await.expect("again"), 0);
    let url = format!("{}/v2/accounts/a/services", server.base);
    assert_eq!(get(&url, Some(&first)).await.status, 401);
    assert_eq!(get(&url, Some(&second)).await.status, 200);
    assert_eq!(store.revoke_account_tokens(&id("a")).await.expect("revoked"), 1);
    assert_eq!(get(&url, Some(&second)).await.status, 401);
    let expiring = store
        .create_token(
            NewToken {
                account: &id("a"),
                super_admin: false,
                expires_at: Some(GregorianSeconds(START)),
                origin: TokenOrigin::Cli,
                owner_id: None,
                description: None,
            },
            GregorianSeconds(START),
        )
        .await;
    assert!(
        matches!(expiring, Err(StoreError::Refused(_))),
        "already expired: {expiring:?}"
    );
}

on_both_backends!(
    api_auth_answers_a_token_that_expires_after_the_configured_lifetime,
    api_auth_refuses_unknown_keys_with_401_and_missing_keys_with_400,
    user_auth_checks_md5_credentials_in_the_named_account,
    failed_logins_are_limited_per_source_address,
    tokens_of_deleted_or_disabled_accounts_are_refused,
    only_the_master_account_holds_super_admin_tokens,
    a_missing_or_invalid_token_is_401_before_the_body_is_read,
    outside_its_tree_a_token_cannot_tell_missing_accounts_from_foreign_ones,
    tokens_are_listed_without_their_secret_and_revoked_by_id,
);

/// The operator's side, as a process: `tokens create --expires`, `tokens list`,
/// `tokens revoke`, `accounts api-key --generate`, and the key logging in.
#[tokio::test]
async fn the_token_and_api_key_commands_print_secrets_once_and_revoke_by_id() {
    use std::process::Command;
    let directory = tempfile::tempdir().expect("temp dir");
    let url = format!("sqlite://{}", directory.path().join("tally.db").display());
    let store = Store::open(&tally::config::DatabaseUrl::new(url.clone()))
        .await
        .expect("store");
    seed_tree(&store).await;
    let tally = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_tally"))
            .args(args)
            .current_dir(directory.path())
            .env_remove("TALLY_CONFIG")
            .env("TALLY_DATABASE_URL", &url)
            .env("RUST_LOG", "warn")
            .output()
            .expect("tally runs")
    };
    let created = tally(&["tokens", "create", "--account", "a", "--expires", "12h"]);
    assert!(created.status.success(), "{created:?}");
    let plain = String::from_utf8_lossy(&created.stdout).trim().to_owned();
    assert_eq!(plain.len(), 64);
    let refused = tally(&["tokens", "create", "--account", "r", "--super-admin"]);
    assert_eq!(refused.status.code(), Some(65), "{refused:?}");
    assert!(String::from_utf8_lossy(&refused.stderr).contains("master"));
    let bad_lifetime = tally(&["tokens", "create", "--account", "a", "--expires", "0s"]);
    assert_eq!(bad_lifetime.status.code(), Some(2), "{bad_lifetime:?}");

    let listed = tally(&["tokens", "list", "--json"]);
    assert!(listed.status.success(), "{listed:?}");
    let text = String::from_utf8_lossy(&listed.stdout).to_string();
    assert!(!text.contains(&plain), "the list never shows a token");
    let rows: Vec<Value> = text
        .lines()
        .map(|line| serde_json::from_str(line).expect("a JSON line"))
        .collect();
    assert_eq!(rows.len(), 1, "{text}");
    let created_at = rows[0]["created_at"].as_i64().expect("created_at");
    assert_eq!(rows[0]["expires_at"].as_i64(), Some(created_at + 12 * 3600));
    assert_eq!(rows[0]["origin"], "cli");

    let key = tally(&["accounts", "api-key", "b", "--generate"]);
    assert!(key.status.success(), "{key:?}");
    let key = String::from_utf8_lossy(&key.stdout).trim().to_owned();
    assert_eq!(key.len(), 64);
    let unknown = tally(&["accounts", "api-key", "nobody", "--generate"]);
    assert_eq!(unknown.status.code(), Some(65), "{unknown:?}");
    let server = serve(&store, LoginSettings::default()).await;
    let login = put(
        &format!("{}/v2/api_auth", server.base),
        &json!({"data": {"api_key": key}}),
    )
    .await;
    assert_eq!(login.status, 201, "{}", login.body);
    assert_eq!(login.body["data"]["account_id"], "b");

    let id = rows[0]["id"].as_str().expect("id").to_owned();
    let services = format!("{}/v2/accounts/a/services", server.base);
    assert_eq!(get(&services, Some(&plain)).await.status, 200);
    let revoked = tally(&["tokens", "revoke", &id]);
    assert!(revoked.status.success(), "{revoked:?}");
    assert_eq!(get(&services, Some(&plain)).await.status, 401);
    let again = tally(&["tokens", "revoke", &id]);
    assert_eq!(again.status.code(), Some(65), "{again:?}");
    store.close().await;
}
