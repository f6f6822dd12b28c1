//! The impact of a plan change on invoices (issue 15 item 1, its pure part): for one
//! account, the recurring totals before and after, the difference and the lines that
//! change; for a run, the accounts sorted by the largest change and the sums per
//! reseller.
//!
//! Which lines changed is decided by [`annotate`] (`pricing.md` §9), the comparison a
//! commit makes, so the impact lists exactly the lines a real change would annotate.
//! The caller prices both sides with the pricing sync uses; nothing here prices.

use super::ids::{AccountId, Category, ItemName};
use super::invoice::{annotate, removed_invoice, ChangeKind, Invoice, PricedItem};
use super::money::{Money, MoneyOverflow};
use super::plan::BookkeeperRef;
use std::collections::BTreeMap;

/// One invoice line whose figures a change alters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LineChange {
    pub bookkeeper: BookkeeperRef,
    pub category: Category,
    /// The plan's item key (`_all` for category sums).
    pub plan_item: ItemName,
    /// The output name (`as`), as on the invoice.
    pub item: String,
    pub kind: ChangeKind,
    /// The line before and after (zeros for a line created or removed).
    pub old: LineFigures,
    pub new: LineFigures,
    /// 0 for a line the change creates.
    pub old_total: Money,
    /// 0 for a line the change removes.
    pub new_total: Money,
}

/// What one side of a changed line bills: the counted quantity, the billable
/// quantity (after minimum, maximum and steps) and the rate.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LineFigures {
    pub quantity: i64,
    pub billable: i64,
    pub rate: Money,
}

impl LineFigures {
    fn of(item: &PricedItem) -> LineFigures {
        LineFigures {
            quantity: item.quantity,
            billable: item.billable,
            rate: item.rate,
        }
    }
}

/// What a change does to one account's invoices.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccountImpact {
    pub account: AccountId,
    /// Who bills the account: its nearest reseller (or the master).
    pub reseller: AccountId,
    pub old_recurring: Money,
    pub new_recurring: Money,
    /// `new_recurring − old_recurring`.
    pub difference: Money,
    /// Sorted by bookkeeper, category, item.
    pub lines: Vec<LineChange>,
}

/// Compares an account's invoices before and after a change; `None` when no line
/// changes. Both sides are plain (un-annotated) invoices, in any order.
pub fn account_impact(
    account: AccountId,
    reseller: AccountId,
    old: &[Invoice],
    new: &[Invoice],
) -> Result<Option<AccountImpact>, MoneyOverflow> {
    let mut bookkeepers: Vec<&BookkeeperRef> = old.iter().chain(new).map(|invoice| &invoice.bookkeeper).collect();
    bookkeepers.sort();
    bookkeepers.dedup();

    let mut lines = Vec::new();
    for bookkeeper in bookkeepers {
        let before = old.iter().find(|invoice| &invoice.bookkeeper == bookkeeper);
        let after = new.iter().find(|invoice| &invoice.bookkeeper == bookkeeper);
        let annotated = match (before, after) {
            (_, Some(after)) => annotate(before, after)?,
            (Some(before), None) => removed_invoice(before)?,
            (None, None) => continue,
        };
        for item in &annotated.items {
            let Some(changes) = &item.changes else { continue };
            let old_line = match (changes.kind, before) {
                (ChangeKind::Created, _) | (_, None) => None,
                (ChangeKind::Modified | ChangeKind::Removed, Some(before)) => {
                    before.items.iter().find(|old| same_line(old, item))
                }
            };
            let old_total = old_line.map_or(Money::ZERO, |old| old.total);
            // A removed bookkeeper's lines come back reset ("modified" to nothing).
            let kind = if after.is_none() {
                ChangeKind::Removed
            } else {
                changes.kind
            };
            lines.push(LineChange {
                bookkeeper: bookkeeper.clone(),
                category: item.category.clone(),
                plan_item: item.plan_item.clone(),
                item: item.item.clone(),
                kind,
                old: old_line.map(LineFigures::of).unwrap_or_default(),
                new: match kind {
                    ChangeKind::Removed => LineFigures::default(),
                    ChangeKind::Created | ChangeKind::Modified => LineFigures::of(item),
                },
                old_total,
                new_total: item.total,
            });
        }
    }
    if lines.is_empty() {
        return Ok(None);
    }
    let old_recurring = Money::checked_sum(old.iter().map(|invoice| &invoice.recurring))?;
    let new_recurring = Money::checked_sum(new.iter().map(|invoice| &invoice.recurring))?;
    Ok(Some(AccountImpact {
        account,
        reseller,
        old_recurring,
        new_recurring,
        difference: new_recurring.checked_sub(old_recurring)?,
        lines,
    }))
}

/// The same line of an invoice on both sides: the key annotation matches items by.
fn same_line(old: &PricedItem, new: &PricedItem) -> bool {
    old.category == new.category && old.plan_item == new.plan_item && old.masqueraded == new.masqueraded
}

/// The sums of one reseller's changed accounts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ResellerImpact {
    pub accounts: u64,
    pub old_recurring: Money,
    pub new_recurring: Money,
    pub difference: Money,
}

impl ResellerImpact {
    /// Counts one more changed account of the reseller.
    pub fn add(&mut self, impact: &AccountImpact) -> Result<(), MoneyOverflow> {
        self.accounts += 1;
        self.old_recurring = self.old_recurring.checked_add(impact.old_recurring)?;
        self.new_recurring = self.new_recurring.checked_add(impact.new_recurring)?;
        self.difference = self.difference.checked_add(impact.difference)?;
        Ok(())
    }
}

/// The impact of a change on every account it alters.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ImpactReport {
    /// By the largest change first (absolute difference), then account id.
    pub accounts: Vec<AccountImpact>,
    pub resellers: BTreeMap<AccountId, ResellerImpact>,
}

impl ImpactReport {
    /// Builds the report from every changed account, in any order.
    pub fn new(impacts: impl IntoIterator<Item = AccountImpact>) -> Result<ImpactReport, MoneyOverflow> {
        let mut report = ImpactReport::default();
        for impact in impacts {
            report
                .resellers
                .entry(impact.reseller.clone())
                .or_default()
                .add(&impact)?;
            report.accounts.push(impact);
        }
        report.accounts.sort_by(|left, right| {
            (right.difference.amount().abs(), &left.account).cmp(&(left.difference.amount().abs(), &right.account))
        });
        Ok(report)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::item_plan::ItemPlan;
    use crate::domain::pricing::price_item;
    use crate::domain::testing::{bookkeeper, map, money, num};
    use std::sync::Arc;

    /// An invoice of `(item, rate, quantity)` lines of category `devices`.
    fn invoice(kind: &str, lines: &[(&str, &str, i64)]) -> Invoice {
        let items = lines
            .iter()
            .map(|(item, rate, quantity)| {
                let plan = ItemPlan::read_lenient(&map(vec![("rate", num(rate))]));
                let category = Category::parse("devices").expect("name");
                price_item(&category, &ItemName::parse(*item).expect("name"), &plan, *quantity).expect("prices")
            })
            .collect();
        Invoice::new(bookkeeper(kind), Arc::new(Default::default()), items, Vec::new()).expect("sums")
    }

    fn account(name: &str) -> AccountId {
        AccountId::parse(name).expect("id")
    }

    #[test]
    fn a_rate_change_lists_the_changed_line_with_both_totals() {
        let old = [invoice("default", &[("sip_device", "5", 3), ("softphone", "1", 2)])];
        let new = [invoice("default", &[("sip_device", "6", 3), ("softphone", "1", 2)])];
        let impact = account_impact(account("a"), account("r"), &old, &new)
            .expect("sums")
            .expect("a change");
        assert_eq!((impact.old_recurring, impact.new_recurring), (money("17"), money("20")));
        assert_eq!(impact.difference, money("3"));
        assert_eq!(impact.lines.len(), 1, "the softphone line is unchanged");
        let line = &impact.lines[0];
        assert_eq!((line.item.as_str(), line.kind), ("sip_device", ChangeKind::Modified));
        assert_eq!((line.old_total, line.new_total), (money("15"), money("18")));
        assert_eq!((line.old.rate, line.new.rate), (money("5"), money("6")));
        assert_eq!((line.old.quantity, line.new.quantity), (3, 3));
    }

    #[test]
    fn unchanged_invoices_have_no_impact() {
        let old = [invoice("default", &[("sip_device", "5", 3)])];
        assert_eq!(account_impact(account("a"), account("r"), &old, &old.clone()), Ok(None));
    }

    #[test]
    fn lines_created_and_removed_and_a_bookkeeper_gone_count_from_and_to_zero() {
        let old = [
            invoice("default", &[("sip_device", "5", 3)]),
            invoice("http", &[("fax", "2", 1)]),
        ];
        let new = [invoice("default", &[("softphone", "1", 4)])];
        let impact = account_impact(account("a"), account("r"), &old, &new)
            .expect("sums")
            .expect("a change");
        let lines: Vec<(&str, &str, ChangeKind, Money, Money)> = impact
            .lines
            .iter()
            .map(|line| {
                (
                    line.bookkeeper.kind.as_str(),
                    line.item.as_str(),
                    line.kind,
                    line.old_total,
                    line.new_total,
                )
            })
            .collect();
        assert_eq!(
            lines,
            vec![
                ("default", "sip_device", ChangeKind::Removed, money("15"), money("0")),
                ("default", "softphone", ChangeKind::Created, money("0"), money("4")),
                ("http", "fax", ChangeKind::Removed, money("2"), money("0")),
            ]
        );
        assert_eq!(impact.difference, money("-13"));
    }

    #[test]
    fn the_report_puts_the_largest_change_first_and_sums_per_reseller() {
        let impact = |name: &str, reseller: &str, old: &str, new: &str| AccountImpact {
            account: account(name),
            reseller: account(reseller),
            old_recurring: money(old),
            new_recurring: money(new),
            difference: money(new).checked_sub(money(old)).expect("small"),
            lines: Vec::new(),
        };
        let report = ImpactReport::new([
            impact("a", "r", "10", "12"),
            impact("b", "r", "10", "5"),
            impact("c", "s", "1", "3"),
        ])
        .expect("sums");
        let order: Vec<&str> = report.accounts.iter().map(|impact| impact.account.as_str()).collect();
        assert_eq!(order, vec!["b", "a", "c"], "by absolute change, then id");
        assert_eq!(
            report.resellers[&account("r")],
            ResellerImpact {
                accounts: 2,
                old_recurring: money("20"),
                new_recurring: money("17"),
                difference: money("-3"),
            }
        );
        assert_eq!(report.resellers[&account("s")].difference, money("2"));
    }
}
