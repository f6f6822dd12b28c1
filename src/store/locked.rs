//! Writes to one account, one at a time.
//!
//! Every write of an account's pricing inputs (plans, overrides, manual quantities,
//! billing id) is a transaction whose first statement takes the account's write lock:
//! an upsert of its `services` row that sets the repricing mark and bumps `revision`.
//! On PostgreSQL that is a row lock held to the commit; on SQLite, a first statement
//! that writes takes the database's write lock at once (waiting out `busy_timeout`),
//! with no read snapshot that could go stale before the write. What the transaction
//! reads afterwards is what it modifies, so concurrent read-modify-writes queue
//! instead of losing one another's changes. Repricing writes compare `revision` with
//! the one they read (`save_repricing`): a repricing of inputs changed meanwhile
//! writes nothing, so two commits never record the same change twice.

use super::{step, Conn, StoreError};
use crate::domain::summary::GregorianSeconds;
use crate::domain::AccountId;
use sqlx::{Postgres, Sqlite};

/// A transaction on a held connection.
pub(crate) enum Tx<'c> {
    Sqlite(sqlx::Transaction<'c, Sqlite>),
    Postgres(sqlx::Transaction<'c, Postgres>),
}

/// `on_conn!` for a transaction: the body is compiled once per backend.
macro_rules! on_tx {
    ($tx:expr, |$t:ident| $body:expr) => {
        match $tx {
            $crate::store::locked::Tx::Sqlite($t) => $body,
            $crate::store::locked::Tx::Postgres($t) => $body,
        }
    };
}
pub(crate) use on_tx;

impl Conn {
    pub(crate) async fn begin(&mut self, what: &'static str) -> Result<Tx<'_>, StoreError> {
        match self {
            Conn::Sqlite(conn) => sqlx::Connection::begin(&mut **conn)
                .await
                .map(Tx::Sqlite)
                .map_err(step(what)),
            Conn::Postgres(conn) => sqlx::Connection::begin(&mut **conn)
                .await
                .map(Tx::Postgres)
                .map_err(step(what)),
        }
    }
}

impl Tx<'_> {
    pub(crate) async fn commit(self, what: &'static str) -> Result<(), StoreError> {
        match self {
            Tx::Sqlite(tx) => tx.commit().await.map_err(step(what)),
            Tx::Postgres(tx) => tx.commit().await.map_err(step(what)),
        }
    }

    /// Takes the account's write lock as the transaction's first statement, marks the
    /// account for repricing and bumps its revision.
    pub(crate) async fn lock_account(&mut self, account: &AccountId, now: GregorianSeconds) -> Result<(), StoreError> {
        let sql = "INSERT INTO services (account_id, dirty, dirty_since, revision) VALUES ($1, TRUE, $2, 1) \
                   ON CONFLICT (account_id) DO UPDATE SET dirty = TRUE, dirty_since = excluded.dirty_since, \
                       revision = services.revision + 1";
        on_tx!(self, |t| {
            sqlx::query(sql)
                .bind(account.as_str())
                .bind(now.0)
                .execute(&mut **t)
                .await
                .map_err(step("locking the account for a write"))?;
        });
        Ok(())
    }
}
