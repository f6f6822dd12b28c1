//! `serde_json::Value` ⇄ domain [`Value`], numbers kept as their exact text.
//!
//! serde_json is built with `arbitrary_precision`, so a number's text is what the
//! client wrote; it becomes a domain [`Number`] without ever being a float.

use crate::domain::document::{Map, Number, Value};
use crate::domain::Money;

/// Converts a parsed JSON value; a number whose text is not a decimal cannot come out
/// of serde_json, but is mapped to a string rather than trusted blindly.
pub fn from_json(value: &serde_json::Value) -> Value {
    match value {
        serde_json::Value::Null => Value::Null,
        serde_json::Value::Bool(flag) => Value::Bool(*flag),
        serde_json::Value::Number(number) => {
            let text = number.to_string();
            match Number::parse(&text) {
                Some(number) => Value::Number(number),
                None => Value::String(text),
            }
        }
        serde_json::Value::String(text) => Value::String(text.clone()),
        serde_json::Value::Array(items) => Value::Array(items.iter().map(from_json).collect()),
        serde_json::Value::Object(map) => Value::Object(map_from_json(map)),
    }
}

pub fn map_from_json(map: &serde_json::Map<String, serde_json::Value>) -> Map {
    map.iter().map(|(key, value)| (key.clone(), from_json(value))).collect()
}

pub fn to_json(value: &Value) -> serde_json::Value {
    match value {
        Value::Null => serde_json::Value::Null,
        Value::Bool(flag) => serde_json::Value::Bool(*flag),
        Value::Number(number) => number_text(number.as_text()),
        Value::String(text) => serde_json::Value::String(text.clone()),
        Value::Array(items) => serde_json::Value::Array(items.iter().map(to_json).collect()),
        Value::Object(map) => serde_json::Value::Object(map_to_json(map)),
    }
}

pub fn map_to_json(map: &Map) -> serde_json::Map<String, serde_json::Value> {
    map.iter().map(|(key, value)| (key.clone(), to_json(value))).collect()
}

/// Money as a plain JSON number in its shortest exact form (`pricing.md` §12.6).
pub fn money(amount: Money) -> serde_json::Value {
    number_text(&amount.to_string())
}

fn number_text(text: &str) -> serde_json::Value {
    match text.parse::<serde_json::Number>() {
        Ok(number) => serde_json::Value::Number(number),
        // Unreachable for texts made by `Number::parse` or `Decimal`; keep the value
        // visible rather than lose it.
        Err(_) => serde_json::Value::String(text.to_owned()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_round_trip_with_their_exact_text() {
        let text =
            r#"{"big":123456789012345678901234567890.5,"huge":1e+400,"list":[1,2.50],"rate":16.58,"tiny":0.0035}"#;
        let parsed: serde_json::Value = serde_json::from_str(text).expect("valid JSON");
        let round_trip = to_json(&from_json(&parsed));
        assert_eq!(serde_json::to_string(&round_trip).expect("serialises"), text);
    }
}
