//! The idempotency key of a delivery: the `Idempotency-Key` header.
//!
//! A delivery whose response is lost (timeout, connection closed after the
//! bookkeeper recorded the charge) is retried; the bookkeeper recognises the retry by
//! this key and must not charge twice. So the key must be the same for the same
//! delivery in every attempt and in every process (it is recomputed from stored
//! state, never stored), and different for any other delivery.
//!
//! It is derived from the account id and the delivered body: the invoice content,
//! the bookkeeper identity and the id of the audit log being delivered. The audit log
//! id matters: an account going A → B → A → B delivers "B annotated against A" twice
//! with identical invoice content, and the second one is a real change the bookkeeper
//! must apply, not a duplicate. Between retries of one delivery that id is stable
//! (the latest pending audit log, `sync-and-bookkeepers.md` §5.4), and a new change
//! in between creates a new audit log and a new invoice content anyway.
//!
//! The content is hashed in a canonical form so that equal JSON gives equal keys
//! whatever the member order or number spelling: object keys sorted by their UTF-8
//! bytes, no whitespace, strings escaped as serde_json escapes them, numbers as their
//! exact decimal value (`29.990`, `2.999e1` and `29.99` are one number; `-0` is `0`).
//! This module is pure; it must not read clocks or randomness.

use std::fmt;

use rust_decimal::Decimal;
use serde_json::{Number, Value};
use sha2::{Digest, Sha256};

use crate::domain::AccountId;

/// Bumped if the canonical form ever changes, so old and new keys cannot collide.
const DOMAIN: &str = "tally/bookkeeper-delivery/v1";

/// A lowercase hex SHA-256: 64 characters, safe in an HTTP header.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct IdempotencyKey(String);

impl IdempotencyKey {
    /// `sha256(DOMAIN ‖ 0 ‖ account id ‖ 0 ‖ canonical(content))` in hex.
    pub fn derive(account_id: &AccountId, content: &Value) -> IdempotencyKey {
        let mut hasher = Sha256::new();
        hasher.update(DOMAIN.as_bytes());
        hasher.update([0u8]);
        hasher.update(account_id.as_str().as_bytes());
        hasher.update([0u8]);
        hasher.update(canonical_json(content).as_bytes());
        IdempotencyKey(hex::encode(hasher.finalize()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for IdempotencyKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The canonical text of a JSON value (see the module docs).
pub fn canonical_json(value: &Value) -> String {
    let mut out = String::new();
    write_canonical(value, &mut out);
    out
}

fn write_canonical(value: &Value, out: &mut String) {
    match value {
        Value::Null => out.push_str("null"),
        Value::Bool(true) => out.push_str("true"),
        Value::Bool(false) => out.push_str("false"),
        Value::Number(number) => out.push_str(&canonical_number(number)),
        Value::String(text) => write_string(text, out),
        Value::Array(elements) => {
            out.push('[');
            for (index, element) in elements.iter().enumerate() {
                if index > 0 {
                    out.push(',');
                }
                write_canonical(element, out);
            }
            out.push(']');
        }
        Value::Object(members) => {
            // Sorted here rather than trusting the map's order: serde_json's
            // `preserve_order` feature could be switched on by any dependency.
            let mut sorted: Vec<(&String, &Value)> = members.iter().collect();
            sorted.sort_by(|(left, _), (right, _)| left.as_bytes().cmp(right.as_bytes()));
            out.push('{');
            for (index, (key, member)) in sorted.into_iter().enumerate() {
                if index > 0 {
                    out.push(',');
                }
                write_string(key, out);
                out.push(':');
                write_canonical(member, out);
            }
            out.push('}');
        }
    }
}

fn write_string(text: &str, out: &mut String) {
    out.push_str(&serde_json::to_string(text).expect("a string always serialises"));
}

/// The exact value of a JSON number as normalised decimal text; numbers outside the
/// 28-digit decimal range (never money) keep the text serde_json holds for them.
fn canonical_number(number: &Number) -> String {
    match exact_decimal(number) {
        Some(value) => value.normalize().to_string(),
        None => number.to_string(),
    }
}

/// The exact decimal value of a JSON number (serde_json keeps the text with
/// `arbitrary_precision`), or `None` when it does not fit a `Decimal` exactly.
pub(crate) fn exact_decimal(number: &Number) -> Option<Decimal> {
    let text = number.to_string();
    if text.contains(['e', 'E']) {
        return Decimal::from_scientific(&text).ok();
    }
    Decimal::from_str_exact(&text).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parse(text: &str) -> Value {
        serde_json::from_str(text).expect("test JSON is valid")
    }

    fn account(id: &str) -> AccountId {
        AccountId::parse(id).expect("valid account id")
    }

    #[test]
    fn canonical_form_sorts_keys_and_normalises_numbers() {
        let table = [
            (r#"{"b": 1, "a": [true, null, "x"]}"#, r#"{"a":[true,null,"x"],"b":1}"#),
            (
                r#"[29.990, 2.999e1, 29.99, -0, 0.0, 1E2, 100]"#,
                r#"[29.99,29.99,29.99,0,0,100,100]"#,
            ),
            (r#"[0.100000000000000000001]"#, r#"[0.100000000000000000001]"#),
            (
                r#"["é\n\"", {"Z": 1, "a": 2, "é": 3}]"#,
                r#"["é\n\"",{"Z":1,"a":2,"é":3}]"#,
            ),
            (r#"[1e400]"#, r#"[1e+400]"#),
            (r#"{}"#, r#"{}"#),
        ];
        for (input, expected) in table {
            assert_eq!(canonical_json(&parse(input)), expected, "canonical form of {input}");
        }
    }

    #[test]
    fn the_same_content_gives_the_same_key_whatever_the_spelling() {
        let one = parse(r#"{"items": [{"rate": 29.990, "billable": 4}], "summary": {"recurring": 119.96}}"#);
        let other = parse(r#"{"summary": {"recurring": 119.960}, "items": [{"billable": 4.0, "rate": 29.99}]}"#);
        let id = account("a1");
        assert_eq!(IdempotencyKey::derive(&id, &one), IdempotencyKey::derive(&id, &other));
    }

    #[test]
    fn different_content_or_account_gives_a_different_key() {
        let base = json!({"items": [{"rate": parse("29.99"), "billable": 4}], "sync_id": "s1"});
        let id = account("a1");
        let key = IdempotencyKey::derive(&id, &base);
        let variants = [
            json!({"items": [{"rate": parse("29.98"), "billable": 4}], "sync_id": "s1"}),
            json!({"items": [{"rate": parse("29.99"), "billable": 5}], "sync_id": "s1"}),
            json!({"items": [{"rate": parse("29.99"), "billable": 4}], "sync_id": "s2"}),
            json!({"items": [{"rate": parse("29.99"), "billable": "4"}], "sync_id": "s1"}),
            json!({"items": [], "sync_id": "s1"}),
        ];
        for variant in variants {
            assert_ne!(IdempotencyKey::derive(&id, &variant), key, "{variant}");
        }
        assert_ne!(IdempotencyKey::derive(&account("a2"), &base), key);
    }

    #[test]
    fn the_key_is_stable_across_releases() {
        // Computed outside Rust: printf 'tally/bookkeeper-delivery/v1\0a1\0{"a":1.5,"b":[]}' | sha256sum
        // If this changes, deliveries in flight during an upgrade would be charged twice.
        let key = IdempotencyKey::derive(&account("a1"), &parse(r#"{"b": [], "a": 1.50}"#));
        assert_eq!(
            key.as_str(),
            "ef30281575240849d9b3940e9eca4bfbf5741bca70ffe0392ea85fd670382368"
        );
        assert_eq!(key.as_str().len(), 64);
    }
}
