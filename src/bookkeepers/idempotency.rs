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
        let mut canonical = Vec::with_capacity(4096);
        write_canonical(content, &mut canonical);
        hasher.update(&canonical);
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
    let mut out = Vec::new();
    write_canonical(value, &mut out);
    String::from_utf8(out).expect("canonical JSON is built from UTF-8 pieces")
}

fn write_canonical(value: &Value, out: &mut Vec<u8>) {
    match value {
        Value::Null => out.extend_from_slice(b"null"),
        Value::Bool(true) => out.extend_from_slice(b"true"),
        Value::Bool(false) => out.extend_from_slice(b"false"),
        Value::Number(number) => write_number(number, out),
        Value::String(text) => write_string(text, out),
        Value::Array(elements) => {
            out.push(b'[');
            for (index, element) in elements.iter().enumerate() {
                if index > 0 {
                    out.push(b',');
                }
                write_canonical(element, out);
            }
            out.push(b']');
        }
        Value::Object(members) => {
            // Sorted here rather than trusting the map's order: serde_json's
            // `preserve_order` feature could be switched on by any dependency.
            let mut sorted: Vec<(&String, &Value)> = members.iter().collect();
            sorted.sort_unstable_by(|(left, _), (right, _)| left.as_bytes().cmp(right.as_bytes()));
            out.push(b'{');
            for (index, (key, member)) in sorted.into_iter().enumerate() {
                if index > 0 {
                    out.push(b',');
                }
                write_string(key, out);
                out.push(b':');
                write_canonical(member, out);
            }
            out.push(b'}');
        }
    }
}

fn write_string(text: &str, out: &mut Vec<u8>) {
    serde_json::to_writer(&mut *out, text).expect("writing a string to a Vec cannot fail");
}

/// The exact value of a JSON number as normalised decimal text; numbers outside the
/// 28-digit decimal range (never money) keep the text serde_json holds for them.
fn write_number(number: &Number, out: &mut Vec<u8>) {
    let text = number.to_string();
    // Most numbers are already written canonically (`4`, `29.99`, `-1.5`); only the
    // others pay for a decimal round trip.
    if is_canonical_number(&text) {
        out.extend_from_slice(text.as_bytes());
        return;
    }
    match exact_decimal(number) {
        Some(value) => out.extend_from_slice(value.normalize().to_string().as_bytes()),
        None => out.extend_from_slice(text.as_bytes()),
    }
}

/// `-?(0|[1-9][0-9]*)(\.[0-9]*[1-9])?`, except `-0`: the form `Decimal::normalize`
/// prints, with at most 28 digits so that it is also a value `Decimal` holds exactly.
fn is_canonical_number(text: &str) -> bool {
    let unsigned = text.strip_prefix('-').unwrap_or(text);
    let (whole, fraction) = match unsigned.split_once('.') {
        Some((whole, fraction)) => (whole, Some(fraction)),
        None => (unsigned, None),
    };
    let whole_ok = match whole.as_bytes() {
        [b'0'] => true,
        [first, rest @ ..] => (b'1'..=b'9').contains(first) && rest.iter().all(u8::is_ascii_digit),
        [] => false,
    };
    let fraction_ok = match fraction {
        None => true,
        Some(digits) => {
            !digits.is_empty() && digits.bytes().all(|digit| digit.is_ascii_digit()) && !digits.ends_with('0')
        }
    };
    let digits = whole.len() + fraction.map_or(0, str::len);
    let negative_zero = text.starts_with('-') && whole == "0" && fraction.is_none();
    whole_ok && fraction_ok && digits <= 28 && !negative_zero
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
    fn the_fast_path_accepts_exactly_what_normalisation_would_print() {
        let table = [
            ("0", true),
            ("4", true),
            ("29.99", true),
            ("-1.5", true),
            ("0.0035", true),
            ("-0", false),
            ("-0.0", false),
            ("29.990", false),
            ("1.0", false),
            ("007", false),
            ("1e2", false),
            ("1.", false),
            (".5", false),
            ("", false),
            ("12345678901234567890123456789", false),
        ];
        for (text, expected) in table {
            assert_eq!(is_canonical_number(text), expected, "{text:?}");
            if expected {
                let number: Number = serde_json::from_str(text).expect("valid number");
                let normalised = exact_decimal(&number).map(|value| value.normalize().to_string());
                assert_eq!(
                    normalised.as_deref(),
                    Some(text),
                    "the fast path agrees with normalisation"
                );
            }
        }
    }

    proptest::proptest! {
        #[test]
        fn every_json_decimal_is_written_as_its_normalised_value(text in "-?(0|[1-9][0-9]{0,13})(\\.[0-9]{1,13})?") {
            let number: Number = serde_json::from_str(&text).expect("the pattern only makes JSON numbers");
            let mut written = Vec::new();
            write_number(&number, &mut written);
            let expected = Decimal::from_str_exact(&text).expect("fits a decimal").normalize().to_string();
            proptest::prop_assert_eq!(String::from_utf8(written).expect("UTF-8"), expected);
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
