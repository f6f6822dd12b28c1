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
    /// Fire the jobs of the jobs directory at their times until stopped (SIGTERM, Ctrl-C).
    Schedule(ScheduleArgs),
    /// Print the effective configuration, secrets hidden.
    Config,
    /// List the most recent runs, scheduled and one-shot, newest first.
    Runs(RunsArgs),
    /// Query and change an account's services state.
    Services {
        #[command(subcommand)]
        operation: ServicesOperation,
    },
    /// Serve the HTTP API (`api.md`) until stopped (SIGTERM, Ctrl-C).
    Serve(ServeArgs),
    /// Manage the tokens of the HTTP API.
    Tokens {
        #[command(subcommand)]
        operation: TokensOperation,
    },
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// The address to listen on (port 0: any free port, printed at start).
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:8000")]
    pub listen: std::net::SocketAddr,
}

#[derive(Debug, Subcommand)]
pub enum TokensOperation {
    /// Create a token acting as an account; it is printed once and stored hashed.
    Create(TokenCreateArgs),
}

#[derive(Debug, Args)]
pub struct TokenCreateArgs {
    /// The account the token acts as (and its descendants).
    #[arg(long, value_name = "ID")]
    pub account: String,
    /// The token may act on every account and use the super-admin operations.
    #[arg(long)]
    pub super_admin: bool,
    /// What the token is for.
    #[arg(long, value_name = "TEXT")]
    pub description: Option<String>,
}

#[derive(Debug, Args)]
pub struct RunsArgs {
    /// How many runs to list.
    #[arg(long, default_value_t = 20)]
    pub limit: usize,
    /// One JSON object per run.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct ScheduleArgs {
    /// The directory of job files (default: the `scheduler.jobs_dir` setting, `jobs/`).
    #[arg(long, value_name = "DIR")]
    pub jobs_dir: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
pub enum ServicesOperation {
    /// Show an account's standing, or set it by hand (`sync-and-bookkeepers.md` §6).
    Status(StatusArgs),
}

#[derive(Debug, Args)]
pub struct StatusArgs {
    /// The account.
    pub account: String,
    /// Put the account in good standing.
    #[arg(long, conflicts_with = "bad")]
    pub good: bool,
    /// Put the account in bad standing (`delinquent`); needs `--reason`.
    #[arg(long, requires = "reason")]
    pub bad: bool,
    /// Why the account is in bad standing.
    #[arg(long, value_name = "TEXT")]
    pub reason: Option<String>,
    /// A machine-readable code for the reason.
    #[arg(long, value_name = "CODE")]
    pub reason_code: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum Job {
    /// Recount quantities, roll up cascades, record what changed.
    Reconcile(ReconcileArgs),
    /// Reprice accounts against their merged plans and record changed invoices.
    Sync(SyncArgs),
    /// Deliver queued invoices to their bookkeepers and record the answers.
    BookkeeperSync(BookkeeperSyncArgs),
    /// The nightly run: reconcile, sync and bookkeeper-sync, with one report.
    Billing(BillingArgs),
    /// Top up accounts whose balance fell under their threshold (needs `[topup] enable`).
    Topup(TopupArgs),
}

#[derive(Debug, Args)]
pub struct TopupArgs {
    /// Examine only this account (repeatable); default: every account with top-up settings.
    #[arg(long = "account", value_name = "ID")]
    pub accounts: Vec<String>,
    /// Print the report as one JSON object.
    #[arg(long)]
    pub json: bool,
    /// Write the run's figures in the Prometheus text format to this file (atomically).
    #[arg(long, value_name = "PATH")]
    pub metrics_file: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct BillingArgs {
    /// Bill only this account (repeatable); default: every account.
    #[arg(long = "account", value_name = "ID")]
    pub accounts: Vec<String>,
    /// Load the demo data set first when the database has no account, and deliver
    /// HTTP invoices to a loopback demo bookkeeper when none is configured.
    #[arg(long)]
    pub demo: bool,
    /// Print the report as one JSON object.
    #[arg(long)]
    pub json: bool,
    /// Write the run's figures in the Prometheus text format to this file (atomically).
    #[arg(long, value_name = "PATH")]
    pub metrics_file: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct SyncArgs {
    /// Reprice only this account (repeatable); default: accounts marked for repricing.
    #[arg(long = "account", value_name = "ID", conflicts_with = "all")]
    pub accounts: Vec<String>,
    /// Reprice every account that has plans.
    #[arg(long)]
    pub all: bool,
    /// Print the invoice changes that would be recorded and write nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Charge activation for the units of accounts priced for the first time
    /// (default: their first invoices are a baseline without activation charges).
    #[arg(long)]
    pub charge_activations: bool,
    /// Print the closing summary as one JSON object.
    #[arg(long)]
    pub json: bool,
    /// Write the run's figures in the Prometheus text format to this file (atomically).
    #[arg(long, value_name = "PATH")]
    pub metrics_file: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct BookkeeperSyncArgs {
    /// Print the closing summary as one JSON object.
    #[arg(long)]
    pub json: bool,
    /// Write the run's figures in the Prometheus text format to this file (atomically).
    #[arg(long, value_name = "PATH")]
    pub metrics_file: Option<PathBuf>,
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
    /// Write the run's figures in the Prometheus text format to this file (atomically).
    #[arg(long, value_name = "PATH")]
    pub metrics_file: Option<PathBuf>,
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
