//! Which plans price an account, and how each is prepared for merging.
//!
//! `plans.md` §5.3: every assigned plan gets its overrides (account-wide beneath
//! per-plan), its vendor, and a bookkeeper with the account's defaults underneath;
//! the rebuilt document loses every empty object and null; plans are then grouped by
//! bookkeeper, one group per invoice. Validation of plan documents (§2-§3, strict,
//! for input we are asked to accept) lives here too, over the same readers pricing uses.

use super::document::{deep_merge, strip_empty, Map, Number, Path, Value};
use super::ids::{AccountId, PlanId};
use super::item_plan::{Issue, ItemPlan};
use std::fmt;
use std::sync::Arc;

/// Who bills an invoice: the `(id, type, vendor_id)` triple that Kazoo hashes.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct BookkeeperRef {
    /// Field order is the invoice sort order of `pricing.md` §8: type, vendor, id.
    pub kind: String,
    pub vendor_id: String,
    pub id: String,
}

impl BookkeeperRef {
    pub const DEFAULT_ID: &'static str = "default_bookkeeper";
    pub const DEFAULT_KIND: &'static str = "default";

    fn to_map(&self) -> Map {
        [
            ("id".to_owned(), Value::String(self.id.clone())),
            ("type".to_owned(), Value::String(self.kind.clone())),
            ("vendor_id".to_owned(), Value::String(self.vendor_id.clone())),
        ]
        .into()
    }

    /// Reads a merged `bookkeeper` object, falling back to `defaults` field by field.
    fn from_map(map: Option<&Map>, defaults: &BookkeeperRef) -> BookkeeperRef {
        let field = |key: &str, default: &str| {
            map.and_then(|map| map.get(key))
                .and_then(Value::as_str)
                .filter(|text| !text.is_empty())
                .unwrap_or(default)
                .to_owned()
        };
        BookkeeperRef {
            kind: field("type", &defaults.kind),
            vendor_id: field("vendor_id", &defaults.vendor_id),
            id: field("id", &defaults.id),
        }
    }
}

impl fmt::Display for BookkeeperRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}/{}", self.kind, self.vendor_id, self.id)
    }
}

/// A merge strategy (`plans.md` §7).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Strategy {
    Simple,
    Recursive,
    Cumulative,
}

impl Strategy {
    pub fn parse(text: &str) -> Option<Strategy> {
        match text {
            "simple" => Some(Strategy::Simple),
            "recursive" => Some(Strategy::Recursive),
            "cumulative" => Some(Strategy::Cumulative),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Strategy::Simple => "simple",
            Strategy::Recursive => "recursive",
            Strategy::Cumulative => "cumulative",
        }
    }
}

/// A plan as assigned to an account: the document from its vendor plus the assignment.
#[derive(Debug, Clone, PartialEq)]
pub struct AssignedPlan {
    pub id: PlanId,
    /// The assignment's `vendor_id`; without one the account's default vendor is used.
    pub vendor_id: Option<AccountId>,
    /// The service plan document as stored by its vendor, shared by every account
    /// assigned the plan (never copied per account).
    pub document: Arc<Map>,
    /// Per-plan overrides of the assignment.
    pub overrides: Option<Map>,
}

/// The account-level inputs to plan resolution.
#[derive(Debug, Clone, PartialEq)]
pub struct PlanContext {
    /// The bookkeeper a plan gets when it names none (`plans.md` §5.3 step 6); its
    /// `vendor_id` is also the vendor of plans assigned without one (step 2).
    pub default_bookkeeper: BookkeeperRef,
    /// Account-wide overrides: applied to assigned plans, never to object plans.
    pub global_overrides: Map,
}

/// A plan ready to merge: overrides applied, private fields gone, bookkeeper resolved.
#[derive(Debug, Clone, PartialEq)]
pub struct PreparedPlan {
    pub id: PlanId,
    pub document: Map,
    pub bookkeeper: BookkeeperRef,
    pub strategy: Strategy,
    /// `None` ranks above every number (quirk Q-PLN-2).
    pub priority: Option<i64>,
}

/// The plans of one bookkeeper, in resolution order: they merge into one invoice.
#[derive(Debug, Clone, PartialEq)]
pub struct BookkeeperGroup {
    pub bookkeeper: BookkeeperRef,
    pub plans: Vec<PreparedPlan>,
}

/// `plans.md` §5.3 for every assigned plan (in assignment order) then every object
/// plan; returns the bookkeeper groups in order of first appearance.
pub fn resolve_plans(
    context: &PlanContext,
    assigned: &[AssignedPlan],
    object_plans: &[AssignedPlan],
) -> Vec<BookkeeperGroup> {
    resolve(context, assigned, object_plans, false)
        .into_iter()
        .map(|(group, _)| group)
        .collect()
}

/// [`resolve_plans`], with every prepared plan's origin document: the prepared
/// document's shape, each leaf an [`Origin`] code saying which plan (its position in
/// `assigned` then `object_plans`) and which layer wrote it. It is built by preparing
/// the plan's and the overrides' origin documents exactly as the values are prepared;
/// the deep merge and the stripping depend only on the documents' shape, so each leaf
/// of the result names the layer whose value won. `merge::merge_plans_explained`
/// carries the codes through the merge.
pub fn resolve_plans_explained(
    context: &PlanContext,
    assigned: &[AssignedPlan],
    object_plans: &[AssignedPlan],
) -> Vec<(BookkeeperGroup, Vec<Map>)> {
    resolve(context, assigned, object_plans, true)
}

fn resolve(
    context: &PlanContext,
    assigned: &[AssignedPlan],
    object_plans: &[AssignedPlan],
    explained: bool,
) -> Vec<(BookkeeperGroup, Vec<Map>)> {
    let no_overrides = Map::new();
    let assigned = assigned.iter().enumerate().map(|(position, plan)| {
        let overrides = layered_overrides(&context.global_overrides, plan.overrides.as_ref());
        let origins = explained.then(|| {
            let code = |layer| Value::Number(Number::from_integer(Origin { position, layer }.code()));
            let global = origin_document(&context.global_overrides, &code(Layer::AccountOverride));
            let own = plan
                .overrides
                .as_ref()
                .map(|own| origin_document(own, &code(Layer::PlanOverride)));
            prepare_origins(
                context,
                plan,
                &code(Layer::Plan),
                &layered_overrides(&global, own.as_ref()),
            )
        });
        (prepare_plan(context, plan, &overrides), origins)
    });
    let first_object = assigned.len();
    let objects = object_plans.iter().enumerate().map(|(index, plan)| {
        let position = first_object + index;
        let overrides = plan.overrides.as_ref().unwrap_or(&no_overrides);
        let origins = explained.then(|| {
            let code = |layer| Value::Number(Number::from_integer(Origin { position, layer }.code()));
            let own = origin_document(overrides, &code(Layer::PlanOverride));
            prepare_origins(context, plan, &code(Layer::Plan), &own)
        });
        (prepare_plan(context, plan, overrides), origins)
    });

    let mut groups: Vec<(BookkeeperGroup, Vec<Map>)> = Vec::new();
    for (prepared, origins) in assigned.chain(objects) {
        let index = match groups
            .iter()
            .position(|(group, _)| group.bookkeeper == prepared.bookkeeper)
        {
            Some(index) => index,
            None => {
                let group = BookkeeperGroup {
                    bookkeeper: prepared.bookkeeper.clone(),
                    plans: Vec::new(),
                };
                groups.push((group, Vec::new()));
                groups.len() - 1
            }
        };
        let (group, group_origins) = &mut groups[index];
        group.plans.push(prepared);
        group_origins.extend(origins);
    }
    groups
}

/// Which layer of `plans.md` §5.3 wrote a value of a prepared plan.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Layer {
    /// The plan document as its vendor stored it.
    Plan,
    /// The account-wide overrides of the services record (assigned plans only).
    AccountOverride,
    /// The overrides of this plan's assignment (or of the object referencing it).
    PlanOverride,
}

impl Layer {
    pub fn as_str(self) -> &'static str {
        match self {
            Layer::Plan => "plan",
            Layer::AccountOverride => "account_override",
            Layer::PlanOverride => "plan_override",
        }
    }
}

/// A plan (by position: assigned plans first, then object plans) and a layer of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Origin {
    pub position: usize,
    pub layer: Layer,
}

impl Origin {
    const LAYERS: i64 = 3;

    /// The number that stands for this origin in an origin document.
    fn code(self) -> i64 {
        let layer = match self.layer {
            Layer::Plan => 0,
            Layer::AccountOverride => 1,
            Layer::PlanOverride => 2,
        };
        i64::try_from(self.position).map_or(i64::MAX, |position| position * Origin::LAYERS + layer)
    }

    /// The origin an origin document's number stands for.
    pub fn from_code(code: i64) -> Option<Origin> {
        let layer = match code.rem_euclid(Origin::LAYERS) {
            0 => Layer::Plan,
            1 => Layer::AccountOverride,
            _ => Layer::PlanOverride,
        };
        let position = usize::try_from(code.div_euclid(Origin::LAYERS)).ok()?;
        Some(Origin { position, layer })
    }
}

/// `document`'s shape with every leaf (anything but an object or a null) replaced by
/// `code`: nulls still delete and empty objects still vanish when it is prepared.
fn origin_document(document: &Map, code: &Value) -> Map {
    document
        .iter()
        .map(|(key, value)| {
            let origin = match value {
                Value::Object(child) => Value::Object(origin_document(child, code)),
                Value::Null => Value::Null,
                _ => code.clone(),
            };
            (key.clone(), origin)
        })
        .collect()
}

/// Step 1.1, Kazoo's `get_services_plan_overrides`: the per-plan overrides deep-merged
/// onto the account-wide ones. A per-plan `null` is consumed here (it removes the
/// account-wide value and never reaches the plan); an account-wide `null` the plan's
/// overrides leave alone stays and deletes from the plan in step 5.
fn layered_overrides(account_wide: &Map, own: Option<&Map>) -> Map {
    let mut overrides = account_wide.clone();
    if let Some(own) = own {
        deep_merge(&mut overrides, own);
    }
    overrides
}

fn plan_vendor(context: &PlanContext, plan: &AssignedPlan) -> String {
    plan.vendor_id
        .as_ref()
        .map(|vendor| vendor.as_str().to_owned())
        .unwrap_or_else(|| context.default_bookkeeper.vendor_id.clone())
}

fn prepare_plan(context: &PlanContext, plan: &AssignedPlan, overrides: &Map) -> PreparedPlan {
    let document = prepare_document(context, &plan.document, plan_vendor(context, plan), overrides);
    let bookkeeper = BookkeeperRef::from_map(
        document.get("bookkeeper").and_then(Value::as_object),
        &context.default_bookkeeper,
    );
    let (strategy, priority) = read_merge(&document);
    PreparedPlan {
        id: plan.id.clone(),
        document,
        bookkeeper,
        strategy,
        priority,
    }
}

/// The origin document of [`prepare_plan`]'s document, prepared by the same steps.
fn prepare_origins(context: &PlanContext, plan: &AssignedPlan, code: &Value, overrides: &Map) -> Map {
    prepare_document(
        context,
        &origin_document(&plan.document, code),
        plan_vendor(context, plan),
        overrides,
    )
}

/// Steps 4-7 of §5.3 on one plan document.
fn prepare_document(context: &PlanContext, plan_document: &Map, vendor: String, overrides: &Map) -> Map {
    let mut document: Map = plan_document
        .iter()
        .filter(|(key, _)| !is_private(key))
        .map(|(key, value)| (key.clone(), value.clone()))
        .collect();

    // Step 4: a plan's own bookkeeper belongs to the plan's vendor unless it says otherwise.
    if let Some(Value::Object(bookkeeper)) = document.get_mut("bookkeeper") {
        if !bookkeeper.is_empty() && !bookkeeper.contains_key("vendor_id") {
            bookkeeper.insert("vendor_id".to_owned(), Value::String(vendor));
        }
    }
    // Step 5.
    deep_merge(&mut document, overrides);
    // Step 6: the account's default bookkeeper underneath the plan's.
    let mut bookkeeper = context.default_bookkeeper.to_map();
    if let Some(Value::Object(own)) = document.get("bookkeeper") {
        deep_merge(&mut bookkeeper, own);
    }
    document.insert("bookkeeper".to_owned(), Value::Object(bookkeeper));
    // Step 7.
    strip_empty(&mut document);
    document
}

/// Private fields (`_id`, `_rev`, `pvt_*`) never take part in a merge.
fn is_private(key: &str) -> bool {
    key.starts_with('_') || key.starts_with("pvt_")
}

/// `merge.strategy` (unknown names read as `simple`, quirk Q-PLN-5) and `merge.priority`.
fn read_merge(document: &Map) -> (Strategy, Option<i64>) {
    let merge = document.get("merge").and_then(Value::as_object);
    let strategy = merge
        .and_then(|merge| merge.get("strategy"))
        .and_then(Value::as_str)
        .and_then(Strategy::parse)
        .unwrap_or(Strategy::Simple);
    let priority = merge
        .and_then(|merge| merge.get("priority"))
        .and_then(|priority| priority.to_integer().ok());
    (strategy, priority)
}

/// Checks a service plan document (or a partial one: overrides) against `plans.md`
/// §2-§3 and returns every finding. Nulls and empty objects are allowed anywhere, as
/// they mean "delete" and "nothing" in overrides and vanish from plans.
pub fn validate_plan_document(document: &Map, path: &Path) -> Vec<Issue> {
    let stripped;
    let document = if has_null_or_empty(document) {
        let mut copy = document.clone();
        strip_empty(&mut copy);
        stripped = copy;
        &stripped
    } else {
        document
    };
    let mut issues = Vec::new();

    match document.get("plan") {
        None => {}
        Some(Value::Object(categories)) => validate_categories(categories, &path.key("plan"), &mut issues),
        Some(other) => issues.push(Issue::error(
            path.key("plan"),
            format!("expected an object, found {}", other.describe()),
        )),
    }

    match document.get("merge") {
        None => {}
        Some(Value::Object(merge)) => {
            let merge_path = path.key("merge");
            match merge.get("strategy") {
                None => {}
                Some(Value::String(name)) if Strategy::parse(name).is_some() => {}
                Some(other) => issues.push(Issue::error(
                    merge_path.key("strategy"),
                    format!(
                        "expected one of \"simple\", \"recursive\", \"cumulative\", found {}",
                        other.describe()
                    ),
                )),
            }
            if let Some(priority) = merge.get("priority") {
                if let Err(coercion) = priority.to_integer() {
                    issues.push(Issue::error(
                        merge_path.key("priority"),
                        format!("{coercion}, found {}", priority.describe()),
                    ));
                }
            }
        }
        Some(other) => issues.push(Issue::error(
            path.key("merge"),
            format!("expected an object, found {}", other.describe()),
        )),
    }

    match document.get("bookkeeper") {
        None => {}
        Some(Value::Object(bookkeeper)) => {
            for (key, value) in bookkeeper {
                if matches!(key.as_str(), "id" | "type" | "vendor_id") && value.as_str().is_none() {
                    let message = format!("expected a string, found {}", value.describe());
                    issues.push(Issue::error(path.key("bookkeeper").key(key), message));
                }
            }
        }
        Some(other) => issues.push(Issue::error(
            path.key("bookkeeper"),
            format!("expected an object, found {}", other.describe()),
        )),
    }
    issues
}

fn has_null_or_empty(map: &Map) -> bool {
    map.values().any(|value| match value {
        Value::Null => true,
        Value::Object(child) => child.is_empty() || has_null_or_empty(child),
        _ => false,
    })
}

fn validate_categories(categories: &Map, path: &Path, issues: &mut Vec<Issue>) {
    for (category, items) in categories {
        let category_path = path.key(category);
        let Value::Object(items) = items else {
            let message = format!("expected an object of item plans, found {}", items.describe());
            issues.push(Issue::error(category_path, message));
            continue;
        };
        for (item, item_plan) in items {
            let item_path = category_path.key(item);
            match item_plan {
                Value::Object(fields) => {
                    ItemPlan::read(fields, &item_path, issues);
                }
                other => issues.push(Issue::warning(
                    item_path,
                    format!(
                        "an item plan must be an object, found {}; the entry is skipped (quirk Q-PLN-11)",
                        other.describe()
                    ),
                )),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::testing::{num, obj};

    fn map(value: Value) -> Map {
        match value {
            Value::Object(map) => map,
            _ => panic!("test value is not an object"),
        }
    }
    fn context() -> PlanContext {
        PlanContext {
            default_bookkeeper: BookkeeperRef {
                kind: "default".into(),
                vendor_id: "res".into(),
                id: BookkeeperRef::DEFAULT_ID.into(),
            },
            global_overrides: Map::new(),
        }
    }
    fn assigned(id: &str, document: Value) -> AssignedPlan {
        AssignedPlan {
            id: PlanId::parse(id).expect("test id"),
            vendor_id: None,
            document: Arc::new(map(document)),
            overrides: None,
        }
    }

    #[test]
    fn a_plan_bookkeeper_without_vendor_gets_the_plan_vendor_and_the_default_id() {
        // pricing.md example 13.
        let p1 = assigned("p1", obj(vec![("plan", obj(vec![]))]));
        let p2 = assigned(
            "p2",
            obj(vec![(
                "bookkeeper",
                obj(vec![
                    ("type", Value::String("http".into())),
                    ("id", Value::String("bk1".into())),
                ]),
            )]),
        );
        let groups = resolve_plans(&context(), &[p1, p2], &[]);
        let bookkeepers: Vec<String> = groups.iter().map(|group| group.bookkeeper.to_string()).collect();
        assert_eq!(bookkeepers, vec!["default/res/default_bookkeeper", "http/res/bk1"]);
    }

    /// `{"plan": {"devices": {"sip_device": fields}}}`.
    fn sip_device(fields: Vec<(&str, Value)>) -> Map {
        map(obj(vec![(
            "plan",
            obj(vec![("devices", obj(vec![("sip_device", obj(fields))]))]),
        )]))
    }

    /// The prepared `devices.sip_device` of plan `plan` under the given overrides.
    fn prepared_sip_device(plan: Map, account_wide: Map, per_plan: Option<Map>) -> Value {
        let plan = AssignedPlan {
            overrides: per_plan,
            ..assigned("a", Value::Object(plan))
        };
        let mut context = context();
        context.global_overrides = account_wide;
        let groups = resolve_plans(&context, &[plan], &[]);
        let document = &groups[0].plans[0].document;
        let sip_device = document
            .get("plan")
            .and_then(Value::as_object)
            .and_then(|plan| plan.get("devices"))
            .and_then(Value::as_object)
            .and_then(|devices| devices.get("sip_device"));
        sip_device.cloned().unwrap_or(Value::Null)
    }

    fn discounted() -> Vec<(&'static str, Value)> {
        vec![
            ("rate", num("10")),
            ("discounts", obj(vec![("single", obj(vec![("rate", num("2"))]))])),
        ]
    }

    #[test]
    fn plan_overrides_win_over_global_overrides_and_their_nulls_never_reach_the_plan() {
        // plans.md §7.7, "per-plan override with null".
        let merged = prepared_sip_device(
            sip_device(discounted()),
            sip_device(vec![("rate", num("12"))]),
            Some(sip_device(vec![("discounts", Value::Null), ("rate", num("7"))])),
        );
        assert_eq!(
            merged,
            obj(vec![
                ("discounts", obj(vec![("single", obj(vec![("rate", num("2"))]))])),
                ("rate", num("7")),
            ])
        );
    }

    #[test]
    fn a_per_plan_null_without_account_wide_overrides_does_nothing() {
        // Issue 12's example: the plan's minimum stays.
        let plan = sip_device(vec![("rate", num("5")), ("minimum", num("10"))]);
        let merged = prepared_sip_device(plan, Map::new(), Some(sip_device(vec![("minimum", Value::Null)])));
        assert_eq!(merged, obj(vec![("minimum", num("10")), ("rate", num("5"))]));
    }

    #[test]
    fn a_per_plan_null_removes_only_the_account_wide_value() {
        let plan = sip_device(vec![("rate", num("5")), ("minimum", num("10"))]);
        let merged = prepared_sip_device(
            plan,
            sip_device(vec![("minimum", num("20")), ("rate", num("6"))]),
            Some(sip_device(vec![("minimum", Value::Null)])),
        );
        assert_eq!(merged, obj(vec![("minimum", num("10")), ("rate", num("6"))]));
    }

    #[test]
    fn an_account_wide_null_deletes_the_plan_value() {
        // plans.md §7.7, "account-wide override with null".
        let merged = prepared_sip_device(
            sip_device(discounted()),
            sip_device(vec![("discounts", Value::Null), ("rate", num("7"))]),
            None,
        );
        assert_eq!(merged, obj(vec![("rate", num("7"))]));
        let untouched_by_the_plan_overrides = prepared_sip_device(
            sip_device(discounted()),
            sip_device(vec![("discounts", Value::Null)]),
            Some(sip_device(vec![("rate", num("7"))])),
        );
        assert_eq!(untouched_by_the_plan_overrides, obj(vec![("rate", num("7"))]));
    }

    #[test]
    fn object_plans_take_their_own_nulls_as_deletions() {
        // Object plans have no account-wide layer: their overrides go onto the plan.
        let object_plan = AssignedPlan {
            overrides: Some(sip_device(vec![("minimum", Value::Null)])),
            ..assigned(
                "o",
                Value::Object(sip_device(vec![("rate", num("5")), ("minimum", num("10"))])),
            )
        };
        let groups = resolve_plans(&context(), &[], &[object_plan]);
        assert_eq!(
            groups[0].plans[0].document.get("plan"),
            Some(&obj(vec![(
                "devices",
                obj(vec![("sip_device", obj(vec![("rate", num("5"))]))])
            )]))
        );
    }

    #[test]
    fn validation_names_the_path_of_a_bad_value() {
        let document = map(obj(vec![
            (
                "plan",
                obj(vec![(
                    "devices",
                    obj(vec![(
                        "sip_device",
                        obj(vec![("rates", obj(vec![("10", Value::String("abc".into()))]))]),
                    )]),
                )]),
            ),
            ("merge", obj(vec![("strategy", Value::String("newest".into()))])),
        ]));
        let messages: Vec<String> = validate_plan_document(&document, &Path::root().key("plans").index(1))
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(
            messages,
            vec![
                r#"plans[1].plan.devices.sip_device.rates."10": expected a number, found "abc""#.to_owned(),
                r#"plans[1].merge.strategy: expected one of "simple", "recursive", "cumulative", found "newest""#
                    .to_owned(),
            ]
        );
    }
}
