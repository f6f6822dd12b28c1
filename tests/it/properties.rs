//! Invariants of the pricing core, over generated plans and quantities.

use proptest::prelude::*;
use rust_decimal::Decimal;
use serde_json::{json, Map, Value};
use tally::domain::merge::StrategyPriorities;
use tally::quote::quote_json;

const CATEGORIES: [&str; 3] = ["devices", "users", "phone_numbers"];
const ITEMS: [&str; 4] = ["sip_device", "user", "did_us", "_all"];

fn money() -> impl Strategy<Value = Value> {
    (0i64..100_000, 0u32..4).prop_map(|(units, scale)| {
        let amount = Decimal::new(units, scale);
        Value::Number(
            amount
                .normalize()
                .to_string()
                .parse()
                .expect("decimal text is a JSON number"),
        )
    })
}

fn tiers() -> impl Strategy<Value = Value> {
    prop::collection::btree_map(0u32..40, money(), 1..4).prop_map(|tiers| {
        Value::Object(
            tiers
                .into_iter()
                .map(|(threshold, rate)| (threshold.to_string(), rate))
                .collect(),
        )
    })
}

/// An item plan using every priced field, each present or not.
fn item_plan() -> impl Strategy<Value = Value> {
    (
        (
            prop::option::of(money()),
            prop::option::of(tiers()),
            prop::option::of(tiers()),
            prop::option::of(money()),
        ),
        (
            prop::option::of(0i64..30),
            prop::option::of(0i64..60),
            prop::option::of(1i64..6),
            any::<bool>(),
        ),
        (
            prop::option::of(money()),
            prop::option::of(money()),
            prop::option::of((0i64..20, prop::option::of(money()))),
        ),
    )
        .prop_map(
            |(
                (rate, rates, flat_rates, flat_rate),
                (minimum, maximum, step, cascade),
                (activation, single, cumulative),
            )| {
                let mut plan = Map::new();
                let mut put = |key: &str, value: Option<Value>| {
                    if let Some(value) = value {
                        plan.insert(key.to_owned(), value);
                    }
                };
                put("rate", rate);
                put("rates", rates);
                put("flat_rates", flat_rates);
                put("flat_rate", flat_rate);
                put("minimum", minimum.map(Value::from));
                put("maximum", maximum.map(Value::from));
                put("step", step.map(Value::from));
                put("cascade", Some(Value::Bool(cascade)));
                put("activation_charge", activation);
                let mut discounts = Map::new();
                if let Some(single) = single {
                    discounts.insert("single".into(), json!({ "rate": single }));
                }
                if let Some((maximum, rate)) = cumulative {
                    let mut cumulative = Map::new();
                    cumulative.insert("maximum".into(), Value::from(maximum));
                    if let Some(rate) = rate {
                        cumulative.insert("rate".into(), rate);
                    }
                    discounts.insert("cumulative".into(), Value::Object(cumulative));
                }
                if !discounts.is_empty() {
                    plan.insert("discounts".into(), Value::Object(discounts));
                }
                Value::Object(plan)
            },
        )
}

fn plan_body() -> impl Strategy<Value = Value> {
    prop::collection::vec(
        (
            prop::sample::select(&CATEGORIES[..]),
            prop::sample::select(&ITEMS[..]),
            item_plan(),
        ),
        1..6,
    )
    .prop_map(|entries| {
        let mut plan = json!({});
        for (category, item, item_plan) in entries {
            plan[category][item] = item_plan;
        }
        plan
    })
}

fn bucket() -> impl Strategy<Value = Value> {
    prop::collection::vec(
        (
            prop::sample::select(&CATEGORIES[..]),
            prop::sample::select(&ITEMS[..3]),
            0i64..50,
        ),
        0..8,
    )
    .prop_map(|entries| {
        let mut bucket = json!({});
        for (category, item, count) in entries {
            bucket[category][item] = Value::from(count);
        }
        bucket
    })
}

fn quote(request: &Value) -> Value {
    quote_json(&request.to_string(), &StrategyPriorities::default())
        .unwrap_or_else(|error| panic!("refused: {error}\n{request}"))
}

fn decimal(value: &Value) -> Decimal {
    value
        .to_string()
        .parse()
        .unwrap_or_else(|_| panic!("{value} is not a decimal"))
}

proptest! {
    #[test]
    fn recurring_equals_the_sum_of_item_totals_and_today_the_sum_of_activations(
        plan in plan_body(), account in bucket(), cascade in bucket(), activations in bucket(),
    ) {
        let request = json!({
            "plans": [{ "id": "p", "plan": plan }],
            "quantities": { "account": account, "cascade": cascade },
            "activations": activations,
        });
        for invoice in quote(&request)["invoices"].as_array().expect("invoices") {
            let items: Decimal = invoice["items"].as_array().expect("items").iter().map(|item| decimal(&item["total"])).sum();
            let activations: Decimal = invoice["activation_charges"].as_array().expect("lines").iter().map(|line| decimal(&line["total"])).sum();
            prop_assert_eq!(decimal(&invoice["summary"]["recurring"]), items);
            prop_assert_eq!(decimal(&invoice["summary"]["today"]), activations);
        }
    }

    #[test]
    fn merging_a_simple_or_recursive_plan_with_itself_changes_nothing(
        plan in plan_body(), account in bucket(), recursive in any::<bool>(), priority in prop::option::of(0i64..100),
    ) {
        let strategy = if recursive { "recursive" } else { "simple" };
        let mut merge = json!({ "strategy": strategy });
        if let Some(priority) = priority {
            merge["priority"] = Value::from(priority);
        }
        let entry = |id: &str| json!({ "id": id, "merge": merge.clone(), "plan": plan.clone() });
        let once = quote(&json!({ "plans": [entry("a")], "quantities": { "account": account.clone() } }));
        let twice = quote(&json!({ "plans": [entry("a"), entry("b")], "quantities": { "account": account } }));
        prop_assert_eq!(once, twice);
    }

    #[test]
    fn the_higher_merge_priority_wins_in_simple(
        low_rate in 1i64..1000, high_rate in 1i64..1000, low in 0i64..50, gap in 1i64..50, high_first in any::<bool>(),
    ) {
        let entry = |id: &str, priority: i64, rate: i64| json!({
            "id": id, "merge": { "strategy": "simple", "priority": priority },
            "plan": { "devices": { "sip_device": { "rate": rate } } },
        });
        let low_plan = entry("low", low, low_rate);
        let high_plan = entry("high", low + gap, high_rate);
        let plans = if high_first { json!([high_plan, low_plan]) } else { json!([low_plan, high_plan]) };
        let response = quote(&json!({ "plans": plans }));
        prop_assert_eq!(&response["invoices"][0]["plan"]["devices"]["sip_device"]["rate"], &Value::from(high_rate));
    }

    #[test]
    fn cumulative_sums_minimums(minimums in prop::collection::vec(0i64..1000, 1..5)) {
        let plans: Vec<Value> = minimums.iter().enumerate().map(|(index, minimum)| json!({
            "id": format!("p{index}"), "merge": { "strategy": "cumulative", "priority": index },
            "plan": { "users": { "user": { "rate": 1, "minimum": minimum } } },
        })).collect();
        let response = quote(&json!({ "plans": plans }));
        let merged_minimum = &response["invoices"][0]["plan"]["users"]["user"]["minimum"];
        prop_assert_eq!(merged_minimum, &Value::from(minimums.iter().sum::<i64>()));
    }

    /// For plans whose minimum does not exceed their maximum: an inconsistent plan
    /// (minimum > maximum) bills its minimum below the minimum and its maximum above
    /// it, as Kazoo does (`pricing.md` §3), which is not monotonic by construction.
    #[test]
    fn adding_quantity_never_lowers_a_tiered_items_billable_quantity(
        rates in tiers(), rate in prop::option::of(money()), minimum in prop::option::of(0i64..30),
        headroom in prop::option::of(0i64..60), step in prop::option::of(1i64..6), quantity in 0i64..100, added in 0i64..100,
    ) {
        let maximum = headroom.map(|headroom| minimum.unwrap_or(0) + headroom);
        let mut item_plan = json!({ "rates": rates });
        for (key, value) in [("rate", rate), ("minimum", minimum.map(Value::from)), ("maximum", maximum.map(Value::from)), ("step", step.map(Value::from))] {
            if let Some(value) = value {
                item_plan[key] = value;
            }
        }
        let billable = |count: i64| {
            let response = quote(&json!({
                "plans": [{ "id": "p", "plan": { "users": { "user": item_plan.clone() } } }],
                "quantities": { "account": { "users": { "user": count } } },
            }));
            response["invoices"][0]["items"][0]["billable"].as_i64().expect("billable is an integer")
        };
        prop_assert!(billable(quantity + added) >= billable(quantity));
    }

    #[test]
    fn random_text_never_panics_the_parser(text in ".{0,200}") {
        let _ = quote_json(&text, &StrategyPriorities::default());
    }

    #[test]
    fn random_json_never_panics_the_parser(value in arbitrary_json()) {
        let _ = quote_json(&value.to_string(), &StrategyPriorities::default());
        let _ = quote_json(&json!({ "plans": [{ "id": "p", "plan": value.clone() }] }).to_string(), &StrategyPriorities::default());
        let _ = quote_json(&json!({ "plans": [{ "id": "p", "plan": { "devices": { "sip_device": value.clone() } } }] }).to_string(), &StrategyPriorities::default());
        let _ = quote_json(&json!({ "quantities": value.clone(), "activations": value }).to_string(), &StrategyPriorities::default());
    }
}

/// JSON of any shape, with numbers of every kind (huge, negative, fractional).
fn arbitrary_json() -> impl Strategy<Value = Value> {
    let number = prop_oneof![
        any::<i64>().prop_map(Value::from),
        "-?[0-9]{1,40}(\\.[0-9]{1,30})?(e-?[0-9]{1,3})?".prop_map(|text| text
            .parse::<serde_json::Number>()
            .map(Value::Number)
            .unwrap_or(Value::Null)),
    ];
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        number,
        prop_oneof![
            Just("rate".to_owned()),
            Just("10".to_owned()),
            Just("abc".to_owned()),
            "[a-z0-9_.]{0,8}"
        ]
        .prop_map(Value::String),
    ];
    leaf.prop_recursive(5, 64, 6, |inner| {
        let keys = prop_oneof![
            Just("rate".to_owned()),
            Just("rates".to_owned()),
            Just("flat_rates".to_owned()),
            Just("minimum".to_owned()),
            Just("step".to_owned()),
            Just("discounts".to_owned()),
            Just("single".to_owned()),
            Just("cumulative".to_owned()),
            Just("maximum".to_owned()),
            Just("plans".to_owned()),
            Just("plan".to_owned()),
            Just("merge".to_owned()),
            Just("strategy".to_owned()),
            Just("priority".to_owned()),
            Just("_all".to_owned()),
            Just("exceptions".to_owned()),
            Just("account".to_owned()),
            Just("5".to_owned()),
            "[a-z_]{1,6}",
        ];
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map(keys, inner, 0..5).prop_map(|map| Value::Object(map.into_iter().collect())),
        ]
    })
}

mod explanations {
    //! Issue 15: the explanation of every line re-adds to the priced totals exactly,
    //! and every field of a merged item plan names a plan and layer that wrote it.

    use super::{bucket, plan_body};
    use proptest::prelude::*;
    use serde_json::{json, Value};
    use std::collections::BTreeMap;
    use std::sync::Arc;
    use tally::domain::document::{Map, Path, Value as DocumentValue};
    use tally::domain::explain::explain_account;
    use tally::domain::merge::StrategyPriorities;
    use tally::domain::plan::{AssignedPlan, BookkeeperRef, Layer, PlanContext};
    use tally::domain::pricing::{merge_account_plans, price_invoice};
    use tally::domain::{Category, ItemName, PlanId, Quantities, QuantityBuckets};
    use tally::wire::document::map_from_json;

    fn object(value: &Value) -> Map {
        match value {
            Value::Object(map) => map_from_json(map),
            _ => Map::new(),
        }
    }

    fn quantities(bucket: &Value) -> Quantities {
        let mut quantities = Quantities::new();
        for (category, items) in bucket.as_object().into_iter().flatten() {
            for (item, count) in items.as_object().into_iter().flatten() {
                quantities.set(
                    Category::parse(category).expect("category"),
                    ItemName::parse(item).expect("item"),
                    count.as_i64().expect("count"),
                );
            }
        }
        quantities
    }

    /// Every leaf of an item plan by the path an explanation names it with.
    fn leaves(map: &Map, path: &Path, out: &mut BTreeMap<String, DocumentValue>) {
        for (key, value) in map {
            match value {
                DocumentValue::Object(child) => leaves(child, &path.key(key), out),
                leaf => {
                    out.insert(path.key(key).to_string(), leaf.clone());
                }
            }
        }
    }

    fn item_plan_leaves(document: &Map, category: &str, item: &str) -> BTreeMap<String, DocumentValue> {
        let mut out = BTreeMap::new();
        let item_plan = document
            .get("plan")
            .and_then(DocumentValue::as_object)
            .and_then(|plan| plan.get(category))
            .and_then(DocumentValue::as_object)
            .and_then(|items| items.get(item))
            .and_then(DocumentValue::as_object);
        if let Some(item_plan) = item_plan {
            leaves(item_plan, &Path::root(), &mut out);
        }
        out
    }

    fn assigned_plan() -> impl Strategy<Value = (Value, Option<Value>)> {
        (
            plan_body(),
            prop::sample::select(&["simple", "recursive", "cumulative"][..]),
            prop::option::of(0i64..3),
            prop::option::of(plan_body()),
        )
            .prop_map(|(plan, strategy, priority, overrides)| {
                let mut merge = json!({ "strategy": strategy });
                if let Some(priority) = priority {
                    merge["priority"] = json!(priority);
                }
                let overrides = overrides.map(|plan| json!({ "plan": plan }));
                (json!({ "plan": plan, "merge": merge }), overrides)
            })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn explained_parts_readd_to_the_priced_totals_and_name_who_wrote_each_field(
            plans in prop::collection::vec(assigned_plan(), 1..4),
            global in prop::option::of(plan_body()),
            account in bucket(), cascade in bucket(), manual in bucket(),
        ) {
            let assigned: Vec<AssignedPlan> = plans
                .iter()
                .enumerate()
                .map(|(index, (document, overrides))| AssignedPlan {
                    id: PlanId::parse(format!("p{index}")).expect("id"),
                    vendor_id: None,
                    document: Arc::new(object(document)),
                    overrides: overrides.as_ref().map(object),
                })
                .collect();
            let global = global.map(|plan| object(&json!({ "plan": plan }))).unwrap_or_default();
            let context = PlanContext {
                default_bookkeeper: BookkeeperRef {
                    kind: "default".into(),
                    vendor_id: "res".into(),
                    id: BookkeeperRef::DEFAULT_ID.into(),
                },
                global_overrides: global.clone(),
            };
            let buckets = QuantityBuckets {
                account: quantities(&account),
                cascade: quantities(&cascade),
                manual: quantities(&manual),
                deleted: false,
            };
            let priorities = StrategyPriorities::default();

            let explained = explain_account(&context, &assigned, &buckets, &priorities).expect("explains");
            let priced: Vec<_> = merge_account_plans(&context, &assigned, &[], &priorities)
                .iter()
                .map(|merged| price_invoice(merged, &buckets).expect("prices"))
                .collect();
            prop_assert_eq!(explained.len(), priced.len());
            for (explanation, invoice) in explained.iter().zip(&priced) {
                prop_assert_eq!(&explanation.invoice, invoice, "the invoice pricing produced");
                prop_assert_eq!(explanation.lines.len(), invoice.items.len());
                let mut recurring = tally::domain::Money::ZERO;
                for (line, item) in explanation.lines.iter().zip(&invoice.items) {
                    prop_assert_eq!(&line.item, item);
                    let d = &line.derivation;
                    // Quantity: the buckets the count read.
                    let counted: i64 = line.quantity.counted.iter()
                        .map(|(_, parts)| parts.own().unwrap_or(0) + parts.cascade.unwrap_or(0))
                        .sum();
                    prop_assert_eq!(counted, item.quantity);
                    // Charge, discounts, total and its rounding.
                    prop_assert_eq!(d.rate.times(d.billable).expect("small"), d.charge);
                    let discount = d.discounts.cumulative_rate.times(d.discounts.cumulative_quantity).expect("small")
                        .checked_add(d.discounts.single).expect("small");
                    prop_assert_eq!(discount, d.discount);
                    prop_assert_eq!(d.discount.round_line_total(), item.discounts.total);
                    prop_assert_eq!(d.charge.checked_sub(d.discount).expect("small"), d.exact_total);
                    prop_assert_eq!(d.exact_total.round_line_total(), item.total);
                    prop_assert_eq!((d.rate, d.billable), (item.rate, item.billable));
                    recurring = recurring.checked_add(item.total).expect("small");

                    // Provenance: every leaf has a writer, and a single writer's value is the merged value.
                    let (category, plan_item) = (item.category.as_str(), item.plan_item.as_str());
                    for field in &line.fields {
                        prop_assert!(!field.written_by.is_empty(), "{} has no writer", field.path);
                        if field.combined_by.is_some() {
                            continue;
                        }
                        prop_assert_eq!(field.written_by.len(), 1);
                        let writer = &field.written_by[0];
                        let plan = assigned.iter().find(|plan| plan.id == writer.plan).expect("a plan");
                        let layer_document = match writer.layer {
                            Layer::Plan => (*plan.document).clone(),
                            Layer::AccountOverride => global.clone(),
                            Layer::PlanOverride => plan.overrides.clone().expect("the plan has overrides"),
                        };
                        let written = item_plan_leaves(&layer_document, category, plan_item);
                        prop_assert_eq!(written.get(&field.path.to_string()), Some(&field.value), "{}", field.path);
                    }
                }
                prop_assert_eq!(recurring, invoice.recurring);
            }
        }
    }
}
