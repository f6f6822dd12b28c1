//! The scheduling loop of `tally schedule`: fires each job at its times, never twice
//! at once, and never twice for the same scheduled time across instances.
//!
//! It decides *when* a job runs; everything about a run itself — claiming it in the
//! ledger, taking over a dead holder's run, the heartbeat, the time limit, the
//! shutdown grace, recording its end — is the one run path of [`crate::runs`], which
//! `tally run JOB` takes too. The loop is generic over the seams of that path so that
//! it is built and tested without the store or the jobs:
//! - [`JobRunner`] runs one occurrence of a job (implemented by `jobs/`);
//! - [`RunLedger`] records runs and arbitrates between instances (implemented by the
//!   store on both backends; [`crate::runs::MemoryLedger`] in tests);
//! - [`Clock`] gives the wall time; sleeping uses tokio time, so tests run under
//!   `tokio::time::pause` with a [`crate::runs::TokioClock`] and take no real time.
//!
//! # How it runs
//! One task per enabled job, each a loop: take over an abandoned run of the job if
//! there is one, otherwise sleep until the next fire time; claim the run (an instance
//! that loses the claim skips that time); run it; then handle the times passed
//! meanwhile by the job's `missed` policy (one catch-up run, or skip), exactly like
//! times missed while nothing was running at all. Because each loop awaits its run
//! before looking at the clock again, a job still running at its next time is not
//! started again by this instance, and the ledger refuses a claim while another run of
//! the job holds a live lease, so no other instance starts it either. Different jobs
//! run concurrently.
//!
//! # Shutdown
//! When the token passed to [`run`] is cancelled, no new run starts; each running job
//! sees a cancelled token and is expected to finish its current batch and return
//! within the run path's grace; [`run`] then returns.
//!
//! This module must not know what a job does nor how runs are stored.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use super::job_file::JobDefinition;
use super::schedule::{missed_fires, next_fire, MissedDecision};
use crate::runs::{Clock, JobRunner, Refusal, RunLedger, RunSettings, RunSettingsError, Runs};

/// The daemon's settings: how its runs hold their leases, and the loop's own pauses.
#[derive(Debug, Clone)]
pub struct DaemonSettings {
    /// Lease, heartbeat, grace and the holder's identity, as every run has them.
    pub runs: RunSettings,
    /// The pause before trying again after a ledger error.
    pub retry_after: Duration,
    /// The longest single sleep: the loop re-reads the wall clock at least this often,
    /// so a clock step (NTP, suspend) delays a fire by at most this much.
    pub max_sleep: Duration,
}

impl DaemonSettings {
    /// The run path's defaults ([`RunSettings::new`]), 10 s between ledger retries,
    /// the clock re-read every 60 s.
    pub fn new(runs: RunSettings) -> Self {
        Self {
            runs,
            retry_after: Duration::from_secs(10),
            max_sleep: Duration::from_secs(60),
        }
    }

    /// Refuses settings under which leases would expire while their holder is alive,
    /// or the loop would spin.
    pub fn check(&self) -> Result<(), DaemonSettingsError> {
        self.runs.check()?;
        if self.retry_after.is_zero() || self.max_sleep.is_zero() {
            return Err(DaemonSettingsError(
                "the retry pause and the longest sleep must be more than zero".to_owned(),
            ));
        }
        Ok(())
    }
}

/// Daemon settings that cannot work: a configuration error (exit 78).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("scheduler settings: {0}")]
pub struct DaemonSettingsError(String);

impl From<RunSettingsError> for DaemonSettingsError {
    fn from(error: RunSettingsError) -> Self {
        DaemonSettingsError(error.0)
    }
}

/// Everything a job loop shares.
struct Context<L, C, R> {
    runs: Runs<L, C>,
    retry_after: Duration,
    max_sleep: Duration,
    runner: Arc<R>,
    shutdown: CancellationToken,
}

/// Runs the scheduling loop until `shutdown` is cancelled (or no enabled job has a
/// fire time left), then returns once every running job has stopped, within about
/// the shutdown grace. Fails at once, before scheduling anything, only when the
/// settings cannot work.
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
        runs: Runs::new(ledger, clock, settings.runs)?,
        retry_after: settings.retry_after,
        max_sleep: settings.max_sleep,
        runner,
        shutdown,
    });
    let mut loops = JoinSet::new();
    for job in jobs {
        if !job.enabled {
            tracing::info!(job = %job.spec.name, "job disabled, not scheduled");
            continue;
        }
        let span = tracing::info_span!("job", job = %job.spec.name, kind = %job.spec.kind);
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
async fn sleep_until<L: RunLedger, C: Clock, R>(context: &Context<L, C, R>, target: DateTime<Utc>) -> bool {
    loop {
        let now = context.runs.clock().now();
        if now >= target {
            return true;
        }
        let remaining = (target - now).to_std().unwrap_or_default();
        let wait = remaining.min(context.max_sleep);
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
        _ = tokio::time::sleep(context.retry_after) => true,
    }
}

/// The next occurrence to run after a run scheduled for `last` (or at start, after the
/// last recorded one), by the job's `missed` policy: `Some(time)` to run now.
fn catch_up<L: RunLedger, C: Clock, R>(
    context: &Context<L, C, R>,
    job: &JobDefinition,
    last: Option<DateTime<Utc>>,
) -> Option<DateTime<Utc>> {
    let now = context.runs.clock().now();
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
    let name = &job.spec.name;
    let last = loop {
        match context.runs.ledger().last_scheduled(name).await {
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
            None => match context.runs.ledger().abandoned(name, context.runs.clock().now()).await {
                Ok(Some(abandoned)) => abandoned,
                Ok(None) => {
                    let Some(next) = next_fire(&job.schedule, job.timezone, context.runs.clock().now()) else {
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

/// Claims one occurrence and runs it through the run path; a time another instance
/// holds, or a job still running elsewhere, is skipped (its holder catches the time
/// up, or skips it, by the job's policy when it finishes).
async fn claim_and_run<L: RunLedger, C: Clock, R: JobRunner>(
    context: &Arc<Context<L, C, R>>,
    job: &Arc<JobDefinition>,
    scheduled_for: DateTime<Utc>,
) -> Result<(), crate::runs::LedgerError> {
    let claimed = match context.runs.claim(&job.spec.name, scheduled_for).await {
        Ok(claimed) => claimed,
        Err(Refusal::AlreadyClaimed { .. }) => {
            tracing::debug!(%scheduled_for, "another instance has this run");
            return Ok(());
        }
        Err(Refusal::Busy {
            scheduled_for: running,
            host,
            ..
        }) => {
            tracing::info!(%scheduled_for, %running, %host, "the job is still running elsewhere; not started again");
            return Ok(());
        }
        Err(Refusal::Ledger(error)) => return Err(error),
    };
    let runner = context.runner.clone();
    let spec = job.spec.clone();
    context
        .runs
        .run(
            &claimed,
            job.spec.time_limit,
            &context.shutdown,
            move |token| async move { runner.run(&spec, scheduled_for, token).await },
            Clone::clone,
        )
        .await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runs::{
        Claim, ClaimRequest, InstanceId, JobKind, JobName, JobSpec, Lease, LedgerError, MemoryLedger, RunEnd,
        RunFigures, RunId, RunOutcome, RunRecord, RunStatus, TokioClock,
    };
    use crate::scheduler::schedule::{MissedPolicy, Schedule};
    use chrono_tz::Tz;
    use std::path::PathBuf;
    use std::sync::atomic::AtomicUsize;
    use std::sync::atomic::Ordering;
    use std::sync::Mutex;

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
            spec: JobSpec {
                name: JobName::parse(name).expect("valid name"),
                kind: JobKind::Sync,
                accounts: None,
                batch_size: None,
                time_limit: None,
                reconcile_changed: false,
            },
            schedule: Schedule::parse(schedule).expect("valid schedule"),
            timezone: Tz::UTC,
            missed,
            enabled: true,
            source: PathBuf::from("jobs/test.toml"),
        }
    }

    fn settings(instance: &str) -> DaemonSettings {
        DaemonSettings {
            runs: RunSettings {
                instance: InstanceId::new(instance),
                host: format!("host-{instance}"),
                lease: Duration::from_secs(10),
                heartbeat: Duration::from_secs(3),
                shutdown_grace: Duration::from_secs(5),
            },
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
        async fn run(&self, _job: &JobSpec, scheduled_for: DateTime<Utc>, shutdown: CancellationToken) -> RunOutcome {
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
        once.spec.time_limit = Some(Duration::from_millis(2_500));

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
        use crate::runs::cancel_on_termination_signals;
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
        assert_eq!(
            DaemonSettings::new(RunSettings::new(InstanceId::new("a"), "h")).check(),
            Ok(())
        );
        let mut short_lease = settings("a");
        short_lease.runs.lease = Duration::from_secs(5);
        assert!(short_lease.check().is_err());
        let mut spinning = settings("a");
        spinning.max_sleep = Duration::ZERO;
        assert!(spinning.check().is_err());
    }
}
