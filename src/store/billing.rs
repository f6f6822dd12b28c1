//! Billing state: what the sync job reads to reprice accounts, the invoice snapshots
//! and audit rows it writes, and the accounts' standing. The delivery queue of the
//! bookkeeper-sync job is `deliveries.rs`.
//!
//! Reads are set-based per batch of accounts (a handful of queries whatever the batch
//! size); a batch's writes commit in one transaction, so an interrupted run leaves
//! every account either fully repriced or untouched. Invoices are stored as the JSON
//! of `wire::invoice` and read back with it; nothing here prices or decides.

use super::deliveries::{Column, Rows, RowsConnection};
use super::locked::{on_tx, Tx};
use super::services::{AncestorCache, CatalogPlan, ServicesChange};
use super::{on_conn, step, Store, StoreError};
use crate::domain::document::Map;
use crate::domain::ids::EmptyName;
use crate::domain::invoice::Invoice;
use crate::domain::plan::BookkeeperRef;
use crate::domain::quantities::{Bucket, QuantityBuckets};
use crate::domain::summary::GregorianSeconds;
use crate::domain::{AccountId, Category, ItemName, Money, PlanId};
use crate::wire::document::map_from_json;
use crate::wire::invoice::{invoice_text, parse_invoice, plan_text};
use serde_json::value::RawValue;
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::Arc;

/// Which accounts a sync run reprices.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SyncScope {
    /// Accounts marked for repricing (by reconciliation, a plan or override change, or by hand).
    Marked,
    /// These accounts, marked or not.
    Accounts(Vec<AccountId>),
    /// Every account that has plans or invoices.
    All,
}

/// One assigned plan as stored, with its document when its vendor has it.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredAssignment {
    pub plan_id: PlanId,
    pub vendor_id: AccountId,
    pub overrides: Map,
    /// The overrides as stored: part of the plan-set key.
    pub overrides_text: String,
    /// `None` when the vendor has no such plan (skipped and reported, Q-PLN-10).
    /// Read and parsed once per batch, shared by every account assigned the plan.
    pub document: Option<Arc<Map>>,
}

/// Everything repricing reads about one account.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredAccount {
    pub account: AccountId,
    pub name: String,
    /// The root of the tree: the master account.
    pub is_master: bool,
    /// The nearest reseller ancestor, or the master.
    pub reseller_id: AccountId,
    /// Whether that is the master account (its bookkeeper type then comes from the
    /// `master_account_bookkeeper` setting).
    pub billed_by_master: bool,
    /// The services-level bookkeeper object, if any.
    pub bookkeeper: Option<Map>,
    pub bookkeeper_text: String,
    /// Account-wide overrides.
    pub overrides: Map,
    pub overrides_text: String,
    pub assignments: Vec<StoredAssignment>,
    pub quantities: QuantityBuckets,
    /// The `computed` snapshot, by bookkeeper.
    pub last_computed: Vec<Invoice>,
    /// Whether the account was priced before (else its first commit is a baseline).
    pub priced: bool,
    /// When it was marked for repricing, if it is.
    pub marked_since: Option<i64>,
    /// The services record's revision when read (`store/locked.rs`).
    pub revision: i64,
}

/// An account whose stored billing data cannot be read; the others go on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnreadableAccount {
    pub account: AccountId,
    pub problem: String,
}

/// An audit row to write (`audit-and-summaries.md` §2).
#[derive(Debug, Clone, PartialEq)]
pub struct NewAuditRow {
    pub id: String,
    /// The annotated invoice.
    pub invoice: Invoice,
    /// `true` for bookkeepers that need no call: the row is `completed` at once.
    pub completed: bool,
    /// Who or what caused it.
    pub audit: serde_json::Value,
    pub hidden: bool,
}

/// The outcome of repricing one account, to be written.
#[derive(Debug, Clone, PartialEq)]
pub struct RepricedAccount {
    pub account: AccountId,
    /// The new `computed` snapshot (replaces the old one whole).
    pub snapshot: Vec<Invoice>,
    pub audit_rows: Vec<NewAuditRow>,
    /// New `acknowledged` snapshots of bookkeepers that need no call.
    pub acknowledged: Vec<Invoice>,
    /// The repricing mark that was read; a newer mark set meanwhile is kept.
    pub marked_since: Option<i64>,
    /// The revision of the inputs it was priced from: when the stored one differs,
    /// the account changed or was repriced meanwhile and this outcome is not written.
    pub revision: i64,
}

/// Marked for repricing: `dirty`, unless it is only held for undelivered audit rows
/// (`dirty_held_since`, set below and cleared by `deliveries.rs`).
pub(super) const MARKED: &str = "dirty AND (dirty_held_since IS NULL OR dirty_since IS DISTINCT FROM dirty_held_since)";
const MARKED_S: &str = "s.dirty AND (s.dirty_held_since IS NULL OR s.dirty_since IS DISTINCT FROM s.dirty_held_since)";

/// Up to this many rows per multi-row statement (bind limits of both backends).
const ROWS_PER_STATEMENT: usize = 400;

pub(super) fn placeholders(first: usize, count: usize) -> String {
    (first..first + count)
        .map(|index| format!("${index}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// `(vendor_id = $1 AND plan_id = $2) OR …` for `count` pairs bound in that order.
fn plan_pairs(count: usize) -> String {
    (0..count)
        .map(|index| format!("(vendor_id = ${} AND plan_id = ${})", index * 2 + 1, index * 2 + 2))
        .collect::<Vec<_>>()
        .join(" OR ")
}

fn invalid(account: &AccountId, what: &str, problem: impl std::fmt::Display) -> UnreadableAccount {
    UnreadableAccount {
        account: account.clone(),
        problem: format!("{what}: {problem}"),
    }
}

fn parse_object(text: &str) -> Result<Map, String> {
    match serde_json::from_str::<serde_json::Value>(text) {
        Ok(serde_json::Value::Object(map)) => Ok(map_from_json(&map)),
        Ok(_) => Err("expected a JSON object".to_owned()),
        Err(error) => Err(error.to_string()),
    }
}

/// Whole Kazoo units (0.0001) of an invoice line sum, for report columns.
fn units(amount: Money) -> Result<i64, StoreError> {
    amount
        .to_units()
        .ok_or_else(|| StoreError::Refused(format!("amount {amount} is not a whole number of 0.0001 units")))
}

#[derive(sqlx::FromRow)]
struct AccountRow {
    id: String,
    name: String,
    parent_id: Option<String>,
    /// `pvt_reseller_id` as stored, for the nearest-reseller rule.
    reseller_id: Option<String>,
    deleted: bool,
    overrides: Option<String>,
    bookkeeper: Option<String>,
    priced_at: Option<i64>,
    dirty: Option<bool>,
    dirty_since: Option<i64>,
    revision: Option<i64>,
}

#[derive(sqlx::FromRow)]
struct AssignmentRow {
    account_id: String,
    plan_id: String,
    vendor_id: String,
    overrides: String,
}

#[derive(sqlx::FromRow)]
struct PlanDocumentRow {
    vendor_id: String,
    plan_id: String,
    document: String,
}

/// A batch's plan documents by (vendor, plan id), each parsed once; `Err` holds why
/// one does not parse, for every account assigned it.
type PlanDocuments = HashMap<(String, String), Result<Arc<Map>, String>>;

/// One stored quantity of a batch's account, its account given by the group it is in.
struct BatchQuantity {
    /// `Err` holds the stored text of a bucket tally does not know.
    bucket: Result<Bucket, String>,
    category: Result<Category, EmptyName>,
    item: Result<ItemName, EmptyName>,
    quantity: i64,
}

/// A batch's quantity rows (`account_id, bucket, category, item, quantity`, in account
/// order) grouped by account. A first night reads some 36 rows per account: each
/// account's id is decoded once per group, and each row is decoded by column position
/// and without a copy of its text. The batch's category and item names are made once
/// and shared by every account that counts them (a few dozen names for 18,000 rows).
fn group_quantities<'r, R>(rows: &'r [R]) -> Result<HashMap<String, Vec<BatchQuantity>>, sqlx::Error>
where
    R: sqlx::Row,
    usize: sqlx::ColumnIndex<R>,
    &'r str: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    i64: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
{
    let mut categories: HashMap<&str, Category> = HashMap::new();
    let mut items: HashMap<&str, ItemName> = HashMap::new();
    let mut grouped: HashMap<String, Vec<BatchQuantity>> = HashMap::new();
    let mut group: Option<(&str, Vec<BatchQuantity>)> = None;
    for row in rows {
        let account: &str = row.try_get(0)?;
        let bucket: &str = row.try_get(1)?;
        let quantity = BatchQuantity {
            bucket: Bucket::parse(bucket).ok_or_else(|| bucket.to_owned()),
            category: shared_name(&mut categories, row.try_get(2)?, Category::parse),
            item: shared_name(&mut items, row.try_get(3)?, ItemName::parse),
            quantity: row.try_get(4)?,
        };
        match &mut group {
            Some((current, quantities)) if *current == account => quantities.push(quantity),
            _ => {
                if let Some((done, quantities)) = group.replace((account, vec![quantity])) {
                    grouped.entry(done.to_owned()).or_default().extend(quantities);
                }
            }
        }
    }
    if let Some((done, quantities)) = group {
        grouped.entry(done.to_owned()).or_default().extend(quantities);
    }
    Ok(grouped)
}

/// The name `text` parses to, made once per batch and then shared.
fn shared_name<'r, Name: Clone>(
    made: &mut HashMap<&'r str, Name>,
    text: &'r str,
    parse: fn(&'r str) -> Result<Name, EmptyName>,
) -> Result<Name, EmptyName> {
    if let Some(name) = made.get(text) {
        return Ok(name.clone());
    }
    let name = parse(text)?;
    made.insert(text, name.clone());
    Ok(name)
}

#[derive(sqlx::FromRow)]
struct SnapshotRow {
    account_id: String,
    invoice: String,
}

/// A change not yet written, read as if it were (`Store::pricing_inputs_with`): how a
/// dry run prices a plan import or a services change without writing it.
#[derive(Debug, Clone, Default)]
pub struct PendingChange {
    /// Plan documents as imported: they replace (or add to) the vendors' catalogs.
    pub plans: Vec<CatalogPlan>,
    /// Changes of services records, by account.
    pub services: BTreeMap<AccountId, ServicesChange>,
}

impl PendingChange {
    pub fn is_empty(&self) -> bool {
        self.plans.is_empty() && self.services.is_empty()
    }

    /// Lays the change over a batch's rows; returns the (vendor, plan) pairs newly
    /// assigned by it whose documents the batch did not read.
    fn apply(
        &self,
        account_rows: &mut [AccountRow],
        assignment_rows: &mut Vec<AssignmentRow>,
        plan_rows: &mut Vec<PlanDocumentRow>,
    ) -> Vec<(String, String)> {
        for row in account_rows.iter_mut() {
            let change = AccountId::parse(row.id.as_str())
                .ok()
                .and_then(|account| self.services.get(&account));
            if let Some(overrides) = change.and_then(|change| change.overrides.as_ref()) {
                row.overrides = Some(overrides.to_string());
            }
        }
        let mut added = Vec::new();
        for (account, change) in &self.services {
            let Some(assignments) = &change.assignments else {
                continue;
            };
            if !account_rows.iter().any(|row| row.id == account.as_str()) {
                continue;
            }
            assignment_rows.retain(|row| row.account_id != account.as_str());
            for assignment in assignments {
                let key = (assignment.vendor_id.clone(), assignment.plan_id.clone());
                let read = plan_rows
                    .iter()
                    .any(|row| (row.vendor_id.as_str(), row.plan_id.as_str()) == (key.0.as_str(), key.1.as_str()));
                if !read && !added.contains(&key) {
                    added.push(key);
                }
                assignment_rows.push(AssignmentRow {
                    account_id: account.to_string(),
                    plan_id: assignment.plan_id.clone(),
                    vendor_id: assignment.vendor_id.clone(),
                    overrides: assignment.overrides.to_string(),
                });
            }
        }
        for plan in &self.plans {
            plan_rows.retain(|row| !(row.vendor_id == plan.vendor_id && row.plan_id == plan.plan_id));
            plan_rows.push(PlanDocumentRow {
                vendor_id: plan.vendor_id.clone(),
                plan_id: plan.plan_id.clone(),
                document: plan.document.to_string(),
            });
            added.retain(|(vendor, id)| !(vendor == &plan.vendor_id && id == &plan.plan_id));
        }
        added
    }
}

/// Where repricing reads a batch's inputs from: the store as it is (with a pending
/// change laid over it, if any), or as a staged reconcile would leave it.
pub enum PricingSource<'a> {
    Stored {
        store: &'a Store,
        pending: &'a PendingChange,
    },
    /// The billing dry run: on the reconcile session's own connection.
    Staged(&'a mut super::ReconcileSession),
}

impl PricingSource<'_> {
    /// [`Store::pricing_inputs_with`] from this source.
    pub async fn read(
        &mut self,
        accounts: &[AccountId],
        ancestors: &mut AncestorCache,
    ) -> Result<(Vec<StoredAccount>, Vec<UnreadableAccount>), StoreError> {
        match self {
            PricingSource::Stored { store, pending } => store.pricing_inputs_cached(accounts, pending, ancestors).await,
            PricingSource::Staged(session) => session.staged_pricing_inputs(accounts, ancestors).await,
        }
    }
}

/// Where a batch's quantities are read from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum QuantitySource {
    /// `service_quantities` as stored.
    Stored,
    /// As a staged reconcile would write them (its session's `reconcile_changes`).
    Staged,
}

/// [`Store::pricing_inputs_with`] on a connection already held, with the quantities
/// from `quantities`.
pub(super) async fn pricing_inputs_on(
    conn: &mut super::Conn,
    accounts: &[AccountId],
    pending: &PendingChange,
    quantities: QuantitySource,
    ancestors: &mut AncestorCache,
) -> Result<(Vec<StoredAccount>, Vec<UnreadableAccount>), StoreError> {
    if accounts.is_empty() {
        return Ok((Vec::new(), Vec::new()));
    }
    // PostgreSQL: the batch as one array (`= ANY($1)`), so each read's text and plan
    // are the same every batch; SQLite: one anonymous `?` per account (numbered `$n`
    // make a long SQLite statement quadratic to prepare), bound once per list.
    let postgres = matches!(conn, super::Conn::Postgres(_));
    let in_batch = |column: &str| {
        if postgres {
            format!("{column} = ANY($1)")
        } else {
            format!("{column} IN ({})", vec!["?"; accounts.len()].join(", "))
        }
    };
    let ids: Vec<&str> = accounts.iter().map(AccountId::as_str).collect();
    // PostgreSQL: the batch bounds `services` too. Given only the join, the planner may
    // hash all of `services` for 500 accounts (a sequential scan of 100,000 rows: 54 ms
    // a batch against 6 at 100,000 accounts); SQLite probes it by key anyway.
    let services_in_batch = if postgres {
        format!(" AND {}", in_batch("s.account_id"))
    } else {
        String::new()
    };
    let account_sql = format!(
        "SELECT a.id, a.name, a.parent_id, a.reseller_id, a.deleted, s.overrides, s.bookkeeper, s.priced_at, \
                ({MARKED_S}) AS dirty, s.dirty_since, s.revision \
         FROM accounts a LEFT JOIN services s ON s.account_id = a.id{services_in_batch} WHERE {} ORDER BY a.id",
        in_batch("a.id")
    );
    let assignment_sql = format!(
        "SELECT x.account_id, x.plan_id, x.vendor_id, x.overrides FROM service_plan_assignments x \
         WHERE {} ORDER BY x.account_id, x.position, x.plan_id",
        in_batch("x.account_id")
    );
    // Each plan once, however many of the batch's accounts it is assigned to.
    let plan_sql = format!(
        "SELECT p.vendor_id, p.plan_id, p.document FROM service_plans p WHERE EXISTS (SELECT 1 \
         FROM service_plan_assignments x WHERE x.vendor_id = p.vendor_id AND x.plan_id = p.plan_id \
         AND {})",
        in_batch("x.account_id")
    );
    let (quantity_sql, quantity_lists) = match quantities {
        QuantitySource::Stored => (
            format!(
                "SELECT account_id, bucket, category, item, quantity FROM service_quantities \
                 WHERE {} ORDER BY account_id",
                in_batch("account_id")
            ),
            1,
        ),
        // What reconcile's `apply` would leave: staged rows replace the stored ones
        // of the same key, zeros are deleted, every other row (manual ones too) stays.
        QuantitySource::Staged => (
            format!(
                "SELECT q.account_id, q.bucket, q.category, q.item, q.quantity FROM service_quantities q \
                 WHERE {} AND NOT EXISTS (SELECT 1 FROM reconcile_changes c \
                     WHERE c.account_id = q.account_id AND c.bucket = q.bucket AND c.category = q.category \
                     AND c.item = q.item) \
                 UNION ALL \
                 SELECT c.account_id, c.bucket, c.category, c.item, c.new_quantity FROM reconcile_changes c \
                 WHERE {} AND c.new_quantity <> 0 \
                 ORDER BY 1",
                in_batch("q.account_id"),
                in_batch("c.account_id")
            ),
            2,
        ),
    };
    let snapshot_sql = format!(
        "SELECT account_id, invoice FROM invoice_snapshots WHERE kind = 'computed' AND {} \
         ORDER BY account_id, bookkeeper_type, bookkeeper_vendor_id, bookkeeper_id",
        in_batch("account_id")
    );

    // `$lists`: how many account lists the SQLite text holds (PostgreSQL reuses `$1`).
    // `$then` takes the backend's rows where they are not decoded by `FromRow`.
    macro_rules! fetch {
        ($sql:expr, $lists:expr, $row:ty, $what:literal) => {
            fetch!($sql, $lists, sqlx::query_as::<_, $row>, $what, |rows| rows)
        };
        ($sql:expr, $lists:expr, $query:expr, $what:literal, $then:expr) => {{
            match &mut *conn {
                super::Conn::Postgres(c) => {
                    let rows = $query($sql).bind(&ids).fetch_all(&mut **c).await.map_err(step($what))?;
                    $then(rows)
                }
                super::Conn::Sqlite(c) => {
                    let mut query = $query($sql);
                    for _ in 0..$lists {
                        for id in &ids {
                            query = query.bind(*id);
                        }
                    }
                    $then(query.fetch_all(&mut **c).await.map_err(step($what))?)
                }
            }
        }};
    }
    let mut account_rows = fetch!(&account_sql, 1, AccountRow, "reading accounts to reprice");
    let mut assignment_rows = fetch!(&assignment_sql, 1, AssignmentRow, "reading plan assignments");
    let mut plan_rows = fetch!(&plan_sql, 1, PlanDocumentRow, "reading assigned plans");
    let mut quantities = fetch!(
        &quantity_sql,
        quantity_lists,
        sqlx::query,
        "reading quantities",
        |rows: Vec<_>| group_quantities(&rows).map_err(step("reading quantities"))
    )?;
    let snapshot_rows = fetch!(&snapshot_sql, 1, SnapshotRow, "reading invoice snapshots");

    if !pending.is_empty() {
        let added = pending.apply(&mut account_rows, &mut assignment_rows, &mut plan_rows);
        plan_rows.extend(catalog_documents_on(conn, &added).await?);
    }

    // On the connection in hand: asking the pool for a second one while holding
    // this one stalls once every connection is held the same way.
    let tree: Vec<(String, Option<String>, Option<String>)> = account_rows
        .iter()
        .map(|row| (row.id.clone(), row.parent_id.clone(), row.reseller_id.clone()))
        .collect();
    let resellers = super::services::resellers_cached_on(conn, &tree, ancestors).await?;
    let plans: PlanDocuments = plan_rows
        .into_iter()
        .map(|row| ((row.vendor_id, row.plan_id), parse_object(&row.document).map(Arc::new)))
        .collect();
    let mut assignments: BTreeMap<String, Vec<AssignmentRow>> = BTreeMap::new();
    for row in assignment_rows {
        assignments.entry(row.account_id.clone()).or_default().push(row);
    }
    let mut snapshots: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for row in snapshot_rows {
        snapshots.entry(row.account_id).or_default().push(row.invoice);
    }

    let mut readable = Vec::with_capacity(account_rows.len());
    let mut unreadable = Vec::new();
    for row in account_rows {
        let id = row.id.clone();
        let parsed = read_account(
            row,
            resellers.reseller_of(&id).zip(resellers.billed_by_master(&id)),
            assignments.remove(&id).unwrap_or_default(),
            &plans,
            quantities.remove(&id).unwrap_or_default(),
            snapshots.remove(&id).unwrap_or_default(),
        );
        match parsed {
            Ok(account) => readable.push(account),
            Err(problem) => unreadable.push(problem),
        }
    }
    Ok((readable, unreadable))
}

/// The stored documents of `plans` (those that exist), on a connection already held:
/// the plans a pending services change assigns, a handful per account.
async fn catalog_documents_on(
    conn: &mut super::Conn,
    plans: &[(String, String)],
) -> Result<Vec<PlanDocumentRow>, StoreError> {
    let mut rows = Vec::with_capacity(plans.len());
    for chunk in plans.chunks(ROWS_PER_STATEMENT / 2) {
        let condition = plan_pairs(chunk.len());
        let sql = format!("SELECT vendor_id, plan_id, document FROM service_plans WHERE {condition}");
        let found: Vec<PlanDocumentRow> = on_conn!(&mut *conn, |c| {
            let mut query = sqlx::query_as::<_, PlanDocumentRow>(&sql);
            for (vendor, plan) in chunk {
                query = query.bind(vendor.as_str()).bind(plan.as_str());
            }
            query
                .fetch_all(&mut **c)
                .await
                .map_err(step("reading newly assigned plans"))?
        });
        rows.extend(found);
    }
    Ok(rows)
}

impl Store {
    /// The accounts a sync run reprices, in id order.
    pub async fn sync_candidates(&self, scope: &SyncScope) -> Result<Vec<AccountId>, StoreError> {
        let ids: Vec<String> = match scope {
            SyncScope::Accounts(accounts) => return Ok(accounts.clone()),
            SyncScope::Marked => {
                let mut conn = self.acquire().await?;
                on_conn!(&mut conn, |c| {
                    sqlx::query_scalar(&format!(
                        "SELECT account_id FROM services WHERE {MARKED} ORDER BY account_id"
                    ))
                    .fetch_all(&mut **c)
                    .await
                    .map_err(step("listing accounts marked for repricing"))?
                })
            }
            SyncScope::All => {
                let mut conn = self.acquire().await?;
                on_conn!(&mut conn, |c| {
                    sqlx::query_scalar(&format!(
                        "SELECT account_id FROM service_plan_assignments \
                         UNION SELECT account_id FROM invoice_snapshots WHERE kind = 'computed' \
                         UNION SELECT account_id FROM services WHERE {MARKED} \
                         ORDER BY 1",
                    ))
                    .fetch_all(&mut **c)
                    .await
                    .map_err(step("listing accounts with plans"))?
                })
            }
        };
        ids.into_iter()
            .map(|id| AccountId::parse(id).map_err(|error| StoreError::InvalidRow(error.to_string())))
            .collect()
    }

    /// Reads what repricing needs for a batch of accounts, in a fixed number of
    /// queries. Unknown accounts are left out; accounts whose stored data cannot be
    /// read are returned apart.
    pub async fn pricing_inputs(
        &self,
        accounts: &[AccountId],
    ) -> Result<(Vec<StoredAccount>, Vec<UnreadableAccount>), StoreError> {
        self.pricing_inputs_with(accounts, &PendingChange::default()).await
    }

    /// [`Store::pricing_inputs`] as they would read once `pending` were written: its
    /// plan documents and services changes stand in for the stored rows, and nothing
    /// is written. The same reading and parsing as the real inputs, so a change's
    /// impact is priced from exactly what sync would read after it.
    pub async fn pricing_inputs_with(
        &self,
        accounts: &[AccountId],
        pending: &PendingChange,
    ) -> Result<(Vec<StoredAccount>, Vec<UnreadableAccount>), StoreError> {
        self.pricing_inputs_cached(accounts, pending, &mut AncestorCache::default())
            .await
    }

    /// [`Store::pricing_inputs_with`] for one batch of a run that reads many: the
    /// ancestors (for each account's reseller) come from `ancestors`, which keeps what
    /// this batch had to read for the next ones.
    pub async fn pricing_inputs_cached(
        &self,
        accounts: &[AccountId],
        pending: &PendingChange,
        ancestors: &mut AncestorCache,
    ) -> Result<(Vec<StoredAccount>, Vec<UnreadableAccount>), StoreError> {
        if accounts.is_empty() {
            return Ok((Vec::new(), Vec::new()));
        }
        let mut conn = self.acquire().await?;
        pricing_inputs_on(&mut conn, accounts, pending, QuantitySource::Stored, ancestors).await
    }

    /// The accounts with any of `plans` (vendor, plan id) assigned, in id order: the
    /// accounts a change of those plans reprices (the ones `store_plan` marks).
    pub async fn accounts_assigned(&self, plans: &[(String, String)]) -> Result<Vec<AccountId>, StoreError> {
        let mut ids: Vec<String> = Vec::new();
        let mut conn = self.acquire().await?;
        for chunk in plans.chunks(ROWS_PER_STATEMENT / 2) {
            let condition = plan_pairs(chunk.len());
            let sql = format!("SELECT DISTINCT account_id FROM service_plan_assignments WHERE {condition}");
            let found: Vec<String> = on_conn!(&mut conn, |c| {
                let mut query = sqlx::query_scalar::<_, String>(&sql);
                for (vendor, plan) in chunk {
                    query = query.bind(vendor.as_str()).bind(plan.as_str());
                }
                query
                    .fetch_all(&mut **c)
                    .await
                    .map_err(step("listing the accounts assigned changed plans"))?
            });
            ids.extend(found);
        }
        ids.sort();
        ids.dedup();
        ids.into_iter()
            .map(|id| AccountId::parse(id).map_err(|error| StoreError::InvalidRow(error.to_string())))
            .collect()
    }

    /// Writes the outcome of repricing a batch in one transaction: computed snapshots
    /// replaced, audit rows added, acknowledged snapshots of call-free bookkeepers
    /// updated, repricing marks cleared (unless set again meanwhile). An account whose
    /// revision is no longer the one it was priced from (written or repriced
    /// meanwhile) is left as it is: its writer's commit, or the next sync, reprices it,
    /// and no change is recorded twice.
    pub async fn save_repricing(&self, accounts: &[RepricedAccount], now: GregorianSeconds) -> Result<(), StoreError> {
        if accounts.is_empty() {
            return Ok(());
        }
        let mut snapshot_rows: Vec<SnapshotInsert> = Vec::new();
        let mut acknowledged_rows: Vec<SnapshotInsert> = Vec::new();
        let mut audit_rows: Vec<AuditInsert> = Vec::new();
        let mut plans = PlanTexts::default();
        for repriced in accounts {
            let first_computed = snapshot_rows.len();
            for invoice in &repriced.snapshot {
                let text = plans.invoice_text(invoice);
                snapshot_rows.push(SnapshotInsert::new(&repriced.account, "computed", invoice, text)?);
            }
            for invoice in &repriced.acknowledged {
                // A bookkeeper that needs no call knows the computed invoice itself,
                // most often: its text is already rendered.
                let text = match repriced.snapshot.iter().position(|computed| computed == invoice) {
                    Some(index) => snapshot_rows[first_computed + index].invoice.clone(),
                    None => plans.invoice_text(invoice),
                };
                acknowledged_rows.push(SnapshotInsert::new(&repriced.account, "acknowledged", invoice, text)?);
            }
            for row in &repriced.audit_rows {
                audit_rows.push(AuditInsert::new(&repriced.account, row, &mut plans)?);
            }
        }

        let mut conn = self.acquire().await?;
        let mut tx = conn.begin("starting a sync batch").await?;
        let current = claim_revisions(&mut tx, accounts, now).await?;
        if current.len() < accounts.len() {
            tracing::debug!(
                left = accounts.len() - current.len(),
                "accounts changed while they were repriced; their newer commit reprices them"
            );
        }
        let accounts: Vec<&RepricedAccount> = accounts
            .iter()
            .filter(|repriced| current.contains(repriced.account.as_str()))
            .collect();
        let is_current = |account_id: &String| current.contains(account_id.as_str());
        snapshot_rows.retain(|row| is_current(&row.account_id));
        acknowledged_rows.retain(|row| is_current(&row.account_id));
        audit_rows.retain(|row| is_current(&row.account_id));
        let batch_accounts = Rows::new(
            "account_id",
            vec![Column::Text(
                accounts
                    .iter()
                    .map(|repriced| Some(repriced.account.to_string()))
                    .collect(),
            )],
        );
        let computed = SnapshotInsert::rows(snapshot_rows, now);
        let acknowledged = SnapshotInsert::rows(acknowledged_rows, now);
        let audits = AuditInsert::rows(audit_rows, now);
        // One statement per table for the whole batch (PostgreSQL: one array per
        // column; SQLite: `VALUES` lists as long as its parameter limit allows).
        on_tx!(&mut tx, |t| {
            (**t)
                .with_rows(
                    &batch_accounts,
                    "DELETE FROM invoice_snapshots WHERE kind = 'computed' \
                     AND account_id IN (SELECT account_id FROM v)",
                    "replacing invoice snapshots",
                )
                .await?;
            (**t)
                .with_rows(
                    &computed,
                    "INSERT INTO invoice_snapshots (account_id, kind, bookkeeper_type, bookkeeper_vendor_id, \
                     bookkeeper_id, invoice, recurring_units, updated_at) \
                     SELECT account_id, kind, bookkeeper_type, bookkeeper_vendor_id, bookkeeper_id, invoice, \
                     recurring_units, now FROM v",
                    "writing invoice snapshots",
                )
                .await?;
            // `WHERE true` lets SQLite read `ON CONFLICT` as the upsert clause.
            (**t)
                .with_rows(
                    &acknowledged,
                    "INSERT INTO invoice_snapshots (account_id, kind, bookkeeper_type, bookkeeper_vendor_id, \
                     bookkeeper_id, invoice, recurring_units, updated_at) \
                     SELECT account_id, kind, bookkeeper_type, bookkeeper_vendor_id, bookkeeper_id, invoice, \
                     recurring_units, now FROM v WHERE true \
                     ON CONFLICT (account_id, kind, bookkeeper_type, bookkeeper_vendor_id, bookkeeper_id) \
                     DO UPDATE SET invoice = excluded.invoice, recurring_units = excluded.recurring_units, \
                     updated_at = excluded.updated_at",
                    "writing invoice snapshots",
                )
                .await?;
            (**t)
                .with_rows(
                    &audits,
                    "INSERT INTO audit_logs (id, account_id, created_at, modified_at, status, bookkeeper_type, \
                     bookkeeper_vendor_id, bookkeeper_id, invoice, audit, today_units, recurring_units, hidden) \
                     SELECT id, account_id, now, now, status, bookkeeper_type, bookkeeper_vendor_id, bookkeeper_id, \
                     invoice, audit, today_units, recurring_units, hidden <> 0 FROM v",
                    "writing audit rows",
                )
                .await?;
        });
        tx.commit("committing a sync batch").await?;
        Ok(())
    }

    /// Marks accounts for repricing (plan, assignment or override changes; by hand), in
    /// one statement, in account order (the order every writer of `services` locks in).
    pub async fn mark_for_repricing(&self, accounts: &[AccountId], now: GregorianSeconds) -> Result<(), StoreError> {
        // Each account once: an upsert may not touch the same row twice.
        let accounts: BTreeSet<&str> = accounts.iter().map(AccountId::as_str).collect();
        if accounts.is_empty() {
            return Ok(());
        }
        let rows = Rows::new(
            "account_id, now",
            vec![
                Column::Text(accounts.iter().map(|account| Some((*account).to_owned())).collect()),
                Column::Int(vec![Some(now.0); accounts.len()]),
            ],
        );
        let mut conn = self.acquire().await?;
        on_conn!(&mut conn, |c| {
            (**c)
                .with_rows(
                    &rows,
                    "INSERT INTO services (account_id, dirty, dirty_since) \
                     SELECT account_id, TRUE, now FROM v WHERE true ORDER BY account_id \
                     ON CONFLICT (account_id) DO UPDATE SET dirty = TRUE, dirty_since = excluded.dirty_since",
                    "marking accounts for repricing",
                )
                .await?;
        });
        Ok(())
    }

    /// The `computed` or `acknowledged` snapshot of one account, by bookkeeper.
    pub async fn invoice_snapshot(&self, account: &AccountId, acknowledged: bool) -> Result<Vec<Invoice>, StoreError> {
        let kind = if acknowledged { "acknowledged" } else { "computed" };
        let mut conn = self.acquire().await?;
        let texts: Vec<String> = on_conn!(&mut conn, |c| {
            sqlx::query_scalar(
                "SELECT invoice FROM invoice_snapshots WHERE account_id = $1 AND kind = $2 \
                 ORDER BY bookkeeper_type, bookkeeper_vendor_id, bookkeeper_id",
            )
            .bind(account.as_str())
            .bind(kind)
            .fetch_all(&mut **c)
            .await
            .map_err(step("reading invoice snapshots"))?
        });
        texts
            .iter()
            .map(|text| read_invoice(text).map_err(StoreError::InvalidRow))
            .collect()
    }
}

/// Claims each account still at the revision it was priced from, in the batch's
/// transaction (which then holds their write locks), and settles its repricing mark in
/// the same update; returns those accounts. Accounts without a services row get one
/// (revision 0) first. One update per account and batch: the claim, the cleared mark
/// and the hold were three, each a new version of the row and of its indexes.
async fn claim_revisions(
    tx: &mut Tx<'_>,
    accounts: &[RepricedAccount],
    now: GregorianSeconds,
) -> Result<HashSet<String>, StoreError> {
    let rows = Rows::new(
        "id, revision, marked_since, now, pending",
        vec![
            Column::Text(
                accounts
                    .iter()
                    .map(|repriced| Some(repriced.account.to_string()))
                    .collect(),
            ),
            Column::Int(accounts.iter().map(|repriced| Some(repriced.revision)).collect()),
            Column::Int(accounts.iter().map(|repriced| repriced.marked_since).collect()),
            Column::Int(vec![Some(now.0); accounts.len()]),
            Column::Int(
                accounts
                    .iter()
                    .map(|repriced| Some(i64::from(repriced.audit_rows.iter().any(|row| !row.completed))))
                    .collect(),
            ),
        ],
    );
    // A mark set after the one that was read (a newer `dirty_since`) is kept.
    let kept = "(services.dirty AND services.dirty_since IS NOT NULL \
                AND services.dirty_since > COALESCE(v.marked_since, -9000000000000000000))";
    // An account left with audit rows its bookkeeper has not taken, this batch's or
    // older ones, stays dirty (sync-and-bookkeepers.md §2.3), held rather than marked.
    let held = "(v.pending <> 0 OR EXISTS (SELECT 1 FROM audit_logs l \
                WHERE l.account_id = v.id AND l.status = 'pending'))";
    let claim = format!(
        "UPDATE services SET revision = services.revision + 1, \
             priced_at = COALESCE(services.priced_at, v.now), \
             dirty = {kept} OR {held}, \
             dirty_since = CASE WHEN NOT {kept} AND {held} THEN v.now ELSE services.dirty_since END, \
             dirty_held_since = CASE WHEN NOT {kept} AND {held} THEN v.now ELSE services.dirty_held_since END \
         FROM v WHERE services.account_id = v.id AND services.revision = v.revision RETURNING account_id"
    );
    let claimed = on_tx!(&mut *tx, |t| {
        (**t)
            .with_rows(
                &rows,
                "INSERT INTO services (account_id) SELECT id FROM v WHERE true \
                 ON CONFLICT (account_id) DO NOTHING",
                "creating services rows to reprice",
            )
            .await?;
        (**t)
            .with_rows(&rows, &claim, "claiming the revisions of repriced accounts")
            .await?
    });
    Ok(claimed.into_iter().collect())
}

pub(super) fn read_invoice(text: &str) -> Result<Invoice, String> {
    let value: serde_json::Value = serde_json::from_str(text).map_err(|error| format!("stored invoice: {error}"))?;
    parse_invoice(&value).map_err(|error| format!("stored invoice: {error}"))
}

fn read_account(
    row: AccountRow,
    reseller: Option<(AccountId, bool)>,
    assignment_rows: Vec<AssignmentRow>,
    plans: &PlanDocuments,
    quantity_rows: Vec<BatchQuantity>,
    snapshot_texts: Vec<String>,
) -> Result<StoredAccount, UnreadableAccount> {
    let account = AccountId::parse(row.id.as_str()).map_err(|error| UnreadableAccount {
        account: AccountId::parse("(empty)").expect("a non-empty literal"),
        problem: error.to_string(),
    })?;
    let overrides_text = row.overrides.unwrap_or_else(|| "{}".to_owned());
    let overrides =
        parse_object(&overrides_text).map_err(|problem| invalid(&account, "services.overrides", problem))?;
    let bookkeeper_text = row.bookkeeper.unwrap_or_default();
    let bookkeeper = if bookkeeper_text.is_empty() {
        None
    } else {
        Some(parse_object(&bookkeeper_text).map_err(|problem| invalid(&account, "services.bookkeeper", problem))?)
    };
    let (reseller_id, billed_by_master) =
        reseller.ok_or_else(|| invalid(&account, "reseller id", "the account was removed while it was read"))?;

    let mut assignments = Vec::with_capacity(assignment_rows.len());
    for assignment in assignment_rows {
        let plan_id =
            PlanId::parse(assignment.plan_id.as_str()).map_err(|error| invalid(&account, "plan id", error))?;
        let vendor_id = AccountId::parse(assignment.vendor_id.as_str())
            .map_err(|error| invalid(&account, "plan vendor id", error))?;
        let overrides = parse_object(&assignment.overrides)
            .map_err(|problem| invalid(&account, &format!("plans.{plan_id}.overrides"), problem))?;
        let document = match plans.get(&(assignment.vendor_id, assignment.plan_id)) {
            Some(Ok(document)) => Some(Arc::clone(document)),
            Some(Err(problem)) => {
                return Err(invalid(
                    &account,
                    &format!("plan {vendor_id}/{plan_id} document"),
                    problem,
                ))
            }
            None => None,
        };
        assignments.push(StoredAssignment {
            plan_id,
            vendor_id,
            overrides,
            overrides_text: assignment.overrides,
            document,
        });
    }

    let mut quantities = QuantityBuckets {
        deleted: row.deleted,
        ..QuantityBuckets::default()
    };
    for quantity in quantity_rows {
        let bucket = quantity
            .bucket
            .map_err(|bucket| invalid(&account, "quantity bucket", format!("unknown bucket {bucket:?}")))?;
        let category = quantity
            .category
            .map_err(|error| invalid(&account, "quantity", error))?;
        let item = quantity.item.map_err(|error| invalid(&account, "quantity", error))?;
        let target = match bucket {
            Bucket::Account => &mut quantities.account,
            Bucket::Cascade => &mut quantities.cascade,
            Bucket::Manual => &mut quantities.manual,
        };
        target.set(category, item, quantity.quantity);
    }

    let last_computed = snapshot_texts
        .iter()
        .map(|text| read_invoice(text).map_err(|problem| invalid(&account, "invoice snapshot", problem)))
        .collect::<Result<Vec<_>, _>>()?;
    let marked_since = match row.dirty {
        Some(true) => row.dirty_since.or(Some(i64::MIN)),
        _ => None,
    };
    Ok(StoredAccount {
        revision: row.revision.unwrap_or(0),
        is_master: row.parent_id.is_none(),
        name: row.name,
        reseller_id,
        billed_by_master,
        bookkeeper,
        bookkeeper_text,
        overrides,
        overrides_text,
        assignments,
        quantities,
        last_computed,
        priced: row.priced_at.is_some(),
        marked_since,
        account,
    })
}

/// The rendered text of each merged plan of a batch: the invoices of every account
/// sharing a plan set share one `Arc`, rendered once here. Keyed by the `Arc`'s
/// address, which the held `Arc` keeps from being reused.
#[derive(Default)]
struct PlanTexts {
    rendered: HashMap<usize, (Arc<Map>, Box<RawValue>)>,
}

impl PlanTexts {
    /// The stored text of an invoice (`wire::invoice`), its plan rendered once per batch.
    fn invoice_text(&mut self, invoice: &Invoice) -> String {
        let key = Arc::as_ptr(&invoice.plan) as usize;
        let (_, plan) = self
            .rendered
            .entry(key)
            .or_insert_with(|| (Arc::clone(&invoice.plan), plan_text(&invoice.plan)));
        invoice_text(invoice, plan)
    }
}

struct SnapshotInsert {
    account_id: String,
    kind: &'static str,
    bookkeeper: BookkeeperRef,
    invoice: String,
    recurring_units: i64,
}

impl SnapshotInsert {
    /// `text`: the invoice as stored (`PlanTexts::invoice_text`).
    fn new(
        account: &AccountId,
        kind: &'static str,
        invoice: &Invoice,
        text: String,
    ) -> Result<SnapshotInsert, StoreError> {
        Ok(SnapshotInsert {
            account_id: account.to_string(),
            kind,
            bookkeeper: invoice.bookkeeper.clone(),
            invoice: text,
            recurring_units: units(invoice.recurring)?,
        })
    }

    /// The rows as `v`'s columns, moved rather than copied (the invoice texts are most
    /// of a batch's bytes).
    fn rows(rows: Vec<SnapshotInsert>, now: GregorianSeconds) -> Rows {
        let mut columns: [Vec<Option<String>>; 6] = std::array::from_fn(|_| Vec::with_capacity(rows.len()));
        let mut recurring_units = Vec::with_capacity(rows.len());
        for row in rows {
            let [account_id, kind, bookkeeper_type, vendor_id, bookkeeper_id, invoice] = &mut columns;
            account_id.push(Some(row.account_id));
            kind.push(Some(row.kind.to_owned()));
            bookkeeper_type.push(Some(row.bookkeeper.kind));
            vendor_id.push(Some(row.bookkeeper.vendor_id));
            bookkeeper_id.push(Some(row.bookkeeper.id));
            invoice.push(Some(row.invoice));
            recurring_units.push(Some(row.recurring_units));
        }
        let nows = Column::Int(vec![Some(now.0); recurring_units.len()]);
        let mut columns: Vec<Column> = columns.into_iter().map(Column::Text).collect();
        columns.extend([Column::Int(recurring_units), nows]);
        Rows::new(
            "account_id, kind, bookkeeper_type, bookkeeper_vendor_id, bookkeeper_id, invoice, recurring_units, now",
            columns,
        )
    }
}

struct AuditInsert {
    id: String,
    account_id: String,
    status: &'static str,
    bookkeeper: BookkeeperRef,
    invoice: String,
    audit: String,
    today_units: i64,
    recurring_units: i64,
    hidden: bool,
}

impl AuditInsert {
    fn new(account: &AccountId, row: &NewAuditRow, plans: &mut PlanTexts) -> Result<AuditInsert, StoreError> {
        Ok(AuditInsert {
            id: row.id.clone(),
            account_id: account.to_string(),
            status: if row.completed { "completed" } else { "pending" },
            bookkeeper: row.invoice.bookkeeper.clone(),
            invoice: plans.invoice_text(&row.invoice),
            audit: row.audit.to_string(),
            today_units: units(row.invoice.today)?,
            recurring_units: units(row.invoice.recurring)?,
            hidden: row.hidden,
        })
    }

    /// The rows as `v`'s columns, moved rather than copied.
    fn rows(rows: Vec<AuditInsert>, now: GregorianSeconds) -> Rows {
        let mut texts: [Vec<Option<String>>; 8] = std::array::from_fn(|_| Vec::with_capacity(rows.len()));
        let mut ints: [Vec<Option<i64>>; 3] = std::array::from_fn(|_| Vec::with_capacity(rows.len()));
        for row in rows {
            let [id, account_id, status, bookkeeper_type, vendor_id, bookkeeper_id, invoice, audit] = &mut texts;
            id.push(Some(row.id));
            account_id.push(Some(row.account_id));
            status.push(Some(row.status.to_owned()));
            bookkeeper_type.push(Some(row.bookkeeper.kind));
            vendor_id.push(Some(row.bookkeeper.vendor_id));
            bookkeeper_id.push(Some(row.bookkeeper.id));
            invoice.push(Some(row.invoice));
            audit.push(Some(row.audit));
            let [today_units, recurring_units, hidden] = &mut ints;
            today_units.push(Some(row.today_units));
            recurring_units.push(Some(row.recurring_units));
            hidden.push(Some(i64::from(row.hidden)));
        }
        let nows = Column::Int(vec![Some(now.0); ints[0].len()]);
        let mut columns: Vec<Column> = texts.into_iter().map(Column::Text).collect();
        columns.extend(ints.into_iter().map(Column::Int));
        columns.push(nows);
        Rows::new(
            "id, account_id, status, bookkeeper_type, bookkeeper_vendor_id, bookkeeper_id, invoice, audit, \
             today_units, recurring_units, hidden, now",
            columns,
        )
    }
}

/// An account's stored standing (`sync-and-bookkeepers.md` §6.3).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Standing {
    /// `good_standing`, `delinquent`, or a bookkeeper's reason.
    pub status: String,
    pub reason: Option<String>,
    pub reason_code: Option<String>,
}

impl Standing {
    pub fn in_good_standing(&self) -> bool {
        self.status == "good_standing"
    }
}

impl Store {
    /// The account's standing; `None` for an unknown account.
    pub async fn standing(&self, account: &AccountId) -> Result<Option<Standing>, StoreError> {
        let mut conn = self.acquire().await?;
        let row: Option<(Option<String>, Option<String>, Option<String>)> = on_conn!(&mut conn, |c| {
            sqlx::query_as(
                "SELECT s.status, s.status_reason, s.status_reason_code FROM accounts a \
                 LEFT JOIN services s ON s.account_id = a.id WHERE a.id = $1",
            )
            .bind(account.as_str())
            .fetch_optional(&mut **c)
            .await
            .map_err(step("reading standing"))?
        });
        Ok(row.map(|(status, reason, reason_code)| Standing {
            status: status.unwrap_or_else(|| "good_standing".to_owned()),
            reason,
            reason_code,
        }))
    }

    /// Sets the account's standing by hand, in one statement: a reason or code not
    /// given keeps the stored one, so concurrent writers lose nothing. Returns the
    /// standing as stored, `None` for an unknown account.
    pub async fn set_standing(&self, account: &AccountId, standing: &Standing) -> Result<Option<Standing>, StoreError> {
        let mut conn = self.acquire().await?;
        let stored: Option<(String, Option<String>, Option<String>)> = on_conn!(&mut conn, |c| {
            sqlx::query_as(
                "INSERT INTO services (account_id, status, status_reason, status_reason_code) \
                 SELECT id, $2, $3, $4 FROM accounts WHERE id = $1 \
                 ON CONFLICT (account_id) DO UPDATE SET status = excluded.status, \
                     status_reason = COALESCE(excluded.status_reason, services.status_reason), \
                     status_reason_code = COALESCE(excluded.status_reason_code, services.status_reason_code) \
                 RETURNING status, status_reason, status_reason_code",
            )
            .bind(account.as_str())
            .bind(standing.status.as_str())
            .bind(standing.reason.as_deref())
            .bind(standing.reason_code.as_deref())
            .fetch_optional(&mut **c)
            .await
            .map_err(step("setting standing"))?
        });
        Ok(stored.map(|(status, reason, reason_code)| Standing {
            status,
            reason,
            reason_code,
        }))
    }
}

/// The recurring total a vendor (reseller) bills, over its accounts' current invoices.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VendorTotal {
    pub vendor_id: String,
    pub invoices: i64,
    pub recurring: Money,
}

impl Store {
    /// Σ `summary.recurring` of the computed invoices, per bookkeeper vendor, in one
    /// query over the integer unit column.
    pub async fn recurring_by_vendor(&self) -> Result<Vec<VendorTotal>, StoreError> {
        let mut conn = self.acquire().await?;
        let rows: Vec<(String, i64, i64)> = on_conn!(&mut conn, |c| {
            sqlx::query_as(
                "SELECT bookkeeper_vendor_id, COUNT(*), CAST(SUM(recurring_units) AS BIGINT) FROM invoice_snapshots \
                 WHERE kind = 'computed' GROUP BY bookkeeper_vendor_id ORDER BY bookkeeper_vendor_id",
            )
            .fetch_all(&mut **c)
            .await
            .map_err(step("summing recurring totals"))?
        });
        Ok(rows
            .into_iter()
            .map(|(vendor_id, invoices, units)| VendorTotal {
                vendor_id,
                invoices,
                recurring: Money::from_units(units),
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sqlx::Connection;

    /// Rows as a batch read returns them; an account whose rows come apart (the staged
    /// read's two halves) still ends with all of its own, and a name that cannot be
    /// read stays with its row, for the account's own error.
    #[tokio::test]
    async fn quantities_are_grouped_by_account_however_their_rows_come() {
        let mut conn = sqlx::SqliteConnection::connect("sqlite::memory:").await.unwrap();
        let rows = sqlx::query(
            "VALUES ('a', 'account', 'devices', 'sip_device', 2), ('a', 'cascade', 'users', 'user', 5), \
             ('b', 'elsewhere', 'devices', 'softphone', 1), ('b', 'account', '', 'softphone', 3), \
             ('a', 'manual', 'ips', 'dedicated', 1)",
        )
        .fetch_all(&mut conn)
        .await
        .unwrap();
        let grouped = group_quantities(&rows).unwrap();
        let summary = |account: &str| -> Vec<(Result<Bucket, String>, String, String, i64)> {
            grouped[account]
                .iter()
                .map(|q| {
                    let name = |name: Result<&str, &EmptyName>| name.map_or_else(ToString::to_string, str::to_owned);
                    let category = name(q.category.as_ref().map(Category::as_str));
                    let item = name(q.item.as_ref().map(ItemName::as_str));
                    (q.bucket.clone(), category, item, q.quantity)
                })
                .collect()
        };
        assert_eq!(grouped.len(), 2);
        assert_eq!(
            summary("a"),
            vec![
                (Ok(Bucket::Account), "devices".into(), "sip_device".into(), 2),
                (Ok(Bucket::Cascade), "users".into(), "user".into(), 5),
                (Ok(Bucket::Manual), "ips".into(), "dedicated".into(), 1),
            ]
        );
        assert_eq!(
            summary("b"),
            vec![
                (Err("elsewhere".to_owned()), "devices".into(), "softphone".into(), 1),
                (
                    Ok(Bucket::Account),
                    "category must not be empty".into(),
                    "softphone".into(),
                    3
                ),
            ]
        );
    }
}
