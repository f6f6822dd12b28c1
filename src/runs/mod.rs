//! Runs: what a run of a job is, where it is recorded, and the one path every run
//! takes — `tally run JOB` and `tally schedule` alike.
//!
//! - [`record`]: the vocabulary (job names and kinds, run ids and labels, lease
//!   holders, figures, statuses, records);
//! - [`outcome`]: how a run ended, decided once: a job's report or error becomes a
//!   [`RunOutcome`], whose [`RunEnd`] is the recorded status and the exit code;
//! - [`ledger`]: the [`RunLedger`] contract (claims, leases, takeover of a dead
//!   holder's run) implemented by the store, and [`MemoryLedger`] for tests;
//! - [`run`]: [`Runs`], which claims, heartbeats, supervises (time limit, shutdown
//!   grace, lost lease) and records a run, and the [`JobRunner`] seam the jobs
//!   implement.
//!
//! This module decides nothing about *when* a job runs (the scheduler) nor *what* it
//! does (the jobs), and touches no SQL (the store implements the ledger).

pub mod ledger;
pub mod outcome;
pub mod record;
pub mod run;

pub use ledger::{Abandoned, Claim, ClaimRequest, Lease, LedgerError, MemoryLedger, RunLedger};
pub use outcome::{JobError, JobReport, RunEnd, RunOutcome};
pub use record::{
    job_run_label, local_host_name, operation_run_label, InstanceId, JobKind, JobName, JobSpec, RunFigures, RunId,
    RunRecord, RunStatus,
};
pub use run::{
    cancel_on_termination_signals, ClaimedRun, Clock, Finished, JobRunner, Refusal, RunSettings, RunSettingsError,
    Runs, SystemClock, TokioClock,
};
