//! The three faces of ingestion over one core: the same documents given by file, by a
//! CouchDB feed (a real pouchdb-server) and over HTTP (`POST /v2/inventory`) give
//! identical quantities, on both backends; and `tally inventory` as an operator runs it.

use crate::couchdb_server::CouchServer;
use crate::helpers::{at, postgres_store, reconcile_all, sqlite_store, TestStore};
use crate::ingest::{fixture, ingest, quantities, CUSTOMER, MASTER, RESELLER, SUB_CUSTOMER};
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use tally::config::{DatabaseUrl, Settings};
use tally::domain::classify::NumberClassifiers;
use tally::ingest::sources::read_path;
use tally::ingest::{IngestReport, Ingestor, RawDocument};
use tally::jobs::context::JobContext;
use tally::store::Store;

const NOW: i64 = 63_900_000_000;

fn fixture_path(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/kazoo")
        .join(name)
}

/// Every account's stored buckets, after a full reconcile.
async fn reconciled_quantities(store: &Store) -> BTreeMap<&'static str, BTreeMap<String, i64>> {
    reconcile_all(store, at(NOW)).await;
    let mut all = BTreeMap::new();
    for account in [MASTER, RESELLER, CUSTOMER, SUB_CUSTOMER] {
        all.insert(account, quantities(store, account).await);
    }
    all
}

/// The file face: the reader `tally inventory import` uses, through the core.
async fn by_file(store: &Store) -> IngestReport {
    let ingestor = Ingestor::new(store.clone(), NumberClassifiers::kazoo_defaults());
    let mut run = ingestor.start(at(NOW)).await.expect("starts");
    let mut receiver = read_path(&fixture_path("platform.ndjson"), None, 4);
    while let Some(message) = receiver.recv().await {
        let read = message.expect("the fixture reads");
        assert!(read.problems.is_empty(), "{:?}", read.problems);
        run.apply(read.batch).await.expect("applies");
    }
    run.finish().await.expect("finishes")
}

/// The feed face: one follow cycle of the `ingest` job over a real server.
async fn by_feed(store: &Store, couch: &CouchServer) -> IngestReport {
    let mut settings = Settings::default();
    settings.ingest.couchdb.url = DatabaseUrl::new(couch.url.clone());
    settings.ingest.couchdb.page_size = 5;
    let context = JobContext::new(store.clone(), settings).expect("context");
    let client = context.couch_client().expect("client");
    let cycle = context.ingest_cycle(&client, false, at(NOW)).await.expect("a cycle");
    // A second cycle resumes from the stored checkpoints and finds nothing.
    let again = context.ingest_cycle(&client, false, at(NOW)).await.expect("a cycle");
    assert_eq!(again.ingest.documents, 0, "{:?}", again.feed);
    cycle.ingest
}

/// The HTTP face: the master account first (a token needs an account), then the
/// whole dump as NDJSON.
async fn by_http(store: &Store) -> Value {
    let master: Vec<RawDocument> = fixture("platform.ndjson")
        .into_iter()
        .filter(|document| document.document["_id"] == MASTER)
        .collect();
    ingest(store, master, 10).await;
    let token = crate::api_support::token(store, MASTER, true).await;
    let (base, _server) = crate::api_support::start_server(store).await;
    let body = std::fs::read(fixture_path("platform.ndjson")).expect("fixture");
    let response = reqwest::Client::new()
        .post(format!("{base}/v2/inventory"))
        .header("X-Auth-Token", token)
        .header("Content-Type", "application/x-ndjson")
        .body(body)
        .send()
        .await
        .expect("POST");
    assert_eq!(response.status(), 200);
    let envelope: Value = response.json().await.expect("JSON");
    envelope["data"].clone()
}

/// A pouchdb-server holding the fixture platform, or `None` when it is not installed.
async fn couch_with_the_platform() -> Option<CouchServer> {
    let couch = CouchServer::start().await?;
    let documents: Vec<(String, Value)> = fixture("platform.ndjson")
        .into_iter()
        .map(|document| (document.database, document.document))
        .collect();
    couch.load(&documents).await;
    Some(couch)
}

async fn the_same_documents_by_file_feed_and_http_give_the_same_quantities(
    file: TestStore,
    feed: TestStore,
    http: TestStore,
) {
    let Some(couch) = couch_with_the_platform().await else {
        return;
    };

    let from_file = by_file(&file.store).await;
    assert_eq!(from_file.rejected, 0, "{:?}", from_file.rejections);
    let from_feed = by_feed(&feed.store, &couch).await;
    assert_eq!(from_feed.rejected, 0, "{:?}", from_feed.rejections);
    let from_http = by_http(&http.store).await;
    assert_eq!(from_http["rejected"], 0, "{from_http}");
    assert_eq!(from_http["documents"], 29);

    let expected = reconciled_quantities(&file.store).await;
    assert_eq!(expected[CUSTOMER], crate::ingest::customer_quantities());
    assert_eq!(reconciled_quantities(&feed.store).await, expected, "feed");
    assert_eq!(reconciled_quantities(&http.store).await, expected, "http");
}

#[tokio::test]
async fn the_same_documents_by_file_feed_and_http_give_the_same_quantities_on_sqlite() {
    the_same_documents_by_file_feed_and_http_give_the_same_quantities(
        sqlite_store().await,
        sqlite_store().await,
        sqlite_store().await,
    )
    .await;
}

#[tokio::test]
async fn the_same_documents_by_file_feed_and_http_give_the_same_quantities_on_postgres() {
    let (Some(file), Some(feed), Some(http)) = (postgres_store().await, postgres_store().await, postgres_store().await)
    else {
        return;
    };
    the_same_documents_by_file_feed_and_http_give_the_same_quantities(file, feed, http).await;
}

#[tokio::test]
async fn only_a_super_admin_may_post_documents() {
    let database = sqlite_store().await;
    let store = &database.store;
    ingest(store, fixture("platform.ndjson"), 50).await;
    let (base, _server) = crate::api_support::start_server(store).await;
    let client = reqwest::Client::new();
    let post = |token: Option<String>, body: &'static str| {
        let mut request = client.post(format!("{base}/v2/inventory?database=accounts")).body(body);
        if let Some(token) = token {
            request = request.header("X-Auth-Token", token);
        }
        request.send()
    };
    let document =
        "{\"_id\": \"f00000000000000000000000000000e9\", \"pvt_tree\": [\"f0000000000000000000000000000001\"]}\n";
    assert_eq!(post(None, document).await.expect("answer").status(), 401);
    let reseller = crate::api_support::token(store, RESELLER, false).await;
    assert_eq!(post(Some(reseller), document).await.expect("answer").status(), 403);
    let master = crate::api_support::token(store, MASTER, true).await;
    let answer = post(Some(master.clone()), document).await.expect("answer");
    assert_eq!(answer.status(), 200);
    let body: Value = answer.json().await.expect("JSON");
    assert_eq!(body["data"]["applied"], 1, "{body}");
    // A body that is not documents is a 400 naming where.
    let answer = post(Some(master), "{\"_id\": \"x\"}\nnot json\n")
        .await
        .expect("answer");
    assert_eq!(answer.status(), 400);
    let body: Value = answer.json().await.expect("JSON");
    assert!(body.to_string().contains("line 2"), "{body}");
}

fn tally(directory: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_tally"))
        .args(args)
        .current_dir(directory)
        .env_remove("TALLY_DATABASE_URL")
        .env_remove("TALLY_CONFIG")
        .env("RUST_LOG", "warn")
        .output()
        .expect("tally runs")
}

fn stdout_json(output: &Output) -> Value {
    let text = String::from_utf8_lossy(&output.stdout);
    serde_json::from_str(text.trim()).unwrap_or_else(|error| panic!("{error}: {text}"))
}

#[test]
fn tally_inventory_import_reports_rejects_by_name_and_exits_65_for_bad_documents() {
    let directory = tempfile::tempdir().expect("temp dir");
    assert!(
        tally(directory.path(), &["migrate"]).status.success(),
        "the database is created"
    );
    let platform = fixture_path("platform.ndjson");
    let bad = fixture_path("bad.ndjson");

    let first = tally(
        directory.path(),
        &[
            "inventory",
            "import",
            platform.to_str().expect("utf-8"),
            "--json",
            "--reconcile",
        ],
    );
    assert_eq!(
        first.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&first.stderr)
    );
    let report = stdout_json(&first);
    assert_eq!(report["documents"], 29);
    assert_eq!(report["rejected"], 0);
    assert_eq!(report["reconcile"]["accounts_scanned"], 4, "{report}");

    let again = tally(
        directory.path(),
        &["inventory", "import", platform.to_str().expect("utf-8"), "--json"],
    );
    assert_eq!(again.status.code(), Some(0));
    assert_eq!(stdout_json(&again)["applied"], 0, "a re-import changes nothing");

    let rejected = tally(directory.path(), &["inventory", "import", bad.to_str().expect("utf-8")]);
    assert_eq!(rejected.status.code(), Some(65));
    let stderr = String::from_utf8_lossy(&rejected.stderr);
    assert!(
        stderr.contains("bad.ndjson:1: ")
            && stderr.contains(" dev-c-bad: device_type: expected a string, found an array"),
        "{stderr}"
    );
    assert!(
        stderr.contains("bad.ndjson:6"),
        "the line that is not JSON is named: {stderr}"
    );
    assert!(stderr.contains("second root"), "{stderr}");

    let kept = tally(directory.path(), &["inventory", "rejected", "--json"]);
    assert_eq!(kept.status.code(), Some(0));
    let lines = String::from_utf8_lossy(&kept.stdout).lines().count();
    assert_eq!(lines, 5, "every rejected document with an id is kept");
}

#[test]
fn following_without_a_couchdb_is_a_configuration_error_and_an_unreachable_one_is_temporary() {
    let directory = tempfile::tempdir().expect("temp dir");
    assert!(
        tally(directory.path(), &["migrate"]).status.success(),
        "the database is created"
    );
    let unconfigured = tally(directory.path(), &["inventory", "follow", "--once"]);
    assert_eq!(unconfigured.status.code(), Some(78));
    assert!(String::from_utf8_lossy(&unconfigured.stderr).contains("[ingest.couchdb] url"));

    let closed_port = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("a port")
        .local_addr()
        .expect("address")
        .port();
    let unreachable = Command::new(env!("CARGO_BIN_EXE_tally"))
        .args(["inventory", "follow", "--once"])
        .current_dir(directory.path())
        .env_remove("TALLY_DATABASE_URL")
        .env_remove("TALLY_CONFIG")
        .env(
            "TALLY_INGEST__COUCHDB__URL",
            format!("http://u:secret@127.0.0.1:{closed_port}/"),
        )
        .env("TALLY_INGEST__COUCHDB__TIMEOUT_SECONDS", "2")
        .output()
        .expect("tally runs");
    assert_eq!(unreachable.status.code(), Some(75));
    let stderr = String::from_utf8_lossy(&unreachable.stderr);
    assert!(stderr.contains("unreachable"), "{stderr}");
    assert!(!stderr.contains("secret"), "credentials never print: {stderr}");
}

/// The scheduler's path: the shipped `ingest` job file, run by the job runner, reads the
/// feed and recounts what it changed; an unreachable server ends it as a temporary failure.
#[tokio::test]
async fn the_shipped_ingest_job_reads_the_feed_and_recounts_what_changed() {
    use tally::runs::RunEnd;
    use tally::scheduler::job_file::parse_job_file;
    let Some(couch) = couch_with_the_platform().await else {
        return;
    };
    let database = sqlite_store().await;
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("jobs/ingest.toml");
    let job = parse_job_file(&path, &std::fs::read_to_string(&path).expect("the shipped file")).expect("parses");
    assert!(job.spec.reconcile_changed);

    let mut settings = Settings::default();
    settings.ingest.couchdb.url = DatabaseUrl::new(couch.url.clone());
    let context = JobContext::new(database.store.clone(), settings).expect("context");
    let outcome = context
        .run_job(&job.spec, tokio_util::sync::CancellationToken::new())
        .await;
    assert_eq!(outcome.end, RunEnd::Succeeded, "{:?}", outcome.message);
    // The follower reads inventory databases only: not the fixture's `services` one.
    assert_eq!(outcome.figures.accounts, 28, "documents read");
    assert_eq!(
        quantities(&database.store, CUSTOMER).await,
        crate::ingest::customer_quantities(),
        "the job recounted the accounts it changed"
    );
    assert_eq!(database.store.marked_account_count().await.expect("counts"), 0);

    drop(couch);
    let outcome = context
        .run_job(&job.spec, tokio_util::sync::CancellationToken::new())
        .await;
    assert_eq!(outcome.end, RunEnd::TemporaryFailure, "{:?}", outcome.message);
}
