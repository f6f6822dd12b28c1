//! The `prune` job: deletes finished records older than the `[retention]` settings,
//! kind by kind, a batch (one transaction) at a time, oldest first, until none is
//! left or the run is stopped. `--dry-run` counts instead. Idempotent: a second run
//! with the same cutoffs finds nothing.
//!
//! Orchestration only: the cutoffs come from `domain::retention`, what may go from
//! the store's predicates (`store::retention`).

use crate::domain::retention::{Prunable, Retention};
use crate::domain::summary::GregorianSeconds;
use crate::runs::{JobReport, RunEnd, RunFigures, RunOutcome};
use crate::store::{PrunedRows, Store, StoreError};
use chrono::{DateTime, SecondsFormat, Utc};
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

#[derive(Debug, Clone)]
pub struct PruneOptions {
    pub retention: Retention,
    pub now: GregorianSeconds,
    /// Rows deleted per transaction; at least 1.
    pub batch_size: u64,
    /// Count what would be deleted, delete nothing.
    pub dry_run: bool,
    /// Stops between batches (SIGTERM, the job's time limit); the rest waits for the
    /// next run.
    pub stop: CancellationToken,
}

/// What happened to one kind of record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PrunedKind {
    pub kind: Prunable,
    /// Records finished before this went; `None`: this kind is kept forever.
    pub before: Option<GregorianSeconds>,
    /// Deleted (or, in a dry run, to delete).
    pub pruned: PrunedRows,
}

#[derive(Debug, Clone)]
pub struct PruneReport {
    pub dry_run: bool,
    /// One entry per kind, in [`Prunable::ALL`] order.
    pub kinds: Vec<PrunedKind>,
    /// Stopped before every kind was done.
    pub interrupted: bool,
    pub duration: Duration,
}

pub async fn run_once(store: &Store, options: &PruneOptions) -> Result<PruneReport, StoreError> {
    let started = Instant::now();
    let batch_size = options.batch_size.max(1);
    let mut kinds = Vec::new();
    let mut interrupted = false;
    for kind in Prunable::ALL {
        let before = options.retention.cutoff(kind, options.now);
        let mut pruned = PrunedRows::default();
        match before {
            None => {}
            Some(before) if options.dry_run => pruned = store.count_prunable(kind, before).await?,
            Some(before) => loop {
                if options.stop.is_cancelled() {
                    interrupted = true;
                    break;
                }
                let batch = store.prune_batch(kind, before, batch_size).await?;
                pruned.rows += batch.rows;
                pruned.entries += batch.entries;
                tracing::debug!(kind = kind.as_str(), rows = batch.rows, "prune batch");
                if batch.rows < batch_size {
                    break;
                }
            },
        }
        kinds.push(PrunedKind { kind, before, pruned });
    }
    Ok(PruneReport {
        dry_run: options.dry_run,
        kinds,
        interrupted,
        duration: started.elapsed(),
    })
}

fn timestamp(time: GregorianSeconds) -> String {
    DateTime::<Utc>::from_timestamp(time.unix(), 0)
        .map(|time| time.to_rfc3339_opts(SecondsFormat::Secs, true))
        .unwrap_or_else(|| time.0.to_string())
}

impl PruneReport {
    /// Rows deleted over every kind (a change record's entries go with their row).
    pub fn total(&self) -> u64 {
        self.kinds.iter().map(|kind| kind.pruned.rows).sum()
    }

    pub fn to_json(&self) -> serde_json::Value {
        let mut report = serde_json::json!({
            "dry_run": self.dry_run,
            "interrupted": self.interrupted,
            "duration_ms": u64::try_from(self.duration.as_millis()).unwrap_or(u64::MAX),
        });
        for kind in &self.kinds {
            let mut entry = serde_json::json!({
                "before": kind.before.map(timestamp),
                "deleted": kind.pruned.rows,
            });
            if kind.kind == Prunable::ChangeRecords {
                entry["entries_deleted"] = serde_json::json!(kind.pruned.entries);
            }
            report[kind.kind.as_str()] = entry;
        }
        report
    }

    pub fn to_text(&self) -> String {
        let verb = if self.dry_run { "would delete" } else { "deleted" };
        let mut text = format!(
            "prune{}:\n",
            if self.dry_run {
                " (dry run, nothing deleted)"
            } else {
                ""
            }
        );
        for kind in &self.kinds {
            let name = kind.kind.as_str();
            match kind.before {
                None => text.push_str(&format!("  {name}: kept forever (no [retention] {name}_days)\n")),
                Some(before) => {
                    let entries = match kind.kind {
                        Prunable::ChangeRecords => format!(" ({} entries)", kind.pruned.entries),
                        Prunable::Runs | Prunable::Deliveries | Prunable::AuditLogs => String::new(),
                    };
                    text.push_str(&format!(
                        "  {name}: {verb} {}{entries}, finished before {}\n",
                        kind.pruned.rows,
                        timestamp(before)
                    ));
                }
            }
        }
        if self.interrupted {
            text.push_str("  interrupted: the rest is left for the next run\n");
        }
        text.push_str(&format!("  {} ms\n", self.duration.as_millis()));
        text
    }
}

impl JobReport for PruneReport {
    fn outcome(&self) -> RunOutcome {
        let figures = RunFigures {
            accounts: 0,
            changes: self.total(),
            failures: 0,
        };
        match self.interrupted {
            true => RunOutcome::reported(RunEnd::Interrupted, figures, None),
            false => RunOutcome::succeeded(figures),
        }
    }
}
