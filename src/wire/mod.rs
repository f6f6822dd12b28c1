//! JSON at the edge: conversions between JSON text values and domain values.
//!
//! The domain never sees `serde_json`; everything that reads or writes JSON (the quote
//! command today, the store, the API and the bookkeepers around the same core) goes
//! through these conversions so that numbers stay exact and invoices look the same
//! everywhere.

pub mod bookkeeper;
pub mod document;
pub mod explain;
pub mod impact;
pub mod invoice;
pub mod kazoo;
pub mod record;
