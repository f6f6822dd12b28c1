//! The words of a run: which job ([`JobName`], [`JobKind`], [`JobSpec`]), which run
//! ([`RunId`], and the labels a run's writes carry), who holds it ([`InstanceId`],
//! [`local_host_name`]) and what was recorded ([`RunFigures`], [`RunStatus`],
//! [`RunRecord`]).
//!
//! Every identifier of a run is made here: the ledger's [`RunId`] comes from the
//! database, and [`job_run_label`] / [`operation_run_label`] are the labels that audit
//! rows and change records carry, for batch jobs and for an operation's immediate
//! commit alike.

use std::fmt;
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use chrono::{DateTime, Utc};

use super::outcome::RunEnd;
use crate::domain::summary::GregorianSeconds;
use crate::domain::AccountId;

/// The name of a job: unique across the jobs directory, used in run records, logs and
/// metric labels, so it is limited to letters, digits, `-`, `_` and `.`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct JobName(String);

impl JobName {
    pub fn parse(text: impl Into<String>) -> Result<Self, String> {
        let text = text.into();
        if text.is_empty() {
            return Err("a job name must not be empty".to_owned());
        }
        let allowed = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.');
        if let Some(bad) = text.chars().find(|c| !allowed(*c)) {
            return Err(format!(
                "job name `{text}` contains `{bad}`; use letters, digits, `-`, `_` and `.`"
            ));
        }
        Ok(Self(text))
    }

    /// The name a one-shot `tally run KIND` records its runs under.
    pub fn of_kind(kind: JobKind) -> Self {
        Self(kind.as_str().to_owned())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for JobName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// What a job does. A closed set: adding a job means adding a variant here and a
/// match arm wherever jobs are dispatched, which the compiler then lists.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum JobKind {
    /// Recount every account's quantities and reprice.
    Reconcile,
    /// The sync loop of `sync-and-bookkeepers.md` §2.3: commit dirty accounts.
    Sync,
    /// Deliver pending invoice changes to bookkeepers.
    BookkeeperSync,
    /// The nightly run: reconcile, then sync, then bookkeeper-sync, with one report.
    Billing,
    /// Automatic top-up of low balances.
    Topup,
    /// Read the platform's CouchDB feeds into the inventory (one follow cycle).
    Ingest,
    /// Delete finished records older than the `[retention]` settings.
    Prune,
}

impl JobKind {
    pub const ALL: [JobKind; 7] = [
        JobKind::Reconcile,
        JobKind::Sync,
        JobKind::BookkeeperSync,
        JobKind::Billing,
        JobKind::Topup,
        JobKind::Ingest,
        JobKind::Prune,
    ];

    /// The spelling used in job files and on the command line (`tally run JOB`).
    pub fn as_str(self) -> &'static str {
        match self {
            JobKind::Reconcile => "reconcile",
            JobKind::Sync => "sync",
            JobKind::BookkeeperSync => "bookkeeper-sync",
            JobKind::Billing => "billing",
            JobKind::Topup => "topup",
            JobKind::Ingest => "ingest",
            JobKind::Prune => "prune",
        }
    }

    pub fn parse(text: &str) -> Result<Self, String> {
        Self::ALL.into_iter().find(|kind| kind.as_str() == text).ok_or_else(|| {
            let known: Vec<&str> = Self::ALL.iter().map(|kind| kind.as_str()).collect();
            format!("unknown job `{text}` (known: {})", known.join(", "))
        })
    }
}

impl fmt::Display for JobKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What one run of a job does, whoever starts it: a job file read by the scheduler
/// holds one, and the job runner receives it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobSpec {
    /// The key of its run records.
    pub name: JobName,
    /// What to run.
    pub kind: JobKind,
    /// The accounts to work on; `None` means all of them.
    pub accounts: Option<Vec<AccountId>>,
    /// Accounts per batch (per transaction); `None` lets the job use its default.
    pub batch_size: Option<NonZeroU32>,
    /// After this long the job stops taking new batches, as on shutdown.
    pub time_limit: Option<Duration>,
    /// `ingest` only: recount the accounts the documents changed once they are in.
    pub reconcile_changed: bool,
}

/// The id of a run record, given by the ledger.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RunId(pub i64);

impl fmt::Display for RunId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
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

impl fmt::Display for InstanceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// This machine's host name, for run records; `localhost` when it cannot be read.
pub fn local_host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::fs::read_to_string("/etc/hostname"))
        .map(|name| name.trim().to_owned())
        .ok()
        .filter(|name| !name.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok().filter(|name| !name.is_empty()))
        .unwrap_or_else(|| "localhost".to_owned())
}

/// The label a batch job's writes carry (`sync-<seconds>-<pid>-<n>`): unique within the
/// database's history, so the audit rows and change records of one run can be found.
pub fn job_run_label(job: &str, now: GregorianSeconds) -> String {
    static RUNS: AtomicU64 = AtomicU64::new(0);
    let sequence = RUNS.fetch_add(1, Ordering::Relaxed);
    format!("{job}-{}-{}-{sequence}", now.0, std::process::id())
}

/// The label of an operation's immediate commit of one account: 64 hex characters no
/// other operation gets, even within the same second and process, from which its
/// records and audit rows derive their ids.
pub fn operation_run_label(kind: &str, account: &AccountId) -> String {
    use sha2::{Digest, Sha256};
    static SEQUENCE: AtomicU64 = AtomicU64::new(0);
    let mut digest = Sha256::new();
    for part in [kind, account.as_str()] {
        digest.update(part.as_bytes());
        digest.update([0x1f]);
    }
    digest.update(std::process::id().to_be_bytes());
    digest.update(SEQUENCE.fetch_add(1, Ordering::Relaxed).to_be_bytes());
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|elapsed| elapsed.as_nanos())
        .unwrap_or(0);
    digest.update(nanos.to_be_bytes());
    hex::encode(digest.finalize())
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

    /// Reads back [`RunStatus::as_str`].
    pub fn parse(text: &str) -> Option<RunStatus> {
        if text == "running" {
            return Some(RunStatus::Running);
        }
        RunEnd::ALL
            .into_iter()
            .find(|end| end.as_str() == text)
            .map(RunStatus::Ended)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_status_reads_back_as_written() {
        let mut statuses = vec![RunStatus::Running];
        statuses.extend(RunEnd::ALL.map(RunStatus::Ended));
        for status in statuses {
            assert_eq!(RunStatus::parse(status.as_str()), Some(status), "{status:?}");
        }
        assert_eq!(RunStatus::parse("partial"), None);
    }

    #[test]
    fn run_labels_differ_within_one_second() {
        let now = GregorianSeconds(63_900_000_000);
        let first = job_run_label("sync", now);
        let second = job_run_label("sync", now);
        assert!(first.starts_with("sync-63900000000-"), "{first}");
        assert_ne!(first, second);
        let account = AccountId::parse("0123456789abcdef0123456789abcdef").expect("valid id");
        let label = operation_run_label("commit", &account);
        assert_eq!(label.len(), 64);
        assert_ne!(label, operation_run_label("commit", &account));
    }
}
