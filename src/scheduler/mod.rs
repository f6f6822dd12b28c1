//! The scheduler: job files, cron schedules, the scheduling loop and sd_notify.
//!
//! This is the only module that uses the `cron` crate. It decides *when* a job runs
//! and records that it ran; *what* a job does belongs to `jobs/`, reached only through
//! the [`daemon::JobRunner`] trait, and where runs are recorded belongs to the store,
//! reached only through the [`daemon::RunLedger`] trait. Nothing here touches SQL.

pub mod daemon;
pub mod job_file;
pub mod schedule;
pub mod sd_notify;
pub mod service;

pub use daemon::{
    run, run_once, Clock, DaemonSettings, InstanceId, JobRunner, MemoryLedger, RunEnd, RunFigures, RunLedger,
    RunOutcome, SystemClock,
};
pub use job_file::{load_jobs_dir, JobDefinition, JobKind, JobName};
pub use schedule::{missed_fires, next_fire, MissedDecision, MissedPolicy, Schedule};
