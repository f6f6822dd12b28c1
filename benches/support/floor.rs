//! A floor's own connection and the plain-SQL read of repricing's inputs, shared by
//! the benches that compare a job with the best plain SQL (`sync`, `impact`).

use sqlx::Connection;
use std::time::Duration;
use tally::config::DatabaseUrl;
use tally::store::Backend;

/// A connection of the floor's own, outside the store's pool.
pub enum FloorConnection {
    Postgres(sqlx::PgConnection),
    Sqlite(sqlx::SqliteConnection),
}

/// Runs `$body` with `$c` bound to the connection, whichever the backend.
#[macro_export]
macro_rules! on_floor {
    ($connection:expr, |$c:ident| $body:expr) => {
        match $connection {
            $crate::support::floor::FloorConnection::Postgres($c) => $body,
            $crate::support::floor::FloorConnection::Sqlite($c) => $body,
        }
    };
}

impl FloorConnection {
    pub async fn open(backend: Backend, url: &DatabaseUrl) -> FloorConnection {
        match backend {
            Backend::Postgres => {
                FloorConnection::Postgres(sqlx::PgConnection::connect(url.expose()).await.expect("connects"))
            }
            Backend::Sqlite => {
                use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqliteSynchronous};
                use std::str::FromStr;
                // The store's settings, with a page cache of 32 MiB where the store's
                // connections have 8 MiB: the floor never has less room than tally.
                let options = SqliteConnectOptions::from_str(url.expose())
                    .expect("a SQLite URL")
                    .journal_mode(SqliteJournalMode::Wal)
                    .synchronous(SqliteSynchronous::Normal)
                    .busy_timeout(Duration::from_secs(30))
                    .pragma("cache_size", "-32768")
                    .pragma("temp_store", "FILE");
                FloorConnection::Sqlite(sqlx::SqliteConnection::connect_with(&options).await.expect("connects"))
            }
        }
    }

    /// Runs statements; returns the rows they affected.
    pub async fn execute(&mut self, sql: &str) -> u64 {
        on_floor!(self, |c| sqlx::raw_sql(sql)
            .execute(c)
            .await
            .unwrap_or_else(|error| panic!("floor statement {sql}: {error}"))
            .rows_affected())
    }

    /// Runs a query and fetches every row; returns how many.
    pub async fn fetch(&mut self, sql: &str) -> usize {
        on_floor!(self, |c| sqlx::query(sql)
            .fetch_all(c)
            .await
            .unwrap_or_else(|error| panic!("floor read {sql}: {error}"))
            .len())
    }

    pub async fn count(&mut self, sql: &str) -> i64 {
        on_floor!(self, |c| sqlx::query_scalar(sql)
            .fetch_one(c)
            .await
            .unwrap_or_else(|error| panic!("{sql}: {error}")))
    }

    pub async fn close(self) {
        on_floor!(self, |c| c.close().await.expect("closes"))
    }
}

/// The accounts marked for repricing, as a condition on their services row `s`.
pub const MARKED: &str =
    "s.dirty AND (s.dirty_held_since IS NULL OR s.dirty_since IS DISTINCT FROM s.dirty_held_since)";

/// The floor's read of repricing's inputs: every input of the accounts whose services
/// row `s` meets `accounts`, one statement per table (accounts with their services
/// row, assignments, each distinct assigned plan document once, quantities, computed
/// snapshots).
pub fn input_reads(accounts: &str) -> Vec<String> {
    vec![
        format!(
            "SELECT a.id, a.name, a.parent_id, a.deleted, s.overrides, s.bookkeeper, s.priced_at, s.dirty_since, \
             s.revision FROM accounts a JOIN services s ON s.account_id = a.id WHERE {accounts}"
        ),
        format!(
            "SELECT x.account_id, x.plan_id, x.vendor_id, x.overrides FROM service_plan_assignments x \
             JOIN services s ON s.account_id = x.account_id WHERE {accounts}"
        ),
        "SELECT vendor_id, plan_id, document FROM service_plans p WHERE EXISTS (SELECT 1 FROM \
         service_plan_assignments x WHERE x.vendor_id = p.vendor_id AND x.plan_id = p.plan_id)"
            .to_owned(),
        format!(
            "SELECT q.account_id, q.bucket, q.category, q.item, q.quantity FROM service_quantities q \
             JOIN services s ON s.account_id = q.account_id WHERE {accounts}"
        ),
        format!(
            "SELECT i.account_id, i.invoice FROM invoice_snapshots i JOIN services s ON s.account_id = i.account_id \
             WHERE i.kind = 'computed' AND {accounts}"
        ),
    ]
}
