//! Kazoo's logins: `PUT /v2/api_auth` (an account's api key) and `PUT /v2/user_auth`
//! (the md5 of `username:password` and the account it belongs to) answer a token that
//! expires, in the envelope's `auth_token`, as Kazoo's crossbar does; failed attempts
//! are limited per source address.
//!
//! This module checks credentials and issues tokens; what a token grants afterwards is
//! `domain::token`'s decision, read at every request by `authenticate`.

use super::envelope::ApiError;
use crate::domain::summary::GregorianSeconds;
use crate::domain::token::AccountAccess;
use crate::ops::{Operations, OpsError};
use crate::store::{LoginAccount, NewToken, TokenOrigin};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The login settings of `tally serve` (`[api]` in the configuration).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LoginSettings {
    /// How long a login's token lives (Kazoo's default: one hour).
    pub token_lifetime: Duration,
    /// Failed logins a source address may make within `failure_window`; further
    /// attempts are answered 429 until the window ends.
    pub failures_allowed: u32,
    pub failure_window: Duration,
}

impl Default for LoginSettings {
    fn default() -> LoginSettings {
        LoginSettings {
            token_lifetime: Duration::from_secs(3600),
            failures_allowed: 10,
            failure_window: Duration::from_secs(300),
        }
    }
}

/// Source addresses tracked at most; beyond it, windows that have ended are dropped.
const TRACKED_ADDRESSES: usize = 10_000;

/// Failed logins per source address, in memory (one server's view; a restart forgets).
#[derive(Debug, Default)]
pub(super) struct FailedLogins {
    windows: Mutex<HashMap<Option<IpAddr>, FailureWindow>>,
}

#[derive(Debug, Clone, Copy)]
struct FailureWindow {
    started: Instant,
    failures: u32,
}

impl FailedLogins {
    /// `Err(seconds to wait)` when `client` has used up its failures in the window.
    pub(super) fn check(&self, settings: &LoginSettings, client: Option<IpAddr>, now: Instant) -> Result<(), u64> {
        let windows = self.windows.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let Some(window) = windows.get(&client) else {
            return Ok(());
        };
        let ends = window.started + settings.failure_window;
        if window.failures >= settings.failures_allowed && now < ends {
            // Whole seconds, rounded up, so a client that waits that long gets through.
            let wait = ends - now;
            return Err(wait.as_secs() + u64::from(wait.subsec_nanos() > 0));
        }
        Ok(())
    }

    /// Counts a failed login of `client`.
    pub(super) fn record(&self, settings: &LoginSettings, client: Option<IpAddr>, now: Instant) {
        let mut windows = self.windows.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if windows.len() >= TRACKED_ADDRESSES {
            windows.retain(|_, window| now < window.started + settings.failure_window);
        }
        let window = windows.entry(client).or_insert(FailureWindow {
            started: now,
            failures: 0,
        });
        if now >= window.started + settings.failure_window {
            *window = FailureWindow {
                started: now,
                failures: 0,
            };
        }
        window.failures = window.failures.saturating_add(1);
    }
}

/// A login that succeeded: the new token and the answer's `data`.
pub(super) struct Issued {
    pub(super) token: String,
    pub(super) data: Value,
}

/// Why a login failed.
enum Refusal {
    /// Bad credentials: 401, counted against the source address.
    Credentials,
    /// A refusal that is not a guess (bad input, a disabled account, a fault).
    Other(ApiError),
}

impl From<OpsError> for Refusal {
    fn from(error: OpsError) -> Refusal {
        Refusal::Other(error.into())
    }
}

impl From<crate::store::StoreError> for Refusal {
    fn from(error: crate::store::StoreError) -> Refusal {
        Refusal::Other(OpsError::from(error).into())
    }
}

/// Which login.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum LoginKind {
    ApiKey,
    UserCredentials,
}

/// Runs one login: the rate limit, the credentials, the token.
pub(super) async fn login(
    ops: &Operations,
    settings: &LoginSettings,
    failures: &FailedLogins,
    client: Option<IpAddr>,
    kind: LoginKind,
    data: &Value,
) -> Result<Issued, ApiError> {
    if let Err(wait) = failures.check(settings, client, Instant::now()) {
        return Err(ApiError::too_many_requests(wait));
    }
    let outcome = match kind {
        LoginKind::ApiKey => api_auth(ops, settings, data).await,
        LoginKind::UserCredentials => user_auth(ops, settings, data).await,
    };
    match outcome {
        Ok(issued) => Ok(issued),
        Err(Refusal::Credentials) => {
            failures.record(settings, client, Instant::now());
            Err(ApiError::invalid_credentials())
        }
        Err(Refusal::Other(error)) => Err(error),
    }
}

/// A required non-empty string member of `data`.
fn required_text<'a>(data: &'a Value, field: &str) -> Result<&'a str, OpsError> {
    match data.get(field) {
        Some(Value::String(text)) if !text.trim().is_empty() => Ok(text.trim()),
        Some(Value::String(_)) | None | Some(Value::Null) => {
            Err(OpsError::field(field, "required", format!("{field} is required")))
        }
        Some(_) => Err(OpsError::field(field, "type", format!("{field} must be a string"))),
    }
}

/// An optional string member of `data` (empty is absent).
fn optional_text<'a>(data: &'a Value, field: &str) -> Result<Option<&'a str>, OpsError> {
    match data.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(text)) if text.trim().is_empty() => Ok(None),
        Some(Value::String(text)) => Ok(Some(text.trim())),
        Some(_) => Err(OpsError::field(field, "type", format!("{field} must be a string"))),
    }
}

/// `PUT /v2/api_auth`: `{"api_key"}` → a token of the account holding that key.
async fn api_auth(ops: &Operations, settings: &LoginSettings, data: &Value) -> Result<Issued, Refusal> {
    let api_key = required_text(data, "api_key")?;
    let accounts = ops.store().accounts_by_api_key(api_key).await?;
    // Kazoo's keys are unique; two accounts with one key authenticate neither.
    let [account] = accounts.as_slice() else {
        return Err(Refusal::Credentials);
    };
    issue(ops, settings, account, None, TokenOrigin::ApiAuth).await
}

/// Kazoo's account-name normalisation (`kzd_accounts:normalize_name`): lowercase, and
/// only letters and digits, so "Acme Corp." matches "acmecorp".
fn normalize_account_name(name: &str) -> String {
    name.chars()
        .flat_map(char::to_lowercase)
        .filter(char::is_ascii_alphanumeric)
        .collect()
}

/// `PUT /v2/user_auth`: `{"credentials": md5("user:password"), "method"?: "md5",
/// and one of "account_id", "phone_number", "account_name"}` → a token of the user's
/// account naming the user as its owner.
async fn user_auth(ops: &Operations, settings: &LoginSettings, data: &Value) -> Result<Issued, Refusal> {
    let credentials = required_text(data, "credentials")?;
    if credentials.len() > 64 {
        return Err(OpsError::field("credentials", "maxLength", "credentials is at most 64 characters").into());
    }
    match optional_text(data, "method")? {
        None | Some("md5") => {}
        Some("sha") => {
            // Kazoo also keeps a sha1 digest; the platform's documents we ingest carry
            // only the md5 one, so sha credentials can never be checked here.
            return Err(OpsError::field("method", "enum", "only md5 credentials can be checked by tally").into());
        }
        Some(other) => {
            return Err(OpsError::field("method", "enum", format!("method must be md5 or sha, not {other:?}")).into())
        }
    }
    let account_id = optional_text(data, "account_id")?;
    let phone_number = optional_text(data, "phone_number")?;
    let account_realm = optional_text(data, "account_realm")?;
    let account_name = optional_text(data, "account_name")?;
    // Kazoo looks the account up by number, then realm, then name.
    let matches_account: Box<dyn Fn(&LoginAccount) -> bool + Send> =
        match (account_id, phone_number, account_realm, account_name) {
            (Some(id), _, _, _) => {
                let id = id.to_owned();
                Box::new(move |account| account.id.as_str() == id)
            }
            (None, Some(number), _, _) => match ops.store().account_of_number(number).await? {
                Some(owner) => Box::new(move |account| account.id == owner),
                None => return Err(Refusal::Credentials),
            },
            (None, None, Some(_), _) => {
                return Err(OpsError::field(
                    "account_realm",
                    "supported",
                    "account realms are not ingested by tally: give account_name, account_id or phone_number",
                )
                .into())
            }
            (None, None, None, Some(name)) => {
                let wanted = normalize_account_name(name);
                Box::new(move |account| normalize_account_name(&account.name) == wanted)
            }
            (None, None, None, None) => {
                return Err(OpsError::field(
                    "account_name",
                    "required",
                    "one of account_name, account_id or phone_number is required",
                )
                .into())
            }
        };
    let users = ops.store().users_by_md5_credentials(credentials).await?;
    let user = users
        .iter()
        .filter(|user| user.active && matches_account(&user.account))
        .find(|user| user.account.standing.access() != AccountAccess::Gone)
        .ok_or(Refusal::Credentials)?;
    issue(ops, settings, &user.account, Some(&user.user_id), TokenOrigin::UserAuth).await
}

/// Issues the token of a login whose credentials matched, unless the account may not
/// act (deleted: 401, disabled: 403). The master account's tokens are super admin, as
/// Kazoo's super-duper admin account.
async fn issue(
    ops: &Operations,
    settings: &LoginSettings,
    account: &LoginAccount,
    owner_id: Option<&str>,
    origin: TokenOrigin,
) -> Result<Issued, Refusal> {
    match account.standing.access() {
        AccountAccess::Active => {}
        AccountAccess::Gone => return Err(Refusal::Credentials),
        AccountAccess::Disabled => return Err(Refusal::Other(OpsError::Forbidden.into())),
    }
    let now = ops.now();
    let lifetime = i64::try_from(settings.token_lifetime.as_secs()).unwrap_or(i64::MAX);
    let token = ops
        .store()
        .issue_login_token(
            NewToken {
                account: &account.id,
                super_admin: account.standing.is_master,
                expires_at: Some(GregorianSeconds(now.0.saturating_add(lifetime))),
                origin,
                owner_id,
                description: None,
            },
            now,
        )
        .await?;
    let reseller_id = match account.standing.is_master {
        true => None,
        false => ops
            .store()
            .account_node(&account.id)
            .await?
            .and_then(|node| node.reseller_id),
    };
    let mut data = json!({
        "account_id": account.id.as_str(),
        "account_name": account.name,
        "is_reseller": account.is_reseller || account.standing.is_master,
    });
    if let Some(owner) = owner_id {
        data["owner_id"] = Value::String(owner.to_owned());
    }
    if let Some(reseller) = reseller_id {
        data["reseller_id"] = Value::String(reseller.to_string());
    }
    Ok(Issued { token, data })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> LoginSettings {
        LoginSettings {
            token_lifetime: Duration::from_secs(3600),
            failures_allowed: 2,
            failure_window: Duration::from_secs(60),
        }
    }

    #[test]
    fn an_address_is_held_after_its_failures_until_the_window_ends() {
        let failures = FailedLogins::default();
        let start = Instant::now();
        let client: Option<IpAddr> = Some([10, 0, 0, 1].into());
        let other: Option<IpAddr> = Some([10, 0, 0, 2].into());
        failures.record(&settings(), client, start);
        assert_eq!(failures.check(&settings(), client, start), Ok(()));
        failures.record(&settings(), client, start);
        assert_eq!(
            failures.check(&settings(), client, start + Duration::from_millis(500)),
            Err(60)
        );
        assert_eq!(failures.check(&settings(), other, start), Ok(()), "per address");
        assert_eq!(
            failures.check(&settings(), client, start + Duration::from_secs(60)),
            Ok(())
        );
        failures.record(&settings(), client, start + Duration::from_secs(61));
        assert_eq!(
            failures.check(&settings(), client, start + Duration::from_secs(61)),
            Ok(()),
            "a new window starts counting afresh"
        );
    }

    #[test]
    fn account_names_match_as_kazoo_normalises_them() {
        assert_eq!(normalize_account_name("Acme Corp."), "acmecorp");
        assert_eq!(normalize_account_name("ACME-corp"), "acmecorp");
        assert_ne!(normalize_account_name("Acme 2"), normalize_account_name("Acme"));
    }
}
