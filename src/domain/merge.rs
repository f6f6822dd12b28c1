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
    let mut strategies: Vec<Strategy> = Vec::new();
    for plan in &plans {
        if !strategies.contains(&plan.strategy) {
            strategies.push(plan.strategy);
        }
    }
    // Equal strategy priorities keep the fixed order simple, recursive, cumulative.
    strategies.sort_by_key(|strategy| (priorities.of(*strategy), *strategy));

    let mut plans: Vec<(usize, PreparedPlan)> = plans.into_iter().enumerate().collect();
    let mut merged = Map::new();
    for strategy in strategies {
        let (group, rest): (Vec<_>, Vec<_>) = plans.into_iter().partition(|(_, plan)| plan.strategy == strategy);
        plans = rest;
        let group = ordered_group(group);
        let group_result = match strategy {
            Strategy::Simple | Strategy::Recursive => merge_documents(group),
            Strategy::Cumulative => merge_cumulative(group),
        };
        deep_merge_owned(&mut merged, group_result);
    }
    merged.insert("_id".to_owned(), Value::String("single".to_owned()));
    merged
}

/// The plans of one strategy, lowest precedence first (§7.3): a missing priority ranks
/// above every number, and on equal priorities the plan listed earlier comes later.
fn ordered_group(mut group: Vec<(usize, PreparedPlan)>) -> Vec<PreparedPlan> {
    group.sort_by_key(|(position, plan)| (plan.priority.is_none(), plan.priority, Reverse(*position)));
    group.into_iter().map(|(_, plan)| plan).collect()
}

fn merge_documents(group: Vec<PreparedPlan>) -> Map {
    let mut merged = Map::new();
    for plan in group {
        deep_merge_owned(&mut merged, plan.document);
    }
    merged
}

/// §7.6: the non-`plan` fields deep-merged as usual, `plan` rebuilt field by field.
fn merge_cumulative(group: Vec<PreparedPlan>) -> Map {
    let plan = cumulative_plan(&group);
    let mut merged = merge_documents(group);
    merged.insert("plan".to_owned(), Value::Object(plan));
    merged
}

fn cumulative_plan(group: &[PreparedPlan]) -> Map {
    // Highest precedence first.
    let documents: Vec<&Map> = group
        .iter()
        .rev()
        .filter_map(|plan| plan.document.get("plan").and_then(Value::as_object))
        .collect();

    let mut keys: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
    for document in &documents {
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
    for (category, items) in keys {
        let mut category_plans = Map::new();
        for item in items {
            let item_plans: Vec<&Map> = documents
                .iter()
                .filter_map(|document| document.get(category)?.as_object()?.get(item)?.as_object())
                .collect();
            let rebuilt = cumulative_item(&item_plans);
            if !rebuilt.is_empty() {
                category_plans.insert(item.to_owned(), Value::Object(rebuilt));
            }
        }
        if !category_plans.is_empty() {
            plan.insert(category.to_owned(), Value::Object(category_plans));
        }
    }
    plan
}

/// The field rules of §7.6 over one item's plans, highest precedence first.
fn cumulative_item(plans: &[&Map]) -> Map {
    let mut item = Map::new();
    for key in ["activation_charge", "step", "flat_rate", "rate", "as", "name"] {
        set_path(&mut item, &[key], first_defined(plans, &[key]));
    }
    for path in [["discounts", "single", "rate"], ["discounts", "cumulative", "rate"]] {
        set_path(&mut item, &path, first_defined(plans, &path));
    }
    set_path(&mut item, &["minimum"], integer_sum(plans, &["minimum"]));
    let maximum = ["discounts", "cumulative", "maximum"];
    set_path(&mut item, &maximum, integer_sum(plans, &maximum));
    for path in [
        &["flat_rates"][..],
        &["rates"],
        &["discounts", "single", "rates"],
        &["discounts", "cumulative", "rates"],
    ] {
        set_path(&mut item, path, table_union(plans, path));
    }
    set_path(&mut item, &["exceptions"], exceptions_union(plans));
    for path in [&["cascade"][..], &["prorate", "additions"], &["prorate", "removals"]] {
        set_path(&mut item, path, any_true(plans, path));
    }
    item
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

fn first_defined(plans: &[&Map], path: &[&str]) -> Option<Value> {
    plans.iter().find_map(|plan| lookup(plan, path)).cloned()
}

/// Sum of every value that reads as an integer; absent when none does.
fn integer_sum(plans: &[&Map], path: &[&str]) -> Option<Value> {
    let values: Vec<i64> = plans
        .iter()
        .filter_map(|plan| lookup(plan, path)?.to_integer().ok())
        .collect();
    if values.is_empty() {
        return None;
    }
    let sum = values.into_iter().fold(0i64, i64::saturating_add);
    Some(Value::Number(Number::from_integer(sum)))
}

/// Union of threshold tables; the higher-precedence plan wins a shared threshold.
fn table_union(plans: &[&Map], path: &[&str]) -> Option<Value> {
    let tables: Vec<&Map> = plans
        .iter()
        .filter_map(|plan| lookup(plan, path)?.as_object())
        .collect();
    if tables.is_empty() {
        return None;
    }
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

/// Union of `exceptions` lists, sorted and without duplicates (quirk Q-PLN-6).
fn exceptions_union(plans: &[&Map]) -> Option<Value> {
    let lists: Vec<&Vec<Value>> = plans
        .iter()
        .filter_map(|plan| match lookup(plan, &["exceptions"])? {
            Value::Array(items) => Some(items),
            _ => None,
        })
        .collect();
    if lists.is_empty() {
        return None;
    }
    let names: BTreeSet<&str> = lists
        .iter()
        .flat_map(|items| items.iter().filter_map(Value::as_str))
        .collect();
    Some(Value::Array(
        names.into_iter().map(|name| Value::String(name.to_owned())).collect(),
    ))
}

fn any_true(plans: &[&Map], path: &[&str]) -> Option<Value> {
    let values: Vec<&Value> = plans.iter().filter_map(|plan| lookup(plan, path)).collect();
    if values.is_empty() {
        return None;
    }
    Some(Value::Bool(values.iter().any(|value| value.to_bool() == Ok(true))))
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
