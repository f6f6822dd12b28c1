//! tally's integration tests: one test binary, one module per area.

mod bookkeepers;
mod fake_bookkeeper;
mod properties;
mod quote_cli;
mod quote_examples;
mod quote_vectors;
mod support;
