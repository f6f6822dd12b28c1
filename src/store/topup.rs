//! Top-up state (`sync-and-bookkeepers.md` §10): the per-account settings, the ledger
//! (an account's balance is the sum of its rows) and the sale transactions.
//!
//! Who asked is stored on the rows themselves (`audit`, the caller's audit object):
//! the invoice-shaped `audit_logs` do not fit a sale. Nothing here decides whether to
//! top up: the accounts due are read set-based, the domain decides.

use super::billing::UnreadableAccount;
use super::{on_conn, step, Store, StoreError};
use crate::domain::summary::GregorianSeconds;
use crate::domain::AccountId;

/// Up to this many account ids per statement (bind limits of both backends).
const IDS_PER_STATEMENT: usize = 400;

/// A ledger row to write.
#[derive(Debug, Clone, PartialEq)]
pub struct NewLedger {
    pub id: String,
    pub account: AccountId,
    /// Credits positive, debits negative.
    pub amount_units: i64,
    /// `payments` for top-ups.
    pub source_service: String,
    pub source_id: String,
    pub description: String,
    pub trigger: Option<String>,
    /// The sale it results from; `None` when credited directly.
    pub transaction_id: Option<String>,
    pub created_at: GregorianSeconds,
    pub metadata: serde_json::Value,
    /// Who asked; `None` for a job.
    pub audit: Option<serde_json::Value>,
}

/// A sale transaction to write; it starts `incomplete`.
#[derive(Debug, Clone, PartialEq)]
pub struct NewTransaction {
    pub id: String,
    pub account: AccountId,
    pub amount_units: i64,
    pub description: String,
    /// `manual` or `automatic`.
    pub trigger: String,
    pub bookkeeper_type: String,
    pub created_at: GregorianSeconds,
    pub metadata: serde_json::Value,
    pub audit: Option<serde_json::Value>,
}

/// Where a sale stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TransactionStatus {
    Completed,
    /// Asked, no final answer (yet): the bookkeeper may have charged it.
    Incomplete,
    /// The bookkeeper answered and did not complete it.
    Failed,
}

impl TransactionStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            TransactionStatus::Completed => "completed",
            TransactionStatus::Incomplete => "incomplete",
            TransactionStatus::Failed => "failed",
        }
    }

    fn parse(text: &str) -> Result<TransactionStatus, StoreError> {
        match text {
            "completed" => Ok(TransactionStatus::Completed),
            "incomplete" => Ok(TransactionStatus::Incomplete),
            "failed" => Ok(TransactionStatus::Failed),
            other => Err(StoreError::InvalidRow(format!("unknown transaction status {other:?}"))),
        }
    }
}

/// A stored ledger row.
#[derive(Debug, Clone, PartialEq)]
pub struct LedgerRow {
    pub id: String,
    pub account: AccountId,
    pub amount_units: i64,
    pub source_service: String,
    pub source_id: String,
    pub description: String,
    pub trigger: Option<String>,
    pub transaction_id: Option<String>,
    pub created_at: GregorianSeconds,
    pub metadata: serde_json::Value,
    pub audit: Option<serde_json::Value>,
}

/// A stored transaction.
#[derive(Debug, Clone, PartialEq)]
pub struct TransactionRow {
    pub id: String,
    pub account: AccountId,
    pub amount_units: i64,
    pub description: String,
    pub trigger: String,
    pub status: TransactionStatus,
    pub bookkeeper_type: String,
    pub reason: Option<String>,
    pub message: Option<String>,
    pub created_at: GregorianSeconds,
    pub metadata: serde_json::Value,
    pub audit: Option<serde_json::Value>,
}

/// What a top-up reads about one account, read set-based for many.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopupAccount {
    pub account: AccountId,
    /// `topup.amount` and `topup.threshold` as stored (dollars, decimal text).
    pub amount: Option<String>,
    pub threshold: Option<String>,
    pub balance_units: i64,
    /// An automatic top-up (a transaction of any status, or a `payments` ledger)
    /// since the given time: the daily limit.
    pub topped_up_since: bool,
    /// The services-level bookkeeper type, when set.
    pub bookkeeper_type: Option<String>,
    /// Whether the account is the master or its reseller is the master (its
    /// bookkeeper type then comes from `master_account_bookkeeper`).
    pub billed_by_master: bool,
}

#[derive(sqlx::FromRow)]
struct TopupAccountRow {
    id: String,
    topup_amount: Option<String>,
    topup_threshold: Option<String>,
    bookkeeper: Option<String>,
    balance: i64,
    recent: bool,
}

#[derive(sqlx::FromRow)]
struct StoredLedger {
    id: String,
    account_id: String,
    amount_units: i64,
    source_service: String,
    source_id: String,
    description: String,
    trigger: Option<String>,
    transaction_id: Option<String>,
    created_at: i64,
    metadata: String,
    audit: Option<String>,
}

#[derive(sqlx::FromRow)]
struct StoredTransaction {
    id: String,
    account_id: String,
    amount_units: i64,
    description: String,
    trigger: String,
    status: String,
    bookkeeper_type: String,
    reason: Option<String>,
    message: Option<String>,
    created_at: i64,
    metadata: String,
    audit: Option<String>,
}

fn account_id(text: String) -> Result<AccountId, StoreError> {
    AccountId::parse(text).map_err(|error| StoreError::InvalidRow(error.to_string()))
}

fn json(text: &str, what: &str) -> Result<serde_json::Value, StoreError> {
    serde_json::from_str(text).map_err(|error| StoreError::InvalidRow(format!("{what}: {error}")))
}

fn json_text(value: &serde_json::Value) -> String {
    value.to_string()
}

impl LedgerRow {
    fn read(row: StoredLedger) -> Result<LedgerRow, StoreError> {
        Ok(LedgerRow {
            metadata: json(&row.metadata, "ledger metadata")?,
            audit: row
                .audit
                .as_deref()
                .map(|text| json(text, "ledger audit"))
                .transpose()?,
            account: account_id(row.account_id)?,
            id: row.id,
            amount_units: row.amount_units,
            source_service: row.source_service,
            source_id: row.source_id,
            description: row.description,
            trigger: row.trigger,
            transaction_id: row.transaction_id,
            created_at: GregorianSeconds(row.created_at),
        })
    }
}

impl TransactionRow {
    fn read(row: StoredTransaction) -> Result<TransactionRow, StoreError> {
        Ok(TransactionRow {
            metadata: json(&row.metadata, "transaction metadata")?,
            audit: row
                .audit
                .as_deref()
                .map(|text| json(text, "transaction audit"))
                .transpose()?,
            status: TransactionStatus::parse(&row.status)?,
            account: account_id(row.account_id)?,
            id: row.id,
            amount_units: row.amount_units,
            description: row.description,
            trigger: row.trigger,
            bookkeeper_type: row.bookkeeper_type,
            reason: row.reason,
            message: row.message,
            created_at: GregorianSeconds(row.created_at),
        })
    }
}

const LEDGER_COLUMNS: &str = "id, account_id, amount_units, source_service, source_id, description, trigger, \
                              transaction_id, created_at, metadata, audit";
const TRANSACTION_COLUMNS: &str = "id, account_id, amount_units, description, trigger, status, bookkeeper_type, \
                                   reason, message, created_at, metadata, audit";

/// `EXISTS` an automatic top-up of `a` since `$1`: a transaction of any status (a sale
/// that failed today is not retried before tomorrow) or a directly credited ledger.
const TOPPED_UP_SINCE: &str = "(EXISTS (SELECT 1 FROM transactions t WHERE t.account_id = a.id \
                                   AND t.trigger = 'automatic' AND t.created_at >= $1) \
                               OR EXISTS (SELECT 1 FROM ledgers l WHERE l.account_id = a.id \
                                   AND l.source_service = 'payments' AND l.trigger = 'automatic' \
                                   AND l.created_at >= $1))";

/// The insert of one ledger row, expanded inside each backend's arm of `on_conn!`.
macro_rules! insert_ledger {
    ($ledger:expr) => {
        sqlx::query(
            "INSERT INTO ledgers (id, account_id, amount_units, source_service, source_id, description, trigger, \
             transaction_id, created_at, metadata, audit) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
        )
        .bind($ledger.id.as_str())
        .bind($ledger.account.as_str())
        .bind($ledger.amount_units)
        .bind($ledger.source_service.as_str())
        .bind($ledger.source_id.as_str())
        .bind($ledger.description.as_str())
        .bind($ledger.trigger.as_deref())
        .bind($ledger.transaction_id.as_deref())
        .bind($ledger.created_at.0)
        .bind(json_text(&$ledger.metadata))
        .bind($ledger.audit.as_ref().map(json_text))
    };
}

impl Store {
    /// The account's balance in units: the sum of its ledger rows (0 without any).
    pub async fn balance(&self, account: &AccountId) -> Result<i64, StoreError> {
        let mut conn = self.acquire().await?;
        let balance: i64 = on_conn!(&mut conn, |c| {
            sqlx::query_scalar(
                "SELECT CAST(COALESCE(SUM(amount_units), 0) AS BIGINT) FROM ledgers WHERE account_id = $1",
            )
            .bind(account.as_str())
            .fetch_one(&mut **c)
            .await
            .map_err(step("reading a balance"))?
        });
        Ok(balance)
    }

    /// `topup.amount` and `topup.threshold` as stored; `None` for an unknown account.
    pub async fn topup_settings(
        &self,
        account: &AccountId,
    ) -> Result<Option<(Option<String>, Option<String>)>, StoreError> {
        let mut conn = self.acquire().await?;
        let row: Option<(Option<String>, Option<String>)> = on_conn!(&mut conn, |c| {
            sqlx::query_as("SELECT topup_amount, topup_threshold FROM accounts WHERE id = $1")
                .bind(account.as_str())
                .fetch_optional(&mut **c)
                .await
                .map_err(step("reading top-up settings"))?
        });
        Ok(row)
    }

    /// Replaces both settings (`None` unsets); `false` for an unknown account. The
    /// caller checks that the texts are amounts.
    pub async fn set_topup_settings(
        &self,
        account: &AccountId,
        amount: Option<&str>,
        threshold: Option<&str>,
    ) -> Result<bool, StoreError> {
        let mut conn = self.acquire().await?;
        let updated = on_conn!(&mut conn, |c| {
            sqlx::query("UPDATE accounts SET topup_amount = $2, topup_threshold = $3 WHERE id = $1")
                .bind(account.as_str())
                .bind(amount)
                .bind(threshold)
                .execute(&mut **c)
                .await
                .map_err(step("writing top-up settings"))?
                .rows_affected()
        });
        Ok(updated > 0)
    }

    /// Whether the account had an automatic top-up since `since` (the daily limit).
    pub async fn topped_up_automatically_since(
        &self,
        account: &AccountId,
        since: GregorianSeconds,
    ) -> Result<bool, StoreError> {
        let mut conn = self.acquire().await?;
        let sql = format!("SELECT {TOPPED_UP_SINCE} AS recent FROM accounts a WHERE a.id = $2");
        let recent: Option<bool> = on_conn!(&mut conn, |c| {
            sqlx::query_scalar(&sql)
                .bind(since.0)
                .bind(account.as_str())
                .fetch_optional(&mut **c)
                .await
                .map_err(step("reading recent top-ups"))?
        });
        Ok(recent.unwrap_or(false))
    }

    /// What a top-up reads, for these accounts (`Some`, whatever their settings) or
    /// for every non-deleted account with a top-up setting (`None`), in id order: a
    /// fixed number of queries. Accounts whose stored services bookkeeper cannot be
    /// read are returned apart.
    pub async fn topup_accounts(
        &self,
        accounts: Option<&[AccountId]>,
        since: GregorianSeconds,
    ) -> Result<(Vec<TopupAccount>, Vec<UnreadableAccount>), StoreError> {
        let chunks: Vec<&[AccountId]> = match accounts {
            Some([]) => return Ok((Vec::new(), Vec::new())),
            Some(accounts) => accounts.chunks(IDS_PER_STATEMENT).collect(),
            None => vec![&[]],
        };
        let mut readable = Vec::new();
        let mut unreadable = Vec::new();
        for chunk in chunks {
            let filter = |first: usize| match accounts {
                Some(_) => format!(
                    "a.id IN ({})",
                    (0..chunk.len())
                        .map(|index| format!("${}", index + first))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
                None => "NOT a.deleted AND (a.topup_amount IS NOT NULL OR a.topup_threshold IS NOT NULL)".to_owned(),
            };
            let account_filter = filter(2);
            let account_sql = format!(
                "SELECT a.id, a.topup_amount, a.topup_threshold, s.bookkeeper, \
                        CAST(COALESCE((SELECT SUM(l.amount_units) FROM ledgers l WHERE l.account_id = a.id), 0) \
                             AS BIGINT) AS balance, \
                        {TOPPED_UP_SINCE} AS recent \
                 FROM accounts a LEFT JOIN services s ON s.account_id = a.id WHERE {account_filter} ORDER BY a.id"
            );
            let mut conn = self.acquire().await?;
            let rows: Vec<TopupAccountRow> = on_conn!(&mut conn, |c| {
                let mut query = sqlx::query_as::<_, TopupAccountRow>(&account_sql).bind(since.0);
                for account in chunk {
                    query = query.bind(account.as_str());
                }
                query
                    .fetch_all(&mut **c)
                    .await
                    .map_err(step("reading accounts to top up"))?
            });
            // The reseller decides the default bookkeeper type; read on the connection in hand.
            let ids: Vec<AccountId> = rows
                .iter()
                .filter_map(|row| AccountId::parse(row.id.as_str()).ok())
                .collect();
            let resellers = super::services::resellers_on(&mut conn, &ids).await?;
            drop(conn);
            for row in rows {
                let billed_by_master = resellers.billed_by_master(&row.id).unwrap_or(false);
                let Ok(account) = AccountId::parse(row.id.as_str()) else {
                    tracing::warn!(account_id = %row.id, "account with an unusable id; not topped up");
                    continue;
                };
                match read_topup_account(account, row, billed_by_master) {
                    Ok(account) => readable.push(account),
                    Err(problem) => unreadable.push(problem),
                }
            }
        }
        Ok((readable, unreadable))
    }

    /// Credits (or debits) the ledger directly, without a sale.
    pub async fn credit_ledger(&self, ledger: &NewLedger) -> Result<(), StoreError> {
        let mut conn = self.acquire().await?;
        on_conn!(&mut conn, |c| {
            insert_ledger!(ledger)
                .execute(&mut **c)
                .await
                .map_err(step("writing a ledger"))?;
        });
        Ok(())
    }

    /// Writes a sale as `incomplete` before its bookkeeper is asked.
    pub async fn start_transaction(&self, transaction: &NewTransaction) -> Result<(), StoreError> {
        let sql = format!(
            "INSERT INTO transactions ({TRANSACTION_COLUMNS}) \
             VALUES ($1, $2, $3, $4, $5, 'incomplete', $6, NULL, NULL, $7, $8, $9)"
        );
        let mut conn = self.acquire().await?;
        on_conn!(&mut conn, |c| {
            sqlx::query(&sql)
                .bind(transaction.id.as_str())
                .bind(transaction.account.as_str())
                .bind(transaction.amount_units)
                .bind(transaction.description.as_str())
                .bind(transaction.trigger.as_str())
                .bind(transaction.bookkeeper_type.as_str())
                .bind(transaction.created_at.0)
                .bind(json_text(&transaction.metadata))
                .bind(transaction.audit.as_ref().map(json_text))
                .execute(&mut **c)
                .await
                .map_err(step("writing a transaction"))?;
        });
        Ok(())
    }

    /// Records the bookkeeper's answer to a sale and, when completed, its ledger
    /// credit, in one transaction. Only an `incomplete` sale is settled: `false` when
    /// the transaction is unknown or already settled (nothing is written then).
    pub async fn settle_transaction(
        &self,
        id: &str,
        status: TransactionStatus,
        reason: Option<&str>,
        message: Option<&str>,
        ledger: Option<&NewLedger>,
    ) -> Result<bool, StoreError> {
        let mut conn = self.acquire().await?;
        let settled = on_conn!(&mut conn, |c| {
            let mut tx = sqlx::Connection::begin(&mut **c)
                .await
                .map_err(step("starting a top-up"))?;
            let updated = sqlx::query(
                "UPDATE transactions SET status = $2, reason = $3, message = $4 \
                 WHERE id = $1 AND status = 'incomplete'",
            )
            .bind(id)
            .bind(status.as_str())
            .bind(reason)
            .bind(message)
            .execute(&mut *tx)
            .await
            .map_err(step("settling a transaction"))?
            .rows_affected();
            if updated == 0 {
                false
            } else {
                if let Some(ledger) = ledger {
                    insert_ledger!(ledger)
                        .execute(&mut *tx)
                        .await
                        .map_err(step("writing a ledger"))?;
                }
                tx.commit().await.map_err(step("committing a top-up"))?;
                true
            }
        });
        Ok(settled)
    }

    /// The account's ledger rows, oldest first.
    pub async fn ledgers(&self, account: &AccountId) -> Result<Vec<LedgerRow>, StoreError> {
        let sql = format!("SELECT {LEDGER_COLUMNS} FROM ledgers WHERE account_id = $1 ORDER BY created_at, id");
        let mut conn = self.acquire().await?;
        let rows: Vec<StoredLedger> = on_conn!(&mut conn, |c| {
            sqlx::query_as(&sql)
                .bind(account.as_str())
                .fetch_all(&mut **c)
                .await
                .map_err(step("reading ledgers"))?
        });
        rows.into_iter().map(LedgerRow::read).collect()
    }

    /// The account's transactions, oldest first.
    pub async fn transactions(&self, account: &AccountId) -> Result<Vec<TransactionRow>, StoreError> {
        let sql =
            format!("SELECT {TRANSACTION_COLUMNS} FROM transactions WHERE account_id = $1 ORDER BY created_at, id");
        let mut conn = self.acquire().await?;
        let rows: Vec<StoredTransaction> = on_conn!(&mut conn, |c| {
            sqlx::query_as(&sql)
                .bind(account.as_str())
                .fetch_all(&mut **c)
                .await
                .map_err(step("reading transactions"))?
        });
        rows.into_iter().map(TransactionRow::read).collect()
    }
}

fn read_topup_account(
    account: AccountId,
    row: TopupAccountRow,
    billed_by_master: bool,
) -> Result<TopupAccount, UnreadableAccount> {
    let bookkeeper_type = match row.bookkeeper.as_deref().filter(|text| !text.is_empty()) {
        None => None,
        Some(text) => match serde_json::from_str::<serde_json::Value>(text) {
            Ok(serde_json::Value::Object(object)) => object
                .get("type")
                .and_then(serde_json::Value::as_str)
                .filter(|kind| !kind.is_empty())
                .map(str::to_owned),
            Ok(_) => {
                return Err(UnreadableAccount {
                    account,
                    problem: "services.bookkeeper: expected a JSON object".to_owned(),
                })
            }
            Err(error) => {
                return Err(UnreadableAccount {
                    account,
                    problem: format!("services.bookkeeper: {error}"),
                })
            }
        },
    };
    Ok(TopupAccount {
        account,
        amount: row.topup_amount,
        threshold: row.topup_threshold,
        balance_units: row.balance,
        topped_up_since: row.recent,
        bookkeeper_type,
        billed_by_master,
    })
}
