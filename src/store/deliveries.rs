//! The delivery queue of the bookkeeper-sync job (`sync-and-bookkeepers.md` §5.4):
//! what is due, deliveries frozen before their first attempt, and what each attempt
//! ended in.
//!
//! A delivery's body and idempotency key are stored when it is created and resent
//! verbatim on every retry, so a retry after a lost response is the same request and
//! cannot charge twice. Workers take due deliveries under a lease; nothing here decides
//! when to retry (the job's retry policy does) or talks to a bookkeeper.

use super::billing::read_invoice;
use super::{on_conn, step, Conn, Store, StoreError};
use crate::domain::invoice::Invoice;
use crate::domain::plan::BookkeeperRef;
use crate::domain::summary::GregorianSeconds;
use crate::domain::AccountId;
use crate::wire::invoice::invoice as invoice_json;

/// A delivery the bookkeeper-sync job should make now.
#[derive(Debug, Clone, PartialEq)]
pub enum DueDelivery {
    /// A delivery already attempted: resend its stored bytes as they are.
    Retry {
        delivery_id: String,
        account: AccountId,
        bookkeeper: BookkeeperRef,
        body: Vec<u8>,
        attempts: i64,
    },
    /// Pending audit rows not yet in any delivery: build one.
    New {
        account: AccountId,
        bookkeeper: BookkeeperRef,
        /// The bookkeeper's invoice in the `computed` snapshot (`None`: plans removed).
        latest: Option<Box<Invoice>>,
        last_acknowledged: Option<Box<Invoice>>,
        /// The pending rows, oldest first: (audit id, annotated invoice).
        pending: Vec<(String, Invoice)>,
    },
}

/// A new delivery, frozen before its first attempt.
#[derive(Debug, Clone, PartialEq)]
pub struct NewDelivery {
    pub delivery_id: String,
    pub account: AccountId,
    pub bookkeeper: BookkeeperRef,
    pub idempotency_key: String,
    pub body: Vec<u8>,
    /// What the bookkeeper will know once it answers.
    pub acknowledged: Invoice,
    /// The audit rows it carries.
    pub audit_ids: Vec<String>,
}

/// What a delivery attempt ended in, as the store records it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeliveryResult {
    /// Taken (HTTP 200, local): rows `completed`; `standing` set when given.
    Acknowledged {
        response_code: Option<u16>,
        standing: Option<&'static str>,
    },
    /// Taken but payment refused (HTTP 402): rows `failed` with the reason.
    Refused {
        response_code: Option<u16>,
        reason: String,
        message: String,
        standing: Option<&'static str>,
    },
    /// Not taken: try again at `next_attempt_at` (far in the future when it needs attention).
    NotTaken {
        response_code: Option<u16>,
        error: String,
        next_attempt_at: i64,
    },
}

#[derive(sqlx::FromRow)]
struct InFlightRow {
    id: String,
    account_id: String,
    bookkeeper_type: String,
    bookkeeper_vendor_id: String,
    bookkeeper_id: String,
    body: String,
    attempts: i64,
}

#[derive(sqlx::FromRow)]
struct PendingPairRow {
    account_id: String,
    bookkeeper_type: String,
    bookkeeper_vendor_id: String,
    bookkeeper_id: String,
}

#[derive(sqlx::FromRow)]
struct PendingRow {
    id: String,
    invoice: String,
}

/// The `computed` or `acknowledged` invoice of one account and bookkeeper.
async fn pair_snapshot(conn: &mut Conn, pair: &PendingPairRow, kind: &str) -> Result<Option<Invoice>, StoreError> {
    let text: Option<String> = on_conn!(conn, |c| {
        sqlx::query_scalar(
            "SELECT invoice FROM invoice_snapshots WHERE account_id = $1 AND bookkeeper_type = $2 \
             AND bookkeeper_vendor_id = $3 AND bookkeeper_id = $4 AND kind = $5",
        )
        .bind(pair.account_id.as_str())
        .bind(pair.bookkeeper_type.as_str())
        .bind(pair.bookkeeper_vendor_id.as_str())
        .bind(pair.bookkeeper_id.as_str())
        .bind(kind)
        .fetch_optional(&mut **c)
        .await
        .map_err(step("reading a delivery's snapshots"))?
    });
    text.map(|text| read_invoice(&text).map_err(StoreError::InvalidRow))
        .transpose()
}

fn bookkeeper_ref(kind: String, vendor_id: String, id: String) -> BookkeeperRef {
    BookkeeperRef { kind, vendor_id, id }
}

impl Store {
    /// Deliveries due at `now`, at most `limit`: retries first (oldest due first),
    /// then bookkeepers with pending rows not yet in a delivery. Retries are leased
    /// until `lease_until` so that a concurrent worker does not send them too.
    pub async fn due_deliveries(
        &self,
        now: GregorianSeconds,
        lease_until: GregorianSeconds,
        limit: usize,
        only: Option<&AccountId>,
    ) -> Result<Vec<DueDelivery>, StoreError> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let only = only.map_or("", AccountId::as_str);
        let mut conn = self.acquire().await?;
        let in_flight: Vec<InFlightRow> = on_conn!(&mut conn, |c| {
            sqlx::query_as(
                "SELECT id, account_id, bookkeeper_type, bookkeeper_vendor_id, bookkeeper_id, body, attempts \
                 FROM deliveries WHERE status = 'in_flight' AND next_attempt_at <= $1 AND lease_until < $1 \
                 AND ($3 = '' OR account_id = $3) ORDER BY next_attempt_at, id LIMIT $2",
            )
            .bind(now.0)
            .bind(limit)
            .bind(only)
            .fetch_all(&mut **c)
            .await
            .map_err(step("listing deliveries to retry"))?
        });
        let mut due = Vec::new();
        for row in in_flight {
            let leased = on_conn!(&mut conn, |c| {
                sqlx::query("UPDATE deliveries SET lease_until = $1 WHERE id = $2 AND lease_until < $3")
                    .bind(lease_until.0)
                    .bind(row.id.as_str())
                    .bind(now.0)
                    .execute(&mut **c)
                    .await
                    .map_err(step("leasing a delivery"))?
                    .rows_affected()
            });
            if leased == 0 {
                continue;
            }
            due.push(DueDelivery::Retry {
                account: AccountId::parse(row.account_id).map_err(|error| StoreError::InvalidRow(error.to_string()))?,
                bookkeeper: bookkeeper_ref(row.bookkeeper_type, row.bookkeeper_vendor_id, row.bookkeeper_id),
                body: row.body.into_bytes(),
                attempts: row.attempts,
                delivery_id: row.id,
            });
        }

        let room = limit.saturating_sub(i64::try_from(due.len()).unwrap_or(i64::MAX));
        let pairs: Vec<PendingPairRow> = on_conn!(&mut conn, |c| {
            sqlx::query_as(
                "SELECT DISTINCT l.account_id, l.bookkeeper_type, l.bookkeeper_vendor_id, l.bookkeeper_id \
                 FROM audit_logs l WHERE l.status = 'pending' AND l.delivery_id IS NULL \
                 AND ($2 = '' OR l.account_id = $2) AND NOT EXISTS (SELECT 1 FROM deliveries d WHERE d.status = 'in_flight' \
                     AND d.account_id = l.account_id AND d.bookkeeper_type = l.bookkeeper_type \
                     AND d.bookkeeper_vendor_id = l.bookkeeper_vendor_id AND d.bookkeeper_id = l.bookkeeper_id) \
                 ORDER BY l.account_id, l.bookkeeper_type, l.bookkeeper_vendor_id, l.bookkeeper_id LIMIT $1",
            )
            .bind(room)
            .bind(only)
            .fetch_all(&mut **c)
            .await
            .map_err(step("listing pending audit rows"))?
        });
        for pair in pairs {
            let latest = pair_snapshot(&mut conn, &pair, "computed").await?;
            let last_acknowledged = pair_snapshot(&mut conn, &pair, "acknowledged").await?;
            let rows: Vec<PendingRow> = on_conn!(&mut conn, |c| {
                sqlx::query_as(
                    "SELECT id, invoice FROM audit_logs WHERE status = 'pending' AND delivery_id IS NULL \
                     AND account_id = $1 AND bookkeeper_type = $2 AND bookkeeper_vendor_id = $3 AND bookkeeper_id = $4 \
                     ORDER BY created_at, id",
                )
                .bind(pair.account_id.as_str())
                .bind(pair.bookkeeper_type.as_str())
                .bind(pair.bookkeeper_vendor_id.as_str())
                .bind(pair.bookkeeper_id.as_str())
                .fetch_all(&mut **c)
                .await
                .map_err(step("reading pending audit rows"))?
            });
            let pending = rows
                .into_iter()
                .map(|row| read_invoice(&row.invoice).map(|invoice| (row.id, invoice)))
                .collect::<Result<Vec<_>, _>>()
                .map_err(StoreError::InvalidRow)?;
            due.push(DueDelivery::New {
                account: AccountId::parse(pair.account_id)
                    .map_err(|error| StoreError::InvalidRow(error.to_string()))?,
                bookkeeper: bookkeeper_ref(pair.bookkeeper_type, pair.bookkeeper_vendor_id, pair.bookkeeper_id),
                latest: latest.map(Box::new),
                last_acknowledged: last_acknowledged.map(Box::new),
                pending,
            });
        }
        Ok(due)
    }

    /// Freezes new deliveries and ties their audit rows to them, leased until
    /// `lease_until`, in one transaction. For each, `false` when another worker already
    /// has one in flight for the same account and bookkeeper.
    pub async fn create_deliveries(
        &self,
        deliveries: &[NewDelivery],
        now: GregorianSeconds,
        lease_until: GregorianSeconds,
    ) -> Result<Vec<bool>, StoreError> {
        let mut prepared = Vec::with_capacity(deliveries.len());
        for delivery in deliveries {
            let body = String::from_utf8(delivery.body.clone())
                .map_err(|_| StoreError::Refused("a delivery body must be UTF-8 JSON".to_owned()))?;
            prepared.push((delivery, body, invoice_json(&delivery.acknowledged).to_string()));
        }
        let mut conn = self.acquire().await?;
        let created = on_conn!(&mut conn, |c| {
            let mut tx = sqlx::Connection::begin(&mut **c)
                .await
                .map_err(step("starting deliveries"))?;
            let mut created = Vec::with_capacity(prepared.len());
            for (delivery, body, acknowledged) in &prepared {
                let inserted = sqlx::query(
                    "INSERT INTO deliveries (id, account_id, bookkeeper_type, bookkeeper_vendor_id, bookkeeper_id, \
                     idempotency_key, body, acknowledged_invoice, status, attempts, next_attempt_at, lease_until, \
                     created_at, updated_at) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 'in_flight', 0, $9, $10, $9, $9) ON CONFLICT DO NOTHING",
                )
                .bind(delivery.delivery_id.as_str())
                .bind(delivery.account.as_str())
                .bind(delivery.bookkeeper.kind.as_str())
                .bind(delivery.bookkeeper.vendor_id.as_str())
                .bind(delivery.bookkeeper.id.as_str())
                .bind(delivery.idempotency_key.as_str())
                .bind(body.as_str())
                .bind(acknowledged.as_str())
                .bind(now.0)
                .bind(lease_until.0)
                .execute(&mut *tx)
                .await
                .map_err(step("creating a delivery"))?
                .rows_affected();
                if inserted > 0 {
                    for audit_id in &delivery.audit_ids {
                        sqlx::query("UPDATE audit_logs SET delivery_id = $1 WHERE id = $2 AND delivery_id IS NULL")
                            .bind(delivery.delivery_id.as_str())
                            .bind(audit_id.as_str())
                            .execute(&mut *tx)
                            .await
                            .map_err(step("tying audit rows to a delivery"))?;
                    }
                }
                created.push(inserted > 0);
            }
            tx.commit().await.map_err(step("committing deliveries"))?;
            created
        });
        Ok(created)
    }

    /// Records what attempts of deliveries ended in, each on its delivery, its audit
    /// rows, the acknowledged snapshot and the account's standing, in one transaction.
    pub async fn record_delivery_results(
        &self,
        results: &[(String, DeliveryResult)],
        now: GregorianSeconds,
    ) -> Result<(), StoreError> {
        let code = |response_code: &Option<u16>| response_code.map(i64::from);
        let mut conn = self.acquire().await?;
        on_conn!(&mut conn, |c| {
            let mut tx = sqlx::Connection::begin(&mut **c)
                .await
                .map_err(step("starting delivery results"))?;
            for (delivery_id, result) in results {
                let delivery_id = delivery_id.as_str();
                let (delivery_status, row_status, reason, message, response_code, standing, error, next_attempt_at) =
                    match result {
                        DeliveryResult::Acknowledged {
                            response_code,
                            standing,
                        } => (
                            "acknowledged",
                            "completed",
                            None,
                            None,
                            code(response_code),
                            *standing,
                            None,
                            0,
                        ),
                        DeliveryResult::Refused {
                            response_code,
                            reason,
                            message,
                            standing,
                        } => (
                            "refused",
                            "failed",
                            Some(reason.as_str()),
                            Some(message.as_str()),
                            code(response_code),
                            *standing,
                            None,
                            0,
                        ),
                        DeliveryResult::NotTaken {
                            response_code,
                            error,
                            next_attempt_at,
                        } => (
                            "in_flight",
                            "pending",
                            None,
                            None,
                            code(response_code),
                            None,
                            Some(error.as_str()),
                            *next_attempt_at,
                        ),
                    };
                sqlx::query(
                "UPDATE deliveries SET status = $1, attempts = attempts + 1, last_response_code = $2, last_error = $3, \
                 next_attempt_at = $4, lease_until = 0, updated_at = $5 WHERE id = $6",
            )
            .bind(delivery_status)
            .bind(response_code)
            .bind(error)
            .bind(next_attempt_at)
            .bind(now.0)
            .bind(delivery_id)
            .execute(&mut *tx)
            .await
            .map_err(step("recording a delivery attempt"))?;
                sqlx::query(
                "UPDATE audit_logs SET status = $1, reason = COALESCE($2, reason), message = COALESCE($3, message), \
                 attempts = attempts + 1, last_response_code = $4, last_error = $5, modified_at = $6 \
                 WHERE delivery_id = $7",
            )
            .bind(row_status)
            .bind(reason)
            .bind(message)
            .bind(response_code)
            .bind(error)
            .bind(now.0)
            .bind(delivery_id)
            .execute(&mut *tx)
            .await
            .map_err(step("recording a delivery on its audit rows"))?;
                if delivery_status != "in_flight" {
                    sqlx::query(
                        "INSERT INTO invoice_snapshots (account_id, kind, bookkeeper_type, bookkeeper_vendor_id, \
                     bookkeeper_id, invoice, recurring_units, updated_at) \
                     SELECT account_id, 'acknowledged', bookkeeper_type, bookkeeper_vendor_id, bookkeeper_id, \
                            acknowledged_invoice, 0, $1 FROM deliveries WHERE id = $2 \
                     ON CONFLICT (account_id, kind, bookkeeper_type, bookkeeper_vendor_id, bookkeeper_id) \
                     DO UPDATE SET invoice = excluded.invoice, updated_at = excluded.updated_at",
                    )
                    .bind(now.0)
                    .bind(delivery_id)
                    .execute(&mut *tx)
                    .await
                    .map_err(step("recording what the bookkeeper acknowledged"))?;
                }
                if let Some(standing) = standing {
                    sqlx::query(
                    "INSERT INTO services (account_id, status) SELECT account_id, $1 FROM deliveries WHERE id = $2 \
                     ON CONFLICT (account_id) DO UPDATE SET status = excluded.status, \
                         status_reason = CASE WHEN excluded.status = 'good_standing' THEN NULL ELSE $3 END, \
                         status_reason_code = CASE WHEN excluded.status = 'good_standing' THEN NULL ELSE $4 END",
                )
                .bind(standing)
                .bind(delivery_id)
                .bind(message)
                .bind(reason)
                .execute(&mut *tx)
                .await
                .map_err(step("updating the account's standing"))?;
                }
            }
            tx.commit().await.map_err(step("committing delivery results"))?;
        });
        Ok(())
    }
}
