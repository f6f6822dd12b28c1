//! The `tally` binary: parse arguments, load settings, run the command, map the
//! outcome to an exit code: 0 ok, 65 data errors (in some accounts, or in a quote
//! request), 78 bad configuration, 2 usage, 1 anything else.

use clap::Parser;
use std::io::{Read, Write};
use std::path::Path;
use std::process::ExitCode;
use tally::bookkeepers::Bookkeepers;
use tally::cli::{
    BookkeeperSyncArgs, Cli, Command, DemoArgs, Job, ReconcileArgs, ServicesOperation, StatusArgs, SyncArgs,
};
use tally::config::Settings;
use tally::demo::{generate, DemoSpec};
use tally::domain::changes::FirstCommit;
use tally::domain::merge::StrategyPriorities;
use tally::domain::summary::GregorianSeconds;
use tally::domain::AccountId;
use tally::jobs::reconcile::{run_once, ReconcileOptions, ReconcileReport};
use tally::jobs::{bookkeeper_sync, sync};
use tally::quote::{parse_request, price, render, QuoteError};
use tally::store::{CountingQueries, ReconcileScope, Store, StoreError};
use tally::store::{Standing, SyncScope};

/// sysexits(3): the input data was incorrect (some accounts were skipped).
const EXIT_DATA_ERROR: u8 = 65;
/// sysexits(3): configuration error.
const EXIT_CONFIG: u8 = 78;
/// Usage errors, as clap reports them.
const EXIT_USAGE: u8 = 2;
/// sysexits(3): temporary failure, work left to retry.
const EXIT_TEMPORARY: u8 = 75;

/// How a command ended, before it becomes an exit code.
enum Failure {
    Config(String),
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
            Command::Services {
                operation: ServicesOperation::Status(args),
            } => run_status(&settings, &args).await,
            Command::Quote { .. } => unreachable!("quote runs before settings are loaded"),
        }
    });
    match outcome {
        Ok(code) => code,
        Err(Failure::Config(message)) => {
            eprintln!("tally: {message}");
            ExitCode::from(EXIT_CONFIG)
        }
        Err(Failure::Other(error)) => {
            eprintln!("tally: {error:#}");
            ExitCode::FAILURE
        }
    }
}

async fn open_store(settings: &Settings) -> Result<Store, Failure> {
    match Store::open(&settings.database.url).await {
        Ok(store) => Ok(store),
        Err(error @ StoreError::UnsupportedUrl { .. }) => Err(Failure::Config(error.to_string())),
        Err(error) => Err(Failure::Other(error.into())),
    }
}

async fn run_migrate(settings: &Settings) -> Result<ExitCode, Failure> {
    let store = match Store::connect(&settings.database.url).await {
        Ok(store) => store,
        Err(error @ StoreError::UnsupportedUrl { .. }) => return Err(Failure::Config(error.to_string())),
        Err(error) => return Err(Failure::Other(error.into())),
    };
    let applied = store.migrate().await.map_err(anyhow::Error::from)?;
    println!("migrated {}: {applied} migration(s) applied", settings.database.url);
    store.close().await;
    Ok(ExitCode::SUCCESS)
}

async fn run_reconcile(settings: &Settings, args: &ReconcileArgs) -> Result<ExitCode, Failure> {
    let counting = match &settings.reconcile.counting_dir {
        Some(directory) => CountingQueries::from_dir(directory).map_err(|error| Failure::Config(error.to_string()))?,
        None => CountingQueries::builtin(),
    };
    let scope = if args.accounts.is_empty() {
        ReconcileScope::All
    } else {
        let accounts = args
            .accounts
            .iter()
            .map(|text| AccountId::parse(text.as_str()))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|error| Failure::Other(anyhow::anyhow!("--account: {error}")))?;
        ReconcileScope::Accounts(accounts)
    };
    let store = open_store(settings).await?;
    let options = ReconcileOptions {
        scope,
        dry_run: args.dry_run,
        now: GregorianSeconds::from_utc(chrono::Utc::now()),
        batch_size: u64::try_from(settings.reconcile.batch_size).unwrap_or(u64::MAX),
    };
    let report = run_once(&store, &counting, &options)
        .await
        .map_err(anyhow::Error::from)?;
    store.close().await;
    print_reconcile(&report, args.json);
    Ok(if report.is_partial() {
        ExitCode::from(EXIT_DATA_ERROR)
    } else {
        ExitCode::SUCCESS
    })
}

fn print_reconcile(report: &ReconcileReport, json: bool) {
    for skip in &report.skipped {
        eprintln!("tally: account {} skipped: {}", skip.account, skip.reason);
    }
    for staged in &report.changes {
        let change = &staged.change;
        println!(
            "{} {} {}.{} {} -> {} ({:+})",
            staged.account,
            change.bucket,
            change.category,
            change.item,
            change.old,
            change.new,
            change.difference()
        );
    }
    let duration_ms = u64::try_from(report.duration.as_millis()).unwrap_or(u64::MAX);
    if json {
        let summary = serde_json::json!({
            "accounts_scanned": report.accounts_scanned,
            "accounts_changed": report.accounts_changed,
            "items_changed": report.items_changed,
            "duration_ms": duration_ms,
            "dry_run": report.dry_run,
            "accounts_skipped": report.skipped.len(),
        });
        println!("{summary}");
    } else {
        println!(
            "reconcile{}: {} accounts scanned, {} accounts changed, {} items changed, {} skipped, {} ms",
            if report.dry_run {
                " (dry run, nothing written)"
            } else {
                ""
            },
            report.accounts_scanned,
            report.accounts_changed,
            report.items_changed,
            report.skipped.len(),
            duration_ms
        );
    }
}

async fn run_demo(settings: &Settings, args: &DemoArgs) -> Result<ExitCode, Failure> {
    let store = open_store(settings).await?;
    let spec = DemoSpec {
        accounts: args.accounts,
        seed: args.seed,
    };
    let started = std::time::Instant::now();
    let data = generate(spec);
    let report = store.seed_demo(spec, &data).await.map_err(anyhow::Error::from)?;
    store.close().await;
    println!(
        "demo: {} accounts ({} resellers), {} plans, {} objects in {} ms",
        report.accounts,
        report.resellers,
        report.plans,
        report.objects,
        started.elapsed().as_millis()
    );
    Ok(ExitCode::SUCCESS)
}

fn run_quote(input: &Path) -> ExitCode {
    let text = match read_input(input) {
        Ok(text) => text,
        Err(error) => {
            eprintln!("tally quote: cannot read {}: {error}", input_name(input));
            return ExitCode::from(EXIT_USAGE);
        }
    };
    let quote = parse_request(&text).and_then(|request| price(&request, &StrategyPriorities::default()));
    match quote {
        Ok(quote) => {
            let mut stdout = std::io::stdout().lock();
            let written = serde_json::to_writer_pretty(&mut stdout, &render(&quote))
                .map_err(std::io::Error::from)
                .and_then(|()| writeln!(stdout));
            match written {
                Ok(()) => ExitCode::SUCCESS,
                Err(error) => {
                    eprintln!("tally quote: cannot write the response: {error}");
                    ExitCode::FAILURE
                }
            }
        }
        Err(error @ (QuoteError::Syntax { .. } | QuoteError::Invalid(_) | QuoteError::Pricing(_))) => {
            eprintln!("{}: {error}", input_name(input));
            ExitCode::from(EXIT_DATA_ERROR)
        }
    }
}

/// How error messages name the input: its path, or `<stdin>` for `-`.
fn input_name(input: &Path) -> String {
    if input == Path::new("-") {
        return "<stdin>".to_owned();
    }
    input.display().to_string()
}

fn read_input(input: &Path) -> std::io::Result<String> {
    if input == Path::new("-") {
        let mut text = String::new();
        std::io::stdin().read_to_string(&mut text)?;
        return Ok(text);
    }
    std::fs::read_to_string(input)
}

fn parse_accounts(texts: &[String]) -> Result<Vec<AccountId>, Failure> {
    texts
        .iter()
        .map(|text| AccountId::parse(text.as_str()))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|error| Failure::Other(anyhow::anyhow!("--account: {error}")))
}

/// A run id: the start time and the process, unique enough to tell runs apart.
fn run_id(job: &str) -> String {
    format!(
        "{job}-{}-{}",
        chrono::Utc::now().format("%Y%m%dT%H%M%S%.3fZ"),
        std::process::id()
    )
}

async fn run_sync(settings: &Settings, args: &SyncArgs) -> Result<ExitCode, Failure> {
    let scope = if args.all {
        SyncScope::All
    } else if args.accounts.is_empty() {
        SyncScope::Marked
    } else {
        SyncScope::Accounts(parse_accounts(&args.accounts)?)
    };
    let store = open_store(settings).await?;
    let options = sync::SyncOptions {
        scope,
        dry_run: args.dry_run,
        first_commit: if args.charge_activations {
            FirstCommit::ChargeActivations
        } else {
            FirstCommit::Baseline
        },
        now: GregorianSeconds::from_utc(chrono::Utc::now()),
        batch_size: settings.sync.batch_size,
        run_id: run_id("sync"),
        master_account_bookkeeper: settings.services.master_account_bookkeeper.clone(),
        show_master_audit_logs: settings.services.should_save_master_audit_logs,
        priorities: settings.services.merge_strategy_priority.priorities(),
    };
    let report = sync::run_once(&store, &options).await.map_err(anyhow::Error::from)?;
    store.close().await;
    for skip in &report.skipped {
        eprintln!("tally: account {} skipped: {}", skip.account, skip.reason);
    }
    for plan in &report.unresolved_plans {
        eprintln!(
            "tally: account {}: plan {} not found at vendor {}; ignored",
            plan.account, plan.plan, plan.vendor
        );
    }
    for (account, invoice) in &report.changes {
        let rendered = serde_json::to_string(&tally::wire::invoice::InvoiceJson::from(invoice))
            .map_err(|error| Failure::Other(error.into()))?;
        println!("{account} {rendered}");
    }
    let duration_ms = u64::try_from(report.duration.as_millis()).unwrap_or(u64::MAX);
    if args.json {
        let summary = serde_json::json!({
            "accounts_scanned": report.accounts_scanned,
            "accounts_changed": report.accounts_changed,
            "invoices_changed": report.invoices_changed,
            "accounts_skipped": report.skipped.len(),
            "plan_sets": report.plan_sets,
            "dry_run": report.dry_run,
            "duration_ms": duration_ms,
        });
        println!("{summary}");
    } else {
        println!(
            "sync{}: {} accounts scanned, {} accounts changed, {} invoices changed, {} skipped, {} ms",
            if report.dry_run {
                " (dry run, nothing written)"
            } else {
                ""
            },
            report.accounts_scanned,
            report.accounts_changed,
            report.invoices_changed,
            report.skipped.len(),
            duration_ms
        );
    }
    Ok(if report.is_partial() {
        ExitCode::from(EXIT_DATA_ERROR)
    } else {
        ExitCode::SUCCESS
    })
}

async fn run_bookkeeper_sync(settings: &Settings, args: &BookkeeperSyncArgs) -> Result<ExitCode, Failure> {
    let retry = settings
        .bookkeeper_sync
        .retry_policy()
        .map_err(|error| Failure::Config(error.to_string()))?;
    let bookkeepers =
        Bookkeepers::from_settings(&settings.bookkeepers.http).map_err(|error| Failure::Config(error.to_string()))?;
    let store = open_store(settings).await?;
    let options = bookkeeper_sync::BookkeeperSyncOptions {
        now: GregorianSeconds::from_utc(chrono::Utc::now()),
        batch_size: settings.bookkeeper_sync.batch_size,
        parallelism: settings.bookkeeper_sync.parallelism,
        lease: std::time::Duration::from_secs(settings.bookkeeper_sync.lease_seconds),
        retry,
    };
    let report = bookkeeper_sync::run_once(&store, &bookkeepers, &options)
        .await
        .map_err(anyhow::Error::from)?;
    store.close().await;
    for failure in &report.failed {
        eprintln!(
            "tally: account {} bookkeeper {}: not delivered after {} attempt(s){}: {}",
            failure.account,
            failure.bookkeeper,
            failure.attempts,
            if failure.needs_attention {
                " (needs attention, no retry left)"
            } else {
                ""
            },
            failure.error
        );
    }
    let duration_ms = u64::try_from(report.duration.as_millis()).unwrap_or(u64::MAX);
    if args.json {
        let summary = serde_json::json!({
            "deliveries": report.deliveries,
            "acknowledged": report.acknowledged,
            "refused": report.refused,
            "failed": report.failed.len(),
            "needs_attention": report.failed.iter().filter(|failure| failure.needs_attention).count(),
            "duration_ms": duration_ms,
        });
        println!("{summary}");
    } else {
        println!(
            "bookkeeper-sync: {} deliveries, {} acknowledged, {} refused, {} failed, {} ms",
            report.deliveries,
            report.acknowledged,
            report.refused,
            report.failed.len(),
            duration_ms
        );
    }
    Ok(if report.has_failures() {
        ExitCode::from(EXIT_TEMPORARY)
    } else {
        ExitCode::SUCCESS
    })
}

async fn run_status(settings: &Settings, args: &StatusArgs) -> Result<ExitCode, Failure> {
    let account =
        AccountId::parse(args.account.as_str()).map_err(|error| Failure::Other(anyhow::anyhow!("{error}")))?;
    let store = open_store(settings).await?;
    if args.good || args.bad {
        let standing = Standing {
            status: if args.good { "good_standing" } else { "delinquent" }.to_owned(),
            reason: if args.good { None } else { args.reason.clone() },
            reason_code: if args.good { None } else { args.reason_code.clone() },
        };
        if !store
            .set_standing(&account, &standing)
            .await
            .map_err(anyhow::Error::from)?
        {
            eprintln!("tally: unknown account {account}");
            return Ok(ExitCode::from(EXIT_DATA_ERROR));
        }
    }
    let Some(standing) = store.standing(&account).await.map_err(anyhow::Error::from)? else {
        eprintln!("tally: unknown account {account}");
        return Ok(ExitCode::from(EXIT_DATA_ERROR));
    };
    store.close().await;
    let shown = serde_json::json!({
        "account_id": account.as_str(),
        "in_good_standing": standing.in_good_standing(),
        "status": standing.status,
        "reason": standing.reason,
        "reason_code": standing.reason_code,
    });
    println!("{shown}");
    Ok(ExitCode::SUCCESS)
}
