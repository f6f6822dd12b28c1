//! Quantities: what an account has, per `category.item`, in three buckets.
//!
//! `quantities.md` §6 defines how pricing reads them: a manual quantity replaces the
//! account quantity of its item (never the cascade part), and a deleted account reads
//! as zero everywhere. The bucket diff of `audit-and-summaries.md` §4.2 lives here too,
//! because reconciliation and the audit both need it and it is pure arithmetic.

use super::ids::{Category, ItemName};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

/// One bucket: `{category: {item: count}}`, sorted so every walk is deterministic.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Quantities {
    by_category: BTreeMap<Category, BTreeMap<ItemName, i64>>,
}

impl Quantities {
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets one count (a zero is kept: for manual quantities a zero is meaningful).
    pub fn set(&mut self, category: Category, item: ItemName, count: i64) {
        self.by_category.entry(category).or_default().insert(item, count);
    }

    pub fn get(&self, category: &Category, item: &ItemName) -> Option<i64> {
        self.by_category.get(category)?.get(item).copied()
    }

    pub fn category(&self, category: &Category) -> Option<&BTreeMap<ItemName, i64>> {
        self.by_category.get(category)
    }

    pub fn is_empty(&self) -> bool {
        self.by_category.values().all(BTreeMap::is_empty)
    }

    /// Every `(category, item, count)`, sorted by category then item.
    pub fn iter(&self) -> impl Iterator<Item = (&Category, &ItemName, i64)> {
        self.by_category
            .iter()
            .flat_map(|(category, items)| items.iter().map(move |(item, count)| (category, item, *count)))
    }

    /// Adds `other` item by item (saturating: counts never wrap).
    pub fn add_all(&mut self, other: &Quantities) {
        for (category, item, count) in other.iter() {
            let slot = self
                .by_category
                .entry(category.clone())
                .or_default()
                .entry(item.clone())
                .or_insert(0);
            *slot = slot.saturating_add(count);
        }
    }
}

impl FromIterator<(Category, ItemName, i64)> for Quantities {
    fn from_iter<I: IntoIterator<Item = (Category, ItemName, i64)>>(iter: I) -> Self {
        let mut quantities = Quantities::new();
        for (category, item, count) in iter {
            quantities.set(category, item, count);
        }
        quantities
    }
}

/// The three buckets stored for an account.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct QuantityBuckets {
    /// Counted from the account's own objects.
    pub account: Quantities,
    /// The sum of every descendant's account bucket (not the account itself).
    pub cascade: Quantities,
    /// Typed in by an operator; each replaces the account count of its item.
    pub manual: Quantities,
    /// A deleted account reads as zero everywhere.
    pub deleted: bool,
}

/// What one item of a count read from each bucket (`quantities.md` §6): the manual
/// count replaces the account count, the cascade count (read only for cascading items)
/// is added to whichever of the two applies.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CountParts {
    pub account: Option<i64>,
    pub manual: Option<i64>,
    pub cascade: Option<i64>,
}

impl CountParts {
    /// The account's own count: the manual one when set, else the counted one.
    pub fn own(&self) -> Option<i64> {
        self.manual.or(self.account)
    }
}

/// Receives what a count read, item by item, so an explanation is told by the same
/// walk that counts. Pricing passes [`NoCountTrace`], which the compiler removes.
pub trait CountTrace {
    /// An item that took part in the count, with what each bucket held for it.
    fn counted(&mut self, item: &ItemName, parts: CountParts);
    /// An item of the category left out because the plan's `exceptions` list it.
    fn excepted(&mut self, item: &ItemName);
}

/// The trace of plain pricing: records nothing, allocates nothing.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoCountTrace;

impl CountTrace for NoCountTrace {
    fn counted(&mut self, _item: &ItemName, _parts: CountParts) {}
    fn excepted(&mut self, _item: &ItemName) {}
}

impl QuantityBuckets {
    /// `item(c, i)` of `quantities.md` §6.
    pub fn item(&self, category: &Category, item: &ItemName) -> i64 {
        self.count_item(category, item, false, &mut NoCountTrace)
    }

    /// `cascade_item(c, i)`: descendants plus the account's own (manual-aware) count.
    pub fn cascade_item(&self, category: &Category, item: &ItemName) -> i64 {
        self.count_item(category, item, true, &mut NoCountTrace)
    }

    /// `category(c, exceptions)`: the account bucket overlaid by manual, summed.
    pub fn category(&self, category: &Category, exceptions: &BTreeSet<ItemName>) -> i64 {
        self.count_category(category, exceptions, false, &mut NoCountTrace)
    }

    /// `cascade_category(c, exceptions)`: descendants' sum plus `category(c, exceptions)`.
    pub fn cascade_category(&self, category: &Category, exceptions: &BTreeSet<ItemName>) -> i64 {
        self.count_category(category, exceptions, true, &mut NoCountTrace)
    }

    /// `item(c, i)`, or `cascade_item(c, i)` when `cascade`, telling `trace` what it read.
    pub fn count_item(&self, category: &Category, item: &ItemName, cascade: bool, trace: &mut impl CountTrace) -> i64 {
        if self.deleted {
            return 0;
        }
        let parts = CountParts {
            account: self.account.get(category, item),
            manual: self.manual.get(category, item),
            cascade: if cascade {
                self.cascade.get(category, item)
            } else {
                None
            },
        };
        trace.counted(item, parts);
        parts.cascade.unwrap_or(0).saturating_add(parts.own().unwrap_or(0))
    }

    /// `category(c, exceptions)`, or `cascade_category` when `cascade`, telling `trace`
    /// every item it read or left out. The descendants' counts and the account's own
    /// are summed apart, in item order, then added: the order of `quantities.md` §6.
    pub fn count_category(
        &self,
        category: &Category,
        exceptions: &BTreeSet<ItemName>,
        cascade: bool,
        trace: &mut impl CountTrace,
    ) -> i64 {
        if self.deleted {
            return 0;
        }
        let empty = BTreeMap::new();
        let account = self.account.category(category).unwrap_or(&empty);
        let manual = self.manual.category(category).unwrap_or(&empty);
        let descendants = if cascade {
            self.cascade.category(category).unwrap_or(&empty)
        } else {
            &empty
        };
        let mut items: BTreeSet<&ItemName> = account.keys().collect();
        items.extend(manual.keys());
        items.extend(descendants.keys());

        let (mut own_sum, mut descendants_sum) = (0i64, 0i64);
        for item in items {
            if exceptions.contains(item) {
                trace.excepted(item);
                continue;
            }
            let parts = CountParts {
                account: account.get(item).copied(),
                manual: manual.get(item).copied(),
                cascade: descendants.get(item).copied(),
            };
            trace.counted(item, parts);
            if let Some(own) = parts.own() {
                own_sum = own_sum.saturating_add(own);
            }
            if let Some(count) = parts.cascade {
                descendants_sum = descendants_sum.saturating_add(count);
            }
        }
        descendants_sum.saturating_add(own_sum)
    }
}

/// Which stored bucket a quantity change happened in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Bucket {
    Account,
    Manual,
    Cascade,
}

impl Bucket {
    /// The order of `audit-and-summaries.md` §4.2.4: account, manual, cascade.
    pub const ALL: [Bucket; 3] = [Bucket::Account, Bucket::Manual, Bucket::Cascade];

    pub fn as_str(self) -> &'static str {
        match self {
            Bucket::Account => "account",
            Bucket::Manual => "manual",
            Bucket::Cascade => "cascade",
        }
    }

    pub fn parse(text: &str) -> Option<Bucket> {
        match text {
            "account" => Some(Bucket::Account),
            "manual" => Some(Bucket::Manual),
            "cascade" => Some(Bucket::Cascade),
            _ => None,
        }
    }
}

impl fmt::Display for Bucket {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One changed `(bucket, category, item)`: an entry of a quantity-change record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuantityChange {
    pub bucket: Bucket,
    pub category: Category,
    pub item: ItemName,
    pub old: i64,
    pub new: i64,
}

impl QuantityChange {
    /// `new − old`: the record's `quantity` field.
    pub fn difference(&self) -> i64 {
        self.new.saturating_sub(self.old)
    }
}

/// Every count that differs between `old` and `new` in one bucket, keys that appear or
/// disappear included (missing = 0), sorted by category then item.
pub fn diff_bucket(bucket: Bucket, old: &Quantities, new: &Quantities) -> Vec<QuantityChange> {
    let keys: BTreeSet<(&Category, &ItemName)> = old
        .iter()
        .chain(new.iter())
        .map(|(category, item, _)| (category, item))
        .collect();
    keys.into_iter()
        .filter_map(|(category, item)| {
            let before = old.get(category, item).unwrap_or(0);
            let after = new.get(category, item).unwrap_or(0);
            (before != after).then(|| QuantityChange {
                bucket,
                category: category.clone(),
                item: item.clone(),
                old: before,
                new: after,
            })
        })
        .collect()
}

/// The changes of all three buckets, in the record order of §4.2.4.
pub fn diff_buckets(old: &QuantityBuckets, new: &QuantityBuckets) -> Vec<QuantityChange> {
    Bucket::ALL
        .into_iter()
        .flat_map(|bucket| {
            let (before, after) = match bucket {
                Bucket::Account => (&old.account, &new.account),
                Bucket::Manual => (&old.manual, &new.manual),
                Bucket::Cascade => (&old.cascade, &new.cascade),
            };
            diff_bucket(bucket, before, after)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(text: &str) -> Category {
        Category::parse(text).expect("test name")
    }
    fn i(text: &str) -> ItemName {
        ItemName::parse(text).expect("test name")
    }
    fn bucket(entries: &[(&str, &str, i64)]) -> Quantities {
        entries.iter().map(|(cat, item, n)| (c(cat), i(item), *n)).collect()
    }

    #[test]
    fn manual_replaces_the_account_part_but_not_the_cascade_part() {
        let buckets = QuantityBuckets {
            account: bucket(&[("phone_numbers", "did_us", 4)]),
            cascade: bucket(&[("phone_numbers", "did_us", 10)]),
            manual: bucket(&[("phone_numbers", "did_us", 2)]),
            deleted: false,
        };
        assert_eq!(buckets.item(&c("phone_numbers"), &i("did_us")), 2);
        assert_eq!(buckets.cascade_item(&c("phone_numbers"), &i("did_us")), 12);
    }

    #[test]
    fn category_sums_overlay_manual_and_drop_exceptions_everywhere() {
        let buckets = QuantityBuckets {
            account: bucket(&[
                ("devices", "sip_device", 2),
                ("devices", "softphone", 5),
                ("devices", "fax", 1),
            ]),
            cascade: bucket(&[("devices", "softphone", 7), ("devices", "fax", 3)]),
            manual: bucket(&[("devices", "fax", 4)]),
            deleted: false,
        };
        let softphone: BTreeSet<ItemName> = [i("softphone")].into();
        assert_eq!(buckets.category(&c("devices"), &softphone), 6);
        assert_eq!(buckets.cascade_category(&c("devices"), &softphone), 9);
        assert_eq!(buckets.category(&c("devices"), &BTreeSet::new()), 11);
    }

    #[test]
    fn deleted_accounts_read_as_zero() {
        let buckets = QuantityBuckets {
            account: bucket(&[("users", "user", 4)]),
            deleted: true,
            ..QuantityBuckets::default()
        };
        assert_eq!(buckets.item(&c("users"), &i("user")), 0);
        assert_eq!(buckets.category(&c("users"), &BTreeSet::new()), 0);
    }

    #[test]
    fn diff_sees_keys_that_appear_and_disappear() {
        let old = bucket(&[("users", "admin", 1), ("users", "user", 3)]);
        let new = bucket(&[("users", "user", 3), ("devices", "sip_device", 2)]);
        let changes = diff_bucket(Bucket::Account, &old, &new);
        let summary: Vec<(&str, &str, i64)> = changes
            .iter()
            .map(|change| (change.category.as_str(), change.item.as_str(), change.difference()))
            .collect();
        assert_eq!(summary, vec![("devices", "sip_device", 2), ("users", "admin", -1)]);
    }
}
