//! One item plan (`plan.<category>.<item>`) read into types, with Kazoo's coercions.
//!
//! Reading never fails: a field Kazoo would not understand is treated as absent, as
//! `plans.md` §1 requires for stored documents. Every such field is also reported as
//! an [`Issue`] with its path, so the same reader serves strict validation (quote and
//! API input turn the first error into a refusal) and lenient pricing (issues ignored).

use super::document::{Coercion, Map, Path, Value};
use super::ids::ItemName;
use super::money::Money;
use std::collections::{BTreeMap, BTreeSet};

/// How bad a finding is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Severity {
    /// The value is unusable and is ignored; strict readers refuse the document.
    Error,
    /// The value is used, but probably not as its author meant (`quirks.md`).
    Warning,
}

/// A finding about a document, located by its path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Issue {
    pub severity: Severity,
    pub path: Path,
    pub message: String,
}

impl Issue {
    pub fn error(path: Path, message: impl Into<String>) -> Issue {
        Issue {
            severity: Severity::Error,
            path,
            message: message.into(),
        }
    }

    pub fn warning(path: Path, message: impl Into<String>) -> Issue {
        Issue {
            severity: Severity::Warning,
            path,
            message: message.into(),
        }
    }
}

impl std::fmt::Display for Issue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.path, self.message)
    }
}

/// A tier table (`rates`, `flat_rates`, discount `rates`): threshold → price.
///
/// A threshold means "up to and including this many units". A value that is not a
/// number is kept as `None`, because Kazoo's lookup fails when it selects such a tier
/// (and then falls through to the next rule) rather than skipping to the next tier.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Tiers(BTreeMap<u64, Option<Money>>);

impl Tiers {
    /// `tier(T, n)` of `pricing.md` §4: the value of the smallest threshold ≥ n.
    pub fn lookup(&self, units: i64) -> Option<Money> {
        self.lookup_tier(units).map(|(_, price)| price)
    }

    /// [`Tiers::lookup`] with the threshold that was chosen, for explanations.
    pub fn lookup_tier(&self, units: i64) -> Option<(u64, Money)> {
        let units = u64::try_from(units).unwrap_or(0);
        let (threshold, price) = self.0.range(units..).next()?;
        price.map(|price| (*threshold, price))
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// `discounts.single`: a flat amount taken off once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SingleDiscount {
    /// Defaults to the item's plain `rate`.
    pub rate: Option<Money>,
    /// Billable units needed before it applies (default 1).
    pub minimum: i64,
}

/// `discounts.cumulative`: a per-unit discount on up to `maximum` units.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CumulativeDiscount {
    pub rate: Option<Money>,
    pub rates: Tiers,
    /// Units that get the discount; Kazoo's default 0 means no discount at all.
    pub maximum: i64,
    /// Billable units needed before it applies (default 1).
    pub minimum: i64,
}

/// The fields of an item plan that pricing reads (`plans.md` §3).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ItemPlan {
    pub rate: Option<Money>,
    pub rates: Tiers,
    pub flat_rates: Tiers,
    pub flat_rate: Option<Money>,
    pub minimum: Option<i64>,
    pub maximum: Option<i64>,
    /// Always ≥ 1: smaller values are invalid and read as 1 (Kazoo divides by zero).
    pub step: i64,
    pub cascade: bool,
    pub activation_charge: Option<Money>,
    pub name: Option<String>,
    pub masquerade: Option<String>,
    pub exceptions: BTreeSet<ItemName>,
    pub single_discount: Option<SingleDiscount>,
    pub cumulative_discount: Option<CumulativeDiscount>,
    /// Echoed to bookkeepers as written; pricing never reads it.
    pub prorate: Option<Map>,
}

/// Reads fields of one object, recording what it cannot use.
struct FieldReader<'a> {
    map: &'a Map,
    path: &'a Path,
    issues: &'a mut Vec<Issue>,
}

impl<'a> FieldReader<'a> {
    fn read<T>(&mut self, key: &str, convert: impl Fn(&Value) -> Result<T, Coercion>) -> Option<T> {
        let value = self.map.get(key)?;
        match convert(value) {
            Ok(converted) => Some(converted),
            Err(coercion) => {
                let message = format!("{coercion}, found {}", value.describe());
                self.issues.push(Issue::error(self.path.key(key), message));
                None
            }
        }
    }

    fn money(&mut self, key: &str) -> Option<Money> {
        self.read(key, |value| value.to_decimal().map(Money::new))
    }

    fn integer(&mut self, key: &str) -> Option<i64> {
        self.read(key, Value::to_integer)
    }

    /// A display label (`name`, `as`) as Kazoo reads it: a string, or a number taken
    /// as its text; a value Kazoo's `kz_term:is_empty` calls empty reads as absent, so
    /// the item keeps its key and its default name (quirk Q-PLN-16).
    fn label(&mut self, key: &str) -> Option<String> {
        self.read(key, |value| match value {
            Value::String(text) => Ok(Some(text.clone()).filter(|text| !is_empty_label(text))),
            // Kazoo's `is_empty` holds for the numbers 0 and 0.0, whatever their spelling.
            Value::Number(number) if number.as_decimal().is_some_and(|exact| exact.is_zero()) => Ok(None),
            Value::Number(number) => Ok(Some(number.as_text().to_owned())),
            Value::Array(items) if items.is_empty() => Ok(None),
            _ => Err(Coercion::WrongKind {
                expected: "a string or a number",
            }),
        })
        .flatten()
    }

    fn object(&mut self, key: &str) -> Option<&'a Map> {
        let value = self.map.get(key)?;
        match value {
            Value::Object(map) => Some(map),
            other => {
                let message = format!("expected an object, found {}", other.describe());
                self.issues.push(Issue::error(self.path.key(key), message));
                None
            }
        }
    }

    fn tiers(&mut self, key: &str) -> Tiers {
        let path = self.path.key(key);
        let Some(table) = self.object(key) else {
            return Tiers::default();
        };
        let mut tiers = BTreeMap::new();
        let mut found = Vec::new();
        for (threshold, price) in table {
            let Some(units) = canonical_threshold(threshold) else {
                let message = "tier thresholds must be whole numbers of units written without sign or leading zeros";
                found.push(Issue::error(path.key(threshold), message));
                continue;
            };
            let price = match price.to_decimal() {
                Ok(exact) => Some(Money::new(exact)),
                Err(coercion) => {
                    let message = format!("{coercion}, found {}", price.describe());
                    found.push(Issue::error(path.key(threshold), message));
                    None
                }
            };
            tiers.insert(units, price);
        }
        self.issues.extend(found);
        Tiers(tiers)
    }
}

/// The strings Kazoo's `kz_term:is_empty` treats as no value at all.
fn is_empty_label(text: &str) -> bool {
    matches!(text, "" | "0" | "NULL" | "undefined")
}

/// A tier key is a canonical non-negative integer: `0`, `5`, `10`; not `05`, `-1`, `2.5`.
fn canonical_threshold(key: &str) -> Option<u64> {
    let canonical = key == "0" || (!key.starts_with('0') && !key.is_empty() && key.bytes().all(|b| b.is_ascii_digit()));
    canonical.then(|| key.parse().ok()).flatten()
}

impl ItemPlan {
    /// Reads an item plan, appending to `issues` everything it had to ignore.
    pub fn read(map: &Map, path: &Path, issues: &mut Vec<Issue>) -> ItemPlan {
        let mut fields = FieldReader { map, path, issues };
        let rate = fields.money("rate");
        let rates = fields.tiers("rates");
        let flat_rates = fields.tiers("flat_rates");
        let flat_rate = fields.money("flat_rate");
        let minimum = fields.integer("minimum");
        let maximum = fields.integer("maximum");
        let step = match fields.integer("step") {
            Some(step) if step >= 1 => step,
            Some(step) => {
                let message = format!("step {step} is below 1 and is treated as 1");
                fields.issues.push(Issue::warning(path.key("step"), message));
                1
            }
            None => 1,
        };
        // `plans.md` §1: for `cascade`, anything that is not true-like is false.
        let cascade = map.get("cascade").is_some_and(|value| value.to_bool() == Ok(true));
        let activation_charge = fields.money("activation_charge");
        let name = fields.label("name");
        let masquerade = fields.label("as");
        let exceptions = fields
            .read("exceptions", |value| match value {
                Value::Array(items) => Ok(items
                    .iter()
                    .filter_map(|item| item.as_str().and_then(|text| ItemName::parse(text).ok()))
                    .collect()),
                _ => Err(Coercion::WrongKind {
                    expected: "an array of item names",
                }),
            })
            .unwrap_or_default();
        let prorate = fields.object("prorate").filter(|map| !map.is_empty()).cloned();
        let (single_discount, cumulative_discount) = match fields.object("discounts") {
            Some(discounts) => {
                let discounts_path = path.key("discounts");
                let mut inner = FieldReader {
                    map: discounts,
                    path: &discounts_path,
                    issues: &mut *fields.issues,
                };
                let single = inner.object("single");
                let cumulative = inner.object("cumulative");
                let issues = &mut *inner.issues;
                (
                    single.map(|single| read_single(single, &discounts_path.key("single"), issues)),
                    cumulative.map(|cumulative| read_cumulative(cumulative, &discounts_path.key("cumulative"), issues)),
                )
            }
            None => (None, None),
        };

        ItemPlan {
            rate,
            rates,
            flat_rates,
            flat_rate,
            minimum,
            maximum,
            step,
            cascade,
            activation_charge,
            name,
            masquerade,
            exceptions,
            single_discount,
            cumulative_discount,
            prorate,
        }
    }

    /// Reads without reporting: the lenient reading of stored documents.
    pub fn read_lenient(map: &Map) -> ItemPlan {
        ItemPlan::read(map, &Path::root(), &mut Vec::new())
    }
}

/// An empty object never reaches pricing (preparation strips it), so presence of the
/// object means the discount is configured.
fn read_single(map: &Map, path: &Path, issues: &mut Vec<Issue>) -> SingleDiscount {
    let mut fields = FieldReader { map, path, issues };
    if map.contains_key("rates") {
        let message = "discounts.single.rates is ignored by pricing (quirk Q-PRC-2)";
        fields.issues.push(Issue::warning(path.key("rates"), message));
    }
    SingleDiscount {
        rate: fields.money("rate"),
        minimum: fields.integer("minimum").unwrap_or(1),
    }
}

fn read_cumulative(map: &Map, path: &Path, issues: &mut Vec<Issue>) -> CumulativeDiscount {
    let mut fields = FieldReader { map, path, issues };
    let maximum = fields.integer("maximum");
    if maximum.is_none() && !map.is_empty() {
        let message = "a cumulative discount without maximum discounts nothing (quirk Q-PRC-3)";
        fields.issues.push(Issue::warning(path.clone(), message));
    }
    CumulativeDiscount {
        rate: fields.money("rate"),
        rates: fields.tiers("rates"),
        maximum: maximum.unwrap_or(0),
        minimum: fields.integer("minimum").unwrap_or(1),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::testing::{money, num, text};
    fn tiers(entries: &[(&str, Value)]) -> Value {
        Value::Object(entries.iter().map(|(k, v)| (k.to_string(), v.clone())).collect())
    }

    #[test]
    fn tier_lookup_takes_the_smallest_threshold_at_or_above_the_units() {
        let mut issues = Vec::new();
        let map: Map = [(
            "rates".to_owned(),
            tiers(&[("5", num("10")), ("10", num("8")), ("20", num("6"))]),
        )]
        .into();
        let plan = ItemPlan::read(&map, &Path::root(), &mut issues);
        assert!(issues.is_empty());
        assert_eq!(plan.rates.lookup(0), Some(money("10")));
        assert_eq!(plan.rates.lookup(7), Some(money("8")));
        assert_eq!(plan.rates.lookup(10), Some(money("8")));
        assert_eq!(plan.rates.lookup(25), None);
    }

    #[test]
    fn invalid_values_are_reported_with_their_path_and_read_as_absent() {
        let mut issues = Vec::new();
        let map: Map = [
            ("rate".to_owned(), Value::String("abc".into())),
            (
                "rates".to_owned(),
                tiers(&[("10", Value::String("abc".into())), ("x", num("1"))]),
            ),
            ("minimum".to_owned(), Value::String("2.5".into())),
        ]
        .into();
        let path = Path::root().key("plan").key("devices").key("sip_device");
        let plan = ItemPlan::read(&map, &path, &mut issues);
        assert_eq!(plan.rate, None);
        assert_eq!(plan.minimum, Some(3));
        assert_eq!(plan.rates.lookup(3), None, "a non-number tier fails the lookup");
        let messages: Vec<String> = issues.iter().map(ToString::to_string).collect();
        assert_eq!(
            messages,
            vec![
                r#"plan.devices.sip_device.rate: expected a number, found "abc""#.to_owned(),
                r#"plan.devices.sip_device.rates."10": expected a number, found "abc""#.to_owned(),
                "plan.devices.sip_device.rates.x: tier thresholds must be whole numbers of units written without sign or leading zeros".to_owned(),
            ]
        );
    }

    fn labels(name: Value, masquerade: Value) -> (Option<String>, Option<String>, Vec<Issue>) {
        let mut issues = Vec::new();
        let map: Map = [("name".to_owned(), name), ("as".to_owned(), masquerade)].into();
        let plan = ItemPlan::read(&map, &Path::root(), &mut issues);
        (plan.name, plan.masquerade, issues)
    }

    #[test]
    fn labels_kazoo_calls_empty_read_as_absent() {
        let empties = [
            text(""),
            text("0"),
            text("NULL"),
            text("undefined"),
            num("0"),
            num("0.0"),
            Value::Array(Vec::new()),
        ];
        for empty in empties {
            assert_eq!(
                labels(empty.clone(), empty.clone()),
                (None, None, Vec::new()),
                "{empty:?}"
            );
        }
    }

    #[test]
    fn numeric_labels_read_as_their_text_and_other_kinds_are_refused() {
        assert_eq!(
            labels(num("42"), num("7.5")),
            (Some("42".to_owned()), Some("7.5".to_owned()), Vec::new())
        );
        assert_eq!(
            labels(text("null"), text(" 0")),
            (Some("null".to_owned()), Some(" 0".to_owned()), Vec::new()),
            "only the exact forms are empty"
        );
        let (name, _, issues) = labels(Value::Bool(true), text("x"));
        assert_eq!(name, None);
        let messages: Vec<String> = issues.iter().map(ToString::to_string).collect();
        assert_eq!(
            messages,
            vec!["name: expected a string or a number, found true".to_owned()]
        );
    }

    #[test]
    fn step_below_one_reads_as_one_with_a_warning() {
        let mut issues = Vec::new();
        let map: Map = [("step".to_owned(), num("0"))].into();
        assert_eq!(ItemPlan::read(&map, &Path::root(), &mut issues).step, 1);
        assert_eq!(issues.len(), 1);
        assert_eq!(issues[0].severity, Severity::Warning);
    }
}
