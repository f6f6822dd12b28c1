//! The command line: what the user typed, as a closed set of commands.
//!
//! Parsing only; `main.rs` runs the commands and maps their outcomes to exit codes.

use clap::{Parser, Subcommand};
use std::path::PathBuf;

#[derive(Debug, Parser)]
#[command(
    name = "tally",
    version,
    about = "Services-billing engine: reconcile, price, invoice, deliver."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Price service plans against quantities, without a database (`quote-format.md`).
    Quote {
        /// The request file, or `-` for standard input.
        #[arg(long, short, value_name = "FILE")]
        input: PathBuf,
    },
}
