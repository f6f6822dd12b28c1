//! Riding out database faults in a run: a lost connection, a restarting server, a
//! serialization failure or a busy SQLite file restarts the stage in hand after a
//! short wait, for a bounded time (`[database] retry_seconds`), then the run ends as a
//! temporary failure (exit 75) and the next run finishes the work.
//!
//! Restarting a whole stage is safe because every stage is idempotent and commits one
//! batch per transaction: what committed stays, the rest is done again. It is also
//! the only safe grain: a reconcile keeps its staging tables on one connection, so a
//! lost connection loses them. Requests of the API are not retried here: they answer
//! at once and their client retries.
//!
//! [`FaultRetry`] is the pure policy (no clock, no I/O); [`retry_faults`] runs a stage
//! with it. A fault that outlasts the retries is a temporary failure of the run
//! (`StoreError::is_temporary`, through `runs::RunOutcome::failed`): exit 75.

use super::billing::BillingError;
use super::ingest::IngestJobError;
use super::reconcile::ReconcileError;
use crate::config::DatabaseSettings;
use crate::ingest::IngestError;
use crate::store::StoreError;
use std::fmt::Display;
use std::future::Future;
use std::time::Duration;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// An error that may be a database fault worth retrying.
pub trait DatabaseFault {
    /// The database was lost, restarting, busy or lost a race: a retry may succeed.
    fn is_database_fault(&self) -> bool;
}

impl DatabaseFault for StoreError {
    fn is_database_fault(&self) -> bool {
        self.is_temporary()
    }
}

impl DatabaseFault for ReconcileError {
    fn is_database_fault(&self) -> bool {
        match self {
            ReconcileError::Store(error) => error.is_temporary(),
        }
    }
}

impl DatabaseFault for BillingError {
    fn is_database_fault(&self) -> bool {
        match self {
            BillingError::Reconcile(error) => error.is_database_fault(),
            BillingError::Store(error) => error.is_temporary(),
        }
    }
}

impl DatabaseFault for IngestJobError {
    /// Only the database's faults: an unreachable CouchDB ends the cycle at once (its
    /// checkpoints stay), as it always did.
    fn is_database_fault(&self) -> bool {
        match self {
            IngestJobError::Ingest(IngestError::Store(error)) => error.is_temporary(),
            IngestJobError::Reconcile(error) => error.is_database_fault(),
            IngestJobError::NotConfigured | IngestJobError::Couch(_) => false,
        }
    }
}

/// When to try a stage again after a database fault: 0.5 s, doubling up to 5 s, for
/// at most `budget` after the first fault of an outage.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FaultRetry {
    pub first_delay: Duration,
    pub max_delay: Duration,
    /// How long after the first consecutive fault the run still tries again.
    pub budget: Duration,
}

impl FaultRetry {
    /// The policy of runs, from `[database] retry_seconds`.
    pub fn for_runs(settings: &DatabaseSettings) -> FaultRetry {
        FaultRetry {
            first_delay: Duration::from_millis(500),
            max_delay: Duration::from_secs(5),
            budget: settings.fault_budget(),
        }
    }

    /// The wait before attempt `failures + 1`, after `failures` consecutive faults (at
    /// least 1), the first of them `since_first_fault` ago; `None`: give up, the wait
    /// would end past the budget.
    pub fn next_delay(&self, failures: u32, since_first_fault: Duration) -> Option<Duration> {
        let doublings = failures.saturating_sub(1).min(16);
        let delay = self.first_delay.saturating_mul(1 << doublings).min(self.max_delay);
        (since_first_fault.saturating_add(delay) <= self.budget).then_some(delay)
    }
}

/// Runs `attempt` (one whole stage) until it succeeds, fails otherwise than by a
/// database fault, the policy gives up, or `stop` is cancelled; returns the last error
/// then. Each fault is logged with the stage and the wait.
pub async fn retry_faults<T, E, F, Fut>(
    policy: FaultRetry,
    stage: &str,
    stop: &CancellationToken,
    mut attempt: F,
) -> Result<T, E>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, E>>,
    E: DatabaseFault + Display,
{
    let mut failures: u32 = 0;
    let mut first_fault: Option<Instant> = None;
    loop {
        let error = match attempt().await {
            Ok(value) => return Ok(value),
            Err(error) if !error.is_database_fault() => return Err(error),
            Err(error) => error,
        };
        failures = failures.saturating_add(1);
        let since_first_fault = first_fault.get_or_insert_with(Instant::now).elapsed();
        let Some(delay) = policy.next_delay(failures, since_first_fault) else {
            return Err(error);
        };
        tracing::warn!(
            stage,
            attempt = failures,
            retry_in_ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX),
            %error,
            "database fault: the stage starts again"
        );
        tokio::select! {
            () = stop.cancelled() => return Err(error),
            () = tokio::time::sleep(delay) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    fn within(budget_seconds: u64) -> FaultRetry {
        FaultRetry::for_runs(&DatabaseSettings {
            retry_seconds: budget_seconds,
            ..DatabaseSettings::default()
        })
    }

    #[test]
    fn waits_double_from_half_a_second_up_to_five_seconds() {
        let policy = within(3600);
        let waits: Vec<u64> = (1..=7)
            .map(|failures| {
                let delay = policy.next_delay(failures, Duration::ZERO).expect("within budget");
                u64::try_from(delay.as_millis()).expect("small")
            })
            .collect();
        assert_eq!(waits, [500, 1000, 2000, 4000, 5000, 5000, 5000]);
        assert_eq!(
            policy.next_delay(u32::MAX, Duration::ZERO),
            Some(Duration::from_secs(5))
        );
    }

    #[test]
    fn gives_up_when_the_wait_would_end_past_the_budget() {
        let policy = within(10);
        assert_eq!(
            policy.next_delay(1, Duration::from_millis(9_500)),
            Some(Duration::from_millis(500))
        );
        assert_eq!(policy.next_delay(1, Duration::from_millis(9_501)), None);
        assert_eq!(policy.next_delay(5, Duration::from_secs(6)), None);
        assert_eq!(within(0).next_delay(1, Duration::ZERO), None);
    }

    fn lost_connection() -> StoreError {
        StoreError::Query {
            step: "reading",
            source: sqlx::Error::Io(std::io::Error::from(std::io::ErrorKind::ConnectionReset)),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_fault_restarts_the_stage_until_it_succeeds() {
        let attempts = AtomicU32::new(0);
        let result = retry_faults(within(60), "sync", &CancellationToken::new(), || async {
            match attempts.fetch_add(1, Ordering::SeqCst) {
                0 | 1 => Err(lost_connection()),
                _ => Ok("done"),
            }
        })
        .await;
        assert_eq!(result.expect("third attempt succeeds"), "done");
        assert_eq!(attempts.load(Ordering::SeqCst), 3);
    }

    #[tokio::test(start_paused = true)]
    async fn a_lasting_fault_is_returned_once_the_budget_is_spent() {
        let attempts = AtomicU32::new(0);
        let started = tokio::time::Instant::now();
        let result: Result<(), StoreError> = retry_faults(within(10), "sync", &CancellationToken::new(), || async {
            attempts.fetch_add(1, Ordering::SeqCst);
            Err(lost_connection())
        })
        .await;
        assert!(result.expect_err("gives up").is_temporary());
        // Waits of 0.5 + 1 + 2 + 4 s fit in 10 s; the next 5 s would not.
        assert_eq!(attempts.load(Ordering::SeqCst), 5);
        assert_eq!(started.elapsed(), Duration::from_millis(7_500));
    }

    #[tokio::test(start_paused = true)]
    async fn an_error_that_is_no_fault_is_returned_at_once() {
        let attempts = AtomicU32::new(0);
        let result: Result<(), StoreError> = retry_faults(within(60), "sync", &CancellationToken::new(), || async {
            attempts.fetch_add(1, Ordering::SeqCst);
            Err(StoreError::InvalidRow("bad".into()))
        })
        .await;
        assert!(matches!(result, Err(StoreError::InvalidRow(_))));
        assert_eq!(attempts.load(Ordering::SeqCst), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn a_stop_ends_the_wait() {
        let stop = CancellationToken::new();
        stop.cancel();
        let attempts = AtomicU32::new(0);
        let result: Result<(), StoreError> = retry_faults(within(60), "sync", &stop, || async {
            attempts.fetch_add(1, Ordering::SeqCst);
            Err(lost_connection())
        })
        .await;
        assert!(result.is_err());
        assert_eq!(attempts.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn a_fault_that_outlasted_the_retries_ends_the_run_as_a_temporary_failure() {
        use crate::runs::{RunEnd, RunOutcome};
        assert_eq!(RunOutcome::failed(&lost_connection()).end, RunEnd::TemporaryFailure);
        assert_eq!(
            RunOutcome::failed(&StoreError::InvalidRow("bad".into())).end,
            RunEnd::Failed
        );
        let billing = BillingError::Reconcile(ReconcileError::Store(lost_connection()));
        assert!(billing.is_database_fault());
        assert_eq!(RunOutcome::failed(&billing).end, RunEnd::TemporaryFailure);
    }
}
