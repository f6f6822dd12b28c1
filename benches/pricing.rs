//! Pricing throughput on a realistic request: `examples/quote.json`, three plans of
//! about thirty items each (recursive, simple with overrides, cumulative) merged into
//! one invoice, with account, cascade and manual quantities for every item.
//!
//! - `price_only`: items priced per second from an already merged plan;
//! - `merge_and_price`: resolve, merge and price (the work of one account's sync);
//! - `quote_end_to_end`: JSON text in, JSON text out, activations included;
//!   `parse_request` and `render_response` are its first and last steps alone.
//!
//! Run: `cargo bench --bench pricing`.

use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use tally::domain::merge::StrategyPriorities;
use tally::domain::pricing::{merge_account_plans, price_invoice};
use tally::quote::{parse_request, price, render};

fn realistic_request() -> String {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/quote.json");
    std::fs::read_to_string(path).expect("examples/quote.json is part of the repository")
}

fn pricing(criterion: &mut Criterion) {
    let text = realistic_request();
    let priorities = StrategyPriorities::default();
    let request = parse_request(&text).expect("the example request is valid");
    let merged = merge_account_plans(&request.context, &request.plans, &[], &priorities);
    let items: usize = merged
        .iter()
        .map(|plan| price_invoice(plan, &request.quantities).expect("prices").items.len())
        .sum();

    let mut group = criterion.benchmark_group("pricing");
    group.throughput(Throughput::Elements(items as u64));
    group.bench_function("price_only", |bench| {
        bench.iter(|| {
            for plan in &merged {
                black_box(price_invoice(black_box(plan), black_box(&request.quantities)).expect("prices"));
            }
        })
    });
    group.bench_function("merge_and_price", |bench| {
        bench.iter(|| {
            let merged = merge_account_plans(&request.context, black_box(&request.plans), &[], &priorities);
            for plan in &merged {
                black_box(price_invoice(plan, &request.quantities).expect("prices"));
            }
        })
    });
    group.finish();

    let mut group = criterion.benchmark_group("quote");
    group.throughput(Throughput::Elements(1));
    group.bench_function("parse_request", |bench| {
        bench.iter(|| black_box(parse_request(black_box(&text)).expect("valid")))
    });
    let quote = price(&request, &priorities).expect("prices");
    group.bench_function("render_response", |bench| {
        bench.iter(|| black_box(serde_json::to_string(&render(black_box(&quote))).expect("serialises")))
    });
    group.bench_function("quote_end_to_end", |bench| {
        bench.iter(|| {
            let request = parse_request(black_box(&text)).expect("valid");
            let quote = price(&request, &priorities).expect("prices");
            black_box(serde_json::to_string(&render(&quote)).expect("serialises"))
        })
    });
    group.finish();
}

criterion_group!(benches, pricing);
criterion_main!(benches);
