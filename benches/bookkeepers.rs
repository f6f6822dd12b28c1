//! Cost of a bookkeeper delivery outside the network, and over loopback.
//!
//! The invoice is the one of `examples/quote.json` (three merged plans, about thirty
//! items), rendered with the delivery wire type as the sync job will.
//!
//! - `build_request`: serialise the body, check its envelope, derive the idempotency
//!   key (canonical JSON + SHA-256): the CPU work per delivery;
//! - `from_stored_body`: the same from stored bytes (a frozen retry);
//! - `http_loopback`: one full delivery to an axum server on 127.0.0.1 answering 200,
//!   with a kept-alive connection: the floor of a delivery's latency.
//!
//! Run: `cargo bench --bench bookkeepers`.

use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use tally::bookkeepers::{
    Bookkeeper, DeliveryOutcome, DeliveryRequest, HttpBookkeeper, HttpBookkeeperSettings, SyncId,
};
use tally::domain::merge::StrategyPriorities;
use tally::domain::AccountId;
use tally::quote::{parse_request, price};
use tally::wire::bookkeeper::DeliveryBody;

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

criterion_group!(benches, bookkeepers);
criterion_main!(benches);
