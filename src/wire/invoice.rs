//! The JSON form of invoices (`pricing.md` §7-§8, `quote-format.md`).
//!
//! One rendering serves the quote response, audit rows and bookkeeper deliveries, so
//! an invoice reads the same wherever it appears. Zero discount members and empty
//! objects are omitted; money is a plain JSON number in shortest exact form.

use super::document::{map_to_json, money};
use crate::domain::invoice::{ActivationCharge, Difference, Discounts, Invoice, ItemChanges, PricedItem};
use crate::domain::plan::BookkeeperRef;
use serde_json::{json, Map, Value};

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
