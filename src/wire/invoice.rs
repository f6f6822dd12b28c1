//! The JSON form of invoices (`pricing.md` §7-§8, `quote-format.md`).
//!
//! One rendering serves the quote response, audit rows and bookkeeper deliveries, so
//! an invoice reads the same wherever it appears. Zero discount members and empty
//! objects are omitted; money is a plain JSON number in shortest exact form.

use super::document::{from_json, map_from_json, map_to_json, money};
use crate::domain::invoice::{ActivationCharge, Difference, Discounts, Invoice, ItemChanges, PricedItem};
use crate::domain::plan::BookkeeperRef;
use crate::domain::{Category, ItemName, Money};
use serde_json::{json, Map, Value};
use std::sync::Arc;

pub fn invoice(invoice: &Invoice) -> Value {
    json!({
        "bookkeeper": bookkeeper(&invoice.bookkeeper),
        "plan": Value::Object(map_to_json(&invoice.plan)),
        "items": invoice.items.iter().map(item).collect::<Vec<_>>(),
        "activation_charges": invoice.activation_charges.iter().map(activation_charge).collect::<Vec<_>>(),
        "taxes": [],
        "summary": { "recurring": money(invoice.recurring), "today": money(invoice.today) },
    })
}

pub fn bookkeeper(bookkeeper: &BookkeeperRef) -> Value {
    json!({ "type": bookkeeper.kind, "vendor_id": bookkeeper.vendor_id, "id": bookkeeper.id })
}

pub fn item(item: &PricedItem) -> Value {
    let mut fields = Map::new();
    fields.insert("category".into(), json!(item.category.as_str()));
    fields.insert("item".into(), json!(item.item));
    fields.insert("plan_item".into(), json!(item.plan_item.as_str()));
    fields.insert("name".into(), json!(item.name));
    fields.insert("quantity".into(), json!(item.quantity));
    fields.insert("billable".into(), json!(item.billable));
    fields.insert("rate".into(), money(item.rate));
    if let Some(discounts) = discounts(&item.discounts) {
        fields.insert("discounts".into(), discounts);
    }
    if item.minimum != 0 {
        fields.insert("minimum".into(), json!(item.minimum));
    }
    if item.maximum != 0 {
        fields.insert("maximum".into(), json!(item.maximum));
    }
    let prorate = match &item.prorate {
        Some(prorate) => Value::Object(map_to_json(prorate)),
        None => json!({ "additions": true, "removals": true }),
    };
    fields.insert("prorate".into(), prorate);
    fields.insert("total".into(), money(item.total));
    if let Some(charge) = item.activation_charge {
        fields.insert("activation_charge".into(), money(charge));
    }
    if let Some(changes) = &item.changes {
        fields.insert("changes".into(), item_changes(changes));
    }
    Value::Object(fields)
}

fn discounts(discounts: &Discounts) -> Option<Value> {
    let mut fields = Map::new();
    if !discounts.total.is_zero() {
        fields.insert("total".into(), money(discounts.total));
    }
    if !discounts.single.is_zero() {
        fields.insert("single".into(), json!({ "rate": money(discounts.single) }));
    }
    let mut cumulative = Map::new();
    if !discounts.cumulative_rate.is_zero() {
        cumulative.insert("rate".into(), money(discounts.cumulative_rate));
    }
    if discounts.cumulative_quantity != 0 {
        cumulative.insert("quantity".into(), json!(discounts.cumulative_quantity));
    }
    if !cumulative.is_empty() {
        fields.insert("cumulative".into(), Value::Object(cumulative));
    }
    (!fields.is_empty()).then_some(Value::Object(fields))
}

fn item_changes(changes: &ItemChanges) -> Value {
    json!({ "type": changes.kind.as_str(), "difference": difference(&changes.difference) })
}

fn difference(difference: &Difference) -> Value {
    let mut fields = Map::new();
    let mut integer = |key: &str, value: i64| {
        if value != 0 {
            fields.insert(key.into(), json!(value));
        }
    };
    integer("billable", difference.billable);
    integer("quantity", difference.quantity);
    integer("minimum", difference.minimum);
    if !difference.rate.is_zero() {
        fields.insert("rate".into(), money(difference.rate));
    }
    let single_discounts = Discounts {
        single: difference.single_rate,
        cumulative_rate: difference.cumulative_rate,
        cumulative_quantity: difference.cumulative_quantity,
        total: crate::domain::Money::ZERO,
    };
    if let Some(discounts) = discounts(&single_discounts) {
        fields.insert("discounts".into(), discounts);
    }
    for (key, text) in [
        ("category", &difference.category),
        ("item", &difference.item),
        ("name", &difference.name),
    ] {
        if let Some(text) = text {
            fields.insert(key.into(), json!(text));
        }
    }
    Value::Object(fields)
}

pub fn activation_charge(charge: &ActivationCharge) -> Value {
    json!({
        "category": charge.category.as_str(),
        "item": charge.plan_item.as_str(),
        "plan_item": charge.plan_item.as_str(),
        "name": charge.name,
        "billable": charge.billable,
        "rate": money(charge.rate),
        "total": money(charge.total),
    })
}

/// Why a stored invoice could not be read back.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{path}: {problem}")]
pub struct InvoiceFormatError {
    pub path: String,
    pub problem: String,
}

fn format_error(path: &str, problem: impl Into<String>) -> InvoiceFormatError {
    InvoiceFormatError {
        path: path.to_owned(),
        problem: problem.into(),
    }
}

/// Reads back an invoice written by [`invoice`] (a stored snapshot or audit row).
pub fn parse_invoice(value: &Value) -> Result<Invoice, InvoiceFormatError> {
    let bookkeeper = value
        .get("bookkeeper")
        .ok_or_else(|| format_error("bookkeeper", "missing"))?;
    let bookkeeper = BookkeeperRef {
        kind: text_field(bookkeeper, "type", "bookkeeper.type")?,
        vendor_id: text_field(bookkeeper, "vendor_id", "bookkeeper.vendor_id")?,
        id: text_field(bookkeeper, "id", "bookkeeper.id")?,
    };
    let plan = match value.get("plan") {
        Some(Value::Object(plan)) => map_from_json(plan),
        None => crate::domain::document::Map::new(),
        Some(_) => return Err(format_error("plan", "expected an object")),
    };
    let items = array_field(value, "items")?
        .iter()
        .enumerate()
        .map(|(index, item)| parse_item(item, &format!("items[{index}]")))
        .collect::<Result<Vec<_>, _>>()?;
    let activation_charges = array_field(value, "activation_charges")?
        .iter()
        .enumerate()
        .map(|(index, line)| parse_activation_charge(line, &format!("activation_charges[{index}]")))
        .collect::<Result<Vec<_>, _>>()?;
    Invoice::new(bookkeeper, Arc::new(plan), items, activation_charges)
        .map_err(|_| format_error("summary", "amounts out of range"))
}

fn array_field<'a>(value: &'a Value, key: &str) -> Result<&'a Vec<Value>, InvoiceFormatError> {
    match value.get(key) {
        Some(Value::Array(items)) => Ok(items),
        _ => Err(format_error(key, "expected an array")),
    }
}

fn text_field(value: &Value, key: &str, path: &str) -> Result<String, InvoiceFormatError> {
    value
        .get(key)
        .and_then(Value::as_str)
        .map(str::to_owned)
        .ok_or_else(|| format_error(path, "expected a string"))
}

fn integer_field(value: &Value, key: &str, path: &str) -> Result<i64, InvoiceFormatError> {
    match value.get(key) {
        None => Ok(0),
        Some(number) => number
            .as_i64()
            .ok_or_else(|| format_error(&format!("{path}.{key}"), "expected an integer")),
    }
}

fn money_field(value: &Value, key: &str, path: &str) -> Result<Money, InvoiceFormatError> {
    match value.get(key) {
        None => Ok(Money::ZERO),
        Some(amount) => read_money(amount).ok_or_else(|| format_error(&format!("{path}.{key}"), "expected an amount")),
    }
}

fn read_money(value: &Value) -> Option<Money> {
    match from_json(value) {
        crate::domain::document::Value::Number(number) => number.as_decimal().map(Money::new),
        _ => None,
    }
}

fn parse_item(value: &Value, path: &str) -> Result<PricedItem, InvoiceFormatError> {
    let category = text_field(value, "category", &format!("{path}.category"))?;
    let item = text_field(value, "item", &format!("{path}.item"))?;
    let plan_item = match value.get("plan_item").and_then(Value::as_str) {
        Some(plan_item) => plan_item.to_owned(),
        None => item.clone(),
    };
    let empty = Value::Object(Map::new());
    let discounts = value.get("discounts").unwrap_or(&empty);
    let single = discounts.get("single").unwrap_or(&empty);
    let cumulative = discounts.get("cumulative").unwrap_or(&empty);
    let discounts_path = format!("{path}.discounts");
    let quantity = integer_field(value, "quantity", path)?;
    let prorate = match value.get("prorate") {
        Some(Value::Object(prorate)) if !is_default_prorate(prorate) => Some(map_from_json(prorate)),
        _ => None,
    };
    let activation_charge = match value.get("activation_charge") {
        None => None,
        Some(amount) => Some(
            read_money(amount)
                .ok_or_else(|| format_error(&format!("{path}.activation_charge"), "expected an amount"))?,
        ),
    };
    Ok(PricedItem {
        category: Category::parse(category)
            .map_err(|error| format_error(&format!("{path}.category"), error.to_string()))?,
        plan_item: ItemName::parse(plan_item.as_str())
            .map_err(|error| format_error(&format!("{path}.plan_item"), error.to_string()))?,
        masqueraded: item != plan_item,
        item,
        name: text_field(value, "name", &format!("{path}.name"))?,
        quantity,
        billable: integer_field(value, "billable", path)?,
        rate: money_field(value, "rate", path)?,
        discounts: Discounts {
            single: money_field(single, "rate", &format!("{discounts_path}.single"))?,
            cumulative_rate: money_field(cumulative, "rate", &format!("{discounts_path}.cumulative"))?,
            cumulative_quantity: integer_field(cumulative, "quantity", &format!("{discounts_path}.cumulative"))?,
            total: money_field(discounts, "total", &discounts_path)?,
        },
        minimum: integer_field(value, "minimum", path)?,
        // An absent maximum was omitted because it was 0.
        maximum: integer_field(value, "maximum", path)?,
        prorate,
        total: money_field(value, "total", path)?,
        activation_charge,
        changes: None,
    })
}

/// The prorate object every item gets when its plan has none.
fn is_default_prorate(prorate: &Map<String, Value>) -> bool {
    prorate.len() == 2
        && prorate.get("additions") == Some(&Value::Bool(true))
        && prorate.get("removals") == Some(&Value::Bool(true))
}

fn parse_activation_charge(value: &Value, path: &str) -> Result<ActivationCharge, InvoiceFormatError> {
    let category = text_field(value, "category", &format!("{path}.category"))?;
    let plan_item = match value.get("plan_item").and_then(Value::as_str) {
        Some(plan_item) => plan_item.to_owned(),
        None => text_field(value, "item", &format!("{path}.item"))?,
    };
    Ok(ActivationCharge {
        category: Category::parse(category)
            .map_err(|error| format_error(&format!("{path}.category"), error.to_string()))?,
        plan_item: ItemName::parse(plan_item)
            .map_err(|error| format_error(&format!("{path}.plan_item"), error.to_string()))?,
        name: text_field(value, "name", &format!("{path}.name"))?,
        billable: integer_field(value, "billable", path)?,
        rate: money_field(value, "rate", path)?,
        total: money_field(value, "total", path)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::merge::StrategyPriorities;
    use crate::quote::{parse_request, price};

    #[test]
    fn a_rendered_invoice_reads_back_to_the_same_invoice() {
        let text =
            std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/examples/quote.json")).expect("example");
        let request = parse_request(&text).expect("valid example");
        let quote = price(&request, &StrategyPriorities::default()).expect("prices");
        for original in &quote.invoices {
            let mut without_changes = original.clone();
            for item in &mut without_changes.items {
                item.changes = None;
            }
            let read_back = parse_invoice(&invoice(original)).expect("reads back");
            assert_eq!(read_back, without_changes);
        }
    }
}
