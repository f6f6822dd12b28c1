//! The legacy service_plans API over our model (`api.md` §3), and plan import.

use super::services::{plans_map, quantities_json, reseller_of};
use super::summary::public_plan;
use super::{input, Caller, FieldError, ListQuery, Operations, OpsError, Page, WriteMode};
use crate::domain::document::Path;
use crate::domain::item_plan::Severity;
use crate::domain::merge::merge_plans;
use crate::domain::plan::{resolve_plans, validate_plan_document};
use crate::domain::AccountId;
use crate::jobs::impact;
use crate::jobs::sync::account_pricing;
use crate::store::{CatalogPlan, PendingChange, PlanWrite, SyncScope};
use crate::wire;
use crate::wire::bookkeeper::DeliveryBody;
use crate::wire::document::{map_from_json, Document};
use serde_json::{json, Map, Value};

/// What `tally plans import` did, by plan id.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct ImportReport {
    pub created: Vec<String>,
    pub updated: Vec<String>,
    pub unchanged: Vec<String>,
}

impl ImportReport {
    fn record(&mut self, outcome: PlanWrite, plan: &CatalogPlan) {
        let list = match outcome {
            PlanWrite::Created => &mut self.created,
            PlanWrite::Updated => &mut self.updated,
            PlanWrite::Unchanged => &mut self.unchanged,
        };
        list.push(plan.plan_id.clone());
    }
}

fn text_member(document: &Map<String, Value>, key: &str) -> Option<String> {
    document.get(key).and_then(Value::as_str).map(str::to_owned)
}

/// Reads one plan document to import; problems are named by `path`.
fn catalog_plan(vendor: &AccountId, document: &Value, path: &str) -> Result<CatalogPlan, Vec<FieldError>> {
    let Value::Object(map) = document else {
        return Err(vec![FieldError::new(path, "type", "a plan document must be an object")]);
    };
    let id = text_member(map, "id")
        .or_else(|| text_member(map, "_id"))
        .filter(|id| !id.is_empty());
    let Some(id) = id else {
        return Err(vec![FieldError::new(
            format!("{path}.id"),
            "required",
            "a plan document needs an `id` (or `_id`)",
        )]);
    };
    let root = Path::root().key(path);
    let document = map_from_json(map);
    let mut errors: Vec<FieldError> = validate_plan_document(&document, &root)
        .into_iter()
        .filter(|issue| issue.severity == Severity::Error)
        .map(|issue| FieldError::new(issue.path.to_string(), "type", issue.message))
        .collect();
    if errors.is_empty() {
        errors = input::billable_values(&document, &root);
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    let mut stored = map.clone();
    stored.remove("_id");
    stored.remove("_rev");
    stored.insert("id".to_owned(), Value::String(id.clone()));
    Ok(CatalogPlan {
        vendor_id: vendor.to_string(),
        plan_id: id,
        name: text_member(map, "name").unwrap_or_default(),
        description: text_member(map, "description").unwrap_or_default(),
        category: text_member(map, "category"),
        document: Value::Object(stored),
    })
}

/// The members that make a legacy override value a partial plan document (`api.md`
/// §3); without any of them the value is a category map.
const PLAN_DOCUMENT_MEMBERS: [&str; 4] = ["plan", "bookkeepers", "merge", "name"];

/// One plan's value in `POST /service_plans/override`, as per-plan overrides: a partial
/// plan document as it is, a category map (Kazoo 4.x, the legacy documentation's
/// example `{"whitelabel": {"_all": {"activation_charge": 700}}}`) as `{"plan": map}`.
fn legacy_plan_overrides(value: &Map<String, Value>) -> Value {
    let is_document = value.is_empty() || PLAN_DOCUMENT_MEMBERS.iter().any(|member| value.contains_key(*member));
    match is_document {
        true => Value::Object(value.clone()),
        false => json!({ "plan": value }),
    }
}

impl Operations {
    /// The public fields of all the account's plans merged as one group (`api.md` §3:
    /// legacy accounts had one bookkeeper); `{}` without plans.
    async fn merged_plan(&self, account: &AccountId) -> Result<Value, OpsError> {
        let (mut readable, unreadable) = self.store().pricing_inputs(std::slice::from_ref(account)).await?;
        if let Some(problem) = unreadable.into_iter().next() {
            return Err(OpsError::Fault(format!(
                "account {}: {}",
                problem.account, problem.problem
            )));
        }
        let Some(stored) = readable.pop() else {
            return Ok(json!({}));
        };
        let options = self.pricing_options(SyncScope::Accounts(Vec::new()));
        let pricing = account_pricing(&stored, &options, &mut Vec::new());
        if pricing.plans.is_empty() {
            return Ok(json!({}));
        }
        let prepared = resolve_plans(&pricing.context, &pricing.plans, &[])
            .into_iter()
            .flat_map(|group| group.plans)
            .collect();
        let merged = merge_plans(prepared, &options.priorities);
        let mut public = Map::new();
        if let Value::Object(document) = serde_json::to_value(Document::Map(&merged)).unwrap_or_default() {
            for (key, value) in document {
                if !key.starts_with('_') && !key.starts_with("pvt_") {
                    public.insert(key, value);
                }
            }
        }
        Ok(Value::Object(public))
    }

    /// `GET /service_plans`: plans stored by the account itself (as vendor).
    pub async fn vendor_plans(
        &self,
        caller: &Caller,
        account: &AccountId,
        query: &ListQuery,
    ) -> Result<Page, OpsError> {
        let node = self.account(caller, account).await?;
        caller.check_access(&node)?;
        self.plan_page(account.as_str(), query).await
    }

    /// `GET /service_plans/{PLAN_ID}`: a plan the account stores.
    pub async fn vendor_plan(&self, caller: &Caller, account: &AccountId, plan: &str) -> Result<Value, OpsError> {
        let node = self.account(caller, account).await?;
        caller.check_access(&node)?;
        let stored = self
            .store()
            .catalog_plan(account.as_str(), plan)
            .await?
            .ok_or_else(|| OpsError::BadIdentifier { cause: plan.to_owned() })?;
        Ok(public_plan(&stored))
    }

    /// `GET /service_plans/available/{PLAN_ID}`: a plan the account's reseller offers.
    pub async fn available_plan(&self, caller: &Caller, account: &AccountId, plan: &str) -> Result<Value, OpsError> {
        let node = self.account(caller, account).await?;
        caller.check_access(&node)?;
        let stored = self
            .store()
            .catalog_plan(&reseller_of(&node), plan)
            .await?
            .ok_or_else(|| OpsError::BadIdentifier { cause: plan.to_owned() })?;
        Ok(public_plan(&stored))
    }

    /// `POST /service_plans` `{add, delete}` (plan ids only): returns the merged plan.
    pub async fn update_service_plans(
        &self,
        caller: &Caller,
        account: &AccountId,
        data: &Value,
    ) -> Result<Value, OpsError> {
        let data = input::object(data, "data")?;
        for field in ["add", "delete"] {
            match data.get(field) {
                None | Some(Value::Null) => {}
                Some(Value::Array(ids)) => {
                    if let Some(index) = ids.iter().position(|id| id.as_str().is_none_or(|id| id.is_empty())) {
                        return Err(OpsError::field(format!("{field}.{index}"), "type", "must be a plan id"));
                    }
                }
                Some(_) => return Err(OpsError::field(field, "type", "must be an array of plan ids")),
            }
        }
        let mut request = Map::new();
        for field in ["add", "delete"] {
            if let Some(ids) = data.get(field).filter(|ids| !ids.is_null()) {
                request.insert(field.to_owned(), ids.clone());
            }
        }
        self.update_services(caller, account, &Value::Object(request), WriteMode::Replace)
            .await?;
        self.merged_plan(account).await
    }

    /// `POST /service_plans/{PLAN_ID}`: returns the merged plan.
    pub async fn add_service_plan(&self, caller: &Caller, account: &AccountId, plan: &str) -> Result<Value, OpsError> {
        let request = json!({ "add": [plan] });
        self.update_services(caller, account, &request, WriteMode::Replace)
            .await?;
        self.merged_plan(account).await
    }

    /// `DELETE /service_plans/{PLAN_ID}`: returns the merged plan.
    pub async fn remove_service_plan(
        &self,
        caller: &Caller,
        account: &AccountId,
        plan: &str,
    ) -> Result<Value, OpsError> {
        self.unassign_plan(caller, account, plan).await?;
        self.merged_plan(account).await
    }

    /// `POST /service_plans/override` (super admin): `{overrides: {plan: value}}`
    /// replaces the overrides of every assigned plan; plans not named lose theirs and
    /// ids not assigned are ignored (Q-API-8). A value is a partial plan document, or a
    /// category map as Kazoo 4.x stored it (`api.md` §3), which is read as its `plan`.
    /// Returns the merged plan's categories, as the legacy API did.
    pub async fn override_service_plans(
        &self,
        caller: &Caller,
        account: &AccountId,
        data: &Value,
    ) -> Result<Value, OpsError> {
        let node = self.account(caller, account).await?;
        caller.check_access(&node)?;
        caller.check_super_admin()?;
        let data = input::object(data, "data")?;
        let given = match data.get("overrides") {
            None | Some(Value::Null) => Map::new(),
            Some(Value::Object(overrides)) => overrides.clone(),
            Some(_) => return Err(OpsError::field("overrides", "type", "must be an object of plan ids")),
        };
        let mut overrides = Map::new();
        for (plan, value) in given {
            let field = format!("overrides.{plan}");
            let partial = legacy_plan_overrides(input::object(&value, &field)?);
            input::check_overrides(&partial, &field)?;
            overrides.insert(plan, partial);
        }
        self.modify_assignments(caller, account, |record| {
            for assignment in &mut record.assignments {
                assignment.overrides = overrides.get(&assignment.plan_id).cloned().unwrap_or_else(|| json!({}));
            }
            Ok(())
        })
        .await?;
        let merged = self.merged_plan(account).await?;
        Ok(merged.get("plan").cloned().unwrap_or_else(|| json!({})))
    }

    /// `GET /service_plans/current`: the legacy "current services" view.
    pub async fn current_services(&self, caller: &Caller, account: &AccountId) -> Result<Value, OpsError> {
        let node = self.account(caller, account).await?;
        caller.check_access(&node)?;
        let record = self.store().services_record(account).await?;
        let quantities = self.store().quantities(account).await?;
        let standing = self.store().standing(account).await?;
        let dirty = self.store().dirty(account).await?.is_some();
        let invoices = self.store().invoice_snapshot(account, false).await?;
        let mut items = Map::new();
        for invoice in &invoices {
            let body = serde_json::to_value(DeliveryBody::new(account.as_str(), "", invoice)).unwrap_or_default();
            if let Some(Value::Object(categories)) = body.get("items") {
                for (category, entries) in categories {
                    let slot = items
                        .entry(category.clone())
                        .or_insert_with(|| Value::Object(Map::new()));
                    if let (Value::Object(slot), Value::Object(entries)) = (slot, entries) {
                        slot.extend(entries.clone());
                    }
                }
            }
        }
        Ok(json!({
            "account_quantities": quantities_json(&quantities.account),
            "cascade_quantities": quantities_json(&quantities.cascade),
            "plans": plans_map(&record),
            "billing_id": record.billing_id.unwrap_or_else(|| account.to_string()),
            "reseller": node.is_reseller,
            "reseller_id": reseller_of(&node),
            "dirty": dirty,
            "in_good_standing": standing.is_none_or(|standing| standing.in_good_standing()),
            "items": items,
        }))
    }

    /// Loads plan documents into a vendor's catalog (`tally plans import`): `documents`
    /// is one plan document with an `id`/`_id`, or an array of them. Every document is
    /// checked before any is stored; accounts with a changed plan are marked for
    /// repricing. The vendor itself or a super admin may import.
    pub async fn import_plans(
        &self,
        caller: &Caller,
        vendor: &AccountId,
        documents: &Value,
    ) -> Result<ImportReport, OpsError> {
        let plans = self.plans_to_import(caller, vendor, documents).await?;
        let mut report = ImportReport::default();
        let now = self.now();
        for plan in &plans {
            let outcome = self.store().store_plan(plan, now).await?;
            report.record(outcome, plan);
        }
        tracing::info!(vendor = %vendor, created = report.created.len(), updated = report.updated.len(),
            audit = %caller.audit, "plans imported");
        Ok(report)
    }

    /// `tally plans import --dry-run`: what the import would store, and its impact on
    /// every account assigned a plan it creates or changes, priced against current
    /// quantities (`jobs/impact.rs`); nothing is written. Answers the import report's
    /// members and `impact` (`wire::impact`).
    pub async fn import_plans_impact(
        &self,
        caller: &Caller,
        vendor: &AccountId,
        documents: &Value,
    ) -> Result<Value, OpsError> {
        let plans = self.plans_to_import(caller, vendor, documents).await?;
        let mut report = ImportReport::default();
        let mut pending = PendingChange::default();
        for plan in plans {
            let existing = self.store().catalog_plan(&plan.vendor_id, &plan.plan_id).await?;
            let outcome = PlanWrite::of(existing.as_ref(), &plan);
            report.record(outcome, &plan);
            if outcome != PlanWrite::Unchanged {
                pending.plans.push(plan);
            }
        }
        let changed: Vec<(String, String)> = pending
            .plans
            .iter()
            .map(|plan| (plan.vendor_id.clone(), plan.plan_id.clone()))
            .collect();
        let touched = self.store().accounts_assigned(&changed).await?;
        let options = self.pricing_options(SyncScope::Accounts(Vec::new()));
        let run = impact::run_once(self.store(), &options, &touched, &pending).await?;
        let mut answer = serde_json::to_value(&report).map_err(|error| OpsError::Fault(error.to_string()))?;
        if let Value::Object(members) = &mut answer {
            members.insert("impact".to_owned(), wire::impact::impact(&run));
        }
        Ok(answer)
    }

    /// The plan documents of an import, checked: the caller's right to import into the
    /// vendor's catalog, and every document valid (all problems named at once).
    async fn plans_to_import(
        &self,
        caller: &Caller,
        vendor: &AccountId,
        documents: &Value,
    ) -> Result<Vec<CatalogPlan>, OpsError> {
        let node = self.account(caller, vendor).await?;
        caller.check_access(&node)?;
        if !matches!(&caller.rights, super::Rights::Token { account, .. } if account == vendor) {
            caller.check_super_admin()?;
        }
        let listed: Vec<(String, &Value)> = match documents {
            Value::Array(list) => list
                .iter()
                .enumerate()
                .map(|(index, document)| (format!("[{index}]"), document))
                .collect(),
            single => vec![("(document)".to_owned(), single)],
        };
        let mut plans = Vec::with_capacity(listed.len());
        let mut errors = Vec::new();
        for (path, document) in listed {
            match catalog_plan(vendor, document, &path) {
                Ok(plan) => plans.push(plan),
                Err(mut found) => errors.append(&mut found),
            }
        }
        if !errors.is_empty() {
            return Err(OpsError::Validation(errors));
        }
        Ok(plans)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(value: Value) -> Value {
        match value {
            Value::Object(map) => legacy_plan_overrides(&map),
            other => panic!("not an object: {other}"),
        }
    }

    #[test]
    fn legacy_override_values_are_category_maps_or_partial_plans() {
        let category_map = json!({"whitelabel": {"_all": {"activation_charge": 700}}});
        assert_eq!(read(category_map.clone()), json!({ "plan": category_map }));
        for document in [
            json!({"plan": {"devices": {"sip_device": {"rate": 2}}}}),
            json!({"merge": {"strategy": "cumulative"}}),
            json!({"name": "renamed", "plan": {}}),
            json!({"bookkeepers": {"local": {}}}),
            json!({}),
        ] {
            assert_eq!(read(document.clone()), document);
        }
    }
}
