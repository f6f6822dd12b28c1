//! A readable rendering of any JSON response, for people at a terminal.
//!
//! Generic, so every command gets a table without its own printer:
//! - a list of objects → one row each, the union of their keys as columns (first seen
//!   first), nested values as compact JSON;
//! - a map of rows (`{key: {field: scalar}}`, or two levels like the audit summary's
//!   `{source: {day: row}}`) whose rows share their fields → the keys become leading
//!   columns, then the fields; a list of such maps is concatenated;
//! - any other object → two columns, key and value, nested objects spelled as dotted
//!   keys down to their leaves;
//! - a scalar → itself.

use serde_json::{Map, Value};

/// Rendered text (no trailing newline) of `value`; `key_columns` name the leading key
/// columns of a map of rows (missing names become `key`, `key2`).
pub fn render(value: &Value, key_columns: &[&str]) -> String {
    match shape(value) {
        Shape::Rows(rows) => rows_table(&rows),
        Shape::RowMap { depth, rows } => row_map_table(depth, &rows, key_columns),
        Shape::KeyValue => key_value_table(value),
        Shape::Scalar => cell(value),
    }
}

/// Whether `value` is a list of rows or a map of rows: what reads best as a table by
/// default on a terminal (any other object prints as JSON unless `--table`).
pub fn is_tabular(value: &Value) -> bool {
    matches!(shape(value), Shape::Rows(rows) if !rows.is_empty()) || matches!(shape(value), Shape::RowMap { .. })
}

/// The widest line of a rendering, in characters.
pub fn width(text: &str) -> usize {
    text.lines().map(|line| line.chars().count()).max().unwrap_or(0)
}

enum Shape<'a> {
    /// A list of objects (or of scalars, one `value` column).
    Rows(Vec<Row<'a>>),
    /// Rows under one or two levels of keys.
    RowMap {
        depth: usize,
        rows: Vec<(Vec<&'a str>, &'a Map<String, Value>)>,
    },
    KeyValue,
    Scalar,
}

enum Row<'a> {
    Object(&'a Map<String, Value>),
    Scalar(&'a Value),
}

fn shape(value: &Value) -> Shape<'_> {
    match value {
        Value::Array(items) => {
            if let Some((depth, rows)) = list_of_row_maps(items) {
                return Shape::RowMap { depth, rows };
            }
            if items.iter().all(Value::is_object) {
                Shape::Rows(items.iter().filter_map(Value::as_object).map(Row::Object).collect())
            } else if items.iter().all(|item| !item.is_object() && !item.is_array()) {
                Shape::Rows(items.iter().map(Row::Scalar).collect())
            } else {
                Shape::KeyValue
            }
        }
        Value::Object(map) => match row_map(map) {
            Some((depth, rows)) => Shape::RowMap { depth, rows },
            None => Shape::KeyValue,
        },
        _ => Shape::Scalar,
    }
}

type KeyedRows<'a> = Vec<(Vec<&'a str>, &'a Map<String, Value>)>;

/// A map of uniform rows one or two levels down, the shallower reading first. One
/// row of one field (`{"users": {"user": 2}}`) reads better as a key and a value.
fn row_map(map: &Map<String, Value>) -> Option<(usize, KeyedRows<'_>)> {
    (1..=2).find_map(|depth| {
        let mut rows = Vec::new();
        collect_rows(map, depth, &mut Vec::new(), &mut rows)?;
        let single_cell = rows.len() == 1 && rows[0].1.len() == 1;
        (uniform(&rows) && !single_cell).then_some((depth, rows))
    })
}

/// A non-empty list whose every element is a map of rows at the same depth, all rows
/// uniform (the audit summary's `[{source: {day: row}}]`).
fn list_of_row_maps(items: &[Value]) -> Option<(usize, KeyedRows<'_>)> {
    if items.is_empty() {
        return None;
    }
    (1..=2).find_map(|depth| {
        let mut rows = Vec::new();
        for item in items {
            collect_rows(item.as_object()?, depth, &mut Vec::new(), &mut rows)?;
        }
        uniform(&rows).then_some((depth, rows))
    })
}

fn collect_rows<'a>(
    map: &'a Map<String, Value>,
    depth: usize,
    keys: &mut Vec<&'a str>,
    rows: &mut KeyedRows<'a>,
) -> Option<()> {
    if map.is_empty() {
        return None;
    }
    for (key, value) in map {
        let inner = value.as_object()?;
        keys.push(key.as_str());
        if depth == 1 {
            if inner.is_empty() || inner.values().any(|field| field.is_object() || field.is_array()) {
                return None;
            }
            rows.push((keys.clone(), inner));
        } else {
            collect_rows(inner, depth - 1, keys, rows)?;
        }
        keys.pop();
    }
    Some(())
}

/// Every row has the same fields (in any order).
fn uniform(rows: &KeyedRows<'_>) -> bool {
    let Some((_, first)) = rows.first() else {
        return false;
    };
    rows.iter()
        .all(|(_, row)| row.len() == first.len() && row.keys().all(|key| first.contains_key(key)))
}

fn rows_table(rows: &[Row<'_>]) -> String {
    if rows.is_empty() {
        return "(no rows)".to_owned();
    }
    if rows.iter().all(|row| matches!(row, Row::Scalar(_))) {
        let body = rows
            .iter()
            .map(|row| match row {
                Row::Scalar(value) => vec![cell(value)],
                Row::Object(_) => Vec::new(),
            })
            .collect::<Vec<_>>();
        return layout(&["value".to_owned()], &body);
    }
    let mut columns: Vec<String> = Vec::new();
    for row in rows {
        if let Row::Object(map) = row {
            for key in map.keys() {
                if !columns.contains(key) {
                    columns.push(key.clone());
                }
            }
        }
    }
    let body = rows
        .iter()
        .filter_map(|row| match row {
            Row::Object(map) => Some(
                columns
                    .iter()
                    .map(|column| map.get(column).map(cell).unwrap_or_default())
                    .collect(),
            ),
            Row::Scalar(_) => None,
        })
        .collect::<Vec<_>>();
    layout(&columns, &body)
}

fn row_map_table(depth: usize, rows: &KeyedRows<'_>, key_columns: &[&str]) -> String {
    let mut columns: Vec<String> = (0..depth)
        .map(|level| match key_columns.get(level) {
            Some(name) => (*name).to_owned(),
            None if level == 0 => "key".to_owned(),
            None => format!("key{}", level + 1),
        })
        .collect();
    let fields: Vec<String> = rows
        .first()
        .map(|(_, row)| row.keys().cloned().collect())
        .unwrap_or_default();
    columns.extend(fields.iter().cloned());
    let body = rows
        .iter()
        .map(|(keys, row)| {
            keys.iter()
                .map(|key| (*key).to_owned())
                .chain(fields.iter().map(|field| row.get(field).map(cell).unwrap_or_default()))
                .collect()
        })
        .collect::<Vec<_>>();
    layout(&columns, &body)
}

fn key_value_table(value: &Value) -> String {
    let mut pairs = Vec::new();
    match value {
        Value::Object(map) => flatten(map, "", &mut pairs),
        Value::Array(items) => {
            for (index, item) in items.iter().enumerate() {
                pairs.push(vec![index.to_string(), cell(item)]);
            }
        }
        other => pairs.push(vec![String::new(), cell(other)]),
    }
    if pairs.is_empty() {
        return "(empty)".to_owned();
    }
    layout(&["key".to_owned(), "value".to_owned()], &pairs)
}

fn flatten(map: &Map<String, Value>, prefix: &str, pairs: &mut Vec<Vec<String>>) {
    for (key, value) in map {
        let path = if prefix.is_empty() {
            key.clone()
        } else {
            format!("{prefix}.{key}")
        };
        match value {
            Value::Object(inner) if !inner.is_empty() => flatten(inner, &path, pairs),
            other => pairs.push(vec![path, cell(other)]),
        }
    }
}

/// A cell: strings bare, `null` empty, anything else as compact JSON (numbers keep
/// their exact text).
fn cell(value: &Value) -> String {
    match value {
        Value::String(text) => text.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

/// Left-aligned columns two spaces apart, header first; trailing spaces trimmed.
fn layout(columns: &[String], body: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = columns.iter().map(|column| column.chars().count()).collect();
    for row in body {
        for (index, text) in row.iter().enumerate() {
            if let Some(width) = widths.get_mut(index) {
                *width = (*width).max(text.chars().count());
            }
        }
    }
    let line = |cells: &[String]| {
        let mut text = String::new();
        for (index, cell) in cells.iter().enumerate() {
            if index > 0 {
                text.push_str("  ");
            }
            text.push_str(cell);
            let pad = widths[index].saturating_sub(cell.chars().count());
            text.extend(std::iter::repeat_n(' ', pad));
        }
        text.trim_end().to_owned()
    };
    let mut lines = vec![line(columns)];
    lines.extend(body.iter().map(|row| line(row)));
    lines.join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn lines(text: &str) -> Vec<&str> {
        text.lines().collect()
    }

    #[test]
    fn a_list_of_objects_is_aligned_columns_over_the_union_of_keys() {
        let rows = json!([
            {"id": "a1", "status": "completed", "summary": {"today": 0}},
            {"id": "b22", "reason": "no_payment_token", "status": "failed"}
        ]);
        assert_eq!(
            lines(&render(&rows, &[])),
            vec![
                "id   status     summary      reason",
                "a1   completed  {\"today\":0}",
                "b22  failed                  no_payment_token",
            ]
        );
        assert!(is_tabular(&rows));
    }

    #[test]
    fn numbers_keep_their_exact_text_and_null_is_empty() {
        let value: Value =
            serde_json::from_str(r#"[{"rate": 0.10, "name": null}, {"rate": 2.50, "name": "x"}]"#).expect("json");
        assert_eq!(lines(&render(&value, &[])), vec!["rate  name", "0.10", "2.50  x"]);
    }

    #[test]
    fn the_audit_summary_flattens_source_and_day_into_leading_columns() {
        let summary = json!([{
            "devices": {
                "2026-11-01": {"addition": 2, "last_timestamp": 63900000000_i64, "quantity": 5, "removal": 0, "sum_quantity": false},
                "2026-11-02": {"removal": 1, "addition": 0, "last_timestamp": 63900086400_i64, "quantity": 4, "sum_quantity": false}
            },
            "users": {
                "2026-11-02": {"addition": 1, "last_timestamp": 63900086400_i64, "quantity": 1, "removal": 0, "sum_quantity": false}
            }
        }]);
        assert!(is_tabular(&summary));
        assert_eq!(
            lines(&render(&summary, &["source", "day"])),
            vec![
                "source   day         addition  last_timestamp  quantity  removal  sum_quantity",
                "devices  2026-11-01  2         63900000000     5         0        false",
                "devices  2026-11-02  0         63900086400     4         1        false",
                "users    2026-11-02  1         63900086400     1         0        false",
            ]
        );
    }

    #[test]
    fn the_per_source_summary_is_one_key_column_of_days() {
        let days = json!([
            {"2026-11-02": {"addition": 0, "quantity": 4}},
            {"2026-11-01": {"addition": 2, "quantity": 5}}
        ]);
        assert_eq!(
            lines(&render(&days, &["day"])),
            vec![
                "day         addition  quantity",
                "2026-11-02  0         4",
                "2026-11-01  2         5"
            ]
        );
    }

    #[test]
    fn unnamed_key_columns_are_key_and_key2() {
        let map = json!({"a": {"x": {"n": 1, "m": 2}}});
        assert_eq!(lines(&render(&map, &[])), vec!["key  key2  n  m", "a    x     1  2"]);
    }

    #[test]
    fn a_single_cell_is_a_key_and_a_value() {
        let manual = json!({"users": {"user": 2}});
        assert_eq!(lines(&render(&manual, &[])), vec!["key         value", "users.user  2"]);
    }

    #[test]
    fn an_object_whose_entries_differ_is_key_value_with_dotted_paths() {
        let manual = json!({"devices": {"sip_device": 3, "softphone": 1}, "users": {"user": 2}});
        assert!(!is_tabular(&manual));
        assert_eq!(
            lines(&render(&manual, &[])),
            vec![
                "key                 value",
                "devices.sip_device  3",
                "devices.softphone   1",
                "users.user          2",
            ]
        );
        let plans = json!({"plan_a": {"vendor_id": "r", "overrides": {}}, "plan_b": {"vendor_id": "r", "tags": ["x"]}});
        assert_eq!(
            lines(&render(&plans, &[])),
            vec![
                "key               value",
                "plan_a.vendor_id  r",
                "plan_a.overrides  {}",
                "plan_b.vendor_id  r",
                "plan_b.tags       [\"x\"]",
            ]
        );
    }

    #[test]
    fn a_flat_object_is_two_columns() {
        let status = json!({"in_good_standing": false, "reason": "unpaid"});
        assert_eq!(
            lines(&render(&status, &[])),
            vec![
                "key               value",
                "in_good_standing  false",
                "reason            unpaid"
            ]
        );
        assert!(!is_tabular(&status));
    }

    #[test]
    fn empty_values_and_scalars() {
        assert_eq!(render(&json!([]), &[]), "(no rows)");
        assert!(!is_tabular(&json!([])));
        assert_eq!(render(&json!({}), &[]), "(empty)");
        assert_eq!(render(&json!("text"), &[]), "text");
        assert_eq!(lines(&render(&json!(["a", 2]), &[])), vec!["value", "a", "2"]);
    }

    #[test]
    fn width_counts_characters_of_the_widest_line() {
        assert_eq!(width("ab\nédcb"), 4);
        assert_eq!(width(""), 0);
    }
}
