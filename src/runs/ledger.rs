//! The run ledger's contract: where runs are claimed, kept alive and ended, and how
//! instances are arbitrated. The store implements [`RunLedger`] on both backends
//! (`store/runs.rs`); [`MemoryLedger`] implements it in memory for tests.
//!
//! A run record is unique per (job, scheduled time), and at most one record per job is
//! `running`: a job never runs twice at once, on this host or another. A running
//! record whose lease expired belongs to a dead holder and never blocks the job: the
//! next claim for the same time takes the record over ([`Claim::TakenOver`]), a claim
//! for another time closes it as interrupted, naming the dead holder, and claims its
//! own ([`Claim::Replaced`]). Every change of hands is conditional on the lease being
//! expired, so of two claimants exactly one wins.

use std::future::Future;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Mutex;

use chrono::{DateTime, Utc};

use super::outcome::{RunEnd, RunOutcome};
use super::record::{InstanceId, JobName, RunFigures, RunId, RunRecord, RunStatus};

/// A ledger failure. The daemon logs it and tries again after a pause; a one-shot
/// run exits 75 when it is worth retrying.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LedgerError {
    /// Worth retrying: connection lost, database busy or locked.
    #[error("run ledger unavailable: {0}")]
    Unavailable(String),
    /// Not worth retrying as is.
    #[error("run ledger failed: {0}")]
    Failed(String),
}

/// A running run whose holder stopped renewing its lease: who it was, for the log line
/// and the record of the run that ends it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Abandoned {
    pub run: RunId,
    pub scheduled_for: DateTime<Utc>,
    pub host: String,
    pub instance: InstanceId,
    pub lease_until: DateTime<Utc>,
}

impl Abandoned {
    /// The message recorded on an abandoned run closed by another claimant.
    pub fn closing_message(&self, closer: &ClaimRequest) -> String {
        format!(
            "abandoned: its holder {} on {} stopped renewing its lease (expired {}); closed by {} on {}",
            self.instance,
            self.host,
            self.lease_until.to_rfc3339(),
            closer.instance,
            closer.host
        )
    }
}

/// What [`RunLedger::claim`] decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claim {
    /// This instance created the run record and holds its lease.
    Won(RunId),
    /// The record of this occurrence existed with an expired lease (its holder died);
    /// this instance now holds it and runs the occurrence again (jobs are idempotent).
    TakenOver(Abandoned),
    /// Another occurrence of the job was still marked running with an expired lease:
    /// it was closed as interrupted, and this instance created its own record.
    Replaced { run: RunId, abandoned: Abandoned },
    /// Another instance holds or finished this occurrence.
    AlreadyClaimed,
    /// Another occurrence of the same job is running with a live lease (here or on
    /// another host): a job never runs twice at once, whatever the scheduled times.
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

/// Where runs are recorded and claimed.
pub trait RunLedger: Send + Sync + 'static {
    /// The latest scheduled time recorded for `job`, whatever its status.
    fn last_scheduled(&self, job: &JobName) -> impl Future<Output = Result<Option<DateTime<Utc>>, LedgerError>> + Send;

    /// Atomically: creates the unique run record for (job, scheduled time); or takes
    /// that record over when it is still `running` with a lease that expired before
    /// `now`; or, when another record of the job is `running`, answers
    /// [`Claim::Busy`] while its lease lasts and otherwise closes it as interrupted
    /// (naming its holder) and creates the record.
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

fn abandoned(record: &RunRecord) -> Abandoned {
    Abandoned {
        run: record.id,
        scheduled_for: record.scheduled_for,
        host: record.host.clone(),
        instance: record.instance.clone(),
        lease_until: record.lease_until,
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
            Some(record) if record.status == RunStatus::Running && record.lease_until < request.now => {
                let dead = abandoned(record);
                record.instance = request.instance.clone();
                record.host = request.host.clone();
                record.started_at = request.now;
                record.lease_until = request.lease_until;
                record.takeovers += 1;
                return Ok(Claim::TakenOver(dead));
            }
            Some(_) => return Ok(Claim::AlreadyClaimed),
            None => {}
        }
        let running = records
            .iter_mut()
            .find(|record| record.job == request.job && record.status == RunStatus::Running);
        let replaced = match running {
            Some(running) if running.lease_until >= request.now => {
                return Ok(Claim::Busy {
                    scheduled_for: running.scheduled_for,
                    host: running.host.clone(),
                })
            }
            Some(running) => {
                let dead = abandoned(running);
                running.status = RunStatus::Ended(RunEnd::Interrupted);
                running.ended_at = Some(request.now);
                running.message = Some(dead.closing_message(request));
                Some(dead)
            }
            None => None,
        };
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
        Ok(match replaced {
            Some(abandoned) => Claim::Replaced { run: id, abandoned },
            None => Claim::Won(id),
        })
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

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text)
            .expect("test instants are RFC 3339")
            .with_timezone(&Utc)
    }

    fn request(instance: &str, scheduled_for: &str, now: &str, lease_until: &str) -> ClaimRequest {
        ClaimRequest {
            job: JobName::parse("job").expect("valid"),
            scheduled_for: at(scheduled_for),
            instance: InstanceId::new(instance),
            host: format!("host-{instance}"),
            now: at(now),
            lease_until: at(lease_until),
        }
    }

    #[tokio::test]
    async fn the_memory_ledger_grants_a_time_once_and_refuses_strangers() {
        let ledger = MemoryLedger::new();
        let first = request(
            "a",
            "2026-11-23T10:00:00Z",
            "2026-11-23T10:00:00Z",
            "2026-11-23T10:01:00Z",
        );
        let Ok(Claim::Won(id)) = ledger.claim(&first).await else {
            panic!("first claim wins");
        };
        let early = request(
            "b",
            "2026-11-23T10:00:00Z",
            "2026-11-23T10:00:30Z",
            "2026-11-23T10:01:30Z",
        );
        assert_eq!(ledger.claim(&early).await, Ok(Claim::AlreadyClaimed));
        let next_time = request(
            "b",
            "2026-11-23T10:00:30Z",
            "2026-11-23T10:00:30Z",
            "2026-11-23T10:01:30Z",
        );
        assert_eq!(
            ledger.claim(&next_time).await,
            Ok(Claim::Busy {
                scheduled_for: at("2026-11-23T10:00:00Z"),
                host: "host-a".to_owned()
            })
        );
        let late = request(
            "b",
            "2026-11-23T10:00:00Z",
            "2026-11-23T10:01:01Z",
            "2026-11-23T10:02:00Z",
        );
        let Ok(Claim::TakenOver(dead)) = ledger.claim(&late).await else {
            panic!("an expired lease is taken over");
        };
        assert_eq!(
            (dead.run, dead.instance.as_str(), dead.host.as_str()),
            (id, "a", "host-a")
        );
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
        let much_later = request(
            "c",
            "2026-11-23T10:00:00Z",
            "2026-11-24T00:00:00Z",
            "2026-11-24T00:01:00Z",
        );
        assert_eq!(ledger.claim(&much_later).await, Ok(Claim::AlreadyClaimed));
        let recent = ledger.recent(10).await.expect("in memory");
        assert_eq!(recent.len(), 1);
        assert_eq!(recent[0].status, RunStatus::Ended(RunEnd::Succeeded));
    }

    #[tokio::test]
    async fn a_claim_for_another_time_closes_a_dead_holders_run_and_claims_its_own() {
        let ledger = MemoryLedger::new();
        let dead = request(
            "dead",
            "2026-11-23T02:30:00Z",
            "2026-11-23T02:30:00Z",
            "2026-11-23T02:31:00Z",
        );
        let Ok(Claim::Won(dead_run)) = ledger.claim(&dead).await else {
            panic!("first claim wins");
        };
        let live_lease = request(
            "cli",
            "2026-11-23T02:30:30Z",
            "2026-11-23T02:30:30Z",
            "2026-11-23T02:31:30Z",
        );
        assert!(matches!(ledger.claim(&live_lease).await, Ok(Claim::Busy { .. })));

        let after_expiry = request(
            "cli",
            "2026-11-23T02:32:00Z",
            "2026-11-23T02:32:00Z",
            "2026-11-23T02:33:00Z",
        );
        let Ok(Claim::Replaced { run, abandoned }) = ledger.claim(&after_expiry).await else {
            panic!("the dead holder's run no longer blocks the job");
        };
        assert_ne!(run, dead_run);
        assert_eq!(
            (abandoned.run, abandoned.host.as_str(), abandoned.scheduled_for),
            (dead_run, "host-dead", at("2026-11-23T02:30:00Z"))
        );
        let records = ledger.records();
        assert_eq!(records[0].status, RunStatus::Ended(RunEnd::Interrupted));
        let message = records[0].message.clone().unwrap_or_default();
        assert!(
            message.contains("dead on host-dead") && message.contains("closed by cli on host-cli"),
            "{message}"
        );
        assert_eq!((records[1].id, records[1].status), (run, RunStatus::Running));
    }
}
