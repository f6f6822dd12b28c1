//! SQLite, the embedded default: opening the file (created only when the caller
//! asks, [`MissingDatabase`]), its
//! migrations (`sql/sqlite/`), and the SQL fragments that differ from PostgreSQL.

use super::{step, ConnectOptions, MissingDatabase, StoreError};
use crate::config::DatabaseUrl;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::SqlitePool;
use std::str::FromStr;
use std::time::Duration;

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("sql/sqlite");

pub(super) async fn connect(url: &DatabaseUrl, pool: &ConnectOptions) -> Result<SqlitePool, StoreError> {
    let connect_error = |source| StoreError::Connect {
        url: url.redacted(),
        source,
    };
    let options = SqliteConnectOptions::from_str(url.expose()).map_err(connect_error)?;
    let in_memory = options.get_filename() == std::path::Path::new(":memory:") || url.expose().contains("mode=memory");
    if pool.missing == MissingDatabase::Refuse && !in_memory && !options.get_filename().exists() {
        return Err(StoreError::Missing {
            url: url.redacted(),
            hint: "`tally migrate` (or `tally demo`) creates it; check --config, TALLY_DATABASE_URL and the working directory",
        });
    }
    let options = options
        .create_if_missing(pool.missing == MissingDatabase::Create)
        // WAL lets readers (the API) run beside a reconcile; NORMAL is durable at
        // every checkpoint, which is what WAL mode is designed for.
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(SqliteSynchronous::Normal)
        .busy_timeout(Duration::from_secs(30))
        // Temporary tables spill to a file, not to memory.
        .pragma("cache_size", cache_size_pragma(CACHE_KIB))
        .pragma("temp_store", "FILE")
        .statement_cache_capacity(STATEMENT_CACHE);
    SqlitePoolOptions::new()
        .max_connections(pool.pool_size)
        .acquire_timeout(pool.connect_timeout)
        .connect_with(options)
        .await
        .map_err(|source| StoreError::Connect {
            url: url.redacted(),
            source,
        })
}

pub(super) async fn migrate(pool: &SqlitePool) -> Result<usize, StoreError> {
    let before = applied(pool).await?;
    MIGRATOR.run(pool).await?;
    Ok(applied(pool).await?.saturating_sub(before))
}

async fn applied(pool: &SqlitePool) -> Result<usize, StoreError> {
    let exists: i64 =
        sqlx::query_scalar("SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name = '_sqlx_migrations'")
            .fetch_one(pool)
            .await
            .map_err(step("reading migrations"))?;
    if exists == 0 {
        return Ok(0);
    }
    let count: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM _sqlx_migrations")
        .fetch_one(pool)
        .await
        .map_err(step("reading migrations"))?;
    Ok(usize::try_from(count).unwrap_or(0))
}

/// Page cache of each pooled connection, in KiB. It is also what SQLite lets each
/// sorter of a statement hold before it spills the sort to a temporary file, so a
/// process's memory is about the pool's caches plus one cache per sorter of the
/// statements running. With 32 MiB for every connection, SQLite billing runs peaked
/// at 210 MiB at 10,000 accounts and 342 MiB at 100,000 (benches/results/nightly.md,
/// "Memory").
pub(super) const CACHE_KIB: u32 = 8 * 1024;

/// The cache of reconcile's session (back to [`CACHE_KIB`] when it finishes): its
/// set-based statements sort a row per item (roll-up, indexes), one sorter each, and
/// ran about twice as slowly with 8 MiB.
pub(super) const RECONCILE_CACHE_KIB: u32 = 32 * 1024;

/// The cache while reconcile runs its counting statement: that one statement holds a
/// sorter per `GROUP BY` of every counting query (18 in the built-in set) until it
/// ends, each as large as the cache, 160 MiB at 10,000 accounts with 32 MiB. Each
/// counting query reads its table once; counting took about as long with 2 MiB.
pub(super) const COUNTING_CACHE_KIB: u32 = 2 * 1024;

/// The cache while reconcile runs its diff, which holds a sorter for the order of its
/// rows and its two windows, and others for its joins, until it ends.
pub(super) const DIFF_CACHE_KIB: u32 = 8 * 1024;

/// Prepared statements each connection keeps (sqlx's default is 100). Multi-row
/// writes differ in their number of rows from batch to batch, each shape a statement of
/// its own, large (a program step per value): with 100, sync's resident size grew by
/// 27 MiB over a 100,000-account run, with 24 by 2 MiB.
const STATEMENT_CACHE: usize = 24;

/// `PRAGMA cache_size`'s value for a cache of `kib` KiB (negative means KiB).
pub(super) fn cache_size_pragma(kib: u32) -> String {
    format!("-{kib}")
}

/// An integer as 10 lowercase hex digits (record ids).
pub(super) fn hex10(expression: &str) -> String {
    format!("printf('%010x', {expression})")
}

/// Temporary tables get indexes for the anti-joins of the diff: SQLite has no hash
/// join, so without them each lookup would scan.
pub(super) const INDEX_TEMP_TABLES: bool = true;
