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
        // 32 MiB of page cache per connection: the benchmark ran as fast as with
        // 128 MiB and with 40 % less peak memory; the 2 MiB default is too small for
        // set-based statements. Temporary tables spill to a file, not to memory.
        .pragma("cache_size", "-32768")
        .pragma("temp_store", "FILE");
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

/// An integer as 10 lowercase hex digits (record ids).
pub(super) fn hex10(expression: &str) -> String {
    format!("printf('%010x', {expression})")
}

/// Temporary tables get indexes for the anti-joins of the diff: SQLite has no hash
/// join, so without them each lookup would scan.
pub(super) const INDEX_TEMP_TABLES: bool = true;
