//! The `tally` binary: parse arguments, load settings, run the command, map the
//! outcome to an exit code: 0 ok, 65 data errors (in some accounts, in a quote request,
//! or the input of a `services`/`plans` operation), 75 retry later, 77 not permitted,
//! 78 bad configuration, 2 usage, 1 anything else (`tally::exit`). A `tally run`'s code
//! is its run's status, decided by `tally::runs`.

mod commands;

use clap::Parser;
use commands::*;
use std::process::ExitCode;
use tally::cli::{AccountsOperation, Cli, Command, InventoryOperation, Job, TokensOperation};
use tally::config::Settings;
use tally::exit::ExitCode as TallyExit;
use tally::runs::RunOutcome;

// The numbers are named once, in `tally::exit`.
pub(crate) const EXIT_DATA_ERROR: u8 = TallyExit::DataErrors.code();
pub(crate) const EXIT_CONFIG: u8 = TallyExit::BadConfiguration.code();
pub(crate) const EXIT_USAGE: u8 = TallyExit::Usage.code();

/// How a command ended, before it becomes an exit code.
pub(crate) enum Failure {
    Config(String),
    /// A run that could not start, or whose job failed: its outcome, as the run path
    /// decided it, gives the message and the exit code.
    Run(RunOutcome),
    Other(anyhow::Error),
}

impl From<anyhow::Error> for Failure {
    fn from(error: anyhow::Error) -> Self {
        Failure::Other(error)
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // Quoting needs neither settings nor a database.
    if let Command::Quote { input } = &cli.command {
        return run_quote(input);
    }
    let settings = match Settings::load(cli.config.as_deref()) {
        Ok(settings) => settings,
        Err(error) => {
            eprintln!("tally: {error}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    // An operation's output is its data and at most one error line: logs only for errors
    // unless RUST_LOG asks for more.
    let logs = if matches!(cli.command, Command::Services { .. } | Command::Plans { .. }) {
        install_logs("error")
    } else {
        tally::telemetry::install_for_stderr()
    };
    if let Err(error) = logs {
        eprintln!("tally: {error}");
        return ExitCode::from(EXIT_CONFIG);
    }
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("tally: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    let outcome = runtime.block_on(async {
        match cli.command {
            Command::Migrate => run_migrate(&settings).await,
            Command::Run {
                job: Job::Reconcile(args),
            } => run_reconcile(&settings, &args).await,
            Command::Demo(args) => run_demo(&settings, &args).await,
            Command::Run { job: Job::Sync(args) } => run_sync(&settings, &args).await,
            Command::Run {
                job: Job::BookkeeperSync(args),
            } => run_bookkeeper_sync(&settings, &args).await,
            Command::Services { output, operation } => {
                run_ops(&settings, &output, OpsCommand::Services(&operation)).await
            }
            Command::Plans { output, operation } => run_ops(&settings, &output, OpsCommand::Plans(&operation)).await,
            Command::Run {
                job: Job::Billing(args),
            } => run_billing(&settings, &args).await,
            Command::Run { job: Job::Topup(args) } => run_topup(&settings, &args).await,
            Command::Run { job: Job::Prune(args) } => commands::maintenance::run_prune(&settings, &args).await,
            Command::Backup(args) => commands::maintenance::run_backup(&settings, &args).await,
            Command::Schedule(args) => run_schedule(&settings, &args).await,
            Command::Config => Ok(run_config(&settings)),
            Command::Runs(args) => run_runs(&settings, &args).await,
            Command::Serve(args) => run_serve(&settings, &args).await,
            Command::Tokens { operation } => match operation {
                TokensOperation::Create(args) => run_token_create(&settings, &args).await,
                TokensOperation::List(args) => run_token_list(&settings, &args).await,
                TokensOperation::Revoke(args) => run_token_revoke(&settings, &args).await,
            },
            Command::Accounts {
                operation: AccountsOperation::ApiKey(args),
            } => run_api_key(&settings, &args).await,
            Command::Inventory { operation } => match operation {
                InventoryOperation::Import(args) => commands::inventory::run_import(&settings, &args).await,
                InventoryOperation::Follow(args) => commands::inventory::run_follow(&settings, &args).await,
                InventoryOperation::Rejected(args) => commands::inventory::run_rejected(&settings, &args).await,
            },
            Command::Deliveries(args) => commands::deliveries::run(&settings, &args).await,
            Command::Quote { .. } => unreachable!("quote runs before settings are loaded"),
        }
    });
    match outcome {
        Ok(code) => code,
        Err(Failure::Config(message)) => {
            eprintln!("tally: {message}");
            ExitCode::from(EXIT_CONFIG)
        }
        Err(Failure::Run(outcome)) => {
            eprintln!("tally: {}", outcome.message.as_deref().unwrap_or(outcome.end.as_str()));
            outcome.exit_code().into()
        }
        Err(Failure::Other(error)) => {
            eprintln!("tally: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn install_logs(default: &str) -> Result<(), tally::telemetry::TelemetryError> {
    use tally::telemetry::{filter_from_env, install, subscriber, LogFormat};
    install(subscriber(
        filter_from_env(default)?,
        LogFormat::for_stderr(),
        std::io::stderr,
    ))
}
