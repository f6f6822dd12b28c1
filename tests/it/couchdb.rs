//! Following a real CouchDB-protocol server (pouchdb-server): every document arrives
//! with its database and a checkpoint, a second cycle from the checkpoints reads
//! nothing, updates and deletions arrive, and server failures are told apart.

use std::collections::HashMap;
use std::convert::Infallible;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tally::domain::inventory::Secret;
use tally::ingest::couchdb::{follow_cycle, CouchClient, CouchError, CouchSettings, CycleReport, FollowError};
use tally::ingest::SourceBatch;

use crate::couchdb_server::CouchServer;

const RESELLER: &str = "4fa2c3d45e6f708192a3b4c5d6e7f809";
const CUSTOMER: &str = "9b1e2d3c4f5a60718293a4b5c6d7e8f9";
const CUSTOMER_DB_URL: &str = "account%2F9b%2F1e%2F2d3c4f5a60718293a4b5c6d7e8f9";
const CUSTOMER_DB: &str = "account/9b/1e/2d3c4f5a60718293a4b5c6d7e8f9";

fn settings(url: &str, batch_size: usize) -> CouchSettings {
    CouchSettings {
        url: url.to_owned(),
        username: None,
        password: None,
        batch_size,
        timeout: Duration::from_secs(10),
    }
}

/// Runs one cycle and collects what the sink received.
async fn cycle(
    client: &CouchClient,
    checkpoints: &HashMap<String, String>,
) -> Result<(CycleReport, Vec<SourceBatch>), FollowError<Infallible>> {
    let mut batches = Vec::new();
    let report = follow_cycle(client, checkpoints, |batch| {
        batches.push(batch);
        async { Ok::<(), Infallible>(()) }
    })
    .await?;
    Ok((report, batches))
}

/// The checkpoints after some batches, as the store would hold them.
fn checkpoints_after(batches: &[SourceBatch], mut checkpoints: HashMap<String, String>) -> HashMap<String, String> {
    for batch in batches {
        let checkpoint = batch.checkpoint.as_ref().expect("every page has a checkpoint");
        checkpoints.insert(checkpoint.database.clone(), checkpoint.last_seq.clone());
    }
    checkpoints
}

/// (database, _id, deleted) of every document received, in order.
fn received(batches: &[SourceBatch]) -> Vec<(String, String, bool)> {
    batches
        .iter()
        .flat_map(|batch| &batch.documents)
        .map(|document| {
            (
                document.database.clone(),
                document.document["_id"].as_str().expect("_id").to_owned(),
                document.document.get("_deleted") == Some(&Value::Bool(true)),
            )
        })
        .collect()
}

async fn platform(server: &CouchServer) {
    server.create_database("accounts").await;
    server.create_database(CUSTOMER_DB_URL).await;
    server.create_database("numbers%2F%2B1415").await;
    server.create_database("system_config").await;
    server
        .put(
            "accounts",
            json!({"_id": RESELLER, "pvt_type": "account", "name": "Reseller", "pvt_reseller": true}),
        )
        .await;
    server
        .put(
            "accounts",
            json!({"_id": CUSTOMER, "pvt_type": "account", "name": "Customer", "pvt_tree": [RESELLER]}),
        )
        .await;
    for id in ["device1", "device2"] {
        server
            .put(
                CUSTOMER_DB_URL,
                json!({"_id": id, "pvt_type": "device", "device_type": "sip_device"}),
            )
            .await;
    }
    server
        .put(
            CUSTOMER_DB_URL,
            json!({"_id": "user1", "pvt_type": "user", "priv_level": "admin"}),
        )
        .await;
    server
        .put(
            "numbers%2F%2B1415",
            json!({"_id": "+14155550100", "pvt_assigned_to": CUSTOMER, "pvt_type": "number"}),
        )
        .await;
    server.put("system_config", json!({"_id": "ecallmgr"})).await;
}

#[tokio::test]
async fn a_cycle_reads_every_inventory_document_with_its_database_and_checkpoint() {
    let Some(server) = CouchServer::start().await else {
        return;
    };
    platform(&server).await;
    let client = CouchClient::new(&settings(&server.url, 2)).expect("client");

    let (report, batches) = cycle(&client, &HashMap::new()).await.expect("cycle");

    let mut documents = received(&batches);
    assert_eq!(documents[0].0, "accounts", "accounts arrive first");
    documents.sort();
    let expected = [
        (CUSTOMER_DB, "device1"),
        (CUSTOMER_DB, "device2"),
        (CUSTOMER_DB, "user1"),
        ("accounts", CUSTOMER),
        ("accounts", RESELLER),
        ("numbers/+1415", "+14155550100"),
    ];
    let mut expected: Vec<(String, String, bool)> = expected
        .iter()
        .map(|(database, id)| (database.to_string(), id.to_string(), false))
        .collect();
    expected.sort();
    assert_eq!(documents, expected);
    assert_eq!(report.databases, 3, "system_config is not inventory");
    assert_eq!(report.documents, 6);
    for batch in &batches {
        let checkpoint = batch.checkpoint.as_ref().expect("checkpoint");
        assert_eq!(checkpoint.source, server.url);
        assert!(batch
            .documents
            .iter()
            .all(|document| document.database == checkpoint.database));
        assert!(batch.documents.len() <= 2, "pages of batch_size");
    }
    let pages_of_customer = batches
        .iter()
        .filter(|batch| batch.checkpoint.as_ref().expect("checkpoint").database == CUSTOMER_DB)
        .count();
    assert_eq!(pages_of_customer, 2, "three changes in pages of two");
}

#[tokio::test]
async fn a_second_cycle_from_the_checkpoints_reads_nothing_then_updates_and_deletions_arrive() {
    let Some(server) = CouchServer::start().await else {
        return;
    };
    platform(&server).await;
    let client = CouchClient::new(&settings(&server.url, 100)).expect("client");
    let (_, batches) = cycle(&client, &HashMap::new()).await.expect("first cycle");
    let checkpoints = checkpoints_after(&batches, HashMap::new());

    let (report, batches) = cycle(&client, &checkpoints).await.expect("second cycle");
    assert!(batches.is_empty(), "nothing new: {:?}", received(&batches));
    assert_eq!(report.documents, 0);

    let device_rev = rev_of(&server, CUSTOMER_DB_URL, "device1").await;
    server.delete(CUSTOMER_DB_URL, "device1", &device_rev).await;
    let reseller_rev = rev_of(&server, "accounts", RESELLER).await;
    server
        .put(
            "accounts",
            json!({"_id": RESELLER, "_rev": reseller_rev, "pvt_type": "account", "name": "Renamed"}),
        )
        .await;

    let (_, batches) = cycle(&client, &checkpoints).await.expect("third cycle");
    let documents = received(&batches);
    assert_eq!(
        documents,
        [
            ("accounts".to_owned(), RESELLER.to_owned(), false),
            (CUSTOMER_DB.to_owned(), "device1".to_owned(), true)
        ]
    );
    assert_eq!(batches[0].documents[0].document["name"], "Renamed");
}

async fn rev_of(server: &CouchServer, database: &str, id: &str) -> String {
    let document: Value = reqwest::get(format!("{}{database}/{id}", server.url))
        .await
        .expect("GET")
        .json()
        .await
        .expect("JSON");
    document["_rev"].as_str().expect("rev").to_owned()
}

#[tokio::test]
async fn a_sink_error_stops_the_cycle_before_the_next_page() {
    let Some(server) = CouchServer::start().await else {
        return;
    };
    platform(&server).await;
    let client = CouchClient::new(&settings(&server.url, 1)).expect("client");
    let mut calls = 0;
    let outcome = follow_cycle(&client, &HashMap::new(), |_batch| {
        calls += 1;
        async { Err::<(), &str>("disk full") }
    })
    .await;
    assert!(matches!(outcome, Err(FollowError::Sink("disk full"))), "{outcome:?}");
    assert_eq!(calls, 1);
}

#[tokio::test]
async fn an_unreachable_server_is_a_temporary_error() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("port")
        .local_addr()
        .expect("address")
        .port();
    let client = CouchClient::new(&settings(&format!("http://127.0.0.1:{port}/"), 10)).expect("client");
    let error = client.all_dbs().await.expect_err("nothing listens");
    assert!(matches!(error, CouchError::Unreachable { .. }), "{error:?}");
    assert!(error.is_temporary());
}

#[tokio::test]
async fn wrong_credentials_are_refused_and_right_ones_read() {
    let Some(server) = CouchServer::start().await else {
        return;
    };
    platform(&server).await;
    server.create_admin("tally", "right").await;
    let mut wrong = settings(&server.url, 10);
    wrong.username = Some("tally".to_owned());
    wrong.password = Some(Secret::new("wrong"));
    let error = CouchClient::new(&wrong)
        .expect("client")
        .all_dbs()
        .await
        .expect_err("refused");
    assert!(matches!(error, CouchError::Refused { status: 401, .. }), "{error:?}");
    assert!(!error.is_temporary());
    assert!(!error.to_string().contains("wrong"), "no password in messages: {error}");

    let url_with_credentials = server.url.replace("http://", "http://tally:right@");
    let client = CouchClient::new(&settings(&url_with_credentials, 10)).expect("client");
    assert_eq!(client.source(), server.url, "the checkpoint source has no credentials");
    assert_eq!(client.all_dbs().await.expect("listed").len(), 3);
}

/// A cycle over 1,000 account databases; run with
/// `cargo test --release --test it couchdb::cycle_over_a_thousand_databases -- --ignored --nocapture`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement, not a check"]
async fn cycle_over_a_thousand_databases() {
    use futures_util::StreamExt;
    let Some(server) = CouchServer::start().await else {
        return;
    };
    server.create_database("accounts").await;
    let server = &server;
    futures_util::stream::iter(0..1_000u32)
        .map(|index| async move {
            let id = format!("{index:08x}{}", &RESELLER[8..]);
            let database = format!("account%2F{}%2F{}%2F{}", &id[..2], &id[2..4], &id[4..]);
            server.create_database(&database).await;
            server
                .put(&database, json!({"_id": "device1", "pvt_type": "device"}))
                .await;
            server.put(&database, json!({"_id": "user1", "pvt_type": "user"})).await;
            server.put("accounts", json!({"_id": id, "pvt_type": "account"})).await;
        })
        .buffer_unordered(8)
        .collect::<Vec<()>>()
        .await;
    let client = CouchClient::new(&settings(&server.url, 1_000)).expect("client");

    let started = Instant::now();
    let (report, batches) = cycle(&client, &HashMap::new()).await.expect("first cycle");
    let first = started.elapsed();
    let checkpoints = checkpoints_after(&batches, HashMap::new());
    let started = Instant::now();
    let (idle, _) = cycle(&client, &checkpoints).await.expect("second cycle");
    let second = started.elapsed();

    assert_eq!(report.databases, 1_001);
    assert_eq!(report.documents, 3_000);
    assert_eq!(idle.documents, 0);
    println!(
        "first cycle: {} databases, {} documents in {first:.2?}",
        report.databases, report.documents
    );
    println!("idle cycle: {} databases in {second:.2?}", idle.databases);
}
