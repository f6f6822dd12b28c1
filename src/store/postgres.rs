//! PostgreSQL, for production: opening the pool, its migrations (`sql/postgres/`),
//! and the SQL fragments that differ from SQLite.

use super::{step, StoreError};
use crate::config::DatabaseUrl;
use sqlx::postgres::PgPoolOptions;
use sqlx::PgPool;
use std::time::Duration;

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("sql/postgres");

pub(super) async fn connect(url: &DatabaseUrl) -> Result<PgPool, StoreError> {
    PgPoolOptions::new()
        .max_connections(4)
        .acquire_timeout(Duration::from_secs(30))
        .connect(url.expose())
        .await
        .map_err(|source| StoreError::Connect {
            url: url.redacted(),
            source,
        })
}

pub(super) async fn migrate(pool: &PgPool) -> Result<usize, StoreError> {
    let before = applied(pool).await?;
    MIGRATOR.run(pool).await?;
    Ok(applied(pool).await?.saturating_sub(before))
}

async fn applied(pool: &PgPool) -> Result<usize, StoreError> {
    let exists: bool = sqlx::query_scalar("SELECT to_regclass('_sqlx_migrations') IS NOT NULL")
        .fetch_one(pool)
        .await
        .map_err(step("reading migrations"))?;
    if !exists {
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
    format!("lpad(to_hex({expression}), 10, '0')")
}

/// PostgreSQL hash-joins temporary tables; statistics (ANALYZE) matter, indexes do not.
pub(super) const INDEX_TEMP_TABLES: bool = false;
