//! `tally inventory import|follow|rejected`: the command-line faces of ingestion.

use super::{job_context, recorded_run, report_json, stop_on_signals};
use crate::{Failure, EXIT_DATA_ERROR};
use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;
use tally::cli::{InventoryFollowArgs, InventoryImportArgs, InventoryRejectedArgs};
use tally::config::Settings;
use tally::domain::summary::GregorianSeconds;
use tally::ingest::sources::{read_path, read_stdin};
use tally::ingest::{IngestReport, SourceApplyError};
use tally::jobs::reconcile::ReconcileReport;
use tally::runs::{JobKind, JobReport, RunEnd, RunFigures, RunOutcome};

fn now() -> GregorianSeconds {
    GregorianSeconds::from_utc(chrono::Utc::now())
}

/// Prints a report: JSON (with the run's status), or a summary line and each
/// rejection on standard error.
fn print_report(report: &IngestReport, reconcile: Option<&ReconcileReport>, outcome: &RunOutcome, json: bool) {
    if json {
        let mut value = report_json(outcome, report.to_json(), &[]);
        if let Some(reconcile) = reconcile {
            value["reconcile"] = serde_json::json!({
                "accounts_scanned": reconcile.accounts_scanned,
                "accounts_changed": reconcile.accounts_changed,
                "items_changed": reconcile.items_changed,
            });
        }
        println!("{value}");
    } else {
        println!("{}", report.summary());
        if let Some(reconcile) = reconcile {
            println!(
                "recounted {} accounts: {} changed, {} items",
                reconcile.accounts_scanned, reconcile.accounts_changed, reconcile.items_changed
            );
        }
    }
    for rejection in &report.rejections {
        tell!(WARN, "rejected {rejection}");
    }
    let unnamed = report.rejected.saturating_sub(report.rejections.len() as u64);
    if unnamed > 0 {
        tell!(
            WARN,
            "… and {unnamed} more rejected (tally inventory rejected lists them all)"
        );
    }
}

fn exit_of(report: &IngestReport) -> ExitCode {
    match report.is_partial() {
        true => ExitCode::from(EXIT_DATA_ERROR),
        false => ExitCode::SUCCESS,
    }
}

pub(crate) async fn run_import(settings: &Settings, args: &InventoryImportArgs) -> Result<ExitCode, Failure> {
    let context = job_context(settings).await?;
    let batch_size = settings.ingest.batch_size;
    let mut receiver = if args.path == Path::new("-") {
        read_stdin(args.database.as_deref(), batch_size)
    } else {
        read_path(&args.path, args.database.as_deref(), batch_size)
    };
    let now = now();
    let mut run = context.ingestor().start(now).await.map_err(anyhow::Error::from)?;
    run.apply_source(&mut receiver).await.map_err(|error| match error {
        SourceApplyError::Source(error) => Failure::Other(anyhow::Error::from(error)),
        SourceApplyError::Ingest(error) => Failure::from(anyhow::Error::from(error)),
    })?;
    let report = run.finish().await.map_err(anyhow::Error::from)?;
    let reconcile = match args.reconcile {
        true => Some(context.reconcile_changed(now).await.map_err(anyhow::Error::from)?),
        false => None,
    };
    // An import is not a recorded run, but its status reads as one: rejected documents
    // or skipped accounts are data errors.
    let data_errors = report.is_partial() || reconcile.as_ref().is_some_and(ReconcileReport::is_partial);
    let end = match data_errors {
        true => RunEnd::DataErrors,
        false => RunEnd::Succeeded,
    };
    let outcome = RunOutcome::reported(end, RunFigures::default(), None);
    print_report(&report, reconcile.as_ref(), &outcome, args.json);
    Ok(exit_of(&report))
}

pub(crate) async fn run_follow(settings: &Settings, args: &InventoryFollowArgs) -> Result<ExitCode, Failure> {
    let context = job_context(settings).await?;
    // Not configured, or a URL that cannot make a client: both are the settings' fault.
    let client = context
        .couch_client()
        .map_err(|error| Failure::Config(error.to_string()))?;
    let stop = stop_on_signals();
    let poll = Duration::from_secs(settings.ingest.couchdb.poll_seconds.max(1));
    loop {
        let work = {
            let (context, client, reconcile) = (context.clone(), client.clone(), args.reconcile);
            move |_stop| async move { context.ingest_cycle(&client, reconcile, now()).await }
        };
        let recorded = recorded_run(settings, &context.store, JobKind::Ingest, None, &stop, work).await?;
        let exit = recorded.exit_code();
        let Some(result) = recorded.result else {
            return Err(Failure::Run(recorded.outcome));
        };
        match result {
            Ok(cycle) => {
                if args.once || cycle.ingest.documents > 0 || args.json {
                    let outcome = cycle.outcome();
                    print_report(&cycle.ingest, cycle.reconcile.as_ref(), &outcome, args.json);
                }
                if args.once {
                    return Ok(exit);
                }
            }
            Err(error) if error.is_temporary() => {
                if args.once {
                    tell!(ERROR, "{error}; the checkpoints are kept, run again later");
                    return Ok(exit);
                }
                tracing::warn!(%error, "CouchDB unreachable; retrying at the next poll");
            }
            Err(error) => return Err(Failure::Other(anyhow::Error::from(error))),
        }
        tokio::select! {
            () = stop.cancelled() => return Ok(ExitCode::SUCCESS),
            () = tokio::time::sleep(poll) => {}
        }
    }
}

pub(crate) async fn run_rejected(settings: &Settings, args: &InventoryRejectedArgs) -> Result<ExitCode, Failure> {
    let context = job_context(settings).await?;
    let kept = context
        .store
        .rejections(args.limit)
        .await
        .map_err(anyhow::Error::from)?;
    for document in &kept {
        if args.json {
            println!(
                "{}",
                serde_json::json!({
                    "database": document.database,
                    "id": document.id,
                    "problem": document.problem,
                    "waiting_for": document.waiting_for.as_ref().map(|account| account.as_str()),
                })
            );
        } else {
            println!("{} {}\t{}", document.database, document.id, document.problem);
        }
    }
    Ok(ExitCode::SUCCESS)
}
