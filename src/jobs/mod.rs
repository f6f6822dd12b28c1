//! Jobs: orchestration only. Each job has a `run_once` that tests call directly; the
//! SQL lives in the store and the arithmetic in the domain. [`context::JobContext`]
//! builds every job's options from the settings, for the command line and the
//! scheduler alike.

pub mod billing;
pub mod billing_preview;
pub mod bookkeeper_sync;
pub mod context;
pub mod demo;
pub mod impact;
pub mod ingest;
pub mod prune;
pub mod reconcile;
pub mod retry;
pub mod sync;
pub mod topup;
