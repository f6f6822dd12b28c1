//! The one integration-test crate: store tests run against SQLite and PostgreSQL.

mod cli;
mod demo;
mod helpers;
mod reconcile;
