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
use super::quantities::{CountTrace, NoCountTrace, QuantityBuckets};
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
    price_invoice_traced(merged, quantities, &mut NoCountTrace)
}

/// Receives how every line of an invoice was priced, from the pricing itself: first
/// the count of the line's quantity ([`CountTrace`]), then its [`LineDerivation`].
/// Explanations record them; [`price_invoice`] passes the no-op [`NoCountTrace`], so
/// plain pricing does no extra work.
pub trait PricingTrace: CountTrace {
    fn line(&mut self, entry: &PlanItem, derivation: &LineDerivation);
}

impl PricingTrace for NoCountTrace {
    fn line(&mut self, _entry: &PlanItem, _derivation: &LineDerivation) {}
}

/// [`price_invoice`], telling `trace` how each line was reached.
pub fn price_invoice_traced(
    merged: &MergedPlan,
    quantities: &QuantityBuckets,
    trace: &mut impl PricingTrace,
) -> Result<Invoice, PricingError> {
    let items = merged
        .items
        .iter()
        .map(|entry| {
            let quantity = count_item_quantity(quantities, &entry.category, &entry.plan_item, &entry.plan, trace);
            let derivation = derive_line(&entry.category, &entry.plan_item, &entry.plan, quantity)?;
            trace.line(entry, &derivation);
            Ok(priced_item(&entry.category, &entry.plan_item, &entry.plan, &derivation))
        })
        .collect::<Result<Vec<_>, PricingError>>()?;
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
    count_item_quantity(quantities, category, plan_item, item_plan, &mut NoCountTrace)
}

fn count_item_quantity(
    quantities: &QuantityBuckets,
    category: &Category,
    plan_item: &ItemName,
    item_plan: &ItemPlan,
    trace: &mut impl CountTrace,
) -> i64 {
    if plan_item.is_all() {
        quantities.count_category(category, &item_plan.exceptions, item_plan.cascade, trace)
    } else {
        quantities.count_item(category, plan_item, item_plan.cascade, trace)
    }
}

/// Which bound set the billable quantity (`pricing.md` §3 step 4).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BillableBound {
    /// The step-rounded quantity lies between the minimum and the maximum.
    Quantity,
    /// Below the (step-rounded) minimum: the minimum is billed.
    Minimum,
    /// Above the (step-rounded) maximum: the maximum is billed.
    Maximum,
}

/// Which rule of `pricing.md` §4 chose the rate; the thresholds are the tiers chosen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RateRule {
    /// `flat_rates` tier: billed once at that price.
    FlatTier { threshold: u64 },
    /// `flat_rate` > 0: billed once at that price.
    FlatRate,
    /// `rates` tier: every billable unit at that price.
    Tier { threshold: u64 },
    /// The plain `rate` (0 when absent).
    PlainRate,
}

/// Why a discount took or did not take effect (`pricing.md` §5).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DiscountOutcome {
    /// The merged item plan has no such discount.
    NotConfigured,
    /// Discounts need a plain `rate` above 0 (their default amount).
    NoPlainRate,
    /// The billable quantity is below the discount's `minimum`.
    BelowMinimum {
        minimum: i64,
    },
    Applied {
        rate_source: DiscountRateSource,
    },
}

/// Where an applied discount's rate came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DiscountRateSource {
    /// The discount's own `rate`.
    Own,
    /// A tier of `discounts.cumulative.rates`, chosen by the discounted quantity.
    Tier { threshold: u64 },
    /// The item's plain `rate`, the default amount.
    PlainRate,
}

/// Every intermediate figure of one line's price (`pricing.md` §3-§6, §12): the
/// invoice line is built from it, and so is its explanation, so the two cannot
/// disagree. Small and `Copy`: computing it allocates nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LineDerivation {
    pub quantity: i64,
    /// The step (≥ 1) every bound and the quantity were rounded up to.
    pub step: i64,
    /// The quantity rounded up to the step.
    pub stepped: i128,
    /// The minimum rounded up to the step (0 without one).
    pub minimum: i128,
    /// The maximum rounded up to the step (the quantity without one).
    pub maximum: i128,
    pub bound: BillableBound,
    /// The billable quantity after step, minimum and maximum.
    pub bounded: i64,
    pub rate_rule: RateRule,
    /// The billable quantity after the rate rule (1 under a flat rate).
    pub billable: i64,
    pub rate: Money,
    /// `billable × rate`, exact.
    pub charge: Money,
    /// The plain `rate`, which decides whether discounts apply and is their default.
    pub plain_rate: Money,
    pub single: DiscountOutcome,
    pub cumulative: DiscountOutcome,
    /// `discounts.cumulative.maximum`: how many units may get the cumulative discount.
    pub cumulative_cap: i64,
    /// The line's discount figures; `total` is the exact discount rounded.
    pub discounts: Discounts,
    /// `single + cumulative quantity × cumulative rate`, exact.
    pub discount: Money,
    /// `charge − discount`, exact.
    pub exact_total: Money,
    /// `exact_total` rounded by [`Money::round_line_total`].
    pub total: Money,
}

/// Prices one item plan for a quantity (`pricing.md` §3-§7).
pub fn price_item(
    category: &Category,
    plan_item: &ItemName,
    item_plan: &ItemPlan,
    quantity: i64,
) -> Result<PricedItem, PricingError> {
    let derivation = derive_line(category, plan_item, item_plan, quantity)?;
    Ok(priced_item(category, plan_item, item_plan, &derivation))
}

/// The figures of one line (`pricing.md` §3-§6), rounded once (§12).
pub fn derive_line(
    category: &Category,
    plan_item: &ItemName,
    item_plan: &ItemPlan,
    quantity: i64,
) -> Result<LineDerivation, PricingError> {
    let out_of_range = |what: &'static str| PricingError::ItemOutOfRange {
        category: category.to_string(),
        item: plan_item.to_string(),
        what,
    };

    // §3: step, minimum, maximum.
    let step = item_plan.step.max(1);
    let round_up = |units: i128| -> i128 {
        let step = i128::from(step);
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
    let (bound, bounded) = if stepped < minimum {
        (BillableBound::Minimum, minimum)
    } else if stepped > maximum {
        (BillableBound::Maximum, maximum)
    } else {
        (BillableBound::Quantity, stepped)
    };
    let bounded = i64::try_from(bounded).map_err(|_| out_of_range("billable quantity"))?;

    // §4: the first rule that succeeds sets the rate.
    let (rate_rule, rate, billable) = if let Some((threshold, flat)) = item_plan.flat_rates.lookup_tier(bounded) {
        (RateRule::FlatTier { threshold }, flat, 1)
    } else if let Some(flat) = item_plan.flat_rate.filter(|flat| flat.is_positive()) {
        (RateRule::FlatRate, flat, 1)
    } else if let Some((threshold, tiered)) = item_plan.rates.lookup_tier(bounded) {
        (RateRule::Tier { threshold }, tiered, bounded)
    } else {
        (RateRule::PlainRate, item_plan.rate.unwrap_or(Money::ZERO), bounded)
    };

    // §5: discounts only exist on items with a plain positive rate, their default amount.
    let plain_rate = item_plan.rate.unwrap_or(Money::ZERO);
    let mut discounts = Discounts::default();
    let single = match &item_plan.single_discount {
        None => DiscountOutcome::NotConfigured,
        Some(_) if !plain_rate.is_positive() => DiscountOutcome::NoPlainRate,
        Some(single) if billable < single.minimum => DiscountOutcome::BelowMinimum {
            minimum: single.minimum,
        },
        Some(single) => {
            discounts.single = single.rate.unwrap_or(plain_rate);
            let rate_source = match single.rate {
                Some(_) => DiscountRateSource::Own,
                None => DiscountRateSource::PlainRate,
            };
            DiscountOutcome::Applied { rate_source }
        }
    };
    let cumulative = match &item_plan.cumulative_discount {
        None => DiscountOutcome::NotConfigured,
        Some(_) if !plain_rate.is_positive() => DiscountOutcome::NoPlainRate,
        Some(cumulative) if billable < cumulative.minimum => DiscountOutcome::BelowMinimum {
            minimum: cumulative.minimum,
        },
        Some(cumulative) => {
            discounts.cumulative_quantity = cumulative.maximum.min(billable);
            let (rate_source, rate) = match (
                cumulative.rates.lookup_tier(discounts.cumulative_quantity),
                cumulative.rate,
            ) {
                (Some((threshold, tiered)), _) => (DiscountRateSource::Tier { threshold }, tiered),
                (None, Some(own)) => (DiscountRateSource::Own, own),
                (None, None) => (DiscountRateSource::PlainRate, plain_rate),
            };
            discounts.cumulative_rate = rate;
            DiscountOutcome::Applied { rate_source }
        }
    };
    let cumulative_cap = item_plan
        .cumulative_discount
        .as_ref()
        .map_or(0, |cumulative| cumulative.maximum);
    let discount = discounts
        .cumulative_rate
        .times(discounts.cumulative_quantity)
        .and_then(|cumulative| cumulative.checked_add(discounts.single))
        .map_err(|MoneyOverflow| out_of_range("discount"))?;
    discounts.total = discount.round_line_total();

    // §6, rounded once (§12).
    let charge = rate.times(billable).map_err(|MoneyOverflow| out_of_range("total"))?;
    let exact_total = charge
        .checked_sub(discount)
        .map_err(|MoneyOverflow| out_of_range("total"))?;
    Ok(LineDerivation {
        quantity,
        step,
        stepped,
        minimum,
        maximum,
        bound,
        bounded,
        rate_rule,
        billable,
        rate,
        charge,
        plain_rate,
        single,
        cumulative,
        cumulative_cap,
        discounts,
        discount,
        exact_total,
        total: exact_total.round_line_total(),
    })
}

/// The invoice line (`pricing.md` §7) of a derivation.
fn priced_item(
    category: &Category,
    plan_item: &ItemName,
    item_plan: &ItemPlan,
    derivation: &LineDerivation,
) -> PricedItem {
    let item = item_plan.masquerade.clone().unwrap_or_else(|| plan_item.to_string());
    let name = match (&item_plan.name, plan_item.is_all()) {
        (Some(name), _) => name.clone(),
        (None, true) => category.to_string(),
        (None, false) => format!("{category}/{item}"),
    };
    PricedItem {
        category: category.clone(),
        plan_item: plan_item.clone(),
        masqueraded: item != plan_item.as_str(),
        item,
        name,
        quantity: derivation.quantity,
        billable: derivation.billable,
        rate: derivation.rate,
        discounts: derivation.discounts,
        minimum: item_plan.minimum.unwrap_or(0),
        maximum: item_plan.maximum.unwrap_or(derivation.quantity),
        prorate: item_plan.prorate.clone(),
        total: derivation.total,
        activation_charge: item_plan.activation_charge,
        changes: None,
    }
}
