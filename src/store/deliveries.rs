//! The delivery queue of the bookkeeper-sync job (`sync-and-bookkeepers.md` §5.4):
//! what is due, deliveries frozen before their first attempt, and what each attempt
//! ended in.
//!
//! A delivery's body and idempotency key are stored when it is created and resent
//! verbatim on every retry, so a retry after a lost response is the same request and
//! cannot charge twice. Workers take due deliveries under a lease; nothing here decides
//! when to retry (the job's retry policy does) or talks to a bookkeeper.

use super::billing::read_invoice;
use super::{on_conn, step, Store, StoreError};
use crate::domain::invoice::Invoice;
use crate::domain::plan::BookkeeperRef;
use crate::domain::summary::GregorianSeconds;
use crate::domain::AccountId;
use crate::wire::invoice::invoice as invoice_json;
use std::collections::HashMap;

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

/// The `next_attempt_at` of a delivery no automatic retry picks up: it failed for good
/// (past the retry policy's last attempt, or rejected) and waits for an operator
/// (`tally deliveries retry`).
pub const NEVER: i64 = i64::MAX / 2;

/// The `last_error_code` of a delivery waiting for its bookkeeper's configuration.
pub const NOT_CONFIGURED: &str = "not_configured";

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
    /// Not taken: try again at `next_attempt_at` ([`NEVER`] when it needs attention).
    NotTaken {
        response_code: Option<u16>,
        /// A stable code (`bookkeepers::DeliveryError::code`), for listings and counts.
        code: &'static str,
        error: String,
        next_attempt_at: i64,
    },
    /// Not attempted: the bookkeeper is not configured. No attempt is counted and no
    /// backoff set: it is kept out of the rest of this run only (due the next second,
    /// and made due again when the next run starts), so the first run after the
    /// bookkeeper is configured delivers it at once.
    AwaitingConfiguration { error: String },
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

type Pair = (String, String, String, String);

impl PendingPairRow {
    fn pair(&self) -> Pair {
        (
            self.account_id.clone(),
            self.bookkeeper_type.clone(),
            self.bookkeeper_vendor_id.clone(),
            self.bookkeeper_id.clone(),
        )
    }
}

fn bookkeeper_ref(kind: String, vendor_id: String, id: String) -> BookkeeperRef {
    BookkeeperRef { kind, vendor_id, id }
}

/// Where a pass over the bookkeepers with pending audit rows has got to: the last
/// (account, bookkeeper) a batch read. The next batch starts after it, so a pass reads
/// each pending pair once (an index range scan, however many rows the platform keeps)
/// and a pair that could not be delivered is not read again in the same pass.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingCursor(Pair);

/// A stored row the delivery path could not read: its delivery is skipped (and named),
/// the others go on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnreadableDelivery {
    /// Which row: `delivery <id>`, `audit row <id>` or `<kind> snapshot`.
    pub row: String,
    /// The account as stored (it may be the unreadable part).
    pub account: String,
    pub bookkeeper: BookkeeperRef,
    pub reason: String,
}

/// One batch of what is due.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DueBatch {
    pub deliveries: Vec<DueDelivery>,
    /// Deliveries skipped because a row they need cannot be read.
    pub unreadable: Vec<UnreadableDelivery>,
    /// Where the next batch of this pass starts; `None` when no pending pair was left
    /// after the cursor given.
    pub cursor: Option<PendingCursor>,
    /// Retries this batch leased: once answered they may let rows queued behind them
    /// go, in a pass that starts over.
    pub retries: usize,
}

impl DueBatch {
    /// Nothing was due: no retry, no pending pair after the cursor.
    pub fn is_empty(&self) -> bool {
        self.deliveries.is_empty() && self.unreadable.is_empty() && self.cursor.is_none()
    }
}

#[derive(sqlx::FromRow)]
struct PendingAuditRow {
    id: String,
    account_id: String,
    bookkeeper_type: String,
    bookkeeper_vendor_id: String,
    bookkeeper_id: String,
    created_at: i64,
    invoice: String,
}

#[derive(sqlx::FromRow)]
struct SnapshotRow {
    kind: String,
    account_id: String,
    bookkeeper_type: String,
    bookkeeper_vendor_id: String,
    bookkeeper_id: String,
    invoice: String,
}

impl Store {
    /// Deliveries due at `now`, at most `limit`: retries first (oldest due first),
    /// then bookkeepers with pending rows not yet in a delivery, in (account,
    /// bookkeeper) order after `after`. Retries are leased until `lease_until` so that
    /// a concurrent worker does not send them too. A delivery whose stored rows cannot
    /// be read is left out and named in [`DueBatch::unreadable`].
    pub async fn due_deliveries(
        &self,
        now: GregorianSeconds,
        lease_until: GregorianSeconds,
        limit: usize,
        only: Option<&AccountId>,
        after: Option<&PendingCursor>,
    ) -> Result<DueBatch, StoreError> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let only = only.map_or("", AccountId::as_str);
        let mut batch = DueBatch::default();
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
        // One statement leases every retry; those another worker leased meanwhile are
        // not returned, and are left to it.
        let leased: std::collections::HashSet<String> = if in_flight.is_empty() {
            std::collections::HashSet::new()
        } else {
            let rows = Rows::new(
                "delivery_id, lease_until, now",
                vec![
                    Column::Text(in_flight.iter().map(|row| Some(row.id.clone())).collect()),
                    Column::Int(vec![Some(lease_until.0); in_flight.len()]),
                    Column::Int(vec![Some(now.0); in_flight.len()]),
                ],
            );
            on_conn!(&mut conn, |c| {
                (**c)
                    .with_rows(
                        &rows,
                        // `RETURNING id`: SQLite's RETURNING names only the updated table.
                        "UPDATE deliveries SET lease_until = v.lease_until FROM v \
                         WHERE deliveries.id = v.delivery_id AND deliveries.lease_until < v.now RETURNING id",
                        "leasing deliveries",
                    )
                    .await?
                    .into_iter()
                    .collect()
            })
        };
        for row in in_flight.into_iter().filter(|row| leased.contains(&row.id)) {
            batch.retries += 1;
            let bookkeeper = bookkeeper_ref(row.bookkeeper_type, row.bookkeeper_vendor_id, row.bookkeeper_id);
            match AccountId::parse(row.account_id.as_str()) {
                Ok(account) => batch.deliveries.push(DueDelivery::Retry {
                    account,
                    bookkeeper,
                    body: row.body.into_bytes(),
                    attempts: row.attempts,
                    delivery_id: row.id,
                }),
                Err(error) => batch.unreadable.push(UnreadableDelivery {
                    row: format!("delivery {}", row.id),
                    account: row.account_id,
                    bookkeeper,
                    reason: format!("account id: {error}"),
                }),
            }
        }

        let room = limit.saturating_sub(i64::try_from(batch.retries).unwrap_or(i64::MAX));
        if room == 0 {
            // Retries filled the batch: the pass goes on from the same place.
            batch.cursor = after.cloned();
            return Ok(batch);
        }
        queued_pairs_on(&mut conn, only, after, room, &mut batch).await?;
        Ok(batch)
    }

    /// Freezes new deliveries and ties their audit rows to them, leased until
    /// `lease_until`, in one transaction of two multi-row statements. For each, `false`
    /// when another worker already has one in flight for the same account and
    /// bookkeeper.
    pub async fn create_deliveries(
        &self,
        deliveries: &[NewDelivery],
        now: GregorianSeconds,
        lease_until: GregorianSeconds,
    ) -> Result<Vec<bool>, StoreError> {
        if deliveries.is_empty() {
            return Ok(Vec::new());
        }
        let text = |values: Vec<String>| Column::Text(values.into_iter().map(Some).collect());
        let mut bodies = Vec::with_capacity(deliveries.len());
        for delivery in deliveries {
            bodies.push(
                String::from_utf8(delivery.body.clone())
                    .map_err(|_| StoreError::Refused("a delivery body must be UTF-8 JSON".to_owned()))?,
            );
        }
        let rows = Rows::new(
            "id, account_id, bookkeeper_type, bookkeeper_vendor_id, bookkeeper_id, idempotency_key, body, \
             acknowledged_invoice, now, lease_until",
            vec![
                text(deliveries.iter().map(|d| d.delivery_id.clone()).collect()),
                text(deliveries.iter().map(|d| d.account.as_str().to_owned()).collect()),
                text(deliveries.iter().map(|d| d.bookkeeper.kind.clone()).collect()),
                text(deliveries.iter().map(|d| d.bookkeeper.vendor_id.clone()).collect()),
                text(deliveries.iter().map(|d| d.bookkeeper.id.clone()).collect()),
                text(deliveries.iter().map(|d| d.idempotency_key.clone()).collect()),
                text(bodies),
                text(
                    deliveries
                        .iter()
                        .map(|d| invoice_json(&d.acknowledged).to_string())
                        .collect(),
                ),
                Column::Int(vec![Some(now.0); deliveries.len()]),
                Column::Int(vec![Some(lease_until.0); deliveries.len()]),
            ],
        );
        let mut conn = self.acquire().await?;
        let created: std::collections::HashSet<String> = on_conn!(&mut conn, |c| {
            let mut tx = sqlx::Connection::begin(&mut **c)
                .await
                .map_err(step("starting deliveries"))?;
            // `WHERE true` lets SQLite read `ON CONFLICT` as the upsert clause.
            let created: std::collections::HashSet<String> = (*tx)
                .with_rows(
                    &rows,
                    "INSERT INTO deliveries (id, account_id, bookkeeper_type, bookkeeper_vendor_id, bookkeeper_id, \
                     idempotency_key, body, acknowledged_invoice, status, attempts, next_attempt_at, lease_until, \
                     created_at, updated_at) \
                     SELECT id, account_id, bookkeeper_type, bookkeeper_vendor_id, bookkeeper_id, idempotency_key, \
                            body, acknowledged_invoice, 'in_flight', 0, now, lease_until, now, now \
                     FROM v WHERE true ON CONFLICT DO NOTHING RETURNING id",
                    "creating deliveries",
                )
                .await?
                .into_iter()
                .collect();
            let ties: Vec<(&str, &str)> = deliveries
                .iter()
                .filter(|delivery| created.contains(&delivery.delivery_id))
                .flat_map(|delivery| {
                    delivery
                        .audit_ids
                        .iter()
                        .map(|audit_id| (audit_id.as_str(), delivery.delivery_id.as_str()))
                })
                .collect();
            let ties = Rows::new(
                "audit_id, delivery_id",
                vec![
                    Column::Text(ties.iter().map(|(audit_id, _)| Some((*audit_id).to_owned())).collect()),
                    Column::Text(
                        ties.iter()
                            .map(|(_, delivery_id)| Some((*delivery_id).to_owned()))
                            .collect(),
                    ),
                ],
            );
            (*tx)
                .with_rows(
                    &ties,
                    "UPDATE audit_logs SET delivery_id = v.delivery_id FROM v \
                     WHERE audit_logs.id = v.audit_id AND audit_logs.delivery_id IS NULL",
                    "tying audit rows to deliveries",
                )
                .await?;
            tx.commit().await.map_err(step("committing deliveries"))?;
            created
        });
        Ok(deliveries
            .iter()
            .map(|delivery| created.contains(&delivery.delivery_id))
            .collect())
    }

    /// Records what attempts of deliveries ended in, on the deliveries, their audit
    /// rows, the acknowledged snapshots and the accounts' standing, in one transaction
    /// of a few multi-row statements. An account whose last pending audit row is
    /// answered is no longer dirty, unless it was marked for repricing meanwhile.
    pub async fn record_delivery_results(
        &self,
        results: &[(String, DeliveryResult)],
        now: GregorianSeconds,
    ) -> Result<(), StoreError> {
        if results.is_empty() {
            return Ok(());
        }
        let code = |response_code: &Option<u16>| response_code.map(i64::from);
        let recorded: Vec<(&str, RecordedAttempt<'_>)> = results
            .iter()
            .map(|(delivery_id, result)| (delivery_id.as_str(), RecordedAttempt::of(result, now, code)))
            .collect();
        let ids = || Column::Text(recorded.iter().map(|(id, _)| Some((*id).to_owned())).collect());
        let text = |value: fn(&RecordedAttempt<'_>) -> Option<String>| {
            Column::Text(recorded.iter().map(|(_, r)| value(r)).collect())
        };
        let int = |value: fn(&RecordedAttempt<'_>) -> Option<i64>| {
            Column::Int(recorded.iter().map(|(_, r)| value(r)).collect())
        };
        let now_column = || Column::Int(vec![Some(now.0); recorded.len()]);
        let attempts = Rows::new(
            "id, status, attempts, response_code, error, error_code, next_attempt_at, now",
            vec![
                ids(),
                text(|r| Some(r.delivery_status.to_owned())),
                int(|r| Some(r.attempts)),
                int(|r| r.response_code),
                text(|r| r.error.map(str::to_owned)),
                text(|r| r.error_code.map(str::to_owned)),
                int(|r| Some(r.next_attempt_at)),
                now_column(),
            ],
        );
        let audit_rows = Rows::new(
            "id, status, reason, message, attempts, response_code, error, now",
            vec![
                ids(),
                text(|r| Some(r.row_status.to_owned())),
                text(|r| r.reason.map(str::to_owned)),
                text(|r| r.message.map(str::to_owned)),
                int(|r| Some(r.attempts)),
                int(|r| r.response_code),
                text(|r| r.error.map(str::to_owned)),
                now_column(),
            ],
        );
        let answered: Vec<&str> = recorded.iter().filter(|(_, r)| r.terminal).map(|(id, _)| *id).collect();
        let answered = Rows::new(
            "id, now",
            vec![
                Column::Text(answered.iter().map(|id| Some((*id).to_owned())).collect()),
                Column::Int(vec![Some(now.0); answered.len()]),
            ],
        );
        // In the order of `results`: of two answers for one account, the later sets
        // its standing.
        let standings: Vec<(usize, &str, &RecordedAttempt<'_>, &str)> = recorded
            .iter()
            .enumerate()
            .filter_map(|(order, (id, r))| r.standing.map(|standing| (order, *id, r, standing)))
            .collect();
        let standings = Rows::new(
            "id, ord, standing, message, reason",
            vec![
                Column::Text(standings.iter().map(|(_, id, _, _)| Some((*id).to_owned())).collect()),
                Column::Int(
                    standings
                        .iter()
                        .map(|(order, _, _, _)| Some(i64::try_from(*order).unwrap_or(i64::MAX)))
                        .collect(),
                ),
                Column::Text(standings.iter().map(|(_, _, _, s)| Some((*s).to_owned())).collect()),
                Column::Text(
                    standings
                        .iter()
                        .map(|(_, _, r, _)| r.message.map(str::to_owned))
                        .collect(),
                ),
                Column::Text(
                    standings
                        .iter()
                        .map(|(_, _, r, _)| r.reason.map(str::to_owned))
                        .collect(),
                ),
            ],
        );
        let clear_holds = match self.backend() {
            super::Backend::Postgres => CLEAR_HOLDS_POSTGRES,
            super::Backend::Sqlite => CLEAR_HOLDS_SQLITE,
        };
        let mut conn = self.acquire().await?;
        on_conn!(&mut conn, |c| {
            let mut tx = sqlx::Connection::begin(&mut **c)
                .await
                .map_err(step("starting delivery results"))?;
            (*tx)
                .with_rows(
                    &attempts,
                    "UPDATE deliveries SET status = v.status, attempts = deliveries.attempts + v.attempts, \
                     last_response_code = v.response_code, last_error = v.error, last_error_code = v.error_code, \
                     next_attempt_at = v.next_attempt_at, lease_until = 0, updated_at = v.now \
                     FROM v WHERE deliveries.id = v.id",
                    "recording delivery attempts",
                )
                .await?;
            (*tx)
                .with_rows(
                    &audit_rows,
                    "UPDATE audit_logs SET status = v.status, reason = COALESCE(v.reason, audit_logs.reason), \
                     message = COALESCE(v.message, audit_logs.message), attempts = audit_logs.attempts + v.attempts, \
                     last_response_code = v.response_code, last_error = v.error, modified_at = v.now \
                     FROM v WHERE audit_logs.delivery_id = v.id",
                    "recording deliveries on their audit rows",
                )
                .await?;
            (*tx)
                .with_rows(
                    &answered,
                    "INSERT INTO invoice_snapshots (account_id, kind, bookkeeper_type, bookkeeper_vendor_id, \
                     bookkeeper_id, invoice, recurring_units, updated_at) \
                     SELECT d.account_id, 'acknowledged', d.bookkeeper_type, d.bookkeeper_vendor_id, d.bookkeeper_id, \
                            d.acknowledged_invoice, 0, v.now FROM v JOIN deliveries d ON d.id = v.id WHERE true \
                     ON CONFLICT (account_id, kind, bookkeeper_type, bookkeeper_vendor_id, bookkeeper_id) \
                     DO UPDATE SET invoice = excluded.invoice, updated_at = excluded.updated_at",
                    "recording what the bookkeepers acknowledged",
                )
                .await?;
            (*tx)
                .with_rows(
                    &standings,
                    &format!(
                        "UPDATE services SET status = s.standing, \
                         status_reason = CASE WHEN s.standing = 'good_standing' THEN NULL ELSE s.message END, \
                         status_reason_code = CASE WHEN s.standing = 'good_standing' THEN NULL ELSE s.reason END \
                         FROM ({LAST_STANDING}) s WHERE services.account_id = s.account_id"
                    ),
                    "updating the accounts' standing",
                )
                .await?;
            (*tx)
                .with_rows(
                    &standings,
                    &format!(
                        "INSERT INTO services (account_id, status) SELECT account_id, standing FROM ({LAST_STANDING}) s \
                         WHERE true ON CONFLICT (account_id) DO NOTHING"
                    ),
                    "recording the standing of accounts without services",
                )
                .await?;
            // Dirty held only for these rows ends with the last of them (a mark set since
            // changed dirty_since and still needs repricing).
            (*tx)
                .with_rows(&answered, clear_holds, "clearing the dirty flag of delivered accounts")
                .await?;
            tx.commit().await.map_err(step("committing delivery results"))?;
        });
        Ok(())
    }
}

/// Up to `room` (account, bookkeeper) pairs with pending audit rows in no delivery and
/// no delivery in flight, after `after`, read into `batch` as [`DueDelivery::New`]
/// with their snapshots and rows (the cursor set to the last pair read). Reads only:
/// both bookkeeper-sync and the billing dry run take their new deliveries from here.
async fn queued_pairs_on(
    conn: &mut super::Conn,
    only: &str,
    after: Option<&PendingCursor>,
    room: i64,
    batch: &mut DueBatch,
) -> Result<(), StoreError> {
    // The pending partial index is in this order: the cursor makes this a range scan
    // that stops after `room` pairs.
    const PAIRS: &str = "SELECT DISTINCT l.account_id, l.bookkeeper_type, l.bookkeeper_vendor_id, l.bookkeeper_id \
         FROM audit_logs l WHERE l.status = 'pending' AND l.delivery_id IS NULL \
         AND ($2 = '' OR l.account_id = $2) AND NOT EXISTS (SELECT 1 FROM deliveries d WHERE d.status = 'in_flight' \
             AND d.account_id = l.account_id AND d.bookkeeper_type = l.bookkeeper_type \
             AND d.bookkeeper_vendor_id = l.bookkeeper_vendor_id AND d.bookkeeper_id = l.bookkeeper_id) ";
    const ORDER: &str = "ORDER BY l.account_id, l.bookkeeper_type, l.bookkeeper_vendor_id, l.bookkeeper_id LIMIT $1";
    let after_sql = format!(
        "{PAIRS}AND (l.account_id, l.bookkeeper_type, l.bookkeeper_vendor_id, l.bookkeeper_id) > ($3, $4, $5, $6) {ORDER}"
    );
    let from_start_sql = format!("{PAIRS}{ORDER}");
    let pairs: Vec<PendingPairRow> = on_conn!(&mut *conn, |c| {
        let query = match after {
            Some(PendingCursor((account, kind, vendor_id, id))) => sqlx::query_as(&after_sql)
                .bind(room)
                .bind(only)
                .bind(account.as_str())
                .bind(kind.as_str())
                .bind(vendor_id.as_str())
                .bind(id.as_str()),
            None => sqlx::query_as(&from_start_sql).bind(room).bind(only),
        };
        query
            .fetch_all(&mut **c)
            .await
            .map_err(step("listing pending audit rows"))?
    });
    let Some(last) = pairs.last() else {
        return Ok(());
    };
    batch.cursor = Some(PendingCursor(last.pair()));

    // The snapshots and pending rows of every pair, read by account in one statement
    // each (the accounts bound as one array, or one VALUES list on SQLite).
    let mut accounts: Vec<&str> = pairs.iter().map(|pair| pair.account_id.as_str()).collect();
    accounts.dedup();
    let accounts = Rows::new(
        "account_id",
        vec![Column::Text(
            accounts.into_iter().map(|account| Some(account.to_owned())).collect(),
        )],
    );
    let (snapshot_rows, pending_rows): (Vec<SnapshotRow>, Vec<PendingAuditRow>) = on_conn!(&mut *conn, |c| {
        let snapshots = (**c)
            .rows_as(
                &accounts,
                "SELECT s.kind, s.account_id, s.bookkeeper_type, s.bookkeeper_vendor_id, s.bookkeeper_id, s.invoice \
                     FROM v JOIN invoice_snapshots s ON s.account_id = v.account_id",
                "reading deliveries' snapshots",
            )
            .await?;
        let pending = (**c)
            .rows_as(
                &accounts,
                "SELECT l.id, l.account_id, l.bookkeeper_type, l.bookkeeper_vendor_id, l.bookkeeper_id, \
                     l.created_at, l.invoice \
                     FROM v JOIN audit_logs l ON l.account_id = v.account_id \
                     WHERE l.status = 'pending' AND l.delivery_id IS NULL",
                "reading pending audit rows",
            )
            .await?;
        (snapshots, pending)
    });
    let mut snapshots: HashMap<(Pair, String), String> = HashMap::with_capacity(snapshot_rows.len());
    for row in snapshot_rows {
        let pair = (
            row.account_id,
            row.bookkeeper_type,
            row.bookkeeper_vendor_id,
            row.bookkeeper_id,
        );
        snapshots.insert((pair, row.kind), row.invoice);
    }
    let mut pending: HashMap<Pair, Vec<PendingAuditRow>> = HashMap::with_capacity(pairs.len());
    for row in pending_rows {
        let pair = (
            row.account_id.clone(),
            row.bookkeeper_type.clone(),
            row.bookkeeper_vendor_id.clone(),
            row.bookkeeper_id.clone(),
        );
        pending.entry(pair).or_default().push(row);
    }
    for row in pairs {
        let pair = row.pair();
        let mut rows = pending.remove(&pair).unwrap_or_default();
        rows.sort_by(|left, right| (left.created_at, &left.id).cmp(&(right.created_at, &right.id)));
        match read_pair(&pair, &mut snapshots, rows) {
            Ok(delivery) => batch.deliveries.push(delivery),
            Err((row, reason)) => {
                let (account, kind, vendor_id, id) = pair;
                batch.unreadable.push(UnreadableDelivery {
                    row,
                    account,
                    bookkeeper: bookkeeper_ref(kind, vendor_id, id),
                    reason,
                });
            }
        }
    }
    Ok(())
}

/// The new delivery of one (account, bookkeeper) from its stored rows, or which row
/// cannot be read and why.
fn read_pair(
    pair: &Pair,
    snapshots: &mut HashMap<(Pair, String), String>,
    rows: Vec<PendingAuditRow>,
) -> Result<DueDelivery, (String, String)> {
    let (account_id, kind, vendor_id, bookkeeper_id) = pair.clone();
    let mut snapshot = |kind: &str| -> Result<Option<Box<Invoice>>, (String, String)> {
        snapshots
            .remove(&(pair.clone(), kind.to_owned()))
            .map(|text| read_invoice(&text).map(Box::new))
            .transpose()
            .map_err(|reason| (format!("{kind} snapshot"), reason))
    };
    let latest = snapshot("computed")?;
    let last_acknowledged = snapshot("acknowledged")?;
    let pending = rows
        .into_iter()
        .map(|row| match read_invoice(&row.invoice) {
            Ok(invoice) => Ok((row.id, invoice)),
            Err(reason) => Err((format!("audit row {}", row.id), reason)),
        })
        .collect::<Result<Vec<_>, _>>()?;
    let account =
        AccountId::parse(account_id).map_err(|error| ("account".to_owned(), format!("account id: {error}")))?;
    Ok(DueDelivery::New {
        account,
        bookkeeper: bookkeeper_ref(kind, vendor_id, bookkeeper_id),
        latest,
        last_acknowledged,
        pending,
    })
}

/// Clears the dirty flag held for the answered deliveries in `v` (`id`) of accounts left
/// with no pending audit row. On PostgreSQL the batch's accounts are one array looked up
/// by primary key, and `dirty IS TRUE` keeps the partial index `services_dirty` out:
/// written as a join (`IN (SELECT …)`) or through that index, the planner, misled by
/// statistics taken before sync marked the accounts (one dirty row estimated, and
/// `dirty_since = dirty_held_since` guessed at 0.5%), walked every dirty account and
/// joined each to the whole batch: dirty accounts x batch size per batch, 100 ms of
/// each 200-delivery batch at 10,000 accounts (2.5 s with every account dirty). This
/// form costs the batch, whatever the statistics say.
const CLEAR_HOLDS_POSTGRES: &str = "UPDATE services SET dirty = FALSE, dirty_held_since = NULL \
     WHERE account_id = ANY(ARRAY(SELECT d.account_id FROM deliveries d JOIN v ON v.id = d.id)) \
     AND dirty IS TRUE AND dirty_held_since IS NOT NULL AND dirty_since = dirty_held_since \
     AND NOT EXISTS (SELECT 1 FROM audit_logs l WHERE l.account_id = services.account_id AND l.status = 'pending')";

/// [`CLEAR_HOLDS_POSTGRES`] for SQLite (no arrays; its planner starts from the subquery).
const CLEAR_HOLDS_SQLITE: &str = "UPDATE services SET dirty = FALSE, dirty_held_since = NULL \
     WHERE account_id IN (SELECT d.account_id FROM deliveries d JOIN v ON v.id = d.id) \
     AND dirty AND dirty_held_since IS NOT NULL AND dirty_since = dirty_held_since \
     AND NOT EXISTS (SELECT 1 FROM audit_logs l WHERE l.account_id = services.account_id AND l.status = 'pending')";

/// Of the standings in `v`, the last one (by `ord`) of each account: one window over
/// the batch (a correlated `NOT EXISTS` here was quadratic in the batch size).
const LAST_STANDING: &str = "SELECT account_id, standing, message, reason FROM ( \
     SELECT d.account_id, v.standing, v.message, v.reason, \
            ROW_NUMBER() OVER (PARTITION BY d.account_id ORDER BY v.ord DESC) AS latest \
     FROM v JOIN deliveries d ON d.id = v.id) ranked WHERE latest = 1";

/// The rows of a multi-row statement, column by column, offered to it as the common
/// table `v(…)`: on PostgreSQL one array per column (`UNNEST`), so the statement's text
/// is the same every batch; on SQLite `VALUES` with anonymous `?` placeholders (numbered
/// ones make a long SQLite statement quadratic to prepare).
pub(super) struct Rows {
    /// The column names of `v`, comma-separated.
    names: &'static str,
    columns: Vec<Column>,
}

pub(super) enum Column {
    Text(Vec<Option<String>>),
    Int(Vec<Option<i64>>),
}

impl Column {
    fn len(&self) -> usize {
        match self {
            Column::Text(values) => values.len(),
            Column::Int(values) => values.len(),
        }
    }
}

/// SQLite's limit on parameters per statement (`SQLITE_MAX_VARIABLE_NUMBER`), kept
/// well under.
const SQLITE_PARAMETERS: usize = 30_000;

impl Rows {
    pub(super) fn new(names: &'static str, columns: Vec<Column>) -> Rows {
        Rows { names, columns }
    }

    fn len(&self) -> usize {
        self.columns.first().map_or(0, Column::len)
    }

    /// Rows per statement: every row in one on PostgreSQL; on SQLite as many as its
    /// parameter limit allows.
    fn rows_per_statement(&self) -> usize {
        (SQLITE_PARAMETERS / self.columns.len().max(1)).max(1)
    }
}

/// How each backend is handed [`Rows`].
trait RowsDialect: sqlx::Database {
    /// `WITH v(names) AS (…)` for `count` rows of `rows`.
    fn with_rows(rows: &Rows, count: usize) -> String;
    /// Binds rows `range` of `rows`, in the order of [`RowsDialect::with_rows`].
    fn bind_rows<'q>(
        query: sqlx::query::Query<'q, Self, <Self as sqlx::Database>::Arguments<'q>>,
        rows: &'q Rows,
        range: std::ops::Range<usize>,
    ) -> sqlx::query::Query<'q, Self, <Self as sqlx::Database>::Arguments<'q>>;
}

impl RowsDialect for sqlx::Postgres {
    fn with_rows(rows: &Rows, _count: usize) -> String {
        let arrays: Vec<String> = rows
            .columns
            .iter()
            .enumerate()
            .map(|(index, column)| match column {
                Column::Text(_) => format!("${}::text[]", index + 1),
                Column::Int(_) => format!("${}::int8[]", index + 1),
            })
            .collect();
        format!(
            "WITH v({}) AS (SELECT * FROM UNNEST({})) ",
            rows.names,
            arrays.join(", ")
        )
    }

    fn bind_rows<'q>(
        mut query: sqlx::query::Query<'q, Self, sqlx::postgres::PgArguments>,
        rows: &'q Rows,
        range: std::ops::Range<usize>,
    ) -> sqlx::query::Query<'q, Self, sqlx::postgres::PgArguments> {
        for column in &rows.columns {
            query = match column {
                Column::Text(values) => query.bind(&values[range.clone()]),
                Column::Int(values) => query.bind(&values[range.clone()]),
            };
        }
        query
    }
}

impl RowsDialect for sqlx::Sqlite {
    fn with_rows(rows: &Rows, count: usize) -> String {
        let row = format!("({})", vec!["?"; rows.columns.len()].join(", "));
        format!(
            "WITH v({}) AS (VALUES {}) ",
            rows.names,
            vec![row.as_str(); count].join(", ")
        )
    }

    fn bind_rows<'q>(
        mut query: sqlx::query::Query<'q, Self, sqlx::sqlite::SqliteArguments<'q>>,
        rows: &'q Rows,
        range: std::ops::Range<usize>,
    ) -> sqlx::query::Query<'q, Self, sqlx::sqlite::SqliteArguments<'q>> {
        for index in range {
            for column in &rows.columns {
                query = match column {
                    Column::Text(values) => query.bind(values[index].as_deref()),
                    Column::Int(values) => query.bind(values[index]),
                };
            }
        }
        query
    }
}

/// Runs `WITH v(…) AS (rows) body` over every row of `rows` (in as many statements as
/// the backend needs) on `connection`, and returns the rows they return, in order.
async fn fetch_with_rows<'c, DB>(
    connection: &'c mut <DB as sqlx::Database>::Connection,
    rows: &Rows,
    body: &str,
    what: &'static str,
) -> Result<Vec<<DB as sqlx::Database>::Row>, StoreError>
where
    DB: RowsDialect,
    for<'q> <DB as sqlx::Database>::Arguments<'q>: sqlx::IntoArguments<'q, DB>,
    for<'e> &'e mut <DB as sqlx::Database>::Connection: sqlx::Executor<'e, Database = DB>,
{
    let mut returned = Vec::new();
    let total = rows.len();
    let mut start = 0;
    while start < total {
        let end = (start + rows.rows_per_statement()).min(total);
        let sql = format!("{}{body}", DB::with_rows(rows, end - start));
        let query = DB::bind_rows(sqlx::query::<DB>(&sql), rows, start..end);
        returned.extend(query.fetch_all(&mut *connection).await.map_err(step(what))?);
        start = end;
    }
    Ok(returned)
}

/// [`fetch_with_rows`] on whichever backend's connection is at hand (the backend is
/// named by the connection's type, so `on_conn!` bodies stay written once).
pub(super) trait RowsConnection {
    /// The first column of what the statements return (`RETURNING id`), if anything.
    async fn with_rows(&mut self, rows: &Rows, body: &str, what: &'static str) -> Result<Vec<String>, StoreError>;

    /// What the statements return, mapped with `FromRow`.
    async fn rows_as<T>(&mut self, rows: &Rows, body: &str, what: &'static str) -> Result<Vec<T>, StoreError>
    where
        T: for<'r> sqlx::FromRow<'r, sqlx::postgres::PgRow> + for<'r> sqlx::FromRow<'r, sqlx::sqlite::SqliteRow>;
}

impl RowsConnection for sqlx::PgConnection {
    async fn with_rows(&mut self, rows: &Rows, body: &str, what: &'static str) -> Result<Vec<String>, StoreError> {
        first_column(fetch_with_rows::<sqlx::Postgres>(self, rows, body, what).await?, what)
    }

    async fn rows_as<T>(&mut self, rows: &Rows, body: &str, what: &'static str) -> Result<Vec<T>, StoreError>
    where
        T: for<'r> sqlx::FromRow<'r, sqlx::postgres::PgRow> + for<'r> sqlx::FromRow<'r, sqlx::sqlite::SqliteRow>,
    {
        let fetched = fetch_with_rows::<sqlx::Postgres>(self, rows, body, what).await?;
        fetched.iter().map(|row| T::from_row(row).map_err(step(what))).collect()
    }
}

impl RowsConnection for sqlx::SqliteConnection {
    async fn with_rows(&mut self, rows: &Rows, body: &str, what: &'static str) -> Result<Vec<String>, StoreError> {
        first_column(fetch_with_rows::<sqlx::Sqlite>(self, rows, body, what).await?, what)
    }

    async fn rows_as<T>(&mut self, rows: &Rows, body: &str, what: &'static str) -> Result<Vec<T>, StoreError>
    where
        T: for<'r> sqlx::FromRow<'r, sqlx::postgres::PgRow> + for<'r> sqlx::FromRow<'r, sqlx::sqlite::SqliteRow>,
    {
        let fetched = fetch_with_rows::<sqlx::Sqlite>(self, rows, body, what).await?;
        fetched.iter().map(|row| T::from_row(row).map_err(step(what))).collect()
    }
}

/// The first column of each row, as text.
fn first_column<R>(rows: Vec<R>, what: &'static str) -> Result<Vec<String>, StoreError>
where
    R: sqlx::Row,
    String: for<'r> sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    usize: sqlx::ColumnIndex<R>,
{
    rows.iter()
        .map(|row| row.try_get::<String, usize>(0).map_err(step(what)))
        .collect()
}

/// The columns one [`DeliveryResult`] writes.
struct RecordedAttempt<'a> {
    delivery_status: &'static str,
    row_status: &'static str,
    /// Counted attempts: 0 when the delivery was not attempted.
    attempts: i64,
    reason: Option<&'a str>,
    message: Option<&'a str>,
    response_code: Option<i64>,
    standing: Option<&'static str>,
    error: Option<&'a str>,
    error_code: Option<&'static str>,
    next_attempt_at: i64,
    /// Answered for good (acknowledged or refused).
    terminal: bool,
}

impl<'a> RecordedAttempt<'a> {
    fn of(
        result: &'a DeliveryResult,
        now: GregorianSeconds,
        code: impl Fn(&Option<u16>) -> Option<i64>,
    ) -> RecordedAttempt<'a> {
        let answered = |response_code: &Option<u16>, standing: Option<&'static str>| RecordedAttempt {
            delivery_status: "acknowledged",
            row_status: "completed",
            attempts: 1,
            reason: None,
            message: None,
            response_code: code(response_code),
            standing,
            error: None,
            error_code: None,
            next_attempt_at: 0,
            terminal: true,
        };
        match result {
            DeliveryResult::Acknowledged {
                response_code,
                standing,
            } => answered(response_code, *standing),
            DeliveryResult::Refused {
                response_code,
                reason,
                message,
                standing,
            } => RecordedAttempt {
                delivery_status: "refused",
                row_status: "failed",
                reason: Some(reason.as_str()),
                message: Some(message.as_str()),
                ..answered(response_code, *standing)
            },
            DeliveryResult::NotTaken {
                response_code,
                code: error_code,
                error,
                next_attempt_at,
            } => RecordedAttempt {
                delivery_status: "in_flight",
                row_status: "pending",
                attempts: 1,
                reason: None,
                message: None,
                response_code: code(response_code),
                standing: None,
                error: Some(error.as_str()),
                error_code: Some(error_code),
                next_attempt_at: *next_attempt_at,
                terminal: false,
            },
            DeliveryResult::AwaitingConfiguration { error } => RecordedAttempt {
                delivery_status: "in_flight",
                row_status: "pending",
                attempts: 0,
                reason: None,
                message: None,
                response_code: None,
                standing: None,
                error: Some(error.as_str()),
                error_code: Some(NOT_CONFIGURED),
                next_attempt_at: now.0.saturating_add(1),
                terminal: false,
            },
        }
    }
}

/// Why a delivery (or a bookkeeper's pending audit rows) still waits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeliveryState {
    /// A worker holds its lease: another run, or one that died (the lease then expires).
    Leased,
    /// Failed; waiting for its retry time.
    WaitingRetry,
    /// Due now, not attempted yet (a run stopped early, or none ran since).
    Due,
    /// Its bookkeeper is not configured; goes out on the first run after it is.
    AwaitingConfiguration,
    /// Failed for good: past the retry policy's last attempt, or rejected. Waits for
    /// `tally deliveries retry`.
    Failed,
    /// Pending audit rows not yet in a delivery: they wait behind the one in flight
    /// for the same bookkeeper, or for the next run.
    Queued,
}

impl DeliveryState {
    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryState::Leased => "leased",
            DeliveryState::WaitingRetry => "waiting-retry",
            DeliveryState::Due => "due",
            DeliveryState::AwaitingConfiguration => "waiting-for-configuration",
            DeliveryState::Failed => "failed",
            DeliveryState::Queued => "queued",
        }
    }

    /// The state of an in-flight delivery at `now` (the rule `pending_deliveries` counts with).
    pub(super) fn of(
        now: GregorianSeconds,
        lease_until: i64,
        next_attempt_at: i64,
        error_code: Option<&str>,
    ) -> DeliveryState {
        if lease_until >= now.0 {
            DeliveryState::Leased
        } else if next_attempt_at >= NEVER {
            DeliveryState::Failed
        } else if error_code == Some(NOT_CONFIGURED) {
            DeliveryState::AwaitingConfiguration
        } else if next_attempt_at > now.0 {
            DeliveryState::WaitingRetry
        } else {
            DeliveryState::Due
        }
    }
}

/// The deliveries left waiting, by why (`tally deliveries`, and every run's report).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PendingDeliveries {
    pub leased: u64,
    pub waiting_retry: u64,
    pub due: u64,
    pub awaiting_configuration: u64,
    pub failed: u64,
    /// Bookkeepers with pending audit rows not yet in a delivery.
    pub queued: u64,
    /// The earliest time an automatic attempt can happen: a retry time, or the end of
    /// a lease. `None` when only an operator or a configuration change can help.
    pub next_attempt_at: Option<GregorianSeconds>,
}

impl PendingDeliveries {
    pub fn total(&self) -> u64 {
        self.leased + self.waiting_retry + self.due + self.awaiting_configuration + self.failed + self.queued
    }
}

/// One line of `tally deliveries`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WaitingDelivery {
    /// `None` for queued audit rows not yet frozen into a delivery.
    pub delivery_id: Option<String>,
    pub account: String,
    pub bookkeeper: BookkeeperRef,
    pub attempts: i64,
    /// `None` when no automatic attempt is planned (failed, queued).
    pub next_attempt_at: Option<GregorianSeconds>,
    pub lease_until: Option<GregorianSeconds>,
    pub last_error: Option<String>,
    pub state: DeliveryState,
}

#[derive(sqlx::FromRow)]
struct PendingCountRow {
    leased: i64,
    waiting_retry: i64,
    due: i64,
    awaiting_configuration: i64,
    failed: i64,
    queued: i64,
    next_attempt_at: Option<i64>,
}

#[derive(sqlx::FromRow)]
struct WaitingRow {
    id: String,
    account_id: String,
    bookkeeper_type: String,
    bookkeeper_vendor_id: String,
    bookkeeper_id: String,
    attempts: i64,
    next_attempt_at: i64,
    lease_until: i64,
    last_error: Option<String>,
    last_error_code: Option<String>,
}

impl WaitingRow {
    /// Where this in-flight delivery stands at `now`, as `tally deliveries` lists it.
    fn at(self, now: GregorianSeconds) -> WaitingDelivery {
        let state = DeliveryState::of(
            now,
            self.lease_until,
            self.next_attempt_at,
            self.last_error_code.as_deref(),
        );
        WaitingDelivery {
            delivery_id: Some(self.id),
            account: self.account_id,
            bookkeeper: bookkeeper_ref(self.bookkeeper_type, self.bookkeeper_vendor_id, self.bookkeeper_id),
            attempts: self.attempts,
            next_attempt_at: match state {
                DeliveryState::Failed | DeliveryState::Queued => None,
                DeliveryState::Leased => Some(GregorianSeconds(self.next_attempt_at.max(self.lease_until + 1))),
                DeliveryState::WaitingRetry | DeliveryState::Due | DeliveryState::AwaitingConfiguration => {
                    Some(GregorianSeconds(self.next_attempt_at))
                }
            },
            lease_until: (state == DeliveryState::Leased).then_some(GregorianSeconds(self.lease_until)),
            last_error: self.last_error,
            state,
        }
    }
}

#[derive(sqlx::FromRow)]
struct QueuedRow {
    account_id: String,
    bookkeeper_type: String,
    bookkeeper_vendor_id: String,
    bookkeeper_id: String,
    last_error: Option<String>,
}

fn count(value: i64) -> u64 {
    u64::try_from(value).unwrap_or(0)
}

impl Store {
    /// What waits at `now` (of one account, or all), counted in one query by
    /// [`DeliveryState`].
    pub async fn pending_deliveries(
        &self,
        now: GregorianSeconds,
        only: Option<&AccountId>,
    ) -> Result<PendingDeliveries, StoreError> {
        let only = only.map_or("", AccountId::as_str);
        let mut conn = self.acquire().await?;
        let row: PendingCountRow = on_conn!(&mut conn, |c| {
            sqlx::query_as(
                "SELECT \
                   CAST(COALESCE(SUM(CASE WHEN lease_until >= $1 THEN 1 ELSE 0 END), 0) AS BIGINT) AS leased, \
                   CAST(COALESCE(SUM(CASE WHEN lease_until < $1 AND next_attempt_at < $3 \
                       AND COALESCE(last_error_code, '') <> $4 AND next_attempt_at > $1 THEN 1 ELSE 0 END), 0) AS BIGINT) \
                       AS waiting_retry, \
                   CAST(COALESCE(SUM(CASE WHEN lease_until < $1 AND COALESCE(last_error_code, '') <> $4 \
                       AND next_attempt_at <= $1 THEN 1 ELSE 0 END), 0) AS BIGINT) AS due, \
                   CAST(COALESCE(SUM(CASE WHEN lease_until < $1 AND next_attempt_at < $3 \
                       AND last_error_code = $4 THEN 1 ELSE 0 END), 0) AS BIGINT) AS awaiting_configuration, \
                   CAST(COALESCE(SUM(CASE WHEN lease_until < $1 AND next_attempt_at >= $3 THEN 1 ELSE 0 END), 0) \
                       AS BIGINT) AS failed, \
                   MIN(CASE WHEN lease_until >= $1 AND lease_until + 1 > next_attempt_at THEN lease_until + 1 \
                            WHEN next_attempt_at >= $3 OR COALESCE(last_error_code, '') = $4 THEN NULL \
                            ELSE next_attempt_at END) AS next_attempt_at, \
                   (SELECT COUNT(*) FROM (SELECT DISTINCT account_id, bookkeeper_type, bookkeeper_vendor_id, \
                        bookkeeper_id FROM audit_logs WHERE status = 'pending' AND delivery_id IS NULL \
                        AND ($2 = '' OR account_id = $2)) pairs) AS queued \
                 FROM deliveries WHERE status = 'in_flight' AND ($2 = '' OR account_id = $2)",
            )
            .bind(now.0)
            .bind(only)
            .bind(NEVER)
            .bind(NOT_CONFIGURED)
            .fetch_one(&mut **c)
            .await
            .map_err(step("counting pending deliveries"))?
        });
        Ok(PendingDeliveries {
            leased: count(row.leased),
            waiting_retry: count(row.waiting_retry),
            due: count(row.due),
            awaiting_configuration: count(row.awaiting_configuration),
            failed: count(row.failed),
            queued: count(row.queued),
            next_attempt_at: row.next_attempt_at.map(GregorianSeconds),
        })
    }

    /// Up to `limit` deliveries waiting at `now` (in flight, then queued audit rows),
    /// by account and bookkeeper.
    pub async fn waiting_deliveries(
        &self,
        now: GregorianSeconds,
        only: Option<&AccountId>,
        limit: usize,
    ) -> Result<Vec<WaitingDelivery>, StoreError> {
        let only = only.map_or("", AccountId::as_str);
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let mut conn = self.acquire().await?;
        let in_flight: Vec<WaitingRow> = on_conn!(&mut conn, |c| {
            sqlx::query_as(
                "SELECT id, account_id, bookkeeper_type, bookkeeper_vendor_id, bookkeeper_id, attempts, \
                 next_attempt_at, lease_until, last_error, last_error_code FROM deliveries \
                 WHERE status = 'in_flight' AND ($1 = '' OR account_id = $1) \
                 ORDER BY account_id, bookkeeper_type, bookkeeper_vendor_id, bookkeeper_id LIMIT $2",
            )
            .bind(only)
            .bind(limit)
            .fetch_all(&mut **c)
            .await
            .map_err(step("listing pending deliveries"))?
        });
        let room = limit.saturating_sub(i64::try_from(in_flight.len()).unwrap_or(i64::MAX));
        let queued: Vec<QueuedRow> = on_conn!(&mut conn, |c| {
            sqlx::query_as(
                "SELECT account_id, bookkeeper_type, bookkeeper_vendor_id, bookkeeper_id, MAX(last_error) AS last_error \
                 FROM audit_logs WHERE status = 'pending' AND delivery_id IS NULL AND ($1 = '' OR account_id = $1) \
                 GROUP BY account_id, bookkeeper_type, bookkeeper_vendor_id, bookkeeper_id \
                 ORDER BY account_id, bookkeeper_type, bookkeeper_vendor_id, bookkeeper_id LIMIT $2",
            )
            .bind(only)
            .bind(room)
            .fetch_all(&mut **c)
            .await
            .map_err(step("listing queued audit rows"))?
        });
        let mut waiting: Vec<WaitingDelivery> = in_flight.into_iter().map(|row| row.at(now)).collect();
        waiting.extend(queued.into_iter().map(|row| WaitingDelivery {
            delivery_id: None,
            account: row.account_id,
            bookkeeper: bookkeeper_ref(row.bookkeeper_type, row.bookkeeper_vendor_id, row.bookkeeper_id),
            attempts: 0,
            next_attempt_at: None,
            lease_until: None,
            last_error: row.last_error,
            state: DeliveryState::Queued,
        }));
        Ok(waiting)
    }

    /// Up to `limit` in-flight deliveries, after delivery id `after`, that a
    /// bookkeeper-sync run starting at `now` would attempt: not leased, not failed for
    /// good, due (or waiting for configuration, which every run wakes first). Reads
    /// only, in id order, for the billing dry run.
    pub async fn deliveries_due_at(
        &self,
        now: GregorianSeconds,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<WaitingDelivery>, StoreError> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let mut conn = self.acquire().await?;
        let rows: Vec<WaitingRow> = on_conn!(&mut conn, |c| {
            sqlx::query_as(
                "SELECT id, account_id, bookkeeper_type, bookkeeper_vendor_id, bookkeeper_id, attempts, \
                 next_attempt_at, lease_until, last_error, last_error_code FROM deliveries \
                 WHERE status = 'in_flight' AND lease_until < $1 AND next_attempt_at < $2 \
                 AND (next_attempt_at <= $1 OR last_error_code = $3) AND id > $4 ORDER BY id LIMIT $5",
            )
            .bind(now.0)
            .bind(NEVER)
            .bind(NOT_CONFIGURED)
            .bind(after.unwrap_or(""))
            .bind(limit)
            .fetch_all(&mut **c)
            .await
            .map_err(step("listing deliveries due"))?
        });
        Ok(rows.into_iter().map(|row| row.at(now)).collect())
    }

    /// Up to `limit` (account, bookkeeper) pairs after `after` whose pending audit rows
    /// a bookkeeper-sync run would freeze into a new delivery, with what it needs to
    /// build each ([`DueDelivery::New`]). Reads only (nothing is leased or frozen), for
    /// the billing dry run.
    pub async fn queued_deliveries(&self, after: Option<&PendingCursor>, limit: usize) -> Result<DueBatch, StoreError> {
        let mut batch = DueBatch::default();
        let mut conn = self.acquire().await?;
        let room = i64::try_from(limit.max(1)).unwrap_or(i64::MAX);
        queued_pairs_on(&mut conn, "", after, room, &mut batch).await?;
        Ok(batch)
    }

    /// Makes the deliveries waiting for their bookkeeper's configuration due at `now`,
    /// at the start of every run: the run then finds out whether it is configured
    /// (those still waiting are kept out of the rest of that run only).
    pub async fn wake_awaiting_configuration(
        &self,
        now: GregorianSeconds,
        only: Option<&AccountId>,
    ) -> Result<u64, StoreError> {
        let only = only.map_or("", AccountId::as_str);
        let mut conn = self.acquire().await?;
        let changed = on_conn!(&mut conn, |c| {
            sqlx::query(
                "UPDATE deliveries SET next_attempt_at = $1 \
                 WHERE status = 'in_flight' AND last_error_code = $2 AND lease_until < $1 \
                 AND next_attempt_at > $1 AND next_attempt_at < $3 AND ($4 = '' OR account_id = $4)",
            )
            .bind(now.0)
            .bind(NOT_CONFIGURED)
            .bind(NEVER)
            .bind(only)
            .execute(&mut **c)
            .await
            .map_err(step("waking deliveries waiting for configuration"))?
            .rows_affected()
        });
        Ok(changed)
    }

    /// Makes every in-flight delivery (of one account, or all) due at `now`: waiting
    /// retries and deliveries failed for good alike. Their attempt counts stay, so a
    /// delivery past the retry policy's last attempt gets one more attempt. Leased
    /// deliveries are left to their worker until the lease ends. Returns how many
    /// were made due.
    pub async fn retry_deliveries(&self, now: GregorianSeconds, only: Option<&AccountId>) -> Result<u64, StoreError> {
        let only = only.map_or("", AccountId::as_str);
        let mut conn = self.acquire().await?;
        let changed = on_conn!(&mut conn, |c| {
            sqlx::query(
                "UPDATE deliveries SET next_attempt_at = $1, updated_at = $1 \
                 WHERE status = 'in_flight' AND lease_until < $1 AND next_attempt_at > $1 \
                 AND ($2 = '' OR account_id = $2)",
            )
            .bind(now.0)
            .bind(only)
            .execute(&mut **c)
            .await
            .map_err(step("making deliveries due"))?
            .rows_affected()
        });
        Ok(changed)
    }
}
