//! Issue 12, item 2: the third-party Python client `kazoo-sdk` 0.2.4 against `tally
//! serve`, unchanged: it logs in with an api key and with user credentials, lists and
//! gets plans, adds and removes plans, uses `manual_request` for the services calls
//! (summary, quote, manual quantities), and logs in again by itself when its token has
//! expired. The client runs from a virtualenv (`.ci/run` creates it from
//! `tests/kazoo_sdk/requirements.txt`); without one the test says SKIPPED, unless
//! `TALLY_REQUIRE_KAZOO_SDK=1` makes it mandatory. Both backends.

use crate::helpers::{postgres_store, sqlite_store, TestStore};
use md5::{Digest, Md5};
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use tally::domain::summary::GregorianSeconds;
use tally::domain::AccountId;
use tally::store::{NewToken, Store, TokenOrigin};

const MASTER: &str = "00000000000000000000000000000001";
const RESELLER: &str = "0000000000000000000000000000000e";
const CUSTOMER: &str = "000000000000000000000000000000c1";
const API_KEY: &str = "5ad7e2d6c7b1f2a3e4d5c6b7a8f9e0d1c2b3a4f5e6d7c8b9a0f1e2d3c4b5a6f7";

/// The virtualenv's Python: `TALLY_KAZOO_SDK_PYTHON`, else `target/kazoo-sdk-venv`.
fn client_python() -> Option<PathBuf> {
    let python = match std::env::var_os("TALLY_KAZOO_SDK_PYTHON") {
        Some(path) => PathBuf::from(path),
        None => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/kazoo-sdk-venv/bin/python"),
    };
    if python.is_file() {
        return Some(python);
    }
    if std::env::var("TALLY_REQUIRE_KAZOO_SDK").as_deref() == Ok("1") {
        panic!(
            "kazoo-sdk's virtualenv is missing ({}) and TALLY_REQUIRE_KAZOO_SDK=1: run .ci/run, or \
             python3 -m venv target/kazoo-sdk-venv && target/kazoo-sdk-venv/bin/pip install -r \
             tests/kazoo_sdk/requirements.txt",
            python.display()
        );
    }
    eprintln!(
        "SKIPPED: kazoo-sdk client test: no virtualenv at {} (create it as .ci/run does, or set \
         TALLY_KAZOO_SDK_PYTHON)",
        python.display()
    );
    None
}

/// A reseller with an api key and a catalog of two plans, a customer with a user.
async fn seed(store: &Store) {
    let ann = hex::encode(Md5::digest(b"ann:s3cret"));
    let plan = |name: &str, rate: u32| {
        format!(r#"{{"name": "{name}", "plan": {{"devices": {{"sip_device": {{"rate": {rate}}}}}}}}}"#)
    };
    store
        .execute_script(&format!(
            "INSERT INTO accounts (id, parent_id, name, is_reseller) VALUES ('{MASTER}', NULL, 'Master', FALSE);\n\
             INSERT INTO accounts (id, parent_id, name, is_reseller, api_key) \
                 VALUES ('{RESELLER}', '{MASTER}', 'Reseller', TRUE, '{API_KEY}');\n\
             INSERT INTO accounts (id, parent_id, name, is_reseller) VALUES ('{CUSTOMER}', '{RESELLER}', 'Acme Corp', FALSE);\n\
             INSERT INTO users (id, account_id, username, md5_auth) VALUES ('u-ann', '{CUSTOMER}', 'ann', '{ann}');\n\
             INSERT INTO service_plans (vendor_id, plan_id, name, document) VALUES ('{RESELLER}', 'gold', 'Gold', '{}');\n\
             INSERT INTO service_plans (vendor_id, plan_id, name, document) VALUES ('{RESELLER}', 'silver', 'Silver', '{}');\n",
            plan("Gold", 5),
            plan("Silver", 2),
        ))
        .await
        .expect("seeded");
}

/// `tally serve` on a free loopback port; killed when dropped.
struct Served {
    child: Child,
    base: String,
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn serve(database_url: &str, directory: &std::path::Path) -> Served {
    let mut child = Command::new(env!("CARGO_BIN_EXE_tally"))
        .args(["serve", "--listen", "127.0.0.1:0"])
        .current_dir(directory)
        .env_remove("TALLY_CONFIG")
        .env("TALLY_DATABASE_URL", database_url)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("tally serve starts");
    let mut lines = BufReader::new(child.stderr.take().expect("stderr")).lines();
    let base = loop {
        let line = lines.next().expect("serve prints its address").expect("stderr line");
        // Standard error is not a terminal: each line is a JSON object.
        let message = serde_json::from_str::<serde_json::Value>(&line)
            .ok()
            .and_then(|line| line["message"].as_str().map(str::to_owned))
            .unwrap_or(line);
        if let Some(address) = message.strip_prefix("listening on ") {
            break address.trim().to_owned();
        }
    };
    // Keep draining standard error so the server never blocks on it.
    std::thread::spawn(move || for _ in lines {});
    Served { child, base }
}

async fn the_kazoo_sdk_client_works_unchanged(database: TestStore) {
    let Some(python) = client_python() else {
        return;
    };
    let store = &database.store;
    seed(store).await;
    // A token that expires a second from now: stale by the time the client uses it.
    let now = GregorianSeconds::from_utc(chrono::Utc::now());
    let reseller = AccountId::parse(RESELLER).expect("id");
    let expiring = store
        .create_token(
            NewToken {
                account: &reseller,
                super_admin: false,
                expires_at: Some(GregorianSeconds(now.0 + 1)),
                origin: TokenOrigin::Cli,
                owner_id: None,
                description: Some("expires at once"),
            },
            now,
        )
        .await
        .expect("token");
    let directory = tempfile::tempdir().expect("temp dir");
    let served = serve(&database.url, directory.path());
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/kazoo_sdk/client.py");
    let output = Command::new(&python)
        .arg(&script)
        .env("TALLY_BASE_URL", format!("{}/v2", served.base))
        .env("KAZOO_API_KEY", API_KEY)
        .env("KAZOO_RESELLER_ID", RESELLER)
        .env("KAZOO_ACCOUNT_ID", CUSTOMER)
        .env("KAZOO_USERNAME", "ann")
        .env("KAZOO_PASSWORD", "s3cret")
        .env("KAZOO_ACCOUNT_NAME", "Acme Corp")
        .env("KAZOO_PLAN_IDS", "gold,silver")
        .env("KAZOO_EXPIRED_TOKEN", &expiring)
        .env("KAZOO_EXPIRED_TOKEN_WAIT", "2")
        .output()
        .expect("the client script runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "kazoo-sdk failed ({}):\n{stdout}\n{stderr}",
        output.status
    );
    assert!(stdout.contains("every step held"), "{stdout}");
    drop(served);
    // The client logged in once, then again by itself after the expired token's 401:
    // two tokens of Kazoo's one-hour lifetime.
    let tokens = store.list_tokens(Some(&reseller)).await.expect("tokens");
    let logins: Vec<_> = tokens.iter().filter(|token| token.origin == "api_auth").collect();
    assert_eq!(logins.len(), 2, "{tokens:?}");
    assert!(logins
        .iter()
        .all(|token| token.expires_at == Some(token.created_at + 3600)));
}

#[tokio::test]
async fn the_kazoo_sdk_client_works_unchanged_on_sqlite() {
    the_kazoo_sdk_client_works_unchanged(sqlite_store().await).await;
}

#[tokio::test]
async fn the_kazoo_sdk_client_works_unchanged_on_postgres() {
    let Some(database) = postgres_store().await else {
        return;
    };
    the_kazoo_sdk_client_works_unchanged(database).await;
}
