//! tally's integration tests: one test binary, one module per area. Store tests run
//! against SQLite and PostgreSQL.

mod api;
mod api_cli;
mod api_concurrency;
mod api_openapi;
mod api_rules;
mod api_support;
mod bookkeepers;
mod cli;
mod cli_jobs;
mod cli_ops;
mod couchdb;
mod couchdb_server;
mod deliveries;
mod demo;
mod fake_bookkeeper;
mod faults;
mod helpers;
mod ingest;
mod ingest_faces;
mod ingest_platform;
mod inventory_store;
mod isolation;
mod ops;
mod overrides;
mod parity;
mod properties;
mod quote_cli;
mod quote_examples;
mod quote_vectors;
mod reconcile;
mod runs;
mod support;
mod sync;
mod systemd;
mod topup;
