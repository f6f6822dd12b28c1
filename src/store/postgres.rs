//! PostgreSQL, for production: opening the pool, its migrations (`sql/postgres/`),
//! and the SQL fragments that differ from SQLite.

use super::{is_temporary, step, ConnectOptions, StoreError};
use crate::config::DatabaseUrl;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{Connection, PgConnection, PgPool};
use std::str::FromStr;
use std::time::{Duration, Instant};

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("sql/postgres");

/// Opens the pool once the server answers: an unreachable server is reported within
/// the connect timeout with its cause (the pool alone would wait and say only "pool
/// timed out").
pub(super) async fn connect(url: &DatabaseUrl, options: &ConnectOptions) -> Result<PgPool, StoreError> {
    let connect_options = PgConnectOptions::from_str(url.expose()).map_err(|source| StoreError::Connect {
        url: url.redacted(),
        source,
    })?;
    reach(url, &connect_options, options.connect_timeout).await?;
    Ok(PgPoolOptions::new()
        .max_connections(options.pool_size)
        .acquire_timeout(options.connect_timeout)
        .connect_lazy_with(connect_options))
}

/// PostgreSQL's `invalid_catalog_name` (3D000): the database named in the URL does not
/// exist on the server.
fn is_missing_database(error: &sqlx::Error) -> bool {
    match error {
        sqlx::Error::Database(error) => error.code().as_deref() == Some("3D000"),
        _ => false,
    }
}

/// Connects once, retrying temporary failures (refused, reset, starting up) every
/// 0.1 s doubling to 1 s until `timeout`; credentials or a missing database fail at once.
async fn reach(url: &DatabaseUrl, options: &PgConnectOptions, timeout: Duration) -> Result<(), StoreError> {
    let started = Instant::now();
    let mut delay = Duration::from_millis(100);
    loop {
        let remaining = timeout.saturating_sub(started.elapsed());
        let reason = match tokio::time::timeout(remaining, PgConnection::connect_with(options)).await {
            Ok(Ok(connection)) => {
                // The probe's only purpose was to answer; a failed goodbye changes nothing.
                let _ = connection.close().await;
                return Ok(());
            }
            Ok(Err(source)) if is_missing_database(&source) => return Err(StoreError::Missing {
                url: url.redacted(),
                hint:
                    "create it (`createdb`, or CREATE DATABASE as a superuser), then `tally migrate` creates the tables",
            }),
            Ok(Err(source)) if !is_temporary(&source) => {
                return Err(StoreError::Connect {
                    url: url.redacted(),
                    source,
                })
            }
            Ok(Err(source)) => source.to_string(),
            Err(_elapsed) => "no answer".to_owned(),
        };
        if started.elapsed() + delay >= timeout {
            return Err(StoreError::Unreachable {
                url: url.redacted(),
                seconds: timeout.as_secs(),
                reason,
            });
        }
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(Duration::from_secs(1));
    }
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
