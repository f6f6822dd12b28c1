//! `tally run billing --dry-run` (issue 15 item 2): what tonight's billing would do,
//! written nowhere. The deliveries bookkeeper-sync would take now are listed first
//! (retries of deliveries in flight, and pending audit rows it would freeze into a new
//! delivery); then reconcile is staged (its session's temporary tables hold the new
//! quantities, nothing is applied), and sync's candidates, the accounts marked for
//! repricing and those the reconcile would mark, are priced batch by batch from
//! inputs read on that session's connection with the staged quantities laid over the
//! stored ones. Every invoice that would change is reported with its line diff
//! (`domain::impact`, the comparison sync's annotation makes) and what it means for
//! delivery.
//!
//! Streaming: each record goes to the caller's [`PreviewSink`] as soon as it is made
//! and is dropped; the run keeps counts and per-reseller sums only, so memory stays
//! flat however many invoices change. The same pricing code as sync (`read_batch`,
//! `account_pricing`, `reprice`), so the dry run lists what the real run writes.

use super::billing::joined;
use super::bookkeeper_sync::new_delivery;
use super::reconcile::{self, ReconcileError, ReconcileOptions, ReconcileReport};
use super::sync::{account_pricing, read_batch, SkippedAccount, SyncOptions, SyncReport};
use crate::bookkeepers::BookkeeperType;
use crate::domain::impact::{account_impact, LineChange, ResellerImpact};
use crate::domain::invoice::Invoice;
use crate::domain::plan::BookkeeperRef;
use crate::domain::repricing::{reprice, MergeCache};
use crate::domain::{AccountId, Money};
use crate::runs::{JobError, JobReport, RunEnd, RunFigures, RunOutcome};
use crate::store::{
    AncestorCache, CountingQueries, DeliveryState, DueDelivery, PricingSource, QueuedPair, Store, StoreError,
    UnreadableDelivery, WaitingDelivery,
};
use crate::wire::document::Amount;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// What the dry run of a billing run needs: the options billing would run with.
#[derive(Clone)]
pub struct PreviewOptions {
    pub reconcile: ReconcileOptions,
    pub sync: SyncOptions,
    /// Deliveries read per statement (bookkeeper-sync's batch size).
    pub delivery_batch_size: usize,
    /// Why the HTTP bookkeeper cannot be called (`[bookkeepers.http] http_url` empty or
    /// invalid), or `None`: its deliveries would wait for the configuration.
    pub http_unconfigured: Option<String>,
}

/// Where the records go, one at a time, as they are made (the command line writes each
/// as a line of JSON or a block of text). An error stops the run.
pub trait PreviewSink: Send {
    fn delivery(&mut self, delivery: &DeliveryPreview) -> std::io::Result<()>;
    fn invoice(&mut self, invoice: &InvoicePreview) -> std::io::Result<()>;
}

/// One delivery bookkeeper-sync would make now, from what is already queued.
#[derive(Debug, Clone, PartialEq)]
pub enum DeliveryPreview {
    /// A delivery in flight, sent again byte for byte.
    Retry {
        delivery: WaitingDelivery,
        /// Not sent: its bookkeeper is not configured.
        waits_for_configuration: bool,
    },
    /// Pending audit rows frozen into a new delivery: the invoice it would carry.
    Queued {
        account: AccountId,
        bookkeeper: BookkeeperRef,
        /// Frozen but not sent: its bookkeeper is not configured.
        waits_for_configuration: bool,
        /// The recurring total sent (the latest invoice).
        recurring: Money,
        /// The activation charges of every pending row.
        today: Money,
        audit_rows: usize,
    },
    /// A stored row it needs cannot be read: bookkeeper-sync skips it too.
    Unreadable(UnreadableDelivery),
}

/// What a changed invoice means for its bookkeeper.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeliveryPlan {
    /// A bookkeeper that needs no call (`default`/`local`): acknowledged at once.
    CallFree,
    /// A new delivery of its own.
    New,
    /// A new delivery, frozen but not sent: the HTTP bookkeeper is not configured.
    WaitsForConfiguration,
    /// Joins the queued audit rows of the same bookkeeper (listed as a queued delivery).
    JoinsQueued,
    /// Waits behind the delivery in flight for the same bookkeeper (in this state).
    /// When that one is due and its retry is acknowledged, bookkeeper-sync's pass starts
    /// over and may send these rows in the same run; they are not counted as sent.
    AfterInFlight(DeliveryState),
}

impl DeliveryPlan {
    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryPlan::CallFree => "none (bookkeeper needs no call)",
            DeliveryPlan::New => "new",
            DeliveryPlan::WaitsForConfiguration => "new, waiting for the HTTP bookkeeper's configuration",
            DeliveryPlan::JoinsQueued => "joins the queued delivery",
            DeliveryPlan::AfterInFlight(_) => "after the delivery in flight",
        }
    }

    fn code(self) -> &'static str {
        match self {
            DeliveryPlan::CallFree => "none",
            DeliveryPlan::New => "new",
            DeliveryPlan::WaitsForConfiguration => "waits_for_configuration",
            DeliveryPlan::JoinsQueued => "joins_queued",
            DeliveryPlan::AfterInFlight(_) => "after_in_flight",
        }
    }
}

/// One invoice the run would change (one audit row of the real run).
#[derive(Debug, Clone, PartialEq)]
pub struct InvoicePreview {
    pub account: AccountId,
    pub reseller: AccountId,
    pub bookkeeper: BookkeeperRef,
    /// The last computed invoice's recurring total (0 when it had none).
    pub old_recurring: Money,
    /// The new one (0 when the bookkeeper's plans were removed).
    pub new_recurring: Money,
    /// Activation charges the change adds.
    pub today: Money,
    /// The lines that change, with both sides.
    pub lines: Vec<LineChange>,
    pub delivery: DeliveryPlan,
}

/// Deliveries by what the dry run found.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DeliveryCounts {
    /// In flight and due: sent again.
    pub retries: usize,
    /// Queued audit rows frozen into a new delivery.
    pub queued: usize,
    /// New deliveries of changed invoices.
    pub new: usize,
    /// Changed invoices that join a queued delivery.
    pub joining_queued: usize,
    /// Changed invoices that wait behind a delivery in flight.
    pub after_in_flight: usize,
    /// Deliveries (retried, queued or new) not sent because the HTTP bookkeeper is not
    /// configured.
    pub awaiting_configuration: usize,
    /// Deliveries whose stored rows cannot be read.
    pub unreadable: usize,
}

impl DeliveryCounts {
    /// Deliveries the run would send.
    pub fn sent(&self) -> usize {
        self.retries + self.queued + self.new
    }
}

/// What the dry run found, in figures (the records went to the sink).
#[derive(Debug, Clone)]
pub struct BillingPreview {
    /// The staged reconcile (its `changes` are not kept).
    pub reconcile: ReconcileReport,
    pub accounts_repriced: usize,
    pub accounts_changed: usize,
    pub invoices_changed: usize,
    /// Accounts sync would skip.
    pub skipped: Vec<SkippedAccount>,
    pub deliveries: DeliveryCounts,
    /// The recurring totals of each reseller's changed accounts, before and after.
    pub resellers: BTreeMap<AccountId, ResellerImpact>,
    /// Stopped (signal) before every candidate was priced.
    pub interrupted: bool,
    pub duration: Duration,
}

#[derive(Debug, thiserror::Error)]
pub enum PreviewError {
    #[error("reconcile: {0}")]
    Reconcile(#[from] ReconcileError),
    #[error("{0}")]
    Store(#[from] StoreError),
    #[error("writing the dry run's output: {0}")]
    Output(#[from] std::io::Error),
}

impl JobError for PreviewError {
    fn is_temporary(&self) -> bool {
        match self {
            PreviewError::Reconcile(ReconcileError::Store(error)) | PreviewError::Store(error) => error.is_temporary(),
            PreviewError::Output(_) => false,
        }
    }
}

impl JobReport for BillingPreview {
    fn outcome(&self) -> RunOutcome {
        RunOutcome::reported(self.end(), self.figures(), self.problems())
    }
}

/// Runs the dry run, each record to `sink`.
pub async fn run_once(
    store: &Store,
    counting: &CountingQueries,
    options: &PreviewOptions,
    sink: &mut dyn PreviewSink,
) -> Result<BillingPreview, PreviewError> {
    let started = Instant::now();
    let mut deliveries = DeliveryCounts::default();
    // What is queued already, before the reconcile session holds its connection.
    preview_queued_deliveries(store, options, &mut deliveries, sink).await?;

    let reconcile_options = ReconcileOptions {
        dry_run: true,
        ..options.reconcile.clone()
    };
    let (mut session, reconcile) = reconcile::stage(store, counting, &reconcile_options).await?;
    let priced = preview_repricing(&mut session, options, &mut deliveries, sink).await;
    // The session ends (its tables dropped) whether pricing went through or not.
    let finished = session.finish().await;
    let priced = priced?;
    finished?;
    Ok(BillingPreview {
        reconcile,
        accounts_repriced: priced.reads.accounts_scanned,
        accounts_changed: priced.accounts_changed,
        invoices_changed: priced.invoices_changed,
        skipped: priced.reads.skipped,
        deliveries,
        resellers: priced.resellers,
        interrupted: priced.interrupted,
        duration: started.elapsed(),
    })
}

/// The deliveries bookkeeper-sync would make now from what is stored: due retries,
/// then queued audit rows, read batch by batch (nothing is leased or frozen).
async fn preview_queued_deliveries(
    store: &Store,
    options: &PreviewOptions,
    counts: &mut DeliveryCounts,
    sink: &mut dyn PreviewSink,
) -> Result<(), PreviewError> {
    let now = options.sync.now;
    let batch_size = options.delivery_batch_size.max(1);
    let mut after: Option<String> = None;
    loop {
        let due = store.deliveries_due_at(now, after.as_deref(), batch_size).await?;
        let Some(last) = due.last() else { break };
        after = last.delivery_id.clone();
        for delivery in due {
            let waits_for_configuration = waits_for_configuration(options, &delivery.bookkeeper);
            if waits_for_configuration {
                counts.awaiting_configuration += 1;
            } else {
                counts.retries += 1;
            }
            sink.delivery(&DeliveryPreview::Retry {
                delivery,
                waits_for_configuration,
            })?;
        }
    }
    let mut cursor = None;
    loop {
        let batch = store.queued_deliveries(cursor.as_ref(), batch_size).await?;
        for unreadable in batch.unreadable {
            counts.unreadable += 1;
            sink.delivery(&DeliveryPreview::Unreadable(unreadable))?;
        }
        for due in batch.deliveries {
            let (account, bookkeeper, latest, last_acknowledged, pending) = match due {
                DueDelivery::New {
                    account,
                    bookkeeper,
                    latest,
                    last_acknowledged,
                    pending,
                } => (account, bookkeeper, latest, last_acknowledged, pending),
                // Retries were listed above; the queued read returns none.
                DueDelivery::Retry { .. } => continue,
            };
            // The invoice bookkeeper-sync would build.
            let built = match new_delivery(latest.as_deref(), last_acknowledged.as_deref(), &pending) {
                Ok(Some(built)) => built,
                Ok(None) => continue,
                Err(error) => {
                    counts.unreadable += 1;
                    let unreadable = UnreadableDelivery {
                        row: "pending audit rows".to_owned(),
                        account: account.to_string(),
                        bookkeeper,
                        reason: format!("delivery amounts: {error}"),
                    };
                    sink.delivery(&DeliveryPreview::Unreadable(unreadable))?;
                    continue;
                }
            };
            let waits_for_configuration = waits_for_configuration(options, &bookkeeper);
            if waits_for_configuration {
                counts.awaiting_configuration += 1;
            } else {
                counts.queued += 1;
            }
            sink.delivery(&DeliveryPreview::Queued {
                account,
                bookkeeper,
                waits_for_configuration,
                recurring: built.invoice.recurring,
                today: built.invoice.today,
                audit_rows: pending.len(),
            })?;
        }
        match batch.cursor {
            Some(next) => cursor = Some(next),
            None => break,
        }
    }
    Ok(())
}

/// What pricing the candidates found.
#[derive(Default)]
struct Priced {
    /// Accounts read (scanned) and skipped, as sync counts them.
    reads: SyncReport,
    accounts_changed: usize,
    invoices_changed: usize,
    resellers: BTreeMap<AccountId, ResellerImpact>,
    interrupted: bool,
}

/// Sync over the staged reconcile: every candidate priced as sync would price it, each
/// changed invoice sent to the sink with its diff and delivery plan.
async fn preview_repricing(
    session: &mut crate::store::ReconcileSession,
    options: &PreviewOptions,
    deliveries: &mut DeliveryCounts,
    sink: &mut dyn PreviewSink,
) -> Result<Priced, PreviewError> {
    let sync = &options.sync;
    let mut priced = Priced::default();
    session.index_staged_changes().await?;
    let candidates = session.repricing_candidates(&sync.scope).await?;
    let mut cache = MergeCache::new();
    let mut ancestors = AncestorCache::default();
    for batch in candidates.chunks(sync.batch_size.max(1)) {
        if sync.stop.is_cancelled() {
            priced.interrupted = true;
            break;
        }
        let mut source = PricingSource::Staged(session);
        let accounts = read_batch(&mut source, batch, &mut ancestors, &mut priced.reads).await?;
        let queue = session.queued_pairs(batch, sync.now).await?;
        for stored in &accounts {
            let pricing = account_pricing(stored, sync, &mut Vec::new());
            let commit = match reprice(&pricing, &sync.priorities, sync.first_commit, &mut cache) {
                Ok(commit) => commit,
                Err(error) => {
                    skip(&mut priced.reads, stored.account.clone(), error.to_string());
                    continue;
                }
            };
            if !commit.has_changes() {
                continue;
            }
            let impact = match account_impact(
                stored.account.clone(),
                stored.reseller_id.clone(),
                &stored.last_computed,
                &commit.snapshot,
            ) {
                Ok(impact) => impact,
                Err(error) => {
                    skip(&mut priced.reads, stored.account.clone(), error.to_string());
                    continue;
                }
            };
            if let Some(impact) = &impact {
                let totals = priced.resellers.entry(impact.reseller.clone()).or_default();
                totals
                    .add(impact)
                    .map_err(|error| StoreError::Refused(format!("recurring totals per reseller: {error}")))?;
            }
            priced.accounts_changed += 1;
            for changed in &commit.changed {
                priced.invoices_changed += 1;
                let plan = delivery_plan(options, &stored.account, changed, &queue);
                match plan {
                    DeliveryPlan::CallFree => {}
                    DeliveryPlan::New => deliveries.new += 1,
                    DeliveryPlan::WaitsForConfiguration => deliveries.awaiting_configuration += 1,
                    DeliveryPlan::JoinsQueued => deliveries.joining_queued += 1,
                    DeliveryPlan::AfterInFlight(_) => deliveries.after_in_flight += 1,
                }
                let recurring_of = |invoices: &[Invoice]| {
                    invoices
                        .iter()
                        .find(|invoice| invoice.bookkeeper == changed.bookkeeper)
                        .map_or(Money::ZERO, |invoice| invoice.recurring)
                };
                sink.invoice(&InvoicePreview {
                    account: stored.account.clone(),
                    reseller: stored.reseller_id.clone(),
                    bookkeeper: changed.bookkeeper.clone(),
                    old_recurring: recurring_of(&stored.last_computed),
                    new_recurring: recurring_of(&commit.snapshot),
                    today: changed.today,
                    lines: impact
                        .iter()
                        .flat_map(|impact| &impact.lines)
                        .filter(|line| line.bookkeeper == changed.bookkeeper)
                        .cloned()
                        .collect(),
                    delivery: plan,
                })?;
            }
        }
    }
    Ok(priced)
}

/// What a changed invoice means for delivery: nothing for a call-free bookkeeper, else
/// a new delivery unless the same bookkeeper already has rows queued or a delivery in
/// flight (the unique in-flight rule of `store/deliveries.rs`).
fn delivery_plan(
    options: &PreviewOptions,
    account: &AccountId,
    changed: &Invoice,
    queue: &BTreeMap<(AccountId, BookkeeperRef), QueuedPair>,
) -> DeliveryPlan {
    match BookkeeperType::parse(&changed.bookkeeper.kind) {
        BookkeeperType::Default => return DeliveryPlan::CallFree,
        // An unsupported type is attempted too (and refused by the router), as sync leaves it pending.
        BookkeeperType::Http | BookkeeperType::Unsupported(_) => {}
    }
    match queue.get(&(account.clone(), changed.bookkeeper.clone())) {
        None if waits_for_configuration(options, &changed.bookkeeper) => DeliveryPlan::WaitsForConfiguration,
        None => DeliveryPlan::New,
        Some(QueuedPair::Queued) => DeliveryPlan::JoinsQueued,
        Some(QueuedPair::InFlight(state)) => DeliveryPlan::AfterInFlight(*state),
    }
}

/// Whether a delivery to `bookkeeper` would wait for its configuration rather than go.
fn waits_for_configuration(options: &PreviewOptions, bookkeeper: &BookkeeperRef) -> bool {
    match BookkeeperType::parse(&bookkeeper.kind) {
        BookkeeperType::Http => options.http_unconfigured.is_some(),
        BookkeeperType::Default | BookkeeperType::Unsupported(_) => false,
    }
}

fn skip(report: &mut SyncReport, account: AccountId, reason: String) {
    tracing::warn!(account_id = %account, %reason, "account skipped");
    report.skipped.push(SkippedAccount { account, reason });
}

fn amount(money: Money) -> serde_json::Value {
    serde_json::to_value(Amount(money)).expect("an amount is a JSON number")
}

fn bookkeeper_json(bookkeeper: &BookkeeperRef) -> serde_json::Value {
    serde_json::json!({ "type": bookkeeper.kind, "vendor_id": bookkeeper.vendor_id, "id": bookkeeper.id })
}

fn signed(money: Money) -> String {
    match money.amount().is_sign_negative() {
        true => money.to_string(),
        false => format!("+{money}"),
    }
}

impl InvoicePreview {
    /// One line of `--json` output: `{"record": "invoice", ...}`.
    pub fn to_json(&self) -> serde_json::Value {
        let lines: Vec<serde_json::Value> = self
            .lines
            .iter()
            .map(|line| {
                serde_json::json!({
                    "category": line.category.as_str(),
                    "item": line.item,
                    "plan_item": line.plan_item.as_str(),
                    "change": line.kind.as_str(),
                    "old": { "quantity": line.old.quantity, "billable": line.old.billable,
                             "rate": amount(line.old.rate), "total": amount(line.old_total) },
                    "new": { "quantity": line.new.quantity, "billable": line.new.billable,
                             "rate": amount(line.new.rate), "total": amount(line.new_total) },
                })
            })
            .collect();
        let in_flight = match self.delivery {
            DeliveryPlan::AfterInFlight(state) => Some(state.as_str()),
            DeliveryPlan::CallFree
            | DeliveryPlan::New
            | DeliveryPlan::WaitsForConfiguration
            | DeliveryPlan::JoinsQueued => None,
        };
        serde_json::json!({
            "record": "invoice",
            "account_id": self.account.as_str(),
            "reseller_id": self.reseller.as_str(),
            "bookkeeper": bookkeeper_json(&self.bookkeeper),
            "old_recurring": amount(self.old_recurring),
            "new_recurring": amount(self.new_recurring),
            "today": amount(self.today),
            "delivery": self.delivery.code(),
            "in_flight_state": in_flight,
            "items": lines,
        })
    }

    /// A block of text: the invoice's totals, then one line per changed item.
    pub fn to_text(&self) -> String {
        let difference = self
            .new_recurring
            .checked_sub(self.old_recurring)
            .map_or_else(|_| "?".to_owned(), signed);
        let mut text = format!(
            "invoice {} ({}) bookkeeper {}: recurring {} -> {} ({difference})",
            self.account, self.reseller, self.bookkeeper, self.old_recurring, self.new_recurring
        );
        if !self.today.is_zero() {
            text.push_str(&format!(", activation {}", self.today));
        }
        text.push_str(&format!("; delivery: {}", self.delivery.as_str()));
        if let DeliveryPlan::AfterInFlight(state) = self.delivery {
            text.push_str(&format!(" ({})", state.as_str()));
        }
        text.push('\n');
        for line in &self.lines {
            text.push_str(&format!(
                "    {}.{} {}: quantity {} -> {}, billable {} -> {}, rate {} -> {}, total {} -> {}\n",
                line.category,
                line.item,
                line.kind.as_str(),
                line.old.quantity,
                line.new.quantity,
                line.old.billable,
                line.new.billable,
                line.old.rate,
                line.new.rate,
                line.old_total,
                line.new_total
            ));
        }
        text
    }
}

/// Said of a delivery that would not go for want of configuration.
fn waiting_note(waits_for_configuration: bool) -> &'static str {
    match waits_for_configuration {
        true => ", waits for the HTTP bookkeeper's configuration",
        false => "",
    }
}

impl DeliveryPreview {
    /// One line of `--json` output: `{"record": "delivery", ...}`.
    pub fn to_json(&self) -> serde_json::Value {
        match self {
            DeliveryPreview::Retry {
                delivery: waiting,
                waits_for_configuration,
            } => serde_json::json!({
                "record": "delivery",
                "kind": "retry",
                "waits_for_configuration": waits_for_configuration,
                "delivery_id": waiting.delivery_id,
                "account_id": waiting.account,
                "bookkeeper": bookkeeper_json(&waiting.bookkeeper),
                "state": waiting.state.as_str(),
                "attempts": waiting.attempts,
                "last_error": waiting.last_error,
            }),
            DeliveryPreview::Queued {
                account,
                bookkeeper,
                waits_for_configuration,
                recurring,
                today,
                audit_rows,
            } => serde_json::json!({
                "record": "delivery",
                "kind": "queued",
                "waits_for_configuration": waits_for_configuration,
                "account_id": account.as_str(),
                "bookkeeper": bookkeeper_json(bookkeeper),
                "recurring": amount(*recurring),
                "today": amount(*today),
                "audit_rows": audit_rows,
            }),
            DeliveryPreview::Unreadable(unreadable) => serde_json::json!({
                "record": "delivery",
                "kind": "unreadable",
                "account_id": unreadable.account,
                "bookkeeper": bookkeeper_json(&unreadable.bookkeeper),
                "row": unreadable.row,
                "reason": unreadable.reason,
            }),
        }
    }

    /// One line of text.
    pub fn to_text(&self) -> String {
        match self {
            DeliveryPreview::Retry {
                delivery: waiting,
                waits_for_configuration,
            } => format!(
                "delivery (retry{}) {} bookkeeper {}: {} after {} attempt(s){}\n",
                waiting_note(*waits_for_configuration),
                waiting.account,
                waiting.bookkeeper,
                waiting.state.as_str(),
                waiting.attempts,
                waiting
                    .last_error
                    .as_ref()
                    .map_or_else(String::new, |error| format!("; last error: {error}"))
            ),
            DeliveryPreview::Queued {
                account,
                bookkeeper,
                waits_for_configuration,
                recurring,
                today,
                audit_rows,
            } => format!(
                "delivery (queued{}) {account} bookkeeper {bookkeeper}: recurring {recurring}, activation {today} \
                 ({audit_rows} audit row(s))\n",
                waiting_note(*waits_for_configuration)
            ),
            DeliveryPreview::Unreadable(unreadable) => format!(
                "delivery (unreadable) {} bookkeeper {}: {} cannot be read: {}\n",
                unreadable.account, unreadable.bookkeeper, unreadable.row, unreadable.reason
            ),
        }
    }
}

impl BillingPreview {
    /// Interrupted, else data errors (accounts or deliveries that could not be read or
    /// priced), else success: a dry run sends nothing, so nothing waits.
    pub fn end(&self) -> RunEnd {
        if self.interrupted {
            RunEnd::Interrupted
        } else if self.reconcile.is_partial() || !self.skipped.is_empty() || self.deliveries.unreadable > 0 {
            RunEnd::DataErrors
        } else {
            RunEnd::Succeeded
        }
    }

    pub fn figures(&self) -> RunFigures {
        let count = |value: usize| u64::try_from(value).unwrap_or(u64::MAX);
        RunFigures {
            accounts: self.reconcile.accounts_scanned,
            changes: self.reconcile.accounts_changed + count(self.invoices_changed),
            failures: count(self.reconcile.skipped.len() + self.skipped.len() + self.deliveries.unreadable),
        }
    }

    pub fn problems(&self) -> Option<String> {
        let mut problems = self.reconcile.problems();
        if !self.skipped.is_empty() {
            problems.push(format!("sync: {} account(s) skipped", self.skipped.len()));
        }
        if self.deliveries.unreadable > 0 {
            problems.push(format!("{} delivery(ies) unreadable", self.deliveries.unreadable));
        }
        if self.interrupted {
            problems.push("interrupted before the last account".to_owned());
        }
        joined(problems, "; ")
    }

    /// The closing summary as one JSON object (the last line of `--json`).
    pub fn to_json(&self) -> serde_json::Value {
        let resellers = crate::wire::impact::reseller_totals(&self.resellers);
        let deliveries = &self.deliveries;
        serde_json::json!({
            "record": "summary",
            "status": self.end().as_str(),
            "dry_run": true,
            "accounts_scanned": self.reconcile.accounts_scanned,
            "accounts_recounted_changed": self.reconcile.accounts_changed,
            "items_changed": self.reconcile.items_changed,
            "full_recount": self.reconcile.full_recount.as_ref().map(ToString::to_string),
            "accounts_repriced": self.accounts_repriced,
            "accounts_changed": self.accounts_changed,
            "invoices_changed": self.invoices_changed,
            "accounts_skipped": self.reconcile.skipped.len() + self.skipped.len(),
            "skipped": self.reconcile.skipped_json().as_array().into_iter().flatten().cloned()
                .chain(self.skipped.iter().map(|skipped| {
                    serde_json::json!({ "account_id": skipped.account.as_str(), "reason": skipped.reason })
                }))
                .collect::<Vec<_>>(),
            "deliveries": deliveries.sent(),
            "deliveries_retried": deliveries.retries,
            "deliveries_queued": deliveries.queued,
            "deliveries_new": deliveries.new,
            "deliveries_awaiting_configuration": deliveries.awaiting_configuration,
            "invoices_joining_queued": deliveries.joining_queued,
            "invoices_after_in_flight": deliveries.after_in_flight,
            "deliveries_unreadable": deliveries.unreadable,
            "recurring_difference_by_reseller": resellers,
            "interrupted": self.interrupted,
            "duration_ms": u64::try_from(self.duration.as_millis()).unwrap_or(u64::MAX),
        })
    }

    /// The closing summary for people.
    pub fn to_text(&self) -> String {
        let deliveries = &self.deliveries;
        let mut text = format!(
            "billing dry run ({}; nothing written): {} accounts scanned, {} with quantities to change ({} items); \
             {} accounts repriced, {} would change ({} invoices); {} deliveries would be sent \
             ({} retried, {} queued, {} new); {} accounts skipped; {} ms\n",
            self.end().as_str(),
            self.reconcile.accounts_scanned,
            self.reconcile.accounts_changed,
            self.reconcile.items_changed,
            self.accounts_repriced,
            self.accounts_changed,
            self.invoices_changed,
            deliveries.sent(),
            deliveries.retries,
            deliveries.queued,
            deliveries.new,
            self.reconcile.skipped.len() + self.skipped.len(),
            self.duration.as_millis()
        );
        if deliveries.awaiting_configuration > 0 {
            text.push_str(&format!(
                "  {} delivery(ies) would wait for the HTTP bookkeeper's configuration ([bookkeepers.http] http_url)\n",
                deliveries.awaiting_configuration
            ));
        }
        if deliveries.joining_queued + deliveries.after_in_flight > 0 {
            text.push_str(&format!(
                "  {} changed invoice(s) join a queued delivery, {} wait behind a delivery in flight\n",
                deliveries.joining_queued, deliveries.after_in_flight
            ));
        }
        for skipped in &self.reconcile.skipped {
            text.push_str(&format!(
                "  skipped by reconcile: {}: {}\n",
                skipped.account, skipped.reason
            ));
        }
        for skipped in &self.skipped {
            text.push_str(&format!("  skipped by sync: {}: {}\n", skipped.account, skipped.reason));
        }
        if !self.resellers.is_empty() {
            text.push_str("recurring total of the changed accounts per reseller:\n");
            for (reseller, totals) in &self.resellers {
                text.push_str(&format!(
                    "  {}  {:>12} -> {:>12}  {:>12}  ({} accounts)\n",
                    reseller,
                    totals.old_recurring.to_string(),
                    totals.new_recurring.to_string(),
                    signed(totals.difference),
                    totals.accounts
                ));
            }
        }
        text
    }
}
