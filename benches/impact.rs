//! Impact and explain benchmark (issue 15: "impact of changing one plan used by
//! 10,000 accounts of the 100k-account demo under 10 s on PostgreSQL, peak memory under
//! 200 MB; explain of one account under 50 ms").
//!
//! Setup (untimed): the demo loaded through the production path (or copied from a saved
//! one, `TALLY_BENCH_REUSE=1`, shared with the nightly bench), then one billing
//! (reconcile and sync with the options of `tally run billing`), so every account has
//! its quantities and computed snapshots. The change: the plan with the most assigned
//! accounts, every item `rate` in it raised by 1. The demo gives each reseller's
//! customers its reseller's plans, so its most assigned plan reaches ~1.8 % of the
//! accounts (179 of 10,000), far from the 10,000: before the billing the setup
//! assigns that plan also to accounts without a plan of its id, in id order, until it
//! reaches `TALLY_BENCH_TOUCHED` accounts (default 10,000, as many as there are; `0`
//! keeps the demo's assignments). Pricing reads an assignment's plan by its vendor and
//! id, so these accounts are priced like any other.
//!
//! Measured, in order, on the same database:
//!
//! * **floor**: the plain-SQL read of the touched accounts' inputs on its own
//!   connection (`support::floor::input_reads`, the sync bench's read floor), every
//!   row fetched, nothing parsed or priced;
//! * **impact**: `Operations::import_plans_impact`, what `tally plans import FILE
//!   --dry-run` calls (the catalog lookup, the assigned accounts, `jobs::impact`, the
//!   answer's JSON), with this process's peak memory (VmHWM, reset through
//!   /proc/self/clear_refs before; the PostgreSQL server's memory is not in it);
//! * **explain**: `Operations::explain` (`tally services explain ACCOUNT`) of
//!   [`EXPLAINED`] touched accounts spread over the id order, one after the other;
//!   median and max;
//! * **reference**: a dry-run `sync::run_once` of the same accounts, which reads and
//!   prices each once where the impact does both twice (as stored, and with the change).
//!
//! Checked in the run: the dry run wrote nothing (the stored plan, snapshots, audit
//! rows, marks and revisions are as before), it touched exactly the plan's assigned
//! accounts (as many as the floor read), skipped none and changed some; every explained
//! account has invoice lines.
//!
//! Run: `cargo bench --bench impact` (10 000 accounts, both backends);
//! `TALLY_BENCH_ACCOUNTS=100000 TALLY_BENCH_BACKENDS=postgres` for the size;
//! `TALLY_BENCH_POSTGRES`, `TALLY_BENCH_KEEP=1` and `TALLY_BENCH_REUSE=1` as in the
//! nightly bench.

mod support;

use rust_decimal::Decimal;
use serde_json::Value;
use std::str::FromStr;
use std::time::{Duration, Instant};
use support::floor::{input_reads, FloorConnection};
use support::saved_demo::{prepare_demo, saved_demo_note, PreparedDemo};
use support::{peak_memory_kib, reset_peak_memory, resident_memory_kib};
use tally::config::Settings;
use tally::domain::summary::GregorianSeconds;
use tally::domain::AccountId;
use tally::jobs::context::{JobContext, RunScope};
use tally::jobs::{reconcile, sync};
use tally::ops::{Caller, FixedClock, Operations};
use tally::store::{Backend, Store, SyncScope};
use tokio_util::sync::CancellationToken;

const DAY: i64 = 86_400;

/// How many accounts `explain` is timed on.
const EXPLAINED: usize = 25;

/// What a dry run must leave as it was, each as one number.
const WRITTEN: [&str; 6] = [
    "SELECT COUNT(*) FROM invoice_snapshots",
    "SELECT COALESCE(CAST(MAX(updated_at) AS BIGINT), 0) FROM invoice_snapshots",
    "SELECT COUNT(*) FROM audit_logs",
    "SELECT COUNT(*) FROM services WHERE dirty",
    "SELECT COALESCE(CAST(SUM(revision) AS BIGINT), 0) FROM services",
    "SELECT COUNT(*) FROM service_plans",
];

/// The bench's reads of the setup, on the floor's connection.
impl FloorConnection {
    /// The (vendor, plan) assigned to the most accounts, and how many.
    async fn most_assigned_plan(&mut self) -> (String, String, i64) {
        let sql = "SELECT vendor_id, plan_id, COUNT(DISTINCT account_id) AS assigned FROM service_plan_assignments \
                   GROUP BY vendor_id, plan_id ORDER BY assigned DESC, vendor_id, plan_id LIMIT 1";
        on_floor!(self, |c| sqlx::query_as(sql)
            .fetch_one(c)
            .await
            .expect("the demo assigns plans"))
    }

    async fn written(&mut self) -> Vec<i64> {
        let mut figures = Vec::with_capacity(WRITTEN.len());
        for sql in WRITTEN {
            figures.push(self.count(sql).await);
        }
        figures
    }
}

/// Raises every item's `rate` in the plan document by 1 (exactly: the number's text
/// through `Decimal`); returns how many were raised.
fn raise_rates(document: &mut Value) -> usize {
    let mut raised = 0;
    let Some(Value::Object(categories)) = document.get_mut("plan") else {
        return 0;
    };
    for items in categories.values_mut() {
        let Value::Object(items) = items else { continue };
        for item in items.values_mut() {
            let Some(Value::Number(rate)) = item.get_mut("rate") else {
                continue;
            };
            let old = Decimal::from_str(&rate.to_string()).expect("a plan rate is a decimal");
            *rate = serde_json::Number::from_str(&(old + Decimal::ONE).to_string()).expect("a decimal is a number");
            raised += 1;
        }
    }
    raised
}

/// How many accounts the changed plan should reach: `TALLY_BENCH_TOUCHED`, else the
/// issue's 10,000 (`0` keeps the demo's assignments as generated).
fn touched_wanted() -> i64 {
    std::env::var("TALLY_BENCH_TOUCHED").map_or(10_000, |touched| {
        touched.parse().expect("TALLY_BENCH_TOUCHED: a number of accounts")
    })
}

/// A SQL string literal.
fn quoted(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

/// Where the load average stood: the 1, 5 and 15 minute figures.
fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|text| text.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "n/a".to_owned())
}

struct Measured {
    backend: String,
    accounts: u64,
    plan: String,
    as_generated: i64,
    touched: u64,
    changed: u64,
    floor: Duration,
    impact: Duration,
    sync_reference: Duration,
    start_kib: Option<u64>,
    peak_kib: Option<u64>,
    explain_median: Duration,
    explain_max: Duration,
    load: String,
}

fn operations(store: &Store, now: GregorianSeconds) -> Operations {
    let context = JobContext::new(store.clone(), Settings::default()).expect("default settings make a context");
    Operations::new(context).with_clock(FixedClock(now))
}

async fn measure(backend: &str, accounts: u64) -> Option<Measured> {
    println!("{backend}, {accounts} accounts (load average {}):", load_average());
    let start = GregorianSeconds::from_utc(chrono::Utc::now());
    let PreparedDemo {
        database, store, saved, ..
    } = prepare_demo(
        backend,
        accounts,
        &format!("impact_{accounts}"),
        GregorianSeconds(start.0 - DAY),
    )
    .await?;

    // The plan to change, widened to the reach before the billing.
    let mut floor_connection = FloorConnection::open(store.backend(), &database.url).await;
    let (vendor, plan_id, as_generated) = floor_connection.most_assigned_plan().await;
    let wanted = touched_wanted();
    if wanted > as_generated {
        floor_connection
            .execute(&format!(
                "INSERT INTO service_plan_assignments (account_id, plan_id, vendor_id, position, overrides) \
                 SELECT a.id, {plan}, {vendor}, 100, '{{}}' FROM accounts a \
                 WHERE a.parent_id IS NOT NULL AND NOT a.deleted AND NOT EXISTS (SELECT 1 FROM service_plan_assignments x \
                   WHERE x.account_id = a.id AND x.plan_id = {plan}) \
                 ORDER BY a.id LIMIT {more}",
                plan = quoted(&plan_id),
                vendor = quoted(&vendor),
                more = wanted - as_generated
            ))
            .await;
    }
    let assigned = u64::try_from(
        floor_connection
            .count(&format!(
                "SELECT COUNT(*) FROM service_plan_assignments WHERE vendor_id = {} AND plan_id = {}",
                quoted(&vendor),
                quoted(&plan_id)
            ))
            .await,
    )
    .expect("a count");

    // One billing, so every account has quantities and computed snapshots.
    let started = Instant::now();
    let mut settings = Settings::default();
    settings.database.url = database.url.clone();
    let context = JobContext::new(store.clone(), settings).expect("default settings make a context");
    let options = context.billing_options(&RunScope::default(), start, CancellationToken::new());
    let reconciled = reconcile::run_once(&store, &context.counting, &options.reconcile)
        .await
        .expect("reconcile runs");
    assert!(reconciled.skipped.is_empty(), "{:?}", reconciled.skipped);
    let synced = sync::run_once(&store, &options.sync).await.expect("sync runs");
    assert!(synced.skipped.is_empty(), "{:?}", synced.skipped);
    if store.backend() == Backend::Postgres {
        store.execute_script("VACUUM ANALYZE").await.expect("analyse");
    }
    println!(
        "  billing (setup): {} accounts priced in {:.1} s",
        synced.accounts_scanned,
        started.elapsed().as_secs_f64()
    );

    let stored_plan = store
        .catalog_plan(&vendor, &plan_id)
        .await
        .expect("reads the catalog")
        .expect("an assigned plan is in its vendor's catalog");
    let mut document = stored_plan.document.clone();
    document["id"] = Value::String(plan_id.clone());
    let raised = raise_rates(&mut document);
    assert!(raised > 0, "plan {vendor}/{plan_id} has no item rate to change");
    println!(
        "  plan {vendor}/{plan_id}: assigned to {as_generated} accounts by the demo, {assigned} after widening; \
         {raised} item rates raised by 1"
    );

    // The floor: the touched accounts' inputs as plain SQL reads them.
    let touched_condition = format!(
        "EXISTS (SELECT 1 FROM service_plan_assignments t WHERE t.account_id = s.account_id \
         AND t.vendor_id = {} AND t.plan_id = {})",
        quoted(&vendor),
        quoted(&plan_id)
    );
    let started = Instant::now();
    let mut floor_rows = Vec::new();
    for sql in input_reads(&touched_condition) {
        floor_rows.push(floor_connection.fetch(&sql).await);
    }
    let floor = started.elapsed();
    assert_eq!(
        u64::try_from(floor_rows[0]).expect("a count"),
        assigned,
        "the floor reads every assigned account"
    );
    println!(
        "  floor, read: {} rows ({} accounts) in {:.3} s",
        floor_rows.iter().sum::<usize>(),
        floor_rows[0],
        floor.as_secs_f64()
    );

    // The dry run, through what `tally plans import FILE --dry-run` calls.
    let written_before = floor_connection.written().await;
    let ops = operations(&store, start);
    let operator = Caller::operator("bench");
    let vendor_id = AccountId::parse(vendor.as_str()).expect("a stored vendor id");
    let start_kib = resident_memory_kib();
    assert!(
        reset_peak_memory(),
        "/proc/self/clear_refs resets the peak (Linux >= 4.0)"
    );
    let started = Instant::now();
    let answer = ops
        .import_plans_impact(&operator, &vendor_id, &document)
        .await
        .expect("the dry run prices the change");
    let impact = started.elapsed();
    let peak_kib = peak_memory_kib();
    let report = &answer["impact"];
    let touched = report["accounts_touched"].as_u64().expect("accounts_touched");
    let changed = report["accounts_changed"].as_u64().expect("accounts_changed");
    assert_eq!(touched, assigned, "the dry run touches every assigned account");
    assert_eq!(
        report["skipped"],
        Value::Array(Vec::new()),
        "no touched account is skipped"
    );
    assert!(changed > 0, "raising the plan's rates changes some invoice");
    assert_eq!(
        floor_connection.written().await,
        written_before,
        "the dry run wrote nothing ({WRITTEN:?})"
    );
    let stored_after = store
        .catalog_plan(&vendor, &plan_id)
        .await
        .expect("reads the catalog")
        .expect("still in the catalog");
    assert_eq!(
        stored_after.document, stored_plan.document,
        "the dry run stored no plan"
    );
    drop(answer);
    println!(
        "  impact (dry run): {touched} accounts touched, {changed} changed in {:.3} s ({:.0} accounts/s, {:.2}x the floor), \
         RSS {} at start, peak {}",
        impact.as_secs_f64(),
        touched as f64 / impact.as_secs_f64().max(1e-9),
        impact.as_secs_f64() / floor.as_secs_f64().max(1e-9),
        memory(start_kib),
        memory(peak_kib)
    );

    // Explain, one account after the other, spread over the touched accounts.
    let touched_accounts = store
        .accounts_assigned(&[(vendor.clone(), plan_id.clone())])
        .await
        .expect("lists the assigned accounts");
    let step = (touched_accounts.len() / EXPLAINED).max(1);
    let mut explain_times = Vec::with_capacity(EXPLAINED);
    for account in touched_accounts.iter().step_by(step).take(EXPLAINED) {
        let started = Instant::now();
        let explained = ops
            .explain(&operator, account, None)
            .await
            .unwrap_or_else(|error| panic!("explain {account}: {error}"));
        explain_times.push(started.elapsed());
        let lines: usize = explained["invoices"]
            .as_array()
            .expect("invoices")
            .iter()
            .map(|invoice| invoice["lines"].as_array().map_or(0, Vec::len))
            .sum();
        assert!(
            lines > 0,
            "account {account} has an assigned plan: its explanation has lines"
        );
    }
    explain_times.sort();
    let explain_median = explain_times[explain_times.len() / 2];
    let explain_max = *explain_times.last().expect("explained some");
    println!(
        "  explain: {} accounts, median {:.1} ms, max {:.1} ms",
        explain_times.len(),
        millis(explain_median),
        millis(explain_max)
    );

    // A reference: a dry-run sync of the same accounts reads and prices each once (the
    // impact does both twice: as stored and with the change).
    let mut reference = options.sync.clone();
    reference.scope = SyncScope::Accounts(touched_accounts.clone());
    reference.dry_run = true;
    let started = Instant::now();
    let synced = sync::run_once(&store, &reference).await.expect("the dry-run sync runs");
    let sync_reference = started.elapsed();
    assert_eq!(u64::try_from(synced.accounts_scanned).expect("a count"), touched);
    assert!(synced.skipped.is_empty(), "{:?}", synced.skipped);
    assert_eq!(
        floor_connection.written().await,
        written_before,
        "a dry-run sync writes nothing"
    );
    println!(
        "  reference, dry-run sync of the touched accounts: {:.3} s ({:.0} accounts/s)",
        sync_reference.as_secs_f64(),
        touched as f64 / sync_reference.as_secs_f64().max(1e-9)
    );
    let load = load_average();

    floor_connection.close().await;
    store.close().await;
    database.remove().await;
    if let Some(saved) = &saved {
        println!("{}", saved_demo_note(saved));
    }
    Some(Measured {
        backend: backend.to_owned(),
        accounts,
        plan: format!("{vendor}/{plan_id}"),
        as_generated,
        touched,
        changed,
        floor,
        impact,
        sync_reference,
        start_kib,
        peak_kib,
        explain_median,
        explain_max,
        load,
    })
}

fn millis(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1000.0
}

fn memory(kib: Option<u64>) -> String {
    kib.map_or_else(|| "n/a".to_owned(), |kib| format!("{} MB", kib / 1024))
}

fn main() {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn,sqlx::query=error".into()),
        )
        .init();
    let sizes = support::sizes("10000");
    let backends = support::backends("postgres,sqlite");
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let mut table = Vec::new();
    runtime.block_on(async {
        for &accounts in &sizes {
            for backend in &backends {
                table.extend(measure(backend, accounts).await);
            }
        }
    });
    println!();
    println!("| backend | accounts | plan | assigned by the demo | touched | changed | floor read s | impact s | accounts/s | ratio | dry-run sync s | RSS at start | peak RSS | explain median ms | explain max ms | load average after |");
    println!("| --- | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |");
    for row in &table {
        println!(
            "| {} | {} | {} | {} | {} | {} | {:.3} | {:.3} | {:.0} | {:.2} | {:.3} | {} | {} | {:.1} | {:.1} | {} |",
            row.backend,
            row.accounts,
            row.plan,
            row.as_generated,
            row.touched,
            row.changed,
            row.floor.as_secs_f64(),
            row.impact.as_secs_f64(),
            row.touched as f64 / row.impact.as_secs_f64().max(1e-9),
            row.impact.as_secs_f64() / row.floor.as_secs_f64().max(1e-9),
            row.sync_reference.as_secs_f64(),
            memory(row.start_kib),
            memory(row.peak_kib),
            millis(row.explain_median),
            millis(row.explain_max),
            row.load,
        );
    }
}
