//! Ingestion benchmark: writes the demo's Kazoo documents to a temporary NDJSON file
//! (`{"database": …, "doc": …}` per line, about 1 M documents at 10 000 accounts), then
//! on each backend times
//!
//! * the **floor**, into a fresh database: the same inventory rows written the fastest
//!   plain way, in one pass over the same file: each line parsed and read with
//!   `wire::kazoo::read_document`, rows buffered per table and flushed in large chunks
//!   (PostgreSQL: `COPY … FROM STDIN`; SQLite: 500-row INSERTs of bound parameters),
//!   all in one transaction. The floor's total includes parsing and reading, as the
//!   import's does; its "inserts" line is the time spent in the flushes alone;
//! * the **import**, into another fresh database: the file read as a stream with
//!   `ingest::sources::read_path` in batches of 5 000 (the default `ingest.batch_size`)
//!   and applied through the [`Ingestor`] (then `finish`), exactly as `tally inventory
//!   import` does;
//! * the **re-import** of the same file into the imported database, which must change
//!   nothing (`applied == 0` is asserted).
//!
//! Each line shows documents/s and the ratio of its time to the floor's. Peak memory
//! (VmHWM) is reset before the floor and before the import (`/proc/self/clear_refs`,
//! "5") and read after each, so it is that phase's own peak; "n/a" when the kernel
//! refuses the reset.
//!
//! Run: `cargo bench --bench ingest` (10 000 accounts);
//! `TALLY_BENCH_ACCOUNTS=100000 cargo bench --bench ingest` for ~10 M documents;
//! `TALLY_BENCH_BACKENDS=postgres` (or `sqlite`) to run one backend.
//! PostgreSQL: `TALLY_BENCH_POSTGRES` (default postgres://postgres@127.0.0.1:5432/postgres).
//! `RUST_LOG=tally=debug` shows the store's statements and their times.

mod support;

use serde::Deserialize;
use serde_json::Value;
use sqlx::Connection;
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::path::Path;
use std::time::{Duration, Instant};
use support::{peak_memory_kib, reset_peak_memory, BenchDatabase};
use tally::demo::documents::{documents, write_ndjson};
use tally::demo::{generate, DemoSpec};
use tally::domain::classify::NumberClassifiers;
use tally::domain::inventory::{Change, Database, InventoryRecord};
use tally::domain::summary::GregorianSeconds;
use tally::ingest::sources::read_path;
use tally::ingest::{IngestReport, Ingestor};
use tally::store::{Backend, Store};
use tally::wire::kazoo::{read_document, Reading};

const NOW: i64 = 63_900_000_000;

/// Documents per batch, as `[ingest] batch_size` defaults.
const BATCH_SIZE: usize = 5_000;

#[derive(Deserialize)]
struct Envelope {
    database: String,
    doc: Value,
}

/// One value of a row, as each backend binds or copies it.
enum Cell {
    Text(String),
    Null,
    Bool(bool),
    Int(i64),
}

impl From<String> for Cell {
    fn from(text: String) -> Cell {
        Cell::Text(text)
    }
}

impl From<Option<String>> for Cell {
    fn from(text: Option<String>) -> Cell {
        text.map_or(Cell::Null, Cell::Text)
    }
}

impl From<bool> for Cell {
    fn from(flag: bool) -> Cell {
        Cell::Bool(flag)
    }
}

impl From<i64> for Cell {
    fn from(number: i64) -> Cell {
        Cell::Int(number)
    }
}

/// The inventory tables and their columns, in the order rows are built.
const TABLES: &[(&str, &[&str])] = &[
    (
        "accounts",
        &[
            "id",
            "parent_id",
            "name",
            "enabled",
            "deleted",
            "is_reseller",
            "reseller_id",
            "billing_id",
            "api_key",
        ],
    ),
    ("reconcile_marks", &["account_id", "marked_at", "token"]),
    (
        "users",
        &[
            "id",
            "account_id",
            "priv_level",
            "qubicle_enabled",
            "qubicle_offering",
            "enabled",
            "deleted",
            "username",
            "md5_auth",
        ],
    ),
    ("devices", &["id", "account_id", "device_type", "enabled", "deleted"]),
    ("vmboxes", &["id", "account_id", "transcribe", "enabled", "deleted"]),
    ("faxboxes", &["id", "account_id", "enabled", "deleted"]),
    ("conferences", &["id", "account_id", "enabled", "deleted"]),
    (
        "trunk_limits",
        &[
            "account_id",
            "twoway_trunks",
            "inbound_trunks",
            "outbound_trunks",
            "enabled",
            "deleted",
            "doc_id",
        ],
    ),
    ("whitelabels", &["account_id", "domain", "enabled", "deleted", "doc_id"]),
    ("app_stores", &["account_id", "enabled", "deleted", "doc_id"]),
    (
        "app_store_apps",
        &[
            "account_id",
            "app_id",
            "name",
            "blacklisted",
            "allowed_users",
            "specific_users",
        ],
    ),
    ("dedicated_ips", &["id", "account_id", "ip", "enabled", "deleted"]),
    (
        "qubicle_queues",
        &["id", "account_id", "offering", "enabled", "deleted"],
    ),
    (
        "port_requests",
        &["id", "account_id", "port_state", "number_count", "enabled", "deleted"],
    ),
    (
        "port_request_transitions",
        &["port_request_id", "position", "new_state"],
    ),
    (
        "phone_numbers",
        &[
            "id",
            "account_id",
            "carrier_module",
            "classification",
            "enabled",
            "deleted",
        ],
    ),
    ("phone_number_features", &["number_id", "feature"]),
];

fn table(name: &str) -> usize {
    TABLES
        .iter()
        .position(|(table, _)| *table == name)
        .expect("a known table")
}

/// Rows of every table waiting for their flush (flat: `columns` cells per row).
struct Buffers {
    cells: Vec<Vec<Cell>>,
}

impl Buffers {
    fn new() -> Buffers {
        Buffers {
            cells: TABLES.iter().map(|_| Vec::new()).collect(),
        }
    }

    fn push(&mut self, name: &str, row: Vec<Cell>) {
        let index = table(name);
        debug_assert_eq!(row.len(), TABLES[index].1.len(), "{name}");
        self.cells[index].extend(row);
    }
}

/// The rows one inventory change becomes (a fresh database: only upserts occur).
fn rows_of(database: &Database, id: &str, record: InventoryRecord, buffers: &mut Buffers) {
    let owner = match database {
        Database::Account(account) => Some(account.as_str().to_owned()),
        _ => None,
    };
    let owner = || owner.clone().expect("an account database");
    let id = id.to_owned();
    match record {
        InventoryRecord::Account(account) => {
            // Ingestion marks every account it touches for the next recount.
            buffers.push(
                "reconcile_marks",
                vec![
                    account.id.as_str().to_owned().into(),
                    NOW.into(),
                    "floor".to_owned().into(),
                ],
            );
            buffers.push(
                "accounts",
                vec![
                    account.id.as_str().to_owned().into(),
                    account.parent.map(|parent| parent.as_str().to_owned()).into(),
                    account.name.into(),
                    account.presence.enabled.into(),
                    account.presence.deleted.into(),
                    account.is_reseller.into(),
                    account.reseller_id.map(|reseller| reseller.as_str().to_owned()).into(),
                    account.billing_id.into(),
                    account.api_key.map(|key| key.expose().to_owned()).into(),
                ],
            );
        }
        InventoryRecord::User(user) => buffers.push(
            "users",
            vec![
                id.into(),
                owner().into(),
                user.priv_level.into(),
                user.qubicle_enabled.into(),
                user.qubicle_offering.into(),
                user.presence.enabled.into(),
                user.presence.deleted.into(),
                user.username.into(),
                user.md5_auth.map(|auth| auth.expose().to_owned()).into(),
            ],
        ),
        InventoryRecord::Device(device) => buffers.push(
            "devices",
            vec![
                id.into(),
                owner().into(),
                device.device_type.into(),
                device.presence.enabled.into(),
                device.presence.deleted.into(),
            ],
        ),
        InventoryRecord::Vmbox(vmbox) => buffers.push(
            "vmboxes",
            vec![
                id.into(),
                owner().into(),
                vmbox.transcribe.into(),
                vmbox.presence.enabled.into(),
                vmbox.presence.deleted.into(),
            ],
        ),
        InventoryRecord::Faxbox(presence) => buffers.push(
            "faxboxes",
            vec![
                id.into(),
                owner().into(),
                presence.enabled.into(),
                presence.deleted.into(),
            ],
        ),
        InventoryRecord::Conference(presence) => buffers.push(
            "conferences",
            vec![
                id.into(),
                owner().into(),
                presence.enabled.into(),
                presence.deleted.into(),
            ],
        ),
        InventoryRecord::Limits(limits) => buffers.push(
            "trunk_limits",
            vec![
                owner().into(),
                limits.twoway_trunks.into(),
                limits.inbound_trunks.into(),
                limits.outbound_trunks.into(),
                limits.presence.enabled.into(),
                limits.presence.deleted.into(),
                id.into(),
            ],
        ),
        InventoryRecord::Whitelabel(whitelabel) => buffers.push(
            "whitelabels",
            vec![
                owner().into(),
                whitelabel.domain.into(),
                whitelabel.presence.enabled.into(),
                whitelabel.presence.deleted.into(),
                id.into(),
            ],
        ),
        InventoryRecord::AppStore(store) => {
            buffers.push(
                "app_stores",
                vec![
                    owner().into(),
                    store.presence.enabled.into(),
                    store.presence.deleted.into(),
                    id.clone().into(),
                ],
            );
            for app in store.apps {
                buffers.push(
                    "app_store_apps",
                    vec![
                        owner().into(),
                        app.app_id.into(),
                        app.name.into(),
                        app.blacklisted.into(),
                        app.allowed_users.into(),
                        app.specific_users.into(),
                    ],
                );
            }
        }
        InventoryRecord::DedicatedIp(ip) => buffers.push(
            "dedicated_ips",
            vec![
                id.into(),
                owner().into(),
                ip.ip.into(),
                ip.presence.enabled.into(),
                ip.presence.deleted.into(),
            ],
        ),
        InventoryRecord::QubicleQueue(queue) => buffers.push(
            "qubicle_queues",
            vec![
                id.into(),
                owner().into(),
                queue.offering.into(),
                queue.presence.enabled.into(),
                queue.presence.deleted.into(),
            ],
        ),
        InventoryRecord::PortRequest(request) => {
            for (position, state) in request.transitions.into_iter().enumerate() {
                buffers.push(
                    "port_request_transitions",
                    vec![
                        id.clone().into(),
                        i64::try_from(position + 1).expect("small").into(),
                        state.into(),
                    ],
                );
            }
            buffers.push(
                "port_requests",
                vec![
                    id.into(),
                    request.account.as_str().to_owned().into(),
                    request.state.into(),
                    request.number_count.into(),
                    request.presence.enabled.into(),
                    request.presence.deleted.into(),
                ],
            );
        }
        InventoryRecord::Number(number) => {
            let Some(account) = number.assigned_to else {
                return;
            };
            for feature in number.features {
                buffers.push("phone_number_features", vec![id.clone().into(), feature.into()]);
            }
            buffers.push(
                "phone_numbers",
                vec![
                    id.into(),
                    account.as_str().to_owned().into(),
                    number.carrier_module.into(),
                    number.classification.into(),
                    number.presence.enabled.into(),
                    number.presence.deleted.into(),
                ],
            );
        }
    }
}

/// Rows per table buffered before a flush.
const FLUSH_ROWS: usize = 50_000;
/// Rows per SQLite INSERT (at most 9 columns: well under its parameter limit).
const SQLITE_ROWS_PER_INSERT: usize = 500;

enum FloorConnection {
    Postgres(sqlx::PgConnection),
    Sqlite(sqlx::SqliteConnection),
}

/// COPY's text format: `\N` for null, backslash escapes for the few special bytes.
fn copy_text(cell: &Cell, out: &mut String) {
    match cell {
        Cell::Null => out.push_str("\\N"),
        Cell::Bool(true) => out.push('t'),
        Cell::Bool(false) => out.push('f'),
        Cell::Int(number) => out.push_str(&number.to_string()),
        Cell::Text(text) => {
            for character in text.chars() {
                match character {
                    '\\' => out.push_str("\\\\"),
                    '\t' => out.push_str("\\t"),
                    '\n' => out.push_str("\\n"),
                    '\r' => out.push_str("\\r"),
                    other => out.push(other),
                }
            }
        }
    }
}

impl FloorConnection {
    async fn execute(&mut self, sql: &str) {
        match self {
            FloorConnection::Postgres(connection) => {
                sqlx::raw_sql(sql).execute(connection).await.expect("floor statement");
            }
            FloorConnection::Sqlite(connection) => {
                sqlx::raw_sql(sql).execute(connection).await.expect("floor statement");
            }
        }
    }

    /// Writes and empties one table's buffer.
    async fn flush(&mut self, index: usize, cells: &mut Vec<Cell>) {
        let (name, columns) = TABLES[index];
        if cells.is_empty() {
            return;
        }
        match self {
            FloorConnection::Postgres(connection) => {
                let mut copy = connection
                    .copy_in_raw(&format!("COPY {name} ({}) FROM STDIN", columns.join(", ")))
                    .await
                    .expect("COPY starts");
                let mut data = String::with_capacity(cells.len() * 24);
                for row in cells.chunks(columns.len()) {
                    for (position, cell) in row.iter().enumerate() {
                        if position > 0 {
                            data.push('\t');
                        }
                        copy_text(cell, &mut data);
                    }
                    data.push('\n');
                }
                copy.send(data.into_bytes()).await.expect("COPY data");
                copy.finish().await.expect("COPY ends");
                cells.clear();
            }
            FloorConnection::Sqlite(connection) => {
                let row_width = columns.len();
                let rows_per_insert = SQLITE_ROWS_PER_INSERT;
                let mut all = std::mem::take(cells).into_iter().peekable();
                while all.peek().is_some() {
                    let chunk: Vec<Cell> = all.by_ref().take(rows_per_insert * row_width).collect();
                    let rows = chunk.len() / row_width;
                    let placeholders = format!("({})", vec!["?"; row_width].join(", "));
                    let sql = format!(
                        "INSERT INTO {name} ({}) VALUES {}",
                        columns.join(", "),
                        vec![placeholders.as_str(); rows].join(", ")
                    );
                    let mut query = sqlx::query(&sql);
                    for cell in chunk {
                        query = match cell {
                            Cell::Text(text) => query.bind(text),
                            Cell::Null => query.bind(Option::<String>::None),
                            Cell::Bool(flag) => query.bind(flag),
                            Cell::Int(number) => query.bind(number),
                        };
                    }
                    query.execute(&mut *connection).await.expect("floor insert");
                }
            }
        }
    }
}

struct FloorTimes {
    total: Duration,
    insert: Duration,
    rows: u64,
}

/// The floor: one pass over the file, rows flushed per table in large chunks, one
/// transaction.
async fn floor(connection: &mut FloorConnection, path: &Path) -> FloorTimes {
    let classifiers = NumberClassifiers::kazoo_defaults();
    let started = Instant::now();
    let mut insert = Duration::ZERO;
    let mut rows = 0u64;
    connection.execute("BEGIN").await;
    let mut buffers = Buffers::new();
    let reader = BufReader::with_capacity(1 << 20, std::fs::File::open(path).expect("the file"));
    for line in reader.lines() {
        let line = line.expect("a line");
        let envelope: Envelope = serde_json::from_str(&line).expect("an envelope");
        let database = Database::parse(&envelope.database);
        let Ok(Reading::Change(change)) = read_document(&database, &envelope.doc, &classifiers) else {
            panic!("the demo's documents are inventory");
        };
        let Change::Upsert(record) = change.change else {
            continue;
        };
        rows_of(&change.database, change.id.as_str(), record, &mut buffers);
        for (index, (cells, (_, columns))) in buffers.cells.iter_mut().zip(TABLES).enumerate() {
            if cells.len() >= FLUSH_ROWS * columns.len() {
                rows += u64::try_from(cells.len() / columns.len()).expect("fits");
                let flushing = Instant::now();
                connection.flush(index, cells).await;
                insert += flushing.elapsed();
            }
        }
    }
    let flushing = Instant::now();
    for (index, (cells, (_, columns))) in buffers.cells.iter_mut().zip(TABLES).enumerate() {
        rows += u64::try_from(cells.len() / columns.len()).expect("fits");
        connection.flush(index, cells).await;
    }
    connection.execute("COMMIT").await;
    insert += flushing.elapsed();
    FloorTimes {
        total: started.elapsed(),
        insert,
        rows,
    }
}

fn write_documents(accounts: u64, path: &Path) -> u64 {
    let spec = DemoSpec { accounts, seed: 1 };
    let started = Instant::now();
    let data = generate(spec);
    let mut out = BufWriter::with_capacity(1 << 20, std::fs::File::create(path).expect("temp file"));
    let written = write_ndjson(&mut out, documents(spec, &data)).expect("written");
    out.flush().expect("flushed");
    let bytes = std::fs::metadata(path).map(|meta| meta.len()).unwrap_or(0);
    println!(
        "{written} documents of {accounts} accounts, {} MiB of NDJSON, written in {:.1} s",
        bytes / (1 << 20),
        started.elapsed().as_secs_f64()
    );
    written
}

fn print_line(label: &str, elapsed: Duration, documents: u64, floor: Option<Duration>, memory: Option<u64>) {
    let ratio = floor.map_or(String::from("     "), |floor| {
        format!("{:>5.2}", elapsed.as_secs_f64() / floor.as_secs_f64().max(1e-9))
    });
    let memory = memory.map_or(String::new(), |kib| format!("   peak {:>5} MiB", kib / 1024));
    println!(
        "  {label:<26} {:>8.2} s   {:>9.0} documents/s   ratio to floor {ratio}{memory}",
        elapsed.as_secs_f64(),
        documents as f64 / elapsed.as_secs_f64().max(1e-9),
    );
}

async fn run_floor(backend: &str, path: &Path, documents: u64) -> Duration {
    let fresh = BenchDatabase::create(backend, "ingest_floor")
        .await
        .expect("a known backend");
    // Migrations through the store, then a plain connection of our own.
    let store = Store::open(&fresh.url).await.expect("opens");
    let kind = store.backend();
    store.close().await;
    let mut connection = match kind {
        Backend::Postgres => {
            FloorConnection::Postgres(sqlx::PgConnection::connect(fresh.url.expose()).await.expect("connects"))
        }
        Backend::Sqlite => {
            use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqliteSynchronous};
            use std::str::FromStr;
            // The store's settings, with a page cache of 32 MiB where the store's
            // connections have 8 MiB: the floor never has less room than tally.
            let options = SqliteConnectOptions::from_str(fresh.url.expose())
                .expect("a SQLite URL")
                .journal_mode(SqliteJournalMode::Wal)
                .synchronous(SqliteSynchronous::Normal)
                .pragma("cache_size", "-32768");
            FloorConnection::Sqlite(sqlx::SqliteConnection::connect_with(&options).await.expect("connects"))
        }
    };
    let peak_reset = reset_peak_memory();
    let times = floor(&mut connection, path).await;
    let peak = peak_reset.then(peak_memory_kib).flatten();
    match connection {
        FloorConnection::Postgres(connection) => connection.close().await.expect("closes"),
        FloorConnection::Sqlite(connection) => connection.close().await.expect("closes"),
    }
    print_line("floor (parse+read+insert)", times.total, documents, None, peak);
    println!(
        "  {:<26} {:>8.2} s   ({} rows; parse and read: {:.2} s)",
        "  of which inserts",
        times.insert.as_secs_f64(),
        times.rows,
        (times.total - times.insert).as_secs_f64()
    );
    fresh.remove().await;
    times.total
}

/// What one backend's import gave.
struct ImportTimes {
    import: Duration,
    reimport: Duration,
    peak_kib: Option<u64>,
}

/// One run of the ingestion core over the file, exactly as `tally inventory import`
/// runs it: `read_path` in batches, every batch applied (`apply_source`), then `finish`.
async fn ingest_file(store: &Store, path: &Path) -> IngestReport {
    let ingestor = Ingestor::new(store.clone(), NumberClassifiers::kazoo_defaults());
    let mut receiver = read_path(path, None, BATCH_SIZE);
    let mut run = ingestor.start(GregorianSeconds(NOW)).await.expect("the run starts");
    run.apply_source(&mut receiver)
        .await
        .expect("the file reads and every batch applies");
    run.finish().await.expect("the run finishes")
}

/// The import into a fresh database, then the re-import of the same file.
async fn run_import(backend: &str, path: &Path, documents: u64, floor: Duration) -> ImportTimes {
    let fresh = BenchDatabase::create(backend, "ingest_import")
        .await
        .expect("a known backend");
    let store = Store::open(&fresh.url).await.expect("opens");

    let peak_reset = reset_peak_memory();
    let started = Instant::now();
    let first = ingest_file(&store, path).await;
    let import = started.elapsed();
    let peak_kib = peak_reset.then(peak_memory_kib).flatten();
    assert_eq!(first.documents, documents, "{}", first.summary());
    assert_eq!(
        first.rejected, 0,
        "the demo's documents are all accepted: {:?}",
        first.rejections
    );
    print_line("import", import, documents, Some(floor), peak_kib);
    println!("  {:<26} {}", "", first.summary());

    let started = Instant::now();
    let again = ingest_file(&store, path).await;
    let reimport = started.elapsed();
    assert_eq!(again.applied, 0, "a re-import changes nothing: {}", again.summary());
    assert_eq!(again.rejected, 0, "{:?}", again.rejections);
    print_line("re-import (no change)", reimport, documents, Some(floor), None);
    println!("  {:<26} {}", "", again.summary());

    store.close().await;
    fresh.remove().await;
    ImportTimes {
        import,
        reimport,
        peak_kib,
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
        .unwrap_or(10_000);
    let directory = tempfile::tempdir().expect("temp dir");
    let path = directory.path().join("demo.ndjson");
    let documents = write_documents(accounts, &path);
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let mut rows: Vec<(String, Duration, ImportTimes)> = Vec::new();
    runtime.block_on(async {
        for backend in support::backends("postgres,sqlite") {
            let backend = backend.as_str();
            if !matches!(backend, "postgres" | "sqlite") {
                eprintln!("unknown backend {backend:?}: use postgres and/or sqlite");
                continue;
            }
            println!("{backend} ({accounts} accounts, {documents} documents):");
            let floor = run_floor(backend, &path, documents).await;
            let times = run_import(backend, &path, documents, floor).await;
            rows.push((backend.to_owned(), floor, times));
        }
    });
    print_table(accounts, documents, &rows);
}

/// The summary of every backend, one line each.
fn print_table(accounts: u64, documents: u64, rows: &[(String, Duration, ImportTimes)]) {
    let rate = |elapsed: Duration| documents as f64 / elapsed.as_secs_f64().max(1e-9);
    let ratio = |elapsed: Duration, floor: Duration| elapsed.as_secs_f64() / floor.as_secs_f64().max(1e-9);
    println!();
    println!("{accounts} accounts, {documents} documents, batches of {BATCH_SIZE}:");
    println!(
        "  {:<9} {:>13} {:>13} {:>7} {:>15} {:>7} {:>11}",
        "backend", "floor doc/s", "import doc/s", "ratio", "re-import doc/s", "ratio", "import peak"
    );
    for (backend, floor, times) in rows {
        println!(
            "  {:<9} {:>13.0} {:>13.0} {:>7.2} {:>15.0} {:>7.2} {:>11}",
            backend,
            rate(*floor),
            rate(times.import),
            ratio(times.import, *floor),
            rate(times.reimport),
            ratio(times.reimport, *floor),
            times
                .peak_kib
                .map_or_else(|| "n/a".to_owned(), |kib| format!("{} MiB", kib / 1024)),
        );
    }
}
