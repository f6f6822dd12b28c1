//! The command line: what the user typed, as a closed set of commands.
//!
//! Parsing only; `main.rs` runs the commands and maps their outcomes to exit codes.

use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;

#[derive(Debug, Parser)]
#[command(
    name = "tally",
    version,
    about = "Services-billing engine: reconcile, price, invoice, deliver."
)]
pub struct Cli {
    /// A TOML settings file (default: $TALLY_CONFIG, else ./tally.toml if present).
    #[arg(long, global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,

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
    /// Create the database if needed and apply pending schema migrations.
    Migrate,
    /// Run one job once.
    Run {
        #[command(subcommand)]
        job: Job,
    },
    /// Fill an empty database with a deterministic demo data set.
    Demo(DemoArgs),
}

#[derive(Debug, Subcommand)]
pub enum Job {
    /// Recount quantities, roll up cascades, record what changed.
    Reconcile(ReconcileArgs),
}

#[derive(Debug, Args)]
pub struct ReconcileArgs {
    /// Reconcile only this account (repeatable); default: every account.
    #[arg(long = "account", value_name = "ID")]
    pub accounts: Vec<String>,
    /// Print the changes that would be made and write nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Print the closing summary as one JSON object.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Accounts in the tree, master included (about 100 objects each).
    #[arg(long, default_value_t = 1_000)]
    pub accounts: u64,
    /// Seed of the generated ids and inventory.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
}
