//! What changed since an account was last priced, and what its bookkeeper is sent.
//!
//! `pricing.md` §9 ("our change detection") and `sync-and-bookkeepers.md` §5.4: we keep
//! per account and bookkeeper the un-annotated invoice of the last commit
//! (`last_computed`) and the one the bookkeeper last acknowledged
//! (`last_acknowledged`). A commit annotates the new invoices against `last_computed`,
//! so plan-document and override edits are seen too (quirk Q-PLN-7); each invoice with
//! changes becomes one audit row. A delivery annotates the latest invoice against
//! `last_acknowledged`, with the activation lines of every pending audit row.

use super::invoice::{annotate, removed_invoice, ActivationCharge, Invoice};
use super::money::{Money, MoneyOverflow};
use super::plan::BookkeeperRef;
use std::collections::BTreeMap;

/// How to treat an account priced for the first time.
///
/// Either way every invoice of a first commit becomes an audit row (everything is
/// new to its bookkeeper, which must receive it once); they differ in whether the
/// units already in service are charged their activation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FirstCommit {
    /// An account already in service: its invoices are the baseline, delivered
    /// without activation charges (`pricing.md` §9, issue 4).
    Baseline,
    /// A new account: every billable unit is an addition and charges its activation.
    ChargeActivations,
}

/// The outcome of one commit of one account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Commit {
    /// The new `last_computed` snapshot: the un-annotated invoices, by bookkeeper.
    pub snapshot: Vec<Invoice>,
    /// One annotated invoice per invoice that changed (removed bookkeepers included,
    /// with every item reset): each is written as one audit row.
    pub changed: Vec<Invoice>,
}

impl Commit {
    pub fn has_changes(&self) -> bool {
        !self.changed.is_empty()
    }
}

/// Compares freshly priced invoices with the last computed ones.
///
/// `last_computed` is `None` for an account never priced before.
pub fn commit(
    last_computed: Option<&[Invoice]>,
    proposed: Vec<Invoice>,
    first: FirstCommit,
) -> Result<Commit, MoneyOverflow> {
    let Some(last_computed) = last_computed else {
        let changed = proposed
            .iter()
            .map(|invoice| {
                let annotated = annotate(None, invoice)?;
                match first {
                    FirstCommit::ChargeActivations => Ok(annotated),
                    FirstCommit::Baseline => annotated.without_activation_charges(),
                }
            })
            .collect::<Result<Vec<_>, _>>()?;
        return Ok(Commit {
            snapshot: proposed,
            changed,
        });
    };

    let mut previous: BTreeMap<&BookkeeperRef, &Invoice> = last_computed
        .iter()
        .map(|invoice| (&invoice.bookkeeper, invoice))
        .collect();
    let mut changed = Vec::new();
    for invoice in &proposed {
        let annotated = annotate(previous.remove(&invoice.bookkeeper), invoice)?;
        if annotated.has_changes() {
            changed.push(annotated);
        }
    }
    for gone in previous.into_values() {
        let removed = removed_invoice(gone)?;
        if removed.has_changes() {
            changed.push(removed);
        }
    }
    changed.sort_by(|left, right| left.bookkeeper.cmp(&right.bookkeeper));
    Ok(Commit {
        snapshot: proposed,
        changed,
    })
}

/// What one delivery to a bookkeeper carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    /// The invoice sent: the latest (or its removed form) annotated against what the
    /// bookkeeper last acknowledged, with the activation lines of the pending rows.
    pub invoice: Invoice,
    /// What becomes `last_acknowledged` when the bookkeeper accepts or refuses it.
    pub acknowledged: Invoice,
}

/// Builds the delivery for one bookkeeper of one account (`sync-and-bookkeepers.md`
/// §5.4). `latest` is the bookkeeper's invoice in the `last_computed` snapshot, absent
/// when its plans were all removed; `pending_activations` are the activation lines of
/// every pending audit row, in creation order.
pub fn delivery(
    latest: Option<&Invoice>,
    last_acknowledged: Option<&Invoice>,
    pending_activations: Vec<ActivationCharge>,
) -> Result<Option<Delivery>, MoneyOverflow> {
    let current = match (latest, last_acknowledged) {
        (Some(latest), _) => latest.clone(),
        (None, Some(acknowledged)) => reset_invoice(acknowledged)?,
        (None, None) => return Ok(None),
    };
    let mut invoice = annotate(last_acknowledged, &current)?;
    invoice.today = Money::checked_sum(pending_activations.iter().map(|line| &line.total))?;
    invoice.activation_charges = pending_activations;
    Ok(Some(Delivery {
        invoice,
        acknowledged: current,
    }))
}

/// The invoice with every item reset and no changes recorded: a removed bookkeeper's
/// last state.
fn reset_invoice(invoice: &Invoice) -> Result<Invoice, MoneyOverflow> {
    let items = invoice.items.iter().map(|item| item.reset()).collect();
    Invoice::new(invoice.bookkeeper.clone(), invoice.plan.clone(), items, Vec::new())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::document::Map;
    use crate::domain::invoice::{ChangeKind, PricedItem};
    use crate::domain::item_plan::ItemPlan;
    use crate::domain::pricing::price_item;
    use crate::domain::testing::{bookkeeper, money};
    use crate::domain::{Category, ItemName};
    use std::sync::Arc;

    fn item(name: &str, rate: &str, quantity: i64) -> PricedItem {
        let plan = ItemPlan {
            rate: Some(money(rate)),
            activation_charge: Some(money("10")),
            ..ItemPlan::read_lenient(&Map::new())
        };
        let category = Category::parse("devices").expect("name");
        price_item(&category, &ItemName::parse(name).expect("name"), &plan, quantity).expect("prices")
    }

    fn invoice(kind: &str, items: Vec<PricedItem>) -> Invoice {
        Invoice::new(bookkeeper(kind), Arc::new(Map::new()), items, Vec::new()).expect("sums")
    }

    #[test]
    fn the_first_commit_of_an_account_in_service_is_a_baseline_without_activation_charges() {
        let proposed = vec![
            invoice("http", vec![item("sip_device", "5", 3)]),
            invoice("local", vec![item("sip_device", "5", 0)]),
        ];
        let outcome = commit(None, proposed.clone(), FirstCommit::Baseline).expect("commits");
        assert_eq!(outcome.snapshot, proposed);
        assert_eq!(
            outcome.changed.len(),
            2,
            "every invoice is new to its bookkeeper, even one of zeros"
        );
        assert!(outcome.changed[0].activation_charges.is_empty());
        assert_eq!(outcome.changed[0].today, Money::ZERO);
        assert_eq!(outcome.changed[0].recurring, money("15"));
    }

    #[test]
    fn the_first_commit_of_a_new_account_charges_activation_for_everything() {
        let proposed = vec![invoice("http", vec![item("sip_device", "5", 3)])];
        let outcome = commit(None, proposed, FirstCommit::ChargeActivations).expect("commits");
        assert_eq!(outcome.changed.len(), 1);
        assert_eq!(outcome.changed[0].today, money("30"));
    }

    #[test]
    fn an_unchanged_account_has_no_changes() {
        let invoices = vec![invoice("http", vec![item("sip_device", "5", 3)])];
        let outcome = commit(Some(&invoices), invoices.clone(), FirstCommit::Baseline).expect("commits");
        assert!(!outcome.has_changes());
    }

    #[test]
    fn a_price_edit_is_a_change_even_with_the_same_quantities() {
        let before = vec![invoice("http", vec![item("sip_device", "5", 3)])];
        let after = vec![invoice("http", vec![item("sip_device", "6", 3)])];
        let outcome = commit(Some(&before), after, FirstCommit::Baseline).expect("commits");
        assert_eq!(outcome.changed.len(), 1);
        let changes = outcome.changed[0].items[0].changes.as_ref().expect("changed");
        assert_eq!(changes.difference.rate, money("1"));
        assert!(
            outcome.changed[0].activation_charges.is_empty(),
            "no billable addition, no activation"
        );
    }

    #[test]
    fn a_removed_bookkeeper_yields_a_reset_invoice_to_deliver() {
        let before = vec![
            invoice("default", vec![item("sip_device", "5", 3)]),
            invoice("http", vec![item("did_us", "1", 7)]),
        ];
        let after = vec![invoice("default", vec![item("sip_device", "5", 3)])];
        let outcome = commit(Some(&before), after.clone(), FirstCommit::Baseline).expect("commits");
        assert_eq!(outcome.snapshot, after);
        assert_eq!(outcome.changed.len(), 1);
        assert_eq!(outcome.changed[0].bookkeeper, bookkeeper("http"));
        assert_eq!(outcome.changed[0].items[0].billable, 0);
        assert_eq!(outcome.changed[0].recurring, Money::ZERO);
    }

    #[test]
    fn a_delivery_describes_everything_since_the_last_acknowledgement() {
        let acknowledged = invoice("http", vec![item("sip_device", "5", 2)]);
        let latest = invoice("http", vec![item("sip_device", "5", 5)]);
        let line = |billable: i64| ActivationCharge {
            category: Category::parse("devices").expect("name"),
            plan_item: ItemName::parse("sip_device").expect("name"),
            name: "devices/sip_device".into(),
            billable,
            rate: money("10"),
            total: money("10").times(billable).expect("small"),
        };
        let delivery = delivery(Some(&latest), Some(&acknowledged), vec![line(2), line(1)])
            .expect("builds")
            .expect("something to deliver");
        let changes = delivery.invoice.items[0].changes.as_ref().expect("changed");
        assert_eq!((changes.kind, changes.difference.billable), (ChangeKind::Modified, 3));
        assert_eq!(
            delivery.invoice.activation_charges.len(),
            2,
            "one line per pending row, in order"
        );
        assert_eq!(delivery.invoice.today, money("30"));
        assert_eq!(delivery.acknowledged, latest);
    }

    #[test]
    fn a_removed_bookkeeper_is_delivered_as_its_reset_form() {
        let acknowledged = invoice("http", vec![item("did_us", "1", 7)]);
        let delivery = delivery(None, Some(&acknowledged), Vec::new())
            .expect("builds")
            .expect("something to deliver");
        assert_eq!(delivery.invoice.items[0].billable, 0);
        assert_eq!(
            delivery.invoice.items[0]
                .changes
                .as_ref()
                .map(|changes| changes.difference.billable),
            Some(-7)
        );
        assert_eq!(delivery.acknowledged.recurring, Money::ZERO);
        assert_eq!(super::delivery(None, None, Vec::new()), Ok(None));
    }
}
