//! The services record of one account as the operations layer reads and writes it:
//! the account's place in the tree, its plan assignments, overrides, manual
//! quantities, billing id; the plan catalog; audit logs and day summaries by range.
//!
//! Every write is one transaction that also marks the account for repricing, so a
//! change is never lost between the save and its commit; it starts by taking the
//! account's write lock (`locked.rs`) and reads what it modifies under it.

use super::deliveries::{Column, Rows, RowsConnection};
use super::locked::{on_tx, Tx};
use super::{on_conn, step, Conn, Store, StoreError, FOLD_INTO_DAY_SUMMARY};
use crate::domain::quantities::{diff_bucket, Bucket, Quantities};
use crate::domain::reseller::{self, Ancestor, Lineage};
use crate::domain::summary::{record_entries, summarise, ChangeRecord, DaySummary, GregorianSeconds, RecordEntry};
use crate::domain::{AccountId, Category, ItemName};
use std::collections::{BTreeMap, HashMap, HashSet};

/// The master account (the smallest id of the accounts without a parent), on a
/// connection already held. The roots come from the `parent_id` index and are sorted
/// here: `ORDER BY id LIMIT 1` walks the primary key through every account before the
/// root. Planned afresh on PostgreSQL.
pub(super) async fn master_account_on(conn: &mut Conn) -> Result<Option<String>, StoreError> {
    let roots = "SELECT id FROM accounts WHERE parent_id IS NULL";
    let what = step("finding the master account");
    let roots: Vec<String> = match conn {
        Conn::Sqlite(c) => sqlx::query_scalar(roots).fetch_all(&mut **c).await.map_err(what)?,
        Conn::Postgres(c) => sqlx::query_scalar(roots)
            .persistent(false)
            .fetch_all(&mut **c)
            .await
            .map_err(what)?,
    };
    Ok(roots.into_iter().min())
}

/// Accounts per statement of the lineage query, under SQLite's parameter limit.
const LINEAGE_IDS_PER_STATEMENT: usize = 400;

/// Ancestors followed above an account, as the recursive chain query (`depth < 64`).
const LINEAGE_DEPTH: usize = 64;

/// The nearest-reseller rule's inputs for a batch of accounts, and its answers: the
/// one place billing, top-up and the services operations learn an account's reseller.
#[derive(Debug, Clone, Default)]
pub(super) struct Resellers {
    master: Option<AccountId>,
    lineages: BTreeMap<String, Lineage>,
}

impl Resellers {
    pub(super) fn master(&self) -> Option<&AccountId> {
        self.master.as_ref()
    }

    /// The account's lineage; `None` when the account was not found.
    pub(super) fn lineage(&self, account: &str) -> Option<&Lineage> {
        self.lineages.get(account)
    }

    /// The account's reseller (`domain::reseller::nearest_reseller`).
    pub(super) fn reseller_of(&self, account: &str) -> Option<AccountId> {
        self.lineage(account)
            .map(|lineage| reseller::nearest_reseller(lineage, self.master()))
    }

    /// Whether the account is the master or its reseller is the master.
    pub(super) fn billed_by_master(&self, account: &str) -> Option<bool> {
        self.lineage(account)
            .map(|lineage| reseller::billed_by_master(lineage, self.master()))
    }
}

#[derive(sqlx::FromRow)]
struct LineageRow {
    account_id: String,
    depth: i32,
    ancestor: String,
    is_reseller: bool,
    reseller_id: Option<String>,
}

/// Every account of the batch with its stored reseller id, and every ancestor of it
/// with its depth and reseller flag, in one recursive query per 400 accounts, on a
/// connection already held. Unknown accounts are left out.
pub(super) async fn resellers_on(conn: &mut Conn, accounts: &[AccountId]) -> Result<Resellers, StoreError> {
    let master = master_account_on(conn).await?.and_then(|id| AccountId::parse(id).ok());
    let mut lineages: BTreeMap<String, Lineage> = BTreeMap::new();
    for chunk in accounts.chunks(LINEAGE_IDS_PER_STATEMENT) {
        let list = (1..=chunk.len())
            .map(|index| format!("${index}"))
            .collect::<Vec<_>>()
            .join(", ");
        // Depth 0 is the account itself (for its stored reseller id), then its parent.
        let sql = format!(
            "WITH RECURSIVE chain (account_id, ancestor, depth) AS ( \
                 SELECT id, id, 0 FROM accounts WHERE id IN ({list}) \
                 UNION ALL \
                 SELECT chain.account_id, a.parent_id, chain.depth + 1 FROM chain \
                 JOIN accounts a ON a.id = chain.ancestor WHERE a.parent_id IS NOT NULL AND chain.depth < 64) \
             SELECT chain.account_id, CAST(chain.depth AS INTEGER) AS depth, chain.ancestor, a.is_reseller, a.reseller_id \
             FROM chain JOIN accounts a ON a.id = chain.ancestor ORDER BY chain.account_id, chain.depth"
        );
        let rows: Vec<LineageRow> = on_conn!(conn, |c| {
            let mut query = sqlx::query_as::<_, LineageRow>(&sql);
            for account in chunk {
                query = query.bind(account.as_str());
            }
            query
                .fetch_all(&mut **c)
                .await
                .map_err(step("reading accounts and their ancestors for their reseller"))?
        });
        for row in rows {
            let Ok(ancestor) = AccountId::parse(row.ancestor.as_str()) else {
                continue;
            };
            if row.depth == 0 {
                lineages.insert(
                    row.account_id,
                    Lineage {
                        account: ancestor,
                        stored_reseller: row.reseller_id.and_then(|id| AccountId::parse(id).ok()),
                        ancestors: Vec::new(),
                    },
                );
                continue;
            }
            if let Some(lineage) = lineages.get_mut(&row.account_id) {
                lineage.ancestors.push(Ancestor {
                    id: ancestor,
                    is_reseller: row.is_reseller,
                });
            }
        }
    }
    Ok(Resellers { master, lineages })
}

/// One account as the nearest-reseller rule sees it from below: its parent, whether it
/// is a reseller. The batch's own accounts come with their batch's read.
#[derive(Debug, Clone)]
pub(super) struct TreeNode {
    pub(super) parent_id: Option<String>,
    pub(super) is_reseller: bool,
}

/// The ancestors a run has read so far, kept for its later batches: in a sync run most
/// accounts share a few resellers, so after the first batch their chains are at hand
/// and a batch costs no ancestor query (the recursive chain query cost a sync of
/// 10,000 accounts 0.3 s on PostgreSQL). Only accounts read as someone's ancestor are
/// kept (the accounts with children), and the master once. Ancestors are as of the
/// run's first read of them, as they were as of a batch's before.
#[derive(Debug, Default)]
pub struct AncestorCache {
    nodes: HashMap<String, TreeNode>,
    /// Parent ids looked up and not found.
    missing: HashSet<String>,
    master: Option<Option<AccountId>>,
}

/// [`resellers_on`] for a batch whose accounts were just read (id, parent, stored
/// reseller id), their ancestors from `cache`, the ones it lacks read level by level
/// (one plain statement per level and 400 ids) and kept in it.
pub(super) async fn resellers_cached_on(
    conn: &mut Conn,
    batch: &[(String, Option<String>, Option<String>)],
    cache: &mut AncestorCache,
) -> Result<Resellers, StoreError> {
    if cache.master.is_none() {
        cache.master = Some(master_account_on(conn).await?.and_then(|id| AccountId::parse(id).ok()));
    }
    let master = cache.master.clone().flatten();
    // Depth 0 is the batch's accounts; a level's parents are read when not known yet.
    let mut frontier: Vec<String> = batch.iter().filter_map(|(_, parent, _)| parent.clone()).collect();
    for _ in 0..LINEAGE_DEPTH {
        frontier.retain(|id| !cache.nodes.contains_key(id) && !cache.missing.contains(id));
        frontier.sort();
        frontier.dedup();
        if frontier.is_empty() {
            break;
        }
        let mut next = Vec::new();
        for chunk in frontier.chunks(LINEAGE_IDS_PER_STATEMENT) {
            let list = (1..=chunk.len())
                .map(|index| format!("${index}"))
                .collect::<Vec<_>>()
                .join(", ");
            let sql = format!("SELECT id, parent_id, is_reseller FROM accounts WHERE id IN ({list})");
            let rows: Vec<(String, Option<String>, bool)> = on_conn!(&mut *conn, |c| {
                let mut query = sqlx::query_as(&sql);
                for id in chunk {
                    query = query.bind(id.as_str());
                }
                query
                    .fetch_all(&mut **c)
                    .await
                    .map_err(step("reading the ancestors of accounts for their reseller"))?
            });
            for (id, parent_id, is_reseller) in rows {
                if let Some(parent) = &parent_id {
                    next.push(parent.clone());
                }
                cache.nodes.insert(id, TreeNode { parent_id, is_reseller });
            }
        }
        for id in &frontier {
            if !cache.nodes.contains_key(id) {
                cache.missing.insert(id.clone());
            }
        }
        frontier = next;
    }
    let mut lineages = BTreeMap::new();
    for (id, parent, stored_reseller) in batch {
        let Ok(account) = AccountId::parse(id.as_str()) else {
            continue;
        };
        let mut ancestors = Vec::new();
        let mut next = parent.as_deref();
        let mut depth = 0;
        while let Some(ancestor) = next.filter(|_| depth < LINEAGE_DEPTH) {
            let Some(node) = cache.nodes.get(ancestor) else {
                break;
            };
            depth += 1;
            if let Ok(id) = AccountId::parse(ancestor) {
                ancestors.push(Ancestor {
                    id,
                    is_reseller: node.is_reseller,
                });
            }
            next = node.parent_id.as_deref();
        }
        lineages.insert(
            id.clone(),
            Lineage {
                account,
                stored_reseller: stored_reseller.as_deref().and_then(|id| AccountId::parse(id).ok()),
                ancestors,
            },
        );
    }
    Ok(Resellers { master, lineages })
}

/// An account's place in the tree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccountNode {
    pub id: AccountId,
    pub name: String,
    pub parent: Option<AccountId>,
    /// Root first, excluding the account itself.
    pub ancestors: Vec<AccountId>,
    pub is_reseller: bool,
    /// The nearest reseller ancestor, else the master; `None` for the master itself.
    pub reseller_id: Option<AccountId>,
    pub is_master: bool,
    pub deleted: bool,
}

#[derive(sqlx::FromRow)]
struct NodeRow {
    id: String,
    name: String,
    parent_id: Option<String>,
    is_reseller: bool,
    deleted: bool,
}

fn account_id(text: String) -> Result<AccountId, StoreError> {
    AccountId::parse(text).map_err(|error| StoreError::InvalidRow(error.to_string()))
}

impl Store {
    /// The account and its ancestors, walked up from `parent_id`; `None` when unknown.
    pub async fn account_node(&self, account: &AccountId) -> Result<Option<AccountNode>, StoreError> {
        let mut conn = self.acquire().await?;
        let sql = "SELECT id, name, parent_id, is_reseller, deleted FROM accounts WHERE id = $1";
        let own: Option<NodeRow> = on_conn!(&mut conn, |c| {
            sqlx::query_as(sql)
                .bind(account.as_str())
                .fetch_optional(&mut **c)
                .await
                .map_err(step("reading an account"))?
        });
        let Some(own) = own else {
            return Ok(None);
        };
        let resellers = resellers_on(&mut conn, std::slice::from_ref(account)).await?;
        drop(conn);
        let Some(lineage) = resellers.lineage(account.as_str()) else {
            return Ok(None);
        };
        let is_master = own.parent_id.is_none();
        let ancestors = lineage
            .ancestors
            .iter()
            .rev()
            .map(|ancestor| ancestor.id.clone())
            .collect();
        let reseller_id = match is_master {
            true => None,
            false => resellers.reseller_of(account.as_str()),
        };
        Ok(Some(AccountNode {
            id: account_id(own.id)?,
            name: own.name,
            parent: own.parent_id.map(account_id).transpose()?,
            ancestors,
            is_reseller: own.is_reseller,
            reseller_id,
            is_master,
            deleted: own.deleted,
        }))
    }
}

/// One assigned plan as the `plans` map shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct PlanAssignment {
    pub plan_id: String,
    pub vendor_id: String,
    /// An object.
    pub overrides: serde_json::Value,
    pub contract: Option<serde_json::Value>,
}

/// The editable part of an account's services record.
#[derive(Debug, Clone, PartialEq)]
pub struct ServicesRecord {
    /// In assignment order.
    pub assignments: Vec<PlanAssignment>,
    /// Account-wide overrides (an object).
    pub overrides: serde_json::Value,
    /// The services-level bookkeeper object, if any.
    pub bookkeeper: Option<serde_json::Value>,
    /// Legacy billing redirection; `None` = the account itself.
    pub billing_id: Option<String>,
}

/// What an operation changes in a services record; `None` leaves a part alone.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ServicesChange {
    pub assignments: Option<Vec<PlanAssignment>>,
    pub overrides: Option<serde_json::Value>,
    pub billing_id: Option<String>,
}

/// A plan of a vendor's catalog.
#[derive(Debug, Clone, PartialEq)]
pub struct CatalogPlan {
    pub vendor_id: String,
    pub plan_id: String,
    pub name: String,
    pub description: String,
    pub category: Option<String>,
    /// The whole document (an object).
    pub document: serde_json::Value,
}

/// What storing a plan document did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PlanWrite {
    Created,
    Updated,
    Unchanged,
}

impl PlanWrite {
    /// What storing `plan` does, given the catalog's current document of it.
    pub fn of(existing: Option<&CatalogPlan>, plan: &CatalogPlan) -> PlanWrite {
        match existing {
            None => PlanWrite::Created,
            Some(stored) if stored == plan => PlanWrite::Unchanged,
            Some(_) => PlanWrite::Updated,
        }
    }
}

/// One audit log as listed and fetched (`audit-and-summaries.md` §2, §6).
#[derive(Debug, Clone, PartialEq)]
pub struct AuditLogRow {
    pub id: String,
    pub created_at: i64,
    pub modified_at: i64,
    pub status: String,
    pub reason: Option<String>,
    pub message: Option<String>,
    pub bookkeeper_type: String,
    pub bookkeeper_vendor_id: String,
    pub bookkeeper_id: String,
    pub bookkeeper_results: serde_json::Value,
    pub invoice: serde_json::Value,
    pub audit: serde_json::Value,
    pub delivery_id: Option<String>,
}

/// A page of audit logs: rows and the key of the next page's first row.
#[derive(Debug, Clone, PartialEq)]
pub struct AuditLogPage {
    pub rows: Vec<AuditLogRow>,
    pub next: Option<AuditCursor>,
}

/// Where a page of audit logs starts: a row's `(created_at, id)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditCursor {
    pub created_at: i64,
    pub id: String,
}

/// The range and order of an audit log listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditLogQuery {
    pub from: i64,
    pub to: i64,
    pub ascending: bool,
    pub start: Option<AuditCursor>,
    /// `None`: every row.
    pub limit: Option<usize>,
}

#[derive(sqlx::FromRow)]
struct AssignmentTextRow {
    plan_id: String,
    vendor_id: String,
    overrides: String,
    contract: Option<String>,
}

#[derive(sqlx::FromRow)]
struct CatalogRow {
    vendor_id: String,
    plan_id: String,
    name: String,
    description: String,
    category: Option<String>,
    document: String,
}

#[derive(sqlx::FromRow)]
struct AuditTextRow {
    id: String,
    created_at: i64,
    modified_at: i64,
    status: String,
    reason: Option<String>,
    message: Option<String>,
    bookkeeper_type: String,
    bookkeeper_vendor_id: String,
    bookkeeper_id: String,
    bookkeeper_results: String,
    invoice: String,
    audit: String,
    delivery_id: Option<String>,
}

fn json(text: &str, what: &str) -> Result<serde_json::Value, StoreError> {
    serde_json::from_str(text).map_err(|error| StoreError::InvalidRow(format!("{what}: {error}")))
}

impl CatalogRow {
    fn parse(self) -> Result<CatalogPlan, StoreError> {
        let document = json(&self.document, &format!("plan {} of {}", self.plan_id, self.vendor_id))?;
        Ok(CatalogPlan {
            vendor_id: self.vendor_id,
            plan_id: self.plan_id,
            name: self.name,
            description: self.description,
            category: self.category,
            document,
        })
    }
}

impl AuditTextRow {
    fn parse(self) -> Result<AuditLogRow, StoreError> {
        let what = format!("audit log {}", self.id);
        Ok(AuditLogRow {
            bookkeeper_results: json(&self.bookkeeper_results, &what)?,
            invoice: json(&self.invoice, &what)?,
            audit: json(&self.audit, &what)?,
            id: self.id,
            created_at: self.created_at,
            modified_at: self.modified_at,
            status: self.status,
            reason: self.reason,
            message: self.message,
            bookkeeper_type: self.bookkeeper_type,
            bookkeeper_vendor_id: self.bookkeeper_vendor_id,
            bookkeeper_id: self.bookkeeper_id,
            delivery_id: self.delivery_id,
        })
    }
}

/// The three reads of a services record, on a connection or a transaction (`$c`
/// derefs twice to the backend's connection).
macro_rules! fetch_record {
    ($c:ident, $account:expr) => {{
        let assignments: Vec<AssignmentTextRow> = sqlx::query_as(
            "SELECT plan_id, vendor_id, overrides, contract FROM service_plan_assignments \
             WHERE account_id = $1 ORDER BY position, plan_id",
        )
        .bind($account.as_str())
        .fetch_all(&mut **$c)
        .await
        .map_err(step("reading plan assignments"))?;
        let services: Option<(String, Option<String>)> =
            sqlx::query_as("SELECT overrides, bookkeeper FROM services WHERE account_id = $1")
                .bind($account.as_str())
                .fetch_optional(&mut **$c)
                .await
                .map_err(step("reading services overrides"))?;
        let billing_id: Option<Option<String>> = sqlx::query_scalar("SELECT billing_id FROM accounts WHERE id = $1")
            .bind($account.as_str())
            .fetch_optional(&mut **$c)
            .await
            .map_err(step("reading the billing id"))?;
        StoredRecord {
            assignments,
            services,
            billing_id,
        }
    }};
}

/// A services record's rows as read.
struct StoredRecord {
    assignments: Vec<AssignmentTextRow>,
    services: Option<(String, Option<String>)>,
    billing_id: Option<Option<String>>,
}

impl StoredRecord {
    fn parse(self, account: &AccountId) -> Result<ServicesRecord, StoreError> {
        let what = format!("services of {account}");
        let assignments = self
            .assignments
            .into_iter()
            .map(|row| {
                Ok(PlanAssignment {
                    overrides: json(&row.overrides, &what)?,
                    contract: row.contract.as_deref().map(|text| json(text, &what)).transpose()?,
                    plan_id: row.plan_id,
                    vendor_id: row.vendor_id,
                })
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        let (overrides, bookkeeper) = match self.services {
            Some((overrides, bookkeeper)) => (
                json(&overrides, &what)?,
                bookkeeper.as_deref().map(|text| json(text, &what)).transpose()?,
            ),
            None => (serde_json::json!({}), None),
        };
        Ok(ServicesRecord {
            assignments,
            overrides,
            bookkeeper,
            billing_id: self.billing_id.flatten(),
        })
    }
}

#[derive(sqlx::FromRow)]
struct ManualRow {
    category: String,
    item: String,
    quantity: i64,
}

/// Writes a services change in a transaction that holds the account's write lock.
async fn write_services_change(
    tx: &mut Tx<'_>,
    account: &AccountId,
    change: &ServicesChange,
) -> Result<(), StoreError> {
    on_tx!(tx, |t| {
        if let Some(overrides) = &change.overrides {
            sqlx::query("UPDATE services SET overrides = $2 WHERE account_id = $1")
                .bind(account.as_str())
                .bind(overrides.to_string())
                .execute(&mut **t)
                .await
                .map_err(step("saving overrides"))?;
        }
        if let Some(billing_id) = &change.billing_id {
            let stored = (billing_id != account.as_str()).then_some(billing_id.as_str());
            sqlx::query("UPDATE accounts SET billing_id = $2 WHERE id = $1")
                .bind(account.as_str())
                .bind(stored)
                .execute(&mut **t)
                .await
                .map_err(step("saving the billing id"))?;
        }
        if let Some(assignments) = &change.assignments {
            sqlx::query("DELETE FROM service_plan_assignments WHERE account_id = $1")
                .bind(account.as_str())
                .execute(&mut **t)
                .await
                .map_err(step("replacing plan assignments"))?;
            for (position, assignment) in assignments.iter().enumerate() {
                sqlx::query(
                    "INSERT INTO service_plan_assignments \
                     (account_id, plan_id, vendor_id, position, overrides, contract) \
                     VALUES ($1, $2, $3, $4, $5, $6)",
                )
                .bind(account.as_str())
                .bind(assignment.plan_id.as_str())
                .bind(assignment.vendor_id.as_str())
                .bind(i64::try_from(position).unwrap_or(i64::MAX))
                .bind(assignment.overrides.to_string())
                .bind(assignment.contract.as_ref().map(|contract| contract.to_string()))
                .execute(&mut **t)
                .await
                .map_err(step("saving a plan assignment"))?;
            }
        }
    });
    Ok(())
}

const AUDIT_COLUMNS: &str = "id, created_at, modified_at, status, reason, message, bookkeeper_type, \
     bookkeeper_vendor_id, bookkeeper_id, bookkeeper_results, invoice, audit, delivery_id";

impl Store {
    /// The account's assignments, overrides, bookkeeper and billing id.
    pub async fn services_record(&self, account: &AccountId) -> Result<ServicesRecord, StoreError> {
        let mut conn = self.acquire().await?;
        let stored = on_conn!(&mut conn, |c| fetch_record!(c, account));
        stored.parse(account)
    }

    /// The revision of the account's services record (bumped by every write and every
    /// repricing, `store/locked.rs`), or `None` when it has none yet: the API's
    /// `revision`, as Kazoo answers the document's `_rev`.
    pub async fn services_revision(&self, account: &AccountId) -> Result<Option<i64>, StoreError> {
        let mut conn = self.acquire().await?;
        let revision: Option<i64> = on_conn!(&mut conn, |c| {
            sqlx::query_scalar("SELECT revision FROM services WHERE account_id = $1")
                .bind(account.as_str())
                .fetch_optional(&mut **c)
                .await
                .map_err(step("reading the services revision"))?
        });
        Ok(revision)
    }

    /// Saves a change of the services record and marks the account for repricing, in
    /// one transaction.
    pub async fn save_services_change(
        &self,
        account: &AccountId,
        change: &ServicesChange,
        now: GregorianSeconds,
    ) -> Result<(), StoreError> {
        self.modify_services(account, now, |_| Ok::<_, StoreError>((change.clone(), ())))
            .await
    }

    /// Reads the services record under the account's write lock, lets `decide` say
    /// what changes, and saves that with the repricing mark, in one transaction: a
    /// concurrent write waits for this one, so none is lost. An error from `decide`
    /// writes nothing.
    pub async fn modify_services<T, E>(
        &self,
        account: &AccountId,
        now: GregorianSeconds,
        decide: impl FnOnce(ServicesRecord) -> Result<(ServicesChange, T), E>,
    ) -> Result<T, E>
    where
        E: From<StoreError>,
    {
        let mut conn = self.acquire().await?;
        let mut tx = conn.begin("starting a services change").await?;
        tx.lock_account(account, now).await?;
        let stored = on_tx!(&mut tx, |t| fetch_record!(t, account));
        let (change, answer) = decide(stored.parse(account)?)?;
        write_services_change(&mut tx, account, &change).await?;
        tx.commit("committing a services change").await?;
        Ok(answer)
    }

    /// What [`Store::modify_services`] would save, decided on the stored record and
    /// not written (a dry run): the same `decide`, so the preview is the change.
    pub async fn preview_services_change<T, E>(
        &self,
        account: &AccountId,
        decide: impl FnOnce(ServicesRecord) -> Result<(ServicesChange, T), E>,
    ) -> Result<(ServicesChange, T), E>
    where
        E: From<StoreError>,
    {
        let stored = self.services_record(account).await?;
        decide(stored)
    }

    /// Reads the manual bucket under the account's write lock, lets `decide` compute
    /// the new bucket from it, and saves that in the same transaction with the
    /// quantity-change record of what differs, its day summaries
    /// (`audit-and-summaries.md` §4.2, §5.6) and the repricing mark. Returns the saved
    /// bucket and the record's entries (empty when nothing changed).
    pub async fn modify_manual_quantities<E>(
        &self,
        account: &AccountId,
        now: GregorianSeconds,
        record_id: &str,
        decide: impl FnOnce(Quantities) -> Result<Quantities, E>,
    ) -> Result<(Quantities, Vec<RecordEntry>), E>
    where
        E: From<StoreError>,
    {
        // A time with no calendar day has no day summary to fold into: refused first.
        if now.day_key().is_none() {
            return Err(StoreError::Refused(format!("time {} has no calendar day", now.0)).into());
        }
        let mut conn = self.acquire().await?;
        let mut tx = conn.begin("starting a manual quantities change").await?;
        tx.lock_account(account, now).await?;
        let rows: Vec<ManualRow> = on_tx!(&mut tx, |t| {
            sqlx::query_as(
                "SELECT category, item, quantity FROM service_quantities \
                 WHERE account_id = $1 AND bucket = 'manual' ORDER BY category, item",
            )
            .bind(account.as_str())
            .fetch_all(&mut **t)
            .await
            .map_err(step("reading manual quantities"))?
        });
        let mut old = Quantities::new();
        for row in rows {
            let category = Category::parse(row.category).map_err(|error| StoreError::InvalidRow(error.to_string()))?;
            let item = ItemName::parse(row.item).map_err(|error| StoreError::InvalidRow(error.to_string()))?;
            old.set(category, item, row.quantity);
        }
        let manual = decide(old.clone())?;
        let record = ChangeRecord {
            account: account.clone(),
            created: now,
            entries: record_entries(&diff_bucket(Bucket::Manual, &old, &manual)),
        };
        // One statement per table, whatever the number of items (PostgreSQL: one array
        // per column; SQLite: `VALUES` lists). The day summaries are folded per source
        // first: a statement's upsert may touch a row only once, and two categories may
        // share an item name.
        let account_column = |count: usize| Column::Text(vec![Some(account.to_string()); count]);
        let items: Vec<_> = manual.iter().collect();
        let saved = Rows::new(
            "account_id, category, item, quantity",
            vec![
                account_column(items.len()),
                Column::Text(
                    items
                        .iter()
                        .map(|(category, _, _)| Some(category.to_string()))
                        .collect(),
                ),
                Column::Text(items.iter().map(|(_, item, _)| Some(item.to_string())).collect()),
                Column::Int(items.iter().map(|(_, _, quantity)| Some(*quantity)).collect()),
            ],
        );
        let sums = summarise(std::slice::from_ref(&record));
        let summaries = Rows::new(
            "account_id, day, source, addition, removal, quantity, last_timestamp",
            vec![
                account_column(sums.len()),
                Column::Text(sums.keys().map(|(day, _)| Some(day.clone())).collect()),
                Column::Text(sums.keys().map(|(_, source)| Some(source.to_string())).collect()),
                Column::Int(sums.values().map(|sum| Some(sum.addition)).collect()),
                Column::Int(sums.values().map(|sum| Some(sum.removal)).collect()),
                Column::Int(sums.values().map(|sum| Some(sum.quantity)).collect()),
                Column::Int(sums.values().map(|sum| Some(sum.last_timestamp.0)).collect()),
            ],
        );
        on_tx!(&mut tx, |t| {
            sqlx::query("DELETE FROM service_quantities WHERE account_id = $1 AND bucket = 'manual'")
                .bind(account.as_str())
                .execute(&mut **t)
                .await
                .map_err(step("clearing manual quantities"))?;
            (**t)
                .with_rows(
                    &saved,
                    "INSERT INTO service_quantities (account_id, bucket, category, item, quantity) \
                     SELECT account_id, 'manual', category, item, quantity FROM v",
                    "saving manual quantities",
                )
                .await?;
            if !record.entries.is_empty() {
                sqlx::query(
                    "INSERT INTO quantity_change_records (id, account_id, run_id, created_at, entries) \
                     VALUES ($1, $2, $1, $3, $4)",
                )
                .bind(record_id)
                .bind(account.as_str())
                .bind(now.0)
                .bind(crate::wire::record::entries_to_json(&record.entries))
                .execute(&mut **t)
                .await
                .map_err(step("writing a change record"))?;
                // `WHERE true` lets SQLite read `ON CONFLICT` as the upsert clause.
                (**t)
                    .with_rows(
                        &summaries,
                        &format!(
                            "INSERT INTO quantity_day_summaries \
                                 (account_id, day, source, addition, removal, quantity, last_timestamp, sum_quantity) \
                             SELECT account_id, day, source, addition, removal, quantity, last_timestamp, FALSE \
                             FROM v WHERE true {FOLD_INTO_DAY_SUMMARY}"
                        ),
                        "updating day summaries",
                    )
                    .await?;
            }
        });
        tx.commit("committing manual quantities").await?;
        Ok((manual, record.entries))
    }

    /// One plan of a vendor's catalog.
    pub async fn catalog_plan(&self, vendor: &str, plan: &str) -> Result<Option<CatalogPlan>, StoreError> {
        let mut conn = self.acquire().await?;
        let row: Option<CatalogRow> = on_conn!(&mut conn, |c| {
            sqlx::query_as(
                "SELECT vendor_id, plan_id, name, description, category, document FROM service_plans \
                 WHERE vendor_id = $1 AND plan_id = $2",
            )
            .bind(vendor)
            .bind(plan)
            .fetch_optional(&mut **c)
            .await
            .map_err(step("reading a plan"))?
        });
        row.map(CatalogRow::parse).transpose()
    }

    /// A vendor's plans by id, from `start` (inclusive), at most `limit`.
    pub async fn catalog_plans(
        &self,
        vendor: &str,
        start: Option<&str>,
        limit: Option<usize>,
    ) -> Result<Vec<CatalogPlan>, StoreError> {
        let mut conn = self.acquire().await?;
        let limit = limit.map_or(i64::MAX, |limit| i64::try_from(limit).unwrap_or(i64::MAX));
        let rows: Vec<CatalogRow> = on_conn!(&mut conn, |c| {
            sqlx::query_as(
                "SELECT vendor_id, plan_id, name, description, category, document FROM service_plans \
                 WHERE vendor_id = $1 AND plan_id >= $2 ORDER BY plan_id LIMIT $3",
            )
            .bind(vendor)
            .bind(start.unwrap_or(""))
            .bind(limit)
            .fetch_all(&mut **c)
            .await
            .map_err(step("listing plans"))?
        });
        rows.into_iter().map(CatalogRow::parse).collect()
    }

    /// Stores a plan document in a vendor's catalog, and marks every account that has
    /// it assigned for repricing when its document changed.
    pub async fn store_plan(&self, plan: &CatalogPlan, now: GregorianSeconds) -> Result<PlanWrite, StoreError> {
        let existing = self.catalog_plan(&plan.vendor_id, &plan.plan_id).await?;
        let outcome = PlanWrite::of(existing.as_ref(), plan);
        if outcome == PlanWrite::Unchanged {
            return Ok(outcome);
        }
        let mut conn = self.acquire().await?;
        on_conn!(&mut conn, |c| {
            let mut tx = sqlx::Connection::begin(&mut **c)
                .await
                .map_err(step("starting a plan import"))?;
            sqlx::query(
                "INSERT INTO service_plans (vendor_id, plan_id, name, description, category, document) \
                 VALUES ($1, $2, $3, $4, $5, $6) \
                 ON CONFLICT (vendor_id, plan_id) DO UPDATE SET name = excluded.name, \
                     description = excluded.description, category = excluded.category, document = excluded.document",
            )
            .bind(plan.vendor_id.as_str())
            .bind(plan.plan_id.as_str())
            .bind(plan.name.as_str())
            .bind(plan.description.as_str())
            .bind(plan.category.as_deref())
            .bind(plan.document.to_string())
            .execute(&mut *tx)
            .await
            .map_err(step("storing a plan"))?;
            sqlx::query(
                "INSERT INTO services (account_id, dirty, dirty_since) \
                 SELECT account_id, TRUE, $3 FROM service_plan_assignments WHERE vendor_id = $1 AND plan_id = $2 \
                 ON CONFLICT (account_id) DO UPDATE SET dirty = TRUE, dirty_since = excluded.dirty_since",
            )
            .bind(plan.vendor_id.as_str())
            .bind(plan.plan_id.as_str())
            .bind(now.0)
            .execute(&mut *tx)
            .await
            .map_err(step("marking the plan's accounts for repricing"))?;
            tx.commit().await.map_err(step("committing a plan import"))?;
        });
        Ok(outcome)
    }

    /// A page of the account's visible audit logs in a range of `created_at`.
    pub async fn audit_log_page(&self, account: &AccountId, query: &AuditLogQuery) -> Result<AuditLogPage, StoreError> {
        let (order, compare) = if query.ascending { ("ASC", ">=") } else { ("DESC", "<=") };
        let (start_time, start_id) = match &query.start {
            Some(cursor) => (cursor.created_at, cursor.id.clone()),
            None if query.ascending => (i64::MIN, String::new()),
            None => (i64::MAX, "\u{10ffff}".to_owned()),
        };
        // One row more than asked tells where the next page starts.
        let fetch = query.limit.map_or(i64::MAX, |limit| {
            i64::try_from(limit.saturating_add(1)).unwrap_or(i64::MAX)
        });
        let sql = format!(
            "SELECT {AUDIT_COLUMNS} FROM audit_logs \
             WHERE account_id = $1 AND NOT hidden AND created_at >= $2 AND created_at <= $3 \
               AND (created_at {compare} $4 AND (created_at <> $4 OR id {compare} $5)) \
             ORDER BY created_at {order}, id {order} LIMIT $6"
        );
        let mut conn = self.acquire().await?;
        let rows: Vec<AuditTextRow> = on_conn!(&mut conn, |c| {
            sqlx::query_as(&sql)
                .bind(account.as_str())
                .bind(query.from)
                .bind(query.to)
                .bind(start_time)
                .bind(start_id.as_str())
                .bind(fetch)
                .fetch_all(&mut **c)
                .await
                .map_err(step("listing audit logs"))?
        });
        let mut rows = rows
            .into_iter()
            .map(AuditTextRow::parse)
            .collect::<Result<Vec<_>, _>>()?;
        let next = match query.limit {
            Some(limit) if rows.len() > limit => rows.pop().map(|row| AuditCursor {
                created_at: row.created_at,
                id: row.id,
            }),
            _ => None,
        };
        Ok(AuditLogPage { rows, next })
    }

    /// One visible audit log of the account.
    pub async fn audit_log(&self, account: &AccountId, id: &str) -> Result<Option<AuditLogRow>, StoreError> {
        let sql = format!("SELECT {AUDIT_COLUMNS} FROM audit_logs WHERE account_id = $1 AND id = $2 AND NOT hidden");
        let mut conn = self.acquire().await?;
        let row: Option<AuditTextRow> = on_conn!(&mut conn, |c| {
            sqlx::query_as(&sql)
                .bind(account.as_str())
                .bind(id)
                .fetch_optional(&mut **c)
                .await
                .map_err(step("reading an audit log"))?
        });
        row.map(AuditTextRow::parse).transpose()
    }

    /// The day summaries of an account for days `from_day..=to_day` (`YYYY-MM-DD`),
    /// optionally of one source, by day then source.
    pub async fn day_summaries_between(
        &self,
        account: &AccountId,
        from_day: &str,
        to_day: &str,
        source: Option<&str>,
    ) -> Result<Vec<(String, String, DaySummary)>, StoreError> {
        let mut conn = self.acquire().await?;
        let rows: Vec<(String, String, i64, i64, i64, i64)> = on_conn!(&mut conn, |c| {
            sqlx::query_as(
                "SELECT day, source, addition, removal, quantity, last_timestamp FROM quantity_day_summaries \
                 WHERE account_id = $1 AND day >= $2 AND day <= $3 AND ($4 = '' OR source = $4) \
                 ORDER BY day, source",
            )
            .bind(account.as_str())
            .bind(from_day)
            .bind(to_day)
            .bind(source.unwrap_or(""))
            .fetch_all(&mut **c)
            .await
            .map_err(step("reading day summaries"))?
        });
        Ok(rows
            .into_iter()
            .map(|(day, source, addition, removal, quantity, last_timestamp)| {
                (
                    day,
                    source,
                    DaySummary {
                        addition,
                        removal,
                        quantity,
                        last_timestamp: GregorianSeconds(last_timestamp),
                    },
                )
            })
            .collect())
    }
}

impl Store {
    /// The master account: the root of the tree.
    pub async fn master_account(&self) -> Result<Option<AccountId>, StoreError> {
        let mut conn = self.acquire().await?;
        master_account_on(&mut conn).await?.map(account_id).transpose()
    }

    /// The public fields of the account's limits document, if it has one.
    pub async fn account_limits(&self, account: &AccountId) -> Result<Option<serde_json::Value>, StoreError> {
        let mut conn = self.acquire().await?;
        let row: Option<(i64, i64, i64, bool)> = on_conn!(&mut conn, |c| {
            sqlx::query_as(
                "SELECT twoway_trunks, inbound_trunks, outbound_trunks, enabled FROM trunk_limits \
                 WHERE account_id = $1 AND NOT deleted",
            )
            .bind(account.as_str())
            .fetch_optional(&mut **c)
            .await
            .map_err(step("reading limits"))?
        });
        Ok(row.map(|(twoway, inbound, outbound, enabled)| {
            serde_json::json!({
                "twoway_trunks": twoway,
                "inbound_trunks": inbound,
                "outbound_trunks": outbound,
                "enabled": enabled,
            })
        }))
    }

    /// The names of the apps in the account's app store, sorted.
    pub async fn app_names(&self, account: &AccountId) -> Result<Vec<String>, StoreError> {
        let mut conn = self.acquire().await?;
        let names: Vec<String> = on_conn!(&mut conn, |c| {
            sqlx::query_scalar(
                "SELECT DISTINCT name FROM app_store_apps WHERE account_id = $1 AND NOT blacklisted ORDER BY name",
            )
            .bind(account.as_str())
            .fetch_all(&mut **c)
            .await
            .map_err(step("reading app names"))?
        });
        Ok(names)
    }
}
