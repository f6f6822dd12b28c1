//! Reconcile benchmark: loads the demo data set (through the ingestion core) and times `reconcile` on SQLite and
//! PostgreSQL next to the plain-SQL floor for the same work (one set-based count, the
//! cascade roll-up over the ancestor closure, and a write of only the changed rows),
//! in three scenarios: first run (nothing stored), re-run with no change, and a
//! nightly churn (about 1 % of devices, users and numbers changed).
//!
//! Run: `cargo bench --bench reconcile` (10 000 accounts, ~1 M objects);
//! `TALLY_BENCH_ACCOUNTS=100000 cargo bench --bench reconcile` for ~10 M objects;
//! `TALLY_BENCH_BACKENDS=postgres` (or `sqlite`) to run one backend.
//! PostgreSQL: `TALLY_BENCH_POSTGRES` (default postgres://postgres@127.0.0.1:5432/postgres).

mod support;

use std::time::{Duration, Instant};
use support::{peak_memory_kib, BenchDatabase};
use tally::demo::DemoSpec;
use tally::domain::classify::NumberClassifiers;
use tally::domain::summary::GregorianSeconds;
use tally::jobs::demo::{load, DEMO_BATCH_SIZE};
use tally::jobs::reconcile::{run_once, ReconcileOptions};
use tally::store::{Backend, CountingQueries, ReconcileScope, Store};

const NOW: i64 = 63_900_000_000;

/// The floor: the same count, roll-up and changed-rows write, as bare SQL.
fn floor_script(backend: Backend, counting: &CountingQueries) -> String {
    let union: Vec<String> = counting
        .iter()
        .map(|query| format!("SELECT account_id, category, item, quantity FROM ({}) q", query.sql))
        .collect();
    let (index_counts, analyze) = match backend {
        Backend::Sqlite => (
            "CREATE INDEX floor_counts_key ON floor_counts (account_id, category, item); \
             CREATE INDEX floor_cascade_key ON floor_cascade (account_id, category, item);",
            "",
        ),
        Backend::Postgres => ("", "ANALYZE floor_counts; ANALYZE floor_cascade;"),
    };
    let closure_analyze = match backend {
        Backend::Sqlite => "CREATE INDEX floor_closure_key ON floor_closure (account_id);",
        Backend::Postgres => "ANALYZE floor_closure;",
    };
    let scope_analyze = match backend {
        Backend::Sqlite => "",
        Backend::Postgres => "ANALYZE reconcile_scope;",
    };
    format!(
        "DROP TABLE IF EXISTS reconcile_scope; DROP TABLE IF EXISTS floor_closure; \
         DROP TABLE IF EXISTS floor_counts; DROP TABLE IF EXISTS floor_cascade; DROP TABLE IF EXISTS floor_diff; \
         CREATE TEMP TABLE reconcile_scope (account_id TEXT PRIMARY KEY); \
         INSERT INTO reconcile_scope SELECT id FROM accounts; {scope_analyze} \
         CREATE TEMP TABLE floor_closure AS WITH RECURSIVE up(account_id, ancestor_id) AS ( \
             SELECT id, parent_id FROM accounts WHERE parent_id IS NOT NULL \
             UNION ALL SELECT up.account_id, p.parent_id FROM up JOIN accounts p ON p.id = up.ancestor_id \
             WHERE p.parent_id IS NOT NULL) SELECT account_id, ancestor_id FROM up; \
         {closure_analyze} \
         CREATE TEMP TABLE floor_counts AS SELECT account_id, category, item, SUM(quantity) AS quantity \
             FROM ({union}) c GROUP BY account_id, category, item HAVING SUM(quantity) <> 0; \
         CREATE TEMP TABLE floor_cascade AS SELECT c.ancestor_id AS account_id, n.category, n.item, SUM(n.quantity) AS quantity \
             FROM floor_counts n JOIN floor_closure c ON c.account_id = n.account_id JOIN accounts d ON d.id = n.account_id \
             WHERE n.quantity >= 1 AND NOT d.deleted GROUP BY c.ancestor_id, n.category, n.item; \
         {index_counts} {analyze} \
         CREATE TEMP TABLE floor_diff AS \
             SELECT n.account_id, 'account' AS bucket, n.category, n.item, n.quantity FROM floor_counts n \
             LEFT JOIN floor_quantities q ON q.account_id = n.account_id AND q.bucket = 'account' \
                 AND q.category = n.category AND q.item = n.item \
             WHERE q.quantity IS NULL OR q.quantity <> n.quantity \
             UNION ALL \
             SELECT n.account_id, 'cascade', n.category, n.item, n.quantity FROM floor_cascade n \
             LEFT JOIN floor_quantities q ON q.account_id = n.account_id AND q.bucket = 'cascade' \
                 AND q.category = n.category AND q.item = n.item \
             WHERE q.quantity IS NULL OR q.quantity <> n.quantity \
             UNION ALL \
             SELECT q.account_id, q.bucket, q.category, q.item, 0 FROM floor_quantities q \
             WHERE q.bucket = 'account' AND q.quantity <> 0 AND NOT EXISTS (SELECT 1 FROM floor_counts n \
                 WHERE n.account_id = q.account_id AND n.category = q.category AND n.item = q.item) \
             UNION ALL \
             SELECT q.account_id, q.bucket, q.category, q.item, 0 FROM floor_quantities q \
             WHERE q.bucket = 'cascade' AND q.quantity <> 0 AND NOT EXISTS (SELECT 1 FROM floor_cascade n \
                 WHERE n.account_id = q.account_id AND n.category = q.category AND n.item = q.item); \
         INSERT INTO floor_quantities (account_id, bucket, category, item, quantity) \
             SELECT account_id, bucket, category, item, quantity FROM floor_diff WHERE quantity <> 0 \
             ON CONFLICT (account_id, bucket, category, item) DO UPDATE SET quantity = excluded.quantity; \
         DELETE FROM floor_quantities WHERE (account_id, bucket, category, item) IN \
             (SELECT account_id, bucket, category, item FROM floor_diff WHERE quantity = 0);",
        union = union.join(" UNION ALL ")
    )
}

/// The floor starts from exactly what reconcile will start from.
const COPY_STORED: &str = "DELETE FROM floor_quantities; \
     INSERT INTO floor_quantities SELECT account_id, bucket, category, item, quantity FROM service_quantities;";

const CHURN: &str = "UPDATE devices SET enabled = NOT enabled WHERE id LIKE '%13'; \
     UPDATE users SET deleted = TRUE WHERE id LIKE '%42'; \
     UPDATE phone_numbers SET enabled = FALSE WHERE id LIKE '%77'; \
     UPDATE accounts SET deleted = TRUE WHERE name LIKE '%99';";

struct Row {
    scenario: &'static str,
    floor: Duration,
    reconcile: Duration,
    accounts_changed: u64,
    items_changed: u64,
}

async fn bench_backend(store: &Store, objects: u64) -> Vec<Row> {
    let counting = CountingQueries::builtin();
    let floor = floor_script(store.backend(), &counting);
    store
        .execute_script(
            "CREATE TABLE IF NOT EXISTS floor_quantities (account_id TEXT NOT NULL, bucket TEXT NOT NULL, \
             category TEXT NOT NULL, item TEXT NOT NULL, quantity BIGINT NOT NULL, \
             PRIMARY KEY (account_id, bucket, category, item))",
        )
        .await
        .expect("floor table");
    let mut rows = Vec::new();
    for (index, scenario) in ["first run", "re-run, no change", "nightly churn"]
        .into_iter()
        .enumerate()
    {
        if index == 2 {
            store.execute_script(CHURN).await.expect("churn");
        }
        store.execute_script(COPY_STORED).await.expect("copy for the floor");
        let started = Instant::now();
        store.execute_script(&floor).await.expect("floor runs");
        let floor_time = started.elapsed();

        let options = ReconcileOptions {
            scope: ReconcileScope::All,
            dry_run: false,
            now: GregorianSeconds(NOW + i64::try_from(index).expect("small") * 3_600),
            batch_size: 500,
            classifiers: None,
        };
        let report = run_once(store, &counting, &options).await.expect("reconcile runs");
        rows.push(Row {
            scenario,
            floor: floor_time,
            reconcile: report.duration,
            accounts_changed: report.accounts_changed,
            items_changed: report.items_changed,
        });
        let row = rows.last().expect("just pushed");
        println!(
            "  {:<18} floor {:>8.2} s   reconcile {:>8.2} s   ratio {:>5.2}   {:>10.0} objects/s   {} accounts / {} items changed",
            row.scenario,
            row.floor.as_secs_f64(),
            row.reconcile.as_secs_f64(),
            row.reconcile.as_secs_f64() / row.floor.as_secs_f64().max(1e-9),
            objects as f64 / row.reconcile.as_secs_f64().max(1e-9),
            row.accounts_changed,
            row.items_changed,
        );
    }
    rows
}

async fn seeded(store: &Store, accounts: u64) -> u64 {
    let spec = DemoSpec { accounts, seed: 1 };
    let started = Instant::now();
    // Loaded through the ingestion core, as `tally demo` loads it.
    let report = load(
        store,
        NumberClassifiers::kazoo_defaults(),
        spec,
        GregorianSeconds(NOW - 1_000),
        DEMO_BATCH_SIZE,
    )
    .await
    .expect("the demo loads");
    assert_eq!(report.ingest.rejected, 0, "the demo's documents are all accepted");
    println!(
        "  seeded {} accounts, {} objects ({} documents through ingestion) in {:.1} s",
        report.accounts,
        report.objects,
        report.documents,
        started.elapsed().as_secs_f64()
    );
    println!(
        "  peak memory after seeding (VmHWM): {} MiB",
        peak_memory_kib().unwrap_or(0) / 1024
    );
    report.objects
}

fn main() {
    // RUST_LOG=tally=debug shows the time of every reconcile statement.
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_writer(std::io::stderr)
        .init();
    let accounts: u64 = std::env::var("TALLY_BENCH_ACCOUNTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000);
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    runtime.block_on(async {
        for backend in support::backends("postgres,sqlite") {
            let Some(database) = BenchDatabase::create(&backend, "reconcile").await else {
                continue;
            };
            println!("{backend} ({accounts} accounts):");
            let store = Store::open(&database.url).await.expect("opens");
            let objects = seeded(&store, accounts).await;
            bench_backend(&store, objects).await;
            store.close().await;
            database.remove().await;
            println!(
                "  peak memory of this process so far (VmHWM): {} MiB",
                peak_memory_kib().unwrap_or(0) / 1024
            );
        }
    });
}
