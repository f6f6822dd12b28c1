//! Explaining every number of an account's invoices (issue 15): for each line, which
//! plans and override layers wrote each field of its merged item plan, where its
//! quantity came from, and how pricing turned that quantity into its total.
//!
//! Nothing here merges or prices. The explanation is recorded while the code sync
//! uses does the work: [`resolve_plans_explained`] and [`merge_plans_explained`] carry
//! an origin document beside each plan through the same preparation and merge, and
//! [`price_invoice_traced`] reports each line's count and [`LineDerivation`] as it
//! prices. The invoice returned with the explanation is the one pricing produced, so
//! the explanation cannot describe a different total.

use super::document::{Map, Path, Value};
use super::ids::{AccountId, Category, ItemName, PlanId};
use super::invoice::{Invoice, PricedItem};
use super::merge::{merge_plans_explained, StrategyPriorities};
use super::plan::{resolve_plans_explained, AssignedPlan, Layer, Origin, PlanContext, Strategy};
use super::pricing::{price_invoice_traced, LineDerivation, MergedPlan, PlanItem, PricingError, PricingTrace};
use super::quantities::{CountParts, CountTrace, QuantityBuckets};
use std::collections::BTreeMap;

/// One invoice with the explanation of each of its lines.
#[derive(Debug, Clone, PartialEq)]
pub struct InvoiceExplanation {
    /// The invoice exactly as pricing produced it.
    pub invoice: Invoice,
    /// The plans merged into it, in resolution (assignment) order.
    pub plans: Vec<MergedPlanSource>,
    /// One per invoice item, in the invoice's item order.
    pub lines: Vec<LineExplanation>,
}

/// A plan of a bookkeeper group, with what decides its precedence in the merge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MergedPlanSource {
    pub id: PlanId,
    pub vendor_id: Option<AccountId>,
    pub strategy: Strategy,
    pub priority: Option<i64>,
}

/// How one invoice line came to be.
#[derive(Debug, Clone, PartialEq)]
pub struct LineExplanation {
    /// The priced line, as on the invoice.
    pub item: PricedItem,
    /// Every leaf of the merged item plan and who wrote it.
    pub fields: Vec<FieldSource>,
    pub quantity: QuantitySource,
    /// The figures pricing computed for the line.
    pub derivation: LineDerivation,
}

/// One leaf of a merged item plan (`rate`, `rates."10"`, `discounts.single.rate`).
#[derive(Debug, Clone, PartialEq)]
pub struct FieldSource {
    /// The path inside the item plan.
    pub path: Path,
    pub value: Value,
    /// `None` when one plan's value won; the cumulative rule (`sum`, `union`,
    /// `any true`) when the value was combined from every plan listed.
    pub combined_by: Option<String>,
    pub written_by: Vec<FieldWriter>,
}

/// A plan and the layer of it that wrote a field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldWriter {
    pub plan: PlanId,
    pub vendor_id: Option<AccountId>,
    pub layer: Layer,
}

/// Where a line's quantity came from (`quantities.md` §6, `pricing.md` §2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuantitySource {
    /// `_all`: the sum of the category's items; otherwise the item alone.
    pub category_sum: bool,
    /// The item plan's `cascade`: descendants' counts are added.
    pub cascade: bool,
    /// A deleted account counts nothing.
    pub deleted: bool,
    /// Every item read, with what each bucket held for it, in item order.
    pub counted: Vec<(ItemName, CountParts)>,
    /// The category's items left out by `exceptions`.
    pub excepted: Vec<ItemName>,
}

/// Prices an account's plans as sync does and explains every line.
pub fn explain_account(
    context: &PlanContext,
    assigned: &[AssignedPlan],
    quantities: &QuantityBuckets,
    priorities: &StrategyPriorities,
) -> Result<Vec<InvoiceExplanation>, PricingError> {
    let mut groups: Vec<(MergedPlan, Map, Vec<MergedPlanSource>)> = resolve_plans_explained(context, assigned, &[])
        .into_iter()
        .map(|(group, origins)| {
            let sources = group
                .plans
                .iter()
                .map(|plan| MergedPlanSource {
                    id: plan.id.clone(),
                    vendor_id: assigned
                        .iter()
                        .find(|assigned| assigned.id == plan.id)
                        .and_then(|assigned| assigned.vendor_id.clone()),
                    strategy: plan.strategy,
                    priority: plan.priority,
                })
                .collect();
            let (document, origins) = merge_plans_explained(group.plans, origins, priorities);
            (MergedPlan::new(group.bookkeeper, document), origins, sources)
        })
        .collect();
    // The invoice order of `merge_account_plans`.
    groups.sort_by(|left, right| left.0.bookkeeper.cmp(&right.0.bookkeeper));

    groups
        .into_iter()
        .map(|(merged, origins, plans)| {
            let mut recorder = Recorder {
                deleted: quantities.deleted,
                ..Recorder::default()
            };
            let invoice = price_invoice_traced(&merged, quantities, &mut recorder)?;
            let item_origins = origins.get("plan").and_then(Value::as_object);
            let lines = invoice
                .items
                .iter()
                .filter_map(|item| {
                    let (quantity, derivation) = recorder
                        .lines
                        .remove(&(item.category.clone(), item.plan_item.clone()))?;
                    let item_plan = merged
                        .plan
                        .get(item.category.as_str())
                        .and_then(Value::as_object)
                        .and_then(|items| items.get(item.plan_item.as_str()))
                        .and_then(Value::as_object)?;
                    let origins = item_origins
                        .and_then(|plan| plan.get(item.category.as_str()))
                        .and_then(Value::as_object)
                        .and_then(|items| items.get(item.plan_item.as_str()))
                        .and_then(Value::as_object);
                    let mut fields = Vec::new();
                    field_sources(item_plan, origins, &Path::root(), assigned, &mut fields);
                    Some(LineExplanation {
                        item: item.clone(),
                        fields,
                        quantity,
                        derivation,
                    })
                })
                .collect();
            Ok(InvoiceExplanation { invoice, plans, lines })
        })
        .collect()
}

/// Collects what pricing reports, line by line.
#[derive(Debug, Default)]
struct Recorder {
    deleted: bool,
    counted: Vec<(ItemName, CountParts)>,
    excepted: Vec<ItemName>,
    lines: BTreeMap<(Category, ItemName), (QuantitySource, LineDerivation)>,
}

impl CountTrace for Recorder {
    fn counted(&mut self, item: &ItemName, parts: CountParts) {
        self.counted.push((item.clone(), parts));
    }

    fn excepted(&mut self, item: &ItemName) {
        self.excepted.push(item.clone());
    }
}

impl PricingTrace for Recorder {
    fn line(&mut self, entry: &PlanItem, derivation: &LineDerivation) {
        let quantity = QuantitySource {
            category_sum: entry.plan_item.is_all(),
            cascade: entry.plan.cascade,
            deleted: self.deleted,
            counted: std::mem::take(&mut self.counted),
            excepted: std::mem::take(&mut self.excepted),
        };
        self.lines.insert(
            (entry.category.clone(), entry.plan_item.clone()),
            (quantity, *derivation),
        );
    }
}

/// Every leaf of `item_plan` with the writers its origin document names.
fn field_sources(
    item_plan: &Map,
    origins: Option<&Map>,
    path: &Path,
    assigned: &[AssignedPlan],
    out: &mut Vec<FieldSource>,
) {
    for (key, value) in item_plan {
        let origin = origins.and_then(|origins| origins.get(key));
        let field_path = path.key(key);
        match value {
            Value::Object(child) => {
                field_sources(child, origin.and_then(Value::as_object), &field_path, assigned, out);
            }
            _ => {
                let (combined_by, codes) = match origin {
                    Some(Value::Array(parts)) => match parts.split_first() {
                        Some((Value::String(rule), rest)) => (Some(rule.clone()), rest.iter().collect()),
                        _ => (None, parts.iter().collect()),
                    },
                    Some(origin) => (None, vec![origin]),
                    None => (None, Vec::new()),
                };
                let mut written_by: Vec<FieldWriter> = Vec::new();
                for origin in codes.into_iter().flat_map(origin_codes) {
                    let Some(plan) = assigned.get(origin.position) else {
                        continue;
                    };
                    let writer = FieldWriter {
                        plan: plan.id.clone(),
                        vendor_id: plan.vendor_id.clone(),
                        layer: origin.layer,
                    };
                    if !written_by.contains(&writer) {
                        written_by.push(writer);
                    }
                }
                out.push(FieldSource {
                    path: field_path,
                    value: value.clone(),
                    combined_by,
                    written_by,
                });
            }
        }
    }
}

/// The origins an origin document's value names (a code, or tables of codes).
fn origin_codes(value: &Value) -> Vec<Origin> {
    match value {
        Value::Number(_) => value
            .to_integer()
            .ok()
            .and_then(Origin::from_code)
            .into_iter()
            .collect(),
        Value::Array(items) => items.iter().flat_map(origin_codes).collect(),
        Value::Object(map) => map.values().flat_map(origin_codes).collect(),
        Value::Null | Value::Bool(_) | Value::String(_) => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::plan::BookkeeperRef;
    use crate::domain::pricing::{BillableBound, RateRule};
    use crate::domain::testing::{map, money, num, obj};
    use crate::domain::Quantities;
    use std::sync::Arc;

    fn sip_device_plan(fields: Value, merge: Option<Value>) -> Map {
        let mut entries = vec![("plan", obj(vec![("devices", obj(vec![("sip_device", fields)]))]))];
        if let Some(merge) = merge {
            entries.push(("merge", merge));
        }
        map(entries)
    }

    fn sip_devices(count: i64) -> QuantityBuckets {
        let mut account = Quantities::new();
        account.set(
            Category::parse("devices").expect("name"),
            ItemName::parse("sip_device").expect("name"),
            count,
        );
        QuantityBuckets {
            account,
            ..QuantityBuckets::default()
        }
    }

    fn context(global_overrides: Map) -> PlanContext {
        PlanContext {
            default_bookkeeper: BookkeeperRef {
                kind: "default".into(),
                vendor_id: "res".into(),
                id: BookkeeperRef::DEFAULT_ID.into(),
            },
            global_overrides,
        }
    }

    fn assigned(id: &str, document: Map, overrides: Option<Map>) -> AssignedPlan {
        AssignedPlan {
            id: PlanId::parse(id).expect("id"),
            vendor_id: None,
            document: Arc::new(document),
            overrides,
        }
    }

    /// A field as (path, value, combined_by, [(plan, layer)]).
    type Field = (String, Value, Option<String>, Vec<(String, Layer)>);

    /// Every field of the only line.
    fn fields(explained: &[InvoiceExplanation]) -> Vec<Field> {
        explained[0].lines[0]
            .fields
            .iter()
            .map(|field| {
                let writers = field
                    .written_by
                    .iter()
                    .map(|writer| (writer.plan.to_string(), writer.layer))
                    .collect();
                (
                    field.path.to_string(),
                    field.value.clone(),
                    field.combined_by.clone(),
                    writers,
                )
            })
            .collect()
    }

    fn minimum_override(value: Value) -> Map {
        sip_device_plan(obj(vec![("minimum", value)]), None)
    }

    #[test]
    fn a_per_plan_null_leaves_the_plans_minimum_and_an_account_wide_null_removes_it() {
        // plans.md §6: plan {rate 5, minimum 10}, 3 devices.
        let plan = || sip_device_plan(obj(vec![("rate", num("5")), ("minimum", num("10"))]), None);
        let priorities = StrategyPriorities::default();

        let per_plan = [assigned("a", plan(), Some(minimum_override(Value::Null)))];
        let explained =
            explain_account(&context(Map::new()), &per_plan, &sip_devices(3), &priorities).expect("explains");
        assert_eq!(
            fields(&explained),
            vec![
                (
                    "minimum".to_owned(),
                    num("10"),
                    None,
                    vec![("a".to_owned(), Layer::Plan)]
                ),
                ("rate".to_owned(), num("5"), None, vec![("a".to_owned(), Layer::Plan)]),
            ]
        );
        let line = &explained[0].lines[0];
        assert_eq!(
            (line.derivation.bound, line.derivation.bounded),
            (BillableBound::Minimum, 10)
        );
        assert_eq!(line.item.total, money("50"));

        let account_wide = [assigned("a", plan(), None)];
        let explained = explain_account(
            &context(minimum_override(Value::Null)),
            &account_wide,
            &sip_devices(3),
            &priorities,
        )
        .expect("explains");
        assert_eq!(
            fields(&explained),
            vec![("rate".to_owned(), num("5"), None, vec![("a".to_owned(), Layer::Plan)])]
        );
        assert_eq!(explained[0].lines[0].item.total, money("15"));
    }

    #[test]
    fn a_cumulative_merge_names_every_plan_it_summed_and_the_one_that_won() {
        // plans.md §7.6: minimums are summed, the higher priority's rate wins.
        let cumulative = |priority: &str| {
            Some(obj(vec![
                ("strategy", Value::String("cumulative".into())),
                ("priority", num(priority)),
            ]))
        };
        let plans = [
            assigned(
                "low",
                sip_device_plan(obj(vec![("rate", num("10")), ("minimum", num("2"))]), cumulative("10")),
                None,
            ),
            assigned(
                "high",
                sip_device_plan(obj(vec![("rate", num("12")), ("minimum", num("3"))]), cumulative("20")),
                Some(sip_device_plan(
                    obj(vec![("rates", obj(vec![("5", num("8.5"))]))]),
                    None,
                )),
            ),
        ];
        let explained = explain_account(
            &context(Map::new()),
            &plans,
            &sip_devices(4),
            &StrategyPriorities::default(),
        )
        .expect("explains");
        assert_eq!(
            fields(&explained),
            vec![
                (
                    "minimum".to_owned(),
                    num("5"),
                    Some("sum".to_owned()),
                    vec![("high".to_owned(), Layer::Plan), ("low".to_owned(), Layer::Plan)]
                ),
                (
                    "rate".to_owned(),
                    num("12"),
                    None,
                    vec![("high".to_owned(), Layer::Plan)]
                ),
                (
                    "rates.\"5\"".to_owned(),
                    num("8.5"),
                    None,
                    vec![("high".to_owned(), Layer::PlanOverride)]
                ),
            ]
        );
        let line = &explained[0].lines[0];
        assert_eq!(line.derivation.rate_rule, RateRule::Tier { threshold: 5 });
        assert_eq!(line.item.total, money("42.5"), "5 (the summed minimum) × 8.5");
    }
}
