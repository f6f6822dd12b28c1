//! API tokens (`tally tokens …`, the `X-Auth-Token` header of `tally serve`) and the
//! credentials Kazoo's logins check (`PUT /v2/api_auth`, `PUT /v2/user_auth`).
//!
//! Only a token's SHA-256 is stored: the plain token is shown once, when created. What
//! a token still grants is decided by `domain::token` from the one row read here.

use super::{on_conn, step, Store, StoreError};
use crate::domain::summary::GregorianSeconds;
use crate::domain::token::{AccountStanding, StoredToken};
use crate::domain::AccountId;
use sha2::{Digest, Sha256};

/// The stored form of a token.
fn token_hash(plain: &str) -> String {
    hex::encode(Sha256::digest(plain.as_bytes()))
}

/// How many leading hex digits of the stored hash name a token in `tally tokens
/// list|revoke` (64 bits: unique in practice, and useless for logging in).
pub const TOKEN_ID_LENGTH: usize = 16;

/// 32 random bytes as 64 lowercase hex characters (tokens; api keys, as Kazoo's).
pub fn random_secret() -> Result<String, StoreError> {
    let mut bytes = [0u8; 32];
    getrandom::getrandom(&mut bytes).map_err(|error| StoreError::Refused(format!("no random bytes: {error}")))?;
    Ok(hex::encode(bytes))
}

/// Where a token came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenOrigin {
    /// `tally tokens create`.
    Cli,
    /// `PUT /v2/api_auth`.
    ApiAuth,
    /// `PUT /v2/user_auth`.
    UserAuth,
}

impl TokenOrigin {
    pub fn as_str(self) -> &'static str {
        match self {
            TokenOrigin::Cli => "cli",
            TokenOrigin::ApiAuth => "api_auth",
            TokenOrigin::UserAuth => "user_auth",
        }
    }
}

/// A token to issue.
#[derive(Debug, Clone, Copy)]
pub struct NewToken<'a> {
    pub account: &'a AccountId,
    pub super_admin: bool,
    /// `None`: never expires.
    pub expires_at: Option<GregorianSeconds>,
    pub origin: TokenOrigin,
    /// The user a `user_auth` token was issued to.
    pub owner_id: Option<&'a str>,
    pub description: Option<&'a str>,
}

/// A token as `tally tokens list` shows it (never the token itself).
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct TokenListing {
    /// The first [`TOKEN_ID_LENGTH`] hex digits of its hash.
    pub id: String,
    pub account_id: String,
    pub super_admin: bool,
    pub origin: String,
    pub owner_id: Option<String>,
    pub created_at: i64,
    pub expires_at: Option<i64>,
    pub description: Option<String>,
}

/// An account a login may act as, with what the login's answer says about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoginAccount {
    pub id: AccountId,
    pub name: String,
    pub is_reseller: bool,
    pub standing: AccountStanding,
}

/// A user whose credentials matched, with its account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoginUser {
    pub user_id: String,
    /// Disabled or deleted users cannot log in.
    pub active: bool,
    pub account: LoginAccount,
}

/// A presented token: the account it acts as (with its name, for audit logs) and
/// what decides its rights.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PresentedToken {
    pub account: AccountId,
    pub account_name: String,
    pub stored: StoredToken,
}

#[derive(sqlx::FromRow)]
struct TokenRow {
    account_id: String,
    account_name: Option<String>,
    super_admin: bool,
    expires_at: Option<i64>,
    known: bool,
    deleted: Option<bool>,
    enabled: Option<bool>,
    is_master: Option<bool>,
}

#[derive(sqlx::FromRow)]
struct LoginRow {
    user_id: Option<String>,
    user_active: Option<bool>,
    id: String,
    name: String,
    is_reseller: bool,
    deleted: bool,
    enabled: bool,
    is_master: bool,
}

impl LoginRow {
    fn account(&self) -> Result<LoginAccount, StoreError> {
        Ok(LoginAccount {
            id: AccountId::parse(self.id.as_str())
                .map_err(|error| StoreError::InvalidRow(format!("account {}: {error}", self.id)))?,
            name: self.name.clone(),
            is_reseller: self.is_reseller,
            standing: AccountStanding {
                deleted: self.deleted,
                enabled: self.enabled,
                is_master: self.is_master,
            },
        })
    }
}

const LOGIN_ACCOUNT_COLUMNS: &str = "a.id, a.name, a.is_reseller, a.deleted, a.enabled, \
     (a.parent_id IS NULL) AS is_master";

impl Store {
    /// Creates a token for the command line (`tally tokens create`) and returns it in
    /// plain text. Refused for an unknown or deleted account, for a super-admin token
    /// of any account but the master, and for an expiry not after `now`.
    pub async fn create_token(&self, token: NewToken<'_>, now: GregorianSeconds) -> Result<String, StoreError> {
        if token.expires_at.is_some_and(|expires_at| expires_at <= now) {
            return Err(StoreError::Refused("the token would already have expired".to_owned()));
        }
        let mut conn = self.acquire().await?;
        let account: Option<(bool, bool)> = on_conn!(&mut conn, |c| {
            sqlx::query_as("SELECT deleted, (parent_id IS NULL) AS is_master FROM accounts WHERE id = $1")
                .bind(token.account.as_str())
                .fetch_optional(&mut **c)
                .await
                .map_err(step("looking up the token's account"))?
        });
        match account {
            None => {
                return Err(StoreError::Refused(format!(
                    "unknown account {}: no token created",
                    token.account
                )))
            }
            Some((true, _)) => {
                return Err(StoreError::Refused(format!(
                    "account {} is deleted: no token created",
                    token.account
                )))
            }
            Some((false, false)) if token.super_admin => {
                return Err(StoreError::Refused(format!(
                    "account {} is not the master account: only the master's tokens may be super admin",
                    token.account
                )))
            }
            Some(_) => {}
        }
        drop(conn);
        self.insert_token(token, now).await
    }

    /// Issues a login's token (`api_auth`, `user_auth`) and prunes the tokens that
    /// have expired, so logins do not grow the table without end. The caller has
    /// checked the credentials and the account's standing.
    pub async fn issue_login_token(&self, token: NewToken<'_>, now: GregorianSeconds) -> Result<String, StoreError> {
        let mut conn = self.acquire().await?;
        on_conn!(&mut conn, |c| {
            sqlx::query("DELETE FROM auth_tokens WHERE expires_at <= $1")
                .bind(now.0)
                .execute(&mut **c)
                .await
                .map_err(step("pruning expired tokens"))?;
        });
        drop(conn);
        self.insert_token(token, now).await
    }

    async fn insert_token(&self, token: NewToken<'_>, now: GregorianSeconds) -> Result<String, StoreError> {
        let plain = random_secret()?;
        let sql = "INSERT INTO auth_tokens \
                   (token_hash, account_id, super_admin, created_at, description, expires_at, origin, owner_id) \
                   VALUES ($1, $2, $3, $4, $5, $6, $7, $8)";
        let mut conn = self.acquire().await?;
        on_conn!(&mut conn, |c| {
            sqlx::query(sql)
                .bind(token_hash(&plain))
                .bind(token.account.as_str())
                .bind(token.super_admin)
                .bind(now.0)
                .bind(token.description)
                .bind(token.expires_at.map(|at| at.0))
                .bind(token.origin.as_str())
                .bind(token.owner_id)
                .execute(&mut **c)
                .await
                .map_err(step("saving a token"))?;
        });
        Ok(plain)
    }

    /// The account a presented token acts as and what decides its rights (one
    /// query); `None` for a token that was never issued or has been revoked.
    pub async fn token_access(&self, plain: &str) -> Result<Option<PresentedToken>, StoreError> {
        let sql =
            "SELECT t.account_id, a.name AS account_name, t.super_admin, t.expires_at, (a.id IS NOT NULL) AS known, \
                          a.deleted, a.enabled, (a.parent_id IS NULL) AS is_master \
                   FROM auth_tokens t LEFT JOIN accounts a ON a.id = t.account_id \
                   WHERE t.token_hash = $1";
        let mut conn = self.acquire().await?;
        let row: Option<TokenRow> = on_conn!(&mut conn, |c| {
            sqlx::query_as(sql)
                .bind(token_hash(plain))
                .fetch_optional(&mut **c)
                .await
                .map_err(step("checking a token"))?
        });
        let Some(row) = row else {
            return Ok(None);
        };
        let account = AccountId::parse(row.account_id.as_str())
            .map_err(|error| StoreError::InvalidRow(format!("token: {error}")))?;
        let standing = match (row.known, row.deleted, row.enabled, row.is_master) {
            (true, Some(deleted), Some(enabled), Some(is_master)) => Some(AccountStanding {
                deleted,
                enabled,
                is_master,
            }),
            _ => None,
        };
        Ok(Some(PresentedToken {
            account,
            account_name: row.account_name.unwrap_or_default(),
            stored: StoredToken {
                super_admin: row.super_admin,
                expires_at: row.expires_at.map(GregorianSeconds),
                account: standing,
            },
        }))
    }

    /// Every token, or one account's, oldest first (`tally tokens list`).
    pub async fn list_tokens(&self, account: Option<&AccountId>) -> Result<Vec<TokenListing>, StoreError> {
        let sql = format!(
            "SELECT substr(token_hash, 1, {TOKEN_ID_LENGTH}) AS id, account_id, super_admin, origin, owner_id, \
                    created_at, expires_at, description \
             FROM auth_tokens WHERE (CAST($1 AS TEXT) IS NULL OR account_id = $1) ORDER BY created_at, token_hash"
        );
        let mut conn = self.acquire().await?;
        let rows: Vec<TokenListing> = on_conn!(&mut conn, |c| {
            sqlx::query_as(&sql)
                .bind(account.map(AccountId::as_str))
                .fetch_all(&mut **c)
                .await
                .map_err(step("listing tokens"))?
        });
        Ok(rows)
    }

    /// Revokes the token named by its listing id (or given in plain text); returns
    /// how many were revoked (0 or 1).
    pub async fn revoke_token(&self, id_or_token: &str) -> Result<u64, StoreError> {
        let is_listing_id =
            id_or_token.len() == TOKEN_ID_LENGTH && id_or_token.bytes().all(|byte| byte.is_ascii_hexdigit());
        let (sql, key) = match is_listing_id {
            true => (
                format!("DELETE FROM auth_tokens WHERE substr(token_hash, 1, {TOKEN_ID_LENGTH}) = $1"),
                id_or_token.to_ascii_lowercase(),
            ),
            false => (
                "DELETE FROM auth_tokens WHERE token_hash = $1".to_owned(),
                token_hash(id_or_token),
            ),
        };
        let mut conn = self.acquire().await?;
        let revoked = on_conn!(&mut conn, |c| {
            sqlx::query(&sql)
                .bind(key)
                .execute(&mut **c)
                .await
                .map_err(step("revoking a token"))?
                .rows_affected()
        });
        Ok(revoked)
    }

    /// Revokes every token of `account`; returns how many.
    pub async fn revoke_account_tokens(&self, account: &AccountId) -> Result<u64, StoreError> {
        let mut conn = self.acquire().await?;
        let revoked = on_conn!(&mut conn, |c| {
            sqlx::query("DELETE FROM auth_tokens WHERE account_id = $1")
                .bind(account.as_str())
                .execute(&mut **c)
                .await
                .map_err(step("revoking an account's tokens"))?
                .rows_affected()
        });
        Ok(revoked)
    }

    /// Sets an account's api key (`tally accounts api-key --generate`); refused for
    /// an unknown account. A later ingestion of the account's document sets the key
    /// the document carries.
    pub async fn set_api_key(&self, account: &AccountId, api_key: &str) -> Result<(), StoreError> {
        let mut conn = self.acquire().await?;
        let updated = on_conn!(&mut conn, |c| {
            sqlx::query("UPDATE accounts SET api_key = $1 WHERE id = $2")
                .bind(api_key)
                .bind(account.as_str())
                .execute(&mut **c)
                .await
                .map_err(step("saving an api key"))?
                .rows_affected()
        });
        match updated {
            0 => Err(StoreError::Refused(format!(
                "unknown account {account}: no api key set"
            ))),
            _ => Ok(()),
        }
    }

    /// The accounts holding `api_key` (Kazoo's keys are unique; the caller refuses
    /// anything but exactly one).
    pub async fn accounts_by_api_key(&self, api_key: &str) -> Result<Vec<LoginAccount>, StoreError> {
        let sql = format!(
            "SELECT CAST(NULL AS TEXT) AS user_id, CAST(NULL AS BOOLEAN) AS user_active, {LOGIN_ACCOUNT_COLUMNS} \
             FROM accounts a WHERE a.api_key = $1 ORDER BY a.id"
        );
        let rows = self.login_rows(&sql, api_key).await?;
        rows.iter().map(LoginRow::account).collect()
    }

    /// The users whose `pvt_md5_auth` is `credentials` (md5 of `username:password`),
    /// with their accounts, as Kazoo's credentials view finds them.
    pub async fn users_by_md5_credentials(&self, credentials: &str) -> Result<Vec<LoginUser>, StoreError> {
        let sql = format!(
            "SELECT u.id AS user_id, (u.enabled AND NOT u.deleted) AS user_active, {LOGIN_ACCOUNT_COLUMNS} \
             FROM users u JOIN accounts a ON a.id = u.account_id \
             WHERE u.md5_auth = $1 ORDER BY a.id, u.id"
        );
        let rows = self.login_rows(&sql, &credentials.to_ascii_lowercase()).await?;
        rows.iter()
            .map(|row| {
                Ok(LoginUser {
                    user_id: row.user_id.clone().unwrap_or_default(),
                    active: row.user_active.unwrap_or(false),
                    account: row.account()?,
                })
            })
            .collect()
    }

    /// The account a phone number is assigned to (`user_auth`'s `phone_number`).
    pub async fn account_of_number(&self, number: &str) -> Result<Option<AccountId>, StoreError> {
        let mut conn = self.acquire().await?;
        let found: Option<String> = on_conn!(&mut conn, |c| {
            sqlx::query_scalar("SELECT account_id FROM phone_numbers WHERE id = $1 AND NOT deleted")
                .bind(number)
                .fetch_optional(&mut **c)
                .await
                .map_err(step("looking up a number's account"))?
        });
        found
            .map(|id| AccountId::parse(id).map_err(|error| StoreError::InvalidRow(format!("number {number}: {error}"))))
            .transpose()
    }

    async fn login_rows(&self, sql: &str, key: &str) -> Result<Vec<LoginRow>, StoreError> {
        let mut conn = self.acquire().await?;
        let rows: Vec<LoginRow> = on_conn!(&mut conn, |c| {
            sqlx::query_as(sql)
                .bind(key)
                .fetch_all(&mut **c)
                .await
                .map_err(step("looking up login credentials"))?
        });
        Ok(rows)
    }
}

#[cfg(test)]
mod tests {
    use super::token_hash;

    #[test]
    fn the_stored_form_is_the_sha256_hex() {
        assert_eq!(
            token_hash("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
