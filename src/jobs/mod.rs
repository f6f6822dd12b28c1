//! Jobs: orchestration only. Each job has a `run_once` that tests call directly; the
//! SQL lives in the store and the arithmetic in the domain.

pub mod bookkeeper_sync;
pub mod reconcile;
pub mod sync;
