//! Schemaless documents: the shape of service plans and overrides.
//!
//! Plans carry fields we do not price (`applications`, `limits`, unknown keys...) and
//! the merge rules of `plans.md` §6-§7 are defined leaf by leaf over whole documents,
//! so plans stay documents until one item plan is priced. This module owns that
//! document type, the JSON-like [`Value`], with exact numbers, plus the two document
//! operations every other part relies on: the deep merge and the removal of empty
//! objects and nulls. It knows nothing of JSON text: `crate::json` converts at the edge.

use rust_decimal::prelude::ToPrimitive;
use rust_decimal::{Decimal, RoundingStrategy};
use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

/// An object: keys sorted, so every walk and every output is deterministic.
pub type Map = BTreeMap<String, Value>;

/// A JSON-like value whose numbers keep their exact text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    Null,
    Bool(bool),
    Number(Number),
    String(String),
    Array(Vec<Value>),
    Object(Map),
}

/// A number exactly as it was written (`16.58`, `1e3`, `-2`), never a float.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Number(String);

impl Number {
    /// Wraps the text of a JSON number (any size: range is checked where it is used);
    /// `None` when the text is not a JSON number.
    pub fn parse(text: &str) -> Option<Number> {
        is_json_number(text).then(|| Number(text.to_owned()))
    }

    pub fn from_decimal(value: Decimal) -> Number {
        Number(value.normalize().to_string())
    }

    pub fn from_integer(value: i64) -> Number {
        Number(value.to_string())
    }

    pub fn as_text(&self) -> &str {
        &self.0
    }

    /// The exact value, or `None` when it does not fit a 96-bit decimal.
    pub fn as_decimal(&self) -> Option<Decimal> {
        parse_decimal_text(&self.0)
    }
}

impl fmt::Display for Number {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The JSON number grammar: `-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?`.
fn is_json_number(text: &str) -> bool {
    let digits = |part: &str| !part.is_empty() && part.bytes().all(|byte| byte.is_ascii_digit());
    let unsigned = text.strip_prefix('-').unwrap_or(text);
    let (mantissa, exponent) = match unsigned.find(['e', 'E']) {
        Some(position) => (&unsigned[..position], Some(&unsigned[position + 1..])),
        None => (unsigned, None),
    };
    let (whole, fraction) = match mantissa.split_once('.') {
        Some((whole, fraction)) => (whole, Some(fraction)),
        None => (mantissa, None),
    };
    let whole_ok = digits(whole) && (whole == "0" || !whole.starts_with('0'));
    let fraction_ok = fraction.is_none_or(digits);
    let exponent_ok = exponent.is_none_or(|exponent| digits(exponent.strip_prefix(['+', '-']).unwrap_or(exponent)));
    whole_ok && fraction_ok && exponent_ok
}

/// Reads decimal text in plain (`2.5`) or scientific (`25e-1`) notation.
fn parse_decimal_text(text: &str) -> Option<Decimal> {
    let text = text.trim();
    if text.is_empty() || text.starts_with('+') {
        return None;
    }
    if text.contains(['e', 'E']) {
        return Decimal::from_scientific(text).ok();
    }
    // `Decimal::from_str` also accepts `_` separators and a leading `.`; JSON-like text
    // allows neither, so check the shape first.
    let unsigned = text.strip_prefix('-').unwrap_or(text);
    let (whole, fraction) = match unsigned.split_once('.') {
        Some((whole, fraction)) => (whole, Some(fraction)),
        None => (unsigned, None),
    };
    let digits = |part: &str| !part.is_empty() && part.bytes().all(|byte| byte.is_ascii_digit());
    if !digits(whole) || fraction.is_some_and(|fraction| !digits(fraction)) {
        return None;
    }
    Decimal::from_str(text).ok()
}

/// Why a value could not be read as the kind a field expects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Coercion {
    /// The value has the wrong kind (`expected a number, found "abc"`).
    WrongKind { expected: &'static str },
    /// A number that does not fit the field's range.
    OutOfRange { expected: &'static str },
}

impl Value {
    pub fn object(map: Map) -> Value {
        Value::Object(map)
    }

    pub fn as_object(&self) -> Option<&Map> {
        match self {
            Value::Object(map) => Some(map),
            _ => None,
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::String(text) => Some(text),
            _ => None,
        }
    }

    pub fn is_empty_object(&self) -> bool {
        matches!(self, Value::Object(map) if map.is_empty())
    }

    /// A short description for error messages: the kind, and the value when it is short.
    pub fn describe(&self) -> String {
        match self {
            Value::Null => "null".to_owned(),
            Value::Bool(flag) => flag.to_string(),
            Value::Number(number) => number.to_string(),
            Value::String(text) if text.chars().count() <= 40 => format!("{text:?}"),
            Value::String(_) => "a long string".to_owned(),
            Value::Array(_) => "an array".to_owned(),
            Value::Object(_) => "an object".to_owned(),
        }
    }

    /// `plans.md` §1 "number": a JSON number or a string holding an integer or decimal.
    pub fn to_decimal(&self) -> Result<Decimal, Coercion> {
        const EXPECTED: &str = "a number";
        let text = match self {
            Value::Number(number) => number.as_text(),
            Value::String(text) => text.as_str(),
            _ => return Err(Coercion::WrongKind { expected: EXPECTED }),
        };
        match parse_decimal_text(text) {
            Some(value) => Ok(value),
            None if matches!(self, Value::Number(_)) => Err(Coercion::OutOfRange { expected: EXPECTED }),
            None => Err(Coercion::WrongKind { expected: EXPECTED }),
        }
    }

    /// `plans.md` §1 "integer": numbers and numeric strings, fractions rounded half away
    /// from zero (2.5 → 3, −2.5 → −3).
    pub fn to_integer(&self) -> Result<i64, Coercion> {
        const EXPECTED: &str = "an integer";
        let exact = self.to_decimal().map_err(|coercion| match coercion {
            Coercion::WrongKind { .. } => Coercion::WrongKind { expected: EXPECTED },
            Coercion::OutOfRange { .. } => Coercion::OutOfRange { expected: EXPECTED },
        })?;
        exact
            .round_dp_with_strategy(0, RoundingStrategy::MidpointAwayFromZero)
            .to_i64()
            .ok_or(Coercion::OutOfRange { expected: EXPECTED })
    }

    /// `plans.md` §1 "boolean": `true`/`false` or the strings `"true"`/`"false"`.
    pub fn to_bool(&self) -> Result<bool, Coercion> {
        match self {
            Value::Bool(flag) => Ok(*flag),
            Value::String(text) if text == "true" => Ok(true),
            Value::String(text) if text == "false" => Ok(false),
            _ => Err(Coercion::WrongKind { expected: "a boolean" }),
        }
    }
}

impl fmt::Display for Coercion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Coercion::WrongKind { expected } => write!(f, "expected {expected}"),
            Coercion::OutOfRange { expected } => write!(f, "expected {expected} in range"),
        }
    }
}

/// Kazoo's `merge_recursive` (`plans.md` §6): every leaf of `right` is set in `left`.
///
/// An object on the right is descended into, so an empty object changes nothing; any
/// other value (arrays included) replaces; `null` deletes the path. A `null` already
/// in `left` is left alone: combining account-wide overrides (left) with per-plan ones
/// (right) keeps the account-wide nulls, which then delete from the plan, while a
/// per-plan `null` only removes the account-wide value (§6 "Where a `null` acts").
pub fn deep_merge(left: &mut Map, right: &Map) {
    merge_leaves(left, right.clone());
}

/// [`deep_merge`] that moves the right side's values instead of copying them.
pub fn deep_merge_owned(left: &mut Map, right: Map) {
    merge_leaves(left, right);
}

fn merge_leaves(left: &mut Map, right: Map) {
    for (key, right_value) in right {
        match right_value {
            Value::Null => {
                left.remove(&key);
            }
            Value::Object(right_child) => match left.get_mut(&key) {
                Some(Value::Object(left_child)) => merge_leaves(left_child, right_child),
                // Nothing to merge with and nothing to drop: the subtree moves as it is.
                None if is_plain(&right_child) => {
                    left.insert(key, Value::Object(right_child));
                }
                _ => {
                    // A leaf set below a non-object replaces it; with no leaf at all
                    // (only empty objects below) nothing is set and nothing is created.
                    let mut created = Map::new();
                    merge_leaves(&mut created, right_child);
                    if !created.is_empty() {
                        left.insert(key, Value::Object(created));
                    }
                }
            },
            leaf => {
                left.insert(key, leaf);
            }
        }
    }
}

/// Whether merging `map` into nothing would copy it unchanged: it holds no empty
/// object (which merging ignores) and no null (which merging drops).
fn is_plain(map: &Map) -> bool {
    !map.is_empty()
        && map.values().all(|value| match value {
            Value::Null => false,
            Value::Object(child) => is_plain(child),
            _ => true,
        })
}

/// Kazoo's plain `merge`, used for PATCHes of the global overrides (`plans.md` §6): like
/// [`deep_merge`], except that an empty object on the right replaces the left value.
pub fn merge_replacing_empty(left: &mut Map, right: &Map) {
    for (key, right_value) in right {
        match right_value {
            Value::Null => {
                left.remove(key);
            }
            Value::Object(right_child) if !right_child.is_empty() => match left.get_mut(key) {
                Some(Value::Object(left_child)) => merge_replacing_empty(left_child, right_child),
                _ => {
                    let mut created = Map::new();
                    merge_replacing_empty(&mut created, right_child);
                    left.insert(key.clone(), Value::Object(created));
                }
            },
            other => {
                left.insert(key.clone(), other.clone());
            }
        }
    }
}

/// Drops every `null` and every empty object, bottom up (`plans.md` §5.3 step 7):
/// rebuilding a plan through the deep merge has exactly this effect.
pub fn strip_empty(map: &mut Map) {
    map.retain(|_, value| match value {
        Value::Null => false,
        Value::Object(child) => {
            strip_empty(child);
            !child.is_empty()
        }
        _ => true,
    });
}

/// One step of a path into a document, for error messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Segment {
    Key(String),
    Index(usize),
}

/// Where in a document something is: `plans[1].plan.devices.sip_device.rates."10"`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Path(Vec<Segment>);

impl Path {
    pub fn root() -> Path {
        Path(Vec::new())
    }

    pub fn key(&self, key: &str) -> Path {
        let mut segments = self.0.clone();
        segments.push(Segment::Key(key.to_owned()));
        Path(segments)
    }

    pub fn index(&self, index: usize) -> Path {
        let mut segments = self.0.clone();
        segments.push(Segment::Index(index));
        Path(segments)
    }

    pub fn is_root(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Display for Path {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            return f.write_str("(document)");
        }
        for (position, segment) in self.0.iter().enumerate() {
            match segment {
                Segment::Index(index) => write!(f, "[{index}]")?,
                Segment::Key(key) => {
                    if position > 0 {
                        f.write_str(".")?;
                    }
                    let plain = !key.is_empty()
                        && !key.starts_with(|c: char| c.is_ascii_digit())
                        && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
                    if plain {
                        f.write_str(key)?;
                    } else {
                        write!(f, "{key:?}")?;
                    }
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn num(text: &str) -> Value {
        Value::Number(Number::parse(text).expect("test number"))
    }

    fn map(entries: Vec<(&str, Value)>) -> Map {
        entries
            .into_iter()
            .map(|(key, value)| (key.to_owned(), value))
            .collect()
    }

    #[test]
    fn numbers_read_exactly_in_plain_and_scientific_form() {
        assert_eq!(
            num("16.58").to_decimal(),
            Ok(Decimal::from_str("16.58").expect("literal"))
        );
        assert_eq!(
            num("25e-1").to_decimal(),
            Ok(Decimal::from_str("2.5").expect("literal"))
        );
        assert_eq!(Value::String("3".into()).to_decimal(), Ok(Decimal::from(3)));
        assert!(Value::String("abc".into()).to_decimal().is_err());
        assert!(Value::String("1_000".into()).to_decimal().is_err());
        assert!(Value::String(".5".into()).to_decimal().is_err());
    }

    #[test]
    fn integers_round_half_away_from_zero() {
        assert_eq!(num("2.5").to_integer(), Ok(3));
        assert_eq!(num("-2.5").to_integer(), Ok(-3));
        assert_eq!(num("2.4").to_integer(), Ok(2));
        assert_eq!(Value::String("7".into()).to_integer(), Ok(7));
        assert!(num("1e30").to_integer().is_err());
        assert!(
            num("1e30").to_decimal().is_err(),
            "parsed as a number, out of the decimal range"
        );
    }

    #[test]
    fn deep_merge_sets_leaves_ignores_empty_objects_and_deletes_nulls() {
        let mut left = map(vec![
            ("a", Value::Object(map(vec![("x", num("1")), ("y", num("2"))]))),
            ("b", num("5")),
            ("list", Value::Array(vec![num("1"), num("2")])),
        ]);
        let right = map(vec![
            ("a", Value::Object(map(vec![("y", num("3")), ("z", Value::Null)]))),
            ("b", Value::Object(Map::new())),
            ("c", Value::Object(map(vec![("d", Value::Object(Map::new()))]))),
            ("list", Value::Array(vec![num("9")])),
        ]);
        deep_merge(&mut left, &right);
        let expected = map(vec![
            ("a", Value::Object(map(vec![("x", num("1")), ("y", num("3"))]))),
            ("b", num("5")),
            ("list", Value::Array(vec![num("9")])),
        ]);
        assert_eq!(left, expected);
    }

    #[test]
    fn json_number_grammar_is_checked_without_a_range() {
        for good in ["0", "-0", "12", "1.5", "-0.25", "1e400", "2E-3", "1.5e+2"] {
            assert!(Number::parse(good).is_some(), "{good}");
        }
        for bad in ["", "-", "01", "1.", ".5", "+1", "1e", "1_000", "abc", "1.2.3"] {
            assert!(Number::parse(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn deep_merge_keeps_the_left_nulls_and_drops_the_right_ones() {
        let mut account_wide = map(vec![("rate", num("12")), ("minimum", Value::Null)]);
        deep_merge(
            &mut account_wide,
            &map(vec![
                ("rate", Value::Null),
                ("discounts", Value::Null),
                ("step", num("2")),
            ]),
        );
        assert_eq!(account_wide, map(vec![("minimum", Value::Null), ("step", num("2"))]));
    }

    #[test]
    fn merge_replacing_empty_lets_an_empty_object_clear_the_left_side() {
        let mut left = map(vec![("plan", Value::Object(map(vec![("x", num("1"))])))]);
        merge_replacing_empty(&mut left, &map(vec![("plan", Value::Object(Map::new()))]));
        assert_eq!(left, map(vec![("plan", Value::Object(Map::new()))]));
    }

    #[test]
    fn strip_empty_removes_nulls_and_objects_left_empty() {
        let mut document = map(vec![
            ("keep", num("1")),
            ("gone", Value::Null),
            ("nested", Value::Object(map(vec![("inner", Value::Object(Map::new()))]))),
            ("array", Value::Array(vec![Value::Null])),
        ]);
        strip_empty(&mut document);
        assert_eq!(
            document,
            map(vec![("keep", num("1")), ("array", Value::Array(vec![Value::Null]))])
        );
    }

    #[test]
    fn paths_quote_keys_that_are_not_plain_names() {
        let path = Path::root().key("plans").index(1).key("plan").key("rates").key("10");
        assert_eq!(path.to_string(), r#"plans[1].plan.rates."10""#);
    }
}
