//! The scheduler: job files, cron schedules, the scheduling loop and sd_notify.
//!
//! This is the only module that uses the `cron` crate. It decides *when* a job runs;
//! each run then goes through the one run path of [`crate::runs`] (claim, heartbeat,
//! takeover, supervision, end), which `tally run JOB` takes too. *What* a job does
//! belongs to `jobs/`, reached only through [`crate::runs::JobRunner`], and where
//! runs are recorded to the store, reached only through [`crate::runs::RunLedger`].
//! Nothing here touches SQL, and nothing outside `main` depends on this module.

pub mod daemon;
pub mod job_file;
pub mod schedule;
pub mod sd_notify;
pub mod service;

pub use daemon::{run, DaemonSettings, DaemonSettingsError};
pub use job_file::{load_jobs_dir, JobDefinition};
pub use schedule::{missed_fires, next_fire, MissedDecision, MissedPolicy, Schedule};
