//! The pure domain core: plans and overrides, merging, quantities, pricing, invoices.
//!
//! Nothing in here does I/O, awaits, reads a clock or knows about JSON text or SQL:
//! values come in, values go out. Everything with a side effect lives around it
//! (`quote`, and later the store, jobs and API) and converts at its edge.

pub mod ids;
pub mod money;
pub mod quantities;

pub use ids::{AccountId, Category, ItemName, PlanId};
pub use money::Money;
pub use quantities::{Bucket, Quantities, QuantityBuckets, QuantityChange};
pub mod summary;
pub mod tree;
