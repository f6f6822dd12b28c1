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
//! - [`jobs`]: orchestration (`reconcile`, `sync`, `bookkeeper_sync`), each with a `run_once`.
//! - [`ops`]: every services and service-plans operation, shared by the CLI and the API;
//!   [`api`]: the HTTP API over them (`tally serve`).
//! - [`ingest`]: the platform's documents (a dump, a CouchDB feed, HTTP) into the inventory.
//! - [`bookkeepers`]: delivery of invoices to bookkeepers (local, HTTP), idempotency, retry schedule.
//! - [`runs`]: the run vocabulary, the run ledger contract, and the one path every run
//!   takes (claim, heartbeat, takeover, supervision, end, status and exit code).
//! - [`scheduler`]: job files, cron schedules, the daemon loop, sd_notify.
//! - [`quote`]: the `tally quote` command's request and response.
//! - [`config`]: typed settings; [`cli`]: the command line; [`demo`]: demo data.
//! - [`ops`]: every services and service-plans operation; [`ops_cli`]: `tally services`
//!   and `tally plans` over it; [`table`]: readable tables of JSON responses.
//! - [`telemetry`], [`metrics`], [`exit`]: logs, Prometheus textfile, exit codes.
//! - [`backup`]: `tally backup` (an online SQLite copy; `pg_dump` for PostgreSQL).

pub mod api;
pub mod backup;
pub mod bookkeepers;
pub mod cli;
pub mod config;
pub mod demo;
pub mod domain;
pub mod exit;
pub mod explain_text;
pub mod impact_text;
pub mod ingest;
pub mod jobs;
pub mod metrics;
pub mod ops;
pub mod ops_cli;
pub mod quote;
pub mod runs;
pub mod scheduler;
pub mod store;
pub mod table;
pub mod telemetry;
pub mod wire;
