//! The bookkeeper-sync job: deliver what the sync job queued, and record each answer.
//!
//! Every (account, bookkeeper) with pending audit rows gets one delivery: the latest
//! invoice annotated against what the bookkeeper last acknowledged, with the
//! activation lines of all pending rows (`sync-and-bookkeepers.md` §5.4). The delivery
//! is frozen (body and idempotency key stored) before its first attempt and resent
//! byte for byte until the bookkeeper answers 200 or 402, so a lost response can never
//! turn into a second charge. Deliveries run in parallel up to a bound; a failure
//! waits for its retry time, and after the policy's last attempt it is reported.

use crate::bookkeepers::{
    Bookkeeper, Bookkeepers, DeliveryOutcome, DeliveryRequest, RetryDecision, RetryPolicy, SyncId,
};
use crate::domain::changes::delivery;
use crate::domain::plan::BookkeeperRef;
use crate::domain::summary::GregorianSeconds;
use crate::domain::AccountId;
use crate::store::{DeliveryResult, DueDelivery, NewDelivery, Store, StoreError};
use crate::wire::bookkeeper::DeliveryBody;
use chrono::{DateTime, Utc};
use futures_util::stream::{self, StreamExt};
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

/// A retry time that never comes: the delivery waits for an operator.
const NEVER: i64 = i64::MAX / 2;

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
    /// Cancelled on shutdown or at the time limit: deliveries in flight finish and are
    /// recorded, no new round starts.
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
    pub deliveries: usize,
    pub acknowledged: usize,
    pub refused: usize,
    pub failed: Vec<FailedDelivery>,
    /// Stopped before everything due was delivered.
    pub interrupted: bool,
    pub duration: Duration,
}

impl BookkeeperSyncReport {
    /// Some deliveries are left to retry or to look at.
    pub fn has_failures(&self) -> bool {
        !self.failed.is_empty()
    }
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

pub async fn run_once(
    store: &Store,
    bookkeepers: &Bookkeepers,
    options: &BookkeeperSyncOptions,
) -> Result<BookkeeperSyncReport, StoreError> {
    let started = Instant::now();
    let mut report = BookkeeperSyncReport::default();
    let lease_seconds = i64::try_from(options.lease.as_secs()).unwrap_or(i64::MAX);
    let lease_until = GregorianSeconds(options.now.0.saturating_add(lease_seconds));
    loop {
        if options.stop.is_cancelled() {
            report.interrupted = true;
            break;
        }
        let due = store
            .due_deliveries(
                options.now,
                lease_until,
                options.batch_size.max(1),
                options.account.as_ref(),
            )
            .await?;
        if due.is_empty() {
            break;
        }
        let mut attempts = Vec::with_capacity(due.len());
        let mut fresh = Vec::new();
        let mut frozen = Vec::new();
        for work in due {
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
                Prepared::Invalid(failure) => report.failed.push(failure),
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
        if attempts.is_empty() {
            // Everything due was taken by another worker or could not be built.
            break;
        }
        let outcomes: Vec<(Attempt, DeliveryOutcome)> = stream::iter(attempts)
            .map(|attempt| async move {
                let outcome = bookkeepers.deliver(&attempt.request).await;
                (attempt, outcome)
            })
            .buffer_unordered(options.parallelism.max(1))
            .collect()
            .await;
        let results: Vec<(String, DeliveryResult)> = outcomes
            .into_iter()
            .map(|(attempt, outcome)| {
                report.deliveries += 1;
                let result = record(&attempt, outcome, options, &mut report);
                (attempt.delivery_id, result)
            })
            .collect();
        store.record_delivery_results(&results, options.now).await?;
    }
    report.duration = started.elapsed();
    Ok(report)
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
            let activations = pending
                .iter()
                .flat_map(|(_, invoice)| invoice.activation_charges.iter().cloned())
                .collect();
            let invalid = |error: String| {
                Prepared::Invalid(FailedDelivery {
                    account: account.clone(),
                    bookkeeper: bookkeeper.clone(),
                    error,
                    attempts: 0,
                    needs_attention: true,
                })
            };
            let built = match delivery(latest.as_deref(), last_acknowledged.as_deref(), activations) {
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
            report.acknowledged += 1;
            tracing::debug!(account_id = %attempt.account, bookkeeper = %attempt.bookkeeper, "delivered");
            DeliveryResult::Acknowledged {
                response_code,
                standing: acknowledgement.standing.status(),
            }
        }
        DeliveryOutcome::SyncedNotInGoodStanding(refusal) => {
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
        DeliveryOutcome::NotSynced(error) => {
            let attempts = attempt.attempts.saturating_add(1);
            let failed_attempts = u32::try_from(attempts).unwrap_or(u32::MAX);
            let decision = options.retry.after_failure(&error, failed_attempts, utc(options.now));
            let next_attempt_at = match decision {
                RetryDecision::RetryAt(time) => GregorianSeconds::from_utc(time).0,
                RetryDecision::NeedsAttention => NEVER,
            };
            let needs_attention = matches!(decision, RetryDecision::NeedsAttention);
            tracing::warn!(account_id = %attempt.account, bookkeeper = %attempt.bookkeeper, %error, attempts,
                needs_attention, "delivery not taken");
            report.failed.push(FailedDelivery {
                account: attempt.account.clone(),
                bookkeeper: attempt.bookkeeper.clone(),
                error: error.to_string(),
                attempts,
                needs_attention,
            });
            DeliveryResult::NotTaken {
                response_code,
                error: format!("{}: {error}", error.code()),
                next_attempt_at,
            }
        }
    }
}

fn utc(time: GregorianSeconds) -> DateTime<Utc> {
    DateTime::from_timestamp(time.unix(), 0).unwrap_or(DateTime::<Utc>::MIN_UTC)
}
