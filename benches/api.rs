//! API throughput under concurrency: `GET …/services/summary` requests per second
//! through the real server (`tally::api::serve` on 127.0.0.1, keep-alive reqwest
//! clients in the same process) with 1 client and with 16 concurrent clients, next to
//! two floors measured in the same run: the same summary computed by direct
//! `Operations::services_summary` calls (no HTTP), and a trivial handler served the
//! same way (HTTP alone). The bar: 16 clients sustain at least the
//! single-client throughput.
//!
//! Run: `cargo bench --bench api` (the demo's 2,000 accounts, 5 s a measurement);
//! `TALLY_BENCH_ACCOUNTS`, `TALLY_BENCH_SECONDS`, `TALLY_BENCH_BACKENDS=sqlite` (or
//! `postgres`), `TALLY_BENCH_POSTGRES` (default postgres://postgres@127.0.0.1:5432/postgres).

mod support;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use support::BenchDatabase;
use tally::config::Settings;
use tally::demo::DemoSpec;
use tally::domain::classify::NumberClassifiers;
use tally::domain::summary::GregorianSeconds;
use tally::domain::AccountId;
use tally::jobs::context::JobContext;
use tally::jobs::demo::{load, DEMO_BATCH_SIZE};
use tally::jobs::reconcile::{run_once, ReconcileOptions};
use tally::ops::{Caller, Operations};
use tally::store::{ReconcileScope, Store, SyncScope};

const NOW: i64 = 63_900_000_000;
/// Accounts the clients cycle through (accounts with plans).
const TARGETS: usize = 64;
const MANY_CLIENTS: usize = 16;

/// Runs `clients` loops of `work` for `duration`; returns completed calls per second.
async fn throughput<F, Fut>(clients: usize, duration: Duration, work: F) -> f64
where
    F: Fn(usize, u64) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let work = Arc::new(work);
    let done = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let started = Instant::now();
    let tasks: Vec<_> = (0..clients)
        .map(|client| {
            let (work, done, stop) = (work.clone(), done.clone(), stop.clone());
            tokio::spawn(async move {
                let mut call = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    work(client, call).await;
                    call += 1;
                    done.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();
    tokio::time::sleep(duration).await;
    stop.store(true, Ordering::Relaxed);
    for task in tasks {
        task.await.expect("client loop");
    }
    done.load(Ordering::Relaxed) as f64 / started.elapsed().as_secs_f64()
}

/// Keep-alive HTTP clients, one per concurrent loop.
fn clients(count: usize) -> Arc<Vec<reqwest::Client>> {
    Arc::new(
        (0..count)
            .map(|_| {
                reqwest::Client::builder()
                    .pool_max_idle_per_host(1)
                    .build()
                    .expect("client")
            })
            .collect(),
    )
}

async fn get_ok(client: &reqwest::Client, url: &str, token: &str) {
    let response = client
        .get(url)
        .header("X-Auth-Token", token)
        .send()
        .await
        .expect("answered");
    let status = response.status();
    let body = response.bytes().await.expect("body");
    assert!(
        status.is_success(),
        "{url}: {status} {}",
        String::from_utf8_lossy(&body)
    );
}

struct Line {
    what: &'static str,
    one: f64,
    many: f64,
}

async fn bench_backend(store: &Store, accounts: u64, duration: Duration) -> Vec<Line> {
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
    let options = ReconcileOptions {
        scope: ReconcileScope::All,
        dry_run: false,
        now: GregorianSeconds(NOW),
        batch_size: 1_000,
        classifiers: None,
    };
    run_once(store, &tally::store::CountingQueries::builtin(), &options)
        .await
        .expect("reconcile");
    println!(
        "  seeded and reconciled {} accounts, {} objects in {:.1} s",
        report.accounts,
        report.objects,
        started.elapsed().as_secs_f64()
    );
    let targets: Vec<AccountId> = store
        .sync_candidates(&SyncScope::All)
        .await
        .expect("accounts with plans")
        .into_iter()
        .take(TARGETS)
        .collect();
    assert!(!targets.is_empty(), "the demo assigns plans");
    let master = store.master_account().await.expect("master").expect("a master account");
    let token = store
        .create_token(
            tally::store::NewToken {
                account: &master,
                super_admin: true,
                expires_at: None,
                origin: tally::store::TokenOrigin::Cli,
                owner_id: None,
                description: Some("bench"),
            },
            GregorianSeconds(NOW),
        )
        .await
        .expect("token");

    let ops = Operations::new(JobContext::new(store.clone(), Settings::default()).expect("job context"));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("address"));
    let server = tokio::spawn(tally::api::serve(ops.clone(), listener, std::future::pending()));
    // The HTTP floor: a handler that does nothing, served the same way.
    let floor_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let floor_base = format!("http://{}", floor_listener.local_addr().expect("address"));
    let floor_app = axum::Router::new()
        .route("/ping", axum::routing::get(|| async { "{}" }))
        .into_make_service_with_connect_info::<SocketAddr>();
    let floor_server = tokio::spawn(async move { axum::serve(floor_listener, floor_app).await });

    let targets = Arc::new(targets);
    let mut lines = Vec::new();

    let direct = |clients: usize| {
        let (ops, targets) = (ops.clone(), targets.clone());
        throughput(clients, duration, move |client, call| {
            let (ops, targets) = (ops.clone(), targets.clone());
            async move {
                let account = &targets[(client * 7 + call as usize) % targets.len()];
                ops.services_summary(&Caller::operator("bench"), account)
                    .await
                    .expect("summary");
            }
        })
    };
    let one = direct(1).await;
    let many = direct(MANY_CLIENTS).await;
    lines.push(Line {
        what: "summary, direct calls (floor)",
        one,
        many,
    });

    let http_floor = |count: usize| {
        let (http, url) = (clients(count), format!("{floor_base}/ping"));
        throughput(count, duration, move |client, _| {
            let (http, url) = (http.clone(), url.clone());
            async move { get_ok(&http[client], &url, "").await }
        })
    };
    let one = http_floor(1).await;
    let many = http_floor(MANY_CLIENTS).await;
    lines.push(Line {
        what: "trivial handler over HTTP (floor)",
        one,
        many,
    });

    let summary = |count: usize| {
        let (http, targets, base, token) = (clients(count), targets.clone(), base.clone(), token.clone());
        throughput(count, duration, move |client, call| {
            let (http, targets, base, token) = (http.clone(), targets.clone(), base.clone(), token.clone());
            async move {
                let account = &targets[(client * 7 + call as usize) % targets.len()];
                let url = format!("{base}/v2/accounts/{account}/services/summary");
                get_ok(&http[client], &url, &token).await
            }
        })
    };
    let one = summary(1).await;
    let many = summary(MANY_CLIENTS).await;
    lines.push(Line {
        what: "GET services/summary over HTTP",
        one,
        many,
    });
    server.abort();
    floor_server.abort();
    lines
}

fn print(lines: &[Line]) {
    println!(
        "  {:<36} {:>12} {:>14} {:>8}",
        "", "1 client/s", "16 clients/s", "16 / 1"
    );
    for line in lines {
        println!(
            "  {:<36} {:>12.0} {:>14.0} {:>8.2}",
            line.what,
            line.one,
            line.many,
            line.many / line.one
        );
    }
}

fn main() {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_writer(std::io::stderr)
        .init();
    let accounts: u64 = std::env::var("TALLY_BENCH_ACCOUNTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2_000);
    let duration = Duration::from_secs_f64(
        std::env::var("TALLY_BENCH_SECONDS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(5.0),
    );
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    runtime.block_on(async {
        for backend in support::backends("sqlite,postgres") {
            let Some(database) = BenchDatabase::create(&backend, "api").await else {
                continue;
            };
            println!("{backend} ({accounts} accounts, pool of 4):");
            let store = Store::open(&database.url).await.expect("opens");
            print(&bench_backend(&store, accounts, duration).await);
            store.close().await;
            database.remove().await;
        }
    });
}
