//! tally: the services-billing engine of a telecom platform.
//!
//! It recounts what every account has (reconcile), prices it against the service
//! plans its resellers assigned (sync), and delivers invoices to bookkeepers.
//!
//! # Layout
//! - [`domain`]: the pure core (plans, merge, quantities, pricing, invoices, tree,
//!   summaries). No I/O.
//! - [`wire`]: JSON at the edge, numbers kept exact.
//! - [`store`]: the only module that imports sqlx; SQLite and PostgreSQL.
//! - [`jobs`]: orchestration (`reconcile`), each with a `run_once`.
//! - [`bookkeepers`]: delivery of invoices to bookkeepers (local, HTTP), idempotency, retry schedule.
//! - [`quote`]: the `tally quote` command's request and response.
//! - [`config`]: typed settings; [`cli`]: the command line; [`demo`]: demo data.

pub mod bookkeepers;
pub mod cli;
pub mod config;
pub mod demo;
pub mod domain;
pub mod jobs;
pub mod quote;
pub mod store;
pub mod wire;
