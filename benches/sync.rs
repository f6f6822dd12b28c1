//! Sync benchmark (issue 13 §3): the first repricing of the demo platform, timed on
//! its own, with the time split into the job's three parts (reading a batch's inputs,
//! pricing it, writing it) and compared with a floor measured in the same run.
//!
//! Setup (untimed): the demo loaded through the production path (`jobs::demo::load`),
//! then one reconcile, which stores every account's quantities and marks them for
//! repricing, as `tally run billing` does before its sync stage.
//!
//! Measured, in order, on the same database:
//!
//! * **floor, read**: the inputs of every marked account as the best plain SQL reads
//!   them, on its own connection: accounts with their services row, the assignments,
//!   each distinct plan document once, the quantities and the computed snapshots,
//!   one statement each, every row fetched (nothing parsed, nothing priced);
//! * **sync, first run**: `sync::run_once` over the marked accounts, with the options
//!   `tally run billing` uses (`JobContext::billing_options`);
//! * **floor, write**: the rows sync wrote (its computed and acknowledged snapshots and
//!   its audit rows, read back untimed) inserted again into empty copies of their
//!   tables with multi-row statements of 500 rows, and the marks of the repriced
//!   accounts cleared, in one transaction; then the copies are checked equal to sync's
//!   tables, row for row;
//! * **sync, nothing changed**: `sync::run_once` over every account with plans
//!   (`SyncScope::All`): everything read and priced again, nothing written.
//!
//! Pricing is not in the floor: it is the work only tally does, and the split shows
//! its share. The floor does not bump revisions (`claim_revisions`) either.
//!
//! Run: `cargo bench --bench sync` (10 000 accounts, both backends);
//! `TALLY_BENCH_ACCOUNTS=10000,100000`; `TALLY_BENCH_BACKENDS=postgres` (or `sqlite`);
//! `TALLY_BENCH_POSTGRES` (default postgres://postgres@127.0.0.1:5432/postgres);
//! `TALLY_BENCH_SYNC_BATCH` overrides the sync batch size (default: the setting's).

mod support;

use std::sync::Mutex;
use std::time::{Duration, Instant};
use support::floor::{input_reads, FloorConnection, MARKED};
use support::{peak_memory_kib, reset_peak_memory, BenchDatabase};
use tally::config::Settings;
use tally::demo::DemoSpec;
use tally::domain::summary::GregorianSeconds;
use tally::jobs::context::{JobContext, RunScope};
use tally::jobs::demo::{load, DEMO_BATCH_SIZE};
use tally::jobs::{reconcile, sync};
use tally::store::{Backend, Store, SyncScope};
use tokio_util::sync::CancellationToken;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::Layer;

const DAY: i64 = 86_400;

/// Rows per multi-row statement of the floor's writes.
const FLOOR_ROWS_PER_STATEMENT: usize = 500;

// ---------------------------------------------------------------------------------
// The job's own split, from its `sync stages` debug event

#[derive(Debug, Default, Clone, Copy)]
struct Stages {
    /// Time the job waited for reads (the next batch is read while one is written).
    read_ms: u64,
    /// Time the reads took, waited for or not.
    read_busy_ms: u64,
    price_ms: u64,
    /// Time the job waited for writes (on PostgreSQL two are written at once while the
    /// next batch is read and priced).
    write_ms: u64,
}

static STAGES: Mutex<Option<Stages>> = Mutex::new(None);

struct StagesVisitor<'a>(&'a mut Stages);

impl tracing::field::Visit for StagesVisitor<'_> {
    fn record_u64(&mut self, field: &tracing::field::Field, value: u64) {
        match field.name() {
            "read_ms" => self.0.read_ms = value,
            "read_busy_ms" => self.0.read_busy_ms = value,
            "price_ms" => self.0.price_ms = value,
            "write_ms" => self.0.write_ms = value,
            _ => {}
        }
    }

    fn record_debug(&mut self, _field: &tracing::field::Field, _value: &dyn std::fmt::Debug) {}
}

struct StageTimes;

impl<S: tracing::Subscriber> Layer<S> for StageTimes {
    fn on_event(&self, event: &tracing::Event<'_>, _context: tracing_subscriber::layer::Context<'_, S>) {
        if event.metadata().fields().field("read_ms").is_none() {
            return;
        }
        let mut stages = Stages::default();
        event.record(&mut StagesVisitor(&mut stages));
        *STAGES.lock().expect("not poisoned") = Some(stages);
    }
}

fn take_stages() -> Stages {
    STAGES
        .lock()
        .expect("not poisoned")
        .take()
        .expect("sync logs its stage times")
}

// ---------------------------------------------------------------------------------
// The floor

/// A row of `invoice_snapshots` or `audit_logs`, as the floor writes it.
type SnapshotRow = (String, String, String, String, String, String, i64, i64);
type AuditRow = (
    String,
    String,
    i64,
    i64,
    String,
    String,
    String,
    String,
    String,
    String,
    i64,
    i64,
    bool,
);

const SNAPSHOT_COLUMNS: &str =
    "account_id, kind, bookkeeper_type, bookkeeper_vendor_id, bookkeeper_id, invoice, recurring_units, updated_at";
const AUDIT_COLUMNS: &str = "id, account_id, created_at, modified_at, status, bookkeeper_type, bookkeeper_vendor_id, \
                             bookkeeper_id, invoice, audit, today_units, recurring_units, hidden";

/// The sync-only parts of the floor: the rows sync wrote, written again.
impl FloorConnection {
    async fn snapshots(&mut self) -> Vec<SnapshotRow> {
        let sql = format!("SELECT {SNAPSHOT_COLUMNS} FROM invoice_snapshots");
        on_floor!(self, |c| sqlx::query_as(&sql).fetch_all(c).await.expect("snapshots"))
    }

    async fn audit_rows(&mut self) -> Vec<AuditRow> {
        let sql = format!("SELECT {AUDIT_COLUMNS} FROM audit_logs");
        on_floor!(self, |c| sqlx::query_as(&sql).fetch_all(c).await.expect("audit rows"))
    }

    async fn insert_snapshots(&mut self, rows: &[SnapshotRow]) {
        for chunk in rows.chunks(FLOOR_ROWS_PER_STATEMENT) {
            let sql = format!(
                "INSERT INTO floor_snapshots ({SNAPSHOT_COLUMNS}) VALUES {}",
                values(chunk.len(), 8)
            );
            on_floor!(self, |c| {
                let mut query = sqlx::query(&sql);
                for row in chunk {
                    query = query
                        .bind(&row.0)
                        .bind(&row.1)
                        .bind(&row.2)
                        .bind(&row.3)
                        .bind(&row.4)
                        .bind(&row.5)
                        .bind(row.6)
                        .bind(row.7);
                }
                query.execute(c).await.expect("floor snapshots");
            });
        }
    }

    async fn insert_audit_rows(&mut self, rows: &[AuditRow]) {
        for chunk in rows.chunks(FLOOR_ROWS_PER_STATEMENT) {
            let sql = format!(
                "INSERT INTO floor_audit_logs ({AUDIT_COLUMNS}) VALUES {}",
                values(chunk.len(), 13)
            );
            on_floor!(self, |c| {
                let mut query = sqlx::query(&sql);
                for row in chunk {
                    query = query
                        .bind(&row.0)
                        .bind(&row.1)
                        .bind(row.2)
                        .bind(row.3)
                        .bind(&row.4)
                        .bind(&row.5)
                        .bind(&row.6)
                        .bind(&row.7)
                        .bind(&row.8)
                        .bind(&row.9)
                        .bind(row.10)
                        .bind(row.11)
                        .bind(row.12);
                }
                query.execute(c).await.expect("floor audit rows");
            });
        }
    }

    /// Clears the marks of these accounts, many per statement.
    async fn clear_marks(&mut self, accounts: &[String], now: i64) {
        for chunk in accounts.chunks(FLOOR_ROWS_PER_STATEMENT) {
            let list = (0..chunk.len())
                .map(|index| format!("${}", index + 2))
                .collect::<Vec<_>>()
                .join(", ");
            let sql = format!(
                "UPDATE services SET dirty = FALSE, priced_at = COALESCE(priced_at, $1) WHERE account_id IN ({list})"
            );
            on_floor!(self, |c| {
                let mut query = sqlx::query(&sql).bind(now);
                for account in chunk {
                    query = query.bind(account);
                }
                query.execute(c).await.expect("floor marks");
            });
        }
    }
}

/// `($1, …, $n), (…)`: `rows` rows of `columns` placeholders.
fn values(rows: usize, columns: usize) -> String {
    (0..rows)
        .map(|row| {
            let row = (1..=columns)
                .map(|column| format!("${}", row * columns + column))
                .collect::<Vec<_>>()
                .join(", ");
            format!("({row})")
        })
        .collect::<Vec<_>>()
        .join(", ")
}

// ---------------------------------------------------------------------------------
// One size on one backend

struct Measured {
    backend: String,
    accounts: u64,
    scanned: usize,
    floor_read: Duration,
    floor_write: Duration,
    first: Duration,
    first_stages: Stages,
    first_peak_kib: Option<u64>,
    rows_written: usize,
    again: Duration,
    again_stages: Stages,
    again_peak_kib: Option<u64>,
}

async fn timed<T, F: std::future::Future<Output = T>>(work: F) -> (T, Duration, Option<u64>) {
    reset_peak_memory();
    let started = Instant::now();
    let result = work.await;
    (result, started.elapsed(), peak_memory_kib())
}

async fn measure(backend: &str, accounts: u64) -> Option<Measured> {
    let fresh = BenchDatabase::create(backend, &format!("sync_{accounts}")).await?;
    println!("{backend}, {accounts} accounts:");
    let store = Store::open(&fresh.url).await.expect("opens");
    let start = GregorianSeconds::from_utc(chrono::Utc::now());

    let settings = Settings::default();
    let classifiers = settings.ingest.classifiers().expect("the default classifiers compile");
    let started = Instant::now();
    let demo = load(
        &store,
        classifiers,
        DemoSpec { accounts, seed: 1 },
        GregorianSeconds(start.0 - DAY),
        DEMO_BATCH_SIZE,
    )
    .await
    .expect("the demo loads");
    println!(
        "  demo: {} accounts, {} objects loaded in {:.1} s",
        demo.accounts,
        demo.objects,
        started.elapsed().as_secs_f64()
    );

    let mut settings = Settings::default();
    settings.database.url = fresh.url.clone();
    let context = JobContext::new(store.clone(), settings).expect("default settings make a context");
    let scope = RunScope {
        batch_size: std::env::var("TALLY_BENCH_SYNC_BATCH")
            .ok()
            .map(|size| size.parse().expect("TALLY_BENCH_SYNC_BATCH: a number")),
        ..RunScope::default()
    };
    let options = context.billing_options(&scope, start, CancellationToken::new());
    let started = Instant::now();
    let reconciled = reconcile::run_once(&store, &context.counting, &options.reconcile)
        .await
        .expect("reconcile runs");
    assert!(reconciled.skipped.is_empty(), "{:?}", reconciled.skipped);
    let backend_kind = store.backend();
    if backend_kind == Backend::Postgres {
        store.execute_script("VACUUM ANALYZE").await.expect("analyse");
    }
    println!("  reconcile (setup): {:.1} s", started.elapsed().as_secs_f64());

    let mut floor = FloorConnection::open(backend_kind, &fresh.url).await;
    let started = Instant::now();
    let mut floor_rows = 0;
    for sql in input_reads(MARKED) {
        floor_rows += floor.fetch(&sql).await;
    }
    let floor_read = started.elapsed();
    println!("  floor, read: {floor_rows} rows in {:.3} s", floor_read.as_secs_f64());

    let (first, first_time, first_peak_kib) = timed(sync::run_once(&store, &options.sync)).await;
    let first = first.expect("sync runs");
    let first_stages = take_stages();
    assert!(first.skipped.is_empty(), "{:?}", first.skipped);
    assert!(first.accounts_scanned > 0, "the demo's accounts were marked");
    println!(
        "  sync, first run: {} accounts in {:.3} s ({:.0} accounts/s; read {} ms waited ({} ms busy), price {} ms, write {} ms waited; {} plan sets)",
        first.accounts_scanned,
        first_time.as_secs_f64(),
        first.accounts_scanned as f64 / first_time.as_secs_f64(),
        first_stages.read_ms,
        first_stages.read_busy_ms,
        first_stages.price_ms,
        first_stages.write_ms,
        first.plan_sets
    );

    // The floor's writes: the rows sync wrote, into empty copies of their tables.
    floor
        .execute(
            "DROP TABLE IF EXISTS floor_snapshots; DROP TABLE IF EXISTS floor_audit_logs; \
             CREATE TABLE floor_snapshots AS SELECT * FROM invoice_snapshots WHERE 1 = 0; \
             CREATE TABLE floor_audit_logs AS SELECT * FROM audit_logs WHERE 1 = 0",
        )
        .await;
    let snapshots = floor.snapshots().await;
    let audit_rows = floor.audit_rows().await;
    let mut repriced: Vec<String> = snapshots.iter().map(|row| row.0.clone()).collect();
    repriced.sort();
    repriced.dedup();
    let now = start.0;
    let started = Instant::now();
    floor.execute("BEGIN").await;
    floor.insert_snapshots(&snapshots).await;
    floor.insert_audit_rows(&audit_rows).await;
    floor.clear_marks(&repriced, now).await;
    floor.execute("COMMIT").await;
    let floor_write = started.elapsed();
    println!(
        "  floor, write: {} snapshots, {} audit rows, {} marks in {:.3} s",
        snapshots.len(),
        audit_rows.len(),
        repriced.len(),
        floor_write.as_secs_f64()
    );
    for (copy, table, columns) in [
        ("floor_snapshots", "invoice_snapshots", SNAPSHOT_COLUMNS),
        ("floor_audit_logs", "audit_logs", AUDIT_COLUMNS),
    ] {
        for (left, right) in [(copy, table), (table, copy)] {
            let differing = floor
                .count(&format!(
                    "SELECT COUNT(*) FROM (SELECT {columns} FROM {left} EXCEPT SELECT {columns} FROM {right}) d"
                ))
                .await;
            assert_eq!(differing, 0, "{left} has rows {right} has not");
        }
    }
    floor.close().await;

    let mut again_options = options.sync.clone();
    again_options.scope = SyncScope::All;
    let (again, again_time, again_peak_kib) = timed(sync::run_once(&store, &again_options)).await;
    let again = again.expect("sync runs");
    let again_stages = take_stages();
    assert!(again.skipped.is_empty(), "{:?}", again.skipped);
    assert_eq!(again.accounts_changed, 0, "nothing changed");
    println!(
        "  sync, nothing changed (every account): {} accounts in {:.3} s ({:.0} accounts/s; read {} ms waited ({} ms busy), price {} ms, write {} ms waited)",
        again.accounts_scanned,
        again_time.as_secs_f64(),
        again.accounts_scanned as f64 / again_time.as_secs_f64(),
        again_stages.read_ms,
        again_stages.read_busy_ms,
        again_stages.price_ms,
        again_stages.write_ms
    );

    store.close().await;
    fresh.remove().await;
    Some(Measured {
        backend: backend.to_owned(),
        accounts,
        scanned: first.accounts_scanned,
        floor_read,
        floor_write,
        first: first_time,
        first_stages,
        first_peak_kib,
        rows_written: snapshots.len() + audit_rows.len(),
        again: again_time,
        again_stages,
        again_peak_kib,
    })
}

fn memory(peak_kib: Option<u64>) -> String {
    peak_kib.map_or_else(|| "n/a".to_owned(), |kib| format!("{} MB", kib / 1024))
}

fn main() {
    let stage_events =
        tracing_subscriber::filter::Targets::new().with_target("tally::jobs::sync", tracing::Level::DEBUG);
    tracing_subscriber::registry()
        .with(
            tracing_subscriber::fmt::layer()
                .with_writer(std::io::stderr)
                .with_filter(
                    tracing_subscriber::EnvFilter::try_from_default_env()
                        .unwrap_or_else(|_| "warn,sqlx::query=error".into()),
                ),
        )
        .with(StageTimes.with_filter(stage_events))
        .init();
    let sizes = support::sizes("10000");
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let mut table = Vec::new();
    runtime.block_on(async {
        for &accounts in &sizes {
            for backend in support::backends("postgres,sqlite") {
                table.extend(measure(&backend, accounts).await);
            }
        }
    });
    println!();
    println!("| backend | accounts | repriced | floor s (read + write) | sync s | accounts/s | ratio | read waited (busy) / price / write waited ms | rows written | peak | nothing changed s | accounts/s | read waited (busy) / price / write waited ms | peak |");
    println!("| --- | ---: | ---: | ---: | ---: | ---: | ---: | --- | ---: | ---: | ---: | ---: | --- | ---: |");
    for row in &table {
        let floor = row.floor_read + row.floor_write;
        println!(
            "| {} | {} | {} | {:.3} ({:.3} + {:.3}) | {:.3} | {:.0} | {:.2} | {} ({}) / {} / {} | {} | {} | {:.3} | {:.0} | {} ({}) / {} / {} | {} |",
            row.backend,
            row.accounts,
            row.scanned,
            floor.as_secs_f64(),
            row.floor_read.as_secs_f64(),
            row.floor_write.as_secs_f64(),
            row.first.as_secs_f64(),
            row.scanned as f64 / row.first.as_secs_f64(),
            row.first.as_secs_f64() / floor.as_secs_f64(),
            row.first_stages.read_ms,
            row.first_stages.read_busy_ms,
            row.first_stages.price_ms,
            row.first_stages.write_ms,
            row.rows_written,
            memory(row.first_peak_kib),
            row.again.as_secs_f64(),
            row.scanned as f64 / row.again.as_secs_f64(),
            row.again_stages.read_ms,
            row.again_stages.read_busy_ms,
            row.again_stages.price_ms,
            row.again_stages.write_ms,
            memory(row.again_peak_kib),
        );
    }
}
