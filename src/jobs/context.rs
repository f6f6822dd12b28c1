//! What every job run needs, built once from the settings, and the [`JobRunner`] of
//! the run path: one place that turns settings and a job's spec into the options of
//! `reconcile`, `sync`, `bookkeeper-sync`, `billing`, `topup` and `prune`, for the one-shot
//! command line and the daemon alike; and each job's report or error as a run
//! outcome ([`JobReport`], [`JobError`]), so `runs` decides status and exit code once.

use super::billing::{self, joined, BillingOptions, BillingReport};
use super::billing_preview;
use super::bookkeeper_sync::{self, BookkeeperSyncOptions, BookkeeperSyncReport};
use super::ingest::{IngestCycle, IngestJobError};
use super::prune::{self, PruneOptions, PruneReport};
use super::reconcile::{self, ReconcileError, ReconcileOptions, ReconcileReport};
use super::retry::{retry_faults, FaultRetry};
use super::sync::{self, SyncOptions, SyncReport};
use super::topup::{self, TopupOptions, TopupReport};
use crate::bookkeepers::Bookkeepers;
use crate::config::Settings;
use crate::domain::changes::FirstCommit;
use crate::domain::classify::NumberClassifiers;
use crate::domain::summary::GregorianSeconds;
use crate::domain::AccountId;
use crate::runs::{job_run_label, JobError, JobKind, JobReport, JobRunner, JobSpec, RunEnd, RunFigures, RunOutcome};
use crate::store::{CountingQueries, ReconcileScope, Store, StoreError, SyncScope};
use chrono::{DateTime, Utc};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// Settings that cannot make a job context.
#[derive(Debug, thiserror::Error)]
pub enum ContextError {
    #[error("{0}")]
    Config(String),
}

/// Everything a job needs.
#[derive(Clone)]
pub struct JobContext {
    pub store: Store,
    pub settings: Settings,
    pub counting: CountingQueries,
    pub bookkeepers: Bookkeepers,
    /// `[ingest] number_classifiers`, compiled once.
    pub classifiers: NumberClassifiers,
}

/// Which accounts a run covers, and its batch size, whatever the job.
#[derive(Debug, Clone, Default)]
pub struct RunScope {
    /// `None`: the job's default population (every account, or those marked).
    pub accounts: Option<Vec<AccountId>>,
    pub batch_size: Option<usize>,
    /// Reconcile only the accounts whose inventory changed since their last recount
    /// (`ReconcileScope::Marked`); ignored when `accounts` is given and by other jobs.
    pub changed_only: bool,
    /// Billing: recount every account rather than only what changed
    /// (`ReconcileScope::All` instead of `ReconcileScope::Incremental`).
    pub full_recount: bool,
}

impl JobContext {
    pub fn new(store: Store, settings: Settings) -> Result<JobContext, ContextError> {
        let counting = match &settings.reconcile.counting_dir {
            Some(directory) => {
                CountingQueries::from_dir(directory).map_err(|error| ContextError::Config(error.to_string()))?
            }
            None => CountingQueries::builtin(),
        };
        let bookkeepers = Bookkeepers::from_settings(&settings.bookkeepers.http)
            .map_err(|error| ContextError::Config(error.to_string()))?;
        settings
            .bookkeeper_sync
            .retry_policy()
            .map_err(|error| ContextError::Config(error.to_string()))?;
        let classifiers = settings
            .ingest
            .classifiers()
            .map_err(|error| ContextError::Config(format!("ingest.number_classifiers: {error}")))?;
        Ok(JobContext {
            store,
            settings,
            counting,
            bookkeepers,
            classifiers,
        })
    }

    /// Replaces the bookkeepers (tests, and `--demo` with its loopback bookkeeper).
    pub fn with_bookkeepers(mut self, bookkeepers: Bookkeepers) -> JobContext {
        self.bookkeepers = bookkeepers;
        self
    }

    pub fn reconcile_options(&self, scope: &RunScope, dry_run: bool, now: GregorianSeconds) -> ReconcileOptions {
        ReconcileOptions {
            scope: match (&scope.accounts, scope.changed_only) {
                (Some(accounts), _) => ReconcileScope::Accounts(accounts.clone()),
                (None, true) => ReconcileScope::Marked,
                (None, false) => ReconcileScope::All,
            },
            dry_run,
            now,
            batch_size: u64::try_from(scope.batch_size.unwrap_or(self.settings.reconcile.batch_size))
                .unwrap_or(u64::MAX),
            classifiers: Some(self.classifiers.clone()),
        }
    }

    pub fn sync_options(
        &self,
        scope: SyncScope,
        batch_size: Option<usize>,
        first_commit: FirstCommit,
        now: GregorianSeconds,
        stop: CancellationToken,
    ) -> SyncOptions {
        SyncOptions {
            scope,
            dry_run: false,
            first_commit,
            now,
            batch_size: batch_size.unwrap_or(self.settings.sync.batch_size),
            run_id: job_run_label("sync", now),
            master_account_bookkeeper: self.settings.services.master_account_bookkeeper.clone(),
            show_master_audit_logs: self.settings.services.should_save_master_audit_logs,
            priorities: self.settings.services.merge_strategy_priority.priorities(),
            initiator: None,
            every_invoice: false,
            stop,
        }
    }

    pub fn bookkeeper_sync_options(
        &self,
        batch_size: Option<usize>,
        now: GregorianSeconds,
        stop: CancellationToken,
    ) -> BookkeeperSyncOptions {
        let settings = &self.settings.bookkeeper_sync;
        BookkeeperSyncOptions {
            now,
            batch_size: batch_size.unwrap_or(settings.batch_size),
            parallelism: settings.parallelism,
            lease: Duration::from_secs(settings.lease_seconds),
            // Checked when the context was built.
            retry: settings.retry_policy().unwrap_or_default(),
            account: None,
            stop,
        }
    }

    /// Recounts the accounts whose inventory changed since their last recount.
    pub async fn reconcile_changed(&self, now: GregorianSeconds) -> Result<ReconcileReport, ReconcileError> {
        let scope = RunScope {
            changed_only: true,
            ..RunScope::default()
        };
        self.reconcile(&scope, now).await
    }

    pub async fn reconcile(&self, scope: &RunScope, now: GregorianSeconds) -> Result<ReconcileReport, ReconcileError> {
        reconcile::run_once(&self.store, &self.counting, &self.reconcile_options(scope, false, now)).await
    }

    pub async fn sync(
        &self,
        scope: &RunScope,
        now: GregorianSeconds,
        stop: CancellationToken,
    ) -> Result<SyncReport, StoreError> {
        let sync_scope = match &scope.accounts {
            Some(accounts) => SyncScope::Accounts(accounts.clone()),
            None => SyncScope::Marked,
        };
        let options = self.sync_options(sync_scope, scope.batch_size, FirstCommit::Baseline, now, stop);
        sync::run_once(&self.store, &options).await
    }

    pub async fn bookkeeper_sync(
        &self,
        scope: &RunScope,
        now: GregorianSeconds,
        stop: CancellationToken,
    ) -> Result<BookkeeperSyncReport, StoreError> {
        let options = self.bookkeeper_sync_options(scope.batch_size, now, stop);
        bookkeeper_sync::run_once(&self.store, &self.bookkeepers, &options).await
    }

    pub fn topup_options(&self, scope: &RunScope, now: GregorianSeconds) -> TopupOptions {
        TopupOptions {
            enabled: self.settings.topup.enable,
            accounts: scope.accounts.clone(),
            now,
            master_account_bookkeeper: self.settings.services.master_account_bookkeeper.clone(),
        }
    }

    /// The automatic top-up; does nothing unless `[topup] enable` is true.
    pub async fn topup(&self, scope: &RunScope, now: GregorianSeconds) -> Result<TopupReport, StoreError> {
        topup::run_once(&self.store, &self.bookkeepers, &self.topup_options(scope, now)).await
    }

    pub fn prune_options(&self, dry_run: bool, now: GregorianSeconds, stop: CancellationToken) -> PruneOptions {
        let settings = &self.settings.retention;
        PruneOptions {
            retention: settings.retention(),
            now,
            batch_size: u64::try_from(settings.batch_size).unwrap_or(u64::MAX),
            dry_run,
            stop,
        }
    }

    /// Deletes finished records older than `[retention]`; keeps everything by default.
    pub async fn prune(&self, now: GregorianSeconds, stop: CancellationToken) -> Result<PruneReport, StoreError> {
        prune::run_once(&self.store, &self.prune_options(false, now, stop)).await
    }

    /// The options of billing's three stages over `scope`.
    pub fn billing_options(&self, scope: &RunScope, now: GregorianSeconds, stop: CancellationToken) -> BillingOptions {
        let sync_scope = match &scope.accounts {
            Some(accounts) => SyncScope::Accounts(accounts.clone()),
            None => SyncScope::Marked,
        };
        let reconcile_scope = RunScope {
            changed_only: false,
            ..scope.clone()
        };
        let mut reconcile = self.reconcile_options(&reconcile_scope, false, now);
        // The nightly recounts what changed (marks set by triggers on every inventory
        // write), falling back to every account when a full recount is due.
        if scope.accounts.is_none() && !scope.full_recount {
            reconcile.scope = ReconcileScope::Incremental;
        }
        BillingOptions {
            reconcile,
            sync: self.sync_options(sync_scope, scope.batch_size, FirstCommit::Baseline, now, stop.clone()),
            bookkeeper_sync: self.bookkeeper_sync_options(scope.batch_size, now, stop.clone()),
            stop,
            retry: FaultRetry::for_runs(&self.settings.database),
        }
    }

    /// The options of billing's dry run over `scope`: those the real run would use.
    pub fn billing_preview_options(
        &self,
        scope: &RunScope,
        now: GregorianSeconds,
        stop: CancellationToken,
    ) -> billing_preview::PreviewOptions {
        let billing = self.billing_options(scope, now, stop);
        billing_preview::PreviewOptions {
            reconcile: billing.reconcile,
            sync: billing.sync,
            delivery_batch_size: billing.bookkeeper_sync.batch_size,
            http_unconfigured: self.settings.bookkeepers.http.unconfigured_reason(),
        }
    }

    /// `tally run billing --dry-run`: what billing would do, each record to `sink`.
    pub async fn billing_preview(
        &self,
        scope: &RunScope,
        now: GregorianSeconds,
        stop: CancellationToken,
        sink: &mut dyn billing_preview::PreviewSink,
    ) -> Result<billing_preview::BillingPreview, billing_preview::PreviewError> {
        let options = self.billing_preview_options(scope, now, stop);
        billing_preview::run_once(&self.store, &self.counting, &options, sink).await
    }

    pub async fn billing(
        &self,
        scope: &RunScope,
        now: GregorianSeconds,
        stop: CancellationToken,
        on_stage: &(dyn Fn(billing::Stage) + Send + Sync),
    ) -> Result<BillingReport, billing::BillingError> {
        let options = self.billing_options(scope, now, stop);
        billing::run_once(&self.store, &self.counting, &self.bookkeepers, &options, on_stage).await
    }
}

fn count(value: usize) -> u64 {
    u64::try_from(value).unwrap_or(u64::MAX)
}

impl JobContext {
    /// Runs one occurrence of a job and says how it ended.
    pub async fn run_job(&self, job: &JobSpec, stop: CancellationToken) -> RunOutcome {
        let now = GregorianSeconds::from_utc(Utc::now());
        let scope = RunScope {
            accounts: job.accounts.clone(),
            batch_size: job
                .batch_size
                .map(|size| usize::try_from(size.get()).unwrap_or(usize::MAX)),
            changed_only: false,
            full_recount: false,
        };
        // A database fault restarts the job (billing: its stage) for a bounded time.
        let retry = FaultRetry::for_runs(&self.settings.database);
        match job.kind {
            JobKind::Reconcile => {
                RunOutcome::of(&retry_faults(retry, "reconcile", &stop, || self.reconcile(&scope, now)).await)
            }
            JobKind::Sync => {
                RunOutcome::of(&retry_faults(retry, "sync", &stop, || self.sync(&scope, now, stop.clone())).await)
            }
            JobKind::BookkeeperSync => RunOutcome::of(
                &retry_faults(retry, "bookkeeper-sync", &stop, || {
                    self.bookkeeper_sync(&scope, now, stop.clone())
                })
                .await,
            ),
            // Billing retries stage by stage.
            JobKind::Billing => RunOutcome::of(
                &self
                    .billing(&scope, now, stop, &|stage| {
                        tracing::info!(stage = stage.describe(), "billing")
                    })
                    .await,
            ),
            JobKind::Ingest => {
                let cycle = match self.couch_client() {
                    Ok(client) => {
                        retry_faults(retry, "ingest", &stop, || {
                            self.ingest_cycle(&client, job.reconcile_changed, now)
                        })
                        .await
                    }
                    Err(error) => Err(error),
                };
                RunOutcome::of(&cycle)
            }
            JobKind::Topup => RunOutcome::of(&retry_faults(retry, "topup", &stop, || self.topup(&scope, now)).await),
            JobKind::Prune => {
                RunOutcome::of(&retry_faults(retry, "prune", &stop, || self.prune(now, stop.clone())).await)
            }
        }
    }
}

impl JobReport for ReconcileReport {
    fn outcome(&self) -> RunOutcome {
        let figures = RunFigures {
            accounts: self.accounts_scanned,
            changes: self.accounts_changed,
            failures: count(self.skipped.len()),
        };
        match self.is_partial() {
            true => RunOutcome::reported(RunEnd::DataErrors, figures, joined(self.problems(), ", ")),
            false => RunOutcome::succeeded(figures),
        }
    }
}

impl JobReport for SyncReport {
    fn outcome(&self) -> RunOutcome {
        let figures = RunFigures {
            accounts: count(self.accounts_scanned),
            changes: count(self.invoices_changed),
            failures: count(self.skipped.len()),
        };
        let end = if self.interrupted {
            RunEnd::Interrupted
        } else if self.is_partial() {
            RunEnd::DataErrors
        } else {
            RunEnd::Succeeded
        };
        RunOutcome::reported(end, figures, joined(self.problems(), ", "))
    }
}

/// Rejected documents are data errors; an unreachable CouchDB is temporary (the
/// checkpoints stay, the next run resumes there).
impl JobReport for IngestCycle {
    fn outcome(&self) -> RunOutcome {
        let figures = RunFigures {
            accounts: self.ingest.documents,
            changes: self.ingest.applied,
            failures: self.ingest.rejected,
        };
        let skipped = self.reconcile.as_ref().is_some_and(ReconcileReport::is_partial);
        let mut problems = Vec::new();
        if self.ingest.is_partial() {
            problems.push(format!("{} document(s) rejected", self.ingest.rejected));
        }
        if let Some(reconcile) = self.reconcile.as_ref() {
            problems.extend(
                reconcile
                    .problems()
                    .into_iter()
                    .map(|problem| format!("reconcile: {problem}")),
            );
        }
        match self.ingest.is_partial() || skipped {
            true => RunOutcome::reported(RunEnd::DataErrors, figures, joined(problems, ", ")),
            false => RunOutcome::succeeded(figures),
        }
    }
}

impl JobReport for BookkeeperSyncReport {
    fn outcome(&self) -> RunOutcome {
        let figures = RunFigures {
            accounts: count(self.deliveries),
            changes: count(self.acknowledged + self.refused),
            failures: count(self.failed.len()),
        };
        let end = if self.interrupted {
            RunEnd::Interrupted
        } else if self.has_failures() {
            RunEnd::TemporaryFailure
        } else {
            RunEnd::Succeeded
        };
        RunOutcome::reported(end, figures, joined(self.problems(), ", "))
    }
}

impl JobReport for TopupReport {
    fn outcome(&self) -> RunOutcome {
        TopupReport::outcome(self)
    }
}

impl JobError for ReconcileError {
    fn is_temporary(&self) -> bool {
        match self {
            ReconcileError::Store(error) => error.is_temporary(),
        }
    }
}

impl JobError for IngestJobError {
    fn is_temporary(&self) -> bool {
        IngestJobError::is_temporary(self)
    }
}

impl JobRunner for JobContext {
    async fn run(&self, job: &JobSpec, _scheduled_for: DateTime<Utc>, shutdown: CancellationToken) -> RunOutcome {
        self.run_job(job, shutdown).await
    }
}
