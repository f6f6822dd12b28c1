//! Cost of bookkeeper delivery: a whole bookkeeper-sync run on a demo platform, next to
//! its floor, and the CPU and loopback cost of one delivery.
//!
//! **Delivery run** (per backend and platform size): the demo is loaded through the
//! ingestion core (as `tally demo`), reconciled and synced with every invoice written
//! as an audit row (the full synchronisation), so every account billed by the HTTP
//! bookkeeper has a delivery due. Then one bookkeeper-sync run delivers them all to a
//! loopback bookkeeper that answers 200 at once (`bookkeepers::demo`), with the default
//! `[bookkeeper_sync]` batch size and parallelism. Printed: deliveries/s, and in the
//! same run the two floors of that work:
//! - SQL floor: the same delivery rows inserted in one statement, and the same audit
//!   rows updated in one statement, in one transaction;
//! - HTTP floor: the same number of POSTs (the stored bodies) to the same server with
//!   the same client and parallelism, and no store.
//!
//! A run's cost must stay flat as the platform grows: compare deliveries/s between sizes.
//!
//! **Micro benchmarks** (criterion, on `examples/quote.json`: three merged plans, about
//! thirty items):
//! - `build_request`: serialise the body, check its envelope, derive the idempotency
//!   key (canonical JSON + SHA-256): the CPU work per delivery;
//! - `from_stored_body`: the same from stored bytes (a frozen retry);
//! - `http_loopback`: one full delivery to an axum server on 127.0.0.1 answering 200,
//!   with a kept-alive connection: the floor of a delivery's latency.
//!
//! Run: `cargo bench --bench bookkeepers` (sizes 2,000 and 10,000 accounts, both
//! backends, then the micro benchmarks). `TALLY_BENCH_ACCOUNTS=2000,10000` sets the
//! sizes (empty: none), `TALLY_BENCH_BACKENDS=postgres` (or `sqlite`) one backend,
//! `TALLY_BENCH_MICRO=0` skips the micro benchmarks, `TALLY_BENCH_KEEP=1` keeps the
//! PostgreSQL databases (to `EXPLAIN` their queries). PostgreSQL: `TALLY_BENCH_POSTGRES`
//! (default postgres://postgres@127.0.0.1:5432/postgres).

mod support;

use criterion::{black_box, Criterion, Throughput};
use futures_util::stream::{self, StreamExt};
use sqlx::Connection;
use std::sync::Arc;
use std::time::{Duration, Instant};
use support::BenchDatabase;
use tally::bookkeepers::demo::DemoBookkeeper;
use tally::bookkeepers::{
    Bookkeeper, Bookkeepers, DeliveryOutcome, DeliveryRequest, HttpBookkeeper, HttpBookkeeperSettings, LocalBookkeeper,
    RetryPolicy, SyncId,
};
use tally::config::{BookkeeperSyncSettings, DatabaseUrl, SyncSettings};
use tally::demo::DemoSpec;
use tally::domain::changes::FirstCommit;
use tally::domain::classify::NumberClassifiers;
use tally::domain::merge::StrategyPriorities;
use tally::domain::summary::GregorianSeconds;
use tally::domain::AccountId;
use tally::jobs::bookkeeper_sync::{self, BookkeeperSyncOptions};
use tally::jobs::demo::{load, DEMO_BATCH_SIZE};
use tally::jobs::reconcile::{self, ReconcileOptions};
use tally::jobs::sync::{self, SyncOptions};
use tally::quote::{parse_request, price};
use tally::store::{Backend, CountingQueries, ReconcileScope, Store, SyncScope};
use tally::wire::bookkeeper::DeliveryBody;
use tokio_util::sync::CancellationToken;

const ACCOUNT: &str = "4c1b9e2f0a6d4e8f9b3c2d1e0f9a8b7c";
const SYNC_ID: &str = "202611-audit-1";

fn bookkeepers(criterion: &mut Criterion) {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/quote.json");
    let text = std::fs::read_to_string(path).expect("examples/quote.json is part of the repository");
    let quote = price(
        &parse_request(&text).expect("the example request is valid"),
        &StrategyPriorities::default(),
    )
    .expect("the example prices");
    let invoice = &quote.invoices[0];
    let body = DeliveryBody::new(ACCOUNT, SYNC_ID, invoice);
    let account = AccountId::parse(ACCOUNT).expect("valid account id");
    let sync_id = SyncId::parse(SYNC_ID).expect("valid sync id");
    let request = DeliveryRequest::new(account.clone(), sync_id.clone(), &body).expect("valid body");
    let stored = request.body().as_bytes().to_vec();

    let mut group = criterion.benchmark_group("bookkeepers");
    group.throughput(Throughput::Bytes(stored.len() as u64));
    group.bench_function("build_request", |bench| {
        bench.iter(|| DeliveryRequest::new(account.clone(), sync_id.clone(), black_box(&body)).expect("valid body"))
    });
    group.bench_function("from_stored_body", |bench| {
        bench.iter(|| {
            DeliveryRequest::from_stored_body(account.clone(), sync_id.clone(), black_box(stored.clone()))
                .expect("valid body")
        })
    });

    let runtime = tokio::runtime::Runtime::new().expect("a tokio runtime");
    let url = runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind loopback");
        let address = listener.local_addr().expect("bound address");
        let app = axum::Router::new().fallback(|| async { "ok" });
        tokio::spawn(async move { axum::serve(listener, app).await });
        format!("http://{address}/bookkeeper")
    });
    let http = HttpBookkeeper::new(&HttpBookkeeperSettings {
        http_url: url,
        ..HttpBookkeeperSettings::default()
    })
    .expect("valid settings");
    group.throughput(Throughput::Elements(1));
    group.bench_function("http_loopback", |bench| {
        bench.iter(|| {
            let outcome = runtime.block_on(http.deliver(&request));
            assert!(matches!(outcome, DeliveryOutcome::Synced(_)), "{outcome:?}");
        })
    });
    group.finish();
}

const NOW: i64 = 63_900_000_000;

/// What one delivery run measured.
struct DeliveryRun {
    deliveries: usize,
    run: Duration,
    sql_floor: Duration,
    http_floor: Duration,
}

fn per_second(count: usize, time: Duration) -> f64 {
    count as f64 / time.as_secs_f64().max(1e-9)
}

/// Loads the demo, reconciles it and writes an audit row for every invoice, so that
/// every account billed by the HTTP bookkeeper has a delivery due.
async fn seeded(store: &Store, accounts: u64) {
    let started = Instant::now();
    let report = load(
        store,
        NumberClassifiers::kazoo_defaults(),
        DemoSpec { accounts, seed: 1 },
        GregorianSeconds(NOW - 1_000),
        DEMO_BATCH_SIZE,
    )
    .await
    .expect("the demo loads");
    assert_eq!(report.ingest.rejected, 0, "the demo's documents are all accepted");
    let counting = CountingQueries::builtin();
    reconcile::run_once(
        store,
        &counting,
        &ReconcileOptions {
            scope: ReconcileScope::All,
            dry_run: false,
            now: GregorianSeconds(NOW - 500),
            batch_size: 500,
            classifiers: None,
        },
    )
    .await
    .expect("reconcile runs");
    let synced = sync::run_once(
        store,
        &SyncOptions {
            scope: SyncScope::All,
            dry_run: false,
            first_commit: FirstCommit::Baseline,
            now: GregorianSeconds(NOW - 100),
            batch_size: SyncSettings::default().batch_size,
            run_id: "bench".to_owned(),
            master_account_bookkeeper: "default".to_owned(),
            show_master_audit_logs: false,
            priorities: StrategyPriorities::default(),
            initiator: None,
            every_invoice: true,
            stop: CancellationToken::new(),
        },
    )
    .await
    .expect("sync runs");
    println!(
        "  seeded {} accounts, {} objects, {} invoices written, in {:.1} s",
        report.accounts,
        report.objects,
        synced.invoices_changed,
        started.elapsed().as_secs_f64()
    );
}

/// The stored deliveries as requests, for the HTTP floor.
async fn stored_requests(store: &Store, url: &DatabaseUrl) -> Vec<DeliveryRequest> {
    const SQL: &str = "SELECT id, account_id, body FROM deliveries ORDER BY id";
    let rows: Vec<(String, String, String)> = match store.backend() {
        Backend::Postgres => {
            let mut conn = sqlx::PgConnection::connect(url.expose())
                .await
                .expect("PostgreSQL reachable");
            sqlx::query_as(SQL).fetch_all(&mut conn).await.expect("deliveries read")
        }
        Backend::Sqlite => {
            let mut conn = sqlx::SqliteConnection::connect(url.expose())
                .await
                .expect("SQLite file opens");
            sqlx::query_as(SQL).fetch_all(&mut conn).await.expect("deliveries read")
        }
    };
    rows.into_iter()
        .map(|(id, account, body)| {
            DeliveryRequest::from_stored_body(
                AccountId::parse(account).expect("stored account id"),
                SyncId::parse(id).expect("stored sync id"),
                body.into_bytes(),
            )
            .expect("stored body")
        })
        .collect()
}

/// The SQL floor: the run's delivery rows inserted, and their audit rows updated, by
/// one statement each in one transaction.
fn sql_floor_script(backend: Backend) -> &'static str {
    match backend {
        Backend::Postgres => {
            "DROP TABLE IF EXISTS floor_deliveries; \
             CREATE TABLE floor_deliveries (LIKE deliveries INCLUDING ALL); \
             BEGIN; \
             INSERT INTO floor_deliveries SELECT * FROM deliveries; \
             UPDATE audit_logs SET status = 'completed', attempts = attempts + 1, last_response_code = 200, \
                 modified_at = modified_at + 1 WHERE delivery_id IS NOT NULL; \
             COMMIT;"
        }
        Backend::Sqlite => {
            "DROP TABLE IF EXISTS floor_deliveries; \
             CREATE TABLE floor_deliveries AS SELECT * FROM deliveries WHERE 0; \
             CREATE UNIQUE INDEX floor_deliveries_id ON floor_deliveries (id); \
             BEGIN; \
             INSERT INTO floor_deliveries SELECT * FROM deliveries; \
             UPDATE audit_logs SET status = 'completed', attempts = attempts + 1, last_response_code = 200, \
                 modified_at = modified_at + 1 WHERE delivery_id IS NOT NULL; \
             COMMIT;"
        }
    }
}

async fn delivery_run(store: &Store, url: &DatabaseUrl, accounts: u64) -> DeliveryRun {
    seeded(store, accounts).await;
    let server = DemoBookkeeper::start().await.expect("loopback bookkeeper listens");
    let http = Arc::new(
        HttpBookkeeper::new(&HttpBookkeeperSettings {
            http_url: server.url(),
            ..HttpBookkeeperSettings::default()
        })
        .expect("valid settings"),
    );
    let bookkeepers = Bookkeepers::new(Arc::new(LocalBookkeeper::new()), http.clone());
    let settings = BookkeeperSyncSettings::default();
    let options = BookkeeperSyncOptions {
        now: GregorianSeconds(NOW),
        batch_size: settings.batch_size,
        parallelism: settings.parallelism,
        lease: Duration::from_secs(settings.lease_seconds),
        retry: RetryPolicy::new(
            Duration::from_secs(settings.retry_initial_seconds),
            Duration::from_secs(settings.retry_max_seconds),
            settings.max_attempts,
        )
        .expect("valid policy"),
        account: None,
        stop: CancellationToken::new(),
    };
    let report = bookkeeper_sync::run_once(store, &bookkeepers, &options)
        .await
        .expect("bookkeeper-sync runs");
    assert!(
        report.failed.is_empty(),
        "no delivery fails: {:?}",
        report.failed.first()
    );
    assert_eq!(report.pending.total(), 0, "nothing is left waiting");
    assert_eq!(
        server.received(),
        report.deliveries as u64,
        "every delivery reached the server"
    );

    let started = Instant::now();
    store
        .execute_script(sql_floor_script(store.backend()))
        .await
        .expect("the SQL floor runs");
    let sql_floor = started.elapsed();

    let requests = stored_requests(store, url).await;
    assert_eq!(requests.len(), report.deliveries, "one stored delivery per attempt");
    let started = Instant::now();
    let synced = stream::iter(requests.iter())
        .map(|request| http.deliver(request))
        .buffer_unordered(settings.parallelism)
        .filter(|outcome| std::future::ready(matches!(outcome, DeliveryOutcome::Synced(_))))
        .count()
        .await;
    let http_floor = started.elapsed();
    assert_eq!(synced, requests.len(), "every floor POST is answered 200");
    DeliveryRun {
        deliveries: report.deliveries,
        run: report.duration,
        sql_floor,
        http_floor,
    }
}

fn print_run(accounts: u64, run: &DeliveryRun) {
    let floor = run.sql_floor + run.http_floor;
    println!(
        "  {accounts:>7} accounts: {:>6} deliveries in {:>7.2} s = {:>7.0} deliveries/s | floor: SQL {:>6.3} s + HTTP {:>6.3} s \
         = {:>7.0} deliveries/s | ratio {:>5.2}",
        run.deliveries,
        run.run.as_secs_f64(),
        per_second(run.deliveries, run.run),
        run.sql_floor.as_secs_f64(),
        run.http_floor.as_secs_f64(),
        per_second(run.deliveries, floor),
        run.run.as_secs_f64() / floor.as_secs_f64().max(1e-9),
    );
}

fn delivery_runs() {
    let sizes: Vec<u64> = std::env::var("TALLY_BENCH_ACCOUNTS")
        .unwrap_or_else(|_| "2000,10000".to_owned())
        .split(',')
        .filter_map(|size| size.trim().parse().ok())
        .collect();
    if sizes.is_empty() {
        return;
    }
    let runtime = tokio::runtime::Runtime::new().expect("a tokio runtime");
    runtime.block_on(async {
        for backend in support::backends("postgres,sqlite") {
            println!("bookkeeper-sync on {backend}:");
            for &accounts in &sizes {
                let Some(database) = BenchDatabase::create(&backend, &format!("bk_{accounts}")).await else {
                    break;
                };
                let store = Store::open(&database.url).await.expect("the store opens");
                let run = delivery_run(&store, &database.url, accounts).await;
                store.close().await;
                database.remove().await;
                print_run(accounts, &run);
            }
        }
    });
}

fn main() {
    // RUST_LOG=tally=debug shows each statement's time.
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_writer(std::io::stderr)
        .init();
    delivery_runs();
    if std::env::var("TALLY_BENCH_MICRO").as_deref() != Ok("0") {
        let mut criterion = Criterion::default().configure_from_args();
        bookkeepers(&mut criterion);
        criterion.final_summary();
    }
}
