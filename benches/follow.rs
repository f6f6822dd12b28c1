//! Following a feed: how long a change written to CouchDB takes to be applied by tally.
//!
//! Starts pouchdb-server (in memory, 127.0.0.1; installed by `npm ci --prefix
//! tests/couchdb`), loads the demo platform (1,000 accounts, about 100,000 documents,
//! one database per account), reads it once, then runs the follow loop of `tally
//! inventory follow` (a cycle, then `[ingest.couchdb] poll_seconds`, 2 s by default)
//! and, ten times, changes one device on the server and measures the time until the
//! device's row in tally's database shows the change. Also prints the time of a cycle
//! that finds nothing (one `_changes` request per database).
//!
//! Run: `cargo bench --bench follow`; `TALLY_BENCH_ACCOUNTS=N` for another platform
//! size; `TALLY_BENCH_POLL_SECONDS` for another poll interval. SQLite store.

#[path = "../tests/it/couchdb_server.rs"]
#[allow(dead_code)]
mod couchdb_server;

use couchdb_server::{url_name, CouchServer};
use serde_json::Value;
use std::time::{Duration, Instant};
use tally::config::{DatabaseUrl, Settings};
use tally::demo::documents::documents;
use tally::demo::{generate, DemoSpec};
use tally::domain::summary::GregorianSeconds;
use tally::jobs::context::JobContext;
use tally::store::Store;

fn environment_number(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or(default)
}

fn now() -> GregorianSeconds {
    GregorianSeconds::from_utc(chrono::Utc::now())
}

#[tokio::main]
async fn main() {
    let accounts = environment_number("TALLY_BENCH_ACCOUNTS", 1_000);
    let poll = Duration::from_secs(environment_number("TALLY_BENCH_POLL_SECONDS", 2));
    let Some(couch) = CouchServer::start().await else {
        eprintln!("follow bench skipped: pouchdb-server is not installed (npm ci --prefix tests/couchdb)");
        return;
    };
    let spec = DemoSpec { accounts, seed: 1 };
    let data = generate(spec);
    let platform: Vec<(String, Value)> = documents(spec, &data).collect();
    let loading = Instant::now();
    couch.load(&platform).await;
    println!(
        "platform: {accounts} accounts, {} documents loaded into pouchdb-server in {:.1} s",
        platform.len(),
        loading.elapsed().as_secs_f64()
    );

    let directory = tempfile::tempdir().expect("a temporary directory");
    let url = DatabaseUrl::new(format!("sqlite://{}", directory.path().join("tally.db").display()));
    let store = Store::open(&url).await.expect("the store opens");
    let mut settings = Settings::default();
    settings.ingest.couchdb.url = DatabaseUrl::new(couch.url.clone());
    let context = JobContext::new(store.clone(), settings).expect("context");
    let client = context.couch_client().expect("client");

    let first = Instant::now();
    let cycle = context.ingest_cycle(&client, false, now()).await.expect("first cycle");
    println!(
        "first cycle: {} documents from {} databases in {:.1} s ({:.0} documents/s)",
        cycle.ingest.documents,
        cycle.feed.databases,
        first.elapsed().as_secs_f64(),
        cycle.ingest.documents as f64 / first.elapsed().as_secs_f64()
    );
    let idle = Instant::now();
    context.ingest_cycle(&client, false, now()).await.expect("idle cycle");
    println!("a cycle with nothing new: {:.2} s", idle.elapsed().as_secs_f64());

    // The follower, as `tally inventory follow --reconcile` runs it.
    let follower = {
        let context = context.clone();
        let client = client.clone();
        tokio::spawn(async move {
            loop {
                if let Err(error) = context.ingest_cycle(&client, true, now()).await {
                    eprintln!("cycle failed: {error}");
                }
                tokio::time::sleep(poll).await;
            }
        })
    };

    let devices: Vec<(String, String)> = platform
        .iter()
        .filter(|(_, document)| document["pvt_type"] == "device")
        .step_by(997)
        .take(10)
        .map(|(database, document)| (database.clone(), document["_id"].as_str().expect("id").to_owned()))
        .collect();
    let mut latencies = Vec::new();
    for (round, (database, device)) in devices.iter().enumerate() {
        // Changes land at varying points of the poll interval.
        tokio::time::sleep(Duration::from_millis(370 * round as u64 % 2_000)).await;
        let database_url = url_name(database);
        let mut document = couch.get(&database_url, device).await;
        let marker = format!("bench_type_{round}");
        document["device_type"] = Value::from(marker.clone());
        let written = Instant::now();
        couch.put(&database_url, document).await;
        let query = format!("SELECT COUNT(*) FROM devices WHERE id = '{device}' AND device_type = '{marker}'");
        loop {
            if store.query_count(&query).await.expect("reads") == 1 {
                break;
            }
            assert!(written.elapsed() < Duration::from_secs(60), "change never applied");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        latencies.push(written.elapsed());
    }
    follower.abort();
    latencies.sort();
    let median = latencies[latencies.len() / 2];
    println!(
        "change applied after: min {:.2} s, median {:.2} s, max {:.2} s ({} changes, poll {} s)",
        latencies[0].as_secs_f64(),
        median.as_secs_f64(),
        latencies[latencies.len() - 1].as_secs_f64(),
        latencies.len(),
        poll.as_secs()
    );
}
