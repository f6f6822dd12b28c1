//! The commands of the `tally` binary: each runs one command and returns its exit
//! code; output for people goes to standard output, problems to standard error.

pub(crate) mod accounts;
pub(crate) mod deliveries;
pub(crate) mod docs;
pub(crate) mod inventory;
pub(crate) mod maintenance;

use crate::{Failure, EXIT_DATA_ERROR, EXIT_USAGE};
use std::io::{IsTerminal, Read, Write};
use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;
use tally::bookkeepers::demo::DemoBookkeeper;
use tally::cli::{
    BillingArgs, BookkeeperSyncArgs, DemoArgs, OpsOutputArgs, PlansOperation, ReconcileArgs, RunsArgs, ScheduleArgs,
    ServicesOperation, SyncArgs, TopupArgs,
};
use tally::config::Settings;
use tally::demo::documents::{documents, write_ndjson};
use tally::demo::{generate, DemoSpec};
use tally::domain::changes::FirstCommit;
use tally::domain::merge::StrategyPriorities;
use tally::domain::summary::GregorianSeconds;
use tally::domain::AccountId;
use tally::jobs::billing_preview::{DeliveryPreview, InvoicePreview, PreviewSink};
use tally::jobs::context::JobContext;
use tally::jobs::context::RunScope;
use tally::jobs::demo::DemoReport;
use tally::jobs::reconcile::{run_once, ReconcileOptions, ReconcileReport};
use tally::jobs::retry::{retry_faults, FaultRetry};
use tally::jobs::{bookkeeper_sync, sync};
use tally::metrics::{write_metrics_file, RunMetrics};
use tally::ops::{Caller, Operations};
use tally::ops_cli::{self, choose_format, operator_name};
use tally::quote::{parse_request, price, render, QuoteError};
use tally::runs::{
    cancel_on_termination_signals, JobError, JobKind, JobName, JobReport, RunEnd, RunOutcome, RunSettings, Runs,
    SystemClock,
};
use tally::scheduler::daemon::DaemonSettings;
use tally::scheduler::job_file::load_jobs_dir;
use tally::scheduler::sd_notify::{watchdog_interval, Notifier};
use tally::scheduler::service::serve;
use tally::store::Backend;
use tally::store::{ConnectOptions, CountingQueries, ReconcileScope, Store, StoreError, SyncScope};
use tokio_util::sync::CancellationToken;

/// Opens the configured database, which must exist (exit 78 otherwise), and brings
/// its schema up to date.
pub(crate) async fn open_store(settings: &Settings) -> Result<Store, Failure> {
    open_store_with(settings, &settings.database.connect_options()).await
}

async fn open_store_with(settings: &Settings, options: &ConnectOptions) -> Result<Store, Failure> {
    Store::open_with(&settings.database.url, options)
        .await
        .map_err(store_failure)
}

/// A store error before any run: a bad URL or a database that does not exist is
/// configuration (exit 78); otherwise it ends the command as it would end a run: an
/// unreachable or faulty database is a temporary failure (exit 75, one line).
pub(crate) fn store_failure(error: StoreError) -> Failure {
    match error {
        error @ (StoreError::UnsupportedUrl { .. } | StoreError::Missing { .. }) => Failure::Config(error.to_string()),
        error => Failure::Run(RunOutcome::failed(&error)),
    }
}

pub(crate) async fn run_migrate(settings: &Settings) -> Result<ExitCode, Failure> {
    let store = Store::connect_with(&settings.database.url, &settings.database.creating_options())
        .await
        .map_err(store_failure)?;
    let applied = store.migrate().await.map_err(store_failure)?;
    println!("migrated {}: {applied} migration(s) applied", settings.database.url);
    store.close().await;
    Ok(ExitCode::SUCCESS)
}

pub(crate) async fn run_reconcile(settings: &Settings, args: &ReconcileArgs) -> Result<ExitCode, Failure> {
    let counting = match &settings.reconcile.counting_dir {
        Some(directory) => CountingQueries::from_dir(directory).map_err(|error| Failure::Config(error.to_string()))?,
        None => CountingQueries::builtin(),
    };
    let scope = if args.changed {
        ReconcileScope::Marked
    } else if args.accounts.is_empty() {
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
        classifiers: Some(
            settings
                .ingest
                .classifiers()
                .map_err(|error| Failure::Config(format!("ingest.number_classifiers: {error}")))?,
        ),
    };
    if options.dry_run {
        let report = run_once(&store, &counting, &options).await;
        store.close().await;
        let report = report.map_err(anyhow::Error::from)?;
        print_reconcile(&report, &report.outcome(), args.json, &[]);
        return Ok(report.outcome().exit_code().into());
    }
    let retry = FaultRetry::for_runs(&settings.database);
    let work = {
        let store = store.clone();
        move |stop| async move { retry_faults(retry, "reconcile", &stop, || run_once(&store, &counting, &options)).await }
    };
    let recorded = recorded_run(
        settings,
        &store,
        JobKind::Reconcile,
        args.metrics_file.as_deref(),
        &stop_on_signals(),
        work,
    )
    .await;
    store.close().await;
    let recorded = recorded?;
    print_reconcile(recorded.report()?, &recorded.outcome, args.json, &recorded.warnings);
    Ok(recorded.exit_code())
}

pub(crate) fn print_reconcile(report: &ReconcileReport, outcome: &RunOutcome, json: bool, warnings: &[String]) {
    for skip in &report.skipped {
        tell!(WARN, "account {} skipped: {}", skip.account, skip.reason);
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
            "skipped": report.skipped_json(),
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
        println!("{}", report_json(outcome, summary, warnings));
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
        print_warnings(warnings);
    }
}

pub(crate) async fn run_demo(settings: &Settings, args: &DemoArgs) -> Result<ExitCode, Failure> {
    let spec = DemoSpec {
        accounts: args.accounts,
        seed: args.seed,
    };
    if let Some(path) = &args.documents {
        return write_demo_documents(spec, path);
    }
    let context = job_context_with(settings, &settings.database.creating_options()).await?;
    let report = load_demo(&context, spec).await?;
    context.store.close().await;
    println!(
        "demo: {} accounts ({} resellers), {} plans, {} objects from {} documents in {} ms ({:.0} documents/s)",
        report.accounts,
        report.resellers,
        report.plans,
        report.objects,
        report.documents,
        report.duration.as_millis(),
        report.documents_per_second()
    );
    Ok(ExitCode::SUCCESS)
}

/// Loads the demo through the ingestion core; a rejected document is a bug in the
/// demo's documents, reported as such.
async fn load_demo(context: &JobContext, spec: DemoSpec) -> Result<DemoReport, Failure> {
    let now = GregorianSeconds::from_utc(chrono::Utc::now());
    let report = tally::jobs::demo::load(
        &context.store,
        context.classifiers.clone(),
        spec,
        now,
        context.settings.ingest.batch_size,
    )
    .await
    .map_err(anyhow::Error::from)?;
    if report.ingest.is_partial() {
        for rejection in &report.ingest.rejections {
            tell!(WARN, "{rejection}");
        }
        return Err(Failure::Other(anyhow::anyhow!(
            "the demo's documents were not all accepted: {}",
            report.ingest.summary()
        )));
    }
    Ok(report)
}

/// `tally demo --documents PATH`: the demo's documents as NDJSON, nothing loaded.
fn write_demo_documents(spec: DemoSpec, path: &Path) -> Result<ExitCode, Failure> {
    let started = std::time::Instant::now();
    let data = generate(spec);
    let written = if path == Path::new("-") {
        let mut out = std::io::BufWriter::new(std::io::stdout().lock());
        let written = write_ndjson(&mut out, documents(spec, &data));
        written.and_then(|written| out.flush().map(|()| written))
    } else {
        let file = std::fs::File::create(path)
            .map_err(|error| anyhow::anyhow!("cannot create {}: {error}", path.display()))?;
        let mut out = std::io::BufWriter::with_capacity(1 << 20, file);
        let written = write_ndjson(&mut out, documents(spec, &data));
        written.and_then(|written| out.flush().map(|()| written))
    }
    .map_err(|error| anyhow::anyhow!("cannot write {}: {error}", path.display()))?;
    let seconds = started.elapsed().as_secs_f64();
    tell!(
        INFO,
        "demo: {written} documents of {} accounts written to {} in {seconds:.1} s",
        data.accounts.len(),
        path.display()
    );
    Ok(ExitCode::SUCCESS)
}

pub(crate) fn run_quote(input: &Path) -> ExitCode {
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
pub(crate) fn input_name(input: &Path) -> String {
    if input == Path::new("-") {
        return "<stdin>".to_owned();
    }
    input.display().to_string()
}

pub(crate) fn read_input(input: &Path) -> std::io::Result<String> {
    if input == Path::new("-") {
        let mut text = String::new();
        std::io::stdin().read_to_string(&mut text)?;
        return Ok(text);
    }
    std::fs::read_to_string(input)
}

pub(crate) fn parse_accounts(texts: &[String]) -> Result<Vec<AccountId>, Failure> {
    texts
        .iter()
        .map(|text| AccountId::parse(text.as_str()))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|error| Failure::Other(anyhow::anyhow!("--account: {error}")))
}

/// A one-shot run of `tally run JOB` that ended: its recorded outcome, what the job
/// returned (unless it panicked or was dropped after the grace period), and the
/// warnings its report carries.
pub(crate) struct Recorded<T> {
    pub outcome: RunOutcome,
    pub result: Option<T>,
    pub warnings: Vec<String>,
}

impl<R, E> Recorded<Result<R, E>> {
    /// The job's report; otherwise the run's outcome, whose message says what went
    /// wrong and whose status gives the exit code.
    pub fn report(&self) -> Result<&R, Failure> {
        match &self.result {
            Some(Ok(report)) => Ok(report),
            Some(Err(_)) | None => Err(Failure::Run(self.outcome.clone())),
        }
    }

    /// The exit code of the run: its recorded status's, decided by `runs`.
    pub fn exit_code(&self) -> ExitCode {
        self.outcome.exit_code().into()
    }
}

/// Runs a one-shot job through the run path, as a recorded run (`tally runs` lists
/// it): claimed (taking over a dead holder's run once its lease expired; refused with
/// exit 75 while another run of the job holds a live lease), its lease renewed every
/// `[scheduler] heartbeat_seconds`, stopped by SIGTERM or Ctrl-C after its batch, and
/// its end recorded with the outcome `runs` decides from the job's report or error.
/// With `metrics_file`, the run's figures are written there when it ends; failing to
/// write them is a warning, and the run's status and exit code stand.
pub(crate) async fn recorded_run<R, E, F>(
    settings: &Settings,
    store: &Store,
    kind: JobKind,
    metrics_file: Option<&Path>,
    shutdown: &CancellationToken,
    work: impl FnOnce(CancellationToken) -> F,
) -> Result<Recorded<Result<R, E>>, Failure>
where
    F: std::future::Future<Output = Result<R, E>> + Send + 'static,
    R: JobReport + Send + 'static,
    E: JobError + Send + 'static,
{
    let runs = Runs::new(
        Arc::new(store.clone()),
        Arc::new(SystemClock),
        RunSettings::from_config(&settings.scheduler),
    )
    .map_err(|error| Failure::Config(error.to_string()))?;
    let started = std::time::Instant::now();
    let finished = runs
        .run_now(&JobName::of_kind(kind), shutdown, work, RunOutcome::of)
        .await
        .map_err(|refusal| Failure::Run(refusal.outcome()))?;
    let mut warnings = Vec::new();
    if let Some(path) = metrics_file {
        if let Err(warning) = write_run_metrics(path, kind.as_str(), &finished.outcome, started.elapsed()) {
            tracing::warn!(%warning, "the run's metrics were not written; its status stands");
            warnings.push(warning);
        }
    }
    Ok(Recorded {
        outcome: finished.outcome,
        result: finished.result,
        warnings,
    })
}

/// A job's JSON report as printed: the run's status first (the run ledger's word:
/// `succeeded`, `data-errors`, `temporary-failure`, `failed`, `interrupted`), then the
/// report's fields, then its warnings when there are any.
pub(crate) fn report_json(outcome: &RunOutcome, report: serde_json::Value, warnings: &[String]) -> serde_json::Value {
    let mut printed = serde_json::Map::new();
    printed.insert("status".to_owned(), serde_json::json!(outcome.end.as_str()));
    if let serde_json::Value::Object(fields) = report {
        for (key, value) in fields {
            if key != "status" {
                printed.insert(key, value);
            }
        }
    }
    if !warnings.is_empty() {
        printed.insert("warnings".to_owned(), serde_json::json!(warnings));
    }
    serde_json::Value::Object(printed)
}

/// A text report's warnings, one line each after the report.
pub(crate) fn print_warnings(warnings: &[String]) {
    for warning in warnings {
        println!("warning: {warning}");
    }
}

/// The store and everything a job needs, from the settings; the database must exist.
pub(crate) async fn job_context(settings: &Settings) -> Result<JobContext, Failure> {
    job_context_with(settings, &settings.database.connect_options()).await
}

async fn job_context_with(settings: &Settings, options: &ConnectOptions) -> Result<JobContext, Failure> {
    let store = open_store_with(settings, options).await?;
    JobContext::new(store, settings.clone()).map_err(|error| Failure::Config(error.to_string()))
}

/// A token cancelled by SIGTERM or Ctrl-C: the job in hand finishes its batch, commits
/// and stops; a rerun completes the work.
pub(crate) fn stop_on_signals() -> CancellationToken {
    let stop = CancellationToken::new();
    if let Err(error) = cancel_on_termination_signals(stop.clone()) {
        tracing::warn!(%error, "cannot listen for termination signals");
    }
    stop
}

pub(crate) async fn run_sync(settings: &Settings, args: &SyncArgs) -> Result<ExitCode, Failure> {
    let scope = if args.all {
        SyncScope::All
    } else if args.accounts.is_empty() {
        SyncScope::Marked
    } else {
        SyncScope::Accounts(parse_accounts(&args.accounts)?)
    };
    let context = job_context(settings).await?;
    let store = context.store.clone();
    let first_commit = if args.charge_activations {
        FirstCommit::ChargeActivations
    } else {
        FirstCommit::Baseline
    };
    let now = GregorianSeconds::from_utc(chrono::Utc::now());
    let recorded = if args.dry_run {
        let mut options = context.sync_options(scope, None, first_commit, now, stop_on_signals());
        options.dry_run = true;
        let report = sync::run_once(&store, &options).await;
        Ok(Recorded {
            outcome: RunOutcome::of(&report),
            result: Some(report),
            warnings: Vec::new(),
        })
    } else {
        let retry = FaultRetry::for_runs(&settings.database);
        let work = {
            let (context, store) = (context.clone(), store.clone());
            move |stop: CancellationToken| async move {
                let options = context.sync_options(scope, None, first_commit, now, stop.clone());
                retry_faults(retry, "sync", &stop, || sync::run_once(&store, &options)).await
            }
        };
        recorded_run(
            settings,
            &store,
            JobKind::Sync,
            args.metrics_file.as_deref(),
            &stop_on_signals(),
            work,
        )
        .await
    };
    store.close().await;
    let recorded = recorded?;
    let report = recorded.report()?;
    for skip in &report.skipped {
        tell!(WARN, "account {} skipped: {}", skip.account, skip.reason);
    }
    for plan in &report.unresolved_plans {
        tell!(
            WARN,
            "account {}: plan {} not found at vendor {}; ignored",
            plan.account,
            plan.plan,
            plan.vendor
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
            "skipped": report.skipped_json(),
            "plan_sets": report.plan_sets,
            "dry_run": report.dry_run,
            "duration_ms": duration_ms,
        });
        println!("{}", report_json(&recorded.outcome, summary, &recorded.warnings));
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
        print_warnings(&recorded.warnings);
    }
    Ok(recorded.exit_code())
}

pub(crate) async fn run_bookkeeper_sync(settings: &Settings, args: &BookkeeperSyncArgs) -> Result<ExitCode, Failure> {
    let context = job_context(settings).await?;
    let store = context.store.clone();
    let now = GregorianSeconds::from_utc(chrono::Utc::now());
    let retry = FaultRetry::for_runs(&settings.database);
    let work = {
        let context = context.clone();
        move |stop: CancellationToken| async move {
            let options = context.bookkeeper_sync_options(None, now, stop.clone());
            retry_faults(retry, "bookkeeper-sync", &stop, || {
                bookkeeper_sync::run_once(&context.store, &context.bookkeepers, &options)
            })
            .await
        }
    };
    let recorded = recorded_run(
        settings,
        &store,
        JobKind::BookkeeperSync,
        args.metrics_file.as_deref(),
        &stop_on_signals(),
        work,
    )
    .await;
    store.close().await;
    let recorded = recorded?;
    let report = recorded.report()?;
    for failure in &report.failed {
        tell!(
            WARN,
            "account {} bookkeeper {}: not delivered after {} attempt(s){}: {}",
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
    if args.json {
        println!(
            "{}",
            report_json(&recorded.outcome, report.to_json(), &recorded.warnings)
        );
    } else {
        print!("{}", report.to_text());
        print_warnings(&recorded.warnings);
    }
    Ok(recorded.exit_code())
}

/// A `tally services` or `tally plans` command.
pub(crate) enum OpsCommand<'a> {
    Services(&'a ServicesOperation),
    Plans(&'a PlansOperation),
}

/// Runs one operation as the operator (`--as`, else the OS user) and prints its data as
/// JSON or a table; a refusal is one line on standard error and its exit code.
pub(crate) async fn run_ops(
    settings: &Settings,
    output: &OpsOutputArgs,
    command: OpsCommand<'_>,
) -> Result<ExitCode, Failure> {
    let ops = Operations::new(job_context(settings).await?);
    let user = operator_name(output.as_user.as_deref(), |name| std::env::var(name).ok());
    let caller = Caller::operator(&user);
    let result = match command {
        OpsCommand::Services(operation) => ops_cli::services(&ops, &caller, operation).await,
        OpsCommand::Plans(operation) => ops_cli::plans(&ops, &caller, operation).await,
    };
    ops.store().close().await;
    match result {
        Ok(shown) => {
            let terminal = std::io::stdout().is_terminal();
            let columns = std::env::var("COLUMNS").ok().and_then(|text| text.parse().ok());
            let format = choose_format(output, &shown, terminal, columns);
            if let Some(note) = &shown.note {
                tell!(INFO, "{note}");
            }
            let mut stdout = std::io::stdout().lock();
            writeln!(stdout, "{}", shown.render(format))
                .map_err(|error| Failure::Other(anyhow::anyhow!("cannot write the output: {error}")))?;
            Ok(ExitCode::SUCCESS)
        }
        Err(error) => {
            tell!(ERROR, "{error}");
            Ok(error.exit_code().into())
        }
    }
}

/// How big the `--demo` data set is when the database is empty.
const DEMO_ACCOUNTS: u64 = 1_000;

pub(crate) async fn run_billing(settings: &Settings, args: &BillingArgs) -> Result<ExitCode, Failure> {
    let mut settings = settings.clone();
    // Kept alive for the run: the loopback bookkeeper `--demo` delivers to.
    let mut demo_bookkeeper = None;
    if args.demo && settings.bookkeepers.http.http_url.is_empty() {
        let bookkeeper = DemoBookkeeper::start().await.map_err(anyhow::Error::from)?;
        settings.bookkeepers.http.http_url = bookkeeper.url();
        tell!(INFO, "HTTP invoices go to the demo bookkeeper at {}", bookkeeper.url());
        demo_bookkeeper = Some(bookkeeper);
    }
    // `--demo` may start from nothing: it creates the database it fills.
    let context = match args.demo {
        true => job_context_with(&settings, &settings.database.creating_options()).await?,
        false => job_context(&settings).await?,
    };
    if args.demo {
        let accounts = context
            .store
            .query_count("SELECT COUNT(*) FROM accounts")
            .await
            .map_err(anyhow::Error::from)?;
        if accounts == 0 {
            let spec = DemoSpec {
                accounts: DEMO_ACCOUNTS,
                seed: 1,
            };
            let report = load_demo(&context, spec).await?;
            tell!(
                INFO,
                "the database was empty: loaded the demo ({} accounts, {} plans, {} objects; {} documents at {:.0} documents/s)",
                report.accounts,
                report.plans,
                report.objects,
                report.documents,
                report.documents_per_second()
            );
        }
    }
    let scope = RunScope {
        accounts: if args.accounts.is_empty() {
            None
        } else {
            Some(parse_accounts(&args.accounts)?)
        },
        batch_size: None,
        changed_only: false,
        full_recount: args.full,
    };
    let now = GregorianSeconds::from_utc(chrono::Utc::now());
    if args.dry_run {
        return run_billing_preview(&context, &scope, now, args.json).await;
    }
    // A spinner on a terminal; indicatif draws nothing when standard error is not one.
    let progress = indicatif::ProgressBar::new_spinner();
    progress.enable_steady_tick(std::time::Duration::from_millis(120));
    let work = {
        let (context, progress) = (context.clone(), progress.clone());
        move |stop| async move {
            context
                .billing(&scope, now, stop, &|stage| progress.set_message(stage.describe()))
                .await
        }
    };
    let recorded = recorded_run(
        &settings,
        &context.store,
        JobKind::Billing,
        args.metrics_file.as_deref(),
        &stop_on_signals(),
        work,
    )
    .await;
    progress.finish_and_clear();
    context.store.close().await;
    drop(demo_bookkeeper);
    let recorded = recorded?;
    let report = recorded.report()?;
    if args.json {
        println!(
            "{}",
            report_json(&recorded.outcome, report.to_json(), &recorded.warnings)
        );
    } else {
        print!("{}", report.to_text());
        print_warnings(&recorded.warnings);
    }
    Ok(recorded.exit_code())
}

/// Writes each record of a billing dry run to standard output as it comes: a line of
/// JSON, or a block of text.
struct PrintedPreview {
    out: std::io::Stdout,
    json: bool,
}

impl PreviewSink for PrintedPreview {
    fn delivery(&mut self, delivery: &DeliveryPreview) -> std::io::Result<()> {
        match self.json {
            true => writeln!(self.out.lock(), "{}", delivery.to_json()),
            false => write!(self.out.lock(), "{}", delivery.to_text()),
        }
    }

    fn invoice(&mut self, invoice: &InvoicePreview) -> std::io::Result<()> {
        match self.json {
            true => writeln!(self.out.lock(), "{}", invoice.to_json()),
            false => write!(self.out.lock(), "{}", invoice.to_text()),
        }
    }
}

/// `tally run billing --dry-run`: like `run sync --dry-run`, no run is recorded; the
/// exit code is the one the report's status maps to.
async fn run_billing_preview(
    context: &JobContext,
    scope: &RunScope,
    now: GregorianSeconds,
    json: bool,
) -> Result<ExitCode, Failure> {
    let mut sink = PrintedPreview {
        out: std::io::stdout(),
        json,
    };
    let result = context.billing_preview(scope, now, stop_on_signals(), &mut sink).await;
    context.store.close().await;
    let outcome = RunOutcome::of(&result);
    let report = match result {
        Ok(report) => report,
        Err(error) => return Err(Failure::Run(RunOutcome::failed(&error))),
    };
    match json {
        true => println!("{}", report_json(&outcome, report.to_json(), &[])),
        false => print!("{}", report.to_text()),
    }
    Ok(outcome.exit_code().into())
}

pub(crate) async fn run_topup(settings: &Settings, args: &TopupArgs) -> Result<ExitCode, Failure> {
    let context = job_context(settings).await?;
    let scope = RunScope {
        accounts: if args.accounts.is_empty() {
            None
        } else {
            Some(parse_accounts(&args.accounts)?)
        },
        batch_size: None,
        changed_only: false,
        full_recount: false,
    };
    let now = GregorianSeconds::from_utc(chrono::Utc::now());
    let retry = FaultRetry::for_runs(&settings.database);
    let work = {
        let context = context.clone();
        move |stop| async move { retry_faults(retry, "topup", &stop, || context.topup(&scope, now)).await }
    };
    let recorded = recorded_run(
        settings,
        &context.store,
        JobKind::Topup,
        args.metrics_file.as_deref(),
        &stop_on_signals(),
        work,
    )
    .await;
    context.store.close().await;
    let recorded = recorded?;
    let report = recorded.report()?;
    for failure in &report.failed {
        tell!(
            WARN,
            "account {} not topped up: {}: {}",
            failure.account,
            failure.reason,
            failure.message
        );
    }
    if args.json {
        println!(
            "{}",
            report_json(&recorded.outcome, report.to_json(), &recorded.warnings)
        );
    } else {
        print!("{}", report.to_text());
        print_warnings(&recorded.warnings);
    }
    Ok(recorded.exit_code())
}

/// Writes a run's figures for the node exporter's textfile collector; the error is
/// the warning to report.
fn write_run_metrics(
    path: &Path,
    job: &str,
    outcome: &RunOutcome,
    duration: std::time::Duration,
) -> Result<(), String> {
    let metrics = RunMetrics {
        job: job.to_owned(),
        duration,
        accounts: outcome.figures.accounts,
        changes: outcome.figures.changes,
        failures: outcome.figures.failures,
        succeeded: outcome.end == RunEnd::Succeeded,
        finished_at: chrono::Utc::now(),
    };
    write_metrics_file(path, &metrics).map_err(|error| error.to_string())
}

pub(crate) async fn run_schedule(settings: &Settings, args: &ScheduleArgs) -> Result<ExitCode, Failure> {
    let directory = args
        .jobs_dir
        .clone()
        .unwrap_or_else(|| settings.scheduler.jobs_dir.clone());
    let jobs = match load_jobs_dir(&directory) {
        Ok(jobs) => jobs,
        Err(error) => return Err(Failure::Config(error.to_string())),
    };
    let context = job_context(settings).await?;
    let daemon = DaemonSettings::new(RunSettings::from_config(&settings.scheduler));
    let shutdown = stop_on_signals();
    if context.store.backend() == Backend::Sqlite {
        tracing::info!("SQLite: this scheduler runs as the only instance (share a PostgreSQL database to run several)");
    }
    let ledger = Arc::new(context.store.clone());
    let served = serve(
        ledger,
        Arc::new(SystemClock),
        daemon,
        Arc::new(context),
        jobs,
        &Notifier::from_env(),
        watchdog_interval(),
        shutdown,
    )
    .await;
    match served {
        Ok(()) => Ok(ExitCode::SUCCESS),
        Err(error) => Err(Failure::Config(error.to_string())),
    }
}

/// `tally config`: the effective settings as TOML, secrets redacted.
pub(crate) fn run_config(settings: &Settings) -> Result<ExitCode, Failure> {
    let text = settings
        .to_redacted_toml()
        .map_err(|error| Failure::Other(error.into()))?;
    print!("{text}");
    Ok(ExitCode::SUCCESS)
}

pub(crate) async fn run_runs(settings: &Settings, args: &RunsArgs) -> Result<ExitCode, Failure> {
    let store = open_store(settings).await?;
    let runs = store.recent_runs(args.limit).await.map_err(anyhow::Error::from)?;
    store.close().await;
    if !args.json && !runs.is_empty() {
        println!(
            "{:>6}  {:<16} {:<19}  {:<18} {:>8} {:>8} {:>8}  {:<12} MESSAGE",
            "ID", "JOB", "STARTED", "STATUS", "ACCOUNTS", "CHANGES", "FAILURES", "HOST"
        );
    }
    for run in &runs {
        let status = run.status.as_str();
        if args.json {
            let line = serde_json::json!({
                "id": run.id.0,
                "job": run.job.to_string(),
                "scheduled_for": run.scheduled_for.to_rfc3339(),
                "started_at": run.started_at.to_rfc3339(),
                "ended_at": run.ended_at.map(|time| time.to_rfc3339()),
                "status": status,
                "accounts": run.figures.accounts,
                "changes": run.figures.changes,
                "failures": run.figures.failures,
                "message": run.message,
                "host": run.host,
            });
            println!("{line}");
        } else {
            println!(
                "{:>6}  {:<16} {:<19}  {:<18} {:>8} {:>8} {:>8}  {:<12} {}",
                run.id.0,
                run.job.to_string(),
                run.started_at.format("%Y-%m-%d %H:%M:%S").to_string(),
                status,
                run.figures.accounts,
                run.figures.changes,
                run.figures.failures,
                run.host,
                run.message.as_deref().unwrap_or("-")
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `tally serve`: the HTTP API until SIGTERM or Ctrl-C; requests in hand finish.
pub(crate) async fn run_serve(settings: &Settings, args: &tally::cli::ServeArgs) -> Result<ExitCode, Failure> {
    let ops = tally::ops::Operations::new(job_context(settings).await?);
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .map_err(|error| Failure::Config(format!("cannot listen on {}: {error}", args.listen)))?;
    let address = listener.local_addr().map_err(anyhow::Error::from)?;
    // Tests and scripts read the port of `--listen 127.0.0.1:0` from this line.
    tell!(INFO, "listening on http://{address}");
    tracing::info!(%address, "serving the HTTP API");
    let shutdown = stop_on_signals();
    let store = ops.store().clone();
    let login = tally::api::LoginSettings {
        token_lifetime: std::time::Duration::from_secs(settings.api.login_token_seconds),
        failures_allowed: settings.api.login_failures_allowed,
        failure_window: std::time::Duration::from_secs(settings.api.login_failure_window_seconds),
    };
    tally::api::serve_with_login(ops, login, listener, shutdown.cancelled_owned())
        .await
        .map_err(anyhow::Error::from)?;
    store.close().await;
    Ok(ExitCode::SUCCESS)
}

/// `tally tokens create`: prints the new token, the only time it is shown.
pub(crate) async fn run_token_create(
    settings: &Settings,
    args: &tally::cli::TokenCreateArgs,
) -> Result<ExitCode, Failure> {
    let account = AccountId::parse(args.account.as_str())
        .map_err(|error| Failure::Other(anyhow::anyhow!("--account: {error}")))?;
    let store = open_store(settings).await?;
    let now = GregorianSeconds::from_utc(chrono::Utc::now());
    let expires_at = args.expires.map(|lifetime| {
        let seconds = i64::try_from(lifetime.as_secs()).unwrap_or(i64::MAX);
        GregorianSeconds(now.0.saturating_add(seconds))
    });
    let created = store
        .create_token(
            tally::store::NewToken {
                account: &account,
                super_admin: args.super_admin,
                expires_at,
                origin: tally::store::TokenOrigin::Cli,
                owner_id: None,
                description: args.description.as_deref(),
            },
            now,
        )
        .await;
    store.close().await;
    print_secret_or_refusal(created)
}

/// Prints a secret shown once (a token, an api key), or the store's refusal (exit 65).
fn print_secret_or_refusal(created: Result<String, StoreError>) -> Result<ExitCode, Failure> {
    match created {
        Ok(secret) => {
            println!("{secret}");
            Ok(ExitCode::SUCCESS)
        }
        Err(StoreError::Refused(reason)) => {
            tell!(ERROR, "{reason}");
            Ok(ExitCode::from(EXIT_DATA_ERROR))
        }
        Err(error) => Err(Failure::Other(error.into())),
    }
}

/// Gregorian seconds as UTC text, for listings.
fn gregorian_text(seconds: i64) -> String {
    chrono::DateTime::from_timestamp(GregorianSeconds(seconds).unix(), 0)
        .map(|time| time.format("%Y-%m-%d %H:%M:%S").to_string())
        .unwrap_or_else(|| seconds.to_string())
}

/// `tally tokens list`: one line per token (never the token itself).
pub(crate) async fn run_token_list(settings: &Settings, args: &tally::cli::TokenListArgs) -> Result<ExitCode, Failure> {
    let account = args
        .account
        .as_deref()
        .map(AccountId::parse)
        .transpose()
        .map_err(|error| Failure::Other(anyhow::anyhow!("--account: {error}")))?;
    let store = open_store(settings).await?;
    let tokens = store.list_tokens(account.as_ref()).await;
    store.close().await;
    let tokens = tokens.map_err(|error| Failure::Other(error.into()))?;
    let now = GregorianSeconds::from_utc(chrono::Utc::now());
    for token in &tokens {
        let expired = token.expires_at.is_some_and(|at| at <= now.0);
        if args.json {
            let line = serde_json::json!({
                "id": token.id,
                "account_id": token.account_id,
                "super_admin": token.super_admin,
                "origin": token.origin,
                "owner_id": token.owner_id,
                "created_at": token.created_at,
                "expires_at": token.expires_at,
                "expired": expired,
                "description": token.description,
            });
            println!("{line}");
            continue;
        }
        let expires = match token.expires_at {
            None => "never".to_owned(),
            Some(at) if expired => format!("{} (expired)", gregorian_text(at)),
            Some(at) => gregorian_text(at),
        };
        println!(
            "{}  {}  {:<9}  {:<11}  created {}  expires {}{}{}",
            token.id,
            token.account_id,
            token.origin,
            if token.super_admin { "super-admin" } else { "-" },
            gregorian_text(token.created_at),
            expires,
            token
                .owner_id
                .as_deref()
                .map(|owner| format!("  owner {owner}"))
                .unwrap_or_default(),
            token
                .description
                .as_deref()
                .map(|text| format!("  ({text})"))
                .unwrap_or_default(),
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// `tally tokens revoke`: exit 65 when nothing matched.
pub(crate) async fn run_token_revoke(
    settings: &Settings,
    args: &tally::cli::TokenRevokeArgs,
) -> Result<ExitCode, Failure> {
    let store = open_store(settings).await?;
    let revoked = match (&args.token, &args.account) {
        (_, Some(account)) => {
            let account = AccountId::parse(account.as_str())
                .map_err(|error| Failure::Other(anyhow::anyhow!("--account: {error}")))?;
            store.revoke_account_tokens(&account).await
        }
        (Some(token), None) => store.revoke_token(token).await,
        (None, None) => unreachable!("clap requires a token id or --account"),
    };
    store.close().await;
    match revoked.map_err(|error| Failure::Other(error.into()))? {
        0 => {
            tell!(ERROR, "no such token");
            Ok(ExitCode::from(EXIT_DATA_ERROR))
        }
        count => {
            println!("revoked {count} token(s)");
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// `tally accounts api-key ACCOUNT --generate`: prints the new key, the only time it
/// is shown.
pub(crate) async fn run_api_key(settings: &Settings, args: &tally::cli::ApiKeyArgs) -> Result<ExitCode, Failure> {
    let account =
        AccountId::parse(args.account.as_str()).map_err(|error| Failure::Other(anyhow::anyhow!("ACCOUNT: {error}")))?;
    let store = open_store(settings).await?;
    let generated = match tally::store::random_secret() {
        Ok(key) => store.set_api_key(&account, &key).await.map(|()| key),
        Err(error) => Err(error),
    };
    store.close().await;
    print_secret_or_refusal(generated)
}
