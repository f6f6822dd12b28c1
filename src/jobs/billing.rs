//! The nightly billing run: reconcile, then sync, then bookkeeper-sync, as one run with
//! one report (issue 5): accounts scanned and changed, invoices changed, deliveries
//! made and failed, the deliveries left pending, the recurring total each reseller
//! bills, and how long each stage took.
//!
//! A plain sequence of the three jobs over their own options (which `JobContext`
//! builds from the settings); it knows nothing of the context.

use super::bookkeeper_sync::{self, pending_json, pending_text, BookkeeperSyncOptions, BookkeeperSyncReport};
use super::reconcile::{self, ReconcileError, ReconcileOptions, ReconcileReport};
use super::retry::{retry_faults, FaultRetry};
use super::sync::{self, SyncOptions, SyncReport};
use crate::bookkeepers::Bookkeepers;
use crate::domain::AccountId;
use crate::runs::{JobError, JobReport, RunEnd, RunFigures, RunOutcome};
use crate::store::{CountingQueries, Store, StoreError, VendorTotal};
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

#[derive(Debug, thiserror::Error)]
pub enum BillingError {
    #[error("reconcile: {0}")]
    Reconcile(#[from] ReconcileError),
    #[error("{0}")]
    Store(#[from] StoreError),
}

impl JobError for BillingError {
    fn is_temporary(&self) -> bool {
        match self {
            BillingError::Reconcile(ReconcileError::Store(error)) | BillingError::Store(error) => error.is_temporary(),
        }
    }
}

impl JobReport for BillingReport {
    fn outcome(&self) -> RunOutcome {
        BillingReport::outcome(self)
    }
}

/// What one billing run did.
#[derive(Debug, Clone)]
pub struct BillingReport {
    pub reconcile: ReconcileReport,
    /// `None` when the run stopped before this stage.
    pub sync: Option<SyncReport>,
    pub bookkeeper_sync: Option<BookkeeperSyncReport>,
    /// The recurring total per reseller (bookkeeper vendor) after the run.
    pub recurring_by_reseller: Vec<VendorTotal>,
    pub stage_durations: StageDurations,
    pub duration: Duration,
}

/// How long each stage took; `None` for a stage the run stopped before.
#[derive(Debug, Clone, Default)]
pub struct StageDurations {
    pub reconcile: Duration,
    pub sync: Option<Duration>,
    pub bookkeeper_sync: Option<Duration>,
}

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

/// The stages of a billing run, announced as they start (for a progress display).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    Reconcile,
    Sync,
    BookkeeperSync,
}

impl Stage {
    pub fn describe(self) -> &'static str {
        match self {
            Stage::Reconcile => "reconciling quantities",
            Stage::Sync => "repricing accounts",
            Stage::BookkeeperSync => "delivering invoices",
        }
    }
}

/// The options of the three stages, and the token that stops the run between them.
#[derive(Clone)]
pub struct BillingOptions {
    pub reconcile: ReconcileOptions,
    pub sync: SyncOptions,
    pub bookkeeper_sync: BookkeeperSyncOptions,
    pub stop: CancellationToken,
    /// A database fault restarts the stage in hand (each stage is idempotent).
    pub retry: FaultRetry,
}

pub async fn run_once(
    store: &Store,
    counting: &CountingQueries,
    bookkeepers: &Bookkeepers,
    options: &BillingOptions,
    on_stage: &(dyn Fn(Stage) + Send + Sync),
) -> Result<BillingReport, BillingError> {
    let started = Instant::now();
    let mut stage_durations = StageDurations::default();
    let (retry, stop) = (options.retry, &options.stop);
    on_stage(Stage::Reconcile);
    let reconcile = retry_faults(retry, "reconcile", stop, || {
        reconcile::run_once(store, counting, &options.reconcile)
    })
    .await?;
    stage_durations.reconcile = started.elapsed();
    let sync = if options.stop.is_cancelled() {
        None
    } else {
        on_stage(Stage::Sync);
        let stage = Instant::now();
        let report = retry_faults(retry, "sync", stop, || sync::run_once(store, &options.sync)).await?;
        stage_durations.sync = Some(stage.elapsed());
        Some(report)
    };
    let bookkeeper_sync = if options.stop.is_cancelled() {
        None
    } else {
        on_stage(Stage::BookkeeperSync);
        let stage = Instant::now();
        let report = retry_faults(retry, "bookkeeper-sync", stop, || {
            bookkeeper_sync::run_once(store, bookkeepers, &options.bookkeeper_sync)
        })
        .await?;
        stage_durations.bookkeeper_sync = Some(stage.elapsed());
        Some(report)
    };
    let recurring_by_reseller = retry_faults(retry, "totals", stop, || store.recurring_by_vendor()).await?;
    Ok(BillingReport {
        reconcile,
        sync,
        bookkeeper_sync,
        recurring_by_reseller,
        stage_durations,
        duration: started.elapsed(),
    })
}

/// The parts joined by `separator`, or `None` when there are none.
pub(crate) fn joined(parts: Vec<String>, separator: &str) -> Option<String> {
    match parts.is_empty() {
        true => None,
        false => Some(parts.join(separator)),
    }
}

fn count(value: usize) -> u64 {
    u64::try_from(value).unwrap_or(u64::MAX)
}

impl BillingReport {
    /// How the run ended: interrupted before temporary failures before data errors.
    pub fn end(&self) -> RunEnd {
        let interrupted = self.sync.as_ref().is_none_or(|sync| sync.interrupted)
            || self
                .bookkeeper_sync
                .as_ref()
                .is_none_or(|deliveries| deliveries.interrupted);
        let delivery_failures = self
            .bookkeeper_sync
            .as_ref()
            .is_some_and(BookkeeperSyncReport::has_failures);
        let data_errors = self.reconcile.is_partial() || self.sync.as_ref().is_some_and(SyncReport::is_partial);
        if interrupted {
            RunEnd::Interrupted
        } else if delivery_failures {
            RunEnd::TemporaryFailure
        } else if data_errors {
            RunEnd::DataErrors
        } else {
            RunEnd::Succeeded
        }
    }

    pub fn figures(&self) -> RunFigures {
        let sync = self.sync.as_ref();
        let deliveries = self.bookkeeper_sync.as_ref();
        RunFigures {
            accounts: self.reconcile.accounts_scanned,
            changes: self.reconcile.accounts_changed + sync.map_or(0, |sync| count(sync.invoices_changed)),
            failures: count(self.reconcile.skipped.len())
                + sync.map_or(0, |sync| count(sync.skipped.len()))
                + deliveries.map_or(0, |deliveries| count(deliveries.failed.len())),
        }
    }

    pub fn outcome(&self) -> RunOutcome {
        RunOutcome::reported(self.end(), self.figures(), self.problems())
    }

    /// What kept the run from doing all its work, stage by stage: the run record's
    /// message (`tally runs`), `None` when nothing did.
    pub fn problems(&self) -> Option<String> {
        let mut problems: Vec<String> = Vec::new();
        let mut stage = |name: &str, found: Vec<String>| {
            if !found.is_empty() {
                problems.push(format!("{name}: {}", found.join(", ")));
            }
        };
        stage("reconcile", self.reconcile.problems());
        match &self.sync {
            Some(sync) => stage("sync", sync.problems()),
            None => stage("sync", vec!["not reached".to_owned()]),
        }
        match &self.bookkeeper_sync {
            Some(deliveries) => stage("bookkeeper-sync", deliveries.problems()),
            None => stage("bookkeeper-sync", vec!["not reached".to_owned()]),
        }
        joined(problems, "; ")
    }

    /// The report as one JSON object (`--json`).
    pub fn to_json(&self) -> serde_json::Value {
        let sync = self.sync.as_ref();
        let deliveries = self.bookkeeper_sync.as_ref();
        let resellers: Vec<serde_json::Value> = self
            .recurring_by_reseller
            .iter()
            .map(|total| {
                serde_json::json!({
                    "reseller_id": total.vendor_id,
                    "invoices": total.invoices,
                    "recurring": crate::wire::document::Amount(total.recurring),
                })
            })
            .collect();
        serde_json::json!({
            "status": self.end().as_str(),
            "accounts_scanned": self.reconcile.accounts_scanned,
            "accounts_changed": self.reconcile.accounts_changed,
            "items_changed": self.reconcile.items_changed,
            // Why reconcile recounted every account; null when it recounted only what changed.
            "full_recount": self.reconcile.full_recount.as_ref().map(ToString::to_string),
            "accounts_skipped": self.reconcile.skipped.len() + sync.map_or(0, |sync| sync.skipped.len()),
            "skipped": self
                .skipped()
                .map(|(stage, account, reason)| {
                    serde_json::json!({ "stage": stage, "account_id": account.as_str(), "reason": reason })
                })
                .collect::<Vec<_>>(),
            "invoices_changed": sync.map_or(0, |sync| sync.invoices_changed),
            "deliveries": deliveries.map_or(0, |deliveries| deliveries.deliveries),
            "deliveries_acknowledged": deliveries.map_or(0, |deliveries| deliveries.acknowledged),
            "deliveries_refused": deliveries.map_or(0, |deliveries| deliveries.refused),
            "deliveries_failed": deliveries.map_or(0, |deliveries| deliveries.failed.len()),
            "deliveries_awaiting_configuration": deliveries.map_or(0, |deliveries| deliveries.awaiting_configuration),
            "pending_deliveries": deliveries.map(|deliveries| pending_json(&deliveries.pending)),
            "recurring_by_reseller": resellers,
            "stage_durations_ms": {
                "reconcile": millis(self.stage_durations.reconcile),
                "sync": self.stage_durations.sync.map(millis),
                "bookkeeper_sync": self.stage_durations.bookkeeper_sync.map(millis),
            },
            "duration_ms": millis(self.duration),
        })
    }

    /// Every account a stage skipped, with the stage and the reason, so that the
    /// operator of a run that exits 65 knows which accounts to fix.
    fn skipped(&self) -> impl Iterator<Item = (&'static str, &AccountId, String)> + '_ {
        let reconciled = self
            .reconcile
            .skipped
            .iter()
            .map(|skipped| ("reconcile", &skipped.account, skipped.reason.to_string()));
        let synced = self
            .sync
            .iter()
            .flat_map(|sync| &sync.skipped)
            .map(|skipped| ("sync", &skipped.account, skipped.reason.clone()));
        reconciled.chain(synced)
    }

    /// The report for people.
    pub fn to_text(&self) -> String {
        let sync = self.sync.as_ref();
        let deliveries = self.bookkeeper_sync.as_ref();
        let mut text = format!(
            "billing {}: {} accounts scanned, {} changed ({} items); {} invoices changed; \
             {} deliveries ({} acknowledged, {} refused, {} failed); {} accounts skipped; {} ms\n",
            self.end().as_str(),
            self.reconcile.accounts_scanned,
            self.reconcile.accounts_changed,
            self.reconcile.items_changed,
            sync.map_or(0, |sync| sync.invoices_changed),
            deliveries.map_or(0, |deliveries| deliveries.deliveries),
            deliveries.map_or(0, |deliveries| deliveries.acknowledged),
            deliveries.map_or(0, |deliveries| deliveries.refused),
            deliveries.map_or(0, |deliveries| deliveries.failed.len()),
            self.reconcile.skipped.len() + sync.map_or(0, |sync| sync.skipped.len()),
            self.duration.as_millis()
        );
        for (stage, account, reason) in self.skipped() {
            text.push_str(&format!("  skipped by {stage}: {account}: {reason}\n"));
        }
        if let Some(line) = deliveries.and_then(|deliveries| pending_text(&deliveries.pending)) {
            text.push_str(&line);
            text.push('\n');
        }
        let stage = |duration: Option<Duration>| match duration {
            Some(duration) => format!("{} ms", duration.as_millis()),
            None => "not run".to_owned(),
        };
        text.push_str(&format!(
            "stages: reconcile {}, sync {}, bookkeeper-sync {}\n",
            stage(Some(self.stage_durations.reconcile)),
            stage(self.stage_durations.sync),
            stage(self.stage_durations.bookkeeper_sync)
        ));
        if !self.recurring_by_reseller.is_empty() {
            text.push_str("recurring total per reseller:\n");
            for total in &self.recurring_by_reseller {
                text.push_str(&format!(
                    "  {}  {:>14}  ({} invoices)\n",
                    total.vendor_id, total.recurring, total.invoices
                ));
            }
        }
        text
    }
}
