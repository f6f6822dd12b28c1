//! The pure domain core: plans and overrides, merging, quantities, pricing, invoices.
//!
//! Nothing in here does I/O, awaits, reads a clock or knows about JSON text or SQL:
//! values come in, values go out. Everything with a side effect lives around it
//! (`wire` and `quote` today; the store, jobs and API around the same core) and
//! converts at its edge.
//!
//! The flow: [`plan::resolve_plans`] prepares assigned plans and groups them by
//! bookkeeper, [`merge::merge_plans`] merges each group, [`pricing::price_invoice`]
//! prices the merged plan against [`quantities::QuantityBuckets`], and
//! [`invoice::annotate`] compares two invoices and derives activation charges.
//! [`explain::explain_account`] runs the same three steps with their traces on.

pub mod changes;
pub mod classify;
pub mod document;
pub mod explain;
pub mod ids;
pub mod impact;
pub mod inventory;
pub mod invoice;
pub mod item_plan;
pub mod merge;
pub mod money;
pub mod plan;
pub mod pricing;
pub mod quantities;
pub mod repricing;
pub mod reseller;
pub mod retention;
#[cfg(test)]
mod testing;

pub use ids::{AccountId, Category, ItemName, PlanId};
pub use money::Money;
pub use quantities::{Bucket, Quantities, QuantityBuckets, QuantityChange};
pub mod summary;
pub mod token;
pub mod topup;
pub mod tree;
