//! Top-up (`sync-and-bookkeepers.md` §10): the sale-or-credit step shared by the
//! manual operation and the daily `topup` job, and the job itself.
//!
//! The job reads every account with top-up settings in one set-based pass (balance and
//! daily limit included), lets the domain decide ([`crate::domain::topup::decide`]),
//! and tops up the accounts due one by one: one account's failure is reported and the
//! others go on. It does nothing unless `[topup] enable` is true.

use crate::bookkeepers::sale::{SaleOutcome, SaleRequest};
use crate::bookkeepers::{BookkeeperType, Bookkeepers};
use crate::domain::plan::BookkeeperRef;
use crate::domain::summary::GregorianSeconds;
use crate::domain::topup::{decide, parse_dollars, AutomaticTopup, Decision, SkipReason, TopupSettings, Trigger};
use crate::domain::AccountId;
use crate::runs::{RunEnd, RunFigures, RunOutcome};
use crate::store::{
    LedgerRow, NewLedger, NewTransaction, Store, StoreError, TopupAccount, TransactionRow, TransactionStatus,
};
use serde_json::json;
use sha2::{Digest, Sha256};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// The ledger source of top-ups.
pub const PAYMENTS: &str = "payments";
/// The daily limit's window.
pub const DAY_SECONDS: i64 = 86_400;

/// The bookkeeper type that sells an account's top-ups: the services-level type, else
/// `master_account_bookkeeper` when the master bills the account, else `default` (as
/// the sync job's default bookkeeper).
pub fn bookkeeper_type(account: &TopupAccount, master_account_bookkeeper: &str) -> BookkeeperType {
    match &account.bookkeeper_type {
        Some(kind) => BookkeeperType::parse(kind),
        None if account.billed_by_master => BookkeeperType::parse(master_account_bookkeeper),
        None => BookkeeperType::parse(BookkeeperRef::DEFAULT_KIND),
    }
}

/// One top-up to make (§10 step 4).
#[derive(Debug, Clone, PartialEq)]
pub struct TopupRequest {
    pub account: AccountId,
    pub units: i64,
    pub trigger: Trigger,
    pub bookkeeper: BookkeeperType,
    /// Who asked (the caller's audit object); `None` for the job.
    pub audit: Option<serde_json::Value>,
    pub now: GregorianSeconds,
}

/// What came of a top-up.
#[derive(Debug, Clone, PartialEq)]
pub enum TopupResult {
    /// The ledger was credited: after a completed sale (`transaction`), or directly
    /// when the bookkeeper cannot sell.
    Credited {
        ledger: Box<LedgerRow>,
        transaction: Option<Box<TransactionRow>>,
    },
    /// The sale did not complete; no ledger. The transaction is recorded with its status.
    NotCompleted { transaction: Box<TransactionRow> },
}

/// Sells (or credits directly) and records: the transaction is written `incomplete`
/// before the bookkeeper is asked, then settled with its ledger in one transaction.
pub async fn top_up(
    store: &Store,
    bookkeepers: &Bookkeepers,
    request: &TopupRequest,
) -> Result<TopupResult, StoreError> {
    let trigger = request.trigger;
    let automatic = trigger == Trigger::Automatic;
    let mut ledger = NewLedger {
        id: new_id(&request.account, request.now),
        account: request.account.clone(),
        amount_units: request.units,
        source_service: PAYMENTS.to_owned(),
        source_id: new_id(&request.account, request.now),
        description: trigger.description().to_owned(),
        trigger: Some(trigger.as_str().to_owned()),
        transaction_id: None,
        created_at: request.now,
        metadata: if automatic {
            json!({ "automatic_description": true })
        } else {
            json!({})
        },
        audit: request.audit.clone(),
    };
    let sales = bookkeepers.sales();
    if !sales.sells(&request.bookkeeper) {
        store.credit_ledger(&ledger).await?;
        return Ok(TopupResult::Credited {
            ledger: Box::new(ledger_row(&ledger)),
            transaction: None,
        });
    }

    let transaction = NewTransaction {
        id: new_id(&request.account, request.now),
        account: request.account.clone(),
        amount_units: request.units,
        description: trigger.description().to_owned(),
        trigger: trigger.as_str().to_owned(),
        bookkeeper_type: request.bookkeeper.as_str().to_owned(),
        created_at: request.now,
        metadata: if automatic {
            json!({ "automatic_description": true })
        } else {
            json!({})
        },
        audit: request.audit.clone(),
    };
    store.start_transaction(&transaction).await?;
    let sale = SaleRequest {
        account_id: request.account.clone(),
        transaction_id: transaction.id.clone(),
        amount_units: request.units,
        description: transaction.description.clone(),
        trigger: transaction.trigger.clone(),
    };
    let (status, failure) = match sales.sell(&request.bookkeeper, &sale).await {
        SaleOutcome::Completed { .. } => (TransactionStatus::Completed, None),
        // `sells` said this type sells; an adapter that cannot after all fails the sale.
        SaleOutcome::NoSaleCapability => (
            TransactionStatus::Failed,
            Some(("invalid_bookkeeper".to_owned(), "the bookkeeper cannot sell".to_owned())),
        ),
        SaleOutcome::NotCompleted(failure) => (
            // No answer: the bookkeeper may have charged it; the row stays incomplete.
            match failure.response_code {
                Some(_) => TransactionStatus::Failed,
                None => TransactionStatus::Incomplete,
            },
            Some((failure.reason, failure.message)),
        ),
    };
    let completed = status == TransactionStatus::Completed;
    if completed {
        ledger.source_id = transaction.id.clone();
        ledger.transaction_id = Some(transaction.id.clone());
        if let Some(metadata) = ledger.metadata.as_object_mut() {
            metadata.insert(
                "transaction".to_owned(),
                json!({ "id": transaction.id, "created": true }),
            );
        }
    }
    let (reason, message) = match &failure {
        Some((reason, message)) => (Some(reason.as_str()), Some(message.as_str())),
        None => (None, None),
    };
    if !store
        .settle_transaction(&transaction.id, status, reason, message, completed.then_some(&ledger))
        .await?
    {
        return Err(StoreError::Refused(format!(
            "transaction {} was settled by someone else",
            transaction.id
        )));
    }
    let transaction = Box::new(transaction_row(&transaction, status, reason, message));
    Ok(if completed {
        TopupResult::Credited {
            ledger: Box::new(ledger_row(&ledger)),
            transaction: Some(transaction),
        }
    } else {
        TopupResult::NotCompleted { transaction }
    })
}

/// `YYYYMM-` + 32 hex: unique per process (a counter), account and time.
fn new_id(account: &AccountId, now: GregorianSeconds) -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let month = now
        .day()
        .map(|day| day.format("%Y%m").to_string())
        .unwrap_or_else(|| "000000".to_owned());
    let mut digest = Sha256::new();
    digest.update(account.as_str().as_bytes());
    digest.update(now.0.to_be_bytes());
    digest.update(std::process::id().to_be_bytes());
    digest.update(NEXT.fetch_add(1, Ordering::Relaxed).to_be_bytes());
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|elapsed| elapsed.as_nanos())
        .unwrap_or_default();
    digest.update(nanos.to_be_bytes());
    format!("{month}-{}", &hex::encode(digest.finalize())[..32])
}

fn ledger_row(ledger: &NewLedger) -> LedgerRow {
    LedgerRow {
        id: ledger.id.clone(),
        account: ledger.account.clone(),
        amount_units: ledger.amount_units,
        source_service: ledger.source_service.clone(),
        source_id: ledger.source_id.clone(),
        description: ledger.description.clone(),
        trigger: ledger.trigger.clone(),
        transaction_id: ledger.transaction_id.clone(),
        created_at: ledger.created_at,
        metadata: ledger.metadata.clone(),
        audit: ledger.audit.clone(),
    }
}

fn transaction_row(
    transaction: &NewTransaction,
    status: TransactionStatus,
    reason: Option<&str>,
    message: Option<&str>,
) -> TransactionRow {
    TransactionRow {
        id: transaction.id.clone(),
        account: transaction.account.clone(),
        amount_units: transaction.amount_units,
        description: transaction.description.clone(),
        trigger: transaction.trigger.clone(),
        status,
        bookkeeper_type: transaction.bookkeeper_type.clone(),
        reason: reason.map(str::to_owned),
        message: message.map(str::to_owned),
        created_at: transaction.created_at,
        metadata: transaction.metadata.clone(),
        audit: transaction.audit.clone(),
    }
}

/// What the job is told.
#[derive(Debug, Clone)]
pub struct TopupOptions {
    /// `[topup] enable`.
    pub enabled: bool,
    /// `None`: every account with top-up settings.
    pub accounts: Option<Vec<AccountId>>,
    pub now: GregorianSeconds,
    pub master_account_bookkeeper: String,
}

/// An account topped up by the job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ToppedUp {
    pub account: AccountId,
    pub units: i64,
    /// The sale, when the bookkeeper sold it.
    pub transaction_id: Option<String>,
}

/// An account not due.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SkippedTopup {
    pub account: AccountId,
    pub reason: SkipReason,
}

/// An account that was due and could not be topped up, or could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FailedTopup {
    pub account: AccountId,
    /// `invalid_setting`, `unreadable`, `database`, or the sale's reason.
    pub reason: String,
    pub message: String,
    /// A bookkeeper or database problem a later run may not have (else bad data).
    pub temporary: bool,
}

/// One run of the job.
#[derive(Debug, Clone, Default)]
pub struct TopupReport {
    /// `false`: `[topup] enable` is off and nothing was examined.
    pub enabled: bool,
    pub examined: usize,
    pub topped_up: Vec<ToppedUp>,
    pub skipped: Vec<SkippedTopup>,
    pub failed: Vec<FailedTopup>,
    pub duration: Duration,
}

impl TopupReport {
    pub fn end(&self) -> RunEnd {
        if self.failed.iter().any(|failure| failure.temporary) {
            RunEnd::TemporaryFailure
        } else if self.failed.is_empty() {
            RunEnd::Succeeded
        } else {
            RunEnd::DataErrors
        }
    }

    pub fn outcome(&self) -> RunOutcome {
        let count = |value: usize| u64::try_from(value).unwrap_or(u64::MAX);
        let figures = RunFigures {
            accounts: count(self.examined),
            changes: count(self.topped_up.len()),
            failures: count(self.failed.len()),
        };
        match (self.end(), self.enabled) {
            (RunEnd::Succeeded, true) => RunOutcome::succeeded(figures),
            (RunEnd::Succeeded, false) => RunOutcome::ended(RunEnd::Succeeded, figures, DISABLED),
            (end, _) => RunOutcome::ended(end, figures, format!("{} account(s) not topped up", self.failed.len())),
        }
    }

    /// The report as one JSON object (`--json`).
    pub fn to_json(&self) -> serde_json::Value {
        json!({
            "enabled": self.enabled,
            "accounts_examined": self.examined,
            "topped_up": self.topped_up.iter().map(|done| json!({
                "account_id": done.account.as_str(),
                "amount_units": done.units,
                "transaction_id": done.transaction_id,
            })).collect::<Vec<_>>(),
            "skipped": self.skipped.iter().map(|skip| json!({
                "account_id": skip.account.as_str(),
                "reason": skip.reason.as_str(),
            })).collect::<Vec<_>>(),
            "failed": self.failed.iter().map(|failure| json!({
                "account_id": failure.account.as_str(),
                "reason": failure.reason,
                "message": failure.message,
            })).collect::<Vec<_>>(),
            "duration_ms": u64::try_from(self.duration.as_millis()).unwrap_or(u64::MAX),
        })
    }

    /// One line for people.
    pub fn to_text(&self) -> String {
        if !self.enabled {
            return format!("topup: {DISABLED}\n");
        }
        format!(
            "topup: {} accounts examined, {} topped up, {} skipped, {} failed, {} ms\n",
            self.examined,
            self.topped_up.len(),
            self.skipped.len(),
            self.failed.len(),
            self.duration.as_millis()
        )
    }
}

const DISABLED: &str = "automatic top-up is disabled ([topup] enable = false): nothing done";

/// One run of the automatic top-up.
pub async fn run_once(
    store: &Store,
    bookkeepers: &Bookkeepers,
    options: &TopupOptions,
) -> Result<TopupReport, StoreError> {
    let started = Instant::now();
    let mut report = TopupReport {
        enabled: options.enabled,
        ..TopupReport::default()
    };
    if !options.enabled {
        tracing::info!("{DISABLED}");
        report.duration = started.elapsed();
        return Ok(report);
    }
    let since = GregorianSeconds(options.now.0 - DAY_SECONDS);
    let (accounts, unreadable) = store.topup_accounts(options.accounts.as_deref(), since).await?;
    report.examined = accounts.len() + unreadable.len();
    for problem in unreadable {
        report.failed.push(FailedTopup {
            account: problem.account,
            reason: "unreadable".to_owned(),
            message: problem.problem,
            temporary: false,
        });
    }
    for account in accounts {
        let settings = match read_settings(&account) {
            Ok(settings) => settings,
            Err(message) => {
                tracing::warn!(account_id = %account.account, %message, "top-up settings unusable");
                report.failed.push(FailedTopup {
                    account: account.account.clone(),
                    reason: "invalid_setting".to_owned(),
                    message,
                    temporary: false,
                });
                continue;
            }
        };
        let decision = decide(&AutomaticTopup {
            enabled: true,
            settings,
            balance_units: account.balance_units,
            topped_up_in_last_day: account.topped_up_since,
        });
        let units = match decision {
            Decision::Skip(reason) => {
                report.skipped.push(SkippedTopup {
                    account: account.account.clone(),
                    reason,
                });
                continue;
            }
            Decision::TopUp { units } => units,
        };
        let request = TopupRequest {
            account: account.account.clone(),
            units,
            trigger: Trigger::Automatic,
            bookkeeper: bookkeeper_type(&account, &options.master_account_bookkeeper),
            audit: None,
            now: options.now,
        };
        match top_up(store, bookkeepers, &request).await {
            Ok(TopupResult::Credited { transaction, .. }) => {
                tracing::info!(account_id = %account.account, units, "topped up");
                report.topped_up.push(ToppedUp {
                    account: account.account.clone(),
                    units,
                    transaction_id: transaction.map(|transaction| transaction.id),
                });
            }
            Ok(TopupResult::NotCompleted { transaction }) => report.failed.push(FailedTopup {
                account: account.account.clone(),
                reason: transaction
                    .reason
                    .clone()
                    .unwrap_or_else(|| "transaction_incomplete".to_owned()),
                message: transaction.message.clone().unwrap_or_default(),
                temporary: true,
            }),
            Err(error) => {
                tracing::warn!(account_id = %account.account, %error, "top-up failed");
                report.failed.push(FailedTopup {
                    account: account.account.clone(),
                    reason: "database".to_owned(),
                    message: error.to_string(),
                    temporary: true,
                });
            }
        }
    }
    report.duration = started.elapsed();
    Ok(report)
}

fn read_settings(account: &TopupAccount) -> Result<TopupSettings, String> {
    let read = |text: &Option<String>, name: &str| {
        text.as_deref()
            .map(parse_dollars)
            .transpose()
            .map_err(|error| format!("topup.{name}: {error}"))
    };
    Ok(TopupSettings {
        amount: read(&account.amount, "amount")?,
        threshold: read(&account.threshold, "threshold")?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn account(kind: Option<&str>, billed_by_master: bool) -> TopupAccount {
        TopupAccount {
            account: AccountId::parse("a1").expect("valid"),
            amount: None,
            threshold: None,
            balance_units: 0,
            topped_up_since: false,
            bookkeeper_type: kind.map(str::to_owned),
            billed_by_master,
        }
    }

    #[test]
    fn the_bookkeeper_type_follows_the_services_level_then_the_master_setting() {
        assert_eq!(
            bookkeeper_type(&account(Some("http"), false), "default"),
            BookkeeperType::Http
        );
        assert_eq!(
            bookkeeper_type(&account(None, true), "kz_bookkeeper_http"),
            BookkeeperType::Http
        );
        assert_eq!(bookkeeper_type(&account(None, false), "http"), BookkeeperType::Default);
    }

    #[test]
    fn ids_are_unique_and_month_prefixed() {
        let now = GregorianSeconds::from_utc(
            chrono::DateTime::parse_from_rfc3339("2026-11-23T10:00:00Z")
                .expect("valid")
                .with_timezone(&chrono::Utc),
        );
        let account = AccountId::parse("a1").expect("valid");
        let first = new_id(&account, now);
        assert!(first.starts_with("202611-"), "{first}");
        assert_eq!(first.len(), 7 + 32);
        assert_ne!(first, new_id(&account, now));
    }

    #[test]
    fn unparseable_settings_are_reported_by_name() {
        let mut bad = account(None, false);
        bad.amount = Some("ten".to_owned());
        let error = read_settings(&bad).expect_err("not an amount");
        assert!(error.starts_with("topup.amount:"), "{error}");
    }
}
