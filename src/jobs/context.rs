//! What every job run needs, built once from the settings, and the scheduler's
//! [`JobRunner`]: one place that turns settings and a job definition into the options
//! of `reconcile`, `sync`, `bookkeeper-sync`, `billing` and `topup`, for the one-shot command
//! line and the daemon alike.

use super::billing::{self, BillingReport};
use super::bookkeeper_sync::{self, BookkeeperSyncOptions, BookkeeperSyncReport};
use super::ingest::{IngestCycle, IngestJobError};
use super::reconcile::{self, ReconcileError, ReconcileOptions, ReconcileReport};
use super::retry::{failed_run, retry_faults, FaultRetry};
use super::sync::{self, SyncOptions, SyncReport};
use super::topup::{self, TopupOptions, TopupReport};
use crate::bookkeepers::Bookkeepers;
use crate::config::Settings;
use crate::domain::changes::FirstCommit;
use crate::domain::classify::NumberClassifiers;
use crate::domain::summary::GregorianSeconds;
use crate::domain::AccountId;
use crate::scheduler::daemon::{JobRunner, RunEnd, RunFigures, RunOutcome};
use crate::scheduler::job_file::{JobDefinition, JobKind};
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
            run_id: run_id("sync", now),
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

    pub async fn billing(
        &self,
        scope: &RunScope,
        now: GregorianSeconds,
        stop: CancellationToken,
        on_stage: &(dyn Fn(billing::Stage) + Send + Sync),
    ) -> Result<BillingReport, billing::BillingError> {
        billing::run_once(self, scope, now, stop, on_stage).await
    }
}

/// A run id: the job, the time and the process, unique enough to tell runs apart.
pub fn run_id(job: &str, now: GregorianSeconds) -> String {
    format!("{job}-{}-{}", now.0, std::process::id())
}

fn count(value: usize) -> u64 {
    u64::try_from(value).unwrap_or(u64::MAX)
}

fn outcome(end: RunEnd, figures: RunFigures, message: Option<String>) -> RunOutcome {
    match (end, message) {
        (RunEnd::Succeeded, _) => RunOutcome::succeeded(figures),
        (end, Some(message)) => RunOutcome::ended(end, figures, message),
        (end, None) => RunOutcome::ended(end, figures, end.as_str()),
    }
}

impl JobContext {
    /// Runs one occurrence of a job definition and says how it ended.
    pub async fn run_job(&self, job: &JobDefinition, stop: CancellationToken) -> RunOutcome {
        let now = GregorianSeconds::from_utc(Utc::now());
        let scope = RunScope {
            accounts: job.accounts.clone(),
            batch_size: job
                .batch_size
                .map(|size| usize::try_from(size.get()).unwrap_or(usize::MAX)),
            changed_only: false,
        };
        // A database fault restarts the job (billing: its stage) for a bounded time.
        let retry = FaultRetry::for_runs(&self.settings.database);
        match job.kind {
            JobKind::Reconcile => match retry_faults(retry, "reconcile", &stop, || self.reconcile(&scope, now)).await {
                Ok(report) => {
                    let figures = RunFigures {
                        accounts: report.accounts_scanned,
                        changes: report.accounts_changed,
                        failures: count(report.skipped.len()),
                    };
                    let end = if report.is_partial() {
                        RunEnd::DataErrors
                    } else {
                        RunEnd::Succeeded
                    };
                    outcome(end, figures, None)
                }
                Err(error) => failed_run(&error),
            },
            JobKind::Sync => match retry_faults(retry, "sync", &stop, || self.sync(&scope, now, stop.clone())).await {
                Ok(report) => sync_outcome(&report),
                Err(error) => failed_run(&error),
            },
            JobKind::BookkeeperSync => match retry_faults(retry, "bookkeeper-sync", &stop, || {
                self.bookkeeper_sync(&scope, now, stop.clone())
            })
            .await
            {
                Ok(report) => bookkeeper_sync_outcome(&report),
                Err(error) => failed_run(&error),
            },
            JobKind::Billing => match self
                .billing(&scope, now, stop, &|stage| {
                    tracing::info!(stage = stage.describe(), "billing")
                })
                .await
            {
                Ok(report) => report.outcome(),
                Err(error) => failed_run(&error),
            },
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
                ingest_outcome(&cycle)
            }
            JobKind::Topup => match retry_faults(retry, "topup", &stop, || self.topup(&scope, now)).await {
                Ok(report) => report.outcome(),
                Err(error) => failed_run(&error),
            },
        }
    }
}

pub fn sync_outcome(report: &SyncReport) -> RunOutcome {
    let figures = RunFigures {
        accounts: count(report.accounts_scanned),
        changes: count(report.invoices_changed),
        failures: count(report.skipped.len()),
    };
    let end = if report.interrupted {
        RunEnd::Interrupted
    } else if report.is_partial() {
        RunEnd::DataErrors
    } else {
        RunEnd::Succeeded
    };
    outcome(end, figures, None)
}

/// How an ingest cycle ends: rejected documents are data errors; an unreachable
/// CouchDB is temporary (the checkpoints stay, the next run resumes there).
pub fn ingest_outcome(cycle: &Result<IngestCycle, IngestJobError>) -> RunOutcome {
    match cycle {
        Ok(cycle) => {
            let figures = RunFigures {
                accounts: cycle.ingest.documents,
                changes: cycle.ingest.applied,
                failures: cycle.ingest.rejected,
            };
            let skipped = cycle.reconcile.as_ref().is_some_and(ReconcileReport::is_partial);
            match cycle.ingest.is_partial() || skipped {
                true => outcome(RunEnd::DataErrors, figures, None),
                false => outcome(RunEnd::Succeeded, figures, None),
            }
        }
        Err(error) if error.is_temporary() => {
            RunOutcome::ended(RunEnd::TemporaryFailure, RunFigures::default(), error.to_string())
        }
        Err(error) => RunOutcome::ended(RunEnd::Failed, RunFigures::default(), error.to_string()),
    }
}

pub fn bookkeeper_sync_outcome(report: &BookkeeperSyncReport) -> RunOutcome {
    let figures = RunFigures {
        accounts: count(report.deliveries),
        changes: count(report.acknowledged + report.refused),
        failures: count(report.failed.len()),
    };
    let end = if report.interrupted {
        RunEnd::Interrupted
    } else if report.has_failures() {
        RunEnd::TemporaryFailure
    } else {
        RunEnd::Succeeded
    };
    outcome(end, figures, None)
}

impl JobRunner for JobContext {
    async fn run(&self, job: &JobDefinition, _scheduled_for: DateTime<Utc>, shutdown: CancellationToken) -> RunOutcome {
        self.run_job(job, shutdown).await
    }
}
