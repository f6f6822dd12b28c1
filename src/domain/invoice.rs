//! Invoices, their items, and the comparison of two invoices (`pricing.md` §7-§10).
//!
//! Annotation pairs the items of a current and a proposed invoice, records what
//! changed on each, and derives the activation charges from positive billable
//! differences. Resetting an item zeroes its billable quantity and its discounts
//! (quirk Q-PRC-6), so a removed item totals 0.

use super::document::Map;
use super::ids::{Category, ItemName};
use super::money::{Money, MoneyOverflow};
use super::plan::BookkeeperRef;
use std::collections::BTreeMap;
use std::sync::Arc;

/// The discount figures of an item; zero members are omitted from its JSON.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Discounts {
    pub single: Money,
    pub cumulative_rate: Money,
    pub cumulative_quantity: i64,
    /// `single + cumulative_quantity × cumulative_rate`, rounded to four places.
    pub total: Money,
}

/// One priced item of an invoice.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PricedItem {
    pub category: Category,
    /// The key in the merged plan (`_all` for category sums); unique in its category.
    pub plan_item: ItemName,
    /// The output name: the `as` value, or the plan key.
    pub item: String,
    /// Whether `as` renamed the item (to another name): part of the matching key of
    /// annotation, so `"as": "x"` on item `x` matches the plain item `x`.
    pub masqueraded: bool,
    pub name: String,
    pub quantity: i64,
    pub billable: i64,
    pub rate: Money,
    pub discounts: Discounts,
    /// The plan's `minimum` as written (0 when absent).
    pub minimum: i64,
    /// The plan's `maximum` as written, or the quantity when absent.
    pub maximum: i64,
    /// The plan's `prorate` object when it has one; bookkeepers get both flags true otherwise.
    pub prorate: Option<Map>,
    pub total: Money,
    /// The plan's one-time charge per added billable unit.
    pub activation_charge: Option<Money>,
    /// Set on annotated items that changed.
    pub changes: Option<ItemChanges>,
}

/// How an annotated item relates to the previous invoice.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChangeKind {
    Created,
    Modified,
    Removed,
}

impl ChangeKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ChangeKind::Created => "created",
            ChangeKind::Modified => "modified",
            ChangeKind::Removed => "removed",
        }
    }
}

/// `pricing.md` §9 step 3: proposed − current for numbers, the new text for strings;
/// zero or unchanged members are absent (`None` / 0).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Difference {
    pub billable: i64,
    pub quantity: i64,
    pub rate: Money,
    pub minimum: i64,
    pub single_rate: Money,
    pub cumulative_rate: Money,
    pub cumulative_quantity: i64,
    pub category: Option<String>,
    pub item: Option<String>,
    pub name: Option<String>,
}

impl Difference {
    pub fn is_empty(&self) -> bool {
        *self == Difference::default()
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ItemChanges {
    pub kind: ChangeKind,
    pub difference: Difference,
}

/// A one-time charge for added billable units (`pricing.md` §10).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActivationCharge {
    pub category: Category,
    /// The real item (plan key), never the `as` name.
    pub plan_item: ItemName,
    pub name: String,
    pub billable: i64,
    pub rate: Money,
    pub total: Money,
}

/// One bookkeeper's invoice.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invoice {
    pub bookkeeper: BookkeeperRef,
    /// The merged `plan` object it was priced from (shared, never copied).
    pub plan: Arc<Map>,
    /// Sorted by category, item, plan item.
    pub items: Vec<PricedItem>,
    /// Sorted by category, plan item.
    pub activation_charges: Vec<ActivationCharge>,
    /// Σ item totals.
    pub recurring: Money,
    /// Σ activation totals.
    pub today: Money,
}

impl Invoice {
    /// Sorts the lines and computes the summary from them.
    pub fn new(
        bookkeeper: BookkeeperRef,
        plan: Arc<Map>,
        mut items: Vec<PricedItem>,
        mut activation_charges: Vec<ActivationCharge>,
    ) -> Result<Invoice, MoneyOverflow> {
        items.sort_by(|left, right| {
            (&left.category, &left.item, &left.plan_item).cmp(&(&right.category, &right.item, &right.plan_item))
        });
        activation_charges
            .sort_by(|left, right| (&left.category, &left.plan_item).cmp(&(&right.category, &right.plan_item)));
        let recurring = Money::checked_sum(items.iter().map(|item| &item.total))?;
        let today = Money::checked_sum(activation_charges.iter().map(|charge| &charge.total))?;
        Ok(Invoice {
            bookkeeper,
            plan,
            items,
            activation_charges,
            recurring,
            today,
        })
    }

    /// The same invoice with no activation charge (`today` = 0).
    pub fn without_activation_charges(self) -> Result<Invoice, MoneyOverflow> {
        Invoice::new(self.bookkeeper, self.plan, self.items, Vec::new())
    }

    /// Whether any item carries changes.
    pub fn has_changes(&self) -> bool {
        self.items.iter().any(|item| item.changes.is_some())
    }

    /// Whether any item gained billable units (the 402 test of a dry run).
    pub fn has_billable_additions(&self) -> bool {
        self.items.iter().any(|item| {
            item.changes
                .as_ref()
                .is_some_and(|changes| changes.difference.billable > 0)
        })
    }
}

impl PricedItem {
    /// Kazoo's reset, with our fix: billable and every discount figure to zero.
    pub fn reset(&self) -> PricedItem {
        PricedItem {
            billable: 0,
            discounts: Discounts::default(),
            total: Money::ZERO,
            changes: None,
            ..self.clone()
        }
    }

    fn key(&self) -> (&Category, &ItemName, bool) {
        (&self.category, &self.plan_item, self.masqueraded)
    }
}

fn difference(current: &PricedItem, proposed: &PricedItem) -> Result<Difference, MoneyOverflow> {
    let changed_text = |before: &str, after: &str| (before != after).then(|| after.to_owned());
    Ok(Difference {
        billable: proposed.billable.saturating_sub(current.billable),
        quantity: proposed.quantity.saturating_sub(current.quantity),
        rate: proposed.rate.checked_sub(current.rate)?,
        minimum: proposed.minimum.saturating_sub(current.minimum),
        single_rate: proposed.discounts.single.checked_sub(current.discounts.single)?,
        cumulative_rate: proposed
            .discounts
            .cumulative_rate
            .checked_sub(current.discounts.cumulative_rate)?,
        cumulative_quantity: proposed
            .discounts
            .cumulative_quantity
            .saturating_sub(current.discounts.cumulative_quantity),
        category: changed_text(current.category.as_str(), proposed.category.as_str()),
        item: changed_text(&current.item, &proposed.item),
        name: changed_text(&current.name, &proposed.name),
    })
}

fn annotated(current: &PricedItem, proposed: &PricedItem, kind: ChangeKind) -> Result<PricedItem, MoneyOverflow> {
    let difference = difference(current, proposed)?;
    let mut item = proposed.clone();
    item.changes = (!difference.is_empty()).then_some(ItemChanges { kind, difference });
    Ok(item)
}

/// Annotates `proposed` against `current` (`pricing.md` §9) and adds its activation
/// charges (§10). Without a current invoice (a new bookkeeper) every item is compared
/// with its own reset, so all its billable units count as added.
pub fn annotate(current: Option<&Invoice>, proposed: &Invoice) -> Result<Invoice, MoneyOverflow> {
    let mut items = Vec::with_capacity(proposed.items.len());
    match current {
        None => {
            for item in &proposed.items {
                items.push(annotated(&item.reset(), item, ChangeKind::Modified)?);
            }
        }
        Some(current) => {
            let mut previous: BTreeMap<_, &PricedItem> = current.items.iter().map(|item| (item.key(), item)).collect();
            for item in &proposed.items {
                match previous.remove(&item.key()) {
                    Some(before) => items.push(annotated(before, item, ChangeKind::Modified)?),
                    None => items.push(annotated(&item.reset(), item, ChangeKind::Created)?),
                }
            }
            for before in previous.into_values() {
                items.push(annotated(before, &before.reset(), ChangeKind::Removed)?);
            }
        }
    }
    let activation_charges = activation_charges(&items)?;
    Invoice::new(
        proposed.bookkeeper.clone(),
        proposed.plan.clone(),
        items,
        activation_charges,
    )
}

/// The invoice of a bookkeeper whose plans were all removed: every item reset and
/// annotated against what was billed, so the bookkeeper can cancel the charges.
pub fn removed_invoice(current: &Invoice) -> Result<Invoice, MoneyOverflow> {
    let items = current
        .items
        .iter()
        .map(|item| annotated(item, &item.reset(), ChangeKind::Modified))
        .collect::<Result<Vec<_>, _>>()?;
    Invoice::new(current.bookkeeper.clone(), current.plan.clone(), items, Vec::new())
}

fn activation_charges(items: &[PricedItem]) -> Result<Vec<ActivationCharge>, MoneyOverflow> {
    let mut charges = Vec::new();
    for item in items {
        let added = item.changes.as_ref().map_or(0, |changes| changes.difference.billable);
        let Some(rate) = item.activation_charge.filter(|rate| rate.is_positive()) else {
            continue;
        };
        if added <= 0 {
            continue;
        }
        charges.push(ActivationCharge {
            category: item.category.clone(),
            plan_item: item.plan_item.clone(),
            name: item.name.clone(),
            billable: added,
            rate,
            total: rate.times(added)?.round_line_total(),
        });
    }
    Ok(charges)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::item_plan::ItemPlan;
    use crate::domain::pricing::price_item;
    use rust_decimal::Decimal;

    fn bookkeeper() -> BookkeeperRef {
        BookkeeperRef {
            kind: "http".into(),
            vendor_id: "res".into(),
            id: "bk1".into(),
        }
    }

    fn priced(item: &str, rate: i64, quantity: i64, activation_charge: Option<i64>) -> PricedItem {
        let plan = ItemPlan {
            rate: Some(Money::new(Decimal::from(rate))),
            activation_charge: activation_charge.map(|charge| Money::new(Decimal::from(charge))),
            ..ItemPlan::read_lenient(&Map::new())
        };
        let category = Category::parse("phone_numbers").expect("name");
        price_item(&category, &ItemName::parse(item).expect("name"), &plan, quantity).expect("prices")
    }

    fn invoice(items: Vec<PricedItem>) -> Invoice {
        Invoice::new(bookkeeper(), Arc::new(Map::new()), items, Vec::new()).expect("sums")
    }

    #[test]
    fn a_removed_invoice_resets_every_item_so_the_bookkeeper_can_cancel() {
        // pricing.md example 13, after P2 is unassigned.
        let billed = invoice(vec![priced("did_us", 1, 7, None)]);
        let removed = removed_invoice(&billed).expect("annotates");
        let item = &removed.items[0];
        assert_eq!((item.billable, item.quantity, item.total), (0, 7, Money::ZERO));
        let changes = item.changes.as_ref().expect("the reset is a change");
        assert_eq!(changes.kind, ChangeKind::Modified);
        assert_eq!(changes.difference.billable, -7);
        assert_eq!(removed.recurring, Money::ZERO);
        assert!(removed.activation_charges.is_empty());
    }

    #[test]
    fn items_are_matched_as_created_modified_and_removed() {
        let current = invoice(vec![priced("did_us", 1, 2, None), priced("tollfree_us", 3, 1, None)]);
        let proposed = invoice(vec![priced("did_us", 1, 2, None), priced("toll_free", 2, 4, Some(5))]);
        let annotated = annotate(Some(&current), &proposed).expect("annotates");
        let kinds: Vec<(&str, Option<ChangeKind>)> = annotated
            .items
            .iter()
            .map(|item| {
                (
                    item.plan_item.as_str(),
                    item.changes.as_ref().map(|changes| changes.kind),
                )
            })
            .collect();
        assert_eq!(
            kinds,
            vec![
                ("did_us", None),
                ("toll_free", Some(ChangeKind::Created)),
                ("tollfree_us", Some(ChangeKind::Removed)),
            ]
        );
        assert_eq!(
            annotated.activation_charges.len(),
            1,
            "a created item charges its whole billable quantity"
        );
        assert_eq!(annotated.today, Money::new(Decimal::from(20)));
        assert!(annotated.has_billable_additions());
    }

    #[test]
    fn a_new_bookkeeper_is_annotated_against_its_own_reset() {
        let proposed = invoice(vec![priced("did_us", 1, 3, Some(2))]);
        let annotated = annotate(None, &proposed).expect("annotates");
        let changes = annotated.items[0].changes.as_ref().expect("changed");
        assert_eq!((changes.kind, changes.difference.billable), (ChangeKind::Modified, 3));
        assert_eq!(annotated.today, Money::new(Decimal::from(6)));
    }
}
