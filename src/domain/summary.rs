//! Quantity-change records and their per-day summaries (`audit-and-summaries.md` §1, §4.2, §5).
//!
//! Owns the arithmetic only: Gregorian seconds and UTC days, the entries of a record
//! built from bucket changes, and the combination rule that folds entries into one row
//! per (day, source). The store keeps materialised rows with the same rule written in
//! SQL (§5.6); the tests of the store check it against this reference. Nothing here
//! reads a clock: every time is an argument.

use super::ids::{AccountId, ItemName};
use super::quantities::{Bucket, QuantityChange};
use chrono::{DateTime, Datelike, NaiveDate, Utc};
use std::collections::BTreeMap;

/// Seconds between 0000-01-01 and 1970-01-01 (UTC, proleptic Gregorian calendar).
pub const GREGORIAN_UNIX_OFFSET: i64 = 62_167_219_200;

/// Kazoo's timestamp: seconds since 0000-01-01T00:00:00 UTC.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct GregorianSeconds(pub i64);

impl GregorianSeconds {
    pub fn from_utc(time: DateTime<Utc>) -> Self {
        GregorianSeconds(time.timestamp().saturating_add(GREGORIAN_UNIX_OFFSET))
    }

    pub fn unix(self) -> i64 {
        self.0.saturating_sub(GREGORIAN_UNIX_OFFSET)
    }

    /// The UTC calendar date of this instant, or `None` outside chrono's range.
    pub fn day(self) -> Option<NaiveDate> {
        DateTime::<Utc>::from_timestamp(self.unix(), 0).map(|time| time.date_naive())
    }

    /// `YYYY-MM-DD`, the day key of summaries (§1).
    pub fn day_key(self) -> Option<String> {
        self.day().map(|day| day.format("%Y-%m-%d").to_string())
    }

    /// The UTC year, which prefixes record ids (`YYYY-…`, §4.2.5).
    pub fn year(self) -> Option<i32> {
        self.day().map(|day| day.year())
    }
}

/// One entry of a quantity-change record (§4.2.3).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordEntry {
    pub bucket: Bucket,
    pub category: String,
    /// The item name; Kazoo calls it `source`.
    pub source: ItemName,
    /// new − old.
    pub quantity: i64,
    /// The new value.
    pub billable: i64,
}

/// A quantity-change record: what changed in one account's buckets at one instant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChangeRecord {
    pub account: AccountId,
    pub created: GregorianSeconds,
    /// In the order of §4.2.4.
    pub entries: Vec<RecordEntry>,
}

/// The entries of a record for the given changes, in the order of §4.2.4 (bucket
/// account, manual, cascade; then category, item); changes of zero are dropped.
pub fn record_entries(changes: &[QuantityChange]) -> Vec<RecordEntry> {
    let mut entries: Vec<(usize, RecordEntry)> = changes
        .iter()
        .filter(|change| change.difference() != 0)
        .map(|change| {
            let rank = Bucket::ALL
                .iter()
                .position(|bucket| *bucket == change.bucket)
                .expect("Bucket::ALL lists every bucket");
            (
                rank,
                RecordEntry {
                    bucket: change.bucket,
                    category: change.category.to_string(),
                    source: change.item.clone(),
                    quantity: change.difference(),
                    billable: change.new,
                },
            )
        })
        .collect();
    entries.sort_by(|(rank_a, a), (rank_b, b)| (rank_a, &a.category, &a.source).cmp(&(rank_b, &b.category, &b.source)));
    entries.into_iter().map(|(_, entry)| entry).collect()
}

/// One summary row (§5.2): what a source did on one day.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DaySummary {
    pub addition: i64,
    pub removal: i64,
    /// The `billable` of the latest entry of the day (last processed wins ties).
    pub quantity: i64,
    pub last_timestamp: GregorianSeconds,
}

impl DaySummary {
    /// The row made by a single entry (§5.1).
    pub fn of_entry(entry: &RecordEntry, created: GregorianSeconds) -> Self {
        DaySummary::of_change(entry.quantity, entry.billable, created)
    }

    /// The row made by an entry of difference `quantity` (new − old) and new value
    /// `billable`, written at `created` (§5.1).
    pub fn of_change(quantity: i64, billable: i64, created: GregorianSeconds) -> Self {
        DaySummary {
            addition: quantity.max(0),
            removal: quantity.min(0).saturating_neg(),
            quantity: billable,
            last_timestamp: created,
        }
    }

    /// Folds a later-processed value into this row (§5.2): sums add up, and the value's
    /// quantity wins when its timestamp is not older than the row's.
    pub fn combine(self, value: DaySummary) -> DaySummary {
        let newer = value.last_timestamp >= self.last_timestamp;
        DaySummary {
            addition: self.addition.saturating_add(value.addition),
            removal: self.removal.saturating_add(value.removal),
            quantity: if newer { value.quantity } else { self.quantity },
            last_timestamp: if newer {
                value.last_timestamp
            } else {
                self.last_timestamp
            },
        }
    }
}

/// The summary rows of a set of records, keyed (day, source), processing records in
/// ascending `created` order (stable, so equal times keep the given order) and entries
/// in record order. Records whose time has no calendar day are ignored.
pub fn summarise(records: &[ChangeRecord]) -> BTreeMap<(String, ItemName), DaySummary> {
    let mut ordered: Vec<&ChangeRecord> = records.iter().collect();
    ordered.sort_by_key(|record| record.created);
    let mut rows: BTreeMap<(String, ItemName), DaySummary> = BTreeMap::new();
    for record in ordered {
        let Some(day) = record.created.day_key() else {
            continue;
        };
        for entry in &record.entries {
            let value = DaySummary::of_entry(entry, record.created);
            rows.entry((day.clone(), entry.source.clone()))
                .and_modify(|row| *row = row.combine(value))
                .or_insert(value);
        }
    }
    rows
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::ids::Category;

    fn entry(source: &str, quantity: i64, billable: i64) -> RecordEntry {
        RecordEntry {
            bucket: Bucket::Cascade,
            category: "any".to_string(),
            source: ItemName::parse(source).expect("test name"),
            quantity,
            billable,
        }
    }

    fn record(created: i64, entries: Vec<RecordEntry>) -> ChangeRecord {
        ChangeRecord {
            account: AccountId::parse("r").expect("test id"),
            created: GregorianSeconds(created),
            entries,
        }
    }

    fn row(addition: i64, removal: i64, last_timestamp: i64, quantity: i64) -> DaySummary {
        DaySummary {
            addition,
            removal,
            quantity,
            last_timestamp: GregorianSeconds(last_timestamp),
        }
    }

    #[test]
    fn days_are_utc_dates_of_gregorian_seconds() {
        assert_eq!(
            GregorianSeconds(63_743_068_799).day_key().as_deref(),
            Some("2019-12-08")
        );
        assert_eq!(
            GregorianSeconds(63_743_068_800).day_key().as_deref(),
            Some("2019-12-09")
        );
        assert_eq!(GregorianSeconds(63_743_068_800).year(), Some(2019));
    }

    #[test]
    fn the_worked_example_of_the_spec_gives_its_table() {
        let records = vec![
            record(63_742_805_754, vec![entry("account", 1, 2)]),
            record(63_743_140_500, vec![entry("account", 1, 3)]),
            record(63_743_140_580, vec![entry("softphone", 1, 3)]),
            record(63_743_140_658, vec![entry("account", -1, 2)]),
            record(63_743_140_695, vec![entry("user", 1, 2), entry("mailbox", 3, 3)]),
        ];
        let rows = summarise(&records);
        let key = |day: &str, source: &str| (day.to_string(), ItemName::parse(source).expect("test name"));
        assert_eq!(rows.len(), 5);
        assert_eq!(rows[&key("2019-12-05", "account")], row(1, 0, 63_742_805_754, 2));
        assert_eq!(rows[&key("2019-12-09", "account")], row(1, 1, 63_743_140_658, 2));
        assert_eq!(rows[&key("2019-12-09", "softphone")], row(1, 0, 63_743_140_580, 3));
        assert_eq!(rows[&key("2019-12-09", "mailbox")], row(3, 0, 63_743_140_695, 3));
        assert_eq!(rows[&key("2019-12-09", "user")], row(1, 0, 63_743_140_695, 2));
    }

    #[test]
    fn a_late_older_value_only_adds_to_the_sums() {
        let combined = row(1, 0, 200, 5).combine(row(0, 2, 100, 9));
        assert_eq!(combined, row(1, 2, 200, 5));
    }

    #[test]
    fn at_equal_times_the_last_processed_value_wins() {
        let combined = row(1, 0, 100, 5).combine(row(2, 0, 100, 7));
        assert_eq!(combined, row(3, 0, 100, 7));
    }

    #[test]
    fn record_entries_are_ordered_account_manual_cascade_then_by_name() {
        let change = |bucket, category: &str, item: &str, old, new| QuantityChange {
            bucket,
            category: Category::parse(category).expect("test name"),
            item: ItemName::parse(item).expect("test name"),
            old,
            new,
        };
        let entries = record_entries(&[
            change(Bucket::Cascade, "users", "user", 1, 3),
            change(Bucket::Account, "users", "user", 2, 1),
            change(Bucket::Account, "devices", "softphone", 0, 4),
            change(Bucket::Manual, "users", "user", 5, 5),
        ]);
        let summary: Vec<(Bucket, &str, &str, i64, i64)> = entries
            .iter()
            .map(|e| (e.bucket, e.category.as_str(), e.source.as_str(), e.quantity, e.billable))
            .collect();
        assert_eq!(
            summary,
            vec![
                (Bucket::Account, "devices", "softphone", 4, 4),
                (Bucket::Account, "users", "user", -1, 1),
                (Bucket::Cascade, "users", "user", 2, 3),
            ]
        );
    }
}
