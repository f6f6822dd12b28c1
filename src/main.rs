//! The `tally` binary: parse arguments, load settings, run the command, map the
//! outcome to an exit code: 0 ok, 65 data errors (in some accounts, in a quote request,
//! or the input of a `services`/`plans` operation), 75 retry later, 77 not permitted,
//! 78 bad configuration, 2 usage, 1 anything else (`tally::exit`). A `tally run`'s code
//! is its run's status, decided by `tally::runs`.

/// Tells the operator something on standard error, at a tracing level
/// (`tell!(WARN, "account {id} skipped")`): `tally: …` on a terminal, a JSON line
/// otherwise (`tally::telemetry::operator_message`).
macro_rules! tell {
    ($level:ident, $($message:tt)+) => {
        tally::telemetry::operator_message(tracing::Level::$level, &format!($($message)+))
    };
}

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

/// glibc gives a thread that allocates under contention an arena of its own and keeps
/// what is freed there for later: with the runtime's workers and sqlx's thread per
/// SQLite connection, the first billing of 100,000 accounts peaked at 200 MiB, of which
/// two arenas keep 141 MiB (`benches/results/nightly.md`, Memory). Set before any
/// thread starts; an explicit `MALLOC_ARENA_MAX` in the environment wins.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn limit_malloc_arenas() {
    if std::env::var_os("MALLOC_ARENA_MAX").is_none() {
        // SAFETY: `mallopt` sets one allocator parameter; no other thread runs yet.
        unsafe {
            libc::mallopt(libc::M_ARENA_MAX, 2);
        }
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn limit_malloc_arenas() {}

fn main() -> ExitCode {
    limit_malloc_arenas();
    let cli = Cli::parse();
    exit_quietly_when_stdout_closes(cli.command.reads_only());
    // Quoting needs neither settings nor a database.
    if let Command::Quote { input } = &cli.command {
        return run_quote(input);
    }
    // An operation's output is its data and at most one error line: logs only for errors
    // unless RUST_LOG asks for more. Printing is ours alone: no logs either.
    let default_filter = match cli.command {
        Command::Services { .. } | Command::Plans { .. } => "error",
        Command::Completions { .. } | Command::Man(_) | Command::Config => "off",
        _ => "info",
    };
    if let Err(error) = tally::telemetry::install_for_stderr(default_filter) {
        tell_error(&error.to_string());
        return ExitCode::from(EXIT_CONFIG);
    }
    // Generated from the clap definitions alone: no settings needed.
    match &cli.command {
        Command::Completions { shell } => return commands::docs::print_completions(*shell),
        Command::Man(args) => return commands::docs::print_man(args),
        _ => {}
    }
    let settings = match Settings::load(cli.config.as_deref()) {
        Ok(settings) => settings,
        Err(error) => {
            tell_error(&error.to_string());
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(error) => {
            tell_error(&format!("cannot start the async runtime: {error}"));
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
            Command::Config => run_config(&settings),
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
            Command::Accounts {
                operation: AccountsOperation::List(args),
            } => commands::accounts::run_list(&settings, &args).await,
            Command::Accounts {
                operation: AccountsOperation::Get(args),
            } => commands::accounts::run_get(&settings, &args).await,
            Command::Accounts {
                operation: AccountsOperation::Tree(args),
            } => commands::accounts::run_tree(&settings, &args).await,
            Command::Accounts {
                operation: AccountsOperation::Find(args),
            } => commands::accounts::run_find(&settings, &args).await,
            Command::Quote { .. } | Command::Completions { .. } | Command::Man(_) => {
                unreachable!("quote, completions and man run before settings are loaded")
            }
        }
    });
    match outcome {
        Ok(code) => code,
        Err(Failure::Config(message)) => {
            tell_error(&message);
            ExitCode::from(EXIT_CONFIG)
        }
        Err(Failure::Run(outcome)) => {
            tell_error(outcome.message.as_deref().unwrap_or(outcome.end.as_str()));
            outcome.exit_code().into()
        }
        Err(Failure::Other(error)) => {
            tell_error(&error_text(&error));
            ExitCode::FAILURE
        }
    }
}

/// The error and its causes on one line, each cause once: most of our errors already
/// spell their source in their own message (`counting query x.sql failed: {source}`),
/// so anyhow's `{:#}` would repeat it.
fn error_text(error: &anyhow::Error) -> String {
    let mut text = error.to_string();
    for cause in error.chain().skip(1) {
        let cause = cause.to_string();
        if !text.contains(&cause) {
            text.push_str(": ");
            text.push_str(&cause);
        }
    }
    text
}

/// The error that ends the command: `tally: …` on a terminal, a JSON line otherwise.
pub(crate) fn tell_error(message: &str) {
    tally::telemetry::operator_message(tracing::Level::ERROR, message);
}

/// `tally runs | head -1` closes standard output early. `println!` then panics with
/// "failed printing to stdout: Broken pipe"; a reader that has all it wanted is no
/// failure, so a command that only reads ends quietly with 0. Any other command says
/// its output was cut and exits 1: its work may be done, but nobody read its report.
fn exit_quietly_when_stdout_closes(reads_only: bool) {
    let default_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let payload = info
            .payload()
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| info.payload().downcast_ref::<&str>().copied())
            .unwrap_or_default();
        if is_closed_stdout(payload) {
            if reads_only {
                std::process::exit(0);
            }
            tell_error("standard output was closed before the output was written (`tally runs` shows a run's outcome)");
            std::process::exit(1);
        }
        default_hook(info);
    }));
}

/// The standard library's panic message for a write to a closed pipe on stdout.
fn is_closed_stdout(panic_message: &str) -> bool {
    panic_message.starts_with("failed printing to stdout") && panic_message.contains("Broken pipe")
}
