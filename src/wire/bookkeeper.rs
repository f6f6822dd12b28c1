//! The body of an HTTP bookkeeper delivery (`sync-and-bookkeepers.md` §7).
//!
//! Legacy members first (`account_id`, `sync_id`, the `items` map keyed by category
//! and item name, `bookkeeper`), then our extension `invoice`: the whole annotated
//! invoice without its `plan`. Receivers must ignore members they do not know.

use super::document::Amount;
use super::invoice::{BookkeeperJson, InvoiceJson};
use crate::domain::document::Value;
use crate::domain::invoice::{Invoice, PricedItem};
use crate::domain::Money;
use serde::Serialize;
use std::collections::BTreeMap;

/// The JSON posted to an HTTP bookkeeper for one invoice.
#[derive(Debug, Serialize)]
pub struct DeliveryBody<'a> {
    pub account_id: &'a str,
    pub sync_id: &'a str,
    /// category → item (or `as` name) → legacy item; a later item with the same name
    /// overwrites an earlier one (the legacy shape cannot hold both).
    pub items: BTreeMap<&'a str, BTreeMap<&'a str, LegacyItem<'a>>>,
    pub bookkeeper: BookkeeperJson<'a>,
    /// The invoice without its merged plan.
    pub invoice: InvoiceJson<'a>,
}

/// One item in the legacy shape of Kazoo 4.2's HTTP bookkeeper.
#[derive(Debug, Serialize)]
pub struct LegacyItem<'a> {
    pub category: &'a str,
    pub item: &'a str,
    pub name: &'a str,
    /// What is charged: the billable quantity.
    pub quantity: i64,
    pub rate: Amount,
    pub single_discount: bool,
    pub single_discount_rate: Amount,
    pub cumulative_discount: i64,
    pub cumulative_discount_rate: Amount,
    pub activation_charge: Amount,
    pub minimum: i64,
    /// The item plan's `exceptions` (meaningful on `_all` items).
    pub exceptions: Vec<&'a str>,
}

impl<'a> DeliveryBody<'a> {
    pub fn new(account_id: &'a str, sync_id: &'a str, invoice: &'a Invoice) -> DeliveryBody<'a> {
        let mut items: BTreeMap<&str, BTreeMap<&str, LegacyItem>> = BTreeMap::new();
        for item in &invoice.items {
            items
                .entry(item.category.as_str())
                .or_default()
                .insert(item.item.as_str(), LegacyItem::new(item, exceptions(invoice, item)));
        }
        DeliveryBody {
            account_id,
            sync_id,
            items,
            bookkeeper: BookkeeperJson::from(&invoice.bookkeeper),
            invoice: InvoiceJson {
                plan: None,
                ..InvoiceJson::from(invoice)
            },
        }
    }
}

/// The `exceptions` of the item's plan in the invoice's merged plan.
fn exceptions<'a>(invoice: &'a Invoice, item: &PricedItem) -> Vec<&'a str> {
    let item_plan = invoice
        .plan
        .get(item.category.as_str())
        .and_then(Value::as_object)
        .and_then(|items| items.get(item.plan_item.as_str()));
    match item_plan
        .and_then(Value::as_object)
        .and_then(|plan| plan.get("exceptions"))
    {
        Some(Value::Array(names)) => names.iter().filter_map(Value::as_str).collect(),
        _ => Vec::new(),
    }
}

impl<'a> LegacyItem<'a> {
    fn new(item: &'a PricedItem, exceptions: Vec<&'a str>) -> Self {
        LegacyItem {
            category: item.category.as_str(),
            item: &item.item,
            name: &item.name,
            quantity: item.billable,
            rate: Amount(item.rate),
            single_discount: !item.discounts.single.is_zero(),
            single_discount_rate: Amount(item.discounts.single),
            cumulative_discount: item.discounts.cumulative_quantity,
            cumulative_discount_rate: Amount(item.discounts.cumulative_rate),
            activation_charge: Amount(item.activation_charge.unwrap_or(Money::ZERO)),
            minimum: item.minimum,
            exceptions,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::merge::StrategyPriorities;
    use crate::quote::{parse_request, price};
    use serde_json::json;

    #[test]
    fn the_body_carries_legacy_items_and_the_invoice_without_its_plan() {
        let request = r#"{"plans":[{"id":"p","bookkeeper":{"type":"http"},"plan":{"devices":{
            "sip_device":{"rate":29.99,"name":"SIP Device","discounts":{"single":{"rate":5}}},
            "_all":{"rate":1,"as":"sip_device","exceptions":["softphone"]}}}}],
            "quantities":{"account":{"devices":{"sip_device":4}}}}"#;
        let quote = price(&parse_request(request).expect("valid"), &StrategyPriorities::default()).expect("prices");
        let body = serde_json::to_value(DeliveryBody::new("acct", "sync-1", &quote.invoices[0])).expect("serialises");

        assert_eq!(body["account_id"], json!("acct"));
        assert_eq!(body["sync_id"], json!("sync-1"));
        assert_eq!(
            body["bookkeeper"],
            json!({"type": "http", "vendor_id": "reseller", "id": "default_bookkeeper"})
        );
        // `_all` masquerading as `sip_device` sorts first (plan item `_all`); the plain
        // item comes later in invoice order and wins the legacy map.
        assert_eq!(
            body["items"]["devices"]["sip_device"],
            json!({
                "category": "devices", "item": "sip_device", "name": "SIP Device", "quantity": 4, "rate": 29.99,
                "single_discount": true, "single_discount_rate": 5, "cumulative_discount": 0,
                "cumulative_discount_rate": 0, "activation_charge": 0, "minimum": 0, "exceptions": []
            })
        );
        assert_eq!(
            body["invoice"]["items"].as_array().map(Vec::len),
            Some(2),
            "the invoice keeps both"
        );
        assert!(body["invoice"].get("plan").is_none());
        assert_eq!(body["invoice"]["summary"], json!({"recurring": 118.96, "today": 0}));
    }

    #[test]
    fn legacy_items_carry_their_plan_exceptions() {
        let request =
            r#"{"plans":[{"id":"p","plan":{"devices":{"_all":{"rate":1,"exceptions":["softphone","fax"]}}}}]}"#;
        let quote = price(&parse_request(request).expect("valid"), &StrategyPriorities::default()).expect("prices");
        let body = serde_json::to_value(DeliveryBody::new("acct", "sync-1", &quote.invoices[0])).expect("serialises");
        assert_eq!(
            body["items"]["devices"]["_all"]["exceptions"],
            json!(["softphone", "fax"])
        );
    }
}
