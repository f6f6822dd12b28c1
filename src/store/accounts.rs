//! Looking accounts up for the operator (`tally accounts list|get|tree|find`): who an
//! account is, where it sits, its standing and its plans.
//!
//! Each listing is one statement: a subquery picks the accounts (a page by id, one
//! id, a match, or a subtree), and the same outer query joins their standing and
//! plans, one row per plan, folded here into one listing per account. Nothing is
//! asked per account, and every listing has a limit.

use super::{on_conn, step, Store, StoreError};

/// How deep `tree` follows parents: far deeper than any real reseller hierarchy, and
/// a bound that keeps a parent cycle in bad data from recursing forever.
const DEEPEST_TREE: i64 = 64;

/// An account as the listings show it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccountListing {
    pub id: String,
    pub name: String,
    pub parent_id: Option<String>,
    /// The nearest reseller above (Kazoo's `pvt_reseller_id`), as stored by reconcile.
    pub reseller_id: Option<String>,
    pub is_reseller: bool,
    pub enabled: bool,
    pub deleted: bool,
    /// `good_standing`, `delinquent` or an error reason (`services.status`).
    pub standing: String,
    pub standing_reason: Option<String>,
    /// Steps below the top of a `tree` listing; 0 in the other listings.
    pub depth: u32,
    /// The assigned plan ids, in the order of the services document's `plans`.
    pub plans: Vec<String>,
}

/// One account and one of its plans, as the statement returns them.
#[derive(sqlx::FromRow)]
struct AccountPlanRow {
    id: String,
    name: String,
    parent_id: Option<String>,
    reseller_id: Option<String>,
    is_reseller: bool,
    enabled: bool,
    deleted: bool,
    standing: String,
    standing_reason: Option<String>,
    depth: i64,
    plan_id: Option<String>,
}

/// Folds the rows (ordered by account, then plan position) into listings. In a tree
/// the same id may come again at another depth (bad data: a parent cycle).
fn fold(rows: Vec<AccountPlanRow>) -> Vec<AccountListing> {
    let mut listings: Vec<AccountListing> = Vec::new();
    for row in rows {
        let depth = u32::try_from(row.depth).unwrap_or(u32::MAX);
        let same_account = listings
            .last()
            .is_some_and(|last| last.id == row.id && last.depth == depth);
        if !same_account {
            listings.push(AccountListing {
                id: row.id,
                name: row.name,
                parent_id: row.parent_id,
                reseller_id: row.reseller_id,
                is_reseller: row.is_reseller,
                enabled: row.enabled,
                deleted: row.deleted,
                standing: row.standing,
                standing_reason: row.standing_reason,
                depth,
                plans: Vec::new(),
            });
        }
        if let (Some(plan), Some(listing)) = (row.plan_id, listings.last_mut()) {
            listing.plans.push(plan);
        }
    }
    listings
}

/// The statement around `picked`, a query of `(id, depth, sort_key)`; `with` is an
/// optional leading `WITH` clause the picking query uses.
fn listing_sql(with: &str, picked: &str) -> String {
    format!(
        "{with} SELECT a.id, a.name, a.parent_id, a.reseller_id, a.is_reseller, a.enabled, a.deleted, \
                COALESCE(s.status, 'good_standing') AS standing, s.status_reason AS standing_reason, \
                picked.depth, p.plan_id \
         FROM ({picked}) picked \
         JOIN accounts a ON a.id = picked.id \
         LEFT JOIN services s ON s.account_id = a.id \
         LEFT JOIN service_plan_assignments p ON p.account_id = a.id \
         ORDER BY picked.sort_key, p.position, p.plan_id"
    )
}

/// `text` with LIKE's wildcards escaped by `!` (the statements say `ESCAPE '!'`).
fn like_literal(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for character in text.chars() {
        if matches!(character, '%' | '_' | '!') {
            escaped.push('!');
        }
        escaped.push(character);
    }
    escaped
}

fn clamp(limit: u64) -> i64 {
    i64::try_from(limit).unwrap_or(i64::MAX)
}

impl Store {
    /// Up to `limit` accounts by id, after `after` (the last id of the previous page).
    pub async fn list_accounts(&self, after: Option<&str>, limit: u64) -> Result<Vec<AccountListing>, StoreError> {
        let sql = listing_sql(
            "",
            "SELECT id, CAST(0 AS BIGINT) AS depth, id AS sort_key FROM accounts \
             WHERE CAST($1 AS TEXT) IS NULL OR id > CAST($1 AS TEXT) ORDER BY id LIMIT $2",
        );
        let mut conn = self.acquire().await?;
        let rows: Vec<AccountPlanRow> = on_conn!(&mut conn, |c| {
            sqlx::query_as(&sql)
                .bind(after)
                .bind(clamp(limit))
                .fetch_all(&mut **c)
                .await
                .map_err(step("listing accounts"))?
        });
        Ok(fold(rows))
    }

    /// One account, if it is stored.
    pub async fn account_listing(&self, id: &str) -> Result<Option<AccountListing>, StoreError> {
        let sql = listing_sql(
            "",
            "SELECT id, CAST(0 AS BIGINT) AS depth, id AS sort_key FROM accounts WHERE id = $1",
        );
        let mut conn = self.acquire().await?;
        let rows: Vec<AccountPlanRow> = on_conn!(&mut conn, |c| {
            sqlx::query_as(&sql)
                .bind(id)
                .fetch_all(&mut **c)
                .await
                .map_err(step("reading an account"))?
        });
        Ok(fold(rows).into_iter().next())
    }

    /// Up to `limit` accounts whose id starts with `text`, or whose name contains it,
    /// ignoring case; by id.
    pub async fn find_accounts(&self, text: &str, limit: u64) -> Result<Vec<AccountListing>, StoreError> {
        let lowered = like_literal(&text.to_lowercase());
        let sql = listing_sql(
            "",
            "SELECT id, CAST(0 AS BIGINT) AS depth, id AS sort_key FROM accounts \
             WHERE lower(id) LIKE $1 ESCAPE '!' OR lower(name) LIKE $2 ESCAPE '!' ORDER BY id LIMIT $3",
        );
        let mut conn = self.acquire().await?;
        let rows: Vec<AccountPlanRow> = on_conn!(&mut conn, |c| {
            sqlx::query_as(&sql)
                .bind(format!("{lowered}%"))
                .bind(format!("%{lowered}%"))
                .bind(clamp(limit))
                .fetch_all(&mut **c)
                .await
                .map_err(step("finding accounts"))?
        });
        Ok(fold(rows))
    }

    /// The hierarchy under `top` (default: every account without a parent), parents
    /// before their children, siblings by id, each with its depth; at most `limit`
    /// accounts. Followed through `parent_id`, so it is right even before reconcile
    /// refreshed the stored ancestor paths.
    pub async fn account_tree(&self, top: Option<&str>, limit: u64) -> Result<Vec<AccountListing>, StoreError> {
        let with = format!(
            "WITH RECURSIVE under (id, depth, sort_key) AS ( \
                 SELECT id, CAST(0 AS BIGINT), CAST(id AS TEXT) FROM accounts \
                 WHERE (CAST($1 AS TEXT) IS NULL AND parent_id IS NULL) OR id = CAST($1 AS TEXT) \
                 UNION ALL \
                 SELECT child.id, under.depth + 1, under.sort_key || '/' || child.id \
                 FROM accounts child JOIN under ON child.parent_id = under.id \
                 WHERE under.depth < {DEEPEST_TREE} \
             )"
        );
        let sql = listing_sql(
            &with,
            "SELECT id, depth, sort_key FROM under ORDER BY sort_key LIMIT $2",
        );
        let mut conn = self.acquire().await?;
        let rows: Vec<AccountPlanRow> = on_conn!(&mut conn, |c| {
            sqlx::query_as(&sql)
                .bind(top)
                .bind(clamp(limit))
                .fetch_all(&mut **c)
                .await
                .map_err(step("reading the account tree"))?
        });
        Ok(fold(rows))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn like_wildcards_in_the_text_are_matched_literally() {
        assert_eq!(like_literal("50%_off!"), "50!%!_off!!");
        assert_eq!(like_literal("acme"), "acme");
    }
}
