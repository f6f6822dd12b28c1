//! tally: the services-billing engine of a telecom platform.
//!
//! It recounts what every account has (reconcile), prices it against the service
//! plans its resellers assigned (sync), and delivers invoices to bookkeepers.
//!
//! # Layout
//! - [`domain`]: the pure core (plans, merge, quantities, pricing, invoices). No I/O.
//! - [`wire`]: JSON at the edge, numbers kept exact.
//! - [`bookkeepers`]: delivery of invoices to bookkeepers (local, HTTP), idempotency, retry schedule.
//! - [`quote`]: the `tally quote` command's request and response.
//! - [`cli`]: the command line.

pub mod bookkeepers;
pub mod cli;
pub mod domain;
pub mod quote;
pub mod wire;
