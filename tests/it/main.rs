//! The one integration-test crate: store tests run against SQLite and PostgreSQL.

mod cli;
mod helpers;
mod reconcile;
