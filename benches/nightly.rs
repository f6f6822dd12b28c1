//! Nightly billing benchmark (issue 13): the demo platform loaded through the
//! production path (`jobs::demo::load`, the ingestion core), then the three stages of a
//! billing run, each timed on its own, in three scenarios:
//!
//! * **first run**: nothing reconciled or priced yet;
//! * **no change**: the same run again, nothing changed;
//! * **1 % churn**: every 100th account (by id) has its devices' and numbers'
//!   `enabled` flipped by SQL, then the run.
//!
//! The stages are those `tally run billing` runs, with the options `JobContext`
//! builds from default settings (`billing_options`): reconcile (the nightly's
//! incremental scope: everything on the first run, only the marked accounts after),
//! sync (the marked accounts), bookkeeper-sync against the loopback HTTP bookkeeper of
//! `--demo` (127.0.0.1, port 0, answers 200 at once). Each stage prints its time,
//! rows/s (reconcile: inventory objects; sync: accounts scanned; bookkeeper-sync:
//! deliveries), and this process's peak memory during the stage (VmHWM of
//! /proc/self/status, reset through /proc/self/clear_refs before the stage, after
//! glibc's `malloc_trim` has handed back the heap's free pages; the
//! PostgreSQL server's own memory is not in it). Reconcile also prints the time of
//! each of its statements, collected from the store's `reconcile statement` debug
//! events by a small tracing layer.
//!
//! The **floor** is the same reconcile work as the best plain SQL, measured in the same
//! run on the same database, on its own connection, opened for each scenario and closed
//! before tally's reconcile (so the floor's SQLite caches are not in the stages' peak
//! memory; what the process still holds is the "from" of each stage's line): account
//! counts straight from the inventory tables (the semantics of `sql/counting/`, without
//! the scope table), the cascade over the ancestor closure, a diff against the stored
//! quantities first, then an upsert and a delete of only the changed rows, in one
//! transaction (PostgreSQL: `work_mem` 256 MB). It writes to `floor_quantities`, a copy
//! of `service_quantities` taken (untimed) before each scenario; after tally's
//! reconcile the bench asserts that both tables hold the same account and cascade
//! rows and that the floor's diff had as many rows as reconcile's `items_changed`.
//! The floor writes no change records, day summaries or dirty flags (tally does).
//! On the nights after the first, tally recounts only the accounts marked since, so
//! the floor does the same work over those accounts only (`incremental_floor_steps`).
//!
//! Run: `cargo bench --bench nightly` (10 000 accounts, ~1 M objects, both backends);
//! `TALLY_BENCH_ACCOUNTS=10000,100000` for several sizes; `TALLY_BENCH_BACKENDS=postgres`
//! (or `sqlite`); `TALLY_BENCH_POSTGRES` (default
//! postgres://postgres@127.0.0.1:5432/postgres); `TALLY_BENCH_KEEP=1` keeps the
//! PostgreSQL database (for `EXPLAIN ANALYZE`) and names it; `TALLY_BENCH_REUSE=1`
//! keeps each loaded demo (a PostgreSQL template database, a SQLite file under
//! `target/tmp/bench-demos/`, keyed by size, seed and a fingerprint of the migrations
//! and demo sources) and copies it on the next run instead of loading it again
//! (`support/saved_demo.rs`); the bench names what it kept.

mod support;

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};
use support::floor::FloorConnection;
use support::saved_demo::{prepare_demo, saved_demo_note, PreparedDemo};
use support::{peak_memory_kib, release_free_memory, reset_peak_memory, resident_memory_kib};
use tally::bookkeepers::demo::DemoBookkeeper;
use tally::config::{DatabaseUrl, Settings};
use tally::domain::summary::GregorianSeconds;
use tally::jobs::context::{JobContext, RunScope};
use tally::jobs::{bookkeeper_sync, reconcile, sync};
use tally::store::{Backend, CountingQueries, Store};
use tokio_util::sync::CancellationToken;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::Layer;

const DAY: i64 = 86_400;

// ---------------------------------------------------------------------------------
// Reconcile statement times, from the store's debug events

/// One `reconcile statement` event: its step and milliseconds (and the batch split).
#[derive(Default)]
struct StatementEvent {
    step: String,
    elapsed_ms: u64,
    detail: String,
}

static STATEMENTS: Mutex<Vec<StatementEvent>> = Mutex::new(Vec::new());

struct StatementVisitor<'a>(&'a mut StatementEvent);

impl tracing::field::Visit for StatementVisitor<'_> {
    fn record_str(&mut self, field: &tracing::field::Field, value: &str) {
        if field.name() == "step" {
            self.0.step = value.to_owned();
        }
    }

    fn record_u64(&mut self, field: &tracing::field::Field, value: u64) {
        if field.name() == "elapsed_ms" {
            self.0.elapsed_ms = value;
        }
    }

    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        match field.name() {
            "step" => self.0.step = format!("{value:?}").trim_matches('"').to_owned(),
            "per_statement_ms" => self.0.detail = format!("{value:?}"),
            _ => {}
        }
    }
}

/// Collects the store's `reconcile statement` events into [`STATEMENTS`].
struct StatementTimes;

impl<S: tracing::Subscriber> Layer<S> for StatementTimes {
    fn on_event(&self, event: &tracing::Event<'_>, _context: tracing_subscriber::layer::Context<'_, S>) {
        if event.metadata().target() != "tally::store::reconcile" {
            return;
        }
        let mut statement = StatementEvent::default();
        event.record(&mut StatementVisitor(&mut statement));
        if !statement.step.is_empty() {
            STATEMENTS.lock().expect("not poisoned").push(statement);
        }
    }
}

fn take_statements() -> Vec<StatementEvent> {
    std::mem::take(&mut *STATEMENTS.lock().expect("not poisoned"))
}

// ---------------------------------------------------------------------------------
// The floor

/// The counting queries' semantics (`sql/counting/`, `quantities.md` §1, §3) straight
/// from the inventory tables: every account the demo has is reachable, so no scope.
const FLOOR_COUNTS: &str = "\
SELECT account_id, category, item, CAST(SUM(quantity) AS BIGINT) AS quantity FROM (
  SELECT id AS account_id, 'accounts' AS category, 'account' AS item, 1 AS quantity
    FROM accounts WHERE enabled AND NOT deleted
  UNION ALL SELECT account_id, 'users', priv_level, COUNT(*)
    FROM users WHERE enabled AND NOT deleted GROUP BY account_id, priv_level
  UNION ALL SELECT account_id, 'qubicle', COALESCE(qubicle_offering, 'basic') || '_recipient', COUNT(*)
    FROM users WHERE enabled AND NOT deleted AND qubicle_enabled
    GROUP BY account_id, COALESCE(qubicle_offering, 'basic')
  UNION ALL SELECT account_id, 'devices', COALESCE(device_type, 'sip_device'), COUNT(*)
    FROM devices WHERE enabled AND NOT deleted GROUP BY account_id, COALESCE(device_type, 'sip_device')
  UNION ALL SELECT account_id, 'voicemails', 'mailbox', COUNT(*)
    FROM vmboxes WHERE enabled AND NOT deleted GROUP BY account_id
  UNION ALL SELECT account_id, 'voicemails', 'transcription', COUNT(*)
    FROM vmboxes WHERE enabled AND NOT deleted AND transcribe GROUP BY account_id
  UNION ALL SELECT account_id, 'faxes', 'mailbox', COUNT(*)
    FROM faxboxes WHERE enabled AND NOT deleted GROUP BY account_id
  UNION ALL SELECT account_id, 'conferences', 'conference', COUNT(*)
    FROM conferences WHERE enabled AND NOT deleted GROUP BY account_id
  UNION ALL SELECT account_id, 'qubicle', COALESCE(offering, 'basic') || '_queue', COUNT(*)
    FROM qubicle_queues WHERE enabled AND NOT deleted GROUP BY account_id, COALESCE(offering, 'basic')
  UNION ALL SELECT account_id, 'limits', 'twoway_trunks', twoway_trunks
    FROM trunk_limits WHERE enabled AND NOT deleted AND twoway_trunks > 0
  UNION ALL SELECT account_id, 'limits', 'inbound_trunks', inbound_trunks
    FROM trunk_limits WHERE enabled AND NOT deleted AND inbound_trunks > 0
  UNION ALL SELECT account_id, 'limits', 'outbound_trunks', outbound_trunks
    FROM trunk_limits WHERE enabled AND NOT deleted AND outbound_trunks > 0
  UNION ALL SELECT account_id, 'branding', 'whitelabel', 1
    FROM whitelabels WHERE enabled AND NOT deleted
  UNION ALL SELECT account_id, 'ips', 'dedicated', COUNT(*)
    FROM dedicated_ips WHERE enabled AND NOT deleted GROUP BY account_id
  UNION ALL SELECT p.account_id, 'account_apps', p.name, COUNT(*)
    FROM app_store_apps p JOIN app_stores st ON st.account_id = p.account_id
    WHERE st.enabled AND NOT st.deleted AND NOT p.blacklisted GROUP BY p.account_id, p.name
  UNION ALL SELECT p.account_id, 'user_apps', p.name,
      SUM(CASE p.allowed_users WHEN 'all' THEN COALESCE(uc.users, 0) WHEN 'admins' THEN COALESCE(uc.admins, 0)
                               WHEN 'specific' THEN p.specific_users ELSE 0 END)
    FROM app_store_apps p JOIN app_stores st ON st.account_id = p.account_id
    LEFT JOIN (SELECT account_id, COUNT(*) AS users, SUM(CASE WHEN priv_level = 'admin' THEN 1 ELSE 0 END) AS admins
               FROM users WHERE enabled AND NOT deleted GROUP BY account_id) uc ON uc.account_id = p.account_id
    WHERE st.enabled AND NOT st.deleted AND NOT p.blacklisted GROUP BY p.account_id, p.name
  UNION ALL SELECT account_id, 'number_carriers', carrier_module, COUNT(*)
    FROM phone_numbers WHERE enabled AND NOT deleted GROUP BY account_id, carrier_module
  UNION ALL SELECT n.account_id, 'number_services', f.feature, COUNT(*)
    FROM phone_numbers n JOIN phone_number_features f ON f.number_id = n.id
    WHERE n.enabled AND NOT n.deleted GROUP BY n.account_id, f.feature
  UNION ALL SELECT n.account_id, 'phone_numbers', n.classification, COUNT(*)
    FROM phone_numbers n
    WHERE n.enabled AND NOT n.deleted AND n.classification IS NOT NULL
      AND NOT EXISTS (SELECT 1 FROM phone_number_features f WHERE f.number_id = n.id AND f.feature = 'local')
    GROUP BY n.account_id, n.classification
  UNION ALL SELECT account_id, 'port_request', COALESCE(port_state, 'unconfirmed'), SUM(number_count)
    FROM port_requests WHERE enabled AND NOT deleted GROUP BY account_id, COALESCE(port_state, 'unconfirmed')
  UNION ALL SELECT p.account_id, 'port_request', 'first_' || COALESCE(p.port_state, 'unconfirmed'), SUM(p.number_count)
    FROM port_requests p
    WHERE p.enabled AND NOT p.deleted
      AND (SELECT COUNT(*) FROM port_request_transitions t WHERE t.port_request_id = p.id
           AND COALESCE(t.new_state, 'unconfirmed') = COALESCE(p.port_state, 'unconfirmed')) = 1
    GROUP BY p.account_id, COALESCE(p.port_state, 'unconfirmed')
) counted GROUP BY account_id, category, item HAVING SUM(quantity) <> 0";

/// The floor's steps, one statement each, as (label, SQL).
fn floor_steps(backend: Backend) -> Vec<(&'static str, String)> {
    let closure = "CREATE TEMP TABLE floor_closure AS WITH RECURSIVE up(account_id, ancestor_id) AS ( \
         SELECT id, parent_id FROM accounts WHERE parent_id IS NOT NULL \
         UNION ALL SELECT up.account_id, p.parent_id FROM up JOIN accounts p ON p.id = up.ancestor_id \
         WHERE p.parent_id IS NOT NULL) SELECT account_id, ancestor_id FROM up"
        .to_owned();
    let counts = format!("CREATE TEMP TABLE floor_counts AS {FLOOR_COUNTS}");
    let new_rows = "SELECT account_id, 'account', category, item, quantity FROM floor_counts \
         UNION ALL \
         SELECT c.ancestor_id, 'cascade', n.category, n.item, CAST(SUM(n.quantity) AS BIGINT) \
         FROM floor_counts n JOIN floor_closure c ON c.account_id = n.account_id \
         JOIN accounts d ON d.id = n.account_id \
         WHERE n.quantity >= 1 AND NOT d.deleted GROUP BY c.ancestor_id, n.category, n.item";
    let diff = "CREATE TEMP TABLE floor_diff AS \
         SELECT n.account_id, n.bucket, n.category, n.item, n.quantity FROM floor_new n \
         LEFT JOIN floor_quantities q ON q.account_id = n.account_id AND q.bucket = n.bucket \
           AND q.category = n.category AND q.item = n.item \
         WHERE q.quantity IS NULL OR q.quantity <> n.quantity \
         UNION ALL \
         SELECT q.account_id, q.bucket, q.category, q.item, 0 FROM floor_quantities q \
         WHERE q.bucket <> 'manual' AND q.quantity <> 0 AND NOT EXISTS (SELECT 1 FROM floor_new n \
           WHERE n.account_id = q.account_id AND n.bucket = q.bucket AND n.category = q.category AND n.item = q.item)"
        .to_owned();
    let upsert = "INSERT INTO floor_quantities (account_id, bucket, category, item, quantity) \
         SELECT account_id, bucket, category, item, quantity FROM floor_diff WHERE quantity <> 0 \
         ORDER BY account_id, bucket, category, item \
         ON CONFLICT (account_id, bucket, category, item) DO UPDATE SET quantity = excluded.quantity"
        .to_owned();
    let delete = "DELETE FROM floor_quantities WHERE (account_id, bucket, category, item) IN \
         (SELECT account_id, bucket, category, item FROM floor_diff WHERE quantity = 0)"
        .to_owned();
    // One hash join both ways: changed, new and removed rows in one pass.
    let full_diff = "CREATE TEMP TABLE floor_diff AS \
         SELECT COALESCE(n.account_id, q.account_id) AS account_id, COALESCE(n.bucket, q.bucket) AS bucket, \
                COALESCE(n.category, q.category) AS category, COALESCE(n.item, q.item) AS item, \
                COALESCE(n.quantity, 0) AS quantity \
         FROM floor_new n FULL JOIN \
              (SELECT account_id, bucket, category, item, quantity FROM floor_quantities WHERE bucket <> 'manual') q \
           ON q.account_id = n.account_id AND q.bucket = n.bucket AND q.category = n.category AND q.item = n.item \
         WHERE (n.quantity IS NULL AND q.quantity <> 0) OR q.quantity IS NULL OR n.quantity <> q.quantity"
        .to_owned();
    match backend {
        // Temporary tables are never analysed by autovacuum: each gets its statistics.
        Backend::Postgres => vec![
            ("closure", closure),
            ("analyze", "ANALYZE floor_closure".to_owned()),
            ("counts", counts),
            ("analyze", "ANALYZE floor_counts".to_owned()),
            (
                "cascade (new rows)",
                format!("CREATE TEMP TABLE floor_new (account_id, bucket, category, item, quantity) AS {new_rows}"),
            ),
            ("analyze", "ANALYZE floor_new".to_owned()),
            ("diff", full_diff),
            ("write changed rows", upsert),
            ("delete removed rows", delete),
        ],
        // No hash joins: the anti-join and the lookups need keys.
        Backend::Sqlite => vec![
            ("closure", closure),
            ("counts", counts),
            (
                "cascade (new rows)",
                "CREATE TEMP TABLE floor_new (account_id TEXT NOT NULL, bucket TEXT NOT NULL, \
                 category TEXT NOT NULL, item TEXT NOT NULL, quantity BIGINT NOT NULL, \
                 PRIMARY KEY (account_id, bucket, category, item)) WITHOUT ROWID"
                    .to_owned(),
            ),
            (
                "cascade (new rows)",
                format!("INSERT INTO floor_new (account_id, bucket, category, item, quantity) {new_rows}"),
            ),
            ("diff", diff),
            ("write changed rows", upsert),
            ("delete removed rows", delete),
        ],
    }
}

/// The floor of a night after the first (`no change`, `1 % churn`), where tally's
/// nightly recounts only the marked accounts (`ReconcileScope::Incremental`): the same
/// work as plain SQL over those accounts only. Their ancestors (walked up from the
/// marks, not the whole tree), their counts (the counting queries, which join a scope
/// table), the stored cascades of those ancestors plus the accounts' differences, a
/// diff of only those rows, then the writes.
fn incremental_floor_steps(backend: Backend, counting: &CountingQueries) -> Vec<(&'static str, String)> {
    let union: Vec<String> = counting
        .iter()
        .map(|query| format!("SELECT account_id, category, item, quantity FROM ({}) q", query.sql))
        .collect();
    let counts = format!(
        "CREATE TEMP TABLE floor_counts AS SELECT account_id, category, item, CAST(SUM(quantity) AS BIGINT) AS quantity \
         FROM ({}) counted GROUP BY account_id, category, item HAVING SUM(quantity) <> 0",
        union.join(" UNION ALL ")
    );
    let new_rows = "SELECT account_id, 'account', category, item, quantity FROM floor_counts \
         UNION ALL \
         SELECT account_id, 'cascade', category, item, CAST(SUM(quantity) AS BIGINT) FROM ( \
             SELECT q.account_id, q.category, q.item, q.quantity FROM floor_quantities q \
             JOIN floor_cascade_scope cs ON cs.account_id = q.account_id WHERE q.bucket = 'cascade' \
             UNION ALL \
             SELECT c.ancestor_id, n.category, n.item, n.quantity FROM floor_counts n \
             JOIN floor_closure c ON c.account_id = n.account_id JOIN accounts d ON d.id = n.account_id \
             WHERE n.quantity >= 1 AND NOT d.deleted \
             UNION ALL \
             SELECT c.ancestor_id, q.category, q.item, -q.quantity FROM floor_quantities q \
             JOIN reconcile_scope s ON s.account_id = q.account_id \
             JOIN floor_closure c ON c.account_id = q.account_id JOIN accounts d ON d.id = q.account_id \
             WHERE q.bucket = 'account' AND q.quantity >= 1 AND NOT d.deleted) delta \
         GROUP BY account_id, category, item HAVING SUM(quantity) <> 0";
    let diff = "CREATE TEMP TABLE floor_diff AS \
         SELECT n.account_id, n.bucket, n.category, n.item, n.quantity FROM floor_new n \
         LEFT JOIN floor_quantities q ON q.account_id = n.account_id AND q.bucket = n.bucket \
           AND q.category = n.category AND q.item = n.item \
         WHERE q.quantity IS NULL OR q.quantity <> n.quantity \
         UNION ALL \
         SELECT q.account_id, q.bucket, q.category, q.item, 0 FROM floor_quantities q \
         JOIN reconcile_scope s ON s.account_id = q.account_id \
         WHERE q.bucket = 'account' AND q.quantity <> 0 AND NOT EXISTS (SELECT 1 FROM floor_new n \
           WHERE n.account_id = q.account_id AND n.bucket = q.bucket AND n.category = q.category AND n.item = q.item) \
         UNION ALL \
         SELECT q.account_id, q.bucket, q.category, q.item, 0 FROM floor_quantities q \
         JOIN floor_cascade_scope s ON s.account_id = q.account_id \
         WHERE q.bucket = 'cascade' AND q.quantity <> 0 AND NOT EXISTS (SELECT 1 FROM floor_new n \
           WHERE n.account_id = q.account_id AND n.bucket = q.bucket AND n.category = q.category AND n.item = q.item)"
        .to_owned();
    let (upsert, delete) = floor_writes();
    let mut steps = vec![
        (
            "scope",
            "CREATE TEMP TABLE reconcile_scope (account_id TEXT PRIMARY KEY)".to_owned(),
        ),
        (
            "scope",
            "INSERT INTO reconcile_scope (account_id) SELECT account_id FROM reconcile_marks".to_owned(),
        ),
        (
            "closure",
            "CREATE TEMP TABLE floor_closure AS WITH RECURSIVE up(account_id, ancestor_id) AS ( \
             SELECT a.id, a.parent_id FROM accounts a JOIN reconcile_scope s ON s.account_id = a.id \
             WHERE a.parent_id IS NOT NULL \
             UNION ALL SELECT up.account_id, p.parent_id FROM up JOIN accounts p ON p.id = up.ancestor_id \
             WHERE p.parent_id IS NOT NULL) SELECT account_id, ancestor_id FROM up"
                .to_owned(),
        ),
        (
            "closure",
            "CREATE TEMP TABLE floor_cascade_scope (account_id TEXT PRIMARY KEY)".to_owned(),
        ),
        (
            "closure",
            "INSERT INTO floor_cascade_scope (account_id) SELECT account_id FROM reconcile_scope \
             UNION SELECT ancestor_id FROM floor_closure"
                .to_owned(),
        ),
    ];
    if backend == Backend::Postgres {
        steps.push((
            "analyze",
            "ANALYZE reconcile_scope, floor_closure, floor_cascade_scope".to_owned(),
        ));
    }
    steps.push(("counts", counts));
    match backend {
        Backend::Postgres => {
            steps.push(("analyze", "ANALYZE floor_counts".to_owned()));
            steps.push((
                "cascade (new rows)",
                format!("CREATE TEMP TABLE floor_new (account_id, bucket, category, item, quantity) AS {new_rows}"),
            ));
            steps.push(("analyze", "ANALYZE floor_new".to_owned()));
        }
        Backend::Sqlite => {
            steps.push((
                "cascade (new rows)",
                "CREATE TEMP TABLE floor_new (account_id TEXT NOT NULL, bucket TEXT NOT NULL, \
                 category TEXT NOT NULL, item TEXT NOT NULL, quantity BIGINT NOT NULL, \
                 PRIMARY KEY (account_id, bucket, category, item)) WITHOUT ROWID"
                    .to_owned(),
            ));
            steps.push((
                "cascade (new rows)",
                format!("INSERT INTO floor_new (account_id, bucket, category, item, quantity) {new_rows}"),
            ));
        }
    }
    steps.push(("diff", diff));
    steps.push(("write changed rows", upsert));
    steps.push(("delete removed rows", delete));
    steps
}

/// The floor's writes: an upsert of the changed rows in key order, a delete of the
/// removed ones.
fn floor_writes() -> (String, String) {
    (
        "INSERT INTO floor_quantities (account_id, bucket, category, item, quantity) \
         SELECT account_id, bucket, category, item, quantity FROM floor_diff WHERE quantity <> 0 \
         ORDER BY account_id, bucket, category, item \
         ON CONFLICT (account_id, bucket, category, item) DO UPDATE SET quantity = excluded.quantity"
            .to_owned(),
        "DELETE FROM floor_quantities WHERE (account_id, bucket, category, item) IN \
         (SELECT account_id, bucket, category, item FROM floor_diff WHERE quantity = 0)"
            .to_owned(),
    )
}

struct FloorRun {
    total: Duration,
    steps: Vec<(&'static str, Duration)>,
    diff_rows: i64,
}

/// Copies the stored quantities for the floor (untimed), then runs the floor's steps in
/// one transaction, each timed.
async fn run_floor(
    connection: &mut FloorConnection,
    backend: Backend,
    floor_steps: Vec<(&'static str, String)>,
) -> FloorRun {
    connection
        .execute(
            "DROP TABLE IF EXISTS floor_closure; DROP TABLE IF EXISTS floor_counts; \
             DROP TABLE IF EXISTS floor_new; DROP TABLE IF EXISTS floor_diff; \
             DROP TABLE IF EXISTS reconcile_scope; DROP TABLE IF EXISTS floor_cascade_scope; \
             DELETE FROM floor_quantities; \
             INSERT INTO floor_quantities SELECT account_id, bucket, category, item, quantity FROM service_quantities",
        )
        .await;
    if backend == Backend::Postgres {
        connection.execute("VACUUM ANALYZE floor_quantities").await;
    }
    let started = Instant::now();
    let mut steps: Vec<(&'static str, Duration)> = Vec::new();
    connection.execute("BEGIN").await;
    for (label, sql) in floor_steps {
        let step = Instant::now();
        connection.execute(&sql).await;
        match steps.iter_mut().find(|(name, _)| *name == label) {
            Some((_, spent)) => *spent += step.elapsed(),
            None => steps.push((label, step.elapsed())),
        }
    }
    let step = Instant::now();
    connection.execute("COMMIT").await;
    steps.push(("commit", step.elapsed()));
    let total = started.elapsed();
    let diff_rows = connection.count("SELECT COUNT(*) FROM floor_diff").await;
    FloorRun {
        total,
        steps,
        diff_rows,
    }
}

/// Rows of the account and cascade buckets that differ between the floor's table and
/// tally's.
async fn floor_mismatches(store: &Store) -> i64 {
    let columns = "account_id, bucket, category, item, quantity";
    store
        .query_count(&format!(
            "SELECT COUNT(*) FROM ( \
               SELECT * FROM (SELECT {columns} FROM floor_quantities WHERE bucket <> 'manual' \
                 EXCEPT SELECT {columns} FROM service_quantities WHERE bucket <> 'manual') a \
               UNION ALL \
               SELECT * FROM (SELECT {columns} FROM service_quantities WHERE bucket <> 'manual' \
                 EXCEPT SELECT {columns} FROM floor_quantities WHERE bucket <> 'manual') b) d"
        ))
        .await
        .expect("compares")
}

// ---------------------------------------------------------------------------------
// The stages

/// One stage's figures.
#[derive(Clone, Copy)]
struct StageTime {
    elapsed: Duration,
    rows: u64,
    peak_kib: Option<u64>,
    /// Resident size when the stage started (what the process held before it).
    start_kib: Option<u64>,
}

impl StageTime {
    fn rate(&self) -> f64 {
        self.rows as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

struct ScenarioRow {
    scenario: &'static str,
    floor: Duration,
    reconcile: StageTime,
    sync: StageTime,
    deliveries: StageTime,
    accounts_changed: u64,
    items_changed: u64,
    invoices_changed: usize,
}

/// The work's value, time, peak resident size and resident size at its start.
async fn timed<T, F: std::future::Future<Output = T>>(work: F) -> (T, Duration, Option<u64>, Option<u64>) {
    release_free_memory();
    let reset = reset_peak_memory();
    let start_kib = resident_memory_kib();
    let started = Instant::now();
    let value = work.await;
    let elapsed = started.elapsed();
    (value, elapsed, if reset { peak_memory_kib() } else { None }, start_kib)
}

fn memory(peak_kib: Option<u64>) -> String {
    peak_kib.map_or_else(|| "n/a".to_owned(), |kib| format!("{} MiB", kib / 1024))
}

/// A stage's peak and, in brackets, the resident size it started from.
fn stage_memory(stage: &StageTime) -> String {
    format!("{} (from {})", memory(stage.peak_kib), memory(stage.start_kib))
}

/// Every 100th account by id: its devices and numbers switch `enabled`.
const CHURN: &str = "\
CREATE TEMP TABLE churned AS SELECT id FROM (SELECT id, ROW_NUMBER() OVER (ORDER BY id) AS n FROM accounts) a \
  WHERE n % 100 = 0; \
UPDATE devices SET enabled = NOT enabled WHERE account_id IN (SELECT id FROM churned); \
UPDATE phone_numbers SET enabled = NOT enabled WHERE account_id IN (SELECT id FROM churned); \
DROP TABLE churned;";

async fn scenarios(store: &Store, url: &DatabaseUrl, objects: u64, start: GregorianSeconds) -> Vec<ScenarioRow> {
    let backend = store.backend();
    let bookkeeper = DemoBookkeeper::start().await.expect("the loopback bookkeeper listens");
    let mut settings = Settings::default();
    settings.database.url = url.clone();
    settings.bookkeepers.http.http_url = bookkeeper.url();
    let context = JobContext::new(store.clone(), settings).expect("default settings make a context");
    store
        .execute_script(
            "CREATE TABLE IF NOT EXISTS floor_quantities (account_id TEXT NOT NULL, bucket TEXT NOT NULL, \
             category TEXT NOT NULL, item TEXT NOT NULL, quantity BIGINT NOT NULL, \
             PRIMARY KEY (account_id, bucket, category, item))",
        )
        .await
        .expect("the floor's table");
    let mut rows = Vec::new();
    for (index, scenario) in ["first run", "no change", "1 % churn"].into_iter().enumerate() {
        if index == 2 {
            let started = Instant::now();
            store.execute_script(CHURN).await.expect("churn");
            let churned = store
                .query_count("SELECT COUNT(*) FROM (SELECT id FROM accounts) a")
                .await
                .expect("counts")
                / 100;
            println!(
                "  churn: devices and numbers of {churned} accounts switched in {:.2} s",
                started.elapsed().as_secs_f64()
            );
        }
        let now = GregorianSeconds(start.0 + i64::try_from(index).expect("small") * DAY);
        let options = context.billing_options(&RunScope::default(), now, CancellationToken::new());

        // The first run recounts everything (the demo's accounts are new); the later
        // nights only the marked accounts, and so does their floor.
        let steps = match index {
            0 => floor_steps(backend),
            _ => incremental_floor_steps(backend, &context.counting),
        };
        // The floor's connection is closed before tally's stages, so its page cache
        // and sorters (SQLite's are in this process) are not in their peak memory.
        let mut floor_connection = FloorConnection::open(backend, url).await;
        if backend == Backend::Postgres {
            // Sorts and hashes of a million rows in memory.
            floor_connection.execute("SET work_mem = '256MB'").await;
        }
        let floor = run_floor(&mut floor_connection, backend, steps).await;
        floor_connection.close().await;

        take_statements();
        let (reconciled, elapsed, peak_kib, start_kib) =
            timed(reconcile::run_once(store, &context.counting, &options.reconcile)).await;
        let reconciled = reconciled.expect("reconcile runs");
        assert_eq!(
            reconciled.full_recount.is_some(),
            index == 0,
            "{scenario}: full recount {:?}",
            reconciled.full_recount
        );
        let statements = take_statements();
        assert!(reconciled.skipped.is_empty(), "{:?}", reconciled.skipped);
        let reconcile_time = StageTime {
            elapsed,
            rows: objects,
            peak_kib,
            start_kib,
        };
        let mismatches = floor_mismatches(store).await;
        assert_eq!(
            mismatches, 0,
            "{scenario}: the floor and reconcile stored different quantities"
        );
        assert_eq!(
            u64::try_from(floor.diff_rows).expect("a count"),
            reconciled.items_changed,
            "{scenario}: the floor changed as many rows as reconcile"
        );

        let (synced, elapsed, peak_kib, start_kib) = timed(sync::run_once(store, &options.sync)).await;
        let synced = synced.expect("sync runs");
        assert!(synced.skipped.is_empty(), "{:?}", synced.skipped);
        let sync_time = StageTime {
            elapsed,
            rows: u64::try_from(synced.accounts_scanned).expect("fits"),
            peak_kib,
            start_kib,
        };

        let received_before = bookkeeper.received();
        let (delivered, elapsed, peak_kib, start_kib) = timed(bookkeeper_sync::run_once(
            store,
            &context.bookkeepers,
            &options.bookkeeper_sync,
        ))
        .await;
        let delivered = delivered.expect("bookkeeper-sync runs");
        assert!(delivered.failed.is_empty(), "{:?}", delivered.failed);
        let deliveries_time = StageTime {
            elapsed,
            rows: u64::try_from(delivered.deliveries).expect("fits"),
            peak_kib,
            start_kib,
        };

        println!("  {scenario}:");
        println!(
            "    floor            {:>8.2} s   {:>10.0} objects/s   ({} rows changed)",
            floor.total.as_secs_f64(),
            objects as f64 / floor.total.as_secs_f64().max(1e-9),
            floor.diff_rows
        );
        for (label, spent) in &floor.steps {
            println!("      {label:<34} {:>8.3} s", spent.as_secs_f64());
        }
        println!(
            "    reconcile        {:>8.2} s   {:>10.0} objects/s   ratio to floor {:>5.2}   peak {}   ({} accounts scanned, {} changed, {} items)",
            reconcile_time.elapsed.as_secs_f64(),
            reconcile_time.rate(),
            reconcile_time.elapsed.as_secs_f64() / floor.total.as_secs_f64().max(1e-9),
            stage_memory(&reconcile_time),
            reconciled.accounts_scanned,
            reconciled.accounts_changed,
            reconciled.items_changed
        );
        print_statements(&statements, reconcile_time.elapsed);
        println!(
            "    sync             {:>8.2} s   {:>10.0} accounts/s   peak {}   ({} scanned, {} changed, {} invoices changed, {} plan sets)",
            sync_time.elapsed.as_secs_f64(),
            sync_time.rate(),
            stage_memory(&sync_time),
            synced.accounts_scanned,
            synced.accounts_changed,
            synced.invoices_changed,
            synced.plan_sets
        );
        println!(
            "    bookkeeper-sync  {:>8.2} s   {:>10.0} deliveries/s   peak {}   ({} deliveries, {} acknowledged, {} received by the loopback bookkeeper, {} awaiting configuration, {} pending)",
            deliveries_time.elapsed.as_secs_f64(),
            deliveries_time.rate(),
            stage_memory(&deliveries_time),
            delivered.deliveries,
            delivered.acknowledged,
            bookkeeper.received() - received_before,
            delivered.awaiting_configuration,
            delivered.pending.total()
        );
        rows.push(ScenarioRow {
            scenario,
            floor: floor.total,
            reconcile: reconcile_time,
            sync: sync_time,
            deliveries: deliveries_time,
            accounts_changed: reconciled.accounts_changed,
            items_changed: reconciled.items_changed,
            invoices_changed: synced.invoices_changed,
        });
    }
    store
        .execute_script("DROP TABLE floor_quantities")
        .await
        .expect("drops the floor's table");
    rows
}

/// Reconcile's statements summed by step, slowest first, and what no event covered.
fn print_statements(statements: &[StatementEvent], total: Duration) {
    let mut by_step: BTreeMap<&str, (u64, usize, Vec<&str>)> = BTreeMap::new();
    for statement in statements {
        let entry = by_step.entry(statement.step.as_str()).or_default();
        entry.0 += statement.elapsed_ms;
        entry.1 += 1;
        if !statement.detail.is_empty() {
            entry.2.push(statement.detail.as_str());
        }
    }
    let mut steps: Vec<_> = by_step.into_iter().collect();
    steps.sort_by_key(|step| std::cmp::Reverse(step.1 .0));
    let mut covered = 0u64;
    for (step, (ms, count, details)) in &steps {
        covered += ms;
        let detail = if details.is_empty() {
            String::new()
        } else {
            format!(
                "   (quantities, delete, records, summaries, dirty, commit ms: {})",
                details.join(" ")
            )
        };
        println!(
            "      {step:<34} {:>8.3} s  {count:>3} statements{detail}",
            *ms as f64 / 1000.0
        );
    }
    let total_ms = u64::try_from(total.as_millis()).unwrap_or(u64::MAX);
    println!(
        "      {:<34} {:>8.3} s  (reclassification check, sub-millisecond statements, Rust)",
        "not covered by a statement event",
        total_ms.saturating_sub(covered) as f64 / 1000.0
    );
}

fn main() {
    let statement_events =
        tracing_subscriber::filter::Targets::new().with_target("tally::store::reconcile", tracing::Level::DEBUG);
    tracing_subscriber::registry()
        .with(
            tracing_subscriber::fmt::layer()
                .with_writer(std::io::stderr)
                .with_filter(
                    tracing_subscriber::EnvFilter::try_from_default_env()
                        .unwrap_or_else(|_| "warn,sqlx::query=error".into()),
                ),
        )
        .with(StatementTimes.with_filter(statement_events))
        .init();
    let sizes = support::sizes("10000");
    let backends = support::backends("postgres,sqlite");
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let mut table: Vec<(String, u64, u64, Vec<ScenarioRow>)> = Vec::new();
    runtime.block_on(async {
        for &accounts in &sizes {
            for backend in &backends {
                println!("{backend}, {accounts} accounts:");
                let start = GregorianSeconds::from_utc(chrono::Utc::now());
                let Some(PreparedDemo {
                    database: fresh,
                    store,
                    objects,
                    saved,
                }) = prepare_demo(
                    backend,
                    accounts,
                    &format!("nightly_{accounts}"),
                    GregorianSeconds(start.0 - DAY),
                )
                .await
                else {
                    continue;
                };
                let rows = scenarios(&store, &fresh.url, objects, start).await;
                store.close().await;
                fresh.remove().await;
                if let Some(saved) = &saved {
                    println!("{}", saved_demo_note(saved));
                }
                table.push((backend.clone(), accounts, objects, rows));
            }
        }
    });
    print_table(&table);
}

/// The summary: one line per backend, size and scenario.
fn print_table(table: &[(String, u64, u64, Vec<ScenarioRow>)]) {
    println!();
    println!(
        "| backend | accounts | objects | scenario | floor s | reconcile s | ratio | reconcile peak | sync s | accounts/s | sync peak | bookkeeper-sync s | deliveries | deliveries/s | bookkeeper-sync peak | total s | changed (accounts/items/invoices) |"
    );
    println!("| --- | ---: | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |");
    for (backend, accounts, objects, rows) in table {
        for row in rows {
            let total = row.reconcile.elapsed + row.sync.elapsed + row.deliveries.elapsed;
            println!(
                "| {backend} | {accounts} | {objects} | {} | {:.2} | {:.2} | {:.2} | {} | {:.2} | {:.0} | {} | {:.2} | {} | {:.0} | {} | {:.2} | {}/{}/{} |",
                row.scenario,
                row.floor.as_secs_f64(),
                row.reconcile.elapsed.as_secs_f64(),
                row.reconcile.elapsed.as_secs_f64() / row.floor.as_secs_f64().max(1e-9),
                memory(row.reconcile.peak_kib),
                row.sync.elapsed.as_secs_f64(),
                row.sync.rate(),
                memory(row.sync.peak_kib),
                row.deliveries.elapsed.as_secs_f64(),
                row.deliveries.rows,
                row.deliveries.rate(),
                memory(row.deliveries.peak_kib),
                total.as_secs_f64(),
                row.accounts_changed,
                row.items_changed,
                row.invoices_changed,
            );
        }
    }
}
