//! Database faults and crashes as an operator's night would go (issue 11): the real
//! binary against a real database, unreachable, cut off mid-run with
//! `pg_terminate_backend`, or killed with SIGKILL at several points and run again.
//! After each, the database must hold exactly what an uninterrupted run leaves,
//! compared table by table.

use sqlx::{Connection, Row};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};
use std::time::{Duration, Instant};
use tokio::process::{Child, Command};

const POSTGRES_ADMIN_URL: &str = crate::helpers::POSTGRES_ADMIN_URL;

/// A demo big enough that `tally run billing` takes a few seconds in a debug build.
const DEMO_ACCOUNTS: &str = "300";

/// Short leases, so a killed run's claim and its leased deliveries expire within the
/// test: a re-run waits [`PAST_THE_LEASES`] (leases are kept to the second, so up to
/// three seconds) and takes them over.
const CONFIG: &str = "[scheduler]\nlease_seconds = 2\nheartbeat_seconds = 1\n\n\
                      [bookkeeper_sync]\nlease_seconds = 2\n";
const PAST_THE_LEASES: Duration = Duration::from_millis(3_200);

/// Columns written from the clock of the run that wrote them, or from ids and keys
/// derived from that time or from the process: two uninterrupted runs of the same
/// data already differ there (measured), so a killed-and-resumed run may too.
/// Every other column of every table must be equal.
const VARYING_COLUMNS: &[(&str, &str)] = &[
    // When the account was last marked and priced.
    ("services", "dirty_since"),
    ("services", "priced_at"),
    // Record ids embed the time; run_id names the reconcile run (time and process).
    ("quantity_change_records", "id"),
    ("quantity_change_records", "run_id"),
    ("quantity_change_records", "created_at"),
    // The time of the last change of the day.
    ("quantity_day_summaries", "last_timestamp"),
    ("invoice_snapshots", "updated_at"),
    // Audit ids embed the time; `audit` names the sync run; delivery_id points at
    // the delivery's id below.
    ("audit_logs", "id"),
    ("audit_logs", "created_at"),
    ("audit_logs", "modified_at"),
    ("audit_logs", "audit"),
    ("audit_logs", "delivery_id"),
    // The body carries the delivery's time, so its idempotency key (a hash of the
    // body) differs too; the lease belongs to whichever process sent it.
    ("deliveries", "id"),
    ("deliveries", "idempotency_key"),
    ("deliveries", "body"),
    ("deliveries", "created_at"),
    ("deliveries", "updated_at"),
    ("deliveries", "lease_until"),
];

/// Tables left out whole: `runs` is the ledger of runs itself, and a killed run
/// leaves a row of its own there (taken over and ended by the next run).
const RUN_BOOKKEEPING_TABLES: &[&str] = &["runs"];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Backend {
    Sqlite,
    Postgres,
}

/// A database of the test: a SQLite file in the test's directory, or a PostgreSQL
/// database dropped when the test ends.
struct Database {
    url: String,
    postgres_name: Option<String>,
}

impl Drop for Database {
    fn drop(&mut self) {
        if let Some(name) = self.postgres_name.take() {
            crate::helpers::drop_postgres_database(name);
        }
    }
}

/// Whether PostgreSQL tests run here (see `helpers::postgres_store`).
async fn postgres_available() -> bool {
    match sqlx::PgConnection::connect(POSTGRES_ADMIN_URL).await {
        Ok(connection) => {
            let _ = connection.close().await;
            true
        }
        Err(error) => {
            if std::env::var("TALLY_REQUIRE_POSTGRES").as_deref() == Ok("1") {
                panic!("PostgreSQL unreachable at {POSTGRES_ADMIN_URL} and TALLY_REQUIRE_POSTGRES=1: {error}");
            }
            eprintln!("SKIPPED: PostgreSQL unreachable at {POSTGRES_ADMIN_URL}: {error}");
            false
        }
    }
}

fn postgres_name(label: &str) -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    format!(
        "tally_faults_{label}_{}_{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

async fn admin_execute(sql: &str) {
    let mut admin = sqlx::PgConnection::connect(POSTGRES_ADMIN_URL)
        .await
        .expect("admin connection");
    sqlx::query(sql)
        .execute(&mut admin)
        .await
        .unwrap_or_else(|error| panic!("{sql}: {error}"));
    admin.close().await.expect("close admin connection");
}

/// `CREATE DATABASE … TEMPLATE …`, retried while the backend of a process that just
/// exited still holds the template.
async fn copy_postgres(template: &str, name: &str) {
    let mut admin = sqlx::PgConnection::connect(POSTGRES_ADMIN_URL)
        .await
        .expect("admin connection");
    let sql = format!("CREATE DATABASE {name} TEMPLATE {template}");
    for attempt in 0.. {
        match sqlx::query(&sql).execute(&mut admin).await {
            Ok(_) => break,
            Err(error) if attempt < 20 && error.to_string().contains("being accessed by other users") => {
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
            Err(error) => panic!("{sql}: {error}"),
        }
    }
    admin.close().await.expect("close admin connection");
}

/// The test's directory, with its settings file.
struct Workspace {
    directory: tempfile::TempDir,
}

impl Workspace {
    fn new() -> Workspace {
        let directory = tempfile::tempdir().expect("temp dir");
        std::fs::write(directory.path().join("tally.toml"), CONFIG).expect("settings written");
        Workspace { directory }
    }

    fn path(&self) -> &Path {
        self.directory.path()
    }

    /// `tally ARGS` on `database`, with the test's settings.
    fn tally(&self, database: &Database, args: &[&str]) -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_tally"));
        command
            .args(args)
            .current_dir(self.path())
            .env("TALLY_CONFIG", self.path().join("tally.toml"))
            .env("TALLY_DATABASE_URL", &database.url)
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        command
    }

    /// A new empty database of `backend`.
    async fn database(&self, backend: Backend, label: &str) -> Database {
        match backend {
            Backend::Sqlite => {
                let directory: PathBuf = self.path().join(label);
                std::fs::create_dir_all(&directory).expect("database directory");
                Database {
                    url: format!("sqlite://{}", directory.join("tally.db").display()),
                    postgres_name: None,
                }
            }
            Backend::Postgres => {
                let name = postgres_name(label);
                admin_execute(&format!("CREATE DATABASE {name}")).await;
                Database {
                    url: format!("postgres://postgres@127.0.0.1:5432/{name}"),
                    postgres_name: Some(name),
                }
            }
        }
    }

    /// A database holding the demo platform, not yet billed.
    async fn demo(&self, backend: Backend, label: &str) -> Database {
        let database = self.database(backend, label).await;
        let output = run(self.tally(&database, &["demo", "--accounts", DEMO_ACCOUNTS, "--seed", "7"])).await;
        assert_eq!(output.status.code(), Some(0), "demo: {}", stderr(&output));
        database
    }

    /// A second database with exactly the content of `original` (no run may be
    /// connected to it).
    async fn copy(&self, original: &Database, label: &str) -> Database {
        match &original.postgres_name {
            Some(template) => {
                let name = postgres_name(label);
                copy_postgres(template, &name).await;
                Database {
                    url: format!("postgres://postgres@127.0.0.1:5432/{name}"),
                    postgres_name: Some(name),
                }
            }
            None => {
                let source = Path::new(original.url.trim_start_matches("sqlite://"));
                let target_directory = self.path().join(label);
                std::fs::create_dir_all(&target_directory).expect("database directory");
                let source_directory = source.parent().expect("database directory");
                for entry in std::fs::read_dir(source_directory).expect("database directory lists") {
                    let entry = entry.expect("entry");
                    std::fs::copy(entry.path(), target_directory.join(entry.file_name())).expect("database copied");
                }
                Database {
                    url: format!("sqlite://{}", target_directory.join("tally.db").display()),
                    postgres_name: None,
                }
            }
        }
    }

    /// `tally run billing` with its loopback bookkeeper, to the end.
    async fn billing(&self, database: &Database) -> Output {
        run(self.billing_command(database)).await
    }

    fn billing_command(&self, database: &Database) -> Command {
        self.tally(database, &["run", "billing", "--demo", "--json"])
    }
}

async fn run(mut command: Command) -> Output {
    let child = command.spawn().expect("tally starts");
    tokio::time::timeout(Duration::from_secs(300), child.wait_with_output())
        .await
        .expect("tally ends within 5 minutes")
        .expect("tally's output is read")
}

/// A standard-error line (a JSON object off a terminal) as a terminal shows an
/// error: `tally: MESSAGE`.
fn error_message(line: &str) -> String {
    let line: serde_json::Value = serde_json::from_str(line).unwrap_or_else(|_| panic!("one JSON object: {line}"));
    format!("tally: {}", line["message"].as_str().unwrap_or_default())
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// Every table of the schema (but the run bookkeeping), each as its rows sorted, each
/// row its compared columns as text.
async fn tables(database: &Database) -> BTreeMap<String, Vec<String>> {
    let mut tables = BTreeMap::new();
    if database.postgres_name.is_some() {
        let mut connection = sqlx::PgConnection::connect(&database.url).await.expect("connects");
        let columns: Vec<(String, String)> = sqlx::query_as(
            "SELECT table_name::text, column_name::text FROM information_schema.columns \
             WHERE table_schema = 'public' ORDER BY table_name, ordinal_position",
        )
        .fetch_all(&mut connection)
        .await
        .expect("columns listed");
        for (table, select) in selects(columns, |column| format!("CAST(\"{column}\" AS TEXT)")) {
            let rows = sqlx::query(&select)
                .fetch_all(&mut connection)
                .await
                .unwrap_or_else(|error| panic!("{select}: {error}"));
            tables.insert(table, sorted(rows.iter().map(|row| row.get::<String, _>(0))));
        }
        connection.close().await.expect("closes");
    } else {
        let mut connection = sqlx::SqliteConnection::connect(&database.url).await.expect("connects");
        let columns: Vec<(String, String)> = sqlx::query_as(
            "SELECT m.name, p.name FROM sqlite_master m, pragma_table_info(m.name) p \
             WHERE m.type = 'table' AND m.name NOT LIKE 'sqlite_%' ORDER BY m.name, p.cid",
        )
        .fetch_all(&mut connection)
        .await
        .expect("columns listed");
        // quote(): any value as its SQL literal, blobs (migration checksums) in hex.
        for (table, select) in selects(columns, |column| format!("quote(\"{column}\")")) {
            let rows = sqlx::query(&select)
                .fetch_all(&mut connection)
                .await
                .unwrap_or_else(|error| panic!("{select}: {error}"));
            tables.insert(table, sorted(rows.iter().map(|row| row.get::<String, _>(0))));
        }
        connection.close().await.expect("closes");
    }
    assert!(tables.len() > 20, "the schema's tables are found: {:?}", tables.keys());
    tables
}

/// One `SELECT` per table rendering each row as one text, each column through `text`.
fn selects(columns: Vec<(String, String)>, text: impl Fn(&str) -> String) -> Vec<(String, String)> {
    let mut by_table: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (table, column) in columns {
        if RUN_BOOKKEEPING_TABLES.contains(&table.as_str())
            || VARYING_COLUMNS.contains(&(table.as_str(), column.as_str()))
        {
            continue;
        }
        by_table.entry(table).or_default().push(column);
    }
    by_table
        .into_iter()
        .map(|(table, columns)| {
            let row = columns
                .iter()
                .map(|column| format!("'{column}=' || COALESCE({}, 'NULL')", text(column)))
                .collect::<Vec<_>>()
                .join(" || ' | ' || ");
            let select = format!("SELECT {row} FROM \"{table}\"");
            (table, select)
        })
        .collect()
}

fn sorted(rows: impl Iterator<Item = String>) -> Vec<String> {
    let mut rows: Vec<String> = rows.collect();
    rows.sort();
    rows
}

/// Asserts both databases hold the same rows, table by table, naming the first
/// differences.
async fn assert_same_state(reference: &Database, resumed: &Database) {
    let expected = tables(reference).await;
    let actual = tables(resumed).await;
    assert_eq!(
        expected.keys().collect::<Vec<_>>(),
        actual.keys().collect::<Vec<_>>(),
        "the same tables"
    );
    let mut differences = Vec::new();
    for (table, expected_rows) in &expected {
        let actual_rows = &actual[table];
        if expected_rows == actual_rows {
            continue;
        }
        let missing: Vec<&String> = expected_rows
            .iter()
            .filter(|row| !actual_rows.contains(row))
            .take(2)
            .collect();
        let extra: Vec<&String> = actual_rows
            .iter()
            .filter(|row| !expected_rows.contains(row))
            .take(2)
            .collect();
        differences.push(format!(
            "{table}: {} rows expected, {} found; missing e.g. {missing:?}; unexpected e.g. {extra:?}",
            expected_rows.len(),
            actual_rows.len()
        ));
    }
    assert!(differences.is_empty(), "{}", differences.join("\n"));
    let billed = &expected["audit_logs"];
    assert!(
        billed.len() > 100,
        "the reference run billed: {} audit rows",
        billed.len()
    );
}

/// Whether the report of a finished billing run says it succeeded.
fn succeeded(output: &Output) -> bool {
    let text = String::from_utf8_lossy(&output.stdout);
    output.status.code() == Some(0)
        && serde_json::from_str::<serde_json::Value>(text.trim()).is_ok_and(|report| report["status"] == "succeeded")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_postgresql_exits_75_within_the_connect_timeout_with_one_line() {
    let workspace = Workspace::new();
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("address");
    let database = Database {
        url: format!("postgres://postgres@{closed}/tally"),
        postgres_name: None,
    };
    let mut command = workspace.tally(&database, &["run", "billing", "--json"]);
    command.env("TALLY_DATABASE__CONNECT_TIMEOUT_SECONDS", "2");
    let started = Instant::now();
    let output = run(command).await;
    let elapsed = started.elapsed();
    let text = stderr(&output);
    assert_eq!(output.status.code(), Some(75), "{text}");
    assert!(elapsed < Duration::from_millis(3_500), "gave up after {elapsed:?}");
    let lines: Vec<String> = text.lines().map(error_message).collect();
    assert_eq!(lines.len(), 1, "one line: {text}");
    assert!(
        lines[0].starts_with(&format!(
            "tally: cannot reach the database postgres://postgres@{closed}/tally within 2 s: "
        )),
        "{text}"
    );
    assert!(lines[0].contains("refused"), "the cause is named: {text}");
}

/// How many backends `database` has, the caller's aside.
async fn backends(admin: &mut sqlx::PgConnection, database: &str) -> i64 {
    sqlx::query_scalar("SELECT COUNT(*) FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()")
        .bind(database)
        .fetch_one(admin)
        .await
        .expect("backends counted")
}

/// Terminates every backend of `database` but the caller's; returns how many.
async fn terminate_backends(admin: &mut sqlx::PgConnection, database: &str) -> i64 {
    sqlx::query_scalar(
        "SELECT COUNT(pg_terminate_backend(pid)) FROM pg_stat_activity \
         WHERE datname = $1 AND pid <> pg_backend_pid()",
    )
    .bind(database)
    .fetch_one(admin)
    .await
    .expect("backends terminated")
}

/// Runs billing on `database` while its connections are terminated three times,
/// 0.3 s apart, once the run is under way; returns its output and how many
/// connections were terminated while it was running.
async fn billing_with_connections_terminated(
    workspace: &Workspace,
    database: &Database,
    retry_seconds: &str,
) -> (Output, i64) {
    let name = database.postgres_name.clone().expect("a PostgreSQL database");
    let mut admin = sqlx::PgConnection::connect(POSTGRES_ADMIN_URL).await.expect("admin");
    let mut command = workspace.billing_command(database);
    command.env("TALLY_DATABASE__RETRY_SECONDS", retry_seconds);
    let mut child: Child = command.spawn().expect("tally starts");
    // Under way: connected (however slow the machine), then half a second into its work.
    let connected = Instant::now();
    while backends(&mut admin, &name).await == 0 && child.try_wait().expect("child state").is_none() {
        assert!(connected.elapsed() < Duration::from_secs(60), "the run connects");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut terminated = 0;
    for _ in 0..3 {
        if child.try_wait().expect("child state").is_some() {
            break;
        }
        terminated += terminate_backends(&mut admin, &name).await;
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    admin.close().await.expect("close admin");
    let output = tokio::time::timeout(Duration::from_secs(300), child.wait_with_output())
        .await
        .expect("ends")
        .expect("output read");
    (output, terminated)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_terminated_mid_run_are_ridden_out_or_exit_75_and_the_next_run_completes() {
    if !postgres_available().await {
        return;
    }
    let workspace = Workspace::new();
    let faulted = workspace.demo(Backend::Postgres, "faulted").await;
    let reference = workspace.copy(&faulted, "reference").await;
    let gave_up = workspace.copy(&faulted, "gave_up").await;

    // With retries, the run rides the faults out, or at worst leaves work for a rerun.
    let (output, terminated) = billing_with_connections_terminated(&workspace, &faulted, "30").await;
    assert!(terminated > 0, "the run's connections were terminated");
    let code = output.status.code();
    assert!(
        code == Some(0) || code == Some(75),
        "exit {code:?}: {}",
        stderr(&output)
    );
    // A fault may also have cut the recording of the run's end: its lease expires.
    tokio::time::sleep(PAST_THE_LEASES).await;
    let next = workspace.billing(&faulted).await;
    assert!(succeeded(&next), "the next run completes: {}", stderr(&next));

    // Without retries, a fault in flight ends the run at once: exit 75, one line.
    let (output, terminated) = billing_with_connections_terminated(&workspace, &gave_up, "0").await;
    assert!(terminated > 0, "the run's connections were terminated");
    let text = stderr(&output);
    match output.status.code() {
        Some(75) => {
            // The run's one line: the failed step and the server's word for it.
            let last = text.lines().last().map(error_message).unwrap_or_default();
            assert!(
                last.starts_with("tally: ") && last.contains("database error while"),
                "{text}"
            );
        }
        // Only idle pooled connections were cut: the pool replaced them unnoticed.
        Some(0) => {}
        other => panic!("exit {other:?}: {text}"),
    }
    tokio::time::sleep(PAST_THE_LEASES).await;
    let next = workspace.billing(&gave_up).await;
    assert!(succeeded(&next), "the next run completes: {}", stderr(&next));

    let uninterrupted = workspace.billing(&reference).await;
    assert!(succeeded(&uninterrupted), "{}", stderr(&uninterrupted));
    assert_same_state(&reference, &faulted).await;
    assert_same_state(&reference, &gave_up).await;
}

/// Kills `tally run billing` with SIGKILL at each of these fractions of an
/// uninterrupted run's duration after its start (so the kills land inside the run
/// however fast the machine is), waiting past the leases before the next start, then
/// runs it to the end.
const KILL_AT_FRACTION_PERCENT: &[u32] = &[10, 30, 50, 70];

async fn killed_at_several_points_then_rerun_converges(backend: Backend) {
    let workspace = Workspace::new();
    let killed = workspace.demo(backend, "killed").await;
    let reference = workspace.copy(&killed, "reference").await;
    let started = std::time::Instant::now();
    let uninterrupted = workspace.billing(&reference).await;
    assert!(succeeded(&uninterrupted), "{}", stderr(&uninterrupted));
    let whole_run = started.elapsed();

    let mut interrupted = 0;
    for (index, percent) in KILL_AT_FRACTION_PERCENT.iter().enumerate() {
        if index > 0 {
            tokio::time::sleep(PAST_THE_LEASES).await;
        }
        let mut child = workspace.billing_command(&killed).spawn().expect("tally starts");
        tokio::time::sleep(whole_run * *percent / 100).await;
        if child.try_wait().expect("child state").is_none() {
            interrupted += 1;
        }
        child.start_kill().expect("SIGKILL sent");
        let output = child.wait_with_output().await.expect("reaped");
        // A run that ended before the kill must not have been refused: the run
        // killed before it is taken over once its lease expired.
        assert!(
            output.status.code().is_none_or(|code| code == 0),
            "run {index} ended with {:?}: {}",
            output.status.code(),
            stderr(&output)
        );
    }
    assert!(
        interrupted >= 2,
        "at least two kills hit a running billing ({interrupted}; an uninterrupted run takes {whole_run:?})"
    );

    tokio::time::sleep(PAST_THE_LEASES).await;
    let rerun = workspace.billing(&killed).await;
    assert!(
        succeeded(&rerun),
        "the re-run after the kills completes, not refused: {:?} {}",
        rerun.status.code(),
        stderr(&rerun)
    );
    assert_same_state(&reference, &killed).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn billing_killed_at_several_points_then_rerun_converges_on_sqlite() {
    killed_at_several_points_then_rerun_converges(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn billing_killed_at_several_points_then_rerun_converges_on_postgres() {
    if !postgres_available().await {
        return;
    }
    killed_at_several_points_then_rerun_converges(Backend::Postgres).await;
}
