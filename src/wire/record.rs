//! The entries of a quantity-change record as JSON (`audit-and-summaries.md` §4.2): the
//! array a record stores, as Kazoo's record document holds its `audit` list, each entry
//! `{"bucket", "category", "source", "quantity", "billable"}` (`bucket` is ours).

use crate::domain::quantities::Bucket;
use crate::domain::summary::RecordEntry;
use crate::domain::ItemName;
use serde_json::{json, Value};

/// The stored text of a record's entries, in their order.
pub fn entries_to_json(entries: &[RecordEntry]) -> String {
    let entries: Vec<Value> = entries
        .iter()
        .map(|entry| {
            entry_json(
                entry.bucket.as_str(),
                &entry.category,
                entry.source.as_str(),
                entry.quantity,
                entry.billable,
            )
        })
        .collect();
    Value::Array(entries).to_string()
}

/// One entry as stored, from its fields as they are (reconcile's writers take them
/// from its staged rows without reading them into domain names).
pub fn entry_json(bucket: &str, category: &str, source: &str, quantity: i64, billable: i64) -> Value {
    json!({
        "bucket": bucket,
        "category": category,
        "source": source,
        "quantity": quantity,
        "billable": billable,
    })
}

/// Reads a record's stored entries; the error names the entry and field at fault.
pub fn entries_from_json(text: &str) -> Result<Vec<RecordEntry>, String> {
    let value: Value = serde_json::from_str(text).map_err(|error| format!("entries are not JSON: {error}"))?;
    let Value::Array(entries) = value else {
        return Err("entries are not a JSON array".to_owned());
    };
    entries
        .iter()
        .enumerate()
        .map(|(index, entry)| {
            let text = |key: &str| {
                entry
                    .get(key)
                    .and_then(Value::as_str)
                    .ok_or_else(|| format!("entries[{index}].{key}: not a string"))
            };
            let integer = |key: &str| {
                entry
                    .get(key)
                    .and_then(Value::as_i64)
                    .ok_or_else(|| format!("entries[{index}].{key}: not an integer"))
            };
            let bucket = text("bucket")?;
            Ok(RecordEntry {
                bucket: Bucket::parse(bucket)
                    .ok_or_else(|| format!("entries[{index}].bucket: unknown bucket {bucket:?}"))?,
                category: text("category")?.to_owned(),
                source: ItemName::parse(text("source")?)
                    .map_err(|error| format!("entries[{index}].source: {error}"))?,
                quantity: integer("quantity")?,
                billable: integer("billable")?,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(bucket: Bucket, source: &str, quantity: i64, billable: i64) -> RecordEntry {
        RecordEntry {
            bucket,
            category: "devices".to_owned(),
            source: ItemName::parse(source).expect("item"),
            quantity,
            billable,
        }
    }

    #[test]
    fn entries_read_back_as_written_in_order() {
        let entries = vec![
            entry(Bucket::Account, "sip_device", 2, 2),
            entry(Bucket::Manual, "softphone", -1, 0),
            entry(Bucket::Cascade, "sip_device", 5, 7),
        ];
        let text = entries_to_json(&entries);
        assert_eq!(
            text,
            "[{\"bucket\":\"account\",\"category\":\"devices\",\"source\":\"sip_device\",\"quantity\":2,\"billable\":2},\
             {\"bucket\":\"manual\",\"category\":\"devices\",\"source\":\"softphone\",\"quantity\":-1,\"billable\":0},\
             {\"bucket\":\"cascade\",\"category\":\"devices\",\"source\":\"sip_device\",\"quantity\":5,\"billable\":7}]"
        );
        assert_eq!(entries_from_json(&text), Ok(entries));
    }

    #[test]
    fn a_bad_entry_is_named_by_its_place_and_field() {
        let text = "[{\"bucket\":\"account\",\"category\":\"devices\",\"source\":\"sip_device\",\"quantity\":1,\"billable\":1},\
                    {\"bucket\":\"elsewhere\",\"category\":\"devices\",\"source\":\"x\",\"quantity\":1,\"billable\":1}]";
        assert_eq!(
            entries_from_json(text),
            Err("entries[1].bucket: unknown bucket \"elsewhere\"".to_owned())
        );
        assert_eq!(
            entries_from_json(
                "[{\"bucket\":\"account\",\"category\":\"devices\",\"source\":\"x\",\"quantity\":1.5,\"billable\":1}]"
            ),
            Err("entries[0].quantity: not an integer".to_owned())
        );
        assert_eq!(entries_from_json("{}"), Err("entries are not a JSON array".to_owned()));
    }
}
