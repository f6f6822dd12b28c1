//! Repricing one account: its plans, merged once per distinct plan set, priced against
//! its stored quantities and compared with its last computed invoices.
//!
//! Many accounts share the same plan set (a reseller assigns the same plans to most of
//! its customers), so merged plans are cached per plan-set key for the length of a
//! run; the caller builds the key from everything merging reads (plan ids, vendors,
//! override texts, bookkeeper defaults), which keeps this module free of hashing
//! policy and of JSON.

use super::changes::{commit, Commit, FirstCommit};
use super::invoice::Invoice;
use super::merge::StrategyPriorities;
use super::plan::{AssignedPlan, PlanContext};
use super::pricing::{check_storable, merge_account_plans, price_invoice, MergedPlan, PricingError};
use super::quantities::QuantityBuckets;
use std::collections::HashMap;
use std::sync::Arc;

/// Everything repricing reads about one account.
#[derive(Debug, Clone, PartialEq)]
pub struct AccountPricing {
    pub context: PlanContext,
    /// Assigned plans with their documents, in assignment order; plans whose document
    /// could not be found are not here (the caller reports them).
    pub plans: Vec<AssignedPlan>,
    pub quantities: QuantityBuckets,
    /// The invoices of the last commit; `None` when the account was never priced.
    pub last_computed: Option<Vec<Invoice>>,
    /// Identifies the merge inputs: equal keys must mean equal merged plans.
    pub plan_set_key: String,
}

/// Merged plans per plan-set key, shared by the accounts of one run.
#[derive(Debug, Default)]
pub struct MergeCache {
    merged: HashMap<String, Arc<Vec<MergedPlan>>>,
}

impl MergeCache {
    pub fn new() -> MergeCache {
        MergeCache::default()
    }

    fn merged(&mut self, account: &AccountPricing, priorities: &StrategyPriorities) -> Arc<Vec<MergedPlan>> {
        if let Some(merged) = self.merged.get(&account.plan_set_key) {
            return Arc::clone(merged);
        }
        let merged = Arc::new(merge_account_plans(&account.context, &account.plans, &[], priorities));
        self.merged.insert(account.plan_set_key.clone(), Arc::clone(&merged));
        merged
    }

    /// How many distinct plan sets were merged.
    pub fn len(&self) -> usize {
        self.merged.len()
    }

    pub fn is_empty(&self) -> bool {
        self.merged.is_empty()
    }
}

/// Prices an account and compares the result with its last computed invoices.
///
/// Every invoice the commit would store (the new snapshot and the annotated changes)
/// must fit the store's units: an account that cannot be billed is an error here, for
/// the caller to skip alone, rather than a failed write of its whole batch.
pub fn reprice(
    account: &AccountPricing,
    priorities: &StrategyPriorities,
    first: FirstCommit,
    cache: &mut MergeCache,
) -> Result<Commit, PricingError> {
    let merged = cache.merged(account, priorities);
    let proposed = merged
        .iter()
        .map(|plan| price_invoice(plan, &account.quantities))
        .collect::<Result<Vec<_>, _>>()?;
    let commit =
        commit(account.last_computed.as_deref(), proposed, first).map_err(|_| PricingError::ChangeOutOfRange)?;
    for invoice in commit.snapshot.iter().chain(&commit.changed) {
        check_storable(invoice)?;
    }
    Ok(commit)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::document::Map;
    use crate::domain::plan::BookkeeperRef;
    use crate::domain::testing::{money, num, obj};
    use crate::domain::{Category, ItemName, PlanId, Quantities};

    fn account(rate: &str, devices: i64, key: &str) -> AccountPricing {
        let document = match obj(vec![(
            "plan",
            obj(vec![(
                "devices",
                obj(vec![("sip_device", obj(vec![("rate", num(rate))]))]),
            )]),
        )]) {
            crate::domain::document::Value::Object(map) => map,
            _ => unreachable!("obj builds objects"),
        };
        let mut account_bucket = Quantities::new();
        account_bucket.set(
            Category::parse("devices").expect("name"),
            ItemName::parse("sip_device").expect("name"),
            devices,
        );
        AccountPricing {
            context: PlanContext {
                default_bookkeeper: BookkeeperRef {
                    kind: "default".into(),
                    vendor_id: "res".into(),
                    id: BookkeeperRef::DEFAULT_ID.into(),
                },
                global_overrides: Map::new(),
            },
            plans: vec![AssignedPlan {
                id: PlanId::parse("p").expect("id"),
                vendor_id: None,
                document: Arc::new(document),
                overrides: None,
            }],
            quantities: QuantityBuckets {
                account: account_bucket,
                ..QuantityBuckets::default()
            },
            last_computed: None,
            plan_set_key: key.to_owned(),
        }
    }

    #[test]
    fn accounts_with_the_same_plan_set_share_one_merge() {
        let mut cache = MergeCache::new();
        let priorities = StrategyPriorities::default();
        let first = reprice(&account("5", 2, "k"), &priorities, FirstCommit::Baseline, &mut cache).expect("prices");
        let second = reprice(&account("5", 3, "k"), &priorities, FirstCommit::Baseline, &mut cache).expect("prices");
        assert_eq!(cache.len(), 1);
        assert_eq!(first.snapshot[0].recurring, money("10"));
        assert_eq!(second.snapshot[0].recurring, money("15"));
    }

    #[test]
    fn an_account_whose_totals_cannot_be_stored_is_refused_naming_the_item() {
        let mut cache = MergeCache::new();
        let priorities = StrategyPriorities::default();
        // 10^15 devices at 5: 5 × 10^15, beyond the largest stored amount (~9.2 × 10^14).
        let error = reprice(
            &account("5", 1_000_000_000_000_000, "k"),
            &priorities,
            FirstCommit::Baseline,
            &mut cache,
        )
        .expect_err("not storable");
        assert_eq!(
            error,
            PricingError::NotStorable {
                bookkeeper: "default/res/default_bookkeeper".to_owned(),
                what: "item devices.sip_device total".to_owned(),
                amount: money("5000000000000000"),
            }
        );
        assert!(error.to_string().contains("922337203685477.5807"), "{error}");
        // The largest storable total itself is fine: 922337203685477.5807 = 9223372036854775807 × 0.0001.
        let largest = reprice(
            &account("0.0001", i64::MAX, "k2"),
            &priorities,
            FirstCommit::Baseline,
            &mut cache,
        )
        .expect("storable");
        assert_eq!(largest.snapshot[0].recurring, crate::domain::Money::LARGEST_STORED);
    }

    #[test]
    fn a_repriced_account_with_new_quantities_has_changes() {
        let mut cache = MergeCache::new();
        let priorities = StrategyPriorities::default();
        let before = reprice(&account("5", 2, "k"), &priorities, FirstCommit::Baseline, &mut cache).expect("prices");
        let mut grown = account("5", 4, "k");
        grown.last_computed = Some(before.snapshot);
        let after = reprice(&grown, &priorities, FirstCommit::Baseline, &mut cache).expect("prices");
        assert_eq!(after.changed.len(), 1);
        assert_eq!(
            after.changed[0].items[0]
                .changes
                .as_ref()
                .map(|changes| changes.difference.billable),
            Some(2)
        );
    }
}
