//! The sync job: reprice accounts against their merged plans and record what changed.
//!
//! For each batch of candidate accounts: the store reads plans, overrides, quantities
//! and the last computed invoices in a few set-based queries; the domain reprices each
//! account (merged plans shared by accounts with the same plan set); the store writes
//! the new snapshots, one audit row per changed invoice and the cleared marks in one
//! transaction. The next batch is read while one is priced, and on PostgreSQL two
//! batches are written at once. Invoices of bookkeepers that need no call
//! (`default`/`local`) are completed and acknowledged at once; the others wait for
//! `bookkeeper-sync`.
//! One unreadable or unpriceable account is reported and skipped; the rest go on.

use crate::bookkeepers::BookkeeperType;
use crate::domain::changes::FirstCommit;
use crate::domain::invoice::Invoice;
use crate::domain::merge::StrategyPriorities;
use crate::domain::plan::{AssignedPlan, BookkeeperRef, PlanContext};
use crate::domain::repricing::{reprice, AccountPricing, MergeCache};
use crate::domain::summary::GregorianSeconds;
use crate::domain::{AccountId, PlanId};
use crate::store::{
    AncestorCache, NewAuditRow, PendingChange, PricingSource, RepricedAccount, Store, StoreError, StoredAccount,
    SyncScope,
};
use sha2::{Digest, Sha256};
use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

/// How a sync run is asked to behave.
#[derive(Debug, Clone)]
pub struct SyncOptions {
    pub scope: SyncScope,
    /// Compute and report, write nothing.
    pub dry_run: bool,
    /// How accounts priced for the first time are treated.
    pub first_commit: FirstCommit,
    pub now: GregorianSeconds,
    /// Accounts read and written per batch (one transaction each).
    pub batch_size: usize,
    /// Recorded in audit rows as what caused them.
    pub run_id: String,
    /// Bookkeeper type of accounts billed by the master with no bookkeeper of their own
    /// (config `master_account_bookkeeper`).
    pub master_account_bookkeeper: String,
    /// Whether the master account's audit rows are listed (`should_save_master_audit_logs`).
    pub show_master_audit_logs: bool,
    pub priorities: StrategyPriorities,
    /// Who asked, merged into every audit row's `audit` object (the API request, the
    /// operator); `None` for scheduled runs, whose rows name the job and run.
    pub initiator: Option<serde_json::Value>,
    /// Write an audit row (and so a delivery) for every invoice, changed or not: the
    /// full synchronisation of `POST …/services/synchronization`.
    pub every_invoice: bool,
    /// Cancelled on shutdown or at the time limit: the batch in hand commits, no new
    /// batch starts, and the report says the run was interrupted.
    pub stop: CancellationToken,
}

/// Why an account was left out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SkippedAccount {
    pub account: AccountId,
    pub reason: String,
}

/// An assigned plan whose document its vendor does not have (quirk Q-PLN-10).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnresolvedPlan {
    pub account: AccountId,
    pub plan: PlanId,
    pub vendor: AccountId,
}

/// What a sync run did.
#[derive(Debug, Clone, Default)]
pub struct SyncReport {
    pub accounts_scanned: usize,
    pub accounts_changed: usize,
    pub invoices_changed: usize,
    /// The changed invoices (annotated), per account: printed by `--dry-run`.
    pub changes: Vec<(AccountId, Invoice)>,
    pub skipped: Vec<SkippedAccount>,
    pub unresolved_plans: Vec<UnresolvedPlan>,
    /// Distinct plan sets merged.
    pub plan_sets: usize,
    pub dry_run: bool,
    /// Stopped before every candidate was repriced; a rerun finishes the work.
    pub interrupted: bool,
    pub duration: Duration,
}

impl SyncReport {
    /// Some accounts could not be repriced.
    pub fn is_partial(&self) -> bool {
        !self.skipped.is_empty()
    }

    /// What kept the run from doing all its work, for the run record's message.
    pub fn problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        if !self.skipped.is_empty() {
            problems.push(format!("{} account(s) skipped", self.skipped.len()));
        }
        if self.interrupted {
            problems.push("interrupted before the last account".to_owned());
        }
        problems
    }

    /// The skipped accounts for JSON reports: `[{"account_id", "reason"}]`, in run order.
    pub fn skipped_json(&self) -> serde_json::Value {
        self.skipped
            .iter()
            .map(|skipped| serde_json::json!({ "account_id": skipped.account.as_str(), "reason": skipped.reason }))
            .collect()
    }
}

/// The tables sync reads by account: reconcile may have just rewritten most of them.
const PRICING_TABLES: &[&str] = &[
    "accounts",
    "invoice_snapshots",
    "service_plan_assignments",
    "service_plans",
    "service_quantities",
    "services",
];

pub async fn run_once(store: &Store, options: &SyncOptions) -> Result<SyncReport, StoreError> {
    let started = Instant::now();
    let mut report = SyncReport {
        dry_run: options.dry_run,
        ..SyncReport::default()
    };
    // A first night's reconcile has just filled `service_quantities` and marked every
    // account: with the statistics of the tables as they were, the batches' quantity
    // reads cost three times as much at 100,000 accounts (45 ms a batch against 15).
    store.refresh_statistics(PRICING_TABLES).await?;
    let candidates = store.sync_candidates(&options.scope).await?;
    let mut cache = MergeCache::new();
    let mut stages = StageTimes::default();
    let mut batches = candidates.chunks(options.batch_size.max(1)).map(<[AccountId]>::to_vec);
    // Read-ahead: the next batch is read (another pool connection, another task) while
    // this one is priced and written; reading is half of a first run's time.
    let mut next_read = batches
        .next()
        .map(|batch| ReadAhead::start(store, batch, AncestorCache::default()));
    // Writes in flight, oldest first: a batch's statements leave its connection idle
    // between round trips, so PostgreSQL writes two batches at once.
    let writers = store.parallel_writers();
    let mut writes: VecDeque<BatchWrite> = VecDeque::with_capacity(writers);
    while let Some(read) = next_read.take() {
        if options.stop.is_cancelled() {
            read.abort();
            report.interrupted = true;
            break;
        }
        let reading = Instant::now();
        let (accounts, read_report, ancestors, read_time) = match read.finish().await {
            Ok(read) => read,
            Err(error) => return Err(stopped_by(error, writes, &mut report).await),
        };
        stages.read += reading.elapsed();
        stages.read_busy += read_time;
        report.accounts_scanned += read_report.accounts_scanned;
        report.skipped.extend(read_report.skipped);
        next_read = batches.next().map(|batch| ReadAhead::start(store, batch, ancestors));
        let pricing_started = Instant::now();
        let mut repriced_batch = Vec::with_capacity(accounts.len());
        // Accounts with changed invoices, and how many: counted once written.
        let mut changed = Vec::new();
        for stored in &accounts {
            let pricing = account_pricing(stored, options, &mut report.unresolved_plans);
            let first = options.first_commit;
            let commit = match reprice(&pricing, &options.priorities, first, &mut cache) {
                Ok(commit) => commit,
                Err(error) => {
                    skip(&mut report, stored.account.clone(), error.to_string());
                    continue;
                }
            };
            if commit.has_changes() {
                changed.push((stored.account.clone(), commit.changed.len()));
            }
            // Nothing to write for an account already priced, not marked, whose invoices
            // are exactly the stored ones: a rerun with no change writes nothing.
            let unchanged = stored.priced
                && stored.marked_since.is_none()
                && !commit.has_changes()
                && commit.snapshot == stored.last_computed;
            let mut delivered = commit.changed.clone();
            if options.every_invoice {
                delivered.extend(
                    commit
                        .snapshot
                        .iter()
                        .filter(|invoice| {
                            !commit
                                .changed
                                .iter()
                                .any(|changed| changed.bookkeeper == invoice.bookkeeper)
                        })
                        .cloned(),
                );
            }
            if !unchanged || !delivered.is_empty() {
                repriced_batch.push(repriced_account(stored, commit.snapshot, &delivered, options));
            }
            if options.dry_run {
                report.changes.extend(
                    commit
                        .changed
                        .into_iter()
                        .map(|invoice| (stored.account.clone(), invoice)),
                );
            }
        }
        stages.price += pricing_started.elapsed();
        if options.dry_run {
            count_changed(&mut report, changed, &[]);
            continue;
        }
        let waiting = Instant::now();
        while writes.len() >= writers {
            let oldest = writes.pop_front().expect("writes in flight");
            if let Err(error) = oldest.finish(&mut report).await {
                if let Some(read) = next_read.take() {
                    read.abort();
                }
                return Err(stopped_by(error, writes, &mut report).await);
            }
        }
        stages.write += waiting.elapsed();
        writes.push_back(BatchWrite::start(store, repriced_batch, options.now, changed));
    }
    let waiting = Instant::now();
    finish_writes(writes, &mut report).await?;
    stages.write += waiting.elapsed();
    report.plan_sets = cache.len();
    report.duration = started.elapsed();
    tracing::debug!(
        read_ms = millis(stages.read),
        read_busy_ms = millis(stages.read_busy),
        price_ms = millis(stages.price),
        write_ms = millis(stages.write),
        accounts = report.accounts_scanned,
        "sync stages"
    );
    Ok(report)
}

/// Where a run's time went, for its closing debug event (the sync bench reads it).
#[derive(Debug, Default)]
struct StageTimes {
    /// Waiting for the batches' inputs (a batch is read while the one before it is
    /// priced and written: only the time the run waited for a read is here).
    read: Duration,
    /// Reading the batches' inputs, whether the run waited for them or not.
    read_busy: Duration,
    /// Pricing them and shaping the rows to write.
    price: Duration,
    /// Waiting for writes: for a writer to be free, and at the end for the last ones.
    write: Duration,
}

/// A batch's repricing being written on its own task (its own pool connection).
struct BatchWrite {
    task: tokio::task::JoinHandle<Result<Vec<SkippedAccount>, StoreError>>,
    /// Accounts with changed invoices, and how many: counted once written.
    changed: Vec<(AccountId, usize)>,
}

impl BatchWrite {
    fn start(
        store: &Store,
        batch: Vec<RepricedAccount>,
        now: GregorianSeconds,
        changed: Vec<(AccountId, usize)>,
    ) -> BatchWrite {
        let store = store.clone();
        BatchWrite {
            task: tokio::spawn(async move { write_batch(&store, &batch, now).await }),
            changed,
        }
    }

    /// Waits for the write and records it: the accounts it refused are skipped, the
    /// changes of the others counted.
    async fn finish(self, report: &mut SyncReport) -> Result<(), StoreError> {
        let refused = match self.task.await {
            Ok(outcome) => outcome?,
            Err(error) if error.is_panic() => std::panic::resume_unwind(error.into_panic()),
            Err(error) => return Err(StoreError::Refused(format!("writing a sync batch: {error}"))),
        };
        let refused_accounts: Vec<AccountId> = refused.iter().map(|skipped| skipped.account.clone()).collect();
        for skipped in refused {
            skip(report, skipped.account, skipped.reason);
        }
        count_changed(report, self.changed, &refused_accounts);
        Ok(())
    }
}

/// Waits for every write in flight, oldest first, even after one fails, so that no
/// write outlives the run; returns the first error.
async fn finish_writes(writes: VecDeque<BatchWrite>, report: &mut SyncReport) -> Result<(), StoreError> {
    let mut failure = None;
    for write in writes {
        if let Err(error) = write.finish(report).await {
            failure.get_or_insert(error);
        }
    }
    failure.map_or(Ok(()), Err)
}

/// Ends a run that `error` stopped: the writes in flight end first; returns `error`.
async fn stopped_by(error: StoreError, writes: VecDeque<BatchWrite>, report: &mut SyncReport) -> StoreError {
    if let Err(later) = finish_writes(writes, report).await {
        tracing::warn!(error = %later, "a sync batch in flight failed too");
    }
    error
}

/// Counts the changed accounts and invoices of a batch, but for those `refused`.
fn count_changed(report: &mut SyncReport, changed: Vec<(AccountId, usize)>, refused: &[AccountId]) {
    for (account, invoices) in changed {
        if !refused.contains(&account) {
            report.accounts_changed += 1;
            report.invoices_changed += invoices;
        }
    }
}

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

/// A batch's read running on its own task, with the ancestors read so far.
struct ReadAhead {
    task: tokio::task::JoinHandle<ReadOutcome>,
}

type ReadOutcome = Result<(Vec<StoredAccount>, SyncReport, AncestorCache, Duration), StoreError>;

impl ReadAhead {
    fn start(store: &Store, batch: Vec<AccountId>, mut ancestors: AncestorCache) -> ReadAhead {
        let store = store.clone();
        ReadAhead {
            task: tokio::spawn(async move {
                let started = Instant::now();
                let mut report = SyncReport::default();
                let pending = PendingChange::default();
                let mut source = PricingSource::Stored {
                    store: &store,
                    pending: &pending,
                };
                let accounts = read_batch(&mut source, &batch, &mut ancestors, &mut report).await?;
                Ok((accounts, report, ancestors, started.elapsed()))
            }),
        }
    }

    async fn finish(self) -> ReadOutcome {
        match self.task.await {
            Ok(outcome) => outcome,
            Err(error) if error.is_panic() => std::panic::resume_unwind(error.into_panic()),
            Err(error) => Err(StoreError::Refused(format!("reading a sync batch: {error}"))),
        }
    }

    /// Stops a read no longer wanted (it only reads).
    fn abort(self) {
        self.task.abort();
    }
}

/// Reads a batch for repricing. When one account's stored data breaks the batch's
/// set-based read (a value the row types cannot hold), the halves are read apart until
/// the account at fault stands alone; it is skipped and named, the others are read.
/// Accounts whose rows read but do not parse are skipped the same way. Every account
/// read or skipped here counts as scanned. The source may lay a change over the stored
/// rows (a dry run's change, `jobs/impact.rs`; a staged reconcile, `jobs/billing_preview.rs`);
/// sync reads the store as it is. `ancestors` keeps the ancestors the run has read.
pub(crate) async fn read_batch(
    source: &mut PricingSource<'_>,
    batch: &[AccountId],
    ancestors: &mut AncestorCache,
    report: &mut SyncReport,
) -> Result<Vec<StoredAccount>, StoreError> {
    let mut readable = Vec::with_capacity(batch.len());
    // A stack of parts still to read, the first part on top, so accounts stay in order.
    let mut parts = vec![batch];
    while let Some(part) = parts.pop() {
        match source.read(part, ancestors).await {
            Ok((accounts, unreadable)) => {
                report.accounts_scanned += accounts.len() + unreadable.len();
                readable.extend(accounts);
                for problem in unreadable {
                    skip(report, problem.account, problem.problem);
                }
            }
            Err(error) if error.is_bad_data() => match part {
                [account] => {
                    report.accounts_scanned += 1;
                    skip(report, account.clone(), error.to_string());
                }
                _ => {
                    let (first, second) = part.split_at(part.len() / 2);
                    parts.push(second);
                    parts.push(first);
                }
            },
            Err(error) => return Err(error),
        }
    }
    Ok(readable)
}

/// Writes a batch's repricing in one transaction. When the database refuses one
/// account's data (a value it cannot hold), the halves are written apart until that
/// account stands alone; it is left marked and returned with why; every other account
/// is written, each still whole or not at all.
async fn write_batch(
    store: &Store,
    batch: &[RepricedAccount],
    now: GregorianSeconds,
) -> Result<Vec<SkippedAccount>, StoreError> {
    let mut refused = Vec::new();
    let mut parts = vec![batch];
    while let Some(part) = parts.pop() {
        match store.save_repricing(part, now).await {
            Ok(()) => {}
            Err(error) if error.is_bad_data() => match part {
                [repriced] => refused.push(SkippedAccount {
                    account: repriced.account.clone(),
                    reason: error.to_string(),
                }),
                _ => {
                    let (first, second) = part.split_at(part.len() / 2);
                    parts.push(second);
                    parts.push(first);
                }
            },
            Err(error) => return Err(error),
        }
    }
    Ok(refused)
}

/// Leaves an account out of the run, in the report and the log.
fn skip(report: &mut SyncReport, account: AccountId, reason: String) {
    tracing::warn!(account_id = %account, %reason, "account skipped");
    report.skipped.push(SkippedAccount { account, reason });
}

/// The domain's view of a stored account (`plans.md` §5.3 steps 2 and 6).
pub(crate) fn account_pricing(
    stored: &StoredAccount,
    options: &SyncOptions,
    unresolved: &mut Vec<UnresolvedPlan>,
) -> AccountPricing {
    let services_bookkeeper = |key: &str| {
        stored
            .bookkeeper
            .as_ref()
            .and_then(|bookkeeper| bookkeeper.get(key))
            .and_then(|value| value.as_str())
            .filter(|text| !text.is_empty())
            .map(str::to_owned)
    };
    let billed_by_master = stored.is_master || stored.billed_by_master;
    let kind = services_bookkeeper("type").unwrap_or_else(|| {
        if billed_by_master {
            BookkeeperType::parse(&options.master_account_bookkeeper)
                .as_str()
                .to_owned()
        } else {
            BookkeeperRef::DEFAULT_KIND.to_owned()
        }
    });
    let default_bookkeeper = BookkeeperRef {
        kind,
        vendor_id: services_bookkeeper("vendor_id").unwrap_or_else(|| stored.reseller_id.to_string()),
        id: services_bookkeeper("id").unwrap_or_else(|| BookkeeperRef::DEFAULT_ID.to_owned()),
    };

    let mut plans = Vec::with_capacity(stored.assignments.len());
    for assignment in &stored.assignments {
        let Some(document) = &assignment.document else {
            tracing::warn!(account_id = %stored.account, plan = %assignment.plan_id, vendor = %assignment.vendor_id,
                "assigned plan not found at its vendor; skipped");
            unresolved.push(UnresolvedPlan {
                account: stored.account.clone(),
                plan: assignment.plan_id.clone(),
                vendor: assignment.vendor_id.clone(),
            });
            continue;
        };
        plans.push(AssignedPlan {
            id: assignment.plan_id.clone(),
            vendor_id: Some(assignment.vendor_id.clone()),
            document: Arc::clone(document),
            overrides: (!assignment.overrides.is_empty()).then(|| assignment.overrides.clone()),
        });
    }

    // Everything merging reads, in one string: accounts with equal keys share a merge.
    let mut plan_set_key = format!(
        "{}\u{1f}{}\u{1f}{}\u{1f}{}\u{1f}{}",
        default_bookkeeper.kind,
        default_bookkeeper.vendor_id,
        default_bookkeeper.id,
        stored.overrides_text,
        stored.bookkeeper_text
    );
    for assignment in stored
        .assignments
        .iter()
        .filter(|assignment| assignment.document.is_some())
    {
        plan_set_key.push_str(&format!(
            "\u{1e}{}\u{1f}{}\u{1f}{}",
            assignment.vendor_id, assignment.plan_id, assignment.overrides_text
        ));
    }

    AccountPricing {
        context: PlanContext {
            default_bookkeeper,
            global_overrides: stored.overrides.clone(),
        },
        plans,
        quantities: stored.quantities.clone(),
        last_computed: stored.priced.then(|| stored.last_computed.clone()),
        plan_set_key,
    }
}

fn repriced_account(
    stored: &StoredAccount,
    snapshot: Vec<Invoice>,
    changed: &[Invoice],
    options: &SyncOptions,
) -> RepricedAccount {
    let mut audit_rows = Vec::with_capacity(changed.len());
    let mut acknowledged = Vec::new();
    for invoice in changed {
        let call_free = matches!(BookkeeperType::parse(&invoice.bookkeeper.kind), BookkeeperType::Default);
        if call_free {
            // What the bookkeeper now knows: the un-annotated invoice (a removed one reset).
            let known = snapshot
                .iter()
                .find(|current| current.bookkeeper == invoice.bookkeeper)
                .cloned()
                .unwrap_or_else(|| reset(invoice));
            acknowledged.push(known);
        }
        audit_rows.push(NewAuditRow {
            id: audit_id(&stored.account, invoice, options),
            invoice: invoice.clone(),
            completed: call_free,
            audit: audit_object(stored, options),
            hidden: stored.is_master && !options.show_master_audit_logs,
        });
    }
    RepricedAccount {
        account: stored.account.clone(),
        snapshot,
        audit_rows,
        acknowledged,
        marked_since: stored.marked_since,
        revision: stored.revision,
    }
}

/// A removed invoice as its bookkeeper will know it: every item reset, no changes.
fn reset(invoice: &Invoice) -> Invoice {
    let mut known = invoice.clone();
    for item in &mut known.items {
        item.changes = None;
    }
    known.activation_charges.clear();
    known.today = crate::domain::Money::ZERO;
    known
}

/// `YYYYMM-` + 32 hex, derived from the account, the bookkeeper, the run and the time,
/// so the same run writing the same change twice would collide rather than duplicate.
fn audit_id(account: &AccountId, invoice: &Invoice, options: &SyncOptions) -> String {
    let month = options
        .now
        .day()
        .map(|day| day.format("%Y%m").to_string())
        .unwrap_or_else(|| "000000".to_owned());
    let mut digest = Sha256::new();
    for part in [
        account.as_str(),
        invoice.bookkeeper.kind.as_str(),
        invoice.bookkeeper.vendor_id.as_str(),
        invoice.bookkeeper.id.as_str(),
        options.run_id.as_str(),
    ] {
        digest.update(part.as_bytes());
        digest.update([0x1f]);
    }
    digest.update(options.now.0.to_be_bytes());
    let hash = hex::encode(digest.finalize());
    format!("{month}-{}", &hash[..32])
}

/// Who or what caused the change (`audit-and-summaries.md` §2): the account, and
/// our extension `agent` naming the job and its run.
fn audit_object(stored: &StoredAccount, options: &SyncOptions) -> serde_json::Value {
    let mut audit = match &options.initiator {
        Some(serde_json::Value::Object(initiator)) => initiator.clone(),
        _ => {
            let mut job = serde_json::Map::new();
            job.insert(
                "agent".to_owned(),
                serde_json::json!({ "type": "job", "job": "sync", "run_id": options.run_id }),
            );
            job
        }
    };
    audit.insert(
        "account".to_owned(),
        serde_json::json!({ "id": stored.account.as_str(), "name": stored.name }),
    );
    // The initiator may say which buckets its change touched (`changes.type`).
    let mut changes = serde_json::json!({ "account_id": stored.account.as_str(), "account_name": stored.name });
    if let Some(kinds) = audit.get("changes").and_then(|changes| changes.get("type")) {
        changes["type"] = kinds.clone();
    }
    audit.insert("changes".to_owned(), changes);
    serde_json::Value::Object(audit)
}
