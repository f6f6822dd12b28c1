//! Storage: the only module that imports sqlx.
//!
//! One [`Store`] over two backends, SQLite (the embedded default) and PostgreSQL. The
//! store is a struct over an enum of pools rather than a trait object: there are
//! exactly two backends, their SQL is shared where it is portable, and an enum keeps
//! every dispatch an exhaustive `match` without boxing async methods. Each backend file
//! (`sqlite.rs`, `postgres.rs`) holds only what differs: opening, migrations and the
//! few dialect fragments. Row structs stay in here; callers get domain values.
//!
//! Must not: price, decide, or read the clock. Jobs pass `now` in.

mod accounts;
mod backup;
mod billing;
mod billing_preview;
mod counting;
mod deliveries;
mod demo;
mod inventory;
mod locked;
mod postgres;
mod reconcile;
mod retention;
mod runs;
mod services;
mod sqlite;
mod statistics;
mod tokens;
mod topup;

pub use accounts::AccountListing;
pub use backup::{sqlite_integrity, PostgresTarget};
pub use billing::{
    NewAuditRow, PendingChange, PricingSource, RepricedAccount, Standing, StoredAccount, StoredAssignment, SyncScope,
    UnreadableAccount, VendorTotal,
};
pub use billing_preview::QueuedPair;
pub use counting::{CountingError, CountingQueries, CountingQuery};
pub use deliveries::{
    DeliveryResult, DeliveryState, DueBatch, DueDelivery, NewDelivery, PendingCursor, PendingDeliveries,
    UnreadableDelivery, WaitingDelivery, NEVER, NOT_CONFIGURED,
};
pub use demo::DemoCatalogReport;
pub use inventory::{InventoryWrite, InventoryWritten, KnownAccounts, RejectedDocument};
pub use reconcile::{FullRecount, ReconcileScope, ReconcileSession, StageOutcome, StagedChange};
pub use retention::PrunedRows;
pub use services::{
    AccountNode, AncestorCache, AuditCursor, AuditLogPage, AuditLogQuery, AuditLogRow, CatalogPlan, PlanAssignment,
    PlanWrite, ServicesChange, ServicesRecord,
};
pub use tokens::{
    random_secret, LoginAccount, LoginUser, NewToken, PresentedToken, TokenListing, TokenOrigin, TOKEN_ID_LENGTH,
};
pub use topup::{LedgerRow, NewLedger, NewTransaction, TopupAccount, TransactionRow, TransactionStatus};

use crate::config::DatabaseUrl;
use crate::domain::quantities::{Bucket, QuantityBuckets};
use crate::domain::summary::{ChangeRecord, DaySummary, GregorianSeconds};
use crate::domain::{AccountId, Category, ItemName, Quantities};
use sqlx::pool::PoolConnection;
use sqlx::{PgPool, Postgres, Sqlite, SqlitePool};

/// Which database a store talks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

impl Backend {
    pub fn name(self) -> &'static str {
        match self {
            Backend::Sqlite => "sqlite",
            Backend::Postgres => "postgres",
        }
    }
}

/// A failure of the store, by what the caller can do about it.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("unsupported database URL {url}: expected sqlite://PATH or postgres://…")]
    UnsupportedUrl { url: String },
    #[error("cannot open the database {url}: {source}")]
    Connect { url: String, source: sqlx::Error },
    /// The database does not exist and the command may not create it: a mistyped
    /// path or the wrong directory must not become an empty database that bills
    /// nobody. `hint` says how to create it.
    #[error("the database {url} does not exist: {hint}")]
    Missing { url: String, hint: &'static str },
    #[error("cannot migrate the database: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("counting query {file} failed: {source}")]
    Counting { file: String, source: sqlx::Error },
    #[error("database error while {step}: {source}")]
    Query { step: &'static str, source: sqlx::Error },
    #[error("invalid stored row: {0}")]
    InvalidRow(String),
    #[error("{0}")]
    Refused(String),
    /// The server did not answer in time or refused every attempt to connect.
    #[error("cannot reach the database {url} within {seconds} s: {reason}")]
    Unreachable { url: String, seconds: u64, reason: String },
}

impl StoreError {
    /// Retrying later may succeed: the connection was lost or refused, the server is
    /// restarting or shutting down, the transaction lost a serialization race or a
    /// deadlock, or the SQLite file is busy. Anything else (bad SQL, a constraint, a
    /// bad row, credentials) fails the same way again.
    pub fn is_temporary(&self) -> bool {
        match self {
            StoreError::Unreachable { .. } => true,
            StoreError::Connect { source, .. }
            | StoreError::Counting { source, .. }
            | StoreError::Query { source, .. } => is_temporary(source),
            StoreError::Migrate(sqlx::migrate::MigrateError::Execute(source)) => is_temporary(source),
            StoreError::Migrate(_)
            | StoreError::UnsupportedUrl { .. }
            | StoreError::Missing { .. }
            | StoreError::InvalidRow(_)
            | StoreError::Refused(_) => false,
        }
    }

    /// The stored data is at fault, not the database: a row that cannot be read, or a
    /// value the database refuses (PostgreSQL's class 22, data exception). Reading or
    /// writing fewer accounts at a time isolates the account that holds it.
    pub fn is_bad_data(&self) -> bool {
        match self {
            StoreError::InvalidRow(_) => true,
            StoreError::Query { source, .. } => match source {
                sqlx::Error::ColumnDecode { .. } | sqlx::Error::Decode(_) => true,
                sqlx::Error::Database(error) => error
                    .try_downcast_ref::<sqlx::postgres::PgDatabaseError>()
                    .is_some_and(|postgres| postgres.code().starts_with("22")),
                _ => false,
            },
            StoreError::UnsupportedUrl { .. }
            | StoreError::Connect { .. }
            | StoreError::Missing { .. }
            | StoreError::Migrate(_)
            | StoreError::Counting { .. }
            | StoreError::Refused(_)
            | StoreError::Unreachable { .. } => false,
        }
    }
}

/// Whether a sqlx error is worth retrying as is: the connection or pool failed, or
/// the database was busy, locked, or aborted the statement for a concurrent one.
pub(crate) fn is_temporary(error: &sqlx::Error) -> bool {
    match error {
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::Protocol(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed => true,
        sqlx::Error::Database(database) => {
            let code = database.code().map(|code| code.into_owned()).unwrap_or_default();
            if database.try_downcast_ref::<sqlx::sqlite::SqliteError>().is_some() {
                // Extended result codes: the primary code is the low byte.
                // SQLITE_BUSY (5) and SQLITE_LOCKED (6), with their variants.
                return code.parse::<i64>().is_ok_and(|code| matches!(code & 0xff, 5 | 6));
            }
            // PostgreSQL. Class 08: connection exception; 53: insufficient resources
            // (too many connections); 57P01-03: server shutting down or starting;
            // 40001 and 40P01: serialisation failure and deadlock; 55P03: lock not
            // available.
            code.starts_with("08")
                || code.starts_with("53")
                || matches!(code.as_str(), "57P01" | "57P02" | "57P03" | "40001" | "40P01" | "55P03")
        }
        // sqlx's error enum is non-exhaustive; anything else is a bug or bad data,
        // not worth retrying as is.
        _ => false,
    }
}

/// How the pool is opened (`[database]` settings).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectOptions {
    /// Connections in the pool.
    pub pool_size: u32,
    /// How long to try reaching the server at start, and to wait for a pooled connection.
    pub connect_timeout: std::time::Duration,
    /// Whether a SQLite file that does not exist is created.
    pub missing: MissingDatabase,
}

/// What opening does when the SQLite file does not exist (PostgreSQL databases are
/// never created: a missing one is always [`StoreError::Missing`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MissingDatabase {
    /// Create it (`tally migrate`, `tally demo`, tests on a fresh file).
    Create,
    /// Refuse with [`StoreError::Missing`], creating nothing on disk (every other
    /// command).
    Refuse,
}

impl Default for ConnectOptions {
    fn default() -> Self {
        ConnectOptions {
            pool_size: 4,
            connect_timeout: std::time::Duration::from_secs(10),
            missing: MissingDatabase::Create,
        }
    }
}

/// How a day's summary row takes more changes of the same day (`quantities.md` §5.6):
/// additions and removals add up, and the quantity is the one of the latest change.
/// The conflict clause of both writers of `quantity_day_summaries` (reconcile's
/// batches and manual quantities).
pub(crate) const FOLD_INTO_DAY_SUMMARY: &str = "ON CONFLICT (account_id, day, source) DO UPDATE SET \
     addition = quantity_day_summaries.addition + excluded.addition, \
     removal = quantity_day_summaries.removal + excluded.removal, \
     quantity = CASE WHEN excluded.last_timestamp >= quantity_day_summaries.last_timestamp \
                     THEN excluded.quantity ELSE quantity_day_summaries.quantity END, \
     last_timestamp = CASE WHEN excluded.last_timestamp >= quantity_day_summaries.last_timestamp \
                     THEN excluded.last_timestamp ELSE quantity_day_summaries.last_timestamp END";

/// Wraps a sqlx error with the step that failed.
pub(crate) fn step(step: &'static str) -> impl FnOnce(sqlx::Error) -> StoreError {
    move |source| StoreError::Query { step, source }
}

#[derive(Debug, Clone)]
pub(crate) enum Pool {
    Sqlite(SqlitePool),
    Postgres(PgPool),
}

/// Batches a job (reconcile, sync) writes at once on PostgreSQL, each on a pooled
/// connection of its own. One backend writing a batch is bound by its own CPU (about
/// 4-5 µs a row, whatever the server's buffers and checkpoints), and the batches of a
/// run are disjoint sets of accounts, each taking its accounts' `services` rows first,
/// so two cannot deadlock.
pub const PARALLEL_WRITERS: usize = 2;

impl Pool {
    /// How many batches may be written at once while one more connection reads: up to
    /// [`PARALLEL_WRITERS`] on PostgreSQL, as many as the pool spares beside the
    /// reader; one on SQLite, which has a single writer.
    fn parallel_writers(&self) -> usize {
        match self {
            Pool::Postgres(pool) => {
                let spare = usize::try_from(pool.options().get_max_connections().saturating_sub(1)).unwrap_or(1);
                PARALLEL_WRITERS.min(spare).max(1)
            }
            Pool::Sqlite(_) => 1,
        }
    }
}

/// One connection held for a multi-statement job (temporary tables live on it).
pub(crate) enum Conn {
    Sqlite(PoolConnection<Sqlite>),
    Postgres(PoolConnection<Postgres>),
}

/// Runs the same statement text on whichever connection it is given: the body is
/// compiled once per backend, so only portable SQL may be used inside.
macro_rules! on_conn {
    ($conn:expr, |$c:ident| $body:expr) => {
        match $conn {
            $crate::store::Conn::Sqlite($c) => $body,
            $crate::store::Conn::Postgres($c) => $body,
        }
    };
}
pub(crate) use on_conn;

/// The database handle every job and command gets.
#[derive(Debug, Clone)]
pub struct Store {
    pool: Pool,
}

impl Store {
    /// Opens the database of `url` with the default options and brings its schema up
    /// to date.
    pub async fn open(url: &DatabaseUrl) -> Result<Store, StoreError> {
        Store::open_with(url, &ConnectOptions::default()).await
    }

    /// Opens the database of `url` and brings its schema up to date.
    pub async fn open_with(url: &DatabaseUrl, options: &ConnectOptions) -> Result<Store, StoreError> {
        let store = Store::connect_with(url, options).await?;
        store.migrate().await?;
        Ok(store)
    }

    /// Opens with the default options, without migrating.
    pub async fn connect(url: &DatabaseUrl) -> Result<Store, StoreError> {
        Store::connect_with(url, &ConnectOptions::default()).await
    }

    /// Opens without migrating (for `tally migrate`, which reports what it did).
    pub async fn connect_with(url: &DatabaseUrl, options: &ConnectOptions) -> Result<Store, StoreError> {
        let text = url.expose();
        let pool = if text.starts_with("sqlite:") {
            Pool::Sqlite(sqlite::connect(url, options).await?)
        } else if text.starts_with("postgres://") || text.starts_with("postgresql://") {
            Pool::Postgres(postgres::connect(url, options).await?)
        } else {
            return Err(StoreError::UnsupportedUrl { url: url.redacted() });
        };
        Ok(Store { pool })
    }

    /// Another handle on the same database with its own pool of `connections`. Tests
    /// use a pool of one: a path that holds a connection while it waits for a second
    /// one then stalls instead of passing.
    pub async fn with_pool_size(&self, connections: u32) -> Result<Store, StoreError> {
        let connections = connections.max(1);
        let pool = match &self.pool {
            Pool::Sqlite(pool) => Pool::Sqlite(
                sqlx::sqlite::SqlitePoolOptions::new()
                    .max_connections(connections)
                    .connect_with((*pool.connect_options()).clone())
                    .await
                    .map_err(step("opening a second pool"))?,
            ),
            Pool::Postgres(pool) => Pool::Postgres(
                sqlx::postgres::PgPoolOptions::new()
                    .max_connections(connections)
                    .connect_with((*pool.connect_options()).clone())
                    .await
                    .map_err(step("opening a second pool"))?,
            ),
        };
        Ok(Store { pool })
    }

    /// How many batches a job may write at once while one more connection reads
    /// ([`Pool::parallel_writers`]).
    pub fn parallel_writers(&self) -> usize {
        self.pool.parallel_writers()
    }

    pub fn backend(&self) -> Backend {
        match self.pool {
            Pool::Sqlite(_) => Backend::Sqlite,
            Pool::Postgres(_) => Backend::Postgres,
        }
    }

    /// Applies pending migrations of `sql/<backend>/`; returns how many were applied.
    pub async fn migrate(&self) -> Result<usize, StoreError> {
        match &self.pool {
            Pool::Sqlite(pool) => sqlite::migrate(pool).await,
            Pool::Postgres(pool) => postgres::migrate(pool).await,
        }
    }

    pub async fn close(&self) {
        match &self.pool {
            Pool::Sqlite(pool) => pool.close().await,
            Pool::Postgres(pool) => pool.close().await,
        }
    }

    pub(crate) async fn acquire(&self) -> Result<Conn, StoreError> {
        match &self.pool {
            Pool::Sqlite(pool) => pool
                .acquire()
                .await
                .map(Conn::Sqlite)
                .map_err(step("acquiring a connection")),
            Pool::Postgres(pool) => pool
                .acquire()
                .await
                .map(Conn::Postgres)
                .map_err(step("acquiring a connection")),
        }
    }

    /// Runs a script of portable SQL statements separated by `;` (fixtures, operator
    /// scripts). Not for user input: the text is executed as is.
    pub async fn execute_script(&self, script: &str) -> Result<(), StoreError> {
        let mut conn = self.acquire().await?;
        on_conn!(&mut conn, |c| {
            sqlx::raw_sql(script)
                .execute(&mut **c)
                .await
                .map_err(step("running a script"))?;
        });
        Ok(())
    }

    /// Whether the database answers: one trivial query on a pooled connection (the
    /// API's `/healthz`).
    pub async fn ping(&self) -> Result<(), StoreError> {
        let mut conn = self.acquire().await?;
        on_conn!(&mut conn, |c| {
            sqlx::query("SELECT 1")
                .execute(&mut **c)
                .await
                .map_err(step("checking the database"))?;
        });
        Ok(())
    }

    /// Runs one query returning a single integer (tests and benchmarks use it for
    /// independent counts).
    pub async fn query_count(&self, sql: &str) -> Result<i64, StoreError> {
        let mut conn = self.acquire().await?;
        let count: i64 = on_conn!(&mut conn, |c| {
            sqlx::query_scalar(sql)
                .fetch_one(&mut **c)
                .await
                .map_err(step("counting"))?
        });
        Ok(count)
    }

    /// The three stored buckets of one account, and whether it is deleted.
    pub async fn quantities(&self, account: &AccountId) -> Result<QuantityBuckets, StoreError> {
        let mut conn = self.acquire().await?;
        let sql = "SELECT bucket, category, item, quantity FROM service_quantities WHERE account_id = $1 \
                   ORDER BY bucket, category, item";
        let rows: Vec<QuantityRow> = on_conn!(&mut conn, |c| {
            sqlx::query_as(sql)
                .bind(account.as_str())
                .fetch_all(&mut **c)
                .await
                .map_err(step("reading quantities"))?
        });
        let deleted: Option<bool> = on_conn!(&mut conn, |c| {
            sqlx::query_scalar("SELECT deleted FROM accounts WHERE id = $1")
                .bind(account.as_str())
                .fetch_optional(&mut **c)
                .await
                .map_err(step("reading an account"))?
        });
        let mut buckets = QuantityBuckets {
            deleted: deleted.unwrap_or(false),
            ..QuantityBuckets::default()
        };
        for row in rows {
            let (bucket, category, item, quantity) = row.parse()?;
            let target: &mut Quantities = match bucket {
                Bucket::Account => &mut buckets.account,
                Bucket::Cascade => &mut buckets.cascade,
                Bucket::Manual => &mut buckets.manual,
            };
            target.set(category, item, quantity);
        }
        Ok(buckets)
    }

    /// Replaces one manual quantity (operators' `/services/manual`; tests use it).
    pub async fn set_manual_quantity(
        &self,
        account: &AccountId,
        category: &Category,
        item: &ItemName,
        quantity: i64,
    ) -> Result<(), StoreError> {
        let mut conn = self.acquire().await?;
        let sql = "INSERT INTO service_quantities (account_id, bucket, category, item, quantity) \
                   VALUES ($1, 'manual', $2, $3, $4) \
                   ON CONFLICT (account_id, bucket, category, item) DO UPDATE SET quantity = excluded.quantity";
        on_conn!(&mut conn, |c| {
            sqlx::query(sql)
                .bind(account.as_str())
                .bind(category.as_str())
                .bind(item.as_str())
                .bind(quantity)
                .execute(&mut **c)
                .await
                .map_err(step("setting a manual quantity"))?;
        });
        Ok(())
    }

    /// Every quantity-change record of an account, oldest first, entries in order.
    pub async fn change_records(&self, account: &AccountId) -> Result<Vec<ChangeRecord>, StoreError> {
        let mut conn = self.acquire().await?;
        let sql = "SELECT id, created_at, entries FROM quantity_change_records \
                   WHERE account_id = $1 ORDER BY created_at, id";
        let rows: Vec<(String, i64, String)> = on_conn!(&mut conn, |c| {
            sqlx::query_as(sql)
                .bind(account.as_str())
                .fetch_all(&mut **c)
                .await
                .map_err(step("reading change records"))?
        });
        rows.into_iter()
            .map(|(id, created_at, entries)| {
                Ok(ChangeRecord {
                    account: account.clone(),
                    created: GregorianSeconds(created_at),
                    entries: crate::wire::record::entries_from_json(&entries)
                        .map_err(|problem| StoreError::InvalidRow(format!("change record {id}: {problem}")))?,
                })
            })
            .collect()
    }

    /// The materialised day summaries of an account: `(day, source) → row`.
    pub async fn day_summaries(&self, account: &AccountId) -> Result<Vec<(String, ItemName, DaySummary)>, StoreError> {
        let mut conn = self.acquire().await?;
        let sql = "SELECT day, source, addition, removal, quantity, last_timestamp FROM quantity_day_summaries \
                   WHERE account_id = $1 ORDER BY day, source";
        let rows: Vec<SummaryRow> = on_conn!(&mut conn, |c| {
            sqlx::query_as(sql)
                .bind(account.as_str())
                .fetch_all(&mut **c)
                .await
                .map_err(step("reading day summaries"))?
        });
        rows.into_iter()
            .map(|row| {
                let source = ItemName::parse(row.source.as_str())
                    .map_err(|error| StoreError::InvalidRow(format!("summary of {account} on {}: {error}", row.day)))?;
                Ok((
                    row.day,
                    source,
                    DaySummary {
                        addition: row.addition,
                        removal: row.removal,
                        quantity: row.quantity,
                        last_timestamp: GregorianSeconds(row.last_timestamp),
                    },
                ))
            })
            .collect()
    }

    /// Whether the account is marked for repricing, and since when.
    pub async fn dirty(&self, account: &AccountId) -> Result<Option<GregorianSeconds>, StoreError> {
        let mut conn = self.acquire().await?;
        let row: Option<(bool, Option<i64>)> = on_conn!(&mut conn, |c| {
            sqlx::query_as("SELECT dirty, dirty_since FROM services WHERE account_id = $1")
                .bind(account.as_str())
                .fetch_optional(&mut **c)
                .await
                .map_err(step("reading the dirty flag"))?
        });
        Ok(match row {
            Some((true, since)) => Some(GregorianSeconds(since.unwrap_or(0))),
            Some((false, _)) | None => None,
        })
    }

    /// Opens a reconciliation on one dedicated connection.
    pub async fn reconcile_session(&self) -> Result<ReconcileSession, StoreError> {
        let conn = self.acquire().await?;
        Ok(ReconcileSession::new(conn, self.pool.clone()))
    }
}

#[derive(sqlx::FromRow)]
struct QuantityRow {
    bucket: String,
    category: String,
    item: String,
    quantity: i64,
}

impl QuantityRow {
    fn parse(self) -> Result<(Bucket, Category, ItemName, i64), StoreError> {
        let bucket = Bucket::parse(&self.bucket)
            .ok_or_else(|| StoreError::InvalidRow(format!("unknown bucket {:?}", self.bucket)))?;
        let category = Category::parse(self.category).map_err(|error| StoreError::InvalidRow(error.to_string()))?;
        let item = ItemName::parse(self.item).map_err(|error| StoreError::InvalidRow(error.to_string()))?;
        Ok((bucket, category, item, self.quantity))
    }
}

#[derive(sqlx::FromRow)]
struct SummaryRow {
    day: String,
    source: String,
    addition: i64,
    removal: i64,
    quantity: i64,
    last_timestamp: i64,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn query(source: sqlx::Error) -> StoreError {
        StoreError::Query {
            step: "testing",
            source,
        }
    }

    #[test]
    fn lost_connections_and_timeouts_are_temporary_and_bad_rows_are_not() {
        let reset = sqlx::Error::Io(std::io::Error::from(std::io::ErrorKind::ConnectionReset));
        assert!(query(reset).is_temporary());
        assert!(query(sqlx::Error::PoolTimedOut).is_temporary());
        let unreachable = StoreError::Unreachable {
            url: "postgres://127.0.0.1:1/tally".into(),
            seconds: 10,
            reason: "connection refused".into(),
        };
        assert!(unreachable.is_temporary());
        assert!(!query(sqlx::Error::RowNotFound).is_temporary());
        assert!(!StoreError::InvalidRow("bad".into()).is_temporary());
        assert!(!StoreError::Refused("no".into()).is_temporary());
        assert!(!StoreError::UnsupportedUrl {
            url: "mysql://x".into()
        }
        .is_temporary());
    }
}
