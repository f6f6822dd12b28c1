//! Shared test plumbing: a fresh SQLite file store and a fresh PostgreSQL store (its
//! own database, dropped afterwards), and the macro that runs one test on both.

use std::sync::atomic::{AtomicU64, Ordering};
use tally::config::DatabaseUrl;
use tally::domain::summary::GregorianSeconds;
use tally::domain::AccountId;
use tally::jobs::reconcile::{run_once, ReconcileOptions, ReconcileReport};
use tally::store::{CountingQueries, ReconcileScope, Store};

pub const POSTGRES_ADMIN_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";

/// A store and what keeps its database alive.
pub struct TestStore {
    pub store: Store,
    /// Its URL, for a spawned `tally` (`TALLY_DATABASE_URL`).
    pub url: String,
    _sqlite_dir: Option<tempfile::TempDir>,
    postgres_database: Option<String>,
}

pub async fn sqlite_store() -> TestStore {
    let directory = tempfile::tempdir().expect("temp dir");
    let url = DatabaseUrl::new(format!("sqlite://{}", directory.path().join("tally.db").display()));
    let store = Store::open(&url).await.expect("sqlite store opens and migrates");
    TestStore {
        store,
        url: url.expose().to_owned(),
        _sqlite_dir: Some(directory),
        postgres_database: None,
    }
}

/// A store on a new PostgreSQL database, or `None` (with a loud message) when the
/// server is unreachable and `TALLY_REQUIRE_POSTGRES` is not `1`.
pub async fn postgres_store() -> Option<TestStore> {
    let (name, url) = empty_postgres_database().await?;
    let url = DatabaseUrl::new(url);
    let store = Store::open(&url).await.expect("postgres store opens and migrates");
    Some(TestStore {
        store,
        url: url.expose().to_owned(),
        _sqlite_dir: None,
        postgres_database: Some(name),
    })
}

/// A new, empty PostgreSQL database: its name (for [`drop_postgres_database`]) and
/// URL; `None` as [`postgres_store`] says.
pub async fn empty_postgres_database() -> Option<(String, String)> {
    use sqlx::Connection;
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let admin = match sqlx::PgConnection::connect(POSTGRES_ADMIN_URL).await {
        Ok(connection) => connection,
        Err(error) => {
            if std::env::var("TALLY_REQUIRE_POSTGRES").as_deref() == Ok("1") {
                panic!("PostgreSQL unreachable at {POSTGRES_ADMIN_URL} and TALLY_REQUIRE_POSTGRES=1: {error}");
            }
            eprintln!("SKIPPED: PostgreSQL unreachable at {POSTGRES_ADMIN_URL}: {error}");
            return None;
        }
    };
    let name = format!(
        "tally_test_{}_{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    );
    let mut admin = admin;
    sqlx::query(&format!("DROP DATABASE IF EXISTS {name}"))
        .execute(&mut admin)
        .await
        .expect("drop old test db");
    sqlx::query(&format!("CREATE DATABASE {name}"))
        .execute(&mut admin)
        .await
        .expect("create test db");
    admin.close().await.expect("close admin connection");
    let url = format!("postgres://postgres@127.0.0.1:5432/{name}");
    Some((name, url))
}

impl TestStore {
    /// The URL of its PostgreSQL database, for a spawned `tally`; `None` on SQLite.
    pub fn postgres_url(&self) -> Option<String> {
        let name = self.postgres_database.as_ref()?;
        Some(format!("postgres://postgres@127.0.0.1:5432/{name}"))
    }

    /// Runs the `tally` binary on this store (no config file, no `RUST_LOG`).
    pub fn tally(&self, args: &[&str]) -> std::process::Output {
        std::process::Command::new(env!("CARGO_BIN_EXE_tally"))
            .args(args)
            .env_remove("TALLY_CONFIG")
            .env_remove("RUST_LOG")
            .env("TALLY_DATABASE_URL", &self.url)
            .output()
            .expect("tally runs")
    }
}

impl Drop for TestStore {
    fn drop(&mut self) {
        if let Some(name) = self.postgres_database.take() {
            drop_postgres_database(name);
        }
    }
}

/// Drops a test's PostgreSQL database, from a `Drop` impl: drop runs inside the
/// test's runtime, so a helper thread gets its own.
pub fn drop_postgres_database(name: String) {
    let dropped = std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        runtime.block_on(async {
            use sqlx::Connection;
            if let Ok(mut admin) = sqlx::PgConnection::connect(POSTGRES_ADMIN_URL).await {
                let _ = sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                    .execute(&mut admin)
                    .await;
                let _ = admin.close().await;
            }
        });
    });
    let _ = dropped.join();
}

/// Runs an async test body against SQLite and against PostgreSQL. The body takes the
/// `&Store`; with `@with database => EXPRESSION;` it takes that expression of the
/// [`TestStore`] instead (e.g. `&database`, for a test that also spawns `tally`).
macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {
        crate::helpers::on_both_backends!(@with database => &database.store; $($name),*);
    };
    (@with $database:ident => $argument:expr; $($name:ident),* $(,)?) => {
        $(
            mod $name {
                #[tokio::test]
                async fn sqlite() {
                    let $database = crate::helpers::sqlite_store().await;
                    super::$name($argument).await;
                }

                #[tokio::test]
                async fn postgres() {
                    let Some($database) = crate::helpers::postgres_store().await else {
                        return;
                    };
                    super::$name($argument).await;
                }
            }
        )*
    };
}
pub(crate) use on_both_backends;

/// Sets up a spawned `tally` (or a shell that runs it) as an operator's one-off command:
/// in `dir`, on the SQLite file `dir/tally.db`, with no configuration file.
pub fn on_sqlite_in<'a>(
    command: &'a mut std::process::Command,
    dir: &std::path::Path,
) -> &'a mut std::process::Command {
    command.current_dir(dir).env_remove("TALLY_CONFIG").env(
        "TALLY_DATABASE_URL",
        format!("sqlite://{}", dir.join("tally.db").display()),
    )
}

pub fn id(text: &str) -> AccountId {
    AccountId::parse(text).expect("test account id")
}

/// A Gregorian-seconds instant.
pub fn at(gregorian: i64) -> GregorianSeconds {
    GregorianSeconds(gregorian)
}

pub fn options(scope: ReconcileScope, now: GregorianSeconds) -> ReconcileOptions {
    ReconcileOptions {
        scope,
        dry_run: false,
        now,
        batch_size: 3,
        // Test data carries hand-made classifications: keep them.
        classifiers: None,
    }
}

/// A full, writing reconcile at `now`.
pub async fn reconcile_all(store: &Store, now: GregorianSeconds) -> ReconcileReport {
    run_once(store, &CountingQueries::builtin(), &options(ReconcileScope::All, now))
        .await
        .expect("reconcile runs")
}

/// A portable `INSERT INTO accounts` for a test tree.
pub fn account_sql(account: &str, parent: Option<&str>) -> String {
    match parent {
        Some(parent) => {
            format!("INSERT INTO accounts (id, parent_id, name) VALUES ('{account}', '{parent}', '{account}');")
        }
        None => format!("INSERT INTO accounts (id, parent_id, name) VALUES ('{account}', NULL, '{account}');"),
    }
}
