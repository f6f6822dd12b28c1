//! Ingestion's side of the store: inventory records become rows of the inventory tables
//! (`users`, `devices`, `phone_numbers`…), set-based and in one transaction per batch,
//! with the accounts they touch marked for the next incremental reconcile.
//!
//! What it owns:
//! - [`Store::write_inventory`]: upserts that change a row only when a column differs
//!   (`ON CONFLICT … DO UPDATE … WHERE … IS DISTINCT FROM …`, `RETURNING` the rows that
//!   really changed), tombstones, the reconcile marks, the quarantine and the feed's
//!   checkpoint, all committed together. Re-importing the same input writes nothing.
//! - Child rows (number features, store apps, port transitions) are summarised by a
//!   digest column on their parent (`children_digest`), so a change only in the
//!   children is a change of the parent row; children are replaced (delete, then a
//!   multi-row insert) only for parents that changed.
//! - The quarantine (`ingest_rejections`), the checkpoints, and the stored number
//!   classifications, recomputed when the classifier list changes.
//!
//! Must not: read JSON (that is `wire::kazoo`), decide what a document means, or count
//! quantities (reconcile does, from the rows written here).

use super::{on_conn, step, Store, StoreError};
use crate::domain::classify::NumberClassifiers;
use crate::domain::inventory::{
    AccountRecord, AppStoreRecord, Change, Checkpoint, Database, InventoryChange, InventoryRecord, NumberRecord,
    PortRequestRecord, Presence,
};
use crate::domain::summary::GregorianSeconds;
use crate::domain::AccountId;
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

/// Binds per statement: far under SQLite's 32,766 and PostgreSQL's 65,535.
const MAX_BINDS: usize = 10_000;

/// Statements of more binds than this are not kept prepared: their text changes with
/// their row count, so they are seldom reused, and each kept one is big (SQLite keeps
/// a compiled program per statement in the connection's cache of 100).
const KEPT_BINDS: usize = 64;

/// Numbers read per page when reclassifying (memory stays flat).
const RECLASSIFY_PAGE: i64 = 5_000;

/// The `ingest_state` key of the classifier list's fingerprint.
const CLASSIFIERS_KEY: &str = "number_classifiers";

/// A document that could not be used, kept whole in the quarantine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RejectedDocument {
    /// The database's canonical name ([`Database::canonical_name`]).
    pub database: String,
    pub id: String,
    /// The document's JSON text, as received.
    pub document: String,
    pub problem: String,
    /// An account the document references that does not exist yet: the document is
    /// retried once that account arrives ([`Store::waiting_rejections`]).
    pub waiting_for: Option<AccountId>,
}

/// One batch for [`Store::write_inventory`].
#[derive(Debug, Clone, Copy)]
pub struct InventoryWrite<'a> {
    /// In feed order: when a document appears twice, the last occurrence wins.
    pub changes: &'a [InventoryChange],
    pub rejected: &'a [RejectedDocument],
    /// Written with the batch, so the feed resumes exactly after it.
    pub checkpoint: Option<&'a Checkpoint>,
    pub now: GregorianSeconds,
}

/// What a batch changed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct InventoryWritten {
    /// Documents (after keeping the last occurrence of each) whose rows changed.
    pub changed: u64,
    /// Documents that changed nothing (same content, a tombstone of nothing stored,
    /// a document of a database that holds no inventory).
    pub unchanged: u64,
    /// Accounts marked for the next `reconcile --changed`.
    pub accounts_marked: u64,
}

/// Which of some account ids exist, and the root of the tree.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KnownAccounts {
    pub existing: HashSet<AccountId>,
    /// The account without a parent (the master), if any.
    pub root: Option<AccountId>,
}

/// One bound value of a multi-row statement.
#[derive(Debug, Clone)]
enum Cell {
    Text(Option<String>),
    Int(i64),
    Bool(bool),
}

fn text(value: &str) -> Cell {
    Cell::Text(Some(value.to_owned()))
}

fn optional(value: Option<&str>) -> Cell {
    Cell::Text(value.map(str::to_owned))
}

/// One column of a multi-row statement as a PostgreSQL array (`UNNEST($n::type[])`):
/// one parameter per column instead of one per cell, so the statement's text is the
/// same every batch, prepared once and reused, and nothing is parsed per row.
enum Array {
    Text(Vec<Option<String>>),
    Int(Vec<i64>),
    Bool(Vec<bool>),
}

impl Array {
    fn sql_type(&self) -> &'static str {
        match self {
            Array::Text(_) => "text[]",
            Array::Int(_) => "int8[]",
            Array::Bool(_) => "bool[]",
        }
    }

    /// The columns of `rows` (each `columns` cells, every row typed as the first).
    fn columns<'r>(
        rows: impl ExactSizeIterator<Item = &'r Vec<Cell>> + Clone,
        columns: usize,
    ) -> Result<Vec<Array>, StoreError> {
        let Some(first) = rows.clone().next() else {
            return Ok(Vec::new());
        };
        let mut arrays: Vec<Array> = first
            .iter()
            .take(columns)
            .map(|cell| match cell {
                Cell::Text(_) => Array::Text(Vec::with_capacity(rows.len())),
                Cell::Int(_) => Array::Int(Vec::with_capacity(rows.len())),
                Cell::Bool(_) => Array::Bool(Vec::with_capacity(rows.len())),
            })
            .collect();
        for row in rows {
            for (array, cell) in arrays.iter_mut().zip(row) {
                match (array, cell) {
                    (Array::Text(values), Cell::Text(value)) => values.push(value.clone()),
                    (Array::Int(values), Cell::Int(value)) => values.push(*value),
                    (Array::Bool(values), Cell::Bool(value)) => values.push(*value),
                    _ => return Err(StoreError::Refused("a column of mixed types in a batch".to_owned())),
                }
            }
        }
        Ok(arrays)
    }

    /// `UNNEST($1::text[], $2::bool[], …)` for `arrays`.
    fn unnest(arrays: &[Array]) -> String {
        let parameters: Vec<String> = arrays
            .iter()
            .enumerate()
            .map(|(n, array)| format!("${}::{}", n + 1, array.sql_type()))
            .collect();
        format!("UNNEST({})", parameters.join(", "))
    }

    fn bind<'q, O>(
        self,
        query: sqlx::query::QueryAs<'q, sqlx::Postgres, O, sqlx::postgres::PgArguments>,
    ) -> sqlx::query::QueryAs<'q, sqlx::Postgres, O, sqlx::postgres::PgArguments> {
        match self {
            Array::Text(values) => query.bind(values),
            Array::Int(values) => query.bind(values),
            Array::Bool(values) => query.bind(values),
        }
    }
}

/// A row an upsert inserted or changed.
struct Upserted {
    key: String,
    /// The row's owner now (`''` for none).
    owner: String,
    /// The row did not exist before: it has no child rows to replace.
    inserted: bool,
    /// The row's owner before the statement (`''` for none or a new row).
    old_owner: String,
}

/// One open transaction on either backend.
enum Tx<'c> {
    Sqlite(sqlx::Transaction<'c, sqlx::Sqlite>),
    Postgres(sqlx::Transaction<'c, sqlx::Postgres>),
}

/// `on_conn!` for a transaction: the body is compiled once per backend.
macro_rules! on_tx {
    ($tx:expr, |$t:ident| $body:expr) => {
        match $tx {
            Tx::Sqlite($t) => $body,
            Tx::Postgres($t) => $body,
        }
    };
}

/// How a backend spells the `n`th (1-based) bound parameter: PostgreSQL numbers
/// them (`$n`); SQLite gets anonymous `?`, bound in order. SQLite keeps named and
/// numbered parameters in a list it scans linearly, both when parsing each one and
/// when sqlx asks each one's name to bind it: `$n` makes a 10 000-parameter statement
/// quadratic (most of an import's time, measured), `?` keeps it linear.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Params {
    Numbered,
    Anonymous,
}

impl Params {
    fn push(self, n: usize, text: &mut String) {
        match self {
            Params::Numbered => {
                text.push('$');
                text.push_str(&n.to_string());
            }
            Params::Anonymous => text.push('?'),
        }
    }

    /// `p1, p2, …` for `count` parameters.
    fn list(self, count: usize) -> String {
        let mut text = String::with_capacity(count * 4);
        for n in 1..=count {
            if n > 1 {
                text.push_str(", ");
            }
            self.push(n, &mut text);
        }
        text
    }

    /// `(p1, p2, …), (…)` for `rows` rows of `columns` values.
    fn rows(self, columns: usize, rows: usize) -> String {
        let mut text = String::with_capacity(rows * (columns * 4 + 4));
        for row in 0..rows {
            if row > 0 {
                text.push_str(", ");
            }
            text.push('(');
            for column in 0..columns {
                if column > 0 {
                    text.push_str(", ");
                }
                self.push(row * columns + column + 1, &mut text);
            }
            text.push(')');
        }
        text
    }
}

impl Tx<'_> {
    fn params(&self) -> Params {
        match self {
            Tx::Sqlite(_) => Params::Anonymous,
            Tx::Postgres(_) => Params::Numbered,
        }
    }

    /// Runs `{head} VALUES (…), (…) {tail}` over `rows` (each `columns` cells), in
    /// chunks under the bind limit; returns the two text columns each chunk's
    /// `RETURNING` gives (none when `tail` has no `RETURNING`).
    async fn values(
        &mut self,
        what: &'static str,
        head: &str,
        tail: &str,
        columns: usize,
        rows: &[Vec<Cell>],
    ) -> Result<Vec<(String, String)>, StoreError> {
        let returning = tail.contains("RETURNING");
        if let (Tx::Postgres(t), true) = (&mut *self, head.starts_with("INSERT INTO")) {
            if rows.is_empty() {
                return Ok(Vec::new());
            }
            let arrays = Array::columns(rows.iter(), columns)?;
            let sql = format!("{head} SELECT * FROM {} {tail}", Array::unnest(&arrays));
            let mut query = sqlx::query_as::<_, (String, String)>(&sql);
            for array in arrays {
                query = array.bind(query);
            }
            return if returning {
                query.fetch_all(&mut **t).await.map_err(step(what))
            } else {
                sqlx::Executor::execute(&mut **t, query).await.map_err(step(what))?;
                Ok(Vec::new())
            };
        }
        let per_chunk = (MAX_BINDS / columns.max(1)).max(1);
        let mut returned = Vec::new();
        for chunk in rows.chunks(per_chunk) {
            let sql = format!("{head} VALUES {} {tail}", self.params().rows(columns, chunk.len()));
            let cells = chunk.iter().flatten();
            let keep = chunk.len() * columns <= KEPT_BINDS;
            let rows: Vec<(String, String)> = on_tx!(self, |t| {
                let mut query = sqlx::query_as::<_, (String, String)>(&sql).persistent(keep);
                for cell in cells {
                    query = match cell {
                        Cell::Text(value) => query.bind(value.as_deref()),
                        Cell::Int(value) => query.bind(*value),
                        Cell::Bool(value) => query.bind(*value),
                    };
                }
                if returning {
                    query.fetch_all(&mut **t).await.map_err(step(what))?
                } else {
                    // Without RETURNING, fetch_all would find no row; execute it.
                    sqlx::Executor::execute(&mut **t, query).await.map_err(step(what))?;
                    Vec::new()
                }
            });
            returned.extend(rows);
        }
        Ok(returned)
    }

    /// Runs `{head} ($1, $2, …) {tail}` (a list of texts, e.g. for `IN`) in chunks;
    /// returns the two text columns a `SELECT` or a `RETURNING` gives.
    async fn list(
        &mut self,
        what: &'static str,
        head: &str,
        tail: &str,
        items: &[String],
    ) -> Result<Vec<(String, String)>, StoreError> {
        let returning = tail.contains("RETURNING") || head.starts_with("SELECT");
        if let Tx::Postgres(t) = &mut *self {
            if items.is_empty() {
                return Ok(Vec::new());
            }
            let sql = format!("{head} (SELECT UNNEST($1::text[])) {tail}");
            let query = sqlx::query_as::<_, (String, String)>(&sql).bind(items);
            return if returning {
                query.fetch_all(&mut **t).await.map_err(step(what))
            } else {
                sqlx::Executor::execute(&mut **t, query).await.map_err(step(what))?;
                Ok(Vec::new())
            };
        }
        let mut returned = Vec::new();
        for chunk in items.chunks(MAX_BINDS) {
            let sql = format!("{head} ({}) {tail}", self.params().list(chunk.len()));
            let keep = chunk.len() <= KEPT_BINDS;
            let rows: Vec<(String, String)> = on_tx!(self, |t| {
                let mut query = sqlx::query_as::<_, (String, String)>(&sql).persistent(keep);
                for item in chunk {
                    query = query.bind(item.as_str());
                }
                if returning {
                    query.fetch_all(&mut **t).await.map_err(step(what))?
                } else {
                    sqlx::Executor::execute(&mut **t, query).await.map_err(step(what))?;
                    Vec::new()
                }
            });
            returned.extend(rows);
        }
        Ok(returned)
    }

    /// `(key, owner or '')` of the rows of `table` among `keys` that exist (SQLite,
    /// read before the batch's statements: which rows are new, and whose owner a row
    /// leaves). The keys travel as one JSON parameter, so the statement's text is the
    /// same every batch and its prepared form is reused. PostgreSQL reads the same in
    /// the upsert itself ([`Tx::upsert`]).
    async fn current_owners(&mut self, table: &Table, keys: &[String]) -> Result<HashMap<String, String>, StoreError> {
        let Tx::Sqlite(t) = self else {
            return Ok(HashMap::new());
        };
        if keys.is_empty() {
            return Ok(HashMap::new());
        }
        let sql = format!(
            "SELECT {key}, COALESCE({owner}, '') FROM {name} WHERE {key} IN (SELECT value FROM json_each(?))",
            key = table.key,
            owner = table.owner,
            name = table.name
        );
        let keys = serde_json::Value::from(keys.to_vec()).to_string();
        let rows: Vec<(String, String)> = sqlx::query_as(&sql)
            .bind(keys)
            .fetch_all(&mut **t)
            .await
            .map_err(step("reading current owners"))?;
        Ok(rows.into_iter().collect())
    }

    /// Upserts `rows` into `table`; returns the rows inserted or changed. On SQLite,
    /// `existing` is what [`Tx::current_owners`] read before. On PostgreSQL one
    /// statement does it all: the columns travel as arrays (`UNNEST`), `xmax = 0`
    /// tells a fresh row, and the outer query, which sees the table as it was before
    /// the statement, reads the old owner of the rows that changed.
    async fn upsert(
        &mut self,
        table: &Table,
        rows: &Rows,
        existing: Option<&HashMap<String, String>>,
    ) -> Result<Vec<Upserted>, StoreError> {
        let what = "writing inventory";
        match self {
            Tx::Postgres(t) => {
                if rows.by_key.is_empty() {
                    return Ok(Vec::new());
                }
                let arrays = Array::columns(rows.by_key.values().map(|(_, cells)| cells), table.columns.len())?;
                let (set, differs) = table.changes();
                let sql = format!(
                    "WITH up AS (INSERT INTO {name} ({columns}) SELECT * FROM {unnest} \
                     ON CONFLICT ({key}) DO UPDATE SET {set} WHERE {differs} \
                     RETURNING {key} AS key, COALESCE({owner}, '') AS owner, (xmax = 0) AS inserted) \
                     SELECT up.key, up.owner, up.inserted, CASE WHEN up.inserted THEN '' ELSE \
                     COALESCE((SELECT old.{owner} FROM {name} AS old WHERE old.{key} = up.key), '') END FROM up",
                    name = table.name,
                    columns = table.columns.join(", "),
                    unnest = Array::unnest(&arrays),
                    key = table.key,
                    owner = table.owner,
                );
                let mut query = sqlx::query_as::<_, (String, String, bool, String)>(&sql);
                for array in arrays {
                    query = array.bind(query);
                }
                let rows = query.fetch_all(&mut **t).await.map_err(step(what))?;
                Ok(rows
                    .into_iter()
                    .map(|(key, owner, inserted, old_owner)| Upserted {
                        key,
                        owner,
                        inserted,
                        old_owner,
                    })
                    .collect())
            }
            Tx::Sqlite(_) => {
                let (head, tail) = table.upsert();
                let changed = self
                    .values(what, &head, &tail, table.columns.len(), &rows.cells())
                    .await?;
                Ok(changed
                    .into_iter()
                    .map(|(key, owner)| {
                        let old = existing.and_then(|existing| existing.get(&key));
                        Upserted {
                            inserted: old.is_none(),
                            old_owner: old.cloned().unwrap_or_default(),
                            key,
                            owner,
                        }
                    })
                    .collect())
            }
        }
    }

    /// Whether the quarantine holds any document at all.
    async fn any_quarantined(&mut self) -> Result<bool, StoreError> {
        let sql = "SELECT COUNT(*) FROM (SELECT 1 FROM ingest_rejections LIMIT 1) AS any_row";
        let count: i64 = on_tx!(self, |t| sqlx::query_scalar(sql)
            .fetch_one(&mut **t)
            .await
            .map_err(step("looking at the quarantine"))?);
        Ok(count > 0)
    }

    async fn commit(self) -> Result<(), StoreError> {
        on_tx!(self, |t| t.commit().await.map_err(step("committing inventory"))?);
        Ok(())
    }
}

/// A table whose rows are upserted from documents, described once so that every
/// table gets the same statement shape.
struct Table {
    name: &'static str,
    /// The conflict key (`id`, or `account_id` for the per-account singletons).
    key: &'static str,
    /// Every column written, the key first and `account_id` among them.
    columns: &'static [&'static str],
    /// The column that names the row's account (for accounts: the parent).
    owner: &'static str,
}

const USERS: Table = Table {
    name: "users",
    key: "id",
    columns: &[
        "id",
        "account_id",
        "priv_level",
        "qubicle_enabled",
        "qubicle_offering",
        "username",
        "md5_auth",
        "enabled",
        "deleted",
    ],
    owner: "account_id",
};
const DEVICES: Table = Table {
    name: "devices",
    key: "id",
    columns: &["id", "account_id", "device_type", "enabled", "deleted"],
    owner: "account_id",
};
const VMBOXES: Table = Table {
    name: "vmboxes",
    key: "id",
    columns: &["id", "account_id", "transcribe", "enabled", "deleted"],
    owner: "account_id",
};
const FAXBOXES: Table = Table {
    name: "faxboxes",
    key: "id",
    columns: &["id", "account_id", "enabled", "deleted"],
    owner: "account_id",
};
const CONFERENCES: Table = Table {
    name: "conferences",
    key: "id",
    columns: &["id", "account_id", "enabled", "deleted"],
    owner: "account_id",
};
const DEDICATED_IPS: Table = Table {
    name: "dedicated_ips",
    key: "id",
    columns: &["id", "account_id", "ip", "enabled", "deleted"],
    owner: "account_id",
};
const QUBICLE_QUEUES: Table = Table {
    name: "qubicle_queues",
    key: "id",
    columns: &["id", "account_id", "offering", "enabled", "deleted"],
    owner: "account_id",
};
const PORT_REQUESTS: Table = Table {
    name: "port_requests",
    key: "id",
    columns: &[
        "id",
        "account_id",
        "port_state",
        "number_count",
        "children_digest",
        "enabled",
        "deleted",
    ],
    owner: "account_id",
};
const PHONE_NUMBERS: Table = Table {
    name: "phone_numbers",
    key: "id",
    columns: &[
        "id",
        "account_id",
        "carrier_module",
        "classification",
        "children_digest",
        "enabled",
        "deleted",
    ],
    owner: "account_id",
};
const TRUNK_LIMITS: Table = Table {
    name: "trunk_limits",
    key: "account_id",
    columns: &[
        "account_id",
        "doc_id",
        "twoway_trunks",
        "inbound_trunks",
        "outbound_trunks",
        "enabled",
        "deleted",
    ],
    owner: "account_id",
};
const WHITELABELS: Table = Table {
    name: "whitelabels",
    key: "account_id",
    columns: &["account_id", "doc_id", "domain", "enabled", "deleted"],
    owner: "account_id",
};
const APP_STORES: Table = Table {
    name: "app_stores",
    key: "account_id",
    columns: &["account_id", "doc_id", "children_digest", "enabled", "deleted"],
    owner: "account_id",
};
const ACCOUNTS: Table = Table {
    name: "accounts",
    key: "id",
    columns: &[
        "id",
        "parent_id",
        "name",
        "enabled",
        "deleted",
        "is_reseller",
        "reseller_id",
        "billing_id",
        "api_key",
    ],
    owner: "parent_id",
};

/// Tables whose rows are a document of an account database, keyed by the document id.
const ACCOUNT_DATABASE_TABLES: &[&Table] = &[
    &USERS,
    &DEVICES,
    &VMBOXES,
    &FAXBOXES,
    &CONFERENCES,
    &DEDICATED_IPS,
    &QUBICLE_QUEUES,
    &PHONE_NUMBERS,
];
/// The per-account singletons, keyed by account and remembering their document.
const SINGLETON_TABLES: &[&Table] = &[&TRUNK_LIMITS, &WHITELABELS, &APP_STORES];

impl Table {
    /// The upsert that touches a row only when a column differs, returning the key
    /// and owner (`''` for none) of each row inserted or changed.
    fn upsert(&self) -> (String, String) {
        let head = format!("INSERT INTO {} ({})", self.name, self.columns.join(", "));
        let (set, differs) = self.changes();
        let tail = format!(
            "ON CONFLICT ({}) DO UPDATE SET {set} WHERE {differs} RETURNING {}, COALESCE({}, '')",
            self.key, self.key, self.owner
        );
        (head, tail)
    }

    /// The `SET` list and the `WHERE` condition of the upsert's update: every column
    /// but the key, and whether any of them differs.
    fn changes(&self) -> (String, String) {
        let others: Vec<&str> = self
            .columns
            .iter()
            .copied()
            .filter(|column| *column != self.key)
            .collect();
        let set: Vec<String> = others
            .iter()
            .map(|column| format!("{column} = excluded.{column}"))
            .collect();
        let differs: Vec<String> = others
            .iter()
            .map(|column| format!("{}.{column} IS DISTINCT FROM excluded.{column}", self.name))
            .collect();
        (set.join(", "), differs.join(" OR "))
    }
}

/// Rows for one table, keyed: the last row per key wins (PostgreSQL refuses an
/// `ON CONFLICT` statement that touches one row twice).
#[derive(Default)]
struct Rows {
    by_key: BTreeMap<String, (usize, Vec<Cell>)>,
}

impl Rows {
    fn put(&mut self, document: usize, cells: Vec<Cell>) {
        let key = match cells.first() {
            Some(Cell::Text(Some(key))) => key.clone(),
            _ => String::new(),
        };
        self.by_key.insert(key, (document, cells));
    }

    fn document(&self, key: &str) -> Option<usize> {
        self.by_key.get(key).map(|(document, _)| *document)
    }

    fn keys(&self) -> Vec<String> {
        self.by_key.keys().cloned().collect()
    }

    fn cells(&self) -> Vec<Vec<Cell>> {
        self.by_key.values().map(|(_, cells)| cells.clone()).collect()
    }
}

/// A sha256 of length-prefixed parts: equal children give equal digests.
fn digest<'a>(parts: impl IntoIterator<Item = &'a str>) -> String {
    let mut hasher = Sha256::new();
    for part in parts {
        hasher.update((part.len() as u64).to_be_bytes());
        hasher.update(part.as_bytes());
    }
    hex::encode(hasher.finalize())
}

fn presence_cells(presence: Presence) -> [Cell; 2] {
    [Cell::Bool(presence.enabled), Cell::Bool(presence.deleted)]
}

fn number_features(number: &NumberRecord) -> BTreeSet<&str> {
    number.features.iter().map(String::as_str).collect()
}

/// The store's apps by app id (the last entry of an id wins, as in a JSON object).
fn store_apps(store: &AppStoreRecord) -> BTreeMap<&str, &crate::domain::inventory::StoreApp> {
    store.apps.iter().map(|app| (app.app_id.as_str(), app)).collect()
}

fn apps_digest(store: &AppStoreRecord) -> String {
    let apps = store_apps(store);
    let mut parts: Vec<String> = Vec::new();
    for app in apps.values() {
        parts.extend([
            app.app_id.clone(),
            app.name.clone(),
            app.blacklisted.to_string(),
            app.allowed_users.clone(),
            app.specific_users.to_string(),
        ]);
    }
    digest(parts.iter().map(String::as_str))
}

fn transitions_digest(request: &PortRequestRecord) -> String {
    let parts: Vec<String> = request
        .transitions
        .iter()
        .map(|state| match state {
            Some(state) => format!("+{state}"),
            None => "-".to_owned(),
        })
        .collect();
    digest(parts.iter().map(String::as_str))
}

/// Everything one batch does, sorted by table, before any SQL runs.
#[derive(Default)]
struct Plan<'a> {
    upserts: Vec<(&'static Table, Rows)>,
    numbers: BTreeMap<String, &'a NumberRecord>,
    stores: BTreeMap<String, &'a AppStoreRecord>,
    requests: BTreeMap<String, &'a PortRequestRecord>,
    /// Tombstones of account databases: `(account, document id)` → document.
    account_removals: BTreeMap<(String, String), usize>,
    /// Numbers to delete (tombstones of number databases, unassigned numbers).
    number_removals: BTreeMap<String, usize>,
    request_removals: BTreeMap<String, usize>,
    /// Tombstones of the `accounts` database: the account is marked deleted.
    account_deletions: BTreeMap<String, usize>,
    /// Every `(database, document id)` of the batch, to lift from the quarantine.
    written: Vec<Vec<Cell>>,
    documents: usize,
}

impl<'a> Plan<'a> {
    fn rows(&mut self, table: &'static Table) -> &mut Rows {
        let position = match self.upserts.iter().position(|(known, _)| known.name == table.name) {
            Some(position) => position,
            None => {
                self.upserts.push((table, Rows::default()));
                self.upserts.len() - 1
            }
        };
        &mut self.upserts[position].1
    }

    fn new(changes: &'a [InventoryChange]) -> Result<Plan<'a>, StoreError> {
        // The last occurrence of each document wins.
        let mut seen: HashSet<(&Database, &str)> = HashSet::new();
        let mut kept: Vec<&InventoryChange> = Vec::new();
        for change in changes.iter().rev() {
            if seen.insert((&change.database, change.id.as_str())) {
                kept.push(change);
            }
        }
        kept.reverse();

        let mut plan = Plan {
            documents: kept.len(),
            ..Plan::default()
        };
        for (document, change) in kept.into_iter().enumerate() {
            plan.written
                .push(vec![text(&change.database.canonical_name()), text(change.id.as_str())]);
            plan.add(document, change)?;
        }
        Ok(plan)
    }

    fn add(&mut self, document: usize, change: &'a InventoryChange) -> Result<(), StoreError> {
        let id = change.id.as_str();
        let record = match &change.change {
            Change::Upsert(record) => record,
            Change::Remove => {
                match &change.database {
                    Database::Account(account) => {
                        self.account_removals
                            .insert((account.as_str().to_owned(), id.to_owned()), document);
                    }
                    Database::Numbers(_) => {
                        self.number_removals.insert(id.to_owned(), document);
                    }
                    Database::PortRequests => {
                        self.request_removals.insert(id.to_owned(), document);
                    }
                    Database::Accounts => {
                        self.account_deletions.insert(id.to_owned(), document);
                    }
                    Database::Other(_) => {}
                }
                return Ok(());
            }
        };
        // The account whose database holds the document, for account-database types.
        let owner = || match &change.database {
            Database::Account(account) => Ok(account.as_str().to_owned()),
            other => Err(StoreError::Refused(format!(
                "a {} document ({id}) outside an account database ({other})",
                record.kind()
            ))),
        };
        match record {
            InventoryRecord::Account(account) => self.rows(&ACCOUNTS).put(document, account_cells(account)),
            InventoryRecord::User(user) => {
                let mut cells = vec![
                    text(id),
                    text(&owner()?),
                    text(&user.priv_level),
                    Cell::Bool(user.qubicle_enabled),
                    optional(user.qubicle_offering.as_deref()),
                    optional(user.username.as_deref()),
                    optional(user.md5_auth.as_ref().map(|secret| secret.expose())),
                ];
                cells.extend(presence_cells(user.presence));
                self.rows(&USERS).put(document, cells);
            }
            InventoryRecord::Device(device) => {
                let mut cells = vec![text(id), text(&owner()?), optional(device.device_type.as_deref())];
                cells.extend(presence_cells(device.presence));
                self.rows(&DEVICES).put(document, cells);
            }
            InventoryRecord::Vmbox(vmbox) => {
                let mut cells = vec![text(id), text(&owner()?), Cell::Bool(vmbox.transcribe)];
                cells.extend(presence_cells(vmbox.presence));
                self.rows(&VMBOXES).put(document, cells);
            }
            InventoryRecord::Faxbox(presence) => {
                let mut cells = vec![text(id), text(&owner()?)];
                cells.extend(presence_cells(*presence));
                self.rows(&FAXBOXES).put(document, cells);
            }
            InventoryRecord::Conference(presence) => {
                let mut cells = vec![text(id), text(&owner()?)];
                cells.extend(presence_cells(*presence));
                self.rows(&CONFERENCES).put(document, cells);
            }
            InventoryRecord::DedicatedIp(ip) => {
                let mut cells = vec![text(id), text(&owner()?), text(&ip.ip)];
                cells.extend(presence_cells(ip.presence));
                self.rows(&DEDICATED_IPS).put(document, cells);
            }
            InventoryRecord::QubicleQueue(queue) => {
                let mut cells = vec![text(id), text(&owner()?), optional(queue.offering.as_deref())];
                cells.extend(presence_cells(queue.presence));
                self.rows(&QUBICLE_QUEUES).put(document, cells);
            }
            InventoryRecord::Limits(limits) => {
                let mut cells = vec![
                    text(&owner()?),
                    text(id),
                    Cell::Int(limits.twoway_trunks),
                    Cell::Int(limits.inbound_trunks),
                    Cell::Int(limits.outbound_trunks),
                ];
                cells.extend(presence_cells(limits.presence));
                self.rows(&TRUNK_LIMITS).put(document, cells);
            }
            InventoryRecord::Whitelabel(whitelabel) => {
                let mut cells = vec![text(&owner()?), text(id), optional(whitelabel.domain.as_deref())];
                cells.extend(presence_cells(whitelabel.presence));
                self.rows(&WHITELABELS).put(document, cells);
            }
            InventoryRecord::AppStore(store) => {
                let account = owner()?;
                let mut cells = vec![text(&account), text(id), text(&apps_digest(store))];
                cells.extend(presence_cells(store.presence));
                self.rows(&APP_STORES).put(document, cells);
                self.stores.insert(account, store);
            }
            InventoryRecord::PortRequest(request) => {
                let mut cells = vec![
                    text(id),
                    text(request.account.as_str()),
                    optional(request.state.as_deref()),
                    Cell::Int(request.number_count),
                    text(&transitions_digest(request)),
                ];
                cells.extend(presence_cells(request.presence));
                self.rows(&PORT_REQUESTS).put(document, cells);
                self.request_removals.remove(id);
                self.requests.insert(id.to_owned(), request);
            }
            InventoryRecord::Number(number) => match &number.assigned_to {
                None => {
                    self.number_removals.insert(id.to_owned(), document);
                }
                Some(account) => {
                    let features = number_features(number);
                    let mut cells = vec![
                        text(id),
                        text(account.as_str()),
                        text(&number.carrier_module),
                        optional(number.classification.as_deref()),
                        text(&digest(features.iter().copied())),
                    ];
                    cells.extend(presence_cells(number.presence));
                    self.rows(&PHONE_NUMBERS).put(document, cells);
                    self.number_removals.remove(id);
                    self.numbers.insert(id.to_owned(), number);
                }
            },
        }
        Ok(())
    }
}

fn account_cells(account: &AccountRecord) -> Vec<Cell> {
    vec![
        text(account.id.as_str()),
        optional(account.parent.as_ref().map(AccountId::as_str)),
        text(&account.name),
        Cell::Bool(account.presence.enabled),
        Cell::Bool(account.presence.deleted),
        Cell::Bool(account.is_reseller),
        optional(account.reseller_id.as_ref().map(AccountId::as_str)),
        optional(account.billing_id.as_deref()),
        optional(account.api_key.as_ref().map(|secret| secret.expose())),
    ]
}

/// A fresh random token for this batch's marks (32 hex characters).
pub(super) fn mark_token() -> Result<String, StoreError> {
    let mut bytes = [0u8; 16];
    getrandom::getrandom(&mut bytes)
        .map_err(|error| StoreError::Refused(format!("no random bytes for a reconcile mark: {error}")))?;
    Ok(hex::encode(bytes))
}

fn parse_account(text: String, what: &str) -> Result<AccountId, StoreError> {
    AccountId::parse(text).map_err(|error| StoreError::InvalidRow(format!("{what}: {error}")))
}

#[derive(sqlx::FromRow)]
struct RejectionRow {
    database: String,
    doc_id: String,
    document: String,
    problem: String,
    waiting_for: Option<String>,
}

impl RejectionRow {
    fn parse(self) -> Result<RejectedDocument, StoreError> {
        let waiting_for = self
            .waiting_for
            .map(|account| parse_account(account, "a quarantined document's account"))
            .transpose()?;
        Ok(RejectedDocument {
            database: self.database,
            id: self.doc_id,
            document: self.document,
            problem: self.problem,
            waiting_for,
        })
    }
}

/// What the statements of a batch found, gathered as they run.
#[derive(Default)]
struct Effects {
    changed_documents: HashSet<usize>,
    marked: BTreeSet<String>,
}

impl Store {
    /// Writes one batch of inventory changes, quarantined documents and the feed's
    /// checkpoint in one transaction; marks every account whose rows changed.
    pub async fn write_inventory(&self, write: InventoryWrite<'_>) -> Result<InventoryWritten, StoreError> {
        let plan = Plan::new(write.changes)?;
        let token = mark_token()?;
        let mut conn = self.acquire().await?;
        let mut tx = on_conn!(&mut conn, |c| {
            let tx = sqlx::Connection::begin(&mut **c)
                .await
                .map_err(step("starting an inventory batch"))?;
            into_tx(tx)
        });
        let mut effects = Effects::default();

        // PostgreSQL plans each statement for its arrays (a reused statement's generic
        // plan, made while a table was small, would scan it sequentially).
        if let Tx::Postgres(t) = &mut tx {
            sqlx::Executor::execute(&mut **t, "SET LOCAL plan_cache_mode = force_custom_plan")
                .await
                .map_err(step("planning an inventory batch"))?;
        }

        // SQLite: which rows exist and their owners, before anything changes: a row
        // moving to another account (or an account to another parent) marks the old
        // one too, and a new row has no children to replace.
        let mut existing: HashMap<&'static str, HashMap<String, String>> = HashMap::new();
        if let Tx::Sqlite(_) = &tx {
            for (table, rows) in &plan.upserts {
                let found = tx.current_owners(table, &rows.keys()).await?;
                existing.insert(table.name, found);
            }
        }

        remove(&mut tx, &plan, &mut effects).await?;

        for (table, rows) in &plan.upserts {
            let changed = tx.upsert(table, rows, existing.get(table.name)).await?;
            let mut changed_keys = Vec::with_capacity(changed.len());
            let mut replaced_keys = Vec::new();
            for row in changed {
                if let Some(document) = rows.document(&row.key) {
                    effects.changed_documents.insert(document);
                }
                // A row that moved marks the account it left: for an account, the
                // old parent, whose cascade shrinks.
                if !row.old_owner.is_empty() && row.old_owner != row.owner {
                    effects.marked.insert(row.old_owner);
                }
                let account = if table.name == ACCOUNTS.name {
                    row.key.clone()
                } else {
                    row.owner
                };
                effects.marked.insert(account);
                if !row.inserted {
                    replaced_keys.push(row.key.clone());
                }
                changed_keys.push(row.key);
            }
            replace_children(&mut tx, table, &changed_keys, &replaced_keys, &plan).await?;
        }

        let marked = u64::try_from(effects.marked.len()).unwrap_or(u64::MAX);
        if !effects.marked.is_empty() {
            let rows: Vec<Vec<Cell>> = effects
                .marked
                .iter()
                .map(|account| vec![text(account), Cell::Int(write.now.0), text(&token)])
                .collect();
            tx.values(
                "marking accounts for reconcile",
                "INSERT INTO reconcile_marks (account_id, marked_at, token)",
                "ON CONFLICT (account_id) DO UPDATE SET marked_at = excluded.marked_at, token = excluded.token",
                3,
                &rows,
            )
            .await?;
        }

        // A good version supersedes a quarantined one; then this batch's rejections.
        // The quarantine is usually empty: one cheap look spares the lift's statement.
        if !plan.written.is_empty() && tx.any_quarantined().await? {
            tx.values(
                "lifting documents from the quarantine",
                "DELETE FROM ingest_rejections WHERE (database, doc_id) IN (SELECT column1, column2 FROM (",
                ") AS written)",
                2,
                &plan.written,
            )
            .await?;
        }
        let mut rejected: BTreeMap<(&str, &str), Vec<Cell>> = BTreeMap::new();
        for document in write.rejected {
            rejected.insert(
                (document.database.as_str(), document.id.as_str()),
                vec![
                    text(&document.database),
                    text(&document.id),
                    text(&document.document),
                    text(&document.problem),
                    optional(document.waiting_for.as_ref().map(AccountId::as_str)),
                    Cell::Int(write.now.0),
                ],
            );
        }
        let rejected: Vec<Vec<Cell>> = rejected.into_values().collect();
        tx.values(
            "quarantining documents",
            "INSERT INTO ingest_rejections (database, doc_id, document, problem, waiting_for, rejected_at)",
            "ON CONFLICT (database, doc_id) DO UPDATE SET document = excluded.document, problem = excluded.problem, \
             waiting_for = excluded.waiting_for, rejected_at = excluded.rejected_at",
            6,
            &rejected,
        )
        .await?;

        if let Some(checkpoint) = write.checkpoint {
            tx.values(
                "saving the feed's checkpoint",
                "INSERT INTO ingest_checkpoints (source, database, last_seq, updated_at)",
                "ON CONFLICT (source, database) DO UPDATE SET last_seq = excluded.last_seq, \
                 updated_at = excluded.updated_at",
                4,
                &[vec![
                    text(&checkpoint.source),
                    text(&checkpoint.database),
                    text(&checkpoint.last_seq),
                    Cell::Int(write.now.0),
                ]],
            )
            .await?;
        }
        tx.commit().await?;

        let changed = u64::try_from(effects.changed_documents.len()).unwrap_or(u64::MAX);
        let documents = u64::try_from(plan.documents).unwrap_or(u64::MAX);
        Ok(InventoryWritten {
            changed,
            unchanged: documents.saturating_sub(changed),
            accounts_marked: marked,
        })
    }

    /// Which of `ids` exist and the root account, on one connection. The ids travel
    /// as one parameter (a JSON array on SQLite, a `text[]` on PostgreSQL), so the
    /// statement's text is the same every batch. On PostgreSQL it is not kept
    /// prepared: a one-off statement is always planned for its array (an index
    /// lookup), where a reused one could settle on a generic sequential scan.
    pub async fn known_accounts(&self, ids: &[AccountId]) -> Result<KnownAccounts, StoreError> {
        let mut existing = HashSet::new();
        let mut conn = self.acquire().await?;
        if !ids.is_empty() {
            let ids: Vec<&str> = ids.iter().map(AccountId::as_str).collect();
            let what = step("looking up accounts");
            let found: Vec<String> = match &mut conn {
                super::Conn::Sqlite(c) => {
                    sqlx::query_scalar("SELECT id FROM accounts WHERE id IN (SELECT value FROM json_each(?))")
                        .bind(serde_json::Value::from(ids).to_string())
                        .fetch_all(&mut **c)
                        .await
                        .map_err(what)?
                }
                super::Conn::Postgres(c) => sqlx::query_scalar("SELECT id FROM accounts WHERE id = ANY($1::text[])")
                    .bind(ids)
                    .persistent(false)
                    .fetch_all(&mut **c)
                    .await
                    .map_err(what)?,
            };
            for id in found {
                existing.insert(parse_account(id, "an account")?);
            }
        }
        // As `Store::master_account` (the smallest id of the accounts without a
        // parent), sorted here: `ORDER BY id LIMIT 1` walked the primary key through
        // every account before the root (2 ms a batch at 10,000 accounts), where the
        // roots alone come from the `parent_id` index. Planned afresh on PostgreSQL.
        let roots = "SELECT id FROM accounts WHERE parent_id IS NULL";
        let what = step("finding the master account");
        let roots: Vec<String> = match &mut conn {
            super::Conn::Sqlite(c) => sqlx::query_scalar(roots).fetch_all(&mut **c).await.map_err(what)?,
            super::Conn::Postgres(c) => sqlx::query_scalar(roots)
                .persistent(false)
                .fetch_all(&mut **c)
                .await
                .map_err(what)?,
        };
        let root = roots.into_iter().min();
        let root = root.map(|id| parse_account(id, "the master account")).transpose()?;
        Ok(KnownAccounts { existing, root })
    }

    /// The feed positions of one source: database → `last_seq`.
    pub async fn ingest_checkpoints(&self, source: &str) -> Result<HashMap<String, String>, StoreError> {
        let mut conn = self.acquire().await?;
        let rows: Vec<(String, String)> = on_conn!(&mut conn, |c| {
            sqlx::query_as("SELECT database, last_seq FROM ingest_checkpoints WHERE source = $1")
                .bind(source)
                .fetch_all(&mut **c)
                .await
                .map_err(step("reading checkpoints"))?
        });
        Ok(rows.into_iter().collect())
    }

    /// Quarantined documents whose awaited account now exists, oldest first.
    pub async fn waiting_rejections(&self, limit: u64) -> Result<Vec<RejectedDocument>, StoreError> {
        self.read_rejections(
            "SELECT r.database, r.doc_id, r.document, r.problem, r.waiting_for FROM ingest_rejections r \
             JOIN accounts a ON a.id = r.waiting_for ORDER BY r.rejected_at, r.database, r.doc_id LIMIT $1",
            limit,
        )
        .await
    }

    /// Every quarantined document, by database and id (for operators).
    pub async fn rejections(&self, limit: u64) -> Result<Vec<RejectedDocument>, StoreError> {
        self.read_rejections(
            "SELECT database, doc_id, document, problem, waiting_for FROM ingest_rejections \
             ORDER BY database, doc_id LIMIT $1",
            limit,
        )
        .await
    }

    async fn read_rejections(&self, sql: &str, limit: u64) -> Result<Vec<RejectedDocument>, StoreError> {
        let mut conn = self.acquire().await?;
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let rows: Vec<RejectionRow> = on_conn!(&mut conn, |c| {
            sqlx::query_as(sql)
                .bind(limit)
                .fetch_all(&mut **c)
                .await
                .map_err(step("reading the quarantine"))?
        });
        rows.into_iter().map(RejectionRow::parse).collect()
    }

    /// How many documents are quarantined.
    pub async fn rejection_count(&self) -> Result<u64, StoreError> {
        let count = self.query_count("SELECT COUNT(*) FROM ingest_rejections").await?;
        Ok(u64::try_from(count).unwrap_or(0))
    }

    /// How many accounts wait for a recount (`tally run reconcile --changed`).
    pub async fn marked_account_count(&self) -> Result<u64, StoreError> {
        let count = self.query_count("SELECT COUNT(*) FROM reconcile_marks").await?;
        Ok(u64::try_from(count).unwrap_or(0))
    }

    /// Recomputes stored number classifications when the classifier list changed
    /// since they were computed: `None` when it did not (one query), else how many
    /// numbers changed classification (their accounts are marked).
    ///
    /// Pages through the numbers by id, each page's changes in one transaction; the
    /// fingerprint is stored last, so an interrupted run is redone in full next time.
    pub async fn reclassify_numbers(
        &self,
        classifiers: &NumberClassifiers,
        now: GregorianSeconds,
    ) -> Result<Option<u64>, StoreError> {
        let fingerprint = classifiers.fingerprint();
        let mut conn = self.acquire().await?;
        let stored: Option<String> = on_conn!(&mut conn, |c| {
            sqlx::query_scalar("SELECT value FROM ingest_state WHERE key = $1")
                .bind(CLASSIFIERS_KEY)
                .fetch_optional(&mut **c)
                .await
                .map_err(step("reading the classifiers' fingerprint"))?
        });
        if stored.as_deref() == Some(fingerprint.as_str()) {
            return Ok(None);
        }
        let token = mark_token()?;
        let mut changed: u64 = 0;
        let mut after = String::new();
        loop {
            let page: Vec<(String, Option<String>)> = on_conn!(&mut conn, |c| {
                sqlx::query_as("SELECT id, classification FROM phone_numbers WHERE id > $1 ORDER BY id LIMIT $2")
                    .bind(after.as_str())
                    .bind(RECLASSIFY_PAGE)
                    .fetch_all(&mut **c)
                    .await
                    .map_err(step("reading numbers to classify"))?
            });
            let Some((last, _)) = page.last() else {
                break;
            };
            after = last.clone();
            let updates: Vec<Vec<Cell>> = page
                .iter()
                .filter_map(|(number, stored)| {
                    let fresh = classifiers.classify(number);
                    (fresh != stored.as_deref()).then(|| vec![text(number), optional(fresh)])
                })
                .collect();
            if updates.is_empty() {
                continue;
            }
            let mut tx = on_conn!(&mut conn, |c| {
                let tx = sqlx::Connection::begin(&mut **c)
                    .await
                    .map_err(step("starting a reclassification"))?;
                into_tx(tx)
            });
            let owners = tx
                .values(
                    "reclassifying numbers",
                    "UPDATE phone_numbers SET classification = n.classification \
                     FROM (SELECT column1 AS number_id, column2 AS classification FROM (",
                    ") AS v) AS n WHERE phone_numbers.id = n.number_id \
                     RETURNING phone_numbers.id, phone_numbers.account_id",
                    2,
                    &updates,
                )
                .await?;
            changed += u64::try_from(owners.len()).unwrap_or(u64::MAX);
            let accounts: BTreeSet<&str> = owners.iter().map(|(_, account)| account.as_str()).collect();
            let marks: Vec<Vec<Cell>> = accounts
                .into_iter()
                .map(|account| vec![text(account), Cell::Int(now.0), text(&token)])
                .collect();
            tx.values(
                "marking accounts for reconcile",
                "INSERT INTO reconcile_marks (account_id, marked_at, token)",
                "ON CONFLICT (account_id) DO UPDATE SET marked_at = excluded.marked_at, token = excluded.token",
                3,
                &marks,
            )
            .await?;
            tx.commit().await?;
        }
        on_conn!(&mut conn, |c| {
            sqlx::query(
                "INSERT INTO ingest_state (key, value) VALUES ($1, $2) \
                 ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            )
            .bind(CLASSIFIERS_KEY)
            .bind(fingerprint.as_str())
            .execute(&mut **c)
            .await
            .map_err(step("saving the classifiers' fingerprint"))?;
        });
        Ok(Some(changed))
    }
}

/// Wraps a backend's transaction (the one generic step `on_conn!` cannot express).
trait IntoTx<'c> {
    fn into_tx(self) -> Tx<'c>;
}

impl<'c> IntoTx<'c> for sqlx::Transaction<'c, sqlx::Sqlite> {
    fn into_tx(self) -> Tx<'c> {
        Tx::Sqlite(self)
    }
}

impl<'c> IntoTx<'c> for sqlx::Transaction<'c, sqlx::Postgres> {
    fn into_tx(self) -> Tx<'c> {
        Tx::Postgres(self)
    }
}

fn into_tx<'c>(tx: impl IntoTx<'c>) -> Tx<'c> {
    tx.into_tx()
}

/// Tombstones and unassigned numbers: deletes (or, for accounts, flags) the rows the
/// documents put in the inventory, marking their accounts.
async fn remove(tx: &mut Tx<'_>, plan: &Plan<'_>, effects: &mut Effects) -> Result<(), StoreError> {
    if !plan.account_removals.is_empty() {
        let pairs: Vec<Vec<Cell>> = plan
            .account_removals
            .keys()
            .map(|(account, id)| vec![text(account), text(id)])
            .collect();
        let mut removed_numbers = Vec::new();
        for table in ACCOUNT_DATABASE_TABLES.iter().chain(SINGLETON_TABLES) {
            let document_column = if table.key == "id" { "id" } else { "doc_id" };
            let head = format!(
                "DELETE FROM {} WHERE (account_id, {document_column}) IN (SELECT column1, column2 FROM (",
                table.name
            );
            let tail = format!(") AS removed) RETURNING account_id, {document_column}");
            let removed = tx.values("removing deleted documents", &head, &tail, 2, &pairs).await?;
            let mut stores = Vec::new();
            for (account, id) in removed {
                if let Some(document) = plan.account_removals.get(&(account.clone(), id.clone())) {
                    effects.changed_documents.insert(*document);
                }
                if table.name == PHONE_NUMBERS.name {
                    removed_numbers.push(id);
                } else if table.name == APP_STORES.name {
                    stores.push(account.clone());
                }
                effects.marked.insert(account);
            }
            if !stores.is_empty() {
                tx.list(
                    "removing a deleted store's apps",
                    "DELETE FROM app_store_apps WHERE account_id IN",
                    "",
                    &stores,
                )
                .await?;
            }
        }
        delete_features(tx, &removed_numbers).await?;
    }

    let removed_numbers = remove_documents_rows(
        tx,
        "removing numbers",
        "DELETE FROM phone_numbers WHERE id IN",
        &plan.number_removals,
        effects,
    )
    .await?;
    delete_features(tx, &removed_numbers).await?;

    let removed_requests = remove_documents_rows(
        tx,
        "removing port requests",
        "DELETE FROM port_requests WHERE id IN",
        &plan.request_removals,
        effects,
    )
    .await?;
    if !removed_requests.is_empty() {
        tx.list(
            "removing port transitions",
            "DELETE FROM port_request_transitions WHERE port_request_id IN",
            "",
            &removed_requests,
        )
        .await?;
    }

    // An account row is never deleted (its descendants would dangle): it is flagged.
    let accounts: Vec<String> = plan.account_deletions.keys().cloned().collect();
    if !accounts.is_empty() {
        let flagged = tx
            .list(
                "flagging deleted accounts",
                "UPDATE accounts SET deleted = TRUE WHERE NOT deleted AND id IN",
                "RETURNING id, id",
                &accounts,
            )
            .await?;
        for (id, _) in flagged {
            if let Some(document) = plan.account_deletions.get(&id) {
                effects.changed_documents.insert(*document);
            }
            effects.marked.insert(id);
        }
    }
    Ok(())
}

/// Deletes the rows of tombstoned documents kept by id (`removals`: id → document
/// index); each row removed makes its document a change and marks its account.
/// Returns the ids removed, whose child rows go next.
async fn remove_documents_rows(
    tx: &mut Tx<'_>,
    what: &'static str,
    delete: &str,
    removals: &BTreeMap<String, usize>,
    effects: &mut Effects,
) -> Result<Vec<String>, StoreError> {
    if removals.is_empty() {
        return Ok(Vec::new());
    }
    let ids: Vec<String> = removals.keys().cloned().collect();
    let removed = tx.list(what, delete, "RETURNING id, account_id", &ids).await?;
    let mut removed_ids = Vec::with_capacity(removed.len());
    for (id, account) in removed {
        if let Some(document) = removals.get(&id) {
            effects.changed_documents.insert(*document);
        }
        effects.marked.insert(account);
        removed_ids.push(id);
    }
    Ok(removed_ids)
}

async fn delete_features(tx: &mut Tx<'_>, numbers: &[String]) -> Result<(), StoreError> {
    if numbers.is_empty() {
        return Ok(());
    }
    tx.list(
        "removing number features",
        "DELETE FROM phone_number_features WHERE number_id IN",
        "",
        numbers,
    )
    .await?;
    Ok(())
}

/// Replaces the child rows of the parents that changed (keys of `table`); only
/// those that existed before (`replaced`) can have child rows to delete.
async fn replace_children(
    tx: &mut Tx<'_>,
    table: &Table,
    changed: &[String],
    replaced: &[String],
    plan: &Plan<'_>,
) -> Result<(), StoreError> {
    if changed.is_empty() {
        return Ok(());
    }
    if table.name == PHONE_NUMBERS.name {
        delete_features(tx, replaced).await?;
        let rows: Vec<Vec<Cell>> = changed
            .iter()
            .filter_map(|id| plan.numbers.get(id).map(|number| (id, number)))
            .flat_map(|(id, number)| {
                number_features(number)
                    .into_iter()
                    .map(move |feature| vec![text(id), text(feature)])
            })
            .collect();
        tx.values(
            "writing number features",
            "INSERT INTO phone_number_features (number_id, feature)",
            "",
            2,
            &rows,
        )
        .await?;
    } else if table.name == APP_STORES.name {
        tx.list(
            "replacing store apps",
            "DELETE FROM app_store_apps WHERE account_id IN",
            "",
            replaced,
        )
        .await?;
        let mut rows: Vec<Vec<Cell>> = Vec::new();
        for account in changed {
            let Some(store) = plan.stores.get(account) else {
                continue;
            };
            for app in store_apps(store).into_values() {
                rows.push(vec![
                    text(account),
                    text(&app.app_id),
                    text(&app.name),
                    Cell::Bool(app.blacklisted),
                    text(&app.allowed_users),
                    Cell::Int(app.specific_users),
                ]);
            }
        }
        tx.values(
            "writing store apps",
            "INSERT INTO app_store_apps (account_id, app_id, name, blacklisted, allowed_users, specific_users)",
            "",
            6,
            &rows,
        )
        .await?;
    } else if table.name == PORT_REQUESTS.name {
        tx.list(
            "replacing port transitions",
            "DELETE FROM port_request_transitions WHERE port_request_id IN",
            "",
            replaced,
        )
        .await?;
        let mut rows: Vec<Vec<Cell>> = Vec::new();
        for id in changed {
            let Some(request) = plan.requests.get(id) else {
                continue;
            };
            for (position, state) in request.transitions.iter().enumerate() {
                rows.push(vec![
                    text(id),
                    Cell::Int(i64::try_from(position).unwrap_or(i64::MAX)),
                    optional(state.as_deref()),
                ]);
            }
        }
        tx.values(
            "writing port transitions",
            "INSERT INTO port_request_transitions (port_request_id, position, new_state)",
            "",
            3,
            &rows,
        )
        .await?;
    }
    Ok(())
}
