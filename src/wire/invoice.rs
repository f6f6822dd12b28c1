//! The JSON form of invoices (`pricing.md` §7-§8, `quote-format.md`).
//!
//! One rendering serves the quote response, audit rows and bookkeeper deliveries, so
//! an invoice reads the same wherever it appears. The wire structs below borrow from
//! the domain invoice and serialize straight to text; zero discount members and empty
//! objects are omitted; money is a plain JSON number in shortest exact form.

use super::document::{from_json, map_from_json, Amount, Document};
use crate::domain::document::Map as DocumentMap;
use crate::domain::invoice::{ActivationCharge, Difference, Discounts, Invoice, ItemChanges, PricedItem};
use crate::domain::plan::BookkeeperRef;
use crate::domain::{Category, ItemName, Money};
use serde::Serialize;
use serde_json::value::RawValue;
use serde_json::{Map, Value};
use std::sync::Arc;

/// An invoice as JSON.
#[derive(Debug, Serialize)]
pub struct InvoiceJson<'a> {
    pub bookkeeper: BookkeeperJson<'a>,
    /// The merged plan; left out of bookkeeper deliveries.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub plan: Option<Document<'a>>,
    pub items: Vec<ItemJson<'a>>,
    pub activation_charges: Vec<ActivationChargeJson<'a>>,
    pub taxes: [(); 0],
    pub summary: SummaryJson,
}

#[derive(Debug, Serialize)]
pub struct BookkeeperJson<'a> {
    #[serde(rename = "type")]
    pub kind: &'a str,
    pub vendor_id: &'a str,
    pub id: &'a str,
}

#[derive(Debug, Serialize)]
pub struct SummaryJson {
    pub recurring: Amount,
    pub today: Amount,
}

#[derive(Debug, Serialize)]
pub struct ItemJson<'a> {
    pub category: &'a str,
    pub item: &'a str,
    pub plan_item: &'a str,
    pub name: &'a str,
    pub quantity: i64,
    pub billable: i64,
    pub rate: Amount,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub discounts: Option<DiscountsJson>,
    #[serde(skip_serializing_if = "is_zero")]
    pub minimum: i64,
    #[serde(skip_serializing_if = "is_zero")]
    pub maximum: i64,
    pub prorate: ProrateJson<'a>,
    pub total: Amount,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub activation_charge: Option<Amount>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub changes: Option<ChangesJson<'a>>,
}

/// The plan's own `prorate` object, or both flags true.
#[derive(Debug, Serialize)]
#[serde(untagged)]
pub enum ProrateJson<'a> {
    Plan(Document<'a>),
    Default { additions: bool, removals: bool },
}

/// `{total, single: {rate}, cumulative: {rate, quantity}}` without zero members.
#[derive(Debug, Serialize)]
pub struct DiscountsJson {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub total: Option<Amount>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub single: Option<SingleDiscountJson>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cumulative: Option<CumulativeDiscountJson>,
}

#[derive(Debug, Serialize)]
pub struct SingleDiscountJson {
    pub rate: Amount,
}

#[derive(Debug, Serialize)]
pub struct CumulativeDiscountJson {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rate: Option<Amount>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub quantity: Option<i64>,
}

#[derive(Debug, Serialize)]
pub struct ChangesJson<'a> {
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub difference: DifferenceJson<'a>,
}

#[derive(Debug, Serialize)]
pub struct DifferenceJson<'a> {
    #[serde(skip_serializing_if = "is_zero")]
    pub billable: i64,
    #[serde(skip_serializing_if = "is_zero")]
    pub quantity: i64,
    #[serde(skip_serializing_if = "is_zero")]
    pub minimum: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rate: Option<Amount>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub discounts: Option<DiscountsJson>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub category: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub item: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<&'a str>,
}

#[derive(Debug, Serialize)]
pub struct ActivationChargeJson<'a> {
    pub category: &'a str,
    /// The real item (plan key), never the `as` name.
    pub item: &'a str,
    pub plan_item: &'a str,
    pub name: &'a str,
    pub billable: i64,
    pub rate: Amount,
    pub total: Amount,
}

fn is_zero(value: &i64) -> bool {
    *value == 0
}

fn nonzero(amount: Money) -> Option<Amount> {
    (!amount.is_zero()).then_some(Amount(amount))
}

impl<'a> From<&'a Invoice> for InvoiceJson<'a> {
    fn from(invoice: &'a Invoice) -> Self {
        InvoiceJson {
            bookkeeper: BookkeeperJson::from(&invoice.bookkeeper),
            plan: Some(Document::Map(&invoice.plan)),
            items: invoice.items.iter().map(ItemJson::from).collect(),
            activation_charges: invoice
                .activation_charges
                .iter()
                .map(ActivationChargeJson::from)
                .collect(),
            taxes: [],
            summary: SummaryJson {
                recurring: Amount(invoice.recurring),
                today: Amount(invoice.today),
            },
        }
    }
}

impl<'a> From<&'a BookkeeperRef> for BookkeeperJson<'a> {
    fn from(bookkeeper: &'a BookkeeperRef) -> Self {
        BookkeeperJson {
            kind: &bookkeeper.kind,
            vendor_id: &bookkeeper.vendor_id,
            id: &bookkeeper.id,
        }
    }
}

impl<'a> From<&'a PricedItem> for ItemJson<'a> {
    fn from(item: &'a PricedItem) -> Self {
        ItemJson {
            category: item.category.as_str(),
            item: &item.item,
            plan_item: item.plan_item.as_str(),
            name: &item.name,
            quantity: item.quantity,
            billable: item.billable,
            rate: Amount(item.rate),
            discounts: DiscountsJson::from_discounts(&item.discounts),
            minimum: item.minimum,
            maximum: item.maximum,
            prorate: match &item.prorate {
                Some(prorate) => ProrateJson::Plan(Document::Map(prorate)),
                None => ProrateJson::Default {
                    additions: true,
                    removals: true,
                },
            },
            total: Amount(item.total),
            activation_charge: item.activation_charge.map(Amount),
            changes: item.changes.as_ref().map(ChangesJson::from),
        }
    }
}

impl DiscountsJson {
    fn from_discounts(discounts: &Discounts) -> Option<DiscountsJson> {
        let cumulative = CumulativeDiscountJson {
            rate: nonzero(discounts.cumulative_rate),
            quantity: (discounts.cumulative_quantity != 0).then_some(discounts.cumulative_quantity),
        };
        let json = DiscountsJson {
            total: nonzero(discounts.total),
            single: nonzero(discounts.single).map(|rate| SingleDiscountJson { rate }),
            cumulative: (cumulative.rate.is_some() || cumulative.quantity.is_some()).then_some(cumulative),
        };
        (json.total.is_some() || json.single.is_some() || json.cumulative.is_some()).then_some(json)
    }
}

impl<'a> From<&'a ItemChanges> for ChangesJson<'a> {
    fn from(changes: &'a ItemChanges) -> Self {
        ChangesJson {
            kind: changes.kind.as_str(),
            difference: DifferenceJson::from(&changes.difference),
        }
    }
}

impl<'a> From<&'a Difference> for DifferenceJson<'a> {
    fn from(difference: &'a Difference) -> Self {
        DifferenceJson {
            billable: difference.billable,
            quantity: difference.quantity,
            minimum: difference.minimum,
            rate: nonzero(difference.rate),
            discounts: DiscountsJson::from_discounts(&Discounts {
                single: difference.single_rate,
                cumulative_rate: difference.cumulative_rate,
                cumulative_quantity: difference.cumulative_quantity,
                total: Money::ZERO,
            }),
            category: difference.category.as_deref(),
            item: difference.item.as_deref(),
            name: difference.name.as_deref(),
        }
    }
}

impl<'a> From<&'a ActivationCharge> for ActivationChargeJson<'a> {
    fn from(charge: &'a ActivationCharge) -> Self {
        ActivationChargeJson {
            category: charge.category.as_str(),
            item: charge.plan_item.as_str(),
            plan_item: charge.plan_item.as_str(),
            name: &charge.name,
            billable: charge.billable,
            rate: Amount(charge.rate),
            total: Amount(charge.total),
        }
    }
}

/// An invoice as a JSON value, for callers that store or embed it.
pub fn invoice(invoice: &Invoice) -> Value {
    serde_json::to_value(InvoiceJson::from(invoice)).expect("invoice JSON has string keys and finite numbers")
}

/// [`InvoiceJson`] with its plan already rendered ([`plan_text`]).
#[derive(Debug, Serialize)]
struct RenderedPlanInvoiceJson<'a> {
    bookkeeper: BookkeeperJson<'a>,
    plan: &'a RawValue,
    items: Vec<ItemJson<'a>>,
    activation_charges: Vec<ActivationChargeJson<'a>>,
    taxes: [(); 0],
    summary: SummaryJson,
}

/// The text of an invoice's merged plan, as [`invoice`] renders it.
pub fn plan_text(plan: &DocumentMap) -> Box<RawValue> {
    serde_json::value::to_raw_value(&Document::Map(plan)).expect("plan JSON has string keys and finite numbers")
}

/// The text of [`invoice`], given the text of its plan: the accounts that share a
/// merged plan (most of a sync batch) have it rendered once, not once per invoice.
pub fn invoice_text(invoice: &Invoice, plan: &RawValue) -> String {
    let json = InvoiceJson::from(invoice);
    serde_json::to_string(&RenderedPlanInvoiceJson {
        bookkeeper: json.bookkeeper,
        plan,
        items: json.items,
        activation_charges: json.activation_charges,
        taxes: [],
        summary: json.summary,
    })
    .expect("invoice JSON has string keys and finite numbers")
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
        None => DocumentMap::new(),
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

    #[test]
    fn an_invoice_with_its_plan_rendered_apart_is_the_same_text() {
        let text =
            std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/examples/quote.json")).expect("example");
        let request = parse_request(&text).expect("valid example");
        let quote = price(&request, &StrategyPriorities::default()).expect("prices");
        assert!(!quote.invoices.is_empty());
        for original in &quote.invoices {
            assert!(!original.plan.is_empty(), "the example's invoices carry their plan");
            let plan = plan_text(&original.plan);
            assert_eq!(invoice_text(original, &plan), invoice(original).to_string());
        }
    }
}
