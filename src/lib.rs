//! tally: the services-billing engine of a telecom platform.
//!
//! It recounts what every account has (reconcile), prices it against the service
//! plans its resellers assigned (sync), and delivers invoices to bookkeepers.
//!
//! # Layout
//! - [`domain`]: the pure core (plans, merge, quantities, pricing). No I/O.
//! - everything else converts between the outside world and the domain.

pub mod domain;
pub mod exit;
pub mod metrics;
pub mod scheduler;
pub mod telemetry;
