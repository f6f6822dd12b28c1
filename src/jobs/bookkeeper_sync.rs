//! The bookkeeper-sync job: deliver what the sync job queued, and record each answer.
//!
//! Every (account, bookkeeper) with pending audit rows gets one delivery: the latest
//! invoice annotated against what the bookkeeper last acknowledged, with the
//! activation lines of all pending rows (`sync-and-bookkeepers.md` §5.4). The delivery
//! is frozen (body and idempotency key stored) before its first attempt and resent
//! byte for byte until the bookkeeper answers 200 or 402, so a lost response can never
//! turn into a second charge. Deliveries run in parallel up to a bound, in batches
//! pipelined with the store (one batch on the wire while the previous one is recorded
//! and the next one frozen); a failure waits for its retry time, and after the
//! policy's last attempt it is reported. A delivery whose stored rows cannot be read
//! is skipped and named (row and reason) once per run; the others go on.
//!
//! A run ends by counting what it leaves waiting (leased by another worker, waiting
//! for a retry, for a bookkeeper's configuration, or for an operator): a run that
//! leaves deliveries pending is not a success, whatever it delivered itself. A
//! bookkeeper that is not configured spends no attempts and gets one warning per run.

use crate::bookkeepers::{
    Bookkeeper, Bookkeepers, DeliveryError, DeliveryOutcome, DeliveryRequest, RetryDecision, RetryPolicy,
    RetryableError, SyncId,
};
use crate::domain::changes::{delivery, Delivery};
use crate::domain::invoice::Invoice;
use crate::domain::money::MoneyOverflow;
use crate::domain::plan::BookkeeperRef;
use crate::domain::summary::GregorianSeconds;
use crate::domain::AccountId;
use crate::store::{
    DeliveryResult, DueDelivery, NewDelivery, PendingCursor, PendingDeliveries, Store, StoreError, UnreadableDelivery,
    NEVER,
};
use crate::wire::bookkeeper::DeliveryBody;
use chrono::{DateTime, Utc};
use futures_util::stream::{self, StreamExt};
use std::collections::HashSet;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

#[derive(Debug, Clone)]
pub struct BookkeeperSyncOptions {
    pub now: GregorianSeconds,
    /// Deliveries taken per round.
    pub batch_size: usize,
    /// Deliveries in flight at once.
    pub parallelism: usize,
    /// How long a worker owns the deliveries it took.
    pub lease: Duration,
    pub retry: RetryPolicy,
    /// Deliver only this account's invoices (the API's synchronisation of one account).
    pub account: Option<AccountId>,
    /// Cancelled on shutdown or at the time limit: deliveries in flight (and the batch
    /// already frozen behind them) finish and are recorded, no new batch is taken.
    pub stop: CancellationToken,
}

/// A delivery that did not go through.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FailedDelivery {
    pub account: AccountId,
    pub bookkeeper: BookkeeperRef,
    pub error: String,
    /// Attempts made so far, this one included.
    pub attempts: i64,
    /// No automatic retry is left: an operator must look.
    pub needs_attention: bool,
}

#[derive(Debug, Clone, Default)]
pub struct BookkeeperSyncReport {
    /// Deliveries attempted (not those waiting for configuration).
    pub deliveries: usize,
    pub acknowledged: usize,
    pub refused: usize,
    pub failed: Vec<FailedDelivery>,
    /// Deliveries skipped because a stored row they need cannot be read (each named,
    /// with why); the others were delivered.
    pub unreadable: Vec<UnreadableDelivery>,
    /// Deliveries not attempted because their bookkeeper is not configured.
    pub awaiting_configuration: usize,
    /// Stopped before everything due was delivered.
    pub interrupted: bool,
    /// What is left waiting when the run ends, whoever holds it.
    pub pending: PendingDeliveries,
    pub duration: Duration,
}

impl BookkeeperSyncReport {
    /// The run ends as a temporary failure: a delivery failed or could not be read, or
    /// deliveries are left waiting (leased elsewhere, for a retry, for configuration,
    /// for an operator).
    pub fn has_failures(&self) -> bool {
        !self.failed.is_empty() || !self.unreadable.is_empty() || self.pending.total() > 0
    }

    /// What kept the run from delivering everything, for the run record's message.
    pub fn problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        if !self.failed.is_empty() {
            problems.push(format!("{} delivery(ies) failed", self.failed.len()));
        }
        if !self.unreadable.is_empty() {
            problems.push(format!("{} delivery(ies) unreadable", self.unreadable.len()));
        }
        let waiting = self.pending.total();
        if waiting > 0 {
            let configuration = match self.pending.awaiting_configuration {
                0 => String::new(),
                count => format!(", {count} for the bookkeeper's configuration"),
            };
            problems.push(format!("{waiting} delivery(ies) waiting{configuration}"));
        }
        if self.interrupted {
            problems.push("interrupted before the last delivery".to_owned());
        }
        problems
    }

    /// The report as one JSON object (`--json`).
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "deliveries": self.deliveries,
            "acknowledged": self.acknowledged,
            "refused": self.refused,
            "failed": self.failed.len(),
            "needs_attention": self.failed.iter().filter(|failure| failure.needs_attention).count(),
            "awaiting_configuration": self.awaiting_configuration,
            "unreadable": self.unreadable.iter().map(|skipped| serde_json::json!({
                "row": skipped.row,
                "account_id": skipped.account,
                "bookkeeper": skipped.bookkeeper.to_string(),
                "reason": skipped.reason,
            })).collect::<Vec<_>>(),
            "pending": pending_json(&self.pending),
            "duration_ms": u64::try_from(self.duration.as_millis()).unwrap_or(u64::MAX),
        })
    }

    /// The report for people: one line, and one more when deliveries are left waiting.
    pub fn to_text(&self) -> String {
        let mut text = format!(
            "bookkeeper-sync: {} deliveries, {} acknowledged, {} refused, {} failed, {} ms\n",
            self.deliveries,
            self.acknowledged,
            self.refused,
            self.failed.len(),
            self.duration.as_millis()
        );
        for skipped in &self.unreadable {
            text.push_str(&format!(
                "skipped: account {} bookkeeper {}: {} cannot be read: {}\n",
                skipped.account, skipped.bookkeeper, skipped.row, skipped.reason
            ));
        }
        if let Some(line) = pending_text(&self.pending) {
            text.push_str(&line);
            text.push('\n');
        }
        text
    }
}

/// The pending figures as JSON: the count by reason and the next attempt time.
pub fn pending_json(pending: &PendingDeliveries) -> serde_json::Value {
    serde_json::json!({
        "total": pending.total(),
        "leased": pending.leased,
        "waiting_retry": pending.waiting_retry,
        "due": pending.due,
        "awaiting_configuration": pending.awaiting_configuration,
        "failed": pending.failed,
        "queued": pending.queued,
        "next_attempt_at": pending.next_attempt_at.map(rfc3339),
    })
}

/// "pending deliveries: …" when any are left, else `None`.
pub fn pending_text(pending: &PendingDeliveries) -> Option<String> {
    if pending.total() == 0 {
        return None;
    }
    let reasons = [
        (pending.leased, "leased by another worker"),
        (pending.waiting_retry, "waiting for a retry"),
        (pending.due, "due"),
        (
            pending.awaiting_configuration,
            "waiting for the bookkeeper's configuration",
        ),
        (pending.failed, "failed, waiting for `tally deliveries retry`"),
        (pending.queued, "queued behind a delivery in flight"),
    ];
    let listed: Vec<String> = reasons
        .iter()
        .filter(|(count, _)| *count > 0)
        .map(|(count, reason)| format!("{count} {reason}"))
        .collect();
    let next = match pending.next_attempt_at {
        Some(time) => format!("; next attempt at {}", rfc3339(time)),
        None => String::new(),
    };
    Some(format!(
        "pending deliveries: {} ({}){next}",
        pending.total(),
        listed.join(", ")
    ))
}

/// A Gregorian-seconds time as RFC 3339 UTC.
pub fn rfc3339(time: GregorianSeconds) -> String {
    utc(time).to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// One delivery ready to send.
struct Attempt {
    delivery_id: String,
    account: AccountId,
    bookkeeper: BookkeeperRef,
    request: DeliveryRequest,
    /// Attempts before this one.
    attempts: i64,
}

/// The tables bookkeeper-sync reads by account and status.
const DELIVERY_TABLES: &[&str] = &["audit_logs", "deliveries", "invoice_snapshots", "services"];

pub async fn run_once(
    store: &Store,
    bookkeepers: &Bookkeepers,
    options: &BookkeeperSyncOptions,
) -> Result<BookkeeperSyncReport, StoreError> {
    let started = Instant::now();
    let mut report = BookkeeperSyncReport::default();
    let lease_seconds = i64::try_from(options.lease.as_secs()).unwrap_or(i64::MAX);
    let lease_until = GregorianSeconds(options.now.0.saturating_add(lease_seconds));
    // Sync may have just written most of what this run reads (every row of a first
    // night): the planner must not take those tables for what they were before.
    store.refresh_statistics(DELIVERY_TABLES).await?;
    store
        .wake_awaiting_configuration(options.now, options.account.as_ref())
        .await?;
    // A pipeline: while one batch is on the wire, the store records the batch before it
    // and freezes the batch after it. Each batch is frozen (committed) before it is
    // sent and recorded after its answers, so a worker dying at any point leaves only
    // leased deliveries that are resent with the same bytes and key.
    let mut queue = Queue::default();
    let mut batch = take_batch(store, options, lease_until, &mut queue, &mut report).await?;
    let mut answered: Vec<(Attempt, DeliveryOutcome)> = Vec::new();
    while !(batch.is_empty() && answered.is_empty() && queue.exhausted) {
        let sending = tokio::spawn(send(bookkeepers.clone(), batch, options.parallelism.max(1)));
        let store_work = async {
            record_batch(store, answered, options, &mut report).await?;
            take_batch(store, options, lease_until, &mut queue, &mut report).await
        };
        let (outcomes, following) = tokio::join!(sending, store_work);
        answered = match outcomes {
            Ok(outcomes) => outcomes,
            Err(error) => std::panic::resume_unwind(error.into_panic()),
        };
        batch = following?;
    }
    if report.awaiting_configuration > 0 {
        tracing::warn!(
            deliveries = report.awaiting_configuration,
            "HTTP bookkeeper is not configured ([bookkeepers.http] http_url): its deliveries wait, \
             without spending attempts, and go out on the first run after it is set"
        );
    }
    report.pending = store.pending_deliveries(options.now, options.account.as_ref()).await?;
    report.duration = started.elapsed();
    Ok(report)
}

/// Where the run is in what is due.
#[derive(Default)]
struct Queue {
    /// The pass's place among the pending (account, bookkeeper) pairs.
    cursor: Option<PendingCursor>,
    /// Retries were taken in this pass: once they are answered, rows queued behind
    /// them may go, so the pass ends by starting over once.
    retries_taken: bool,
    /// Nothing more is due (or the run was asked to stop).
    exhausted: bool,
    /// Deliveries already reported as not buildable, so that a pass starting over does
    /// not report them twice.
    reported: HashSet<String>,
}

/// Takes the next batch of due deliveries, builds their requests and freezes the new
/// ones; an empty batch when nothing more is due. Deliveries that cannot be built are
/// reported once and the rest go on.
async fn take_batch(
    store: &Store,
    options: &BookkeeperSyncOptions,
    lease_until: GregorianSeconds,
    queue: &mut Queue,
    report: &mut BookkeeperSyncReport,
) -> Result<Vec<Attempt>, StoreError> {
    loop {
        if queue.exhausted {
            return Ok(Vec::new());
        }
        if options.stop.is_cancelled() {
            report.interrupted = true;
            queue.exhausted = true;
            return Ok(Vec::new());
        }
        let due = store
            .due_deliveries(
                options.now,
                lease_until,
                options.batch_size.max(1),
                options.account.as_ref(),
                queue.cursor.as_ref(),
            )
            .await?;
        if due.is_empty() {
            if queue.retries_taken {
                // Start over once the retries in flight are recorded (the next round).
                queue.cursor = None;
                queue.retries_taken = false;
                return Ok(Vec::new());
            }
            queue.exhausted = true;
            return Ok(Vec::new());
        }
        queue.retries_taken |= due.retries > 0;
        queue.cursor = due.cursor;
        for unreadable in due.unreadable {
            if queue.reported.insert(format!(
                "{}/{}/{}",
                unreadable.row, unreadable.account, unreadable.bookkeeper
            )) {
                tracing::warn!(row = %unreadable.row, account_id = %unreadable.account,
                    bookkeeper = %unreadable.bookkeeper, reason = %unreadable.reason,
                    "delivery skipped: a stored row cannot be read");
                report.unreadable.push(unreadable);
            }
        }
        let mut attempts = Vec::with_capacity(due.deliveries.len());
        let mut fresh = Vec::new();
        let mut frozen = Vec::new();
        for work in due.deliveries {
            match prepare(work) {
                Prepared::Ready { attempt, frozen: None } => attempts.push(*attempt),
                Prepared::Ready {
                    attempt,
                    frozen: Some(delivery),
                } => {
                    fresh.push(*attempt);
                    frozen.push(*delivery);
                }
                Prepared::Skipped => {}
                Prepared::Invalid(failure) => {
                    if queue
                        .reported
                        .insert(format!("{}/{}", failure.account, failure.bookkeeper))
                    {
                        report.failed.push(failure);
                    }
                }
            }
        }
        // New deliveries are frozen before their first attempt; one another worker
        // froze first is left to it.
        let created = store.create_deliveries(&frozen, options.now, lease_until).await?;
        attempts.extend(
            fresh
                .into_iter()
                .zip(created)
                .filter_map(|(attempt, created)| created.then_some(attempt)),
        );
        if !attempts.is_empty() {
            return Ok(attempts);
        }
        // Everything in this batch was taken by another worker or could not be built:
        // the pass goes on after it.
    }
}

/// Sends a batch, up to `parallelism` at once. Spawned, so the answers come in while
/// the job's own task builds the next batch.
async fn send(bookkeepers: Bookkeepers, batch: Vec<Attempt>, parallelism: usize) -> Vec<(Attempt, DeliveryOutcome)> {
    let bookkeepers = &bookkeepers;
    stream::iter(batch)
        .map(|attempt| async move {
            let outcome = bookkeepers.deliver(&attempt.request).await;
            (attempt, outcome)
        })
        .buffer_unordered(parallelism)
        .collect()
        .await
}

/// Records a batch's answers in one store transaction, counted in the report.
async fn record_batch(
    store: &Store,
    answered: Vec<(Attempt, DeliveryOutcome)>,
    options: &BookkeeperSyncOptions,
    report: &mut BookkeeperSyncReport,
) -> Result<(), StoreError> {
    let results: Vec<(String, DeliveryResult)> = answered
        .into_iter()
        .map(|(attempt, outcome)| {
            let result = record(&attempt, outcome, options, report);
            (attempt.delivery_id, result)
        })
        .collect();
    store.record_delivery_results(&results, options.now).await
}

enum Prepared {
    /// Ready to send; a new delivery carries what must be frozen before it is sent.
    Ready {
        attempt: Box<Attempt>,
        frozen: Option<Box<NewDelivery>>,
    },
    /// Nothing to deliver.
    Skipped,
    /// Stored data that cannot make a request: reported, the rest goes on.
    Invalid(FailedDelivery),
}

/// Builds the request of one due delivery: a retry from its stored bytes, a new one
/// from the snapshots and pending rows (`sync-and-bookkeepers.md` §5.4).
fn prepare(work: DueDelivery) -> Prepared {
    match work {
        DueDelivery::Retry {
            delivery_id,
            account,
            bookkeeper,
            body,
            attempts,
        } => {
            let request = SyncId::parse(delivery_id.as_str())
                .and_then(|sync_id| DeliveryRequest::from_stored_body(account.clone(), sync_id, body));
            match request {
                Ok(request) => Prepared::Ready {
                    attempt: Box::new(Attempt {
                        delivery_id,
                        account,
                        bookkeeper,
                        request,
                        attempts,
                    }),
                    frozen: None,
                },
                Err(error) => Prepared::Invalid(FailedDelivery {
                    account,
                    bookkeeper,
                    error: error.to_string(),
                    attempts,
                    needs_attention: true,
                }),
            }
        }
        DueDelivery::New {
            account,
            bookkeeper,
            latest,
            last_acknowledged,
            pending,
        } => {
            let Some((sync_id, _)) = pending.last() else {
                return Prepared::Skipped;
            };
            let delivery_id = sync_id.clone();
            let invalid = |error: String| {
                Prepared::Invalid(FailedDelivery {
                    account: account.clone(),
                    bookkeeper: bookkeeper.clone(),
                    error,
                    attempts: 0,
                    needs_attention: true,
                })
            };
            let built = match new_delivery(latest.as_deref(), last_acknowledged.as_deref(), &pending) {
                Ok(Some(built)) => built,
                Ok(None) => return Prepared::Skipped,
                Err(error) => return invalid(format!("delivery amounts: {error}")),
            };
            let body = DeliveryBody::new(account.as_str(), &delivery_id, &built.invoice);
            let request = match SyncId::parse(delivery_id.as_str())
                .and_then(|sync_id| DeliveryRequest::new(account.clone(), sync_id, &body))
            {
                Ok(request) => request,
                Err(error) => return invalid(error.to_string()),
            };
            let frozen = NewDelivery {
                delivery_id: delivery_id.clone(),
                account: account.clone(),
                bookkeeper: bookkeeper.clone(),
                idempotency_key: request.idempotency_key().as_str().to_owned(),
                body: request.body().as_bytes().to_vec(),
                acknowledged: built.acknowledged,
                audit_ids: pending.iter().map(|(id, _)| id.clone()).collect(),
            };
            Prepared::Ready {
                attempt: Box::new(Attempt {
                    delivery_id,
                    account,
                    bookkeeper,
                    request,
                    attempts: 0,
                }),
                frozen: Some(Box::new(frozen)),
            }
        }
    }
}

/// What an outcome means for the store (`sync-and-bookkeepers.md` §5.3), counted in
/// the report.
fn record(
    attempt: &Attempt,
    outcome: DeliveryOutcome,
    options: &BookkeeperSyncOptions,
    report: &mut BookkeeperSyncReport,
) -> DeliveryResult {
    let response_code = outcome.response_code();
    match outcome {
        DeliveryOutcome::Synced(acknowledgement) => {
            report.deliveries += 1;
            report.acknowledged += 1;
            tracing::debug!(account_id = %attempt.account, bookkeeper = %attempt.bookkeeper, "delivered");
            DeliveryResult::Acknowledged {
                response_code,
                standing: acknowledgement.standing.status(),
            }
        }
        DeliveryOutcome::SyncedNotInGoodStanding(refusal) => {
            report.deliveries += 1;
            report.refused += 1;
            tracing::debug!(account_id = %attempt.account, bookkeeper = %attempt.bookkeeper, reason = %refusal.reason,
                "delivered, payment refused");
            DeliveryResult::Refused {
                response_code,
                standing: refusal.standing.status(),
                reason: refusal.reason,
                message: refusal.message,
            }
        }
        DeliveryOutcome::NotSynced(DeliveryError::Retryable(RetryableError::NotConfigured { reason })) => {
            report.awaiting_configuration += 1;
            DeliveryResult::AwaitingConfiguration {
                error: format!("bookkeeper not configured: {reason}"),
            }
        }
        DeliveryOutcome::NotSynced(error) => {
            report.deliveries += 1;
            let attempts = attempt.attempts.saturating_add(1);
            let failed_attempts = u32::try_from(attempts).unwrap_or(u32::MAX);
            let decision = options.retry.after_failure(&error, failed_attempts, utc(options.now));
            let next_attempt_at = match decision {
                RetryDecision::RetryAt(time) => GregorianSeconds::from_utc(time).0,
                RetryDecision::NeedsAttention => NEVER,
            };
            let needs_attention = matches!(decision, RetryDecision::NeedsAttention);
            tracing::warn!(account_id = %attempt.account, bookkeeper = %attempt.bookkeeper,
                delivery_id = %attempt.delivery_id, %error, attempts, needs_attention, "delivery not taken");
            report.failed.push(FailedDelivery {
                account: attempt.account.clone(),
                bookkeeper: attempt.bookkeeper.clone(),
                error: error.to_string(),
                attempts,
                needs_attention,
            });
            DeliveryResult::NotTaken {
                response_code,
                code: error.code(),
                error: format!("{}: {error}", error.code()),
                next_attempt_at,
            }
        }
    }
}

fn utc(time: GregorianSeconds) -> DateTime<Utc> {
    DateTime::from_timestamp(time.unix(), 0).unwrap_or(DateTime::<Utc>::MIN_UTC)
}

/// The delivery bookkeeper-sync builds from a bookkeeper's pending audit rows: the
/// latest invoice annotated against the last acknowledged one, with the activation
/// lines of every pending row (`sync-and-bookkeepers.md` §5.4). The billing dry run
/// previews it with the same call.
pub(crate) fn new_delivery(
    latest: Option<&Invoice>,
    last_acknowledged: Option<&Invoice>,
    pending: &[(String, Invoice)],
) -> Result<Option<Delivery>, MoneyOverflow> {
    let activations = pending
        .iter()
        .flat_map(|(_, invoice)| invoice.activation_charges.iter().cloned())
        .collect();
    delivery(latest, last_acknowledged, activations)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pending_line_names_each_reason_and_the_next_attempt() {
        let pending = PendingDeliveries {
            leased: 2,
            waiting_retry: 3,
            awaiting_configuration: 1,
            next_attempt_at: Some(GregorianSeconds::from_utc(
                DateTime::from_timestamp(1_795_000_000, 0).expect("a valid time"),
            )),
            ..PendingDeliveries::default()
        };

        assert_eq!(
            pending_text(&pending).as_deref(),
            Some(
                "pending deliveries: 6 (2 leased by another worker, 3 waiting for a retry, \
                 1 waiting for the bookkeeper's configuration); next attempt at 2026-11-18T11:06:40Z"
            )
        );
        assert_eq!(pending_json(&pending)["total"], 6);
        assert_eq!(pending_text(&PendingDeliveries::default()), None);
    }

    #[test]
    fn a_run_leaving_deliveries_pending_is_a_temporary_failure_even_with_none_failed() {
        let report = BookkeeperSyncReport {
            pending: PendingDeliveries {
                leased: 1,
                ..PendingDeliveries::default()
            },
            ..BookkeeperSyncReport::default()
        };
        assert!(report.failed.is_empty());
        assert!(report.has_failures());
        assert!(!BookkeeperSyncReport::default().has_failures());
    }
}
