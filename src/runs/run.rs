//! The one path every run takes, scheduled or one-shot: claim it in the ledger (taking
//! over a dead holder's run once its lease expired, with a log line naming the dead
//! holder), run the work in its own task while renewing the lease, enforce the time
//! limit and the shutdown grace, stop on a lost lease, and record the end.
//!
//! [`Runs`] is generic over the [`RunLedger`] and the [`Clock`], so that it is tested
//! in memory under paused time; `tally run JOB` and the scheduler's loop both call it,
//! the first through [`Runs::run_now`], the second through [`Runs::claim`] and
//! [`Runs::run`] for each fire time.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use super::ledger::{Claim, ClaimRequest, Lease, LedgerError, RunLedger};
use super::outcome::{RunEnd, RunOutcome};
use super::record::{local_host_name, InstanceId, JobName, JobSpec, RunFigures, RunId};
use crate::config::SchedulerSettings;

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

/// Runs one occurrence of a job. Implemented by the jobs layer.
///
/// The runner must watch `shutdown`: once it is cancelled (shutdown, time limit or a
/// lost lease), finish the current batch (commit it), stop, and report
/// [`RunEnd::Interrupted`] with what was done. It is dropped if it does not return
/// within the grace period, so it must never leave a batch half-written (each batch
/// is one transaction).
pub trait JobRunner: Send + Sync + 'static {
    fn run(
        &self,
        job: &JobSpec,
        scheduled_for: DateTime<Utc>,
        shutdown: CancellationToken,
    ) -> impl Future<Output = RunOutcome> + Send;
}

/// How a run holds its lease and stops: `[scheduler]` of the settings, for the daemon
/// and for `tally run` alike.
#[derive(Debug, Clone)]
pub struct RunSettings {
    /// This process, as lease holder.
    pub instance: InstanceId,
    /// This machine, for run records.
    pub host: String,
    /// How long a claim or renewal keeps a run ours. The next claim of the job takes
    /// the run over once this passes without a renewal, so it bounds how long a dead
    /// holder blocks a job.
    pub lease: Duration,
    /// How often a running job's lease is renewed; well under `lease`.
    pub heartbeat: Duration,
    /// How long a running job may take to finish its batch after shutdown (or after a
    /// lost lease or the time limit) before it is dropped.
    pub shutdown_grace: Duration,
}

impl RunSettings {
    /// The defaults: a 60 s lease renewed every 20 s, 30 s of grace.
    pub fn new(instance: InstanceId, host: impl Into<String>) -> Self {
        Self {
            instance,
            host: host.into(),
            lease: Duration::from_secs(60),
            heartbeat: Duration::from_secs(20),
            shutdown_grace: Duration::from_secs(30),
        }
    }

    /// This process on this host, with the lease, heartbeat and grace of the settings.
    pub fn from_config(scheduler: &SchedulerSettings) -> Self {
        let host = local_host_name();
        Self {
            instance: InstanceId::for_this_process(&host),
            host,
            lease: Duration::from_secs(scheduler.lease_seconds),
            heartbeat: Duration::from_secs(scheduler.heartbeat_seconds),
            shutdown_grace: Duration::from_secs(scheduler.shutdown_grace_seconds),
        }
    }

    /// Refuses settings under which leases would expire while their holder is alive.
    pub fn check(&self) -> Result<(), RunSettingsError> {
        if self.heartbeat.is_zero() {
            return Err(RunSettingsError("the heartbeat must be more than zero".to_owned()));
        }
        // Two heartbeats per lease at least, so one slow renewal does not lose it.
        if self.heartbeat.saturating_mul(2) > self.lease {
            return Err(RunSettingsError(format!(
                "the lease ({:?}) must last at least two heartbeats ({:?} each)",
                self.lease, self.heartbeat
            )));
        }
        Ok(())
    }
}

/// Settings that cannot work: a configuration error (exit 78).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("scheduler settings: {0}")]
pub struct RunSettingsError(pub String);

/// A run this instance claimed and holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimedRun {
    pub id: RunId,
    pub job: JobName,
    pub scheduled_for: DateTime<Utc>,
}

/// Why a run did not start.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// Another run of the job holds a live lease.
    #[error("job {job} is already running on {host} (scheduled for {})", scheduled_for.to_rfc3339())]
    Busy {
        job: JobName,
        scheduled_for: DateTime<Utc>,
        host: String,
    },
    /// This occurrence is held or finished by another run.
    #[error("job {job} for {} is already claimed by another run", scheduled_for.to_rfc3339())]
    AlreadyClaimed { job: JobName, scheduled_for: DateTime<Utc> },
    #[error(transparent)]
    Ledger(#[from] LedgerError),
}

impl Refusal {
    /// How a one-shot run that could not start ends: retry later (75), unless the
    /// ledger failed in a way retrying does not mend.
    pub fn outcome(&self) -> RunOutcome {
        let end = match self {
            Refusal::Busy { .. } | Refusal::AlreadyClaimed { .. } | Refusal::Ledger(LedgerError::Unavailable(_)) => {
                RunEnd::TemporaryFailure
            }
            Refusal::Ledger(LedgerError::Failed(_)) => RunEnd::Failed,
        };
        RunOutcome::ended(end, RunFigures::default(), self.to_string())
    }
}

/// A run that ended: its recorded outcome, and what the work returned, unless it
/// panicked or was dropped after the grace period.
#[derive(Debug)]
pub struct Finished<T> {
    pub outcome: RunOutcome,
    pub result: Option<T>,
}

/// How many seconds after its start a one-shot run may take as its key.
const ONE_SHOT_SECONDS: i64 = 10;

/// The run path: a ledger, a clock and the lease settings.
pub struct Runs<L, C> {
    ledger: Arc<L>,
    clock: Arc<C>,
    settings: RunSettings,
}

impl<L: RunLedger, C: Clock> Runs<L, C> {
    pub fn new(ledger: Arc<L>, clock: Arc<C>, settings: RunSettings) -> Result<Self, RunSettingsError> {
        settings.check()?;
        Ok(Self {
            ledger,
            clock,
            settings,
        })
    }

    pub fn ledger(&self) -> &L {
        &self.ledger
    }

    pub fn clock(&self) -> &C {
        &self.clock
    }

    pub fn settings(&self) -> &RunSettings {
        &self.settings
    }

    fn lease_until(&self) -> DateTime<Utc> {
        let lease = chrono::Duration::from_std(self.settings.lease).unwrap_or(chrono::Duration::MAX);
        self.clock
            .now()
            .checked_add_signed(lease)
            .unwrap_or(DateTime::<Utc>::MAX_UTC)
    }

    /// Claims the occurrence of `job` for `scheduled_for`. A dead holder's run is
    /// taken over or closed, and a warning names it.
    pub async fn claim(&self, job: &JobName, scheduled_for: DateTime<Utc>) -> Result<ClaimedRun, Refusal> {
        let request = ClaimRequest {
            job: job.clone(),
            scheduled_for,
            instance: self.settings.instance.clone(),
            host: self.settings.host.clone(),
            now: self.clock.now(),
            lease_until: self.lease_until(),
        };
        let (id, dead) = match self.ledger.claim(&request).await? {
            Claim::Won(id) => (id, None),
            Claim::TakenOver(dead) => (dead.run, Some(dead)),
            Claim::Replaced { run, abandoned } => (run, Some(abandoned)),
            Claim::AlreadyClaimed => {
                return Err(Refusal::AlreadyClaimed {
                    job: job.clone(),
                    scheduled_for,
                })
            }
            Claim::Busy {
                scheduled_for: running,
                host,
            } => {
                return Err(Refusal::Busy {
                    job: job.clone(),
                    scheduled_for: running,
                    host,
                })
            }
        };
        if let Some(dead) = dead {
            tracing::warn!(
                job = %job,
                run_id = %id,
                dead_run_id = %dead.run,
                dead_host = %dead.host,
                dead_instance = %dead.instance,
                dead_scheduled_for = %dead.scheduled_for.to_rfc3339(),
                dead_lease_until = %dead.lease_until.to_rfc3339(),
                "taking over from a dead holder: run {} of {} on {} (scheduled for {}) stopped renewing its lease",
                dead.run,
                dead.instance,
                dead.host,
                dead.scheduled_for.to_rfc3339()
            );
        }
        Ok(ClaimedRun {
            id,
            job: job.clone(),
            scheduled_for,
        })
    }

    /// Claims a run of `job` now, for a one-shot `tally run`. Runs are keyed by (job,
    /// second): when this second is taken (a scheduled run of the same second, or a
    /// one-shot that just ended) the next free second is the key; the time is
    /// informative.
    pub async fn claim_now(&self, job: &JobName) -> Result<ClaimedRun, Refusal> {
        let now = self.clock.now();
        let mut refused = None;
        for offset in 0..ONE_SHOT_SECONDS {
            match self.claim(job, now + chrono::Duration::seconds(offset)).await {
                Err(refusal @ Refusal::AlreadyClaimed { .. }) => refused = Some(refusal),
                claimed => return claimed,
            }
        }
        Err(refused.unwrap_or(Refusal::AlreadyClaimed {
            job: job.clone(),
            scheduled_for: now,
        }))
    }

    /// Claims a run of `job` now and runs `work` as it ([`Runs::run`]).
    pub async fn run_now<T, F>(
        &self,
        job: &JobName,
        shutdown: &CancellationToken,
        work: impl FnOnce(CancellationToken) -> F,
        outcome_of: impl FnOnce(&T) -> RunOutcome,
    ) -> Result<Finished<T>, Refusal>
    where
        F: Future<Output = T> + Send + 'static,
        T: Send + 'static,
    {
        let span = tracing::info_span!("job", job = %job);
        async {
            let claimed = self.claim_now(job).await?;
            Ok(self.run(&claimed, None, shutdown, work, outcome_of).await)
        }
        .instrument(span)
        .await
    }

    /// Runs `work` as the claimed run and records how it ended (`outcome_of` its
    /// result). The work runs in its own task and gets a token cancelled on shutdown,
    /// at the time limit and when the lease is lost; it is dropped when it has not
    /// returned `shutdown_grace` after shutdown or a lost lease. Ledger failures are
    /// logged: the run's outcome stands whether or not it could be recorded.
    pub async fn run<T, F>(
        &self,
        run: &ClaimedRun,
        time_limit: Option<Duration>,
        shutdown: &CancellationToken,
        work: impl FnOnce(CancellationToken) -> F,
        outcome_of: impl FnOnce(&T) -> RunOutcome,
    ) -> Finished<T>
    where
        F: Future<Output = T> + Send + 'static,
        T: Send + 'static,
    {
        let span = tracing::info_span!("run", run_id = %run.id, scheduled_for = %run.scheduled_for);
        async {
            let finished = self.supervise(run.id, time_limit, shutdown, work, outcome_of).await;
            self.record_end(run.id, &finished.outcome).await;
            finished
        }
        .instrument(span)
        .await
    }

    async fn record_end(&self, run: RunId, outcome: &RunOutcome) {
        let ended_at = self.clock.now();
        match self
            .ledger
            .finish(run, &self.settings.instance, ended_at, outcome)
            .await
        {
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
    }

    /// Runs the work in its own task while renewing the lease, enforcing the time
    /// limit and the grace period.
    async fn supervise<T, F>(
        &self,
        run: RunId,
        time_limit: Option<Duration>,
        shutdown: &CancellationToken,
        work: impl FnOnce(CancellationToken) -> F,
        outcome_of: impl FnOnce(&T) -> RunOutcome,
    ) -> Finished<T>
    where
        F: Future<Output = T> + Send + 'static,
        T: Send + 'static,
    {
        let run_token = shutdown.child_token();
        let mut task = tokio::spawn(work(run_token.clone()).instrument(tracing::Span::current()));
        let heartbeat_period = self.settings.heartbeat;
        let mut heartbeat = tokio::time::interval_at(tokio::time::Instant::now() + heartbeat_period, heartbeat_period);
        heartbeat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // A far deadline stands for "no limit" so that one select covers both cases.
        let far = Duration::from_secs(100 * 365 * 86_400);
        let limit = tokio::time::sleep(time_limit.unwrap_or(far));
        tokio::pin!(limit);
        let mut limit_hit = false;
        // Armed when the work was asked to stop (shutdown or a lost lease).
        let grace = tokio::time::sleep(far);
        tokio::pin!(grace);
        let mut grace_armed = false;
        let mut lease_lost = false;
        loop {
            tokio::select! {
                biased;
                joined = &mut task => {
                    return match joined {
                        Ok(result) => Finished { outcome: outcome_of(&result), result: Some(result) },
                        Err(error) => {
                            tracing::error!(%error, "the job panicked");
                            Finished {
                                outcome: RunOutcome::ended(
                                    RunEnd::Failed,
                                    RunFigures::default(),
                                    format!("the job panicked: {error}"),
                                ),
                                result: None,
                            }
                        }
                    };
                }
                _ = &mut grace, if grace_armed => {
                    task.abort();
                    tracing::warn!(grace = ?self.settings.shutdown_grace, "the job did not stop in time; dropped");
                    return Finished {
                        outcome: RunOutcome::ended(
                            RunEnd::Interrupted,
                            RunFigures::default(),
                            "stopped: the job did not finish its batch within the grace period",
                        ),
                        result: None,
                    };
                }
                _ = shutdown.cancelled(), if !grace_armed => {
                    tracing::info!("shutdown: letting the job finish its batch");
                    grace.as_mut().reset(tokio::time::Instant::now() + self.settings.shutdown_grace);
                    grace_armed = true;
                }
                _ = &mut limit, if !limit_hit => {
                    tracing::warn!(limit = ?time_limit, "time limit reached: asking the job to stop");
                    limit_hit = true;
                    run_token.cancel();
                }
                _ = heartbeat.tick(), if !lease_lost => {
                    match self.ledger.renew(run, &self.settings.instance, self.lease_until()).await {
                        Ok(Lease::Held) => {}
                        Ok(Lease::Lost) => {
                            tracing::error!("lease lost to another instance: asking the job to stop");
                            lease_lost = true;
                            run_token.cancel();
                            if !grace_armed {
                                grace.as_mut().reset(tokio::time::Instant::now() + self.settings.shutdown_grace);
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::exit::ExitCode;
    use crate::runs::{ClaimRequest, MemoryLedger, RunStatus};

    fn at(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text)
            .expect("test instants are RFC 3339")
            .with_timezone(&Utc)
    }

    fn origin() -> DateTime<Utc> {
        at("2026-11-23T10:00:00Z")
    }

    fn billing() -> JobName {
        JobName::parse("billing").expect("valid")
    }

    fn runs(ledger: &Arc<MemoryLedger>) -> Runs<MemoryLedger, TokioClock> {
        let settings = RunSettings {
            instance: InstanceId::new("cli"),
            host: "here".to_owned(),
            lease: Duration::from_secs(10),
            heartbeat: Duration::from_secs(3),
            shutdown_grace: Duration::from_secs(5),
        };
        Runs::new(ledger.clone(), Arc::new(TokioClock::starting_at(origin())), settings).expect("valid settings")
    }

    /// `batches` one-second batches, stopping between batches when asked.
    async fn batches(count: u64, stop: CancellationToken) -> RunOutcome {
        let mut done = 0;
        while done < count {
            if stop.is_cancelled() {
                return RunOutcome::ended(
                    RunEnd::Interrupted,
                    RunFigures {
                        accounts: done,
                        ..RunFigures::default()
                    },
                    "stopped between batches",
                );
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
            done += 1;
        }
        RunOutcome::succeeded(RunFigures {
            accounts: done,
            ..RunFigures::default()
        })
    }

    async fn claim_elsewhere(ledger: &MemoryLedger, lease_until: &str) {
        let elsewhere = ClaimRequest {
            job: billing(),
            scheduled_for: at("2026-11-23T02:30:00Z"),
            instance: InstanceId::new("daemon"),
            host: "other-host".to_owned(),
            now: at("2026-11-23T02:30:00Z"),
            lease_until: at(lease_until),
        };
        assert!(matches!(ledger.claim(&elsewhere).await, Ok(crate::runs::Claim::Won(_))));
    }

    #[tokio::test(start_paused = true)]
    async fn a_one_shot_run_is_claimed_kept_alive_and_recorded() {
        let ledger = Arc::new(MemoryLedger::new());
        let runs = runs(&ledger);

        // 30 s of work against a 10 s lease: only the heartbeat keeps it.
        let finished = runs
            .run_now(
                &billing(),
                &CancellationToken::new(),
                |stop| batches(30, stop),
                Clone::clone,
            )
            .await
            .expect("claimed");

        assert_eq!(finished.outcome.exit_code(), ExitCode::Done);
        assert_eq!(finished.result.map(|outcome| outcome.figures.accounts), Some(30));
        let records = ledger.records();
        assert_eq!(records.len(), 1);
        assert_eq!(
            (records[0].status, records[0].scheduled_for, records[0].figures.accounts),
            (RunStatus::Ended(RunEnd::Succeeded), origin(), 30)
        );
        assert!(
            records[0].lease_until > at("2026-11-23T10:00:30Z"),
            "renewed to {}",
            records[0].lease_until
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_one_shot_run_beside_a_live_one_is_refused_with_exit_75_naming_its_host() {
        let ledger = Arc::new(MemoryLedger::new());
        claim_elsewhere(&ledger, "2026-11-23T10:01:00Z").await;
        let runs = runs(&ledger);

        let refused = runs
            .run_now(
                &billing(),
                &CancellationToken::new(),
                |stop| batches(1, stop),
                Clone::clone,
            )
            .await
            .expect_err("busy");

        let outcome = refused.outcome();
        assert_eq!(outcome.exit_code(), ExitCode::TemporaryFailure);
        let message = outcome.message.unwrap_or_default();
        assert!(message.contains("already running on other-host"), "{message}");
        assert_eq!(ledger.records().len(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn a_one_shot_run_replaces_a_dead_holders_run_once_its_lease_expired() {
        let ledger = Arc::new(MemoryLedger::new());
        claim_elsewhere(&ledger, "2026-11-23T02:31:00Z").await;
        let runs = runs(&ledger);

        let finished = runs
            .run_now(
                &billing(),
                &CancellationToken::new(),
                |stop| batches(2, stop),
                Clone::clone,
            )
            .await
            .expect("the dead holder does not block");

        assert_eq!(finished.outcome.exit_code(), ExitCode::Done);
        let records = ledger.records();
        assert_eq!(records[0].status, RunStatus::Ended(RunEnd::Interrupted));
        assert!(records[0]
            .message
            .as_deref()
            .is_some_and(|message| message.contains("daemon on other-host")));
        assert_eq!(records[1].status, RunStatus::Ended(RunEnd::Succeeded));
    }

    #[tokio::test(start_paused = true)]
    async fn a_one_shot_run_stopped_by_a_signal_ends_interrupted_after_its_batch() {
        let ledger = Arc::new(MemoryLedger::new());
        let runs = runs(&ledger);
        let shutdown = CancellationToken::new();
        let stopper = shutdown.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(4_500)).await;
            stopper.cancel();
        });

        let finished = runs
            .run_now(&billing(), &shutdown, |stop| batches(10, stop), Clone::clone)
            .await
            .expect("claimed");

        assert_eq!(
            (finished.outcome.end, finished.outcome.figures.accounts),
            (RunEnd::Interrupted, 5)
        );
        assert_eq!(finished.outcome.exit_code(), ExitCode::TemporaryFailure);
        assert_eq!(ledger.records()[0].status, RunStatus::Ended(RunEnd::Interrupted));
    }

    #[test]
    fn settings_whose_lease_outlives_too_few_heartbeats_are_refused() {
        let mut settings = RunSettings::new(InstanceId::new("a"), "h");
        assert_eq!(settings.check(), Ok(()));
        settings.heartbeat = Duration::from_secs(31);
        assert!(settings.check().is_err());
        settings.heartbeat = Duration::ZERO;
        assert!(settings.check().is_err());
    }
}
