//! The scheduling loop of `tally schedule`: fires each job at its times, never twice
//! at once, and never twice for the same scheduled time across instances.
//!
//! It is generic over three seams so that it is built and tested without the store or
//! the jobs:
//! - [`JobRunner`] runs one occurrence of a job (implemented by `jobs/`);
//! - [`RunLedger`] records runs and arbitrates between instances: a unique run record
//!   per (job name, scheduled time) taken by [`RunLedger::claim`], plus a lease that the
//!   holder renews while it works and that another instance takes over once it expires
//!   (implemented by the store on both backends, since every run is recorded for
//!   `tally runs`; on SQLite there is only one instance to arbitrate. [`MemoryLedger`]
//!   implements it here for tests);
//! - [`Clock`] gives the wall time; sleeping uses tokio time, so tests run under
//!   `tokio::time::pause` with a [`TokioClock`] and take no real time.
//!
//! # How it runs
//! One task per enabled job, each a loop: take over an abandoned run of the job if
//! there is one, otherwise sleep until the next fire time; claim the run in the ledger
//! (an instance that loses the claim skips that time); run it while renewing the lease;
//! record the outcome. Because each loop awaits its run before looking at the clock
//! again, a job still running at its next time is not started again by this instance,
//! and the ledger refuses a claim while another run of the job is marked running
//! ([`Claim::Busy`]), so no other instance starts it either. The times passed meanwhile
//! are handled by the job's `missed` policy when the run ends (one catch-up run, or
//! skip), exactly like times missed while nothing was running at all. Different jobs
//! run concurrently; keeping, say, `sync` and `billing` off the same account at once
//! is the store's per-account lease, not the scheduler's business.
//!
//! # Shutdown
//! When the token passed to [`run`] is cancelled, no new run starts; each running job
//! sees a cancelled token (a child of it) and is expected to finish its current batch
//! and return. A runner that has not returned after `shutdown_grace` is dropped. Either
//! way the run is recorded as interrupted (unless the runner reports it finished its
//! work), and [`run`] returns within about `shutdown_grace`.
//!
//! This module must not know what a job does nor how runs are stored.

use std::future::Future;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use super::job_file::{JobDefinition, JobName};
use super::schedule::{missed_fires, next_fire, MissedDecision};
use crate::exit::ExitCode;

/// The wall time, injected so that tests can pause it.
pub trait Clock: Send + Sync + 'static {
    fn now(&self) -> DateTime<Utc>;
}

/// The system's wall clock, for production.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }
}

/// A wall clock that follows tokio's clock from a fixed origin, so that under
/// `tokio::time::pause` the wall time advances exactly as far as tokio's sleeps do.
#[derive(Debug, Clone, Copy)]
pub struct TokioClock {
    origin: DateTime<Utc>,
    origin_instant: tokio::time::Instant,
}

impl TokioClock {
    /// A clock that reads `origin` now and advances with tokio time from here.
    pub fn starting_at(origin: DateTime<Utc>) -> Self {
        Self {
            origin,
            origin_instant: tokio::time::Instant::now(),
        }
    }
}

impl Clock for TokioClock {
    fn now(&self) -> DateTime<Utc> {
        let elapsed = self.origin_instant.elapsed();
        let elapsed = chrono::Duration::from_std(elapsed).unwrap_or(chrono::Duration::MAX);
        self.origin
            .checked_add_signed(elapsed)
            .unwrap_or(DateTime::<Utc>::MAX_UTC)
    }
}

/// The id of a run record, given by the ledger.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RunId(pub i64);

impl std::fmt::Display for RunId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// Who holds a lease: one `tally schedule` or `tally run` process. Unique per process
/// (host, process id and start time), so a restarted process never mistakes its
/// predecessor's lease for its own.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct InstanceId(String);

impl InstanceId {
    pub fn new(text: impl Into<String>) -> Self {
        Self(text.into())
    }

    /// `host:pid:start-nanoseconds` for this process.
    pub fn for_this_process(host: &str) -> Self {
        let started = Utc::now().timestamp_nanos_opt().unwrap_or_default();
        Self(format!("{host}:{}:{started}", std::process::id()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// This machine's host name, for run records; `localhost` when it cannot be read.
pub fn local_host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::fs::read_to_string("/etc/hostname"))
        .map(|name| name.trim().to_owned())
        .ok()
        .filter(|name| !name.is_empty())
        .unwrap_or_else(|| "localhost".to_owned())
}

/// The counts a run reports, recorded with it and written as metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RunFigures {
    /// Accounts looked at.
    pub accounts: u64,
    /// Accounts, invoices or deliveries changed (what "changed" means is the job's).
    pub changes: u64,
    /// Accounts or deliveries that failed.
    pub failures: u64,
}

/// How a run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RunEnd {
    /// All the work was done.
    Succeeded,
    /// Some accounts had data errors; the others were done.
    DataErrors,
    /// A temporary failure left work to retry (bookkeeper down, database busy).
    TemporaryFailure,
    /// Anything else went wrong.
    Failed,
    /// Stopped early by shutdown, the time limit or a lost lease; work is left.
    Interrupted,
}

impl RunEnd {
    /// The exit code of a one-shot `tally run` that ended so.
    pub fn exit_code(self) -> ExitCode {
        match self {
            RunEnd::Succeeded => ExitCode::Done,
            RunEnd::DataErrors => ExitCode::DataErrors,
            RunEnd::TemporaryFailure | RunEnd::Interrupted => ExitCode::TemporaryFailure,
            RunEnd::Failed => ExitCode::Failure,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            RunEnd::Succeeded => "succeeded",
            RunEnd::DataErrors => "data-errors",
            RunEnd::TemporaryFailure => "temporary-failure",
            RunEnd::Failed => "failed",
            RunEnd::Interrupted => "interrupted",
        }
    }
}

/// What a [`JobRunner`] returns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunOutcome {
    pub end: RunEnd,
    pub figures: RunFigures,
    /// A one-line explanation for the run record when the run did not succeed.
    pub message: Option<String>,
}

impl RunOutcome {
    pub fn succeeded(figures: RunFigures) -> Self {
        Self {
            end: RunEnd::Succeeded,
            figures,
            message: None,
        }
    }

    pub fn ended(end: RunEnd, figures: RunFigures, message: impl Into<String>) -> Self {
        Self {
            end,
            figures,
            message: Some(message.into()),
        }
    }
}

/// Runs one occurrence of a job. Implemented by the jobs layer.
///
/// The runner must watch `shutdown`: once it is cancelled (shutdown, time limit or a
/// lost lease), finish the current batch (commit it), stop, and report
/// [`RunEnd::Interrupted`] with what was done. It is dropped if it does not return
/// within the daemon's grace period, so it must never leave a batch half-written
/// (each batch is one transaction).
pub trait JobRunner: Send + Sync + 'static {
    fn run(
        &self,
        job: &JobDefinition,
        scheduled_for: DateTime<Utc>,
        shutdown: CancellationToken,
    ) -> impl Future<Output = RunOutcome> + Send;
}

/// A ledger failure. The daemon logs it and tries again after a pause; it never stops
/// scheduling because the database hiccuped.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LedgerError {
    /// Worth retrying: connection lost, database busy or locked.
    #[error("run ledger unavailable: {0}")]
    Unavailable(String),
    /// Not worth retrying as is.
    #[error("run ledger failed: {0}")]
    Failed(String),
}

/// What [`RunLedger::claim`] decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claim {
    /// This instance created the run record and holds its lease.
    Won(RunId),
    /// The record existed with an expired lease (its holder died); this instance now
    /// holds it and runs the occurrence again (jobs are idempotent).
    TakenOver(RunId),
    /// Another instance holds or finished this occurrence.
    AlreadyClaimed,
    /// Another occurrence of the same job is still marked running (here or on another
    /// host): a job never runs twice at once, whatever the scheduled times.
    Busy { scheduled_for: DateTime<Utc>, host: String },
}

/// Whether a lease is still ours.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lease {
    Held,
    Lost,
}

/// What a claim asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimRequest {
    pub job: JobName,
    pub scheduled_for: DateTime<Utc>,
    pub instance: InstanceId,
    pub host: String,
    pub now: DateTime<Utc>,
    pub lease_until: DateTime<Utc>,
}

/// The status of a run record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunStatus {
    Running,
    Ended(RunEnd),
}

impl RunStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            RunStatus::Running => "running",
            RunStatus::Ended(end) => end.as_str(),
        }
    }
}

/// One run as recorded: what `tally runs` lists.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunRecord {
    pub id: RunId,
    pub job: JobName,
    pub scheduled_for: DateTime<Utc>,
    pub started_at: DateTime<Utc>,
    pub ended_at: Option<DateTime<Utc>>,
    pub status: RunStatus,
    pub figures: RunFigures,
    pub message: Option<String>,
    pub host: String,
    pub instance: InstanceId,
    pub lease_until: DateTime<Utc>,
    /// How many times another instance took the run over from a dead holder.
    pub takeovers: u32,
}

/// Where runs are recorded and claimed. The store implements it on PostgreSQL with a
/// unique key on (job, scheduled_for) and an `UPDATE ... WHERE lease_until < now` for
/// takeovers; [`MemoryLedger`] implements it in memory.
pub trait RunLedger: Send + Sync + 'static {
    /// The latest scheduled time recorded for `job`, whatever its status.
    fn last_scheduled(&self, job: &JobName) -> impl Future<Output = Result<Option<DateTime<Utc>>, LedgerError>> + Send;

    /// Atomically: creates the unique run record for (job, scheduled time) unless
    /// another run of the job is still `running` ([`Claim::Busy`]); or takes the record
    /// over when it is still `running` with a lease that expired before `now`.
    ///
    /// On PostgreSQL: a unique key on (job, scheduled_for), a partial unique index on
    /// (job) where the status is running, `INSERT ... ON CONFLICT DO NOTHING`, and for
    /// a takeover `UPDATE ... WHERE status = 'running' AND lease_until < now`.
    fn claim(&self, request: &ClaimRequest) -> impl Future<Output = Result<Claim, LedgerError>> + Send;

    /// Extends the lease of a run this instance holds.
    fn renew(
        &self,
        run: RunId,
        instance: &InstanceId,
        lease_until: DateTime<Utc>,
    ) -> impl Future<Output = Result<Lease, LedgerError>> + Send;

    /// Records the end of a run this instance holds; [`Lease::Lost`] when another
    /// instance took it over meanwhile (then nothing is written).
    fn finish(
        &self,
        run: RunId,
        instance: &InstanceId,
        ended_at: DateTime<Utc>,
        outcome: &RunOutcome,
    ) -> impl Future<Output = Result<Lease, LedgerError>> + Send;

    /// The scheduled time of the oldest run of `job` still marked running whose lease
    /// expired before `now`: its holder died.
    fn abandoned(
        &self,
        job: &JobName,
        now: DateTime<Utc>,
    ) -> impl Future<Output = Result<Option<DateTime<Utc>>, LedgerError>> + Send;

    /// The most recent runs, newest first.
    fn recent(&self, limit: usize) -> impl Future<Output = Result<Vec<RunRecord>, LedgerError>> + Send;
}

/// A [`RunLedger`] in memory: for tests, and for a single instance that needs no
/// arbitration. Shared between daemons through an `Arc` it arbitrates like the real
/// one.
#[derive(Debug, Default)]
pub struct MemoryLedger {
    records: Mutex<Vec<RunRecord>>,
    next_id: AtomicI64,
}

impl MemoryLedger {
    pub fn new() -> Self {
        Self::default()
    }

    /// Every record, in creation order.
    pub fn records(&self) -> Vec<RunRecord> {
        self.lock().clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<RunRecord>> {
        // A panic while holding this lock leaves plain data behind, still consistent
        // record by record, so a poisoned lock is used as is.
        self.records.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl RunLedger for MemoryLedger {
    async fn last_scheduled(&self, job: &JobName) -> Result<Option<DateTime<Utc>>, LedgerError> {
        Ok(self
            .lock()
            .iter()
            .filter(|record| record.job == *job)
            .map(|record| record.scheduled_for)
            .max())
    }

    async fn claim(&self, request: &ClaimRequest) -> Result<Claim, LedgerError> {
        let mut records = self.lock();
        let existing = records
            .iter_mut()
            .find(|record| record.job == request.job && record.scheduled_for == request.scheduled_for);
        match existing {
            None => {
                let busy = records
                    .iter()
                    .find(|record| record.job == request.job && record.status == RunStatus::Running);
                if let Some(running) = busy {
                    return Ok(Claim::Busy {
                        scheduled_for: running.scheduled_for,
                        host: running.host.clone(),
                    });
                }
                let id = RunId(self.next_id.fetch_add(1, Ordering::Relaxed) + 1);
                records.push(RunRecord {
                    id,
                    job: request.job.clone(),
                    scheduled_for: request.scheduled_for,
                    started_at: request.now,
                    ended_at: None,
                    status: RunStatus::Running,
                    figures: RunFigures::default(),
                    message: None,
                    host: request.host.clone(),
                    instance: request.instance.clone(),
                    lease_until: request.lease_until,
                    takeovers: 0,
                });
                Ok(Claim::Won(id))
            }
            Some(record) if record.status == RunStatus::Running && record.lease_until < request.now => {
                record.instance = request.instance.clone();
                record.host = request.host.clone();
                record.started_at = request.now;
                record.lease_until = request.lease_until;
                record.takeovers += 1;
                Ok(Claim::TakenOver(record.id))
            }
            Some(_) => Ok(Claim::AlreadyClaimed),
        }
    }

    async fn renew(&self, run: RunId, instance: &InstanceId, lease_until: DateTime<Utc>) -> Result<Lease, LedgerError> {
        let mut records = self.lock();
        match records.iter_mut().find(|record| record.id == run) {
            Some(record) if record.instance == *instance && record.status == RunStatus::Running => {
                record.lease_until = lease_until;
                Ok(Lease::Held)
            }
            Some(_) => Ok(Lease::Lost),
            None => Err(LedgerError::Failed(format!("no run {run}"))),
        }
    }

    async fn finish(
        &self,
        run: RunId,
        instance: &InstanceId,
        ended_at: DateTime<Utc>,
        outcome: &RunOutcome,
    ) -> Result<Lease, LedgerError> {
        let mut records = self.lock();
        match records.iter_mut().find(|record| record.id == run) {
            Some(record) if record.instance == *instance && record.status == RunStatus::Running => {
                record.ended_at = Some(ended_at);
                record.status = RunStatus::Ended(outcome.end);
                record.figures = outcome.figures;
                record.message = outcome.message.clone();
                Ok(Lease::Held)
            }
            Some(_) => Ok(Lease::Lost),
            None => Err(LedgerError::Failed(format!("no run {run}"))),
        }
    }

    async fn abandoned(&self, job: &JobName, now: DateTime<Utc>) -> Result<Option<DateTime<Utc>>, LedgerError> {
        Ok(self
            .lock()
            .iter()
            .filter(|record| record.job == *job && record.status == RunStatus::Running && record.lease_until < now)
            .map(|record| record.scheduled_for)
            .min())
    }

    async fn recent(&self, limit: usize) -> Result<Vec<RunRecord>, LedgerError> {
        let mut records = self.lock().clone();
        records.sort_by_key(|record| std::cmp::Reverse((record.started_at, record.id)));
        records.truncate(limit);
        Ok(records)
    }
}

/// Cancels `shutdown` on the first SIGTERM or SIGINT (Ctrl-C). The handlers are
/// installed before this returns, so a signal arriving right after is not lost; from
/// then on these signals no longer kill the process: the token is the only way out.
pub fn cancel_on_termination_signals(shutdown: CancellationToken) -> std::io::Result<tokio::task::JoinHandle<()>> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut terminate = signal(SignalKind::terminate())?;
    let mut interrupt = signal(SignalKind::interrupt())?;
    Ok(tokio::spawn(async move {
        let name = tokio::select! {
            _ = terminate.recv() => "SIGTERM",
            _ = interrupt.recv() => "SIGINT",
            _ = shutdown.cancelled() => return,
        };
        tracing::info!(signal = name, "stopping: no new runs; the running batches finish");
        shutdown.cancel();
    }))
}

/// The daemon's own settings, given by the caller (from the configuration file).
#[derive(Debug, Clone)]
pub struct DaemonSettings {
    /// This process, as lease holder.
    pub instance: InstanceId,
    /// This machine, for run records.
    pub host: String,
    /// How long a claim or renewal keeps a run ours. Another instance takes the run
    /// over once this passes without a renewal, so it bounds how long a dead holder
    /// blocks a job.
    pub lease: Duration,
    /// How often a running job's lease is renewed; well under `lease`.
    pub heartbeat: Duration,
    /// How long a running job may take to finish its batch after shutdown (or after a
    /// lost lease) before it is dropped.
    pub shutdown_grace: Duration,
    /// The pause before trying again after a ledger error.
    pub retry_after: Duration,
    /// The longest single sleep: the loop re-reads the wall clock at least this often,
    /// so a clock step (NTP, suspend) delays a fire by at most this much.
    pub max_sleep: Duration,
}

impl DaemonSettings {
    /// The defaults: a 60 s lease renewed every 20 s, 30 s of grace, 10 s between
    /// ledger retries, the clock re-read every 60 s.
    pub fn new(instance: InstanceId, host: impl Into<String>) -> Self {
        Self {
            instance,
            host: host.into(),
            lease: Duration::from_secs(60),
            heartbeat: Duration::from_secs(20),
            shutdown_grace: Duration::from_secs(30),
            retry_after: Duration::from_secs(10),
            max_sleep: Duration::from_secs(60),
        }
    }

    /// Refuses settings under which leases would expire while their holder is alive,
    /// or the loop would spin.
    pub fn check(&self) -> Result<(), DaemonSettingsError> {
        let refuse = |reason: &str| Err(DaemonSettingsError(reason.to_owned()));
        if self.heartbeat.is_zero() || self.retry_after.is_zero() || self.max_sleep.is_zero() {
            return refuse("heartbeat, retry pause and longest sleep must be more than zero");
        }
        // Two heartbeats per lease at least, so one slow renewal does not lose it.
        if self.heartbeat.saturating_mul(2) > self.lease {
            return refuse(&format!(
                "the lease ({:?}) must last at least two heartbeats ({:?} each)",
                self.lease, self.heartbeat
            ));
        }
        Ok(())
    }
}

/// Daemon settings that cannot work: a configuration error (exit 78).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("scheduler settings: {0}")]
pub struct DaemonSettingsError(String);

/// Everything a job loop shares.
struct Context<L, C, R> {
    ledger: Arc<L>,
    clock: Arc<C>,
    settings: DaemonSettings,
    runner: Arc<R>,
    shutdown: CancellationToken,
}

/// Runs the scheduling loop until `shutdown` is cancelled (or no enabled job has a
/// fire time left), then returns once every running job has stopped, within about
/// `settings.shutdown_grace`. Fails at once, before scheduling anything, only when
/// the settings cannot work.
pub async fn run<L, C, R>(
    ledger: Arc<L>,
    clock: Arc<C>,
    settings: DaemonSettings,
    runner: Arc<R>,
    jobs: Vec<JobDefinition>,
    shutdown: CancellationToken,
) -> Result<(), DaemonSettingsError>
where
    L: RunLedger,
    C: Clock,
    R: JobRunner,
{
    settings.check()?;
    let context = Arc::new(Context {
        ledger,
        clock,
        settings,
        runner,
        shutdown,
    });
    let mut loops = JoinSet::new();
    for job in jobs {
        if !job.enabled {
            tracing::info!(job = %job.name, "job disabled, not scheduled");
            continue;
        }
        let span = tracing::info_span!("job", job = %job.name, kind = %job.kind);
        loops.spawn(job_loop(context.clone(), Arc::new(job)).instrument(span));
    }
    if loops.is_empty() {
        tracing::warn!("no enabled job to schedule");
    }
    while let Some(joined) = loops.join_next().await {
        if let Err(error) = joined {
            // A job loop only ends abnormally by a bug; the other jobs keep running.
            tracing::error!(%error, "a job loop stopped abnormally");
        }
    }
    Ok(())
}

/// Sleeps until the clock reads `target` or later; false when shutdown came first.
async fn sleep_until<L, C: Clock, R>(context: &Context<L, C, R>, target: DateTime<Utc>) -> bool {
    loop {
        let now = context.clock.now();
        if now >= target {
            return true;
        }
        let remaining = (target - now).to_std().unwrap_or_default();
        let wait = remaining.min(context.settings.max_sleep);
        tokio::select! {
            _ = context.shutdown.cancelled() => return false,
            _ = tokio::time::sleep(wait) => {}
        }
    }
}

/// Pauses after a ledger error; false when shutdown came first.
async fn pause_after_error<L, C, R>(context: &Context<L, C, R>) -> bool {
    tokio::select! {
        _ = context.shutdown.cancelled() => false,
        _ = tokio::time::sleep(context.settings.retry_after) => true,
    }
}

/// The next occurrence to run after a run scheduled for `last` (or at start, after the
/// last recorded one), by the job's `missed` policy: `Some(time)` to run now.
fn catch_up<L, C: Clock, R>(
    context: &Context<L, C, R>,
    job: &JobDefinition,
    last: Option<DateTime<Utc>>,
) -> Option<DateTime<Utc>> {
    let now = context.clock.now();
    match missed_fires(&job.schedule, job.timezone, last, now, job.missed) {
        MissedDecision::NoneMissed => None,
        MissedDecision::RunOnce { scheduled_for, missed } => {
            tracing::info!(missed, %scheduled_for, "catching up missed times with one run");
            Some(scheduled_for)
        }
        MissedDecision::Skipped { missed } => {
            tracing::info!(missed, "skipping missed times");
            None
        }
    }
}

async fn job_loop<L: RunLedger, C: Clock, R: JobRunner>(context: Arc<Context<L, C, R>>, job: Arc<JobDefinition>) {
    let last = loop {
        match context.ledger.last_scheduled(&job.name).await {
            Ok(last) => break last,
            Err(error) => {
                tracing::warn!(%error, "cannot read the last run; retrying");
                if !pause_after_error(&context).await {
                    return;
                }
            }
        }
    };
    let mut due = catch_up(&context, &job, last);
    while !context.shutdown.is_cancelled() {
        let scheduled_for = match due.take() {
            Some(scheduled_for) => scheduled_for,
            None => match context.ledger.abandoned(&job.name, context.clock.now()).await {
                Ok(Some(abandoned)) => abandoned,
                Ok(None) => {
                    let Some(next) = next_fire(&job.schedule, job.timezone, context.clock.now()) else {
                        tracing::info!("the schedule has no more fire times");
                        return;
                    };
                    tracing::debug!(%next, "sleeping until the next fire time");
                    if !sleep_until(&context, next).await {
                        return;
                    }
                    next
                }
                Err(error) => {
                    tracing::warn!(%error, "cannot look for abandoned runs; retrying");
                    if !pause_after_error(&context).await {
                        return;
                    }
                    continue;
                }
            },
        };
        match claim_and_run(&context, &job, scheduled_for).await {
            Ok(()) => due = catch_up(&context, &job, Some(scheduled_for)),
            Err(error) => {
                tracing::warn!(%error, %scheduled_for, "cannot claim the run; retrying");
                if !pause_after_error(&context).await {
                    return;
                }
                // The occurrence is claimed on the next pass if still due.
                due = Some(scheduled_for);
            }
        }
    }
}

fn lease_until<L, C: Clock, R>(context: &Context<L, C, R>) -> DateTime<Utc> {
    let lease = chrono::Duration::from_std(context.settings.lease).unwrap_or(chrono::Duration::MAX);
    context
        .clock
        .now()
        .checked_add_signed(lease)
        .unwrap_or(DateTime::<Utc>::MAX_UTC)
}

async fn claim_and_run<L: RunLedger, C: Clock, R: JobRunner>(
    context: &Arc<Context<L, C, R>>,
    job: &Arc<JobDefinition>,
    scheduled_for: DateTime<Utc>,
) -> Result<(), LedgerError> {
    let run_id = match claim(context, job, scheduled_for).await? {
        Claim::Won(run_id) => run_id,
        Claim::TakenOver(run_id) => {
            tracing::warn!(run_id = %run_id, %scheduled_for, "taking over a run whose holder stopped renewing its lease");
            run_id
        }
        Claim::AlreadyClaimed => {
            tracing::debug!(%scheduled_for, "another instance has this run");
            return Ok(());
        }
        Claim::Busy {
            scheduled_for: running,
            host,
        } => {
            // Its holder catches this time up (or skips it) by the job's policy when
            // it finishes.
            tracing::info!(%scheduled_for, %running, %host, "the job is still running elsewhere; not started again");
            return Ok(());
        }
    };
    run_claimed(context, job, run_id, scheduled_for).await;
    Ok(())
}

async fn claim<L: RunLedger, C: Clock, R>(
    context: &Context<L, C, R>,
    job: &JobDefinition,
    scheduled_for: DateTime<Utc>,
) -> Result<Claim, LedgerError> {
    let request = ClaimRequest {
        job: job.name.clone(),
        scheduled_for,
        instance: context.settings.instance.clone(),
        host: context.settings.host.clone(),
        now: context.clock.now(),
        lease_until: lease_until(context),
    };
    context.ledger.claim(&request).await
}

/// Runs a claimed occurrence and records its end.
async fn run_claimed<L: RunLedger, C: Clock, R: JobRunner>(
    context: &Arc<Context<L, C, R>>,
    job: &Arc<JobDefinition>,
    run_id: RunId,
    scheduled_for: DateTime<Utc>,
) -> RunOutcome {
    let span = tracing::info_span!("run", run_id = %run_id, %scheduled_for);
    async {
        let outcome = supervise_run(context, job, run_id, scheduled_for).await;
        let ended_at = context.clock.now();
        let finished = context
            .ledger
            .finish(run_id, &context.settings.instance, ended_at, &outcome)
            .await;
        match finished {
            Ok(Lease::Held) => tracing::info!(
                status = outcome.end.as_str(),
                accounts = outcome.figures.accounts,
                changes = outcome.figures.changes,
                failures = outcome.figures.failures,
                "run ended"
            ),
            Ok(Lease::Lost) => tracing::warn!(
                status = outcome.end.as_str(),
                "run ended after another instance took it over; its record is theirs"
            ),
            Err(error) => tracing::error!(
                %error,
                status = outcome.end.as_str(),
                "cannot record the end of the run"
            ),
        }
        outcome
    }
    .instrument(span)
    .await
}

/// Why [`run_once`] could not run the job at all.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RunOnceError {
    /// Exit 78.
    #[error(transparent)]
    Settings(#[from] DaemonSettingsError),
    /// Exit 75: the run could not be claimed.
    #[error(transparent)]
    Ledger(#[from] LedgerError),
}

impl RunOnceError {
    pub fn exit_code(&self) -> ExitCode {
        match self {
            RunOnceError::Settings(_) => ExitCode::BadConfiguration,
            RunOnceError::Ledger(_) => ExitCode::TemporaryFailure,
        }
    }
}

/// One run of `job` outside the loop: what `tally run JOB` does for timers, cron and
/// people. It claims the run like the daemon (so it never runs beside another run of
/// the same job, on this host or another), renews its lease, honours the time limit
/// and `shutdown`, and records the run.
///
/// `scheduled_for` names the occurrence: a person's run uses the current time; a run
/// from a timer or cron may pass the job's latest fire time
/// ([`super::schedule::latest_fire_at_or_before`]) so that a daemon and a timer
/// never both bill the same night. A run that cannot start because the job is busy
/// or this occurrence is already claimed ends [`RunEnd::TemporaryFailure`] (exit 75).
pub async fn run_once<L, C, R>(
    ledger: Arc<L>,
    clock: Arc<C>,
    settings: DaemonSettings,
    runner: Arc<R>,
    job: JobDefinition,
    scheduled_for: DateTime<Utc>,
    shutdown: CancellationToken,
) -> Result<RunOutcome, RunOnceError>
where
    L: RunLedger,
    C: Clock,
    R: JobRunner,
{
    settings.check()?;
    let context = Arc::new(Context {
        ledger,
        clock,
        settings,
        runner,
        shutdown,
    });
    let job = Arc::new(job);
    let span = tracing::info_span!("job", job = %job.name, kind = %job.kind);
    async {
        let run_id = match claim(&context, &job, scheduled_for).await? {
            Claim::Won(run_id) | Claim::TakenOver(run_id) => run_id,
            Claim::AlreadyClaimed => {
                return Ok(RunOutcome::ended(
                    RunEnd::TemporaryFailure,
                    RunFigures::default(),
                    format!("job {} for {scheduled_for} is already claimed by another run", job.name),
                ))
            }
            Claim::Busy {
                scheduled_for: running,
                host,
            } => {
                return Ok(RunOutcome::ended(
                    RunEnd::TemporaryFailure,
                    RunFigures::default(),
                    format!("job {} is already running (the run for {running}, on {host})", job.name),
                ))
            }
        };
        Ok(run_claimed(&context, &job, run_id, scheduled_for).await)
    }
    .instrument(span)
    .await
}

/// Runs the job in its own task while renewing the lease, enforcing the time limit
/// and the shutdown grace period.
async fn supervise_run<L: RunLedger, C: Clock, R: JobRunner>(
    context: &Arc<Context<L, C, R>>,
    job: &Arc<JobDefinition>,
    run_id: RunId,
    scheduled_for: DateTime<Utc>,
) -> RunOutcome {
    let run_token = context.shutdown.child_token();
    let mut task = {
        let runner = context.runner.clone();
        let job = job.clone();
        let token = run_token.clone();
        tokio::spawn(async move { runner.run(&job, scheduled_for, token).await }.instrument(tracing::Span::current()))
    };
    let heartbeat_period = context.settings.heartbeat;
    let mut heartbeat = tokio::time::interval_at(tokio::time::Instant::now() + heartbeat_period, heartbeat_period);
    heartbeat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // A far deadline stands for "no limit" so that one select covers both cases.
    let far = Duration::from_secs(100 * 365 * 86_400);
    let time_limit = tokio::time::sleep(job.time_limit.unwrap_or(far));
    tokio::pin!(time_limit);
    let mut time_limit_hit = false;
    // Armed when the runner was asked to stop (shutdown or a lost lease).
    let grace = tokio::time::sleep(far);
    tokio::pin!(grace);
    let mut grace_armed = false;
    let mut lease_lost = false;
    loop {
        tokio::select! {
            biased;
            joined = &mut task => {
                return match joined {
                    Ok(outcome) => outcome,
                    Err(error) => {
                        tracing::error!(%error, "the job panicked");
                        RunOutcome::ended(RunEnd::Failed, RunFigures::default(), format!("the job panicked: {error}"))
                    }
                };
            }
            _ = &mut grace, if grace_armed => {
                task.abort();
                tracing::warn!(grace = ?context.settings.shutdown_grace, "the job did not stop in time; dropped");
                return RunOutcome::ended(
                    RunEnd::Interrupted,
                    RunFigures::default(),
                    "stopped: the job did not finish its batch within the grace period",
                );
            }
            _ = context.shutdown.cancelled(), if !grace_armed => {
                tracing::info!("shutdown: letting the job finish its batch");
                grace.as_mut().reset(tokio::time::Instant::now() + context.settings.shutdown_grace);
                grace_armed = true;
            }
            _ = &mut time_limit, if !time_limit_hit => {
                tracing::warn!(limit = ?job.time_limit, "time limit reached: asking the job to stop");
                time_limit_hit = true;
                run_token.cancel();
            }
            _ = heartbeat.tick(), if !lease_lost => {
                match context.ledger.renew(run_id, &context.settings.instance, lease_until(context)).await {
                    Ok(Lease::Held) => {}
                    Ok(Lease::Lost) => {
                        tracing::error!("lease lost to another instance: asking the job to stop");
                        lease_lost = true;
                        run_token.cancel();
                        if !grace_armed {
                            grace.as_mut().reset(tokio::time::Instant::now() + context.settings.shutdown_grace);
                            grace_armed = true;
                        }
                    }
                    // The lease lasts several heartbeats; the next tick tries again.
                    Err(error) => tracing::warn!(%error, "cannot renew the lease"),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scheduler::schedule::{MissedPolicy, Schedule};
    use chrono_tz::Tz;
    use std::path::PathBuf;
    use std::sync::atomic::AtomicUsize;

    /// 250 ms past a whole second, so that no fire time coincides with the start.
    fn origin() -> DateTime<Utc> {
        at("2026-11-23T10:00:00.250Z")
    }

    fn at(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text)
            .expect("test instants are RFC 3339")
            .with_timezone(&Utc)
    }

    fn second(n: i64) -> DateTime<Utc> {
        at("2026-11-23T10:00:00Z") + chrono::Duration::seconds(n)
    }

    fn job(name: &str, schedule: &str, missed: MissedPolicy) -> JobDefinition {
        JobDefinition {
            name: JobName::parse(name).expect("valid name"),
            kind: crate::scheduler::JobKind::Sync,
            schedule: Schedule::parse(schedule).expect("valid schedule"),
            timezone: Tz::UTC,
            accounts: None,
            batch_size: None,
            time_limit: None,
            missed,
            enabled: true,
            reconcile_changed: false,
            source: PathBuf::from("jobs/test.toml"),
        }
    }

    fn settings(instance: &str) -> DaemonSettings {
        DaemonSettings {
            instance: InstanceId::new(instance),
            host: format!("host-{instance}"),
            lease: Duration::from_secs(10),
            heartbeat: Duration::from_secs(3),
            shutdown_grace: Duration::from_secs(5),
            retry_after: Duration::from_secs(1),
            max_sleep: Duration::from_secs(60),
        }
    }

    #[derive(Debug, Clone, Copy)]
    enum Behaviour {
        /// Returns at once.
        Instant,
        /// `count` batches of `batch` each; checks the token between batches.
        Batches {
            batch: Duration,
            count: u64,
        },
        /// Sleeps this long and never looks at the token.
        IgnoresShutdown(Duration),
        Panics,
    }

    /// A job runner that records what it was asked to run and how many ran at once.
    struct FakeRunner {
        behaviour: Behaviour,
        calls: Mutex<Vec<DateTime<Utc>>>,
        running: AtomicUsize,
        most_at_once: AtomicUsize,
    }

    impl FakeRunner {
        fn new(behaviour: Behaviour) -> Arc<Self> {
            Arc::new(Self {
                behaviour,
                calls: Mutex::new(Vec::new()),
                running: AtomicUsize::new(0),
                most_at_once: AtomicUsize::new(0),
            })
        }

        fn calls(&self) -> Vec<DateTime<Utc>> {
            self.calls.lock().expect("not poisoned").clone()
        }
    }

    impl JobRunner for FakeRunner {
        async fn run(
            &self,
            _job: &JobDefinition,
            scheduled_for: DateTime<Utc>,
            shutdown: CancellationToken,
        ) -> RunOutcome {
            self.calls.lock().expect("not poisoned").push(scheduled_for);
            let now_running = self.running.fetch_add(1, Ordering::SeqCst) + 1;
            self.most_at_once.fetch_max(now_running, Ordering::SeqCst);
            let outcome = match self.behaviour {
                Behaviour::Instant => RunOutcome::succeeded(RunFigures {
                    accounts: 1,
                    changes: 0,
                    failures: 0,
                }),
                Behaviour::Batches { batch, count } => {
                    let mut done = 0;
                    loop {
                        if done == count {
                            break RunOutcome::succeeded(RunFigures {
                                accounts: done,
                                ..Default::default()
                            });
                        }
                        if shutdown.is_cancelled() {
                            break RunOutcome::ended(
                                RunEnd::Interrupted,
                                RunFigures {
                                    accounts: done,
                                    ..Default::default()
                                },
                                "stopped between batches",
                            );
                        }
                        // A batch is one transaction: it is never cut short.
                        tokio::time::sleep(batch).await;
                        done += 1;
                    }
                }
                Behaviour::IgnoresShutdown(duration) => {
                    tokio::time::sleep(duration).await;
                    RunOutcome::succeeded(RunFigures::default())
                }
                Behaviour::Panics => panic!("the fake job panics on purpose"),
            };
            self.running.fetch_sub(1, Ordering::SeqCst);
            outcome
        }
    }

    fn stop_after(shutdown: &CancellationToken, delay: Duration) {
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            shutdown.cancel();
        });
    }

    fn statuses(ledger: &MemoryLedger) -> Vec<(DateTime<Utc>, RunStatus)> {
        ledger
            .records()
            .into_iter()
            .map(|record| (record.scheduled_for, record.status))
            .collect()
    }

    const SUCCEEDED: RunStatus = RunStatus::Ended(RunEnd::Succeeded);
    const INTERRUPTED: RunStatus = RunStatus::Ended(RunEnd::Interrupted);

    #[tokio::test(start_paused = true)]
    async fn a_job_firing_every_second_fires_once_per_second() {
        let ledger = Arc::new(MemoryLedger::new());
        let clock = Arc::new(TokioClock::starting_at(origin()));
        let runner = FakeRunner::new(Behaviour::Instant);
        let shutdown = CancellationToken::new();
        stop_after(&shutdown, Duration::from_millis(5_000));

        let jobs = vec![job("tick", "* * * * * *", MissedPolicy::CatchUp)];
        run(ledger.clone(), clock, settings("a"), runner.clone(), jobs, shutdown)
            .await
            .expect("valid settings");

        let expected: Vec<DateTime<Utc>> = (1..=5).map(second).collect();
        assert_eq!(runner.calls(), expected);
        let expected: Vec<(DateTime<Utc>, RunStatus)> = (1..=5).map(|n| (second(n), SUCCEEDED)).collect();
        assert_eq!(statuses(&ledger), expected);
        let record = &ledger.records()[0];
        assert_eq!(record.host, "host-a");
        assert_eq!(record.figures.accounts, 1);
        assert!(record.ended_at.is_some_and(|end| end >= record.started_at));
    }

    #[tokio::test(start_paused = true)]
    async fn two_daemons_sharing_a_ledger_run_each_time_exactly_once() {
        let ledger = Arc::new(MemoryLedger::new());
        let clock = Arc::new(TokioClock::starting_at(origin()));
        let runner = FakeRunner::new(Behaviour::Instant);
        let shutdown = CancellationToken::new();
        stop_after(&shutdown, Duration::from_millis(5_000));
        let jobs = || {
            vec![
                job("tick", "* * * * * *", MissedPolicy::CatchUp),
                job("every-two", "*/2 * * * * *", MissedPolicy::CatchUp),
            ]
        };

        let (daemon_a, daemon_b) = tokio::join!(
            run(
                ledger.clone(),
                clock.clone(),
                settings("a"),
                runner.clone(),
                jobs(),
                shutdown.clone()
            ),
            run(
                ledger.clone(),
                clock.clone(),
                settings("b"),
                runner.clone(),
                jobs(),
                shutdown.clone()
            ),
        );
        daemon_a.expect("valid settings");
        daemon_b.expect("valid settings");

        let mut keys: Vec<(String, DateTime<Utc>)> = ledger
            .records()
            .into_iter()
            .map(|record| (record.job.to_string(), record.scheduled_for))
            .collect();
        keys.sort();
        let mut expected: Vec<(String, DateTime<Utc>)> = (1..=5)
            .map(|n| ("tick".to_owned(), second(n)))
            .chain([2, 4].map(|n| ("every-two".to_owned(), second(n))))
            .collect();
        expected.sort();
        assert_eq!(keys, expected);
        assert_eq!(runner.calls().len(), 7, "one run per job and time, not one per daemon");
    }

    #[tokio::test(start_paused = true)]
    async fn shutdown_mid_run_lets_the_batch_finish_and_records_interrupted() {
        let ledger = Arc::new(MemoryLedger::new());
        let clock = Arc::new(TokioClock::starting_at(origin()));
        let runner = FakeRunner::new(Behaviour::Batches {
            batch: Duration::from_secs(1),
            count: 100,
        });
        let shutdown = CancellationToken::new();
        // The run starts at second 1; shutdown comes during its third batch.
        stop_after(&shutdown, Duration::from_millis(3_600));
        let started = tokio::time::Instant::now();

        let jobs = vec![job("long", "* * * * * *", MissedPolicy::CatchUp)];
        run(ledger.clone(), clock, settings("a"), runner.clone(), jobs, shutdown)
            .await
            .expect("valid settings");

        // It returned when the third batch ended (second 4), well within the grace.
        assert_eq!(started.elapsed(), Duration::from_millis(3_750));
        let records = ledger.records();
        assert_eq!(records.len(), 1);
        assert_eq!(records[0].status, INTERRUPTED);
        assert_eq!(records[0].figures.accounts, 3);
        assert_eq!(records[0].ended_at, Some(second(4)));
    }

    #[tokio::test(start_paused = true)]
    async fn a_job_ignoring_shutdown_is_dropped_after_the_grace_period() {
        let ledger = Arc::new(MemoryLedger::new());
        let clock = Arc::new(TokioClock::starting_at(origin()));
        let runner = FakeRunner::new(Behaviour::IgnoresShutdown(Duration::from_secs(3_600)));
        let shutdown = CancellationToken::new();
        stop_after(&shutdown, Duration::from_millis(2_000));
        let started = tokio::time::Instant::now();

        let jobs = vec![job("stuck", "* * * * * *", MissedPolicy::CatchUp)];
        run(ledger.clone(), clock, settings("a"), runner.clone(), jobs, shutdown)
            .await
            .expect("valid settings");

        // Shutdown at 2 s plus the 5 s grace.
        assert_eq!(started.elapsed(), Duration::from_millis(7_000));
        let records = ledger.records();
        assert_eq!(records.len(), 1);
        assert_eq!(records[0].status, INTERRUPTED);
        let message = records[0].message.clone().unwrap_or_default();
        assert!(message.contains("grace"), "{message}");
    }

    #[tokio::test(start_paused = true)]
    async fn a_slow_job_is_never_started_twice_and_missed_times_follow_the_policy() {
        let table = [
            (MissedPolicy::CatchUp, vec![second(1), second(4), second(8)]),
            (MissedPolicy::Skip, vec![second(1), second(5), second(9)]),
        ];
        for (policy, expected) in table {
            let ledger = Arc::new(MemoryLedger::new());
            let clock = Arc::new(TokioClock::starting_at(origin()));
            let runner = FakeRunner::new(Behaviour::Batches {
                batch: Duration::from_millis(3_600),
                count: 1,
            });
            let shutdown = CancellationToken::new();
            stop_after(&shutdown, Duration::from_millis(10_000));

            let jobs = vec![job("slow", "* * * * * *", policy)];
            run(ledger.clone(), clock, settings("a"), runner.clone(), jobs, shutdown)
                .await
                .expect("valid settings");

            assert_eq!(runner.calls(), expected, "{policy:?}");
            assert_eq!(runner.most_at_once.load(Ordering::SeqCst), 1, "{policy:?}");
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_run_abandoned_by_a_dead_instance_is_taken_over() {
        let ledger = Arc::new(MemoryLedger::new());
        let dead = ClaimRequest {
            job: JobName::parse("minutely").expect("valid"),
            scheduled_for: at("2026-11-23T10:00:00Z"),
            instance: InstanceId::new("dead"),
            host: "gone".to_owned(),
            now: at("2026-11-23T10:00:00Z"),
            lease_until: at("2026-11-23T10:00:30Z"),
        };
        assert!(matches!(ledger.claim(&dead).await, Ok(Claim::Won(_))));
        let clock = Arc::new(TokioClock::starting_at(at("2026-11-23T10:00:40.250Z")));
        let runner = FakeRunner::new(Behaviour::Instant);
        let shutdown = CancellationToken::new();
        stop_after(&shutdown, Duration::from_secs(10));

        let jobs = vec![job("minutely", "0 * * * * *", MissedPolicy::CatchUp)];
        run(ledger.clone(), clock, settings("b"), runner.clone(), jobs, shutdown)
            .await
            .expect("valid settings");

        assert_eq!(runner.calls(), vec![at("2026-11-23T10:00:00Z")]);
        let records = ledger.records();
        assert_eq!(records.len(), 1);
        assert_eq!(records[0].status, SUCCEEDED);
        assert_eq!(records[0].instance, InstanceId::new("b"));
        assert_eq!(records[0].takeovers, 1);
    }

    #[tokio::test(start_paused = true)]
    async fn a_long_run_keeps_its_lease_so_another_daemon_does_not_take_it_over() {
        let ledger = Arc::new(MemoryLedger::new());
        let clock = Arc::new(TokioClock::starting_at(origin()));
        // 150 s of work against a 10 s lease: only the heartbeat keeps it.
        let slow = FakeRunner::new(Behaviour::Batches {
            batch: Duration::from_secs(1),
            count: 150,
        });
        let quick = FakeRunner::new(Behaviour::Instant);
        let shutdown = CancellationToken::new();
        stop_after(&shutdown, Duration::from_secs(220));
        let jobs = || vec![job("minutely", "0 * * * * *", MissedPolicy::CatchUp)];
        let late_daemon = {
            let (ledger, clock, quick, shutdown) = (ledger.clone(), clock.clone(), quick.clone(), shutdown.clone());
            async move {
                // Starts after the first daemon has claimed 10:01:00.
                tokio::time::sleep(Duration::from_secs(65)).await;
                run(ledger, clock, settings("b"), quick, jobs(), shutdown)
                    .await
                    .expect("valid settings");
            }
        };

        let (first, ()) = tokio::join!(
            run(
                ledger.clone(),
                clock.clone(),
                settings("a"),
                slow.clone(),
                jobs(),
                shutdown.clone()
            ),
            late_daemon,
        );
        first.expect("valid settings");

        let first = at("2026-11-23T10:01:00Z");
        assert_eq!(slow.calls().first(), Some(&first));
        assert!(!quick.calls().contains(&first), "the held run was run again");
        let records = ledger.records();
        let record = records
            .iter()
            .find(|record| record.scheduled_for == first)
            .expect("recorded");
        assert_eq!(
            (&record.instance, record.takeovers, record.status),
            (&InstanceId::new("a"), 0, SUCCEEDED)
        );
        // No two runs of the job overlapped, across both daemons.
        let mut spans: Vec<(DateTime<Utc>, DateTime<Utc>)> = records
            .iter()
            .map(|record| (record.started_at, record.ended_at.expect("every run ended")))
            .collect();
        spans.sort();
        for pair in spans.windows(2) {
            assert!(pair[0].1 <= pair[1].0, "overlapping runs: {pair:?}");
        }
        // The minutes passed during the long run were caught up once, at its end.
        let caught_up = records
            .iter()
            .find(|record| record.scheduled_for == at("2026-11-23T10:03:00Z"))
            .expect("10:03 caught up");
        assert_eq!(caught_up.started_at, at("2026-11-23T10:03:30Z"));
        assert!(records
            .iter()
            .all(|record| record.scheduled_for != at("2026-11-23T10:02:00Z")));
    }

    #[tokio::test(start_paused = true)]
    async fn a_time_limit_stops_the_job_between_batches_and_a_finished_schedule_ends_the_loop() {
        let ledger = Arc::new(MemoryLedger::new());
        let clock = Arc::new(TokioClock::starting_at(origin()));
        let runner = FakeRunner::new(Behaviour::Batches {
            batch: Duration::from_secs(1),
            count: 100,
        });
        let mut once = job("once", "1 0 10 23 11 * 2026", MissedPolicy::CatchUp);
        once.time_limit = Some(Duration::from_millis(2_500));

        // No shutdown: the loop ends because the schedule has no later time.
        run(
            ledger.clone(),
            clock,
            settings("a"),
            runner.clone(),
            vec![once],
            CancellationToken::new(),
        )
        .await
        .expect("valid settings");

        let records = ledger.records();
        assert_eq!(records.len(), 1);
        assert_eq!(records[0].status, INTERRUPTED);
        assert_eq!(records[0].figures.accounts, 3);
    }

    #[tokio::test(start_paused = true)]
    async fn a_panicking_job_is_recorded_as_failed_and_the_schedule_goes_on() {
        let ledger = Arc::new(MemoryLedger::new());
        let clock = Arc::new(TokioClock::starting_at(origin()));
        let runner = FakeRunner::new(Behaviour::Panics);
        let shutdown = CancellationToken::new();
        stop_after(&shutdown, Duration::from_millis(2_000));

        let jobs = vec![job("fragile", "* * * * * *", MissedPolicy::CatchUp)];
        run(ledger.clone(), clock, settings("a"), runner.clone(), jobs, shutdown)
            .await
            .expect("valid settings");

        let failed = RunStatus::Ended(RunEnd::Failed);
        assert_eq!(statuses(&ledger), vec![(second(1), failed), (second(2), failed)]);
    }

    #[tokio::test(start_paused = true)]
    async fn a_disabled_job_never_fires() {
        let ledger = Arc::new(MemoryLedger::new());
        let clock = Arc::new(TokioClock::starting_at(origin()));
        let runner = FakeRunner::new(Behaviour::Instant);
        let mut off = job("off", "* * * * * *", MissedPolicy::CatchUp);
        off.enabled = false;

        run(
            ledger.clone(),
            clock,
            settings("a"),
            runner.clone(),
            vec![off],
            CancellationToken::new(),
        )
        .await
        .expect("valid settings");

        assert!(runner.calls().is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn on_start_missed_times_are_caught_up_once() {
        let ledger = Arc::new(MemoryLedger::new());
        let earlier = ClaimRequest {
            job: JobName::parse("minutely").expect("valid"),
            scheduled_for: at("2026-11-23T09:55:00Z"),
            instance: InstanceId::new("old"),
            host: "old".to_owned(),
            now: at("2026-11-23T09:55:00Z"),
            lease_until: at("2026-11-23T09:55:30Z"),
        };
        let Ok(Claim::Won(id)) = ledger.claim(&earlier).await else {
            panic!("a fresh ledger grants the claim");
        };
        let done = RunOutcome::succeeded(RunFigures::default());
        assert_eq!(
            ledger.finish(id, &earlier.instance, earlier.now, &done).await,
            Ok(Lease::Held)
        );
        let clock = Arc::new(TokioClock::starting_at(origin()));
        let runner = FakeRunner::new(Behaviour::Instant);
        let shutdown = CancellationToken::new();
        stop_after(&shutdown, Duration::from_secs(1));

        let jobs = vec![job("minutely", "0 * * * * *", MissedPolicy::CatchUp)];
        run(ledger.clone(), clock, settings("a"), runner.clone(), jobs, shutdown)
            .await
            .expect("valid settings");

        // 09:56 to 10:00 were missed: one run, for 10:00.
        assert_eq!(runner.calls(), vec![at("2026-11-23T10:00:00Z")]);
    }

    #[tokio::test]
    async fn the_memory_ledger_grants_a_time_once_and_refuses_strangers() {
        let ledger = MemoryLedger::new();
        let request = |instance: &str, now: &str, lease_until: &str| ClaimRequest {
            job: JobName::parse("job").expect("valid"),
            scheduled_for: at("2026-11-23T10:00:00Z"),
            instance: InstanceId::new(instance),
            host: "h".to_owned(),
            now: at(now),
            lease_until: at(lease_until),
        };
        let first = request("a", "2026-11-23T10:00:00Z", "2026-11-23T10:01:00Z");
        let Ok(Claim::Won(id)) = ledger.claim(&first).await else {
            panic!("first claim wins");
        };
        let early = request("b", "2026-11-23T10:00:30Z", "2026-11-23T10:01:30Z");
        assert_eq!(ledger.claim(&early).await, Ok(Claim::AlreadyClaimed));
        let mut next_time = request("b", "2026-11-23T10:00:30Z", "2026-11-23T10:01:30Z");
        next_time.scheduled_for = at("2026-11-23T10:00:30Z");
        assert_eq!(
            ledger.claim(&next_time).await,
            Ok(Claim::Busy {
                scheduled_for: at("2026-11-23T10:00:00Z"),
                host: "h".to_owned()
            })
        );
        let late = request("b", "2026-11-23T10:01:01Z", "2026-11-23T10:02:00Z");
        assert_eq!(ledger.claim(&late).await, Ok(Claim::TakenOver(id)));
        let outcome = RunOutcome::succeeded(RunFigures::default());
        let a = InstanceId::new("a");
        let b = InstanceId::new("b");
        assert_eq!(ledger.renew(id, &a, at("2026-11-23T10:05:00Z")).await, Ok(Lease::Lost));
        assert_eq!(
            ledger.finish(id, &a, at("2026-11-23T10:01:02Z"), &outcome).await,
            Ok(Lease::Lost)
        );
        assert_eq!(
            ledger.finish(id, &b, at("2026-11-23T10:01:03Z"), &outcome).await,
            Ok(Lease::Held)
        );
        // A finished run is never taken over, however old.
        let much_later = request("c", "2026-11-24T00:00:00Z", "2026-11-24T00:01:00Z");
        assert_eq!(ledger.claim(&much_later).await, Ok(Claim::AlreadyClaimed));
        let recent = ledger.recent(10).await.expect("in memory");
        assert_eq!(recent.len(), 1);
        assert_eq!(recent[0].status, SUCCEEDED);
    }

    #[tokio::test(start_paused = true)]
    async fn a_one_shot_run_is_claimed_run_and_recorded() {
        let ledger = Arc::new(MemoryLedger::new());
        let clock = Arc::new(TokioClock::starting_at(origin()));
        let runner = FakeRunner::new(Behaviour::Instant);
        let billing = job("billing", "30 2 * * *", MissedPolicy::CatchUp);

        let outcome = run_once(
            ledger.clone(),
            clock,
            settings("cli"),
            runner.clone(),
            billing,
            origin(),
            CancellationToken::new(),
        )
        .await
        .expect("the memory ledger does not fail");

        assert_eq!(outcome.end.exit_code(), ExitCode::Done);
        assert_eq!(runner.calls(), vec![origin()]);
        assert_eq!(statuses(&ledger), vec![(origin(), SUCCEEDED)]);
    }

    #[tokio::test(start_paused = true)]
    async fn a_one_shot_run_refuses_to_start_beside_a_running_one_with_exit_75() {
        let ledger = Arc::new(MemoryLedger::new());
        let elsewhere = ClaimRequest {
            job: JobName::parse("billing").expect("valid"),
            scheduled_for: at("2026-11-23T02:30:00Z"),
            instance: InstanceId::new("daemon"),
            host: "other-host".to_owned(),
            now: at("2026-11-23T09:59:00Z"),
            lease_until: at("2026-11-23T10:01:00Z"),
        };
        assert!(matches!(ledger.claim(&elsewhere).await, Ok(Claim::Won(_))));
        let clock = Arc::new(TokioClock::starting_at(origin()));
        let runner = FakeRunner::new(Behaviour::Instant);
        let billing = job("billing", "30 2 * * *", MissedPolicy::CatchUp);

        let outcome = run_once(
            ledger.clone(),
            clock,
            settings("cli"),
            runner.clone(),
            billing,
            origin(),
            CancellationToken::new(),
        )
        .await
        .expect("the memory ledger does not fail");

        assert_eq!(outcome.end.exit_code(), ExitCode::TemporaryFailure);
        let message = outcome.message.unwrap_or_default();
        assert!(
            message.contains("already running") && message.contains("other-host"),
            "{message}"
        );
        assert!(runner.calls().is_empty());
        assert_eq!(ledger.records().len(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn a_one_shot_run_stopped_by_a_signal_ends_interrupted_after_its_batch() {
        let ledger = Arc::new(MemoryLedger::new());
        let clock = Arc::new(TokioClock::starting_at(origin()));
        let runner = FakeRunner::new(Behaviour::Batches {
            batch: Duration::from_secs(1),
            count: 10,
        });
        let shutdown = CancellationToken::new();
        stop_after(&shutdown, Duration::from_millis(4_500));
        let billing = job("billing", "30 2 * * *", MissedPolicy::CatchUp);

        let outcome = run_once(
            ledger.clone(),
            clock,
            settings("cli"),
            runner.clone(),
            billing,
            origin(),
            shutdown,
        )
        .await
        .expect("the memory ledger does not fail");

        assert_eq!((outcome.end, outcome.figures.accounts), (RunEnd::Interrupted, 5));
        assert_eq!(outcome.end.exit_code(), ExitCode::TemporaryFailure);
        assert_eq!(statuses(&ledger), vec![(origin(), INTERRUPTED)]);
    }

    /// A ledger whose first `failures` claims fail as if the database were down.
    struct FlakyLedger {
        inner: MemoryLedger,
        failures: AtomicUsize,
    }

    impl RunLedger for FlakyLedger {
        async fn last_scheduled(&self, job: &JobName) -> Result<Option<DateTime<Utc>>, LedgerError> {
            self.inner.last_scheduled(job).await
        }
        async fn claim(&self, request: &ClaimRequest) -> Result<Claim, LedgerError> {
            let left = self.failures.load(Ordering::SeqCst);
            if left > 0 {
                self.failures.store(left - 1, Ordering::SeqCst);
                return Err(LedgerError::Unavailable("connection refused".to_owned()));
            }
            self.inner.claim(request).await
        }
        async fn renew(
            &self,
            run: RunId,
            instance: &InstanceId,
            lease_until: DateTime<Utc>,
        ) -> Result<Lease, LedgerError> {
            self.inner.renew(run, instance, lease_until).await
        }
        async fn finish(
            &self,
            run: RunId,
            instance: &InstanceId,
            ended_at: DateTime<Utc>,
            outcome: &RunOutcome,
        ) -> Result<Lease, LedgerError> {
            self.inner.finish(run, instance, ended_at, outcome).await
        }
        async fn abandoned(&self, job: &JobName, now: DateTime<Utc>) -> Result<Option<DateTime<Utc>>, LedgerError> {
            self.inner.abandoned(job, now).await
        }
        async fn recent(&self, limit: usize) -> Result<Vec<RunRecord>, LedgerError> {
            self.inner.recent(limit).await
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_ledger_outage_delays_the_run_instead_of_stopping_the_schedule() {
        let ledger = Arc::new(FlakyLedger {
            inner: MemoryLedger::new(),
            failures: AtomicUsize::new(2),
        });
        let clock = Arc::new(TokioClock::starting_at(origin()));
        let runner = FakeRunner::new(Behaviour::Instant);
        let shutdown = CancellationToken::new();
        stop_after(&shutdown, Duration::from_secs(70));

        let jobs = vec![job("minutely", "0 * * * * *", MissedPolicy::CatchUp)];
        run(ledger.clone(), clock, settings("a"), runner.clone(), jobs, shutdown)
            .await
            .expect("valid settings");

        // Claimed at the third try, one retry pause (1 s) apart, for the same time.
        assert_eq!(runner.calls(), vec![at("2026-11-23T10:01:00Z")]);
        let record = &ledger.inner.records()[0];
        assert_eq!(record.started_at, at("2026-11-23T10:01:02Z"));
        assert_eq!(record.status, SUCCEEDED);
    }

    #[tokio::test]
    async fn sigterm_cancels_the_shutdown_token() {
        let shutdown = CancellationToken::new();
        let watcher = cancel_on_termination_signals(shutdown.clone()).expect("handlers install");

        let status = std::process::Command::new("kill")
            .args(["-TERM", &std::process::id().to_string()])
            .status()
            .expect("kill runs");
        assert!(status.success());

        tokio::time::timeout(Duration::from_secs(10), shutdown.cancelled())
            .await
            .expect("SIGTERM cancels the token");
        watcher.await.expect("the watcher ends");
    }

    #[test]
    fn settings_whose_lease_outlives_too_few_heartbeats_are_refused() {
        assert_eq!(settings("a").check(), Ok(()));
        assert_eq!(DaemonSettings::new(InstanceId::new("a"), "h").check(), Ok(()));
        let mut short_lease = settings("a");
        short_lease.lease = Duration::from_secs(5);
        assert!(short_lease.check().is_err());
        let mut spinning = settings("a");
        spinning.max_sleep = Duration::ZERO;
        assert!(spinning.check().is_err());
    }

    #[test]
    fn run_ends_map_to_the_documented_exit_codes() {
        let table = [
            (RunEnd::Succeeded, ExitCode::Done),
            (RunEnd::DataErrors, ExitCode::DataErrors),
            (RunEnd::TemporaryFailure, ExitCode::TemporaryFailure),
            (RunEnd::Interrupted, ExitCode::TemporaryFailure),
            (RunEnd::Failed, ExitCode::Failure),
        ];
        for (end, code) in table {
            assert_eq!(end.exit_code(), code, "{end:?}");
        }
    }
}
