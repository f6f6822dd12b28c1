//! Item pricing (`pricing.md` §1-§8): from a merged plan and quantities to an invoice.
//!
//! For each item plan: the quantity (§2), the billable quantity after step, minimum
//! and maximum (§3), the rate (§4: flat tiers, flat rate, tiers, plain rate), the
//! discounts (§5) and the total (§6), rounded once to four places (§12). Arithmetic is
//! checked: an amount out of the decimal range is an error, never a panic.

use super::document::{Map, Value};
use super::ids::{Category, ItemName};
use super::invoice::{Discounts, Invoice, PricedItem};
use super::item_plan::ItemPlan;
use super::merge::{merge_plans, StrategyPriorities};
use super::money::{Money, MoneyOverflow};
use super::plan::{resolve_plans, AssignedPlan, BookkeeperRef, PlanContext};
use super::quantities::QuantityBuckets;
use std::sync::Arc;

/// Why an invoice could not be computed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PricingError {
    /// An item's amount or quantity left the representable range (absurd input).
    #[error("item {category}.{item}: {what} out of range")]
    ItemOutOfRange {
        category: String,
        item: String,
        what: &'static str,
    },
    /// A sum over an invoice's lines left the representable range.
    #[error("invoice for bookkeeper {bookkeeper}: {what} out of range")]
    InvoiceOutOfRange { bookkeeper: String, what: &'static str },
    /// The difference between two invoices left the representable range.
    #[error("the change between the last and the new invoices is out of range")]
    ChangeOutOfRange,
    /// An amount tally would have to store lies beyond the largest stored amount.
    #[error("invoice for bookkeeper {bookkeeper}: {what} {amount} is beyond the largest amount tally stores (±{largest})", largest = Money::LARGEST_STORED)]
    NotStorable {
        bookkeeper: String,
        what: String,
        amount: Money,
    },
}

/// The largest count of one item tally accepts as input (a manual quantity, or an
/// item plan's `minimum`, `maximum`, `step` and discount counts): a trillion. At that
/// many units, any rate up to 922.3372 still totals within [`Money::LARGEST_STORED`];
/// larger counts describe no real account and only turn into unbillable amounts.
pub const LARGEST_QUANTITY: i64 = 1_000_000_000_000;

/// Checks that every amount of an invoice that is stored (item totals, discount
/// totals, activation lines, the summary) fits the store's whole Kazoo units, so an
/// unbillable account is refused alone, before its batch is written.
pub fn check_storable(invoice: &Invoice) -> Result<(), PricingError> {
    let refuse = |what: String, amount: Money| PricingError::NotStorable {
        bookkeeper: invoice.bookkeeper.to_string(),
        what,
        amount,
    };
    for item in &invoice.items {
        for (what, amount) in [("total", item.total), ("discount total", item.discounts.total)] {
            if amount.to_units().is_none() {
                return Err(refuse(
                    format!("item {}.{} {what}", item.category, item.plan_item),
                    amount,
                ));
            }
        }
    }
    for line in &invoice.activation_charges {
        if line.total.to_units().is_none() {
            let what = format!("activation charge of {}.{}", line.category, line.plan_item);
            return Err(refuse(what, line.total));
        }
    }
    for (what, amount) in [("recurring total", invoice.recurring), ("today's total", invoice.today)] {
        if amount.to_units().is_none() {
            return Err(refuse(what.to_owned(), amount));
        }
    }
    Ok(())
}

/// The merged plan of one bookkeeper: what one invoice is priced from.
///
/// Its item plans are read once, when it is built, so that pricing the same plan for
/// several quantity sets (current and proposed, or many accounts) is arithmetic only.
#[derive(Debug, Clone, PartialEq)]
pub struct MergedPlan {
    pub bookkeeper: BookkeeperRef,
    /// The merged document (`_id` = `single`, `bookkeeper`, `applications`, ...) but
    /// for its `plan` member, which is kept apart in `plan`.
    pub document: Map,
    /// The `plan` member: category → item → item plan, shared with every invoice.
    pub plan: Arc<Map>,
    /// Every item plan of `plan`, read, in category then item order.
    pub items: Vec<PlanItem>,
}

/// One `(category, item)` entry of a merged plan.
#[derive(Debug, Clone, PartialEq)]
pub struct PlanItem {
    pub category: Category,
    pub plan_item: ItemName,
    pub plan: ItemPlan,
}

impl MergedPlan {
    pub fn new(bookkeeper: BookkeeperRef, document: Map) -> MergedPlan {
        let plan = document
            .get("plan")
            .and_then(Value::as_object)
            .cloned()
            .unwrap_or_default();
        let mut items = Vec::new();
        for (category_name, category_plan) in &plan {
            let (Ok(category), Some(item_plans)) = (Category::parse(category_name.as_str()), category_plan.as_object())
            else {
                continue;
            };
            for (item_name, item_plan) in item_plans {
                // Non-object entries are not item plans (quirk Q-PLN-11).
                let (Ok(plan_item), Some(fields)) = (ItemName::parse(item_name.as_str()), item_plan.as_object()) else {
                    continue;
                };
                items.push(PlanItem {
                    category: category.clone(),
                    plan_item,
                    plan: ItemPlan::read_lenient(fields),
                });
            }
        }
        MergedPlan {
            bookkeeper,
            document,
            plan: Arc::new(plan),
            items,
        }
    }
}

/// Resolves, groups and merges an account's plans: one merged plan per bookkeeper,
/// sorted by bookkeeper (type, vendor, id) as invoices are.
pub fn merge_account_plans(
    context: &PlanContext,
    assigned: &[AssignedPlan],
    object_plans: &[AssignedPlan],
    priorities: &StrategyPriorities,
) -> Vec<MergedPlan> {
    let mut merged: Vec<MergedPlan> = resolve_plans(context, assigned, object_plans)
        .into_iter()
        .map(|group| MergedPlan::new(group.bookkeeper, merge_plans(group.plans, priorities)))
        .collect();
    merged.sort_by(|left, right| left.bookkeeper.cmp(&right.bookkeeper));
    merged
}

/// Prices every item of a merged plan (`pricing.md` §1, §8); no activation charges.
pub fn price_invoice(merged: &MergedPlan, quantities: &QuantityBuckets) -> Result<Invoice, PricingError> {
    let items = merged
        .items
        .iter()
        .map(|entry| {
            let quantity = item_quantity(quantities, &entry.category, &entry.plan_item, &entry.plan);
            price_item(&entry.category, &entry.plan_item, &entry.plan, quantity)
        })
        .collect::<Result<Vec<_>, _>>()?;
    Invoice::new(merged.bookkeeper.clone(), merged.plan.clone(), items, Vec::new()).map_err(|MoneyOverflow| {
        PricingError::InvoiceOutOfRange {
            bookkeeper: merged.bookkeeper.to_string(),
            what: "recurring total",
        }
    })
}

/// `pricing.md` §2: which quantity an item counts.
pub fn item_quantity(
    quantities: &QuantityBuckets,
    category: &Category,
    plan_item: &ItemName,
    item_plan: &ItemPlan,
) -> i64 {
    match (plan_item.is_all(), item_plan.cascade) {
        (true, false) => quantities.category(category, &item_plan.exceptions),
        (true, true) => quantities.cascade_category(category, &item_plan.exceptions),
        (false, false) => quantities.item(category, plan_item),
        (false, true) => quantities.cascade_item(category, plan_item),
    }
}

/// Prices one item plan for a quantity (`pricing.md` §3-§7).
pub fn price_item(
    category: &Category,
    plan_item: &ItemName,
    item_plan: &ItemPlan,
    quantity: i64,
) -> Result<PricedItem, PricingError> {
    let out_of_range = |what: &'static str| PricingError::ItemOutOfRange {
        category: category.to_string(),
        item: plan_item.to_string(),
        what,
    };

    // §3: step, minimum, maximum.
    let step = i128::from(item_plan.step.max(1));
    let round_up = |units: i128| -> i128 {
        let remainder = units.rem_euclid(step);
        if remainder == 0 {
            units
        } else {
            units - remainder + step
        }
    };
    let minimum = round_up(i128::from(item_plan.minimum.unwrap_or(0)));
    let maximum = round_up(i128::from(item_plan.maximum.unwrap_or(quantity)));
    let stepped = round_up(i128::from(quantity));
    let billable = if stepped < minimum {
        minimum
    } else if stepped > maximum {
        maximum
    } else {
        stepped
    };
    let mut billable = i64::try_from(billable).map_err(|_| out_of_range("billable quantity"))?;

    // §4: the first rule that succeeds sets the rate.
    let rate = if let Some(flat) = item_plan.flat_rates.lookup(billable) {
        billable = 1;
        flat
    } else if let Some(flat) = item_plan.flat_rate.filter(|flat| flat.is_positive()) {
        billable = 1;
        flat
    } else if let Some(tiered) = item_plan.rates.lookup(billable) {
        tiered
    } else {
        item_plan.rate.unwrap_or(Money::ZERO)
    };

    // §5: discounts only exist on items with a plain positive rate, their default amount.
    let base = item_plan.rate.unwrap_or(Money::ZERO);
    let mut discounts = Discounts::default();
    if base.is_positive() {
        if let Some(single) = item_plan
            .single_discount
            .as_ref()
            .filter(|single| billable >= single.minimum)
        {
            discounts.single = single.rate.unwrap_or(base);
        }
        if let Some(cumulative) = item_plan
            .cumulative_discount
            .as_ref()
            .filter(|cumulative| billable >= cumulative.minimum)
        {
            discounts.cumulative_quantity = cumulative.maximum.min(billable);
            discounts.cumulative_rate = cumulative
                .rates
                .lookup(discounts.cumulative_quantity)
                .or(cumulative.rate)
                .unwrap_or(base);
        }
    }
    let discount_total = discounts
        .cumulative_rate
        .times(discounts.cumulative_quantity)
        .and_then(|cumulative| cumulative.checked_add(discounts.single))
        .map_err(|MoneyOverflow| out_of_range("discount"))?;
    discounts.total = discount_total.round_line_total();

    // §6, rounded once (§12).
    let total = rate
        .times(billable)
        .and_then(|charge| charge.checked_sub(discount_total))
        .map_err(|MoneyOverflow| out_of_range("total"))?
        .round_line_total();

    let item = item_plan.masquerade.clone().unwrap_or_else(|| plan_item.to_string());
    let name = match (&item_plan.name, plan_item.is_all()) {
        (Some(name), _) => name.clone(),
        (None, true) => category.to_string(),
        (None, false) => format!("{category}/{item}"),
    };
    Ok(PricedItem {
        category: category.clone(),
        plan_item: plan_item.clone(),
        masqueraded: item != plan_item.as_str(),
        item,
        name,
        quantity,
        billable,
        rate,
        discounts,
        minimum: item_plan.minimum.unwrap_or(0),
        maximum: item_plan.maximum.unwrap_or(quantity),
        prorate: item_plan.prorate.clone(),
        total,
        activation_charge: item_plan.activation_charge,
        changes: None,
    })
}
