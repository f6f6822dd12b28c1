//! Recording one-shot runs (`tally run JOB`) in the run ledger, like scheduled ones:
//! the run is claimed for (job, now) before it starts, so a job already running
//! elsewhere is refused (exit 75), its lease is renewed while it works, and its end and
//! figures are written when it finishes.

use crate::scheduler::daemon::{Claim, ClaimRequest, InstanceId, Lease, RunLedger, RunOutcome};
use crate::scheduler::job_file::JobName;
use chrono::{Duration as ChronoDuration, Utc};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tracing::Instrument;

/// How long a one-shot run's lease lasts, and how often it is renewed.
const LEASE: Duration = Duration::from_secs(60);
const HEARTBEAT: Duration = Duration::from_secs(20);
/// How many seconds after its start a one-shot run may take as its key.
const ONE_SHOT_SECONDS: i64 = 10;

/// Why a one-shot run did not start.
#[derive(Debug, thiserror::Error)]
pub enum OneShotError {
    #[error("job {job} is already running on {host} (scheduled for {scheduled_for})")]
    Busy {
        job: String,
        host: String,
        scheduled_for: String,
    },
    #[error("job {job}: every run key of the next seconds is taken; try again")]
    AlreadyClaimed { job: String },
    #[error("{0}")]
    Ledger(String),
}

/// Runs `work` as a recorded run of `job`; returns what `work` returned.
pub async fn recorded<L, T, F>(
    ledger: Arc<L>,
    job: &JobName,
    host: &str,
    work: F,
    outcome_of: impl FnOnce(&T) -> RunOutcome,
) -> Result<T, OneShotError>
where
    L: RunLedger,
    F: Future<Output = T>,
{
    let now = Utc::now();
    let instance = InstanceId::for_this_process(host);
    let lease =
        |from: chrono::DateTime<Utc>| from + ChronoDuration::from_std(LEASE).unwrap_or(ChronoDuration::seconds(60));
    // Runs are keyed by (job, second). A one-shot run whose second is already taken
    // (a scheduled run of the same second, or another one-shot that just ended) takes
    // the next free second: the key must be unique, the time is informative.
    let mut claimed = None;
    for offset in 0..ONE_SHOT_SECONDS {
        let request = ClaimRequest {
            job: job.clone(),
            scheduled_for: now + ChronoDuration::seconds(offset),
            instance: instance.clone(),
            host: host.to_owned(),
            now,
            lease_until: lease(now),
        };
        match ledger
            .claim(&request)
            .await
            .map_err(|error| OneShotError::Ledger(error.to_string()))?
        {
            Claim::Won(run) | Claim::TakenOver(run) => {
                claimed = Some(run);
                break;
            }
            Claim::AlreadyClaimed => continue,
            Claim::Busy { scheduled_for, host } => {
                return Err(OneShotError::Busy {
                    job: job.to_string(),
                    host,
                    scheduled_for: scheduled_for.to_rfc3339(),
                })
            }
        }
    }
    let run = claimed.ok_or_else(|| OneShotError::AlreadyClaimed { job: job.to_string() })?;
    let heartbeat = {
        let ledger = Arc::clone(&ledger);
        let instance = instance.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(HEARTBEAT).await;
                match ledger.renew(run, &instance, lease(Utc::now())).await {
                    Ok(Lease::Held) => {}
                    Ok(Lease::Lost) => break,
                    Err(error) => tracing::warn!(%error, "cannot renew the run's lease"),
                }
            }
        })
    };
    // Every log line of the run carries its run id and job, as the daemon's do.
    let result = work
        .instrument(tracing::info_span!("run", run_id = %run, job = %job))
        .await;
    heartbeat.abort();
    let outcome = outcome_of(&result);
    match ledger.finish(run, &instance, Utc::now(), &outcome).await {
        Ok(Lease::Held) => {}
        Ok(Lease::Lost) => tracing::warn!(job = %job, "the run was taken over before it finished"),
        Err(error) => tracing::warn!(job = %job, %error, "cannot record the end of the run"),
    }
    Ok(result)
}
