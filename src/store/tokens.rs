//! API tokens (`tally tokens create`, the `X-Auth-Token` header of `tally serve`).
//!
//! Only a token's SHA-256 is stored: the plain token is shown once, when created.

use super::{on_conn, step, Store, StoreError};
use crate::domain::summary::GregorianSeconds;
use crate::domain::AccountId;
use sha2::{Digest, Sha256};

/// The stored form of a token.
fn token_hash(plain: &str) -> String {
    hex::encode(Sha256::digest(plain.as_bytes()))
}

impl Store {
    /// Creates a token acting as `account` and returns it in plain text (64 hex
    /// characters from 32 random bytes). Refused for an unknown account.
    pub async fn create_token(
        &self,
        account: &AccountId,
        super_admin: bool,
        description: Option<&str>,
        now: GregorianSeconds,
    ) -> Result<String, StoreError> {
        let mut bytes = [0u8; 32];
        getrandom::getrandom(&mut bytes)
            .map_err(|error| StoreError::Refused(format!("no random bytes for a token: {error}")))?;
        let plain = hex::encode(bytes);
        let mut conn = self.acquire().await?;
        let known: i64 = on_conn!(&mut conn, |c| {
            sqlx::query_scalar("SELECT COUNT(*) FROM accounts WHERE id = $1")
                .bind(account.as_str())
                .fetch_one(&mut **c)
                .await
                .map_err(step("looking up the token's account"))?
        });
        if known == 0 {
            return Err(StoreError::Refused(format!(
                "unknown account {account}: no token created"
            )));
        }
        let sql = "INSERT INTO auth_tokens (token_hash, account_id, super_admin, created_at, description) \
                   VALUES ($1, $2, $3, $4, $5)";
        on_conn!(&mut conn, |c| {
            sqlx::query(sql)
                .bind(token_hash(&plain))
                .bind(account.as_str())
                .bind(super_admin)
                .bind(now.0)
                .bind(description)
                .execute(&mut **c)
                .await
                .map_err(step("saving a token"))?;
        });
        Ok(plain)
    }

    /// The account a token acts as and whether it is a super admin's; `None` for an
    /// unknown token.
    pub async fn token_rights(&self, plain: &str) -> Result<Option<(AccountId, bool)>, StoreError> {
        let mut conn = self.acquire().await?;
        let row: Option<(String, bool)> = on_conn!(&mut conn, |c| {
            sqlx::query_as("SELECT account_id, super_admin FROM auth_tokens WHERE token_hash = $1")
                .bind(token_hash(plain))
                .fetch_optional(&mut **c)
                .await
                .map_err(step("checking a token"))?
        });
        row.map(|(account, super_admin)| {
            AccountId::parse(account)
                .map(|account| (account, super_admin))
                .map_err(|error| StoreError::InvalidRow(format!("token: {error}")))
        })
        .transpose()
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
