//! Merging the plans of one bookkeeper into one plan (`plans.md` §7).
//!
//! Plans are grouped by strategy, ordered by priority inside each group (lowest
//! precedence first), merged with the group's strategy, and the group results are
//! deep-merged in order of strategy priority. `simple` and `recursive` are both the
//! per-leaf deep merge (quirk Q-PLN-1); `cumulative` rebuilds every item from a fixed
//! set of field rules (§7.6).

use super::document::{deep_merge_owned, Map, Number, Value};
use super::plan::{PreparedPlan, Strategy};
use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet};

/// How strategy groups rank against each other (config `merge_strategy_priority`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StrategyPriorities {
    pub simple: i64,
    pub recursive: i64,
    pub cumulative: i64,
}

impl Default for StrategyPriorities {
    /// Kazoo's code defaults (the published schema's `cumulative: 20` is not used, Q-PLN-4).
    fn default() -> Self {
        StrategyPriorities {
            simple: 10,
            recursive: 25,
            cumulative: 50,
        }
    }
}

impl StrategyPriorities {
    pub fn of(&self, strategy: Strategy) -> i64 {
        match strategy {
            Strategy::Simple => self.simple,
            Strategy::Recursive => self.recursive,
            Strategy::Cumulative => self.cumulative,
        }
    }
}

/// Merges one bookkeeper group into one plan document (`_id` = `single`).
pub fn merge_plans(plans: Vec<PreparedPlan>, priorities: &StrategyPriorities) -> Map {
    merge(plans.into_iter().map(|plan| (plan, None)).collect(), priorities).0
}

/// [`merge_plans`], also merging each plan's origin document (`plan::resolve_plans_explained`)
/// alongside it: the second map has the merged plan's shape, each leaf saying which
/// plans and layers wrote it. Simple and recursive merges are structural (objects
/// descend, nulls delete, anything else replaces), so merging origin documents the same
/// way picks the same winners; the cumulative rules name every plan they read.
pub fn merge_plans_explained(
    plans: Vec<PreparedPlan>,
    origins: Vec<Map>,
    priorities: &StrategyPriorities,
) -> (Map, Map) {
    let paired = plans.into_iter().zip(origins.into_iter().map(Some)).collect();
    let (merged, origins) = merge(paired, priorities);
    (merged, origins.unwrap_or_default())
}

/// A prepared plan with, when explaining, its origin document.
type Traced = (PreparedPlan, Option<Map>);

fn merge(plans: Vec<Traced>, priorities: &StrategyPriorities) -> (Map, Option<Map>) {
    let mut strategies: Vec<Strategy> = Vec::new();
    for (plan, _) in &plans {
        if !strategies.contains(&plan.strategy) {
            strategies.push(plan.strategy);
        }
    }
    // Equal strategy priorities keep the fixed order simple, recursive, cumulative.
    strategies.sort_by_key(|strategy| (priorities.of(*strategy), *strategy));

    let mut plans: Vec<(usize, Traced)> = plans.into_iter().enumerate().collect();
    let mut merged = Map::new();
    let mut merged_origins: Option<Map> = None;
    for strategy in strategies {
        let (group, rest): (Vec<_>, Vec<_>) = plans.into_iter().partition(|(_, (plan, _))| plan.strategy == strategy);
        plans = rest;
        let group = ordered_group(group);
        let (group_result, group_origins) = match strategy {
            Strategy::Simple | Strategy::Recursive => merge_documents(group),
            Strategy::Cumulative => merge_cumulative(group),
        };
        deep_merge_owned(&mut merged, group_result);
        if let Some(group_origins) = group_origins {
            deep_merge_owned(merged_origins.get_or_insert_with(Map::new), group_origins);
        }
    }
    merged.insert("_id".to_owned(), Value::String("single".to_owned()));
    (merged, merged_origins)
}

/// The plans of one strategy, lowest precedence first (§7.3): a missing priority ranks
/// above every number, and on equal priorities the plan listed earlier comes later.
fn ordered_group(mut group: Vec<(usize, Traced)>) -> Vec<Traced> {
    group.sort_by_key(|(position, (plan, _))| (plan.priority.is_none(), plan.priority, Reverse(*position)));
    group.into_iter().map(|(_, traced)| traced).collect()
}

fn merge_documents(group: Vec<Traced>) -> (Map, Option<Map>) {
    let mut merged = Map::new();
    let mut merged_origins: Option<Map> = None;
    for (plan, origins) in group {
        deep_merge_owned(&mut merged, plan.document);
        if let Some(origins) = origins {
            deep_merge_owned(merged_origins.get_or_insert_with(Map::new), origins);
        }
    }
    (merged, merged_origins)
}

/// §7.6: the non-`plan` fields deep-merged as usual, `plan` rebuilt field by field.
fn merge_cumulative(group: Vec<Traced>) -> (Map, Option<Map>) {
    let (plan, plan_origins) = cumulative_plan(&group);
    let (mut merged, mut merged_origins) = merge_documents(group);
    merged.insert("plan".to_owned(), Value::Object(plan));
    if let (Some(merged_origins), Some(plan_origins)) = (&mut merged_origins, plan_origins) {
        merged_origins.insert("plan".to_owned(), Value::Object(plan_origins));
    }
    (merged, merged_origins)
}

fn item_of<'a>(document: &'a Map, category: &str, item: &str) -> Option<&'a Map> {
    document.get(category)?.as_object()?.get(item)?.as_object()
}

fn plan_member(document: &Map) -> Option<&Map> {
    document.get("plan").and_then(Value::as_object)
}

fn cumulative_plan(group: &[Traced]) -> (Map, Option<Map>) {
    // Highest precedence first, each plan's `plan` member with its origins.
    let documents: Vec<(&Map, Option<&Map>)> = group
        .iter()
        .rev()
        .filter_map(|(plan, origins)| Some((plan_member(&plan.document)?, origins.as_ref().and_then(plan_member))))
        .collect();
    let explained = group.iter().all(|(_, origins)| origins.is_some());

    let mut keys: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
    for (document, _) in &documents {
        for (category, items) in document.iter() {
            let Some(items) = items.as_object() else { continue };
            let entry = keys.entry(category.as_str()).or_default();
            entry.extend(
                items
                    .iter()
                    .filter(|(_, plan)| plan.as_object().is_some())
                    .map(|(item, _)| item.as_str()),
            );
        }
    }

    let mut plan = Map::new();
    let mut plan_origins = Map::new();
    for (category, items) in keys {
        let mut category_plans = Map::new();
        let mut category_origins = Map::new();
        for item in items {
            let (item_plans, item_origins): (Vec<&Map>, Vec<Option<&Map>>) = documents
                .iter()
                .filter_map(|(document, origins)| {
                    let plan = item_of(document, category, item)?;
                    Some((plan, origins.and_then(|origins| item_of(origins, category, item))))
                })
                .unzip();
            let item_origins: Option<Vec<&Map>> = item_origins.into_iter().collect();
            let (rebuilt, rebuilt_origins) = cumulative_item(&item_plans, item_origins.as_deref());
            if !rebuilt.is_empty() {
                category_plans.insert(item.to_owned(), Value::Object(rebuilt));
                category_origins.insert(item.to_owned(), Value::Object(rebuilt_origins));
            }
        }
        if !category_plans.is_empty() {
            plan.insert(category.to_owned(), Value::Object(category_plans));
            plan_origins.insert(category.to_owned(), Value::Object(category_origins));
        }
    }
    (plan, explained.then_some(plan_origins))
}

/// How the cumulative strategy combines one field of the item plans (§7.6).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum FieldRule {
    /// The highest-precedence plan that defines it.
    FirstDefined,
    /// The sum of every value that reads as an integer.
    IntegerSum,
    /// The union of threshold tables, the higher precedence winning a threshold.
    TableUnion,
    /// The union of `exceptions` lists, sorted, without duplicates (quirk Q-PLN-6).
    ExceptionsUnion,
    /// True when any defined value is true-like.
    AnyTrue,
}

impl FieldRule {
    /// The name an explanation gives a field combined from several plans.
    fn name(self) -> &'static str {
        match self {
            FieldRule::FirstDefined => "first defined",
            FieldRule::IntegerSum => "sum",
            FieldRule::TableUnion => "union",
            FieldRule::ExceptionsUnion => "union",
            FieldRule::AnyTrue => "any true",
        }
    }
}

/// The only fields a cumulative merge keeps, and how each is combined.
const CUMULATIVE_FIELDS: [(&[&str], FieldRule); 18] = [
    (&["activation_charge"], FieldRule::FirstDefined),
    (&["step"], FieldRule::FirstDefined),
    (&["flat_rate"], FieldRule::FirstDefined),
    (&["rate"], FieldRule::FirstDefined),
    (&["as"], FieldRule::FirstDefined),
    (&["name"], FieldRule::FirstDefined),
    (&["discounts", "single", "rate"], FieldRule::FirstDefined),
    (&["discounts", "cumulative", "rate"], FieldRule::FirstDefined),
    (&["minimum"], FieldRule::IntegerSum),
    (&["discounts", "cumulative", "maximum"], FieldRule::IntegerSum),
    (&["flat_rates"], FieldRule::TableUnion),
    (&["rates"], FieldRule::TableUnion),
    (&["discounts", "single", "rates"], FieldRule::TableUnion),
    (&["discounts", "cumulative", "rates"], FieldRule::TableUnion),
    (&["exceptions"], FieldRule::ExceptionsUnion),
    (&["cascade"], FieldRule::AnyTrue),
    (&["prorate", "additions"], FieldRule::AnyTrue),
    (&["prorate", "removals"], FieldRule::AnyTrue),
];

/// The field rules of §7.6 over one item's plans, highest precedence first; with
/// their origin documents, also the origins of every field written.
fn cumulative_item(plans: &[&Map], origins: Option<&[&Map]>) -> (Map, Map) {
    let mut item = Map::new();
    let mut item_origins = Map::new();
    for (path, rule) in CUMULATIVE_FIELDS {
        let read = contributors(rule, plans, path);
        let Some(value) = combine(rule, plans, path, &read) else {
            continue;
        };
        set_path(&mut item, path, Some(value));
        if let Some(origins) = origins {
            let written = match rule {
                FieldRule::FirstDefined => read.first().and_then(|first| lookup(origins[*first], path)).cloned(),
                FieldRule::TableUnion => combine(rule, origins, path, &read),
                FieldRule::IntegerSum | FieldRule::ExceptionsUnion | FieldRule::AnyTrue => {
                    let mut combined = vec![Value::String(rule.name().to_owned())];
                    combined.extend(read.iter().filter_map(|index| lookup(origins[*index], path)).cloned());
                    Some(Value::Array(combined))
                }
            };
            set_path(&mut item_origins, path, written);
        }
    }
    (item, item_origins)
}

/// The positions (in `plans`) of the plans a rule takes values from.
fn contributors(rule: FieldRule, plans: &[&Map], path: &[&str]) -> Vec<usize> {
    let defined = |index: &usize| lookup(plans[*index], path);
    let indices = 0..plans.len();
    match rule {
        FieldRule::FirstDefined => indices.filter(|index| defined(index).is_some()).take(1).collect(),
        FieldRule::IntegerSum => indices
            .filter(|index| defined(index).is_some_and(|value| value.to_integer().is_ok()))
            .collect(),
        FieldRule::TableUnion => indices
            .filter(|index| defined(index).and_then(Value::as_object).is_some())
            .collect(),
        FieldRule::ExceptionsUnion => indices
            .filter(|index| matches!(defined(index), Some(Value::Array(_))))
            .collect(),
        FieldRule::AnyTrue => indices.filter(|index| defined(index).is_some()).collect(),
    }
}

/// The combined value of the contributing plans (`read`), or none when none contributes.
fn combine(rule: FieldRule, plans: &[&Map], path: &[&str], read: &[usize]) -> Option<Value> {
    if read.is_empty() {
        return None;
    }
    let mut values = read.iter().filter_map(|index| lookup(plans[*index], path));
    match rule {
        FieldRule::FirstDefined => values.next().cloned(),
        FieldRule::IntegerSum => {
            let sum = values
                .filter_map(|value| value.to_integer().ok())
                .fold(0i64, i64::saturating_add);
            Some(Value::Number(Number::from_integer(sum)))
        }
        FieldRule::TableUnion => {
            let tables: Vec<&Map> = values.filter_map(Value::as_object).collect();
            let mut union = Map::new();
            for table in tables.iter().rev() {
                union.extend(
                    table
                        .iter()
                        .map(|(threshold, value)| (threshold.clone(), value.clone())),
                );
            }
            Some(Value::Object(union))
        }
        FieldRule::ExceptionsUnion => {
            let names: BTreeSet<&str> = values
                .filter_map(|value| match value {
                    Value::Array(items) => Some(items),
                    _ => None,
                })
                .flat_map(|items| items.iter().filter_map(Value::as_str))
                .collect();
            Some(Value::Array(
                names.into_iter().map(|name| Value::String(name.to_owned())).collect(),
            ))
        }
        FieldRule::AnyTrue => Some(Value::Bool(values.any(|value| value.to_bool() == Ok(true)))),
    }
}

fn lookup<'a>(plan: &'a Map, path: &[&str]) -> Option<&'a Value> {
    let (last, parents) = path.split_last()?;
    let mut map = plan;
    for key in parents {
        map = map.get(*key)?.as_object()?;
    }
    map.get(*last)
}

fn set_path(item: &mut Map, path: &[&str], value: Option<Value>) {
    let (Some(value), Some((last, parents))) = (value, path.split_last()) else {
        return;
    };
    let mut map = item;
    for key in parents {
        let child = map
            .entry((*key).to_owned())
            .or_insert_with(|| Value::Object(Map::new()));
        if !matches!(child, Value::Object(_)) {
            *child = Value::Object(Map::new());
        }
        let Value::Object(child) = child else { return };
        map = child;
    }
    map.insert((*last).to_owned(), value);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::ids::PlanId;
    use crate::domain::plan::BookkeeperRef;

    use crate::domain::testing::{num, obj, text};
    fn sip_device(fields: Value) -> Map {
        match obj(vec![(
            "plan",
            obj(vec![("devices", obj(vec![("sip_device", fields)]))]),
        )]) {
            Value::Object(map) => map,
            _ => unreachable!("obj builds objects"),
        }
    }
    fn plan(id: &str, strategy: Strategy, priority: Option<i64>, fields: Value) -> PreparedPlan {
        PreparedPlan {
            id: PlanId::parse(id).expect("test id"),
            document: sip_device(fields),
            bookkeeper: BookkeeperRef {
                kind: "default".into(),
                vendor_id: "res".into(),
                id: "default_bookkeeper".into(),
            },
            strategy,
            priority,
        }
    }
    fn merged_sip_device(plans: &[PreparedPlan]) -> Option<Value> {
        let merged = merge_plans(plans.to_vec(), &StrategyPriorities::default());
        lookup(&merged, &["plan", "devices", "sip_device"]).cloned()
    }

    #[test]
    fn simple_merges_per_leaf_with_the_higher_priority_winning() {
        let a = plan(
            "a",
            Strategy::Simple,
            Some(10),
            obj(vec![
                ("rate", num("10")),
                ("discounts", obj(vec![("single", obj(vec![("rate", num("2"))]))])),
            ]),
        );
        let b = plan("b", Strategy::Simple, Some(20), obj(vec![("rate", num("8"))]));
        let expected = obj(vec![
            ("rate", num("8")),
            ("discounts", obj(vec![("single", obj(vec![("rate", num("2"))]))])),
        ]);
        assert_eq!(merged_sip_device(&[a.clone(), b.clone()]), Some(expected.clone()));
        assert_eq!(merged_sip_device(&[b, a]), Some(expected));
    }

    #[test]
    fn a_missing_priority_ranks_above_every_number() {
        let u1 = plan("u1", Strategy::Simple, None, obj(vec![("rate", num("1"))]));
        let u2 = plan("u2", Strategy::Simple, Some(1000), obj(vec![("rate", num("2"))]));
        assert_eq!(
            merged_sip_device(&[u1.clone(), u2.clone()]),
            Some(obj(vec![("rate", num("1"))]))
        );
        assert_eq!(merged_sip_device(&[u2, u1]), Some(obj(vec![("rate", num("1"))])));
    }

    #[test]
    fn on_equal_priorities_the_plan_listed_first_wins() {
        let t1 = plan("t1", Strategy::Recursive, Some(5), obj(vec![("rate", num("1"))]));
        let t2 = plan("t2", Strategy::Recursive, Some(5), obj(vec![("rate", num("2"))]));
        assert_eq!(
            merged_sip_device(&[t1.clone(), t2.clone()]),
            Some(obj(vec![("rate", num("1"))]))
        );
        assert_eq!(merged_sip_device(&[t2, t1]), Some(obj(vec![("rate", num("2"))])));
    }

    #[test]
    fn cumulative_follows_the_field_rules_of_the_spec_example() {
        // plans.md §7.6.
        let a = plan(
            "a",
            Strategy::Cumulative,
            Some(10),
            obj(vec![
                ("rate", num("10")),
                ("minimum", num("2")),
                ("rates", obj(vec![("5", num("9"))])),
                ("maximum", num("50")),
                ("exceptions", Value::Array(vec![text("x"), text("y")])),
                ("cascade", Value::Bool(false)),
                (
                    "discounts",
                    obj(vec![(
                        "cumulative",
                        obj(vec![("maximum", num("3")), ("rate", num("1"))]),
                    )]),
                ),
            ]),
        );
        let b = plan(
            "b",
            Strategy::Cumulative,
            Some(20),
            obj(vec![
                ("rate", num("12")),
                ("minimum", num("3")),
                ("rates", obj(vec![("10", num("11")), ("5", num("8.5"))])),
                ("exceptions", Value::Array(vec![text("y"), text("z")])),
                ("cascade", Value::Bool(true)),
                ("discounts", obj(vec![("cumulative", obj(vec![("maximum", num("2"))]))])),
            ]),
        );
        let expected = obj(vec![
            ("rate", num("12")),
            ("minimum", num("5")),
            ("rates", obj(vec![("5", num("8.5")), ("10", num("11"))])),
            ("exceptions", Value::Array(vec![text("x"), text("y"), text("z")])),
            ("cascade", Value::Bool(true)),
            (
                "discounts",
                obj(vec![(
                    "cumulative",
                    obj(vec![("maximum", num("5")), ("rate", num("1"))]),
                )]),
            ),
        ]);
        assert_eq!(merged_sip_device(&[a, b]), Some(expected));
    }

    #[test]
    fn a_cumulative_group_beats_a_simple_group_on_shared_leaves_only() {
        // plans.md §7.5 and pricing.md example 10.
        let simple = plan(
            "p1",
            Strategy::Simple,
            Some(99),
            obj(vec![("rate", num("1")), ("name", text("from simple"))]),
        );
        let cumulative = plan("p2", Strategy::Cumulative, Some(1), obj(vec![("rate", num("2"))]));
        assert_eq!(
            merged_sip_device(&[simple, cumulative]),
            Some(obj(vec![("rate", num("2")), ("name", text("from simple"))]))
        );
    }
}
