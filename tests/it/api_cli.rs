//! `tally tokens create` and `tally serve` as an operator runs them: a token printed
//! once, the listening address on standard error, and exit 0 on SIGTERM.

use crate::api_support::{get, TREE_SQL};
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};
use tally::config::DatabaseUrl;
use tally::store::Store;

fn command(directory: &Path, args: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_tally"));
    command
        .args(args)
        .current_dir(directory)
        .env_remove("TALLY_CONFIG")
        .env(
            "TALLY_DATABASE_URL",
            format!("sqlite://{}", directory.join("tally.db").display()),
        )
        .env("RUST_LOG", "warn");
    command
}

fn tally(directory: &Path, args: &[&str]) -> Output {
    command(directory, args).output().expect("tally runs")
}

#[tokio::test]
async fn tokens_are_created_once_and_serve_answers_until_sigterm() {
    let directory = tempfile::tempdir().expect("temp dir");
    let url = DatabaseUrl::new(format!("sqlite://{}", directory.path().join("tally.db").display()));
    let store = Store::open(&url).await.expect("store");
    store.execute_script(TREE_SQL).await.expect("tree");
    store.close().await;

    let refused = tally(directory.path(), &["tokens", "create", "--account", "nobody"]);
    assert_eq!(refused.status.code(), Some(65), "{refused:?}");
    assert!(refused.stdout.is_empty());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("unknown account nobody"));

    let created = tally(
        directory.path(),
        &[
            "tokens",
            "create",
            "--account",
            "m",
            "--super-admin",
            "--description",
            "ops",
        ],
    );
    assert!(created.status.success(), "{created:?}");
    let token = String::from_utf8_lossy(&created.stdout).trim().to_owned();
    assert_eq!(token.len(), 64, "{token}");

    let mut server = command(directory.path(), &["serve", "--listen", "127.0.0.1:0"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("serve starts");
    let mut lines = BufReader::new(server.stderr.take().expect("stderr")).lines();
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

    let without = get(&format!("{base}/v2/accounts/a/services"), None).await;
    assert_eq!(without.status, 401);
    let with = get(&format!("{base}/v2/accounts/a/services"), Some(&token)).await;
    assert_ne!(with.status, 401, "{:?}", with.body);
    assert_eq!(with.body["auth_token"], token.as_str());

    let killed = Command::new("kill")
        .args(["-TERM", &server.id().to_string()])
        .status()
        .expect("kill runs");
    assert!(killed.success());
    let stopping = Instant::now();
    let status = loop {
        if let Some(status) = server.try_wait().expect("wait") {
            break status;
        }
        assert!(stopping.elapsed() < Duration::from_secs(20), "serve stops on SIGTERM");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(status.code(), Some(0));
}
