//! Planner statistics of the tables a job is about to read right after a large write.
//!
//! PostgreSQL analyses a table in the background (autovacuum) once enough of it has
//! changed, but a billing run reads what it has just written within seconds. On a
//! first night sync writes 120,000 audit rows into a table the planner still takes
//! for empty, and bookkeeper-sync's read of the pending rows of 500 accounts then
//! took 550 ms per batch at 100,000 accounts, against 5 ms once the table was
//! analysed; reconcile writes 3.6 million quantities the same way, and sync's reads
//! of a batch's quantities took 45 ms instead of 15. Sync and bookkeeper-sync both
//! start here. [`Store::refresh_statistics`] does at once what autovacuum would soon
//! do: it analyses the tables that changed past the same kind of threshold. A quiet
//! night costs one catalog read. SQLite has no background analysis and its planner
//! is not misled here: nothing to do.

use super::{step, Pool, Store, StoreError};

/// Rows changed since the last analysis below which a wrong plan cannot cost much.
const CHANGED_ROWS_FLOOR: i64 = 1_000;

/// Share of a table's rows that must have changed since its last analysis
/// (autovacuum's default `autovacuum_analyze_scale_factor`).
const CHANGED_SHARE: f64 = 0.1;

impl Store {
    /// Analyses those of `tables` changed since their last analysis by more than
    /// [`CHANGED_ROWS_FLOOR`] rows and [`CHANGED_SHARE`] of their size; returns their
    /// names. `SKIP_LOCKED`: a table autovacuum is analysing right now is left to it.
    ///
    /// The change counts come from the server's activity statistics, which other
    /// connections publish when they go idle, at most about a second late: the last
    /// second of a long write may be missing, which a threshold of a tenth absorbs.
    pub async fn refresh_statistics(&self, tables: &[&'static str]) -> Result<Vec<String>, StoreError> {
        let Pool::Postgres(pool) = &self.pool else {
            return Ok(Vec::new());
        };
        let names: Vec<String> = tables.iter().map(|table| (*table).to_owned()).collect();
        let stale: Vec<String> = sqlx::query_scalar(
            "SELECT s.relname::text FROM pg_stat_user_tables s JOIN pg_class c ON c.oid = s.relid \
             WHERE s.schemaname = current_schema() AND s.relname = ANY($1) \
               AND s.n_mod_since_analyze > GREATEST($2, $3 * GREATEST(c.reltuples, 0)) \
             ORDER BY s.relname",
        )
        .bind(&names)
        .bind(CHANGED_ROWS_FLOOR)
        .bind(CHANGED_SHARE)
        .fetch_all(pool)
        .await
        .map_err(step("reading table statistics"))?;
        if stale.is_empty() {
            return Ok(stale);
        }
        // The names are the caller's static table names that the catalog matched.
        let statement = format!("ANALYZE (SKIP_LOCKED) {}", stale.join(", "));
        let started = std::time::Instant::now();
        sqlx::query(&statement)
            .execute(pool)
            .await
            .map_err(step("analysing tables"))?;
        tracing::debug!(tables = ?stale, elapsed_ms = started.elapsed().as_millis(), "tables analysed");
        Ok(stale)
    }
}
