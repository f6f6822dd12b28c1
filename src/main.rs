//! The `tally` binary: parse arguments, load settings, run the command, map the
//! outcome to an exit code: 0 ok, 65 data errors in some accounts, 78 bad
//! configuration, 1 anything else.

use clap::Parser;
use std::process::ExitCode;
use tally::cli::{Cli, Command, DemoArgs, Job, ReconcileArgs};
use tally::config::Settings;
use tally::demo::{generate, DemoSpec};
use tally::domain::summary::GregorianSeconds;
use tally::domain::AccountId;
use tally::jobs::reconcile::{run_once, ReconcileOptions, ReconcileReport};
use tally::store::{CountingQueries, ReconcileScope, Store, StoreError};

/// sysexits(3): the input data was incorrect (some accounts were skipped).
const EXIT_DATA_ERROR: u8 = 65;
/// sysexits(3): configuration error.
const EXIT_CONFIG: u8 = 78;

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
        Err(error @ StoreError::UnsupportedUrl { .. }) => {
            return Err(Failure::Config(error.to_string()))
        }
        Err(error) => return Err(Failure::Other(error.into())),
    };
    let applied = store.migrate().await.map_err(anyhow::Error::from)?;
    println!(
        "migrated {}: {applied} migration(s) applied",
        settings.database.url
    );
    store.close().await;
    Ok(ExitCode::SUCCESS)
}

async fn run_reconcile(settings: &Settings, args: &ReconcileArgs) -> Result<ExitCode, Failure> {
    let counting = match &settings.reconcile.counting_dir {
        Some(directory) => CountingQueries::from_dir(directory)
            .map_err(|error| Failure::Config(error.to_string()))?,
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
    if !json {
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
    }
    let duration_ms = u64::try_from(report.duration.as_millis()).unwrap_or(u64::MAX);
    if json {
        let mut summary = serde_json::json!({
            "accounts_scanned": report.accounts_scanned,
            "accounts_changed": report.accounts_changed,
            "items_changed": report.items_changed,
            "duration_ms": duration_ms,
            "dry_run": report.dry_run,
            "accounts_skipped": report.skipped.len(),
        });
        if report.dry_run {
            // A dry run's changes travel inside the one JSON object, never as loose lines.
            let changes: Vec<serde_json::Value> = report
                .changes
                .iter()
                .map(|staged| {
                    serde_json::json!({
                        "account_id": staged.account.as_str(),
                        "bucket": staged.change.bucket.as_str(),
                        "category": staged.change.category.as_str(),
                        "item": staged.change.item.as_str(),
                        "old": staged.change.old,
                        "new": staged.change.new,
                        "difference": staged.change.difference(),
                    })
                })
                .collect();
            summary["changes"] = serde_json::Value::Array(changes);
        }
        println!("{summary}");
    } else {
        println!(
            "reconcile{}: {} accounts scanned, {} accounts changed, {} items changed, {} skipped, {} ms",
            if report.dry_run { " (dry run, nothing written)" } else { "" },
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
    let report = store
        .seed_demo(spec, &data)
        .await
        .map_err(anyhow::Error::from)?;
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
