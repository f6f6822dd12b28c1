//! Plumbing for HTTP API tests: a real `tally` API server on 127.0.0.1 over a test
//! store, tokens, a small account tree, and requests that return the status, the
//! `X-Request-ID` header and the JSON body.

use reqwest::Method;
use serde_json::Value;
use std::net::SocketAddr;
use tally::config::Settings;
use tally::domain::summary::GregorianSeconds;
use tally::jobs::context::JobContext;
use tally::ops::Operations;
use tally::store::Store;
use tokio::task::JoinHandle;

/// Starts the API over `store` on a free loopback port; returns its base URL
/// (`http://127.0.0.1:PORT`, paths start with `/v2`) and the serving task.
pub async fn start_server(store: &Store) -> (String, JoinHandle<()>) {
    let context = JobContext::new(store.clone(), Settings::default()).expect("job context");
    start_server_with(Operations::new(context)).await
}

/// Starts the API over given operations (e.g. with a fixed clock).
pub async fn start_server_with(ops: Operations) -> (String, JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let address = listener.local_addr().expect("address");
    let app = tally::api::router(ops).into_make_service_with_connect_info::<SocketAddr>();
    let handle = tokio::spawn(async move {
        axum::serve(listener, app).await.expect("server runs");
    });
    (format!("http://{address}"), handle)
}

/// A new token acting as `account`.
pub async fn token(store: &Store, account: &str, super_admin: bool) -> String {
    store
        .create_token(
            tally::store::NewToken {
                account: &crate::helpers::id(account),
                super_admin,
                expires_at: None,
                origin: tally::store::TokenOrigin::Cli,
                owner_id: None,
                description: Some("test"),
            },
            GregorianSeconds(63_900_000_000),
        )
        .await
        .expect("token created")
}

/// The test tree: master `m` > reseller `r` > customers `a`, `b`; and `s`, a
/// customer of the master, on another branch.
pub const TREE_SQL: &str = "\
    INSERT INTO accounts (id, parent_id, name, is_reseller) VALUES ('m', NULL, 'Master', FALSE);\n\
    INSERT INTO accounts (id, parent_id, name, is_reseller) VALUES ('r', 'm', 'Reseller', TRUE);\n\
    INSERT INTO accounts (id, parent_id, name, is_reseller) VALUES ('a', 'r', 'Acme', FALSE);\n\
    INSERT INTO accounts (id, parent_id, name, is_reseller) VALUES ('b', 'r', 'Bolt', FALSE);\n\
    INSERT INTO accounts (id, parent_id, name, is_reseller) VALUES ('s', 'm', 'Sibling', FALSE);\n";

pub async fn seed_tree(store: &Store) {
    store.execute_script(TREE_SQL).await.expect("tree seeded");
}

/// An answer: status, `X-Request-ID`, `Allow`, and the body as JSON.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub request_id: Option<String>,
    pub allow: Option<String>,
    pub body: Value,
}

/// One request. `body` is sent as is (so tests can send invalid JSON).
pub async fn call(
    method: Method,
    url: &str,
    token: Option<&str>,
    body: Option<&str>,
    headers: &[(&str, &str)],
) -> Answer {
    let client = reqwest::Client::new();
    let mut request = client.request(method, url);
    if let Some(token) = token {
        request = request.header("X-Auth-Token", token);
    }
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    if let Some(body) = body {
        request = request.header("Content-Type", "application/json").body(body.to_owned());
    }
    let response = request.send().await.expect("request sent");
    let status = response.status().as_u16();
    let header = |name: &str| {
        response
            .headers()
            .get(name)
            .and_then(|value| value.to_str().ok())
            .map(str::to_owned)
    };
    let request_id = header("x-request-id");
    let allow = header("allow");
    let text = response.text().await.expect("body read");
    let body = serde_json::from_str(&text).unwrap_or_else(|error| panic!("not JSON ({error}): {text}"));
    Answer {
        status,
        request_id,
        allow,
        body,
    }
}

pub async fn get(url: &str, token: Option<&str>) -> Answer {
    call(Method::GET, url, token, None, &[]).await
}

pub async fn post(url: &str, token: Option<&str>, body: &str) -> Answer {
    call(Method::POST, url, token, Some(body), &[]).await
}
