//! `tally backup PATH` and `tally run prune`: keeping the database safe and small.

use super::{job_context, open_store, print_warnings, recorded_run, report_json, stop_on_signals, store_failure};
use crate::{Failure, EXIT_CONFIG, EXIT_USAGE};
use std::process::ExitCode;
use tally::backup::{backup, BackupError, BackupReport};
use tally::cli::{BackupArgs, PruneArgs};
use tally::config::Settings;
use tally::domain::summary::GregorianSeconds;
use tally::jobs::prune::{self, PruneReport};
use tally::jobs::retry::{retry_faults, FaultRetry};
use tally::runs::{JobKind, JobReport, RunOutcome};
use tokio_util::sync::CancellationToken;

pub(crate) async fn run_prune(settings: &Settings, args: &PruneArgs) -> Result<ExitCode, Failure> {
    let context = job_context(settings).await?;
    let now = GregorianSeconds::from_utc(chrono::Utc::now());
    if args.dry_run {
        // Counting changes nothing: no run is recorded, as for `reconcile --dry-run`.
        let options = context.prune_options(true, now, CancellationToken::new());
        let report = prune::run_once(&context.store, &options).await;
        context.store.close().await;
        let report = report.map_err(anyhow::Error::from)?;
        let outcome = report.outcome();
        print_prune(&report, &outcome, args.json, &[]);
        return Ok(outcome.exit_code().into());
    }
    let retry = FaultRetry::for_runs(&settings.database);
    let work = {
        let context = context.clone();
        move |stop: CancellationToken| async move {
            retry_faults(retry, "prune", &stop, || context.prune(now, stop.clone())).await
        }
    };
    let recorded = recorded_run(
        settings,
        &context.store,
        JobKind::Prune,
        args.metrics_file.as_deref(),
        &stop_on_signals(),
        work,
    )
    .await;
    context.store.close().await;
    let recorded = recorded?;
    let report = recorded.report()?;
    print_prune(report, &recorded.outcome, args.json, &recorded.warnings);
    Ok(recorded.exit_code())
}

fn print_prune(report: &PruneReport, outcome: &RunOutcome, json: bool, warnings: &[String]) {
    if json {
        println!("{}", report_json(outcome, report.to_json(), warnings));
    } else {
        print!("{}", report.to_text());
        print_warnings(warnings);
    }
}

pub(crate) async fn run_backup(settings: &Settings, args: &BackupArgs) -> Result<ExitCode, Failure> {
    let store = open_store(settings).await?;
    let done = backup(&store, &args.path, args.force).await;
    store.close().await;
    let report = match done {
        Ok(report) => report,
        Err(error @ (BackupError::Exists(_) | BackupError::LiveDatabase(_))) => {
            // As main prints every other refusal: one line, then the exit code.
            eprintln!("tally: {error}");
            return Ok(ExitCode::from(EXIT_USAGE));
        }
        Err(BackupError::Store(error)) => return Err(store_failure(error)),
        Err(error @ (BackupError::Corrupt { .. } | BackupError::Io { .. })) => {
            return Err(Failure::Other(error.into()))
        }
    };
    match report {
        BackupReport::Copied { path, bytes, duration } => {
            let duration_ms = u64::try_from(duration.as_millis()).unwrap_or(u64::MAX);
            if args.json {
                let report = serde_json::json!({
                    "status": "succeeded",
                    "backend": "sqlite",
                    "copied": true,
                    "path": path.display().to_string(),
                    "bytes": bytes,
                    "duration_ms": duration_ms,
                    "integrity_check": "ok",
                });
                println!("{report}");
            } else {
                println!(
                    "backup: copied the database to {} ({bytes} bytes in {duration_ms} ms, integrity check ok)",
                    path.display()
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        BackupReport::PgDump(advice) => {
            let warnings: Vec<String> = advice.problem().into_iter().collect();
            if args.json {
                let mut report = serde_json::json!({
                    "status": if warnings.is_empty() { "succeeded" } else { "failed" },
                    "backend": "postgres",
                    "copied": false,
                    "command": advice.command,
                    "server_major_version": advice.server_major,
                    "pg_dump_major_version": advice.pg_dump_major,
                });
                if !warnings.is_empty() {
                    report["warnings"] = serde_json::json!(warnings);
                }
                println!("{report}");
            } else {
                println!(
                    "backup: tally does not copy a PostgreSQL database; nothing was copied. \
                     Back it up with pg_dump (the password comes from ~/.pgpass or PGPASSWORD):"
                );
                println!("{}", advice.command);
                print_warnings(&warnings);
            }
            match warnings.is_empty() {
                true => Ok(ExitCode::SUCCESS),
                false => Ok(ExitCode::from(EXIT_CONFIG)),
            }
        }
    }
}
