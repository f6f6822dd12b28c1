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
//! A batch is one `DELETE … WHERE key IN (SELECT key … ORDER BY time, key LIMIT n)` in
//! its own transaction (with its change entries for change records): set-based, and
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

/// Rows of one kind, and the change entries that go with change records.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PrunedRows {
    pub rows: u64,
    /// `quantity_change_entries` rows (change records only; 0 otherwise).
    pub entries: u64,
}

fn count(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

impl Store {
    /// How many rows of `kind` a prune with this cutoff would delete (`--dry-run`).
    pub async fn count_prunable(&self, kind: Prunable, before: GregorianSeconds) -> Result<PrunedRows, StoreError> {
        let target = target(kind);
        let rows_sql = format!("SELECT COUNT(*) FROM {} t WHERE {}", target.table, target.prunable);
        let entries_sql = format!(
            "SELECT COUNT(*) FROM quantity_change_entries WHERE record_id IN \
             (SELECT t.id FROM quantity_change_records t WHERE {})",
            target.prunable
        );
        let mut conn = self.acquire().await?;
        let (rows, entries): (i64, i64) = on_conn!(&mut conn, |c| {
            let rows: i64 = sqlx::query_scalar(&rows_sql)
                .bind(before.0)
                .fetch_one(&mut **c)
                .await
                .map_err(step("counting prunable rows"))?;
            let entries: i64 = match kind {
                Prunable::ChangeRecords => sqlx::query_scalar(&entries_sql)
                    .bind(before.0)
                    .fetch_one(&mut **c)
                    .await
                    .map_err(step("counting prunable change entries"))?,
                Prunable::Runs | Prunable::Deliveries | Prunable::AuditLogs => 0,
            };
            (rows, entries)
        });
        Ok(PrunedRows {
            rows: u64::try_from(rows).unwrap_or(0),
            entries: u64::try_from(entries).unwrap_or(0),
        })
    }

    /// Deletes the oldest `limit` rows of `kind` that may go, in one transaction; fewer
    /// than `limit` deleted means none is left.
    pub async fn prune_batch(
        &self,
        kind: Prunable,
        before: GregorianSeconds,
        limit: u64,
    ) -> Result<PrunedRows, StoreError> {
        let target = target(kind);
        let batch = target.batch();
        let backend = self.backend();
        let delete_rows = format!(
            "DELETE FROM {} WHERE {}",
            target.table,
            in_batch(backend, target.key, &batch)
        );
        // The entries first, chosen by the same batch: in one transaction nothing else
        // prunes (the run ledger holds one prune at a time) and new records are younger
        // than any cutoff, so both statements see the same records.
        let delete_entries = format!(
            "DELETE FROM quantity_change_entries WHERE {}",
            in_batch(backend, "record_id", &batch)
        );
        let mut conn = self.acquire().await?;
        let pruned = on_conn!(&mut conn, |c| {
            let mut tx = sqlx::Connection::begin(&mut **c)
                .await
                .map_err(step("starting a prune batch"))?;
            let entries = match kind {
                Prunable::ChangeRecords => sqlx::query(&delete_entries)
                    .bind(before.0)
                    .bind(count(limit))
                    .execute(&mut *tx)
                    .await
                    .map_err(step("pruning change entries"))?
                    .rows_affected(),
                Prunable::Runs | Prunable::Deliveries | Prunable::AuditLogs => 0,
            };
            let rows = sqlx::query(&delete_rows)
                .bind(before.0)
                .bind(count(limit))
                .execute(&mut *tx)
                .await
                .map_err(step("pruning a batch"))?
                .rows_affected();
            tx.commit().await.map_err(step("committing a prune batch"))?;
            PrunedRows { rows, entries }
        });
        Ok(pruned)
    }
}
