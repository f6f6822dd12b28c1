//! Builders for the domain's unit tests: documents and amounts from short literals.

use super::document::{Map, Number, Value};
use super::money::Money;
use super::plan::BookkeeperRef;
use rust_decimal::Decimal;
use std::str::FromStr;

pub fn num(text: &str) -> Value {
    Value::Number(Number::parse(text).expect("test number"))
}

pub fn text(value: &str) -> Value {
    Value::String(value.to_owned())
}

pub fn map(entries: Vec<(&str, Value)>) -> Map {
    entries
        .into_iter()
        .map(|(key, value)| (key.to_owned(), value))
        .collect()
}

pub fn obj(entries: Vec<(&str, Value)>) -> Value {
    Value::Object(map(entries))
}

pub fn money(text: &str) -> Money {
    Money::new(Decimal::from_str(text).expect("test literal"))
}

/// The bookkeeper `kind` of vendor `res`, with the default id.
pub fn bookkeeper(kind: &str) -> BookkeeperRef {
    BookkeeperRef {
        kind: kind.into(),
        vendor_id: "res".into(),
        id: BookkeeperRef::DEFAULT_ID.into(),
    }
}
