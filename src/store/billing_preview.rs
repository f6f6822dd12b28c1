//! The billing dry run's reads (`tally run billing --dry-run`), on the connection of a
//! staged reconcile: its temporary tables hold the quantities the reconcile would
//! write and the accounts it would mark, so sync's candidates and inputs are read as
//! they would be after it, without writing. One connection for the whole dry run
//! (never a second one from the pool while the session holds its own).
//!
//! Nothing here writes; nothing here prices or decides.

use super::billing::{placeholders, pricing_inputs_on, QuantitySource, MARKED};
use super::deliveries::DeliveryState;
use super::services::AncestorCache;
use super::{on_conn, step, PendingChange, ReconcileSession, StoreError, StoredAccount, SyncScope, UnreadableAccount};
use crate::domain::plan::BookkeeperRef;
use crate::domain::summary::GregorianSeconds;
use crate::domain::AccountId;
use std::collections::BTreeMap;

/// Where an (account, bookkeeper) already stands in the delivery queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QueuedPair {
    /// A delivery is in flight (in this state): new audit rows wait behind it.
    InFlight(DeliveryState),
    /// Pending audit rows in no delivery: the next delivery carries them.
    Queued,
}

#[derive(sqlx::FromRow)]
struct PairRow {
    account_id: String,
    bookkeeper_type: String,
    bookkeeper_vendor_id: String,
    bookkeeper_id: String,
    lease_until: Option<i64>,
    next_attempt_at: Option<i64>,
    last_error_code: Option<String>,
}

fn parse_ids(ids: Vec<String>) -> Result<Vec<AccountId>, StoreError> {
    ids.into_iter()
        .map(|id| AccountId::parse(id).map_err(|error| StoreError::InvalidRow(error.to_string())))
        .collect()
}

impl ReconcileSession {
    /// Indexes the staged changes by key for the reads that follow (each batch looks up
    /// its accounts' changes); a temporary index, dropped with its table by `finish`.
    pub async fn index_staged_changes(&mut self) -> Result<(), StoreError> {
        on_conn!(&mut self.conn, |c| {
            sqlx::query(
                "CREATE INDEX reconcile_changes_by_key ON reconcile_changes (account_id, bucket, category, item)",
            )
            .execute(&mut **c)
            .await
            .map_err(step("indexing the staged changes"))?;
        });
        Ok(())
    }

    /// The accounts sync would reprice after this reconcile were written, in id order:
    /// those of `scope` and, unless it names accounts, those the reconcile would mark.
    pub async fn repricing_candidates(&mut self, scope: &SyncScope) -> Result<Vec<AccountId>, StoreError> {
        let sql = match scope {
            SyncScope::Accounts(accounts) => return Ok(accounts.clone()),
            SyncScope::Marked => format!(
                "SELECT account_id FROM services WHERE {MARKED} UNION SELECT account_id FROM reconcile_changed ORDER BY 1"
            ),
            SyncScope::All => format!(
                "SELECT account_id FROM service_plan_assignments \
                 UNION SELECT account_id FROM invoice_snapshots WHERE kind = 'computed' \
                 UNION SELECT account_id FROM services WHERE {MARKED} \
                 UNION SELECT account_id FROM reconcile_changed ORDER BY 1"
            ),
        };
        let ids: Vec<String> = on_conn!(&mut self.conn, |c| {
            sqlx::query_scalar(&sql)
                .fetch_all(&mut **c)
                .await
                .map_err(step("listing the accounts to reprice"))?
        });
        parse_ids(ids)
    }

    /// `Store::pricing_inputs` of a batch with the quantities this reconcile would write.
    pub async fn staged_pricing_inputs(
        &mut self,
        accounts: &[AccountId],
        ancestors: &mut AncestorCache,
    ) -> Result<(Vec<StoredAccount>, Vec<UnreadableAccount>), StoreError> {
        pricing_inputs_on(
            &mut self.conn,
            accounts,
            &PendingChange::default(),
            QuantitySource::Staged,
            ancestors,
        )
        .await
    }

    /// Where the (account, bookkeeper) pairs of `accounts` stand in the delivery queue
    /// at `now`; pairs with nothing waiting are absent. Two statements per batch.
    pub async fn queued_pairs(
        &mut self,
        accounts: &[AccountId],
        now: GregorianSeconds,
    ) -> Result<BTreeMap<(AccountId, BookkeeperRef), QueuedPair>, StoreError> {
        let mut found = BTreeMap::new();
        if accounts.is_empty() {
            return Ok(found);
        }
        let list = placeholders(1, accounts.len());
        let in_flight = format!(
            "SELECT account_id, bookkeeper_type, bookkeeper_vendor_id, bookkeeper_id, lease_until, next_attempt_at, \
             last_error_code FROM deliveries WHERE status = 'in_flight' AND account_id IN ({list})"
        );
        let queued = format!(
            "SELECT DISTINCT account_id, bookkeeper_type, bookkeeper_vendor_id, bookkeeper_id, \
             CAST(NULL AS BIGINT) AS lease_until, CAST(NULL AS BIGINT) AS next_attempt_at, \
             CAST(NULL AS TEXT) AS last_error_code \
             FROM audit_logs WHERE status = 'pending' AND delivery_id IS NULL AND account_id IN ({list})"
        );
        // Queued first: a pair with a delivery in flight is reported as that.
        for sql in [queued, in_flight] {
            let rows: Vec<PairRow> = on_conn!(&mut self.conn, |c| {
                let mut query = sqlx::query_as::<_, PairRow>(&sql);
                for account in accounts {
                    query = query.bind(account.as_str());
                }
                query
                    .fetch_all(&mut **c)
                    .await
                    .map_err(step("reading the delivery queue"))?
            });
            for row in rows {
                let account = AccountId::parse(row.account_id.as_str())
                    .map_err(|error| StoreError::InvalidRow(error.to_string()))?;
                let bookkeeper = BookkeeperRef {
                    kind: row.bookkeeper_type,
                    vendor_id: row.bookkeeper_vendor_id,
                    id: row.bookkeeper_id,
                };
                let state = match (row.lease_until, row.next_attempt_at) {
                    (Some(lease_until), Some(next_attempt_at)) => QueuedPair::InFlight(DeliveryState::of(
                        now,
                        lease_until,
                        next_attempt_at,
                        row.last_error_code.as_deref(),
                    )),
                    _ => QueuedPair::Queued,
                };
                found.insert((account, bookkeeper), state);
            }
        }
        Ok(found)
    }
}
