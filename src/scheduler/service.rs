//! `tally schedule` as a systemd service: the scheduling loop of [`super::daemon`]
//! beside the sd_notify conversation of [`super::sd_notify`].
//!
//! `main` loads the configuration and the jobs (exit 78 when they are bad), builds the
//! ledger and the job runner, connects the signals to a token
//! ([`crate::runs::cancel_on_termination_signals`]) and calls [`serve`]; nothing
//! else. This module must not load files or open the store.

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::daemon::{self, DaemonSettings, DaemonSettingsError};
use super::job_file::JobDefinition;
use super::sd_notify::{self, Notifier};
use crate::runs::{Clock, JobRunner, RunLedger};

/// Schedules `jobs` until `shutdown` is cancelled: says READY (with a status line
/// naming the jobs) once scheduling, feeds the watchdog every `watchdog` while it runs,
/// says STOPPING as soon as shutdown starts, and returns when the running jobs have
/// stopped (within about the shutdown grace). Bad settings fail before READY.
#[allow(clippy::too_many_arguments)]
pub async fn serve<L, C, R>(
    ledger: Arc<L>,
    clock: Arc<C>,
    settings: DaemonSettings,
    runner: Arc<R>,
    jobs: Vec<JobDefinition>,
    notifier: &Notifier,
    watchdog: Option<Duration>,
    shutdown: CancellationToken,
) -> Result<(), DaemonSettingsError>
where
    L: RunLedger,
    C: Clock,
    R: JobRunner,
{
    settings.check()?;
    let status = status_line(&jobs);
    tracing::info!(status = %status, instance = settings.runs.instance.as_str(), "scheduler started");
    let (scheduled, ()) = tokio::join!(
        daemon::run(ledger, clock, settings, runner, jobs, shutdown.clone()),
        sd_notify::supervise(notifier, watchdog, &status, shutdown.clone()),
    );
    scheduled
}

/// `scheduling 3 jobs: billing, bookkeeper-sync, sync` (disabled ones left out).
fn status_line(jobs: &[JobDefinition]) -> String {
    let names: Vec<&str> = jobs
        .iter()
        .filter(|job| job.enabled)
        .map(|job| job.spec.name.as_str())
        .collect();
    match names.len() {
        0 => "no enabled job to schedule".to_owned(),
        1 => format!("scheduling 1 job: {}", names.join(", ")),
        count => format!("scheduling {count} jobs: {}", names.join(", ")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runs::{
        InstanceId, JobKind, JobName, JobSpec, MemoryLedger, RunFigures, RunOutcome, RunSettings, TokioClock,
    };
    use crate::scheduler::schedule::{MissedPolicy, Schedule};
    use chrono::{DateTime, Utc};
    use std::os::unix::net::UnixDatagram;
    use std::path::PathBuf;

    struct CountingRunner;

    impl JobRunner for CountingRunner {
        async fn run(&self, _job: &JobSpec, _scheduled_for: DateTime<Utc>, _shutdown: CancellationToken) -> RunOutcome {
            RunOutcome::succeeded(RunFigures::default())
        }
    }

    fn job(name: &str, enabled: bool) -> JobDefinition {
        JobDefinition {
            spec: JobSpec {
                name: JobName::parse(name).expect("valid"),
                kind: JobKind::Sync,
                accounts: None,
                batch_size: None,
                time_limit: None,
                reconcile_changed: false,
            },
            schedule: Schedule::parse("* * * * * *").expect("valid"),
            timezone: chrono_tz::Tz::UTC,
            missed: MissedPolicy::CatchUp,
            enabled,
            source: PathBuf::from("jobs/x.toml"),
        }
    }

    fn received(socket: &UnixDatagram) -> Vec<String> {
        socket.set_nonblocking(true).expect("non-blocking");
        let mut out = Vec::new();
        let mut buffer = [0u8; 4096];
        while let Ok(length) = socket.recv(&mut buffer) {
            out.push(String::from_utf8_lossy(&buffer[..length]).into_owned());
        }
        out
    }

    fn origin() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2026-11-23T10:00:00.250Z")
            .expect("RFC 3339")
            .with_timezone(&Utc)
    }

    #[tokio::test(start_paused = true)]
    async fn the_service_says_ready_feeds_the_watchdog_runs_jobs_and_says_stopping() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("notify.sock");
        let systemd = UnixDatagram::bind(&path).expect("bind");
        let notifier = Notifier::from_socket(Some(path.as_os_str()));
        let ledger = Arc::new(MemoryLedger::new());
        let clock = Arc::new(TokioClock::starting_at(origin()));
        let shutdown = CancellationToken::new();
        let stopper = shutdown.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(2_500)).await;
            stopper.cancel();
        });
        let settings = DaemonSettings::new(RunSettings::new(InstanceId::new("a"), "h"));

        serve(
            ledger.clone(),
            clock,
            settings,
            Arc::new(CountingRunner),
            vec![job("tick", true), job("off", false)],
            &notifier,
            Some(Duration::from_secs(1)),
            shutdown,
        )
        .await
        .expect("valid settings");

        assert_eq!(
            received(&systemd),
            vec![
                "READY=1\nSTATUS=scheduling 1 job: tick\n",
                "WATCHDOG=1\n",
                "WATCHDOG=1\n",
                "STOPPING=1\nSTATUS=stopping\n",
            ]
        );
        assert_eq!(ledger.records().len(), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn bad_settings_fail_before_ready() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("notify.sock");
        let systemd = UnixDatagram::bind(&path).expect("bind");
        let notifier = Notifier::from_socket(Some(path.as_os_str()));
        let mut settings = DaemonSettings::new(RunSettings::new(InstanceId::new("a"), "h"));
        settings.runs.heartbeat = settings.runs.lease;

        let result = serve(
            Arc::new(MemoryLedger::new()),
            Arc::new(TokioClock::starting_at(origin())),
            settings,
            Arc::new(CountingRunner),
            vec![job("tick", true)],
            &notifier,
            None,
            CancellationToken::new(),
        )
        .await;

        assert!(result.is_err());
        assert!(received(&systemd).is_empty());
    }

    #[test]
    fn the_status_line_names_the_enabled_jobs() {
        assert_eq!(status_line(&[]), "no enabled job to schedule");
        assert_eq!(
            status_line(&[job("sync", true), job("billing", true), job("off", false)]),
            "scheduling 2 jobs: sync, billing"
        );
    }
}
