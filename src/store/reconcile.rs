//! The set-based SQL of reconciliation, on one connection with temporary tables.
//!
//! Steps, each one statement over all accounts in scope (`quantities.md` §3, §4):
//! 1. walk the tree from the roots (`reconcile_tree`, `reconcile_closure`): accounts
//!    the walk cannot reach are returned to the job, which classifies them;
//! 2. run every counting query into `reconcile_counts` (the new account buckets);
//! 3. roll the counts up the closure into `reconcile_cascade` (new cascade buckets);
//! 4. diff both against `service_quantities` into `reconcile_changes`, each change
//!    numbered with its account's batch and its place in the account's record;
//! 5. write, in batches of whole accounts per transaction: quantity rows, one change
//!    record with its entries, the day summaries, and the dirty flag.
//!
//! Temporary tables are private to the connection, so a dry run writes nothing.

use super::{
    on_conn, postgres, sqlite, step, Backend, Conn, Pool, StoreError, FOLD_INTO_DAY_SUMMARY, PARALLEL_WRITERS,
};
use crate::domain::quantities::{Bucket, QuantityChange};
use crate::domain::summary::{DaySummary, GregorianSeconds};
use crate::domain::{AccountId, Category, ItemName};
use crate::store::counting::CountingQueries;
use crate::wire::record;
use std::collections::BTreeMap;

/// The timed steps of a batch write, in the order of `per_statement_ms` in the
/// `writing batches` debug event: quantities, deletes, records, summaries, marks, commit.
const WRITE_STEPS: usize = 6;

/// Writes batch `$batch` in the open transaction `$tx` with the statements of the
/// [`BatchWriter`] `$writer` and commits, adding each step's time to `$spent`
/// (`[Duration; WRITE_STEPS]`). A macro, as `on_conn!` is: the same body for both
/// backends' transactions, and for a writer's own connection.
macro_rules! write_batch {
    ($writer:expr, $tx:ident, $batch:expr, $spent:ident) => {{
        let writer: &BatchWriter = &$writer;
        let batch: i64 = $batch;
        let part = std::time::Instant::now();
        sqlx::query(&writer.mark_dirty)
            .bind(batch)
            .bind(writer.parameters.now)
            .execute(&mut *$tx)
            .await
            .map_err(step("marking accounts for repricing"))?;
        $spent[4] += part.elapsed();
        let part = std::time::Instant::now();
        sqlx::query(&writer.update_quantities)
            .bind(batch)
            .execute(&mut *$tx)
            .await
            .map_err(step("updating quantities"))?;
        sqlx::query(&writer.insert_quantities)
            .bind(batch)
            .execute(&mut *$tx)
            .await
            .map_err(step("inserting quantities"))?;
        $spent[0] += part.elapsed();
        let part = std::time::Instant::now();
        sqlx::query(&writer.delete_quantities)
            .bind(batch)
            .execute(&mut *$tx)
            .await
            .map_err(step("removing quantities"))?;
        $spent[1] += part.elapsed();
        let part = std::time::Instant::now();
        sqlx::query(&writer.insert_records)
            .bind(batch)
            .bind(writer.parameters.year_prefix.as_str())
            .bind(writer.parameters.run_id.as_str())
            .bind(writer.parameters.now)
            .bind(writer.parameters.run_tag.as_str())
            .execute(&mut *$tx)
            .await
            .map_err(step("writing change records"))?;
        $spent[2] += part.elapsed();
        let part = std::time::Instant::now();
        // Under the batch's `services` locks, which every writer of a summary takes
        // first, nobody else can add one of these accounts' rows for today.
        let summarised_today: bool = sqlx::query_scalar(&writer.summarised_today)
            .bind(batch)
            .bind(writer.parameters.day.as_str())
            .fetch_one(&mut *$tx)
            .await
            .map_err(step("looking for today's day summaries"))?;
        let summaries = if summarised_today {
            &writer.upsert_summaries
        } else {
            &writer.insert_summaries
        };
        sqlx::query(summaries)
            .bind(batch)
            .bind(writer.parameters.day.as_str())
            .bind(writer.parameters.now)
            .execute(&mut *$tx)
            .await
            .map_err(step("updating day summaries"))?;
        $spent[3] += part.elapsed();
        let part = std::time::Instant::now();
        $tx.commit().await.map_err(step("committing a batch"))?;
        $spent[5] += part.elapsed();
    }};
}

/// Which accounts get their account bucket recounted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReconcileScope {
    /// Every account reachable from a root.
    All,
    /// These accounts (their ancestors' cascade buckets are recomputed too).
    Accounts(Vec<AccountId>),
    /// The accounts of `reconcile_marks` (those whose inventory changed since their
    /// last recount), as [`ReconcileScope::Accounts`]; marked accounts the walk did
    /// not reach are left out, and keep their marks.
    Marked,
    /// The nightly scope: the marked accounts, their differences rolled up the
    /// closure onto the stored cascades (no descendant outside the marks is read);
    /// or, when that could miss a change, every account as [`ReconcileScope::All`]
    /// (see [`ReconcileSession::full_recount_due`]).
    Incremental,
}

/// Why a run recounted every account rather than the marked ones.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FullRecount {
    /// The scope asked for it (`ReconcileScope::All`).
    Requested,
    /// An incremental run found a reason in `reconcile_full_requests` (the account
    /// tree changed, an inventory table was truncated, a run stopped midway, ...).
    Pending(String),
    /// The counting queries differ from those of the last full recount.
    CountingQueriesChanged,
    /// Stored ancestor paths differ from the tree walked now.
    TreeChanged,
}

impl std::fmt::Display for FullRecount {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FullRecount::Requested => f.write_str("requested"),
            FullRecount::Pending(reason) => write!(f, "pending request: {reason}"),
            FullRecount::CountingQueriesChanged => f.write_str("counting queries changed"),
            FullRecount::TreeChanged => f.write_str("account tree changed"),
        }
    }
}

/// `ingest_state` key of the fingerprint of the counting queries the stored
/// quantities were last fully recounted with.
const COUNTING_FINGERPRINT_KEY: &str = "reconcile_counting_queries";

/// `reconcile_full_requests` reason held while a run writes its batches: a run that
/// dies between two batches leaves cascades that no longer add up, which only a full
/// recount repairs.
const INTERRUPTED_RUN: &str = "run stopped while writing";

/// One change the run found: an account and one of its `(bucket, category, item)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StagedChange {
    pub account: AccountId,
    pub change: QuantityChange,
}

/// What staging found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StageOutcome {
    pub accounts_scanned: u64,
    pub accounts_changed: u64,
    pub items_changed: u64,
    /// Requested accounts that do not exist.
    pub unknown_accounts: Vec<AccountId>,
    /// Set when every reachable account was recounted, with why.
    pub full_recount: Option<FullRecount>,
}

fn elapsed_ms(started: std::time::Instant) -> u64 {
    u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX)
}

/// A reconcile in progress on one connection.
pub struct ReconcileSession {
    pub(super) conn: Conn,
    /// The store's pool, for the connections that write batches beside the session's.
    pool: Pool,
    backend: Backend,
    /// What `stage` decided: a full recount settles pending requests and records the
    /// counting fingerprint once written.
    full_recount: Option<FullRecount>,
    /// The `INTERRUPTED_RUN` token this session wrote, deleted once it has written.
    writing_token: Option<String>,
}

const TEMP_TABLES: &[&str] = &[
    "reconcile_tree",
    "reconcile_closure",
    "reconcile_requested",
    "reconcile_scope",
    "reconcile_cascade_scope",
    "reconcile_counts",
    "reconcile_cascade",
    "reconcile_changes",
    "reconcile_changed",
    "reconcile_marked",
    "reconcile_requests_seen",
];

const BUCKET_RANK: &str = "CASE bucket WHEN 'account' THEN 0 WHEN 'manual' THEN 1 ELSE 2 END";
/// The reconcile session's PostgreSQL settings, undone by [`RECONCILE_SETTINGS_RESET`]:
/// memory for its sorts and hashes (the floor's), and the cost of a random page read
/// for storage that is not a spinning disk. With the default 4.0 the planner read whole
/// inventory tables to count 100 accounts spread over them (0.52 s at 10,000 accounts,
/// 0.03-0.06 s by account index); a full recount keeps its hash joins.
const RECONCILE_SETTINGS: &[&str] = &["SET work_mem = '256MB'", "SET random_page_cost = 1.1"];
const RECONCILE_SETTINGS_RESET: &[&str] = &["RESET work_mem", "RESET random_page_cost"];

impl ReconcileSession {
    pub(super) fn new(conn: Conn, pool: Pool) -> Self {
        let backend = match pool {
            Pool::Sqlite(_) => Backend::Sqlite,
            Pool::Postgres(_) => Backend::Postgres,
        };
        ReconcileSession {
            conn,
            pool,
            backend,
            full_recount: None,
            writing_token: None,
        }
    }

    fn index_temp_tables(&self) -> bool {
        match self.backend {
            Backend::Sqlite => sqlite::INDEX_TEMP_TABLES,
            Backend::Postgres => postgres::INDEX_TEMP_TABLES,
        }
    }

    /// Runs statements that take no parameter.
    async fn run(&mut self, what: &'static str, statements: &[&str]) -> Result<(), StoreError> {
        for statement in statements {
            let started = std::time::Instant::now();
            let rows = on_conn!(&mut self.conn, |c| {
                sqlx::query(statement)
                    .execute(&mut **c)
                    .await
                    .map_err(step(what))?
                    .rows_affected()
            });
            tracing::debug!(
                step = what,
                rows,
                elapsed_ms = elapsed_ms(started),
                "reconcile statement"
            );
        }
        Ok(())
    }

    async fn count(&mut self, what: &'static str, sql: &str) -> Result<u64, StoreError> {
        let started = std::time::Instant::now();
        let count: i64 = on_conn!(&mut self.conn, |c| {
            sqlx::query_scalar(sql).fetch_one(&mut **c).await.map_err(step(what))?
        });
        tracing::debug!(step = what, elapsed_ms = elapsed_ms(started), "reconcile statement");
        Ok(u64::try_from(count).unwrap_or(0))
    }

    /// SQLite: the connection's page cache, which also bounds each sorter's memory.
    async fn set_sqlite_cache(&mut self, kib: u32) -> Result<(), StoreError> {
        if self.backend != Backend::Sqlite {
            return Ok(());
        }
        let statement = format!("PRAGMA cache_size = {}", sqlite::cache_size_pragma(kib));
        self.run("configuring the session", &[&statement]).await
    }

    /// Statistics for the planner (PostgreSQL does not analyse temporary tables itself).
    async fn analyze(&mut self, table: &str) -> Result<(), StoreError> {
        match self.backend {
            Backend::Postgres => {
                let statement = format!("ANALYZE {table}");
                self.run("analysing a temporary table", &[&statement]).await
            }
            Backend::Sqlite => Ok(()),
        }
    }

    /// Statistics for a scope table on both backends. Without them SQLite's planner
    /// takes every table for a large one and drives each counting query from the
    /// inventory table, reading all of it for a night with a few marked accounts (or
    /// none); with them it starts from the scope and looks the inventory up by account.
    async fn analyze_scope(&mut self, table: &str) -> Result<(), StoreError> {
        let statement = format!("ANALYZE {table}");
        self.run("analysing a temporary table", &[&statement]).await
    }

    async fn index(&mut self, table: &str, columns: &str) -> Result<(), StoreError> {
        if !self.index_temp_tables() {
            return Ok(());
        }
        let statement = format!("CREATE INDEX {table}_lookup ON {table} ({columns})");
        self.run("indexing a temporary table", &[&statement]).await
    }

    /// Step 1: walks the tree from its roots; returns `(account, parent)` of every
    /// account the walk could not reach (dangling parents, cycles and what hangs below).
    pub async fn walk_tree(&mut self) -> Result<Vec<(AccountId, Option<AccountId>)>, StoreError> {
        if self.backend == Backend::Postgres {
            // The counts, the cascade and the batch numbering sort and hash a row per
            // inventory object: with the 4 MB default they spill to disk. Reset by
            // `finish`; a session that fails before it leaves the settings on a pooled
            // connection, where they only let other statements use more memory and
            // index scans.
            self.run("configuring the session", RECONCILE_SETTINGS).await?;
        }
        // SQLite: room for the sorts of the set-based statements, reset by `finish`
        // (a session that fails before leaves a larger cache on a pooled connection).
        self.set_sqlite_cache(sqlite::RECONCILE_CACHE_KIB).await?;
        for table in TEMP_TABLES {
            let statement = format!("DROP TABLE IF EXISTS {table}");
            self.run("dropping old temporary tables", &[&statement]).await?;
        }
        self.run(
            "walking the account tree",
            &[
                // `parent_id` as walked, so that the cascade's roll-up and the closure
                // see the same tree even if an account moves meanwhile.
                "CREATE TEMP TABLE reconcile_tree (account_id TEXT PRIMARY KEY, parent_id TEXT, tree TEXT NOT NULL)",
                // Only accounts reachable from a root are walked, so cycles end the walk.
                "INSERT INTO reconcile_tree (account_id, parent_id, tree) \
                 WITH RECURSIVE walk(account_id, parent_id, tree) AS ( \
                     SELECT id, CAST(NULL AS TEXT), '[]' FROM accounts WHERE parent_id IS NULL \
                     UNION ALL \
                     SELECT a.id, w.account_id, CASE WHEN w.tree = '[]' THEN '[\"' || w.account_id || '\"]' \
                                  ELSE substr(w.tree, 1, length(w.tree) - 1) || ',\"' || w.account_id || '\"]' END \
                     FROM accounts a JOIN walk w ON a.parent_id = w.account_id) \
                 SELECT account_id, parent_id, tree FROM walk",
                "CREATE TEMP TABLE reconcile_closure (account_id TEXT NOT NULL, ancestor_id TEXT NOT NULL)",
                "INSERT INTO reconcile_closure (account_id, ancestor_id) \
                 WITH RECURSIVE up(account_id, ancestor_id) AS ( \
                     SELECT account_id, parent_id FROM reconcile_tree WHERE parent_id IS NOT NULL \
                     UNION ALL \
                     SELECT up.account_id, p.parent_id FROM up JOIN reconcile_tree p ON p.account_id = up.ancestor_id \
                     WHERE p.parent_id IS NOT NULL) \
                 SELECT account_id, ancestor_id FROM up",
            ],
        )
        .await?;
        self.index("reconcile_closure", "account_id").await?;
        self.analyze("reconcile_tree").await?;
        self.analyze("reconcile_closure").await?;
        let started = std::time::Instant::now();
        let rows: Vec<(String, Option<String>)> = on_conn!(&mut self.conn, |c| {
            sqlx::query_as(
                "SELECT a.id, a.parent_id FROM accounts a \
                 WHERE NOT EXISTS (SELECT 1 FROM reconcile_tree t WHERE t.account_id = a.id) ORDER BY a.id",
            )
            .fetch_all(&mut **c)
            .await
            .map_err(step("finding unreachable accounts"))?
        });
        tracing::debug!(
            step = "finding unreachable accounts",
            elapsed_ms = elapsed_ms(started),
            "reconcile statement"
        );
        rows.into_iter()
            .map(|(id, parent)| {
                let account = AccountId::parse(id).map_err(|error| StoreError::InvalidRow(error.to_string()))?;
                let parent = parent
                    .map(AccountId::parse)
                    .transpose()
                    .map_err(|error| StoreError::InvalidRow(format!("parent of {account}: {error}")))?;
                Ok((account, parent))
            })
            .collect()
    }

    /// The requested accounts the walk reached, and every ancestor of theirs for cascades.
    async fn scope_requested(&mut self) -> Result<(), StoreError> {
        self.run(
            "choosing the accounts",
            &[
                "INSERT INTO reconcile_scope (account_id) SELECT DISTINCT r.account_id \
                 FROM reconcile_requested r JOIN reconcile_tree t ON t.account_id = r.account_id",
                "INSERT INTO reconcile_cascade_scope (account_id) \
                 SELECT account_id FROM reconcile_scope \
                 UNION SELECT c.ancestor_id FROM reconcile_closure c \
                 JOIN reconcile_scope s ON s.account_id = c.account_id",
            ],
        )
        .await
    }

    /// Steps 2–4: counts, rolls up and diffs; nothing persistent is written.
    pub async fn stage(
        &mut self,
        scope: &ReconcileScope,
        counting: &CountingQueries,
        batch_size: u64,
    ) -> Result<StageOutcome, StoreError> {
        self.run(
            "creating temporary tables",
            &[
                "CREATE TEMP TABLE reconcile_requested (account_id TEXT NOT NULL)",
                "CREATE TEMP TABLE reconcile_scope (account_id TEXT PRIMARY KEY)",
                "CREATE TEMP TABLE reconcile_cascade_scope (account_id TEXT PRIMARY KEY)",
                "CREATE TEMP TABLE reconcile_counts (account_id TEXT NOT NULL, category TEXT NOT NULL, \
                 item TEXT NOT NULL, quantity BIGINT NOT NULL)",
                "CREATE TEMP TABLE reconcile_cascade (account_id TEXT NOT NULL, category TEXT NOT NULL, \
                 item TEXT NOT NULL, quantity BIGINT NOT NULL)",
                // `stored`: a `service_quantities` row exists (it may hold 0), so the write
                // is an UPDATE; otherwise a plain INSERT. `ordinal`: the account's rank
                // among the changed ones, `batch` its write transaction, `position` the
                // entry's place in the account's change record (§4.2.4).
                "CREATE TEMP TABLE reconcile_changes (account_id TEXT NOT NULL, bucket TEXT NOT NULL, \
                 category TEXT NOT NULL, item TEXT NOT NULL, old_quantity BIGINT NOT NULL, new_quantity BIGINT NOT NULL, \
                 stored BOOLEAN NOT NULL, batch BIGINT NOT NULL, ordinal BIGINT NOT NULL, position BIGINT NOT NULL)",
                "CREATE TEMP TABLE reconcile_changed (account_id TEXT PRIMARY KEY, batch BIGINT NOT NULL, \
                 ordinal BIGINT NOT NULL)",
                "CREATE TEMP TABLE reconcile_marked (account_id TEXT PRIMARY KEY, token TEXT NOT NULL)",
                "CREATE TEMP TABLE reconcile_requests_seen (reason TEXT PRIMARY KEY, token TEXT NOT NULL)",
            ],
        )
        .await?;

        let mut unknown_accounts = Vec::new();
        let full_recount = match scope {
            ReconcileScope::All => Some(FullRecount::Requested),
            ReconcileScope::Incremental => self.full_recount_due(counting).await?,
            ReconcileScope::Accounts(_) | ReconcileScope::Marked => None,
        };
        // Only an incremental run that is not a full one rolls differences up.
        let roll_up_deltas = full_recount.is_none() && *scope == ReconcileScope::Incremental;
        let whole_tree = match scope {
            _ if full_recount.is_some() => {
                self.run(
                    "choosing the accounts",
                    &[
                        "INSERT INTO reconcile_scope (account_id) SELECT account_id FROM reconcile_tree",
                        "INSERT INTO reconcile_cascade_scope (account_id) SELECT account_id FROM reconcile_tree",
                    ],
                )
                .await?;
                true
            }
            ReconcileScope::Accounts(accounts) => {
                for chunk in accounts.chunks(500) {
                    let placeholders: Vec<String> = (1..=chunk.len()).map(|n| format!("(${n})")).collect();
                    let statement = format!(
                        "INSERT INTO reconcile_requested (account_id) VALUES {}",
                        placeholders.join(", ")
                    );
                    on_conn!(&mut self.conn, |c| {
                        let mut query = sqlx::query(&statement);
                        for account in chunk {
                            query = query.bind(account.as_str());
                        }
                        query.execute(&mut **c).await.map_err(step("choosing the accounts"))?;
                    });
                }
                let unknown: Vec<String> = on_conn!(&mut self.conn, |c| {
                    sqlx::query_scalar(
                        "SELECT DISTINCT r.account_id FROM reconcile_requested r \
                         WHERE NOT EXISTS (SELECT 1 FROM accounts a WHERE a.id = r.account_id) ORDER BY r.account_id",
                    )
                    .fetch_all(&mut **c)
                    .await
                    .map_err(step("checking the requested accounts"))?
                });
                unknown_accounts = unknown
                    .into_iter()
                    .map(|id| AccountId::parse(id).map_err(|error| StoreError::InvalidRow(error.to_string())))
                    .collect::<Result<_, _>>()?;
                self.scope_requested().await?;
                false
            }
            ReconcileScope::Marked | ReconcileScope::Incremental => {
                self.run(
                    "choosing the marked accounts",
                    &["INSERT INTO reconcile_requested (account_id) SELECT account_id FROM reconcile_marks"],
                )
                .await?;
                self.scope_requested().await?;
                false
            }
            ReconcileScope::All => unreachable!("a full scope always recounts everything"),
        };
        if whole_tree {
            // The requests this run answers, settled as marks are: by (reason, token).
            self.run(
                "noting the full-recount requests",
                &["INSERT INTO reconcile_requests_seen (reason, token) SELECT reason, token FROM reconcile_full_requests"],
            )
            .await?;
        }
        self.full_recount = full_recount.clone();
        // The marks this run settles, with the token each had when its account was
        // put in scope: counting reads the inventory after this copy, so it sees at
        // least the write that set each token; a mark set again later keeps its new
        // token and survives `apply`.
        self.run(
            "noting the marks in scope",
            &["INSERT INTO reconcile_marked (account_id, token) \
               SELECT m.account_id, m.token FROM reconcile_marks m \
               JOIN reconcile_scope s ON s.account_id = m.account_id"],
        )
        .await?;
        self.analyze_scope("reconcile_scope").await?;
        self.analyze_scope("reconcile_cascade_scope").await?;

        let batch = i64::try_from(batch_size.max(1)).unwrap_or(i64::MAX);
        self.recount(counting, whole_tree, roll_up_deltas, batch).await?;

        // Changed accounts with their batch and record ordinal: the first entry of each.
        self.run(
            "listing changed accounts",
            &[
                "INSERT INTO reconcile_changed (account_id, batch, ordinal) \
                 SELECT account_id, batch, ordinal FROM reconcile_changes WHERE position = 1",
                "CREATE INDEX reconcile_changes_by_batch ON reconcile_changes (batch)",
                "CREATE INDEX reconcile_changed_by_batch ON reconcile_changed (batch)",
            ],
        )
        .await?;
        self.analyze("reconcile_changes").await?;
        self.analyze("reconcile_changed").await?;

        Ok(StageOutcome {
            accounts_scanned: self
                .count("counting scanned accounts", "SELECT COUNT(*) FROM reconcile_scope")
                .await?,
            accounts_changed: self
                .count("counting changed accounts", "SELECT COUNT(*) FROM reconcile_changed")
                .await?,
            items_changed: self
                .count("counting changed items", "SELECT COUNT(*) FROM reconcile_changes")
                .await?,
            unknown_accounts,
            full_recount,
        })
    }

    /// Steps 2–4 over the accounts in scope: counts into `reconcile_counts`, the
    /// cascade roll-up into `reconcile_cascade`, and their diff against the stored
    /// quantities into `reconcile_changes`.
    async fn recount(
        &mut self,
        counting: &CountingQueries,
        whole_tree: bool,
        roll_up_deltas: bool,
        batch_size: i64,
    ) -> Result<(), StoreError> {
        // Step 2: every counting query, summed per key; sums of 0 dropped (§3.4).
        let union: Vec<String> = counting
            .iter()
            .map(|query| format!("SELECT account_id, category, item, quantity FROM ({}) q", query.sql))
            .collect();
        if union.is_empty() {
            return Err(StoreError::Refused("no counting query configured".to_string()));
        }
        // Nothing in scope (a quiet night): nothing to count, roll up or compare. More
        // than a saving: an empty table leaves SQLite no statistics, and its planner
        // would then read every inventory table to find no account.
        let in_scope = self
            .count(
                "checking the scope",
                "SELECT COUNT(*) FROM (SELECT 1 FROM reconcile_cascade_scope LIMIT 1) s",
            )
            .await?;
        if in_scope == 0 {
            return Ok(());
        }
        let count_statement = format!(
            "INSERT INTO reconcile_counts (account_id, category, item, quantity) \
             SELECT account_id, category, item, SUM(quantity) FROM ({}) counted \
             GROUP BY account_id, category, item HAVING SUM(quantity) <> 0",
            union.join(" UNION ALL ")
        );
        // SQLite: a small cache while counting bounds the memory of the statement's
        // many sorters (`sqlite::COUNTING_CACHE_KIB`); the session's is back after it.
        self.set_sqlite_cache(sqlite::COUNTING_CACHE_KIB).await?;
        let counting_started = std::time::Instant::now();
        let counted = on_conn!(&mut self.conn, |c| {
            sqlx::query(&count_statement).execute(&mut **c).await.map(|_| ())
        });
        self.set_sqlite_cache(sqlite::RECONCILE_CACHE_KIB).await?;
        tracing::debug!(
            step = "counting",
            elapsed_ms = elapsed_ms(counting_started),
            "reconcile statement"
        );
        if let Err(source) = counted {
            // A lost connection or a server going away is nobody's counting query: the
            // probes below would blame the first file they run for it.
            if super::is_temporary(&source) {
                return Err(StoreError::Query {
                    step: "counting quantities",
                    source,
                });
            }
            // Name the file at fault: rerun each alone to find the one that fails.
            for query in counting.iter() {
                let probe = format!("SELECT COUNT(*) FROM ({}) q", query.sql);
                let result = on_conn!(&mut self.conn, |c| {
                    sqlx::query(&probe).execute(&mut **c).await.map(|_| ())
                });
                if let Err(source) = result {
                    return Err(StoreError::Counting {
                        file: query.name.clone(),
                        source,
                    });
                }
            }
            return Err(StoreError::Query {
                step: "counting quantities",
                source,
            });
        }
        self.index("reconcile_counts", "account_id, category, item").await?;
        self.analyze("reconcile_counts").await?;

        // Step 3: cascade = Σ of non-deleted descendants' account values ≥ 1 (§4). A
        // partial run takes the stored account bucket of descendants it did not recount.
        let descendants_counts = if whole_tree {
            "SELECT account_id, category, item, quantity FROM reconcile_counts".to_string()
        } else {
            "SELECT account_id, category, item, quantity FROM reconcile_counts \
             UNION ALL \
             SELECT q.account_id, q.category, q.item, q.quantity FROM service_quantities q \
             WHERE q.bucket = 'account' \
               AND NOT EXISTS (SELECT 1 FROM reconcile_scope s WHERE s.account_id = q.account_id)"
                .to_string()
        };
        let cascade_statement = if roll_up_deltas {
            // Incremental: stored cascade + Σ (new − old) contributions of the recounted
            // accounts over their ancestors. Exact because the tree and the deleted flags
            // are those of the stored cascades (a change of either requests a full
            // recount), and sums that reach 0 are dropped as the full roll-up never
            // produces them.
            "INSERT INTO reconcile_cascade (account_id, category, item, quantity) \
             SELECT account_id, category, item, SUM(quantity) FROM ( \
                 SELECT q.account_id, q.category, q.item, q.quantity FROM service_quantities q \
                 JOIN reconcile_cascade_scope cs ON cs.account_id = q.account_id \
                 WHERE q.bucket = 'cascade' \
                 UNION ALL \
                 SELECT c.ancestor_id, n.category, n.item, n.quantity FROM reconcile_counts n \
                 JOIN reconcile_closure c ON c.account_id = n.account_id \
                 JOIN accounts d ON d.id = n.account_id \
                 WHERE n.quantity >= 1 AND NOT d.deleted \
                 UNION ALL \
                 SELECT c.ancestor_id, q.category, q.item, -q.quantity FROM service_quantities q \
                 JOIN reconcile_scope s ON s.account_id = q.account_id \
                 JOIN reconcile_closure c ON c.account_id = q.account_id \
                 JOIN accounts d ON d.id = q.account_id \
                 WHERE q.bucket = 'account' AND q.quantity >= 1 AND NOT d.deleted) delta \
             GROUP BY account_id, category, item HAVING SUM(quantity) <> 0"
                .to_string()
        } else {
            // In two groupings: the counts of each parent's children, then those sums
            // over the parent and its ancestors. A descendant's ancestors are its
            // parent and the parent's, so the sums are the same; but the rows carried
            // up the tree are one per parent and item, not one per account and item
            // (at 100,000 accounts: 15.3 million joined rows became about 1.5 million).
            format!(
                "INSERT INTO reconcile_cascade (account_id, category, item, quantity) \
                 SELECT up.ancestor_id, children.category, children.item, SUM(children.quantity) \
                 FROM ( \
                     SELECT t.parent_id, n.category, n.item, SUM(n.quantity) AS quantity \
                     FROM ({descendants_counts}) n \
                     JOIN reconcile_tree t ON t.account_id = n.account_id \
                     JOIN accounts d ON d.id = n.account_id \
                     WHERE n.quantity >= 1 AND NOT d.deleted AND t.parent_id IS NOT NULL \
                     GROUP BY t.parent_id, n.category, n.item) children \
                 JOIN (SELECT account_id, ancestor_id FROM reconcile_closure \
                       UNION ALL SELECT account_id, account_id FROM reconcile_tree) up \
                   ON up.account_id = children.parent_id \
                 JOIN reconcile_cascade_scope cs ON cs.account_id = up.ancestor_id \
                 GROUP BY up.ancestor_id, children.category, children.item"
            )
        };
        if self.backend == Backend::Postgres {
            // The planner cannot know that a parent's children share most of their
            // items, expects no reduction from the first grouping, and sorts it instead
            // of hashing (measured at 100,000 accounts: 19.7 s sorting, 12.6 s hashing,
            // the old one-grouping roll-up 20.6 s). Set for this statement alone.
            self.run(
                "rolling up cascade quantities",
                &["SET enable_sort = off", &cascade_statement, "RESET enable_sort"],
            )
            .await?;
        } else {
            self.run("rolling up cascade quantities", &[&cascade_statement]).await?;
        }
        self.index("reconcile_cascade", "account_id, category, item").await?;
        self.analyze("reconcile_cascade").await?;

        // Step 4: the diff, in one statement that also numbers what the writes need:
        // each changed account's ordinal (in account order) and batch, each entry's
        // position in its record. Both windows and the rows' order share one sort, so
        // a batch's rows are adjacent and go to the writes in key order. Stored zeros
        // with nothing new are left alone: they read as zero already, and removing them
        // would be a write that changes nothing.
        let bytes = byte_order(self.backend);
        let diff = format!(
            "INSERT INTO reconcile_changes (account_id, bucket, category, item, old_quantity, new_quantity, stored, \
                                            batch, ordinal, position) \
             SELECT account_id, bucket, category, item, old_quantity, new_quantity, stored, \
                    (DENSE_RANK() OVER (ORDER BY account_id{bytes}) - 1) / $1, \
                    DENSE_RANK() OVER (ORDER BY account_id{bytes}), \
                    ROW_NUMBER() OVER (PARTITION BY account_id{bytes} ORDER BY {BUCKET_RANK}, category{bytes}, item{bytes}) \
             FROM ( \
                 SELECT n.account_id, 'account' AS bucket, n.category, n.item, COALESCE(q.quantity, 0) AS old_quantity, \
                        n.quantity AS new_quantity, q.quantity IS NOT NULL AS stored \
                 FROM reconcile_counts n LEFT JOIN service_quantities q \
                   ON q.account_id = n.account_id AND q.bucket = 'account' AND q.category = n.category AND q.item = n.item \
                 WHERE q.quantity IS NULL OR q.quantity <> n.quantity \
                 UNION ALL \
                 SELECT q.account_id, 'account', q.category, q.item, q.quantity, 0, TRUE \
                 FROM service_quantities q JOIN reconcile_scope s ON s.account_id = q.account_id \
                 WHERE q.bucket = 'account' AND q.quantity <> 0 \
                   AND NOT EXISTS (SELECT 1 FROM reconcile_counts n \
                       WHERE n.account_id = q.account_id AND n.category = q.category AND n.item = q.item) \
                 UNION ALL \
                 SELECT n.account_id, 'cascade', n.category, n.item, COALESCE(q.quantity, 0), n.quantity, \
                        q.quantity IS NOT NULL \
                 FROM reconcile_cascade n LEFT JOIN service_quantities q \
                   ON q.account_id = n.account_id AND q.bucket = 'cascade' AND q.category = n.category AND q.item = n.item \
                 WHERE q.quantity IS NULL OR q.quantity <> n.quantity \
                 UNION ALL \
                 SELECT q.account_id, 'cascade', q.category, q.item, q.quantity, 0, TRUE \
                 FROM service_quantities q JOIN reconcile_cascade_scope s ON s.account_id = q.account_id \
                 WHERE q.bucket = 'cascade' AND q.quantity <> 0 \
                   AND NOT EXISTS (SELECT 1 FROM reconcile_cascade n \
                       WHERE n.account_id = q.account_id AND n.category = q.category AND n.item = q.item) \
             ) diff \
             ORDER BY account_id{bytes}, {BUCKET_RANK}, category{bytes}, item{bytes}"
        );
        // SQLite: the statement holds several sorters at once (its joins, both windows,
        // the order), each as large as the cache; `sqlite::DIFF_CACHE_KIB` bounds them.
        self.set_sqlite_cache(sqlite::DIFF_CACHE_KIB).await?;
        let started = std::time::Instant::now();
        let compared = on_conn!(&mut self.conn, |c| {
            sqlx::query(&diff).bind(batch_size).execute(&mut **c).await.map(|_| ())
        });
        self.set_sqlite_cache(sqlite::RECONCILE_CACHE_KIB).await?;
        compared.map_err(step("comparing with stored quantities"))?;
        tracing::debug!(
            step = "comparing with stored quantities",
            elapsed_ms = elapsed_ms(started),
            "reconcile statement"
        );
        Ok(())
    }

    /// Why an incremental run must recount everything, or `None` when the marks
    /// cover every change: a pending `reconcile_full_requests` row (written by the
    /// triggers of migration 0011, or by a run that stopped while writing), counting
    /// queries other than those of the last full recount, or stored tree paths that
    /// differ from the walk (`walk_tree` must have run).
    pub async fn full_recount_due(&mut self, counting: &CountingQueries) -> Result<Option<FullRecount>, StoreError> {
        let pending: Option<String> = on_conn!(&mut self.conn, |c| {
            sqlx::query_scalar("SELECT reason FROM reconcile_full_requests ORDER BY requested_at, reason LIMIT 1")
                .fetch_optional(&mut **c)
                .await
                .map_err(step("reading full-recount requests"))?
        });
        if let Some(reason) = pending {
            return Ok(Some(FullRecount::Pending(reason)));
        }
        let stored: Option<String> = on_conn!(&mut self.conn, |c| {
            sqlx::query_scalar("SELECT value FROM ingest_state WHERE key = $1")
                .bind(COUNTING_FINGERPRINT_KEY)
                .fetch_optional(&mut **c)
                .await
                .map_err(step("reading the counting fingerprint"))?
        });
        if stored.as_deref() != Some(counting.fingerprint().as_str()) {
            return Ok(Some(FullRecount::CountingQueriesChanged));
        }
        let moved = self
            .count(
                "comparing stored tree paths",
                "SELECT COUNT(*) FROM (SELECT 1 FROM reconcile_tree t JOIN accounts a ON a.id = t.account_id \
                 WHERE a.tree <> t.tree LIMIT 1) moved",
            )
            .await?;
        Ok((moved > 0).then_some(FullRecount::TreeChanged))
    }

    /// Before `apply`: notes that this run is writing, so that a run stopped between
    /// its batches makes the next incremental run a full one. Nothing to note when
    /// nothing is staged.
    pub async fn begin_writing(&mut self, now: GregorianSeconds) -> Result<(), StoreError> {
        let staged = self
            .count("counting staged accounts", "SELECT COUNT(*) FROM reconcile_changed")
            .await?;
        if staged == 0 {
            return Ok(());
        }
        let token = crate::store::inventory::mark_token()?;
        let inserted = on_conn!(&mut self.conn, |c| {
            sqlx::query(
                "INSERT INTO reconcile_full_requests (reason, requested_at, token) VALUES ($1, $2, $3) \
                 ON CONFLICT (reason) DO NOTHING",
            )
            .bind(INTERRUPTED_RUN)
            .bind(now.0)
            .bind(token.as_str())
            .execute(&mut **c)
            .await
            .map_err(step("noting the run is writing"))?
            .rows_affected()
        });
        // An older stop's row stays until a full recount settles it.
        self.writing_token = (inserted > 0).then_some(token);
        Ok(())
    }

    /// After `apply` succeeded: removes this run's writing note; a full recount also
    /// settles the requests it saw and records the counting queries it used.
    pub async fn settle(&mut self, counting: &CountingQueries) -> Result<(), StoreError> {
        if let Some(token) = self.writing_token.take() {
            on_conn!(&mut self.conn, |c| {
                sqlx::query("DELETE FROM reconcile_full_requests WHERE reason = $1 AND token = $2")
                    .bind(INTERRUPTED_RUN)
                    .bind(token.as_str())
                    .execute(&mut **c)
                    .await
                    .map_err(step("clearing the writing note"))?;
            });
        }
        if self.full_recount.is_none() {
            return Ok(());
        }
        self.run(
            "settling full-recount requests",
            &["DELETE FROM reconcile_full_requests WHERE (reason, token) IN \
               (SELECT reason, token FROM reconcile_requests_seen)"],
        )
        .await?;
        let fingerprint = counting.fingerprint();
        on_conn!(&mut self.conn, |c| {
            sqlx::query(
                "INSERT INTO ingest_state (key, value) VALUES ($1, $2) \
                 ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            )
            .bind(COUNTING_FINGERPRINT_KEY)
            .bind(fingerprint.as_str())
            .execute(&mut **c)
            .await
            .map_err(step("recording the counting fingerprint"))?;
        });
        Ok(())
    }

    /// Every staged change, by account then in record order (§4.2.4).
    pub async fn changes(&mut self) -> Result<Vec<StagedChange>, StoreError> {
        let sql = format!(
            "SELECT account_id, bucket, category, item, old_quantity, new_quantity FROM reconcile_changes \
             ORDER BY account_id, {BUCKET_RANK}, category, item"
        );
        let rows: Vec<(String, String, String, String, i64, i64)> = on_conn!(&mut self.conn, |c| {
            sqlx::query_as(&sql)
                .fetch_all(&mut **c)
                .await
                .map_err(step("reading staged changes"))?
        });
        rows.into_iter()
            .map(|(account, bucket, category, item, old, new)| {
                let invalid = |what: String| StoreError::InvalidRow(format!("staged change of {account}: {what}"));
                Ok(StagedChange {
                    change: QuantityChange {
                        bucket: Bucket::parse(&bucket).ok_or_else(|| invalid(format!("bucket {bucket:?}")))?,
                        category: Category::parse(category).map_err(|error| invalid(error.to_string()))?,
                        item: ItemName::parse(item).map_err(|error| invalid(error.to_string()))?,
                        old,
                        new,
                    },
                    account: AccountId::parse(account.clone()).map_err(|error| invalid(error.to_string()))?,
                })
            })
            .collect()
    }

    /// Step 5: writes the staged changes. Each batch of accounts commits in one
    /// transaction holding, per account, its quantity rows, its change record and
    /// entries, its day summaries and its dirty flag. Also refreshes stored tree paths.
    pub async fn apply(&mut self, now: GregorianSeconds, run_id: &str) -> Result<(), StoreError> {
        let day = now
            .day_key()
            .ok_or_else(|| StoreError::Refused(format!("time {} has no calendar day", now.0)))?;
        let year = now
            .year()
            .ok_or_else(|| StoreError::Refused(format!("time {} has no year", now.0)))?;
        // Record ids: `YYYY-` + 32 hex = 10 of the time, 10 of the account's ordinal in
        // this run, 12 of the run id's digest. They grow with time and, within a run,
        // with account id, so the index takes them in order; the run part keeps two
        // runs in the same second apart.
        let year_prefix = format!("{year:04}-{:010x}", now.0);
        let run_tag: String = hex::encode(<md5::Md5 as md5::Digest>::digest(run_id.as_bytes()))
            .chars()
            .take(12)
            .collect();
        self.run(
            "refreshing ancestor paths",
            &["UPDATE accounts SET tree = t.tree FROM reconcile_tree t \
               WHERE t.account_id = accounts.id AND accounts.tree <> t.tree"],
        )
        .await?;

        let batches: Vec<i64> = on_conn!(&mut self.conn, |c| {
            sqlx::query_scalar("SELECT DISTINCT batch FROM reconcile_changed ORDER BY batch")
                .fetch_all(&mut **c)
                .await
                .map_err(step("listing batches"))?
        });

        let writing_started = std::time::Instant::now();
        let batch_count = batches.len();
        let parameters = BatchParameters {
            year_prefix,
            run_id: run_id.to_owned(),
            run_tag,
            day: day.as_str().to_owned(),
            now: now.0,
        };
        let spent = match &mut self.conn {
            Conn::Postgres(session) => {
                let writers = match &self.pool {
                    Pool::Postgres(pool) if self.pool.parallel_writers() == PARALLEL_WRITERS => Some(pool.clone()),
                    _ => None,
                };
                let writer = std::sync::Arc::new(BatchWriter::new(Backend::Postgres, parameters));
                write_postgres_batches(session, writers, writer, batches, now).await?
            }
            Conn::Sqlite(conn) => {
                let writer = BatchWriter::new(Backend::Sqlite, parameters);
                let mut spent = [std::time::Duration::ZERO; WRITE_STEPS];
                for batch in batches {
                    let mut tx = sqlx::Connection::begin(&mut **conn)
                        .await
                        .map_err(step("starting a batch"))?;
                    write_batch!(writer, tx, batch, spent);
                }
                spent
            }
        };
        // Every account in scope was recounted: its mark is settled, unless it was set
        // again (a new token) since the stage copied it.
        self.run(
            "clearing settled reconcile marks",
            &["DELETE FROM reconcile_marks WHERE (account_id, token) IN \
               (SELECT account_id, token FROM reconcile_marked)"],
        )
        .await?;
        tracing::debug!(
            step = "writing batches",
            batches = batch_count,
            per_statement_ms = ?spent.map(|d| d.as_millis()),
            elapsed_ms = elapsed_ms(writing_started),
            "reconcile statement"
        );
        Ok(())
    }

    /// Drops the temporary tables and gives the connection back.
    pub async fn finish(mut self) -> Result<(), StoreError> {
        if self.backend == Backend::Postgres {
            self.run("configuring the session", RECONCILE_SETTINGS_RESET).await?;
        }
        for table in TEMP_TABLES {
            let statement = format!("DROP TABLE IF EXISTS {table}");
            self.run("dropping temporary tables", &[&statement]).await?;
        }
        // Lowering the cache frees the pages above it.
        self.set_sqlite_cache(sqlite::CACHE_KIB).await?;
        Ok(())
    }
}

/// The collation clause that sorts text by its bytes (Kazoo's order of binaries,
/// SQLite's default), for the run's physical orderings and entry positions: the same
/// order on both backends whatever the server's locale, and no locale library call per
/// comparison.
fn byte_order(backend: Backend) -> &'static str {
    match backend {
        Backend::Sqlite => "",
        Backend::Postgres => " COLLATE \"C\"",
    }
}

/// A PostgreSQL writer's copies of its batch, dropped when the batch commits or fails:
/// the rows (the columns of `reconcile_changes`), the accounts (those of
/// `reconcile_changed`, with each account's record entries) and the day sums.
const COPIED_CHANGES: &str = "reconcile_batch_changes";
const COPIED_ACCOUNTS: &str = "reconcile_batch_accounts";
const COPIED_SUMMARIES: &str = "reconcile_batch_summaries";

/// Builds a writer's copies from the batch's columns, bound as arrays.
const COPY_CHANGES: &str = "CREATE TEMP TABLE reconcile_batch_changes ON COMMIT DROP AS \
     SELECT * FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], $5::int8[], $6::int8[], $7::bool[], \
                          $8::int8[], $9::int8[], $10::int8[]) \
     AS v(account_id, bucket, category, item, old_quantity, new_quantity, stored, batch, ordinal, position)";
const COPY_ACCOUNTS: &str = "CREATE TEMP TABLE reconcile_batch_accounts ON COMMIT DROP AS \
     SELECT * FROM UNNEST($1::text[], $2::int8[], $3::int8[], $4::text[]) AS v(account_id, batch, ordinal, entries)";
const COPY_SUMMARIES: &str = "CREATE TEMP TABLE reconcile_batch_summaries ON COMMIT DROP AS \
     SELECT * FROM UNNEST($1::text[], $2::text[], $3::int8[], $4::int8[], $5::int8[], $6::int8[]) \
     AS v(account_id, source, addition, removal, quantity, batch)";

/// What every batch of a run writes with.
struct BatchParameters {
    /// `YYYY-` and the run's time, the start of its record ids.
    year_prefix: String,
    run_id: String,
    /// The end of the run's record ids (from its id's digest).
    run_tag: String,
    day: String,
    now: i64,
}

/// The statements that write one batch of a backend. On SQLite they read the
/// session's staged tables and gather each account's record entries and day sums
/// themselves. On PostgreSQL they read a writer's copies, where tally has gathered
/// both ([`BatchRows`]): its database backend is the run's bottleneck, and the JSON
/// functions cost it as much as writing a row per entry did.
struct BatchWriter {
    mark_dirty: String,
    update_quantities: String,
    insert_quantities: String,
    delete_quantities: String,
    insert_records: String,
    /// Whether any account of the batch has a day summary for today already.
    summarised_today: String,
    /// The batch's day sums as new rows, when none of its accounts has one for today
    /// (a first night: every row), or folded into today's rows.
    insert_summaries: String,
    upsert_summaries: String,
    parameters: BatchParameters,
}

impl BatchWriter {
    fn new(backend: Backend, parameters: BatchParameters) -> BatchWriter {
        let bytes = byte_order(backend);
        let (changes, accounts) = match backend {
            Backend::Sqlite => ("reconcile_changes", "reconcile_changed"),
            Backend::Postgres => (COPIED_CHANGES, COPIED_ACCOUNTS),
        };
        let (insert_records, insert_summaries) = match backend {
            // One record per changed account, its entries gathered in position order
            // in the shape of [`crate::wire::record`]. Per (account, source), the
            // additions and removals add up and the entry of highest position gives the
            // quantity (§5.2): SQLite takes a bare column from the row that gives the
            // query's only `max()`.
            Backend::Sqlite => (
                format!(
                    "INSERT INTO quantity_change_records (id, account_id, run_id, created_at, entries) \
                     SELECT $2 || {ordinal_hex} || $5, account_id, $3, $4, \
                            json_group_array(json_object('bucket', bucket, 'category', category, 'source', item, \
                                                         'quantity', new_quantity - old_quantity, \
                                                         'billable', new_quantity) ORDER BY position) \
                     FROM {changes} WHERE batch = $1 \
                     GROUP BY ordinal, account_id ORDER BY ordinal",
                    ordinal_hex = sqlite::hex10("ordinal"),
                ),
                format!(
                    "INSERT INTO quantity_day_summaries \
                         (account_id, day, source, addition, removal, quantity, last_timestamp, sum_quantity) \
                     SELECT account_id, $2, item, \
                            SUM(CASE WHEN new_quantity > old_quantity THEN new_quantity - old_quantity ELSE 0 END), \
                            SUM(CASE WHEN new_quantity < old_quantity THEN old_quantity - new_quantity ELSE 0 END), \
                            MAX(position) * 0 + new_quantity, $3, FALSE \
                     FROM {changes} WHERE batch = $1 \
                     GROUP BY account_id, item ORDER BY account_id, item"
                ),
            ),
            Backend::Postgres => (
                format!(
                    "INSERT INTO quantity_change_records (id, account_id, run_id, created_at, entries) \
                     SELECT $2 || {ordinal_hex} || $5, account_id, $3, $4, entries \
                     FROM {accounts} WHERE batch = $1 ORDER BY ordinal",
                    ordinal_hex = postgres::hex10("ordinal"),
                ),
                format!(
                    "INSERT INTO quantity_day_summaries \
                         (account_id, day, source, addition, removal, quantity, last_timestamp, sum_quantity) \
                     SELECT account_id, $2, source, addition, removal, quantity, $3, FALSE \
                     FROM {COPIED_SUMMARIES} WHERE batch = $1 \
                     ORDER BY account_id{bytes}, source{bytes}"
                ),
            ),
        };
        BatchWriter {
            // First in each batch, in account order: every other writer of an account
            // (manual quantities, overrides, plans: `lock_account` in `store/locked.rs`)
            // takes its services row before anything else, so taking the same rows
            // first, in one order, is what keeps a concurrent write from deadlocking
            // with the batch.
            mark_dirty: format!(
                "INSERT INTO services (account_id, dirty, dirty_since) \
                 SELECT account_id, TRUE, $2 FROM {accounts} WHERE batch = $1 ORDER BY account_id{bytes} \
                 ON CONFLICT (account_id) DO UPDATE SET dirty = TRUE, dirty_since = excluded.dirty_since"
            ),
            // A changed row that exists is updated, a new one inserted, apart: an upsert
            // probes the key twice per row (once for the conflict, once to insert), and
            // on a first run every row is new. New rows go in in primary-key order, so
            // each index insert lands next to the last.
            update_quantities: format!(
                "UPDATE service_quantities SET quantity = b.new_quantity \
                 FROM {changes} b \
                 WHERE b.batch = $1 AND b.stored AND b.new_quantity <> 0 \
                   AND service_quantities.account_id = b.account_id AND service_quantities.bucket = b.bucket \
                   AND service_quantities.category = b.category AND service_quantities.item = b.item"
            ),
            insert_quantities: format!(
                "INSERT INTO service_quantities (account_id, bucket, category, item, quantity) \
                 SELECT account_id, bucket, category, item, new_quantity FROM {changes} \
                 WHERE batch = $1 AND NOT stored AND new_quantity <> 0 \
                 ORDER BY account_id{bytes}, bucket{bytes}, category{bytes}, item{bytes}"
            ),
            delete_quantities: format!(
                "DELETE FROM service_quantities WHERE (account_id, bucket, category, item) IN \
                 (SELECT account_id, bucket, category, item FROM {changes} WHERE batch = $1 AND new_quantity = 0)"
            ),
            insert_records,
            summarised_today: format!(
                "SELECT EXISTS (SELECT 1 FROM {accounts} a WHERE a.batch = $1 AND EXISTS \
                     (SELECT 1 FROM quantity_day_summaries s WHERE s.account_id = a.account_id AND s.day = $2))"
            ),
            // Probing the key for a conflict costs as much again as inserting it.
            upsert_summaries: format!("{insert_summaries} {FOLD_INTO_DAY_SUMMARY}"),
            insert_summaries,
            parameters,
        }
    }
}

/// One staged row of `reconcile_changes`, as the session reads a batch.
#[derive(sqlx::FromRow)]
struct StagedRow {
    account_id: String,
    bucket: String,
    category: String,
    item: String,
    old_quantity: i64,
    new_quantity: i64,
    stored: bool,
    batch: i64,
    ordinal: i64,
    position: i64,
}

/// One batch as a PostgreSQL writer binds it: its staged rows, and per account its
/// record's entries and its day sums, column by column.
#[derive(Default)]
struct BatchRows {
    changes: ChangeColumns,
    accounts: AccountColumns,
    summaries: SummaryColumns,
}

#[derive(Default)]
struct ChangeColumns {
    account_id: Vec<String>,
    bucket: Vec<String>,
    category: Vec<String>,
    item: Vec<String>,
    old_quantity: Vec<i64>,
    new_quantity: Vec<i64>,
    stored: Vec<bool>,
    batch: Vec<i64>,
    ordinal: Vec<i64>,
    position: Vec<i64>,
}

#[derive(Default)]
struct AccountColumns {
    account_id: Vec<String>,
    batch: Vec<i64>,
    ordinal: Vec<i64>,
    /// The record's entries ([`crate::wire::record::entries_to_json`]).
    entries: Vec<String>,
}

#[derive(Default)]
struct SummaryColumns {
    account_id: Vec<String>,
    source: Vec<String>,
    addition: Vec<i64>,
    removal: Vec<i64>,
    quantity: Vec<i64>,
    batch: Vec<i64>,
}

impl BatchRows {
    /// A batch's staged rows, in account and position order, with each account's
    /// record (`audit-and-summaries.md` §4.2) and its day sums (§5.1-§5.2) made at `now`.
    fn from_rows(rows: Vec<StagedRow>, now: GregorianSeconds) -> Result<BatchRows, StoreError> {
        let mut columns = BatchRows::default();
        for account_rows in rows.chunk_by(|one, next| one.ordinal == next.ordinal) {
            columns.add_account(account_rows, now)?;
        }
        let changes = &mut columns.changes;
        for row in rows {
            changes.account_id.push(row.account_id);
            changes.bucket.push(row.bucket);
            changes.category.push(row.category);
            changes.item.push(row.item);
            changes.old_quantity.push(row.old_quantity);
            changes.new_quantity.push(row.new_quantity);
            changes.stored.push(row.stored);
            changes.batch.push(row.batch);
            changes.ordinal.push(row.ordinal);
            changes.position.push(row.position);
        }
        Ok(columns)
    }

    /// One account's record and day sums, from its rows in position order, with the
    /// domain's rules for a summary value and its combination. Names go as they were
    /// counted, as on SQLite: a bad one is no reason to stop the run here.
    fn add_account(&mut self, rows: &[StagedRow], now: GregorianSeconds) -> Result<(), StoreError> {
        let Some(first) = rows.first() else {
            return Ok(());
        };
        let mut entries = Vec::with_capacity(rows.len());
        let mut sums: BTreeMap<&str, DaySummary> = BTreeMap::new();
        for row in rows {
            let quantity = row.new_quantity.checked_sub(row.old_quantity).ok_or_else(|| {
                StoreError::InvalidRow(format!(
                    "{} of account {} changed beyond the integer range",
                    row.item, row.account_id
                ))
            })?;
            entries.push(record::entry_json(
                &row.bucket,
                &row.category,
                &row.item,
                quantity,
                row.new_quantity,
            ));
            let value = DaySummary::of_change(quantity, row.new_quantity, now);
            sums.entry(row.item.as_str())
                .and_modify(|sum| *sum = sum.combine(value))
                .or_insert(value);
        }
        for (source, summary) in sums {
            self.summaries.account_id.push(first.account_id.clone());
            self.summaries.source.push(source.to_owned());
            self.summaries.addition.push(summary.addition);
            self.summaries.removal.push(summary.removal);
            self.summaries.quantity.push(summary.quantity);
            self.summaries.batch.push(first.batch);
        }
        self.accounts.account_id.push(first.account_id.clone());
        self.accounts.batch.push(first.batch);
        self.accounts.ordinal.push(first.ordinal);
        self.accounts
            .entries
            .push(serde_json::Value::Array(entries).to_string());
        Ok(())
    }
}

/// Writes one batch on `conn`: copies its columns into tables of its transaction, then
/// runs the [`BatchWriter`]'s statements over them and commits.
async fn write_copied_batch(
    conn: &mut sqlx::PgConnection,
    writer: &BatchWriter,
    rows: BatchRows,
    batch: i64,
) -> Result<[std::time::Duration; WRITE_STEPS], StoreError> {
    let mut spent = [std::time::Duration::ZERO; WRITE_STEPS];
    let mut tx = sqlx::Connection::begin(conn).await.map_err(step("starting a batch"))?;
    let BatchRows {
        changes,
        accounts,
        summaries,
    } = rows;
    sqlx::query(COPY_CHANGES)
        .bind(changes.account_id)
        .bind(changes.bucket)
        .bind(changes.category)
        .bind(changes.item)
        .bind(changes.old_quantity)
        .bind(changes.new_quantity)
        .bind(changes.stored)
        .bind(changes.batch)
        .bind(changes.ordinal)
        .bind(changes.position)
        .execute(&mut *tx)
        .await
        .map_err(step("copying a batch"))?;
    sqlx::query(COPY_ACCOUNTS)
        .bind(accounts.account_id)
        .bind(accounts.batch)
        .bind(accounts.ordinal)
        .bind(accounts.entries)
        .execute(&mut *tx)
        .await
        .map_err(step("copying a batch"))?;
    sqlx::query(COPY_SUMMARIES)
        .bind(summaries.account_id)
        .bind(summaries.source)
        .bind(summaries.addition)
        .bind(summaries.removal)
        .bind(summaries.quantity)
        .bind(summaries.batch)
        .execute(&mut *tx)
        .await
        .map_err(step("copying a batch"))?;
    write_batch!(writer, tx, batch, spent);
    Ok(spent)
}

/// Adds one batch's statement times to the run's.
fn add_times(spent: &mut [std::time::Duration; WRITE_STEPS], times: [std::time::Duration; WRITE_STEPS]) {
    for (total, time) in spent.iter_mut().zip(times) {
        *total += time;
    }
}

/// Sums a finished writer's statement times into `spent`, or keeps its error if it is
/// the first.
fn absorb(
    joined: Result<Result<[std::time::Duration; WRITE_STEPS], StoreError>, tokio::task::JoinError>,
    spent: &mut [std::time::Duration; WRITE_STEPS],
    failure: &mut Option<StoreError>,
) {
    match joined {
        Ok(Ok(times)) => add_times(spent, times),
        Ok(Err(error)) => {
            failure.get_or_insert(error);
        }
        Err(error) => std::panic::resume_unwind(error.into_panic()),
    }
}

/// PostgreSQL: the session reads each batch's rows and hands them to one of
/// [`PARALLEL_WRITERS`] writers, each on its own connection from `writers`, which
/// makes their columns ([`BatchRows`]: half of tally's work in a first night's
/// reconcile) and writes them while the session reads the next; with no `writers` (a
/// pool too small to spare them) the session does both itself. After a failure no new
/// batch starts; those in flight end, then the first error is returned.
async fn write_postgres_batches(
    session: &mut sqlx::PgConnection,
    writers: Option<sqlx::PgPool>,
    writer: std::sync::Arc<BatchWriter>,
    batches: Vec<i64>,
    now: GregorianSeconds,
) -> Result<[std::time::Duration; WRITE_STEPS], StoreError> {
    let read = "SELECT account_id, bucket, category, item, old_quantity, new_quantity, stored, batch, ordinal, \
                position FROM reconcile_changes WHERE batch = $1 ORDER BY account_id COLLATE \"C\", position";
    let mut spent = [std::time::Duration::ZERO; WRITE_STEPS];
    let mut writing = tokio::task::JoinSet::new();
    let mut failure: Option<StoreError> = None;
    for batch in batches {
        let rows = sqlx::query_as::<_, StagedRow>(read)
            .bind(batch)
            .fetch_all(&mut *session)
            .await
            .map_err(step("reading a batch"));
        let rows = match rows {
            Ok(rows) => rows,
            Err(error) => {
                failure.get_or_insert(error);
                break;
            }
        };
        let Some(pool) = &writers else {
            let rows = BatchRows::from_rows(rows, now)?;
            add_times(
                &mut spent,
                write_copied_batch(&mut *session, &writer, rows, batch).await?,
            );
            continue;
        };
        while writing.len() >= PARALLEL_WRITERS {
            if let Some(joined) = writing.join_next().await {
                absorb(joined, &mut spent, &mut failure);
            }
        }
        if failure.is_some() {
            break;
        }
        let (pool, writer) = (pool.clone(), writer.clone());
        writing.spawn(async move {
            let rows = BatchRows::from_rows(rows, now)?;
            let mut conn = pool.acquire().await.map_err(step("acquiring a connection"))?;
            write_copied_batch(&mut conn, &writer, rows, batch).await
        });
    }
    while let Some(joined) = writing.join_next().await {
        absorb(joined, &mut spent, &mut failure);
    }
    match failure {
        Some(error) => Err(error),
        None => Ok(spent),
    }
}
