//! Reading the JSON `data` of a request: shapes checked, errors naming the field.
//!
//! Values no account could ever be billed with are refused here, before anything is
//! stored: a count above [`LARGEST_QUANTITY`] (manual quantities, an item plan's
//! counts) and an amount beyond [`Money::LARGEST_STORED`] (rates, tier prices,
//! activation charges, discount rates). Kazoo stores them and fails later; tally would
//! have to skip the account at every billing run.

use super::{FieldError, OpsError};
use crate::domain::document::{self, Path};
use crate::domain::item_plan::Severity;
use crate::domain::plan::validate_plan_document;
use crate::domain::pricing::LARGEST_QUANTITY;
use crate::domain::Money;
use crate::wire::document::{map_from_json, Amount, Document};
use serde_json::{Map, Value};

/// `data` (or one of its members) must be an object; a missing body reads as `{}`.
pub(super) fn object<'a>(value: &'a Value, field: &str) -> Result<&'a Map<String, Value>, OpsError> {
    match value {
        Value::Object(map) => Ok(map),
        _ => Err(OpsError::field(field, "type", "must be an object")),
    }
}

/// An optional object member: absent and `null` read as `None`.
pub(super) fn optional_object(value: Option<&Value>, field: &str) -> Result<Option<Value>, OpsError> {
    match value {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Object(_)) => Ok(value.cloned()),
        Some(_) => Err(OpsError::field(field, "type", "must be an object")),
    }
}

/// Which of the two merges of `plans.md` §6 combines a write with what is stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum OverrideMerge {
    /// Per-plan overrides (`merge: true`): Kazoo's `merge_recursive`, where an empty
    /// object changes nothing ([`document::deep_merge`]).
    PerPlan,
    /// Global overrides (PATCH or `merge: true`): Kazoo's plain merge, where an empty
    /// object replaces ([`document::merge_replacing_empty`]).
    Global,
}

/// `new` merged onto `stored` by the rule of `merge`; in both, `null` deletes. The
/// merges are the domain's, so the API, the command line and pricing share one
/// definition of each.
pub(super) fn merge_overrides(stored: &Map<String, Value>, new: &Map<String, Value>, merge: OverrideMerge) -> Value {
    let mut merged = map_from_json(stored);
    let right = map_from_json(new);
    match merge {
        OverrideMerge::PerPlan => document::deep_merge_owned(&mut merged, right),
        OverrideMerge::Global => document::merge_replacing_empty(&mut merged, &right),
    }
    serde_json::to_value(Document::Map(&merged)).unwrap_or_else(|_| Value::Object(Map::new()))
}

/// A manual quantity (`api.md` §2.11): a whole number from 0 to [`LARGEST_QUANTITY`].
pub(super) fn manual_quantity(value: &serde_json::Number, field: &str) -> Result<i64, Box<FieldError>> {
    match value.as_i64() {
        Some(count) if (0..=LARGEST_QUANTITY).contains(&count) => Ok(count),
        Some(count) if count > LARGEST_QUANTITY => Err(Box::new(too_many(field))),
        // Whole numbers too large for 64 bits are still too many, not of the wrong type.
        None if value.to_string().bytes().all(|byte| byte.is_ascii_digit()) => Err(Box::new(too_many(field))),
        _ => Err(Box::new(FieldError::new(
            field,
            "type",
            "must be a non-negative integer",
        ))),
    }
}

fn too_many(field: &str) -> FieldError {
    FieldError::new(field, "maximum", format!("must be at most {LARGEST_QUANTITY}"))
        .with_cause(Value::from(LARGEST_QUANTITY))
}

/// Overrides are partial plan documents: their item plans, merge strategy and
/// bookkeeper must have the types of `plans.md` §3 (`api.md` §2.12), and their counts
/// and amounts must be billable ([`billable_values`]).
pub(super) fn check_overrides(overrides: &Value, field: &str) -> Result<(), OpsError> {
    let Value::Object(map) = overrides else {
        return Err(OpsError::field(field, "type", "must be an object"));
    };
    let root = if field.is_empty() {
        Path::root()
    } else {
        Path::root().key(field)
    };
    let document = map_from_json(map);
    let mut errors: Vec<FieldError> = validate_plan_document(&document, &root)
        .into_iter()
        .filter(|issue| issue.severity == Severity::Error)
        .map(|issue| FieldError::new(issue.path.to_string(), "type", issue.message))
        .collect();
    if errors.is_empty() {
        errors = billable_values(&document, &root);
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(OpsError::Validation(errors))
    }
}

/// The fields of an item plan (`plans.md` §3) that hold amounts or counts, by object.
const ITEM_AMOUNTS: [&str; 3] = ["rate", "flat_rate", "activation_charge"];
const ITEM_TIERS: [&str; 2] = ["rates", "flat_rates"];
const ITEM_COUNTS: [&str; 3] = ["minimum", "maximum", "step"];

/// The counts and amounts of a plan document's item plans that no account could be
/// billed with: a count beyond ±[`LARGEST_QUANTITY`], an amount beyond
/// ±[`Money::LARGEST_STORED`]. Values of the wrong type are left to the type checks.
pub(super) fn billable_values(document: &document::Map, root: &Path) -> Vec<FieldError> {
    let mut errors = Vec::new();
    let Some(categories) = document.get("plan").and_then(document::Value::as_object) else {
        return errors;
    };
    let plan_path = root.key("plan");
    for (category, items) in categories {
        let Some(items) = items.as_object() else { continue };
        for (item, fields) in items {
            let Some(fields) = fields.as_object() else { continue };
            let path = plan_path.key(category).key(item);
            check_fields(fields, &path, &ITEM_AMOUNTS, &ITEM_TIERS, &ITEM_COUNTS, &mut errors);
            let discounts = fields.get("discounts").and_then(document::Value::as_object);
            if let Some(single) = discounts
                .and_then(|discounts| discounts.get("single"))
                .and_then(document::Value::as_object)
            {
                let path = path.key("discounts").key("single");
                check_fields(single, &path, &["rate"], &[], &["minimum"], &mut errors);
            }
            if let Some(cumulative) = discounts
                .and_then(|discounts| discounts.get("cumulative"))
                .and_then(document::Value::as_object)
            {
                let path = path.key("discounts").key("cumulative");
                check_fields(
                    cumulative,
                    &path,
                    &["rate"],
                    &["rates"],
                    &["minimum", "maximum"],
                    &mut errors,
                );
            }
        }
    }
    errors
}

fn check_fields(
    fields: &document::Map,
    path: &Path,
    amounts: &[&str],
    tiers: &[&str],
    counts: &[&str],
    errors: &mut Vec<FieldError>,
) {
    for key in amounts {
        if let Some(value) = fields.get(*key) {
            check_amount(value, &path.key(key), errors);
        }
    }
    for key in tiers {
        let Some(table) = fields.get(*key).and_then(document::Value::as_object) else {
            continue;
        };
        for (threshold, value) in table {
            check_amount(value, &path.key(key).key(threshold), errors);
        }
    }
    for key in counts {
        let Some(count) = fields.get(*key).and_then(|value| value.to_decimal().ok()) else {
            continue;
        };
        if count.abs() > rust_decimal::Decimal::from(LARGEST_QUANTITY) {
            let message = format!("must be at most {LARGEST_QUANTITY} in magnitude");
            errors.push(
                FieldError::new(path.key(key).to_string(), "maximum", message)
                    .with_cause(Value::from(LARGEST_QUANTITY)),
            );
        }
    }
}

fn check_amount(value: &document::Value, path: &Path, errors: &mut Vec<FieldError>) {
    let Ok(amount) = value.to_decimal() else { return };
    if !Money::new(amount).within_stored_range() {
        let message = format!("must be at most {} in magnitude", Money::LARGEST_STORED);
        let cause = serde_json::json!(Amount(Money::LARGEST_STORED));
        errors.push(FieldError::new(path.to_string(), "maximum", message).with_cause(cause));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn number(text: &str) -> serde_json::Number {
        match serde_json::from_str::<Value>(text).expect("test literal") {
            Value::Number(number) => number,
            other => panic!("not a number: {other}"),
        }
    }

    #[test]
    fn manual_quantities_are_whole_numbers_up_to_a_trillion() {
        let table = [
            ("0", Ok(0)),
            ("1000000000000", Ok(1_000_000_000_000)),
            ("1000000000001", Err("maximum")),
            ("1000000000000000", Err("maximum")),
            ("100000000000000000000000000000", Err("maximum")),
            ("-1", Err("type")),
            ("1.5", Err("type")),
        ];
        for (text, expected) in table {
            let found = manual_quantity(&number(text), "devices.sip_device").map_err(|error| error.rule);
            assert_eq!(found, expected.map_err(str::to_owned), "{text}");
        }
    }

    #[test]
    fn plan_counts_and_amounts_beyond_the_bounds_are_named_by_path() {
        let document: Value = serde_json::from_str(
            r#"{"plan": {"devices": {"sip_device": {
                "rate": 922337203685477.5807, "flat_rates": {"5": -922337203685477.5808},
                "minimum": 1000000000001, "step": "2",
                "discounts": {"single": {"rate": 1e15}, "cumulative": {"maximum": -1000000000001, "rates": {"3": 1}}}
            }}}}"#,
        )
        .expect("test document");
        let Value::Object(map) = document else {
            unreachable!("an object literal")
        };
        let fields: Vec<String> = billable_values(&map_from_json(&map), &Path::root())
            .into_iter()
            .map(|error| format!("{} {}", error.field, error.rule))
            .collect();
        assert_eq!(
            fields,
            vec![
                "plan.devices.sip_device.flat_rates.\"5\" maximum",
                "plan.devices.sip_device.minimum maximum",
                "plan.devices.sip_device.discounts.single.rate maximum",
                "plan.devices.sip_device.discounts.cumulative.maximum maximum",
            ]
        );
    }
}
