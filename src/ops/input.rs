//! Reading the JSON `data` of a request: shapes checked, errors naming the field.

use super::{FieldError, OpsError};
use crate::domain::document::Path;
use crate::domain::item_plan::Severity;
use crate::domain::plan::validate_plan_document;
use crate::wire::document::map_from_json;
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

/// The deep merge of `plans.md` §6 on JSON: objects merge key by key, `null` deletes,
/// anything else replaces.
pub(super) fn merge_json(left: &mut Map<String, Value>, right: Map<String, Value>) {
    for (key, value) in right {
        match value {
            Value::Null => {
                left.remove(&key);
            }
            Value::Object(right_child) => match left.get_mut(&key) {
                Some(Value::Object(left_child)) => merge_json(left_child, right_child),
                _ => {
                    let mut fresh = Map::new();
                    merge_json(&mut fresh, right_child);
                    left.insert(key, Value::Object(fresh));
                }
            },
            other => {
                left.insert(key, other);
            }
        }
    }
}

/// Overrides are partial plan documents: their item plans, merge strategy and
/// bookkeeper must have the types of `plans.md` §3 (`api.md` §2.12).
pub(super) fn check_overrides(overrides: &Value, field: &str) -> Result<(), OpsError> {
    let Value::Object(map) = overrides else {
        return Err(OpsError::field(field, "type", "must be an object"));
    };
    let root = if field.is_empty() {
        Path::root()
    } else {
        Path::root().key(field)
    };
    let errors: Vec<FieldError> = validate_plan_document(&map_from_json(map), &root)
        .into_iter()
        .filter(|issue| issue.severity == Severity::Error)
        .map(|issue| FieldError::new(issue.path.to_string(), "type", issue.message))
        .collect();
    if errors.is_empty() {
        Ok(())
    } else {
        Err(OpsError::Validation(errors))
    }
}
