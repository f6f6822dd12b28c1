//! The body of one delivery, as the HTTP protocol sends it (`sync-and-bookkeepers.md`
//! §7), taken already built.
//!
//! The body is rendered from the domain invoice by `crate::wire::bookkeeper` (legacy
//! `items`, `bookkeeper`, and the `invoice` without its `plan`); this module only
//! serialises it once, checks its envelope, and keeps the exact bytes so that every
//! attempt of a delivery sends the same bytes and derives the same idempotency key.
//! It must not build or change invoice content: one implementation of the legacy
//! item mapping is enough, and it lives with the invoice wire types.

use std::fmt;

use serde::Serialize;
use serde_json::{Map, Value};

use super::{BookkeeperIdentity, BookkeeperType, SyncId};
use crate::domain::AccountId;

/// The bookkeeper id Kazoo assumes when a plan names none (`plans.md` §5.3).
pub const DEFAULT_BOOKKEEPER_ID: &str = "default_bookkeeper";

/// A delivery body: its exact bytes (member order as rendered, numbers as their
/// exact text) and the same body parsed, for the idempotency key and for adapters
/// that read members (the local bookkeeper, a future Braintree-like adapter).
#[derive(Debug, Clone, PartialEq)]
pub struct SyncBody {
    bytes: Vec<u8>,
    /// Always an object (checked by [`parse`]).
    value: Value,
}

impl SyncBody {
    /// The bytes posted, exactly as rendered.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// The body as a JSON value (an object).
    pub fn as_value(&self) -> &Value {
        &self.value
    }

    /// The `invoice` member (checked to be an object).
    pub fn invoice(&self) -> &Map<String, Value> {
        self.value
            .get("invoice")
            .and_then(Value::as_object)
            .expect("checked by body::parse: the body has an invoice object")
    }
}

/// A body that cannot be delivered: names the account, the JSON path and the problem.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct InvalidDelivery {
    /// The account, when known, so one bad invoice is easy to find in a batch.
    pub account_id: Option<String>,
    /// JSON path such as `body.bookkeeper.vendor_id`.
    pub path: String,
    pub problem: String,
}

impl InvalidDelivery {
    pub fn new(path: impl Into<String>, problem: impl Into<String>) -> InvalidDelivery {
        InvalidDelivery {
            account_id: None,
            path: path.into(),
            problem: problem.into(),
        }
    }

    fn for_account(mut self, account_id: &AccountId) -> InvalidDelivery {
        self.account_id = Some(account_id.to_string());
        self
    }
}

impl fmt::Display for InvalidDelivery {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.account_id {
            Some(account_id) => write!(f, "account {account_id}: {}: {}", self.path, self.problem),
            None => write!(f, "{}: {}", self.path, self.problem),
        }
    }
}

/// Serialises `body` once and checks the envelope of §7: an object whose
/// `account_id` and `sync_id` are the given ones, with an `items` object, a
/// `bookkeeper` object (from which the identity is read: one source of truth for
/// where the invoice goes) and an `invoice` object without `plan`.
pub(super) fn parse(
    account_id: &AccountId,
    sync_id: &SyncId,
    body: &impl Serialize,
) -> Result<(BookkeeperIdentity, SyncBody), InvalidDelivery> {
    let bytes = serde_json::to_vec(body)
        .map_err(|error| InvalidDelivery::new("body", error.to_string()).for_account(account_id))?;
    parse_bytes(account_id, sync_id, bytes)
}

/// The same checks for a body stored as bytes (a frozen delivery being retried); the
/// bytes are kept exactly.
pub(super) fn parse_bytes(
    account_id: &AccountId,
    sync_id: &SyncId,
    bytes: Vec<u8>,
) -> Result<(BookkeeperIdentity, SyncBody), InvalidDelivery> {
    parse_unscoped(account_id, sync_id, bytes).map_err(|error| error.for_account(account_id))
}

fn parse_unscoped(
    account_id: &AccountId,
    sync_id: &SyncId,
    bytes: Vec<u8>,
) -> Result<(BookkeeperIdentity, SyncBody), InvalidDelivery> {
    // Parsed from the bytes (not `to_value`) so the value is exactly what is sent.
    let value: Value =
        serde_json::from_slice(&bytes).map_err(|error| InvalidDelivery::new("body", error.to_string()))?;
    let members = match &value {
        Value::Object(members) => members,
        other => {
            return Err(InvalidDelivery::new(
                "body",
                format!("expected an object, found {}", json_kind(other)),
            ))
        }
    };
    expect_string_equal(members, "account_id", account_id.as_str())?;
    expect_string_equal(members, "sync_id", sync_id.as_str())?;
    required_object(members, "items")?;
    let invoice = required_object(members, "invoice")?;
    if invoice.contains_key("plan") {
        return Err(InvalidDelivery::new(
            "body.invoice.plan",
            "bookkeepers never receive the merged plan; render the body with the delivery wire type",
        ));
    }
    let identity = read_identity(required_object(members, "bookkeeper")?)?;
    Ok((identity, SyncBody { bytes, value }))
}

fn read_identity(bookkeeper: &Map<String, Value>) -> Result<BookkeeperIdentity, InvalidDelivery> {
    let path = "body.bookkeeper";
    // Empty or absent id and type take the defaults of the bookkeeper hash
    // (`plans.md` §5.3); the vendor has no default we could know here.
    let id = optional_string(bookkeeper, "id", path)?.unwrap_or(DEFAULT_BOOKKEEPER_ID);
    let kind = optional_string(bookkeeper, "type", path)?.unwrap_or("default");
    let vendor_id = optional_string(bookkeeper, "vendor_id", path)?
        .ok_or_else(|| InvalidDelivery::new(format!("{path}.vendor_id"), "missing or empty"))?;
    Ok(BookkeeperIdentity {
        id: id.to_owned(),
        kind: BookkeeperType::parse(kind),
        vendor_id: vendor_id.to_owned(),
    })
}

fn expect_string_equal(members: &Map<String, Value>, key: &str, expected: &str) -> Result<(), InvalidDelivery> {
    match members.get(key) {
        Some(Value::String(text)) if text == expected => Ok(()),
        Some(Value::String(text)) => Err(InvalidDelivery::new(
            format!("body.{key}"),
            format!("is `{text}` but the delivery is for `{expected}`"),
        )),
        Some(other) => Err(InvalidDelivery::new(
            format!("body.{key}"),
            format!("expected a string, found {}", json_kind(other)),
        )),
        None => Err(InvalidDelivery::new(format!("body.{key}"), "missing")),
    }
}

fn required_object<'m>(members: &'m Map<String, Value>, key: &str) -> Result<&'m Map<String, Value>, InvalidDelivery> {
    match members.get(key) {
        Some(Value::Object(object)) => Ok(object),
        Some(other) => Err(InvalidDelivery::new(
            format!("body.{key}"),
            format!("expected an object, found {}", json_kind(other)),
        )),
        None => Err(InvalidDelivery::new(format!("body.{key}"), "missing")),
    }
}

/// A non-empty string, or `None` when absent, null or empty.
fn optional_string<'m>(
    members: &'m Map<String, Value>,
    key: &str,
    path: &str,
) -> Result<Option<&'m str>, InvalidDelivery> {
    match members.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(text)) if text.is_empty() => Ok(None),
        Some(Value::String(text)) => Ok(Some(text)),
        Some(other) => Err(InvalidDelivery::new(
            format!("{path}.{key}"),
            format!("expected a string, found {}", json_kind(other)),
        )),
    }
}

fn json_kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const ACCOUNT: &str = "a0000000000000000000000000000001";

    fn account() -> AccountId {
        AccountId::parse(ACCOUNT).expect("valid account id")
    }

    fn sync_id() -> SyncId {
        SyncId::parse("202611-audit-1").expect("valid sync id")
    }

    fn body(bookkeeper: Value) -> Value {
        json!({
            "account_id": ACCOUNT, "sync_id": "202611-audit-1", "items": {},
            "bookkeeper": bookkeeper,
            "invoice": {"items": [], "activation_charges": [], "taxes": [], "summary": {"today": 0, "recurring": 0}}
        })
    }

    /// A rendered body with members in §7 order and numbers whose text a float would lose.
    #[derive(Serialize)]
    struct Rendered {
        account_id: &'static str,
        sync_id: &'static str,
        items: Value,
        bookkeeper: Value,
        invoice: Value,
    }

    #[test]
    fn the_exact_rendered_bytes_are_kept_and_the_identity_is_read_from_the_body() {
        let rate: Value = serde_json::from_str("0.100000000000000000001").expect("valid number");
        let rendered = Rendered {
            account_id: ACCOUNT,
            sync_id: "202611-audit-1",
            items: json!({"devices": {"sip_device": {"rate": rate.clone()}}}),
            bookkeeper: json!({"type": "kz_bookkeeper_http", "vendor_id": "reseller1", "id": "bk1"}),
            invoice: json!({"items": [{"rate": rate}]}),
        };
        let (identity, body) = parse(&account(), &sync_id(), &rendered).expect("valid body");
        let (stored_identity, stored) =
            parse_bytes(&account(), &sync_id(), body.as_bytes().to_vec()).expect("stored body is valid");
        assert_eq!(
            (&stored_identity, &stored),
            (&identity, &body),
            "a stored body reads back identically"
        );
        let text = std::str::from_utf8(body.as_bytes()).expect("JSON is UTF-8");
        assert!(text.starts_with(&format!(
            r#"{{"account_id":"{ACCOUNT}","sync_id":"202611-audit-1","items":"#
        )));
        assert!(text.contains("0.100000000000000000001"), "{text}");
        assert_eq!(identity.kind, BookkeeperType::Http);
        assert_eq!(identity.id, "bk1");
        assert_eq!(identity.vendor_id, "reseller1");
        assert_eq!(
            body.invoice()["items"][0]["rate"].to_string(),
            "0.100000000000000000001"
        );
    }

    #[test]
    fn missing_type_and_id_take_the_bookkeeper_hash_defaults() {
        let (identity, _) = parse(&account(), &sync_id(), &body(json!({"id": "", "vendor_id": "v"}))).expect("valid");
        assert_eq!(identity.kind, BookkeeperType::Default);
        assert_eq!(identity.id, DEFAULT_BOOKKEEPER_ID);
    }

    #[test]
    fn bad_bodies_name_the_account_and_the_json_path() {
        let good = body(json!({"type": "http", "vendor_id": "v"}));
        let with = |path: &[&str], replacement: Value| {
            let mut changed = good.clone();
            let mut target = &mut changed;
            for key in &path[..path.len() - 1] {
                target = &mut target[*key];
            }
            match replacement {
                Value::Null => {
                    target
                        .as_object_mut()
                        .map(|members| members.remove(path[path.len() - 1]));
                }
                value => target[path[path.len() - 1]] = value,
            }
            changed
        };
        let table = [
            (json!([]), "body", "expected an object, found an array"),
            (
                with(&["account_id"], json!("someone-else")),
                "body.account_id",
                "is `someone-else` but the delivery is for `a0000000000000000000000000000001`",
            ),
            (with(&["sync_id"], Value::Null), "body.sync_id", "missing"),
            (
                with(&["items"], json!([])),
                "body.items",
                "expected an object, found an array",
            ),
            (
                with(&["bookkeeper", "vendor_id"], Value::Null),
                "body.bookkeeper.vendor_id",
                "missing or empty",
            ),
            (
                with(&["bookkeeper", "type"], json!(7)),
                "body.bookkeeper.type",
                "expected a string, found a number",
            ),
            (with(&["bookkeeper"], Value::Null), "body.bookkeeper", "missing"),
            (
                with(&["invoice", "plan"], json!({})),
                "body.invoice.plan",
                "bookkeepers never receive the merged plan; render the body with the delivery wire type",
            ),
        ];
        let not_json = parse_bytes(&account(), &sync_id(), b"{\"account_id\":".to_vec()).expect_err("truncated");
        assert_eq!(not_json.path, "body");
        assert!(not_json.problem.contains("EOF"), "{}", not_json.problem);
        for (candidate, path, problem) in table {
            let error = parse(&account(), &sync_id(), &candidate).expect_err("invalid body");
            assert_eq!(
                (error.path.as_str(), error.problem.as_str()),
                (path, problem),
                "for {candidate}"
            );
            assert_eq!(error.account_id.as_deref(), Some(ACCOUNT));
            assert!(error.to_string().starts_with(&format!("account {ACCOUNT}: ")));
        }
        assert!(
            parse(&account(), &sync_id(), &good).is_ok(),
            "the unmodified body is valid"
        );
    }
}
