//! `serde_json::Value` → domain [`Value`], and domain documents and amounts → JSON
//! text, numbers kept as their exact text.
//!
//! serde_json is built with `arbitrary_precision`, so a number's text is what the
//! client wrote; it becomes a domain [`Number`] without ever being a float.

use crate::domain::document::{Map, Number, Value};
use crate::domain::Money;
use serde::{Serialize, Serializer};

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

/// Serializes money as a JSON number with its exact digits (`pricing.md` §12.6).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Amount(pub Money);

impl Serialize for Amount {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serialize_number_text(&self.0.to_string(), serializer)
    }
}

/// Serializes a domain document (or a part of one) as JSON without building a
/// `serde_json::Value` first.
#[derive(Debug, Clone, Copy)]
pub enum Document<'a> {
    Map(&'a Map),
    Value(&'a Value),
}

impl Serialize for Document<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            Document::Map(map) => serialize_map(map, serializer),
            Document::Value(value) => match value {
                Value::Null => serializer.serialize_unit(),
                Value::Bool(flag) => serializer.serialize_bool(*flag),
                Value::Number(number) => serialize_number_text(number.as_text(), serializer),
                Value::String(text) => serializer.serialize_str(text),
                Value::Array(items) => serializer.collect_seq(items.iter().map(Document::Value)),
                Value::Object(map) => serialize_map(map, serializer),
            },
        }
    }
}

fn serialize_map<S: Serializer>(map: &Map, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.collect_map(map.iter().map(|(key, value)| (key, Document::Value(value))))
}

/// With `arbitrary_precision`, a `serde_json::Number` serializes its text verbatim.
fn serialize_number_text<S: Serializer>(text: &str, serializer: S) -> Result<S::Ok, S::Error> {
    match text.parse::<serde_json::Number>() {
        Ok(number) => number.serialize(serializer),
        Err(_) => serializer.serialize_str(text),
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
        let domain = from_json(&parsed);
        assert_eq!(
            serde_json::to_string(&Document::Value(&domain)).expect("serialises"),
            text
        );
    }
}
