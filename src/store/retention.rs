//! Retention: deleting finished records older than a cutoff, a batch at a time
//! (`tally run prune`, `jobs::prune`).
//!
//! Each kind of record has one predicate, written once here and used both to count
//! (`--dry-run`) and to delete, so the two never disagree. The predicates are where
//! "never delete what is still needed" lives: a run still running, and the newest run
//! of each job (the scheduler reads a job's last scheduled time from it); a delivery
//! not acknowledged (in flight, waiting, or refused: a failure a person must see); an
//! audit row still pending, or carried by a delivery still in flight. Invoice
//! snapshots (the latest invoices of each account), day summaries, ledgers and
//! transactions are never touched.
//!
//! A batch is one `DELETE … WHERE key IN (SELECT key … ORDER BY time, key LIMIT n)`
//! (a change record holds its entries, so they go with it): set-based, and
//! short enough that other writers (SQLite's single writer above all) wait at most
//! one batch. The batch's keys are read along the (time, key) indexes of migration
//! 0016, and the rows deleted through the primary key: on PostgreSQL the keys are
//! an array (`= ANY(ARRAY(…))`), since with `IN (…)` the planner hash-joined the
//! whole table for every batch (100,000 old change records with 200,000 entries and
//! 100,000 old audit rows: 15.7 s, 2.4 s with arrays; debug build).
//! Must not: decide the cutoffs or loop; `jobs::prune` does.

use super::{on_conn, step, Backend, Store, StoreError};
use crate::domain::retention::Prunable;
use crate::domain::summary::GregorianSeconds;

/// One kind of record as SQL: its table (aliased `t`), key, age column and the
/// predicate of what may go (`$1` is the cutoff).
struct Target {
    table: &'static str,
    key: &'static str,
    age: &'static str,
    prunable: &'static str,
}

fn target(kind: Prunable) -> Target {
    match kind {
        Prunable::Runs => Target {
            table: "runs",
            key: "id",
            age: "ended_at",
            prunable: "t.status <> 'running' AND t.ended_at < $1 \
                       AND t.scheduled_for < (SELECT MAX(newest.scheduled_for) FROM runs newest \
                                              WHERE newest.job = t.job)",
        },
        Prunable::Deliveries => Target {
            table: "deliveries",
            key: "id",
            age: "updated_at",
            prunable: "t.status = 'acknowledged' AND t.updated_at < $1",
        },
        Prunable::ChangeRecords => Target {
            table: "quantity_change_records",
            key: "id",
            age: "created_at",
            prunable: "t.created_at < $1",
        },
        Prunable::AuditLogs => Target {
            table: "audit_logs",
            key: "id",
            age: "created_at",
            prunable: "t.status <> 'pending' AND t.created_at < $1 \
                       AND NOT EXISTS (SELECT 1 FROM deliveries waiting \
                                       WHERE waiting.id = t.delivery_id AND waiting.status = 'in_flight')",
        },
    }
}

/// `column` is one of the keys `batch` selects, as each backend reads it through an
/// index.
fn in_batch(backend: Backend, column: &str, batch: &str) -> String {
    match backend {
        Backend::Sqlite => format!("{column} IN ({batch})"),
        Backend::Postgres => format!("{column} = ANY(ARRAY({batch}))"),
    }
}

impl Target {
    /// The keys of the next batch, oldest first (`$2` is the batch size).
    fn batch(&self) -> String {
        format!(
            "SELECT t.{key} FROM {table} t WHERE {prunable} ORDER BY t.{age}, t.{key} LIMIT $2",
            key = self.key,
            table = self.table,
            prunable = self.prunable,
            age = self.age,
        )
    }
}

/// How many change entries a row of `kind` holds, as SQL over that row.
fn entry_count(kind: Prunable, backend: Backend) -> &'static str {
    match (kind, backend) {
        (Prunable::ChangeRecords, Backend::Postgres) => "CAST(json_array_length(entries::json) AS BIGINT)",
        (Prunable::ChangeRecords, Backend::Sqlite) => "json_array_length(entries)",
        (Prunable::Runs | Prunable::Deliveries | Prunable::AuditLogs, _) => "CAST(0 AS BIGINT)",
    }
}

/// Rows of one kind, and the change entries those rows held.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PrunedRows {
    pub rows: u64,
    /// Entries of the change records among the rows (0 for other kinds).
    pub entries: u64,
}

fn count(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

impl Store {
    /// How many rows of `kind` a prune with this cutoff would delete (`--dry-run`).
    pub async fn count_prunable(&self, kind: Prunable, before: GregorianSeconds) -> Result<PrunedRows, StoreError> {
        let target = target(kind);
        let sql = format!(
            "SELECT COUNT(*), CAST(COALESCE(SUM({}), 0) AS BIGINT) FROM {} t WHERE {}",
            entry_count(kind, self.backend()),
            target.table,
            target.prunable
        );
        let mut conn = self.acquire().await?;
        let (rows, entries): (i64, i64) = on_conn!(&mut conn, |c| {
            sqlx::query_as(&sql)
                .bind(before.0)
                .fetch_one(&mut **c)
                .await
                .map_err(step("counting prunable rows"))?
        });
        Ok(PrunedRows {
            rows: u64::try_from(rows).unwrap_or(0),
            entries: u64::try_from(entries).unwrap_or(0),
        })
    }

    /// Deletes the oldest `limit` rows of `kind` that may go, in one statement; fewer
    /// than `limit` deleted means none is left.
    pub async fn prune_batch(
        &self,
        kind: Prunable,
        before: GregorianSeconds,
        limit: u64,
    ) -> Result<PrunedRows, StoreError> {
        let target = target(kind);
        let backend = self.backend();
        let delete = format!(
            "DELETE FROM {} WHERE {} RETURNING {}",
            target.table,
            in_batch(backend, target.key, &target.batch()),
            entry_count(kind, backend)
        );
        let mut conn = self.acquire().await?;
        let entries: Vec<i64> = on_conn!(&mut conn, |c| {
            sqlx::query_scalar(&delete)
                .bind(before.0)
                .bind(count(limit))
                .fetch_all(&mut **c)
                .await
                .map_err(step("pruning a batch"))?
        });
        Ok(PrunedRows {
            rows: u64::try_from(entries.len()).unwrap_or(u64::MAX),
            entries: entries.iter().map(|&held| u64::try_from(held).unwrap_or(0)).sum(),
        })
    }
}
