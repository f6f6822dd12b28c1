//! What `tally backup` needs from the database: an online copy of a SQLite database,
//! its integrity check, and, for PostgreSQL, where `pg_dump` must connect and the
//! server's version.
//!
//! SQLite's `VACUUM INTO` writes a new database from one read transaction: under WAL
//! it sees one consistent state while other connections keep writing, which copying
//! the file (with its `-wal` beside it) does not. Must not: decide file names or
//! overwrite anything; the backup command does.

use super::{step, Pool, Store, StoreError};
use sqlx::sqlite::SqliteConnectOptions;
use sqlx::{ConnectOptions, Connection};
use std::path::Path;

/// Where `pg_dump` connects: the configured URL's parts, without its password
/// (`pg_dump` takes it from `~/.pgpass` or `PGPASSWORD`, never a command line).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PostgresTarget {
    pub host: String,
    pub port: u16,
    pub user: String,
    pub database: Option<String>,
}

impl Store {
    /// Writes a consistent copy of this SQLite database to `path`, which must not exist.
    /// Refused on PostgreSQL.
    pub async fn sqlite_copy_into(&self, path: &Path) -> Result<(), StoreError> {
        let Pool::Sqlite(pool) = &self.pool else {
            return Err(StoreError::Refused(
                "a PostgreSQL database is copied with pg_dump, not by tally".to_owned(),
            ));
        };
        // The file name is a bound value: any path, quotes included, is taken as is.
        sqlx::query("VACUUM INTO $1")
            .bind(path.to_string_lossy().into_owned())
            .execute(pool)
            .await
            .map_err(step("copying the database (VACUUM INTO)"))?;
        Ok(())
    }

    /// The file of this SQLite database; `None` on PostgreSQL or in memory.
    pub fn sqlite_file(&self) -> Option<std::path::PathBuf> {
        match &self.pool {
            Pool::Sqlite(pool) => Some(pool.connect_options().get_filename().to_owned()),
            Pool::Postgres(_) => None,
        }
    }

    /// The PostgreSQL server's version number (`server_version_num`, e.g. 150020),
    /// and where pg_dump connects; `None` on SQLite.
    pub async fn postgres_server(&self) -> Result<Option<(u32, PostgresTarget)>, StoreError> {
        let Pool::Postgres(pool) = &self.pool else {
            return Ok(None);
        };
        let version: String = sqlx::query_scalar("SELECT current_setting('server_version_num')")
            .fetch_one(pool)
            .await
            .map_err(step("reading the server version"))?;
        let version = version
            .trim()
            .parse()
            .map_err(|_| StoreError::InvalidRow(format!("server_version_num {version:?} is not a number")))?;
        let options = pool.connect_options();
        let target = PostgresTarget {
            host: options.get_host().to_owned(),
            port: options.get_port(),
            user: options.get_username().to_owned(),
            database: options.get_database().map(str::to_owned),
        };
        Ok(Some((version, target)))
    }
}

/// `PRAGMA integrity_check` of a SQLite file, opened read-only: `ok`, or the problems
/// SQLite lists.
pub async fn sqlite_integrity(path: &Path) -> Result<Vec<String>, StoreError> {
    let url = path.display().to_string();
    let mut connection = SqliteConnectOptions::new()
        .filename(path)
        .read_only(true)
        // A large copy takes seconds to check; that is expected, not a slow statement.
        .disable_statement_logging()
        .connect()
        .await
        .map_err(|source| StoreError::Connect { url, source })?;
    let answers: Vec<String> = sqlx::query_scalar("PRAGMA integrity_check")
        .fetch_all(&mut connection)
        .await
        .map_err(step("checking the copy's integrity"))?;
    // The check's answer is all that matters; a failed goodbye changes nothing.
    let _ = connection.close().await;
    Ok(answers)
}
