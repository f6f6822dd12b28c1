//! The JSON form of an explanation (`tally services explain`, `GET …/services/explain`).
//!
//! One object per invoice, one per line; money as exact JSON numbers like invoices.
//! Every figure is read from the domain's [`LineDerivation`], never recomputed here.

use super::document::{Amount, Document};
use crate::domain::explain::{FieldSource, InvoiceExplanation, LineExplanation, QuantitySource};
use crate::domain::pricing::{BillableBound, DiscountOutcome, DiscountRateSource, LineDerivation, RateRule};
use crate::domain::Money;
use serde_json::{json, Value};

/// The explanation of an account's invoices.
pub fn explanation(invoices: &[InvoiceExplanation]) -> Value {
    Value::Array(invoices.iter().map(invoice).collect())
}

fn amount(money: Money) -> Value {
    serde_json::to_value(Amount(money)).expect("an amount is a JSON number")
}

fn invoice(explained: &InvoiceExplanation) -> Value {
    let bookkeeper = &explained.invoice.bookkeeper;
    let plans: Vec<Value> = explained
        .plans
        .iter()
        .map(|plan| {
            json!({
                "id": plan.id.as_str(),
                "vendor_id": plan.vendor_id.as_ref().map(|vendor| vendor.as_str()),
                "strategy": plan.strategy.as_str(),
                "priority": plan.priority,
            })
        })
        .collect();
    json!({
        "bookkeeper": { "type": bookkeeper.kind, "vendor_id": bookkeeper.vendor_id, "id": bookkeeper.id },
        "plans": plans,
        "lines": explained.lines.iter().map(line).collect::<Vec<_>>(),
        "recurring": amount(explained.invoice.recurring),
    })
}

fn line(line: &LineExplanation) -> Value {
    let item = &line.item;
    let derivation = &line.derivation;
    json!({
        "category": item.category.as_str(),
        "item": item.item,
        "plan_item": item.plan_item.as_str(),
        "name": item.name,
        "fields": line.fields.iter().map(field).collect::<Vec<_>>(),
        "quantity": quantity(&line.quantity, derivation.quantity),
        "billable": billable(derivation),
        "rate": rate(derivation),
        "charge": amount(derivation.charge),
        "discounts": discounts(derivation),
        "activation_charge": item.activation_charge.map(amount),
        "total": {
            "exact": amount(derivation.exact_total),
            "rounded": amount(derivation.total),
            "rounding": format!("{} places, half away from zero", Money::LINE_TOTAL_PLACES),
        },
    })
}

fn field(field: &FieldSource) -> Value {
    let writers: Vec<Value> = field
        .written_by
        .iter()
        .map(|writer| {
            json!({
                "plan": writer.plan.as_str(),
                "vendor_id": writer.vendor_id.as_ref().map(|vendor| vendor.as_str()),
                "layer": writer.layer.as_str(),
            })
        })
        .collect();
    let mut json = json!({
        "path": field.path.to_string(),
        "value": serde_json::to_value(Document::Value(&field.value)).expect("a document is JSON"),
        "from": writers,
    });
    if let Some(rule) = &field.combined_by {
        json["combined_by"] = Value::String(rule.clone());
    }
    json
}

fn quantity(source: &QuantitySource, value: i64) -> Value {
    let sources: Vec<Value> = source
        .counted
        .iter()
        .map(|(item, parts)| {
            let mut json = json!({
                "item": item.as_str(),
                "account": parts.account,
                "manual": parts.manual,
                "used": if parts.manual.is_some() { "manual" } else { "account" },
            });
            if source.cascade {
                json["cascade"] = json!(parts.cascade);
            }
            json
        })
        .collect();
    json!({
        "value": value,
        "counts": if source.category_sum { "category" } else { "item" },
        "cascade": source.cascade,
        "deleted": source.deleted,
        "sources": sources,
        "excepted": source.excepted.iter().map(|item| item.as_str()).collect::<Vec<_>>(),
    })
}

fn billable(derivation: &LineDerivation) -> Value {
    let bound = match derivation.bound {
        BillableBound::Quantity => "quantity",
        BillableBound::Minimum => "minimum",
        BillableBound::Maximum => "maximum",
    };
    json!({
        "step": derivation.step,
        "stepped_quantity": wide(derivation.stepped),
        "minimum": wide(derivation.minimum),
        "maximum": wide(derivation.maximum),
        "bound": bound,
        "value": derivation.bounded,
    })
}

/// A step-rounded count: rounding up may leave the 64-bit range, never the JSON one.
fn wide(count: i128) -> Value {
    serde_json::Number::from_i128(count).map_or(Value::Null, Value::Number)
}

fn rate(derivation: &LineDerivation) -> Value {
    let (rule, threshold) = match derivation.rate_rule {
        RateRule::FlatTier { threshold } => ("flat_rates", Some(threshold)),
        RateRule::FlatRate => ("flat_rate", None),
        RateRule::Tier { threshold } => ("rates", Some(threshold)),
        RateRule::PlainRate => ("rate", None),
    };
    json!({
        "rule": rule,
        "threshold": threshold,
        "value": amount(derivation.rate),
        "billable": derivation.billable,
    })
}

fn discounts(derivation: &LineDerivation) -> Value {
    let single = match derivation.single {
        DiscountOutcome::Applied { rate_source } => json!({
            "outcome": "applied",
            "rate": amount(derivation.discounts.single),
            "rate_from": rate_source_path(rate_source, "single"),
        }),
        other => not_applied(other),
    };
    let cumulative = match derivation.cumulative {
        DiscountOutcome::Applied { rate_source } => json!({
            "outcome": "applied",
            "cap": derivation.cumulative_cap,
            "quantity": derivation.discounts.cumulative_quantity,
            "rate": amount(derivation.discounts.cumulative_rate),
            "rate_from": rate_source_path(rate_source, "cumulative"),
        }),
        other => not_applied(other),
    };
    json!({
        "plain_rate": amount(derivation.plain_rate),
        "single": single,
        "cumulative": cumulative,
        "exact": amount(derivation.discount),
        "total": amount(derivation.discounts.total),
    })
}

fn not_applied(outcome: DiscountOutcome) -> Value {
    match outcome {
        DiscountOutcome::NotConfigured => json!({ "outcome": "not_configured" }),
        DiscountOutcome::NoPlainRate => json!({ "outcome": "no_plain_rate" }),
        DiscountOutcome::BelowMinimum { minimum } => json!({ "outcome": "below_minimum", "minimum": minimum }),
        DiscountOutcome::Applied { .. } => json!({ "outcome": "applied" }),
    }
}

/// The item-plan path the discount's rate was read from.
fn rate_source_path(source: DiscountRateSource, discount: &str) -> String {
    match source {
        DiscountRateSource::Own => format!("discounts.{discount}.rate"),
        DiscountRateSource::Tier { threshold } => format!("discounts.{discount}.rates.\"{threshold}\""),
        DiscountRateSource::PlainRate => "rate".to_owned(),
    }
}
