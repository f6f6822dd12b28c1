//! The services record of one account as the operations layer reads and writes it:
//! the account's place in the tree, its plan assignments, overrides, manual
//! quantities, billing id; the plan catalog; audit logs and day summaries by range.
//!
//! Every write is one transaction that also marks the account for repricing, so a
//! change is never lost between the save and its commit.

use super::{on_conn, step, Store, StoreError};
use crate::domain::AccountId;

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
        let sql = "WITH RECURSIVE chain (id, depth) AS ( \
                       SELECT id, 0 FROM accounts WHERE id = $1 \
                       UNION ALL \
                       SELECT a.parent_id, chain.depth + 1 FROM chain JOIN accounts a ON a.id = chain.id \
                       WHERE a.parent_id IS NOT NULL AND chain.depth < 64) \
                   SELECT a.id, a.name, a.parent_id, a.is_reseller, a.deleted \
                   FROM chain JOIN accounts a ON a.id = chain.id ORDER BY chain.depth";
        let rows: Vec<NodeRow> = on_conn!(&mut conn, |c| {
            sqlx::query_as(sql)
                .bind(account.as_str())
                .fetch_all(&mut **c)
                .await
                .map_err(step("reading an account and its ancestors"))?
        });
        let mut rows = rows.into_iter();
        let Some(own) = rows.next() else {
            return Ok(None);
        };
        let mut ancestors = Vec::new();
        let mut reseller_id = None;
        let mut root = None;
        for row in rows {
            let id = account_id(row.id)?;
            if reseller_id.is_none() && row.is_reseller {
                reseller_id = Some(id.clone());
            }
            if row.parent_id.is_none() {
                root = Some(id.clone());
            }
            ancestors.push(id);
        }
        ancestors.reverse();
        let is_master = own.parent_id.is_none();
        Ok(Some(AccountNode {
            id: account_id(own.id)?,
            name: own.name,
            parent: own.parent_id.map(account_id).transpose()?,
            ancestors,
            is_reseller: own.is_reseller,
            reseller_id: reseller_id.or(root),
            is_master,
            deleted: own.deleted,
        }))
    }
}
