//! Helpers shared by the integration tests.

use rust_decimal::Decimal;
use serde_json::Value;
use std::str::FromStr;

/// Reads a JSON number or decimal string as an exact decimal (`"7.5"` equals `7.50`).
pub fn decimal(value: &Value) -> Option<Decimal> {
    match value {
        Value::Number(number) => {
            let text = number.to_string();
            Decimal::from_str(&text)
                .or_else(|_| Decimal::from_scientific(&text))
                .ok()
        }
        Value::String(text) => Decimal::from_str(text).ok(),
        _ => None,
    }
}

/// Compares two JSON values, numbers (and numeric strings) as decimals; on a mismatch
/// returns the path of the first difference.
pub fn same_json(expected: &Value, actual: &Value, path: &str) -> Result<(), String> {
    if let (Some(left), Some(right)) = (decimal(expected), decimal(actual)) {
        if matches!(expected, Value::Number(_) | Value::String(_))
            && matches!(actual, Value::Number(_) | Value::String(_))
        {
            return if left == right {
                Ok(())
            } else {
                Err(format!("{path}: expected {expected}, got {actual}"))
            };
        }
    }
    match (expected, actual) {
        (Value::Object(left), Value::Object(right)) => {
            for key in left.keys().chain(right.keys()) {
                let child = format!("{path}.{key}");
                match (left.get(key), right.get(key)) {
                    (Some(l), Some(r)) => same_json(l, r, &child)?,
                    (Some(l), None) => return Err(format!("{child}: expected {l}, missing")),
                    (None, Some(r)) => return Err(format!("{child}: unexpected {r}")),
                    (None, None) => unreachable!("key comes from one side"),
                }
            }
            Ok(())
        }
        (Value::Array(left), Value::Array(right)) => {
            if left.len() != right.len() {
                return Err(format!("{path}: expected {} elements, got {}", left.len(), right.len()));
            }
            for (index, (l, r)) in left.iter().zip(right).enumerate() {
                same_json(l, r, &format!("{path}[{index}]"))?;
            }
            Ok(())
        }
        _ if expected == actual => Ok(()),
        _ => Err(format!("{path}: expected {expected}, got {actual}")),
    }
}
