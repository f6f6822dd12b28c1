//! The services record of one account: plans, overrides, manual quantities, standing,
//! billing id; and the reconciliation and synchronisation of one account
//! (`api.md` §2.2-§2.15).

use super::input::OverrideMerge;
use super::{input, Caller, Operations, OpsError, WriteMode};
use crate::domain::changes::FirstCommit;
use crate::domain::quantities::Quantities;
use crate::domain::{AccountId, Category, ItemName};
use crate::jobs::context::RunScope;
use crate::jobs::{bookkeeper_sync, impact, sync};
use crate::store::{AccountNode, PendingChange, PlanAssignment, ServicesChange, ServicesRecord, Standing, SyncScope};
use crate::wire;
use serde_json::{json, Map, Value};
use tokio_util::sync::CancellationToken;

/// The `plans` map of a record, in assignment order (`api.md` §2.2).
pub(super) fn plans_map(record: &ServicesRecord) -> Value {
    let mut plans = Map::new();
    for assignment in &record.assignments {
        let mut entry = Map::new();
        entry.insert("vendor_id".to_owned(), Value::String(assignment.vendor_id.clone()));
        entry.insert("overrides".to_owned(), assignment.overrides.clone());
        if let Some(contract) = &assignment.contract {
            entry.insert("contract".to_owned(), contract.clone());
        }
        plans.insert(assignment.plan_id.clone(), Value::Object(entry));
    }
    Value::Object(plans)
}

/// One entry of `add`/`plans`: a plan id, or `{id, vendor_id?, overrides?, contract?}`.
struct PlanRequest {
    id: String,
    vendor_id: Option<String>,
    overrides: Option<Value>,
    contract: Option<Value>,
    /// Given as an object (its overrides replace or merge), not as a bare id (kept).
    detailed: bool,
}

fn plan_requests(list: &Value, field: &str) -> Result<Vec<PlanRequest>, OpsError> {
    let Value::Array(entries) = list else {
        return Err(OpsError::field(
            field,
            "type",
            "must be an array of plan ids or plan objects",
        ));
    };
    entries
        .iter()
        .enumerate()
        .map(|(index, entry)| {
            let path = format!("{field}.{index}");
            match entry {
                Value::String(id) if !id.is_empty() => Ok(PlanRequest {
                    id: id.clone(),
                    vendor_id: None,
                    overrides: None,
                    contract: None,
                    detailed: false,
                }),
                Value::Object(object) => {
                    let id = match object.get("id") {
                        Some(Value::String(id)) if !id.is_empty() => id.clone(),
                        _ => {
                            return Err(OpsError::field(
                                format!("{path}.id"),
                                "required",
                                "Field is required but missing",
                            ))
                        }
                    };
                    let vendor_id = match object.get("vendor_id") {
                        None | Some(Value::Null) => None,
                        Some(Value::String(vendor)) if !vendor.is_empty() => Some(vendor.clone()),
                        Some(_) => {
                            return Err(OpsError::field(
                                format!("{path}.vendor_id"),
                                "type",
                                "must be an account id",
                            ))
                        }
                    };
                    let overrides = input::optional_object(object.get("overrides"), &format!("{path}.overrides"))?;
                    let contract = input::optional_object(object.get("contract"), &format!("{path}.contract"))?;
                    Ok(PlanRequest {
                        id,
                        vendor_id,
                        overrides,
                        contract,
                        detailed: true,
                    })
                }
                _ => Err(OpsError::field(path, "type", "must be a plan id or a plan object")),
            }
        })
        .collect()
}

fn plan_ids(list: &Value, field: &str) -> Result<Vec<String>, OpsError> {
    let Value::Array(entries) = list else {
        return Err(OpsError::field(field, "type", "must be an array of plan ids"));
    };
    entries
        .iter()
        .enumerate()
        .map(|(index, entry)| match entry {
            Value::String(id) if !id.is_empty() => Ok(id.clone()),
            Value::Object(object) => match object.get("id") {
                Some(Value::String(id)) if !id.is_empty() => Ok(id.clone()),
                _ => Err(OpsError::field(
                    format!("{field}.{index}.id"),
                    "required",
                    "Field is required but missing",
                )),
            },
            _ => Err(OpsError::field(format!("{field}.{index}"), "type", "must be a plan id")),
        })
        .collect()
}

/// Assigns a plan in the record (`api.md` §2.9 step 3): a new plan goes last, an
/// assigned one keeps its place.
fn assign(record: &mut ServicesRecord, request: PlanRequest, reseller: &str, mode: WriteMode) {
    let vendor_id = request.vendor_id.unwrap_or_else(|| reseller.to_owned());
    let existing = record
        .assignments
        .iter_mut()
        .find(|assignment| assignment.plan_id == request.id);
    let old_overrides = existing.as_ref().map(|assignment| assignment.overrides.clone());
    let overrides = match (request.overrides, old_overrides) {
        (Some(Value::Object(new)), Some(Value::Object(old))) if mode == WriteMode::Merge => {
            input::merge_overrides(&old, &new, OverrideMerge::PerPlan)
        }
        (Some(new), _) => new,
        (None, Some(old)) => old,
        (None, None) => json!({}),
    };
    let assignment = PlanAssignment {
        plan_id: request.id,
        vendor_id,
        overrides,
        contract: if request.detailed {
            request.contract
        } else {
            existing.as_ref().and_then(|assignment| assignment.contract.clone())
        },
    };
    match existing {
        Some(slot) => *slot = assignment,
        None => record.assignments.push(assignment),
    }
}

fn unassign(record: &mut ServicesRecord, plan: &str) -> Result<(), OpsError> {
    let before = record.assignments.len();
    record.assignments.retain(|assignment| assignment.plan_id != plan);
    if record.assignments.len() == before {
        return Err(OpsError::PlanNotAssigned { plan: plan.to_owned() });
    }
    Ok(())
}

/// The vendor plans are looked up at: the account's reseller (itself for the master).
pub(super) fn reseller_of(node: &AccountNode) -> String {
    node.reseller_id.as_ref().unwrap_or(&node.id).to_string()
}

fn standing_json(standing: &Standing) -> Value {
    let mut data = Map::new();
    data.insert("in_good_standing".to_owned(), Value::Bool(standing.in_good_standing()));
    if !standing.in_good_standing() {
        if let Some(reason) = &standing.reason {
            data.insert("reason".to_owned(), Value::String(reason.clone()));
        }
        if let Some(code) = &standing.reason_code {
            // Stored as text; a number when it reads as one (Kazoo's `reason_code` is numeric).
            let value = code
                .parse::<i64>()
                .map(Value::from)
                .unwrap_or_else(|_| Value::String(code.clone()));
            data.insert("reason_code".to_owned(), value);
        }
    }
    Value::Object(data)
}

impl Operations {
    /// Commits a saved change: reprices the account now, writing audit rows that name
    /// the caller. The change was saved with the account's repricing mark, so a
    /// failure here only delays the commit to the next sync run: it is logged, and the
    /// write is answered as what it is, saved.
    pub(super) async fn commit(&self, caller: &Caller, account: &AccountId) {
        if let Err(error) = self.reprice_now(caller, account).await {
            tracing::warn!(account_id = %account, %error,
                "saved, but repricing failed; the account stays marked and the next sync run reprices it");
        }
    }

    /// Reprices the account now, writing audit rows that name the caller.
    async fn reprice_now(&self, caller: &Caller, account: &AccountId) -> Result<(), OpsError> {
        let options = self.commit_options(caller, account, "commit");
        let report = sync::run_once(self.store(), &options).await?;
        for skipped in report.skipped {
            tracing::warn!(account_id = %skipped.account, reason = %skipped.reason,
                "saved, but the account cannot be repriced; the sync job will report it");
        }
        Ok(())
    }

    /// The sync options of a commit of one account, named after the caller.
    fn commit_options(&self, caller: &Caller, account: &AccountId, kind: &str) -> sync::SyncOptions {
        let mut options = self.pricing_options(SyncScope::Accounts(vec![account.clone()]));
        options.initiator = Some(caller.audit.clone());
        options.run_id = crate::runs::operation_run_label(kind, account);
        options
    }

    /// The settings repricing reads (bookkeeper defaults, merge priorities), as sync options.
    pub(super) fn pricing_options(&self, scope: SyncScope) -> sync::SyncOptions {
        self.context()
            .sync_options(scope, None, FirstCommit::Baseline, self.now(), CancellationToken::new())
    }

    /// Checks that every plan exists at its vendor: 404 naming the first that does not.
    async fn check_plans_exist(&self, plans: &[(String, String)]) -> Result<(), OpsError> {
        for (vendor, plan) in plans {
            if self.store().catalog_plan(vendor, plan).await?.is_none() {
                return Err(OpsError::BadIdentifier { cause: plan.clone() });
            }
        }
        Ok(())
    }

    /// `GET /services`: the `plans` map, in assignment order.
    pub async fn services_plans(&self, caller: &Caller, account: &AccountId) -> Result<Value, OpsError> {
        let node = self.account(caller, account).await?;
        caller.check_access(&node)?;
        Ok(plans_map(&self.store().services_record(account).await?))
    }

    /// `POST /services`: assign `add` (or `plans`), unassign `delete`, set global
    /// `overrides`, legacy `billing_id`; then commit. Returns the `plans` map.
    pub async fn update_services(
        &self,
        caller: &Caller,
        account: &AccountId,
        data: &Value,
        mode: WriteMode,
    ) -> Result<Value, OpsError> {
        let node = self.account(caller, account).await?;
        caller.check_reseller(&node)?;
        let data = input::object(data, "data")?;
        let reseller = reseller_of(&node);

        let additions = match (data.get("add"), data.get("plans")) {
            (Some(add), _) => plan_requests(add, "add")?,
            (None, Some(plans)) => plan_requests(plans, "plans")?,
            (None, None) => Vec::new(),
        };
        let deletions = match data.get("delete") {
            Some(list) => plan_ids(list, "delete")?,
            None => Vec::new(),
        };
        let overrides = input::optional_object(data.get("overrides"), "overrides")?;
        let billing_id = match data.get("billing_id") {
            None | Some(Value::Null) => None,
            Some(Value::String(id)) if !id.is_empty() => Some(id.clone()),
            Some(_) => return Err(OpsError::field("billing_id", "type", "must be an account id")),
        };

        if !deletions.is_empty() {
            // Checked here for the order of validation errors (`api.md` §2.3), and again
            // by the write, under the account's lock.
            let record = self.store().services_record(account).await?;
            for plan in &deletions {
                if !record.assignments.iter().any(|assignment| &assignment.plan_id == plan) {
                    return Err(OpsError::PlanNotAssigned { plan: plan.clone() });
                }
            }
        }
        let wanted: Vec<(String, String)> = additions
            .iter()
            .map(|request| {
                (
                    request.vendor_id.clone().unwrap_or_else(|| reseller.clone()),
                    request.id.clone(),
                )
            })
            .collect();
        self.check_plans_exist(&wanted).await?;
        if let Some(billing_id) = &billing_id {
            check_billing_id(&node, billing_id)?;
        }
        if let Some(overrides) = &overrides {
            input::check_overrides(overrides, "overrides")?;
        }

        let changes_plans = !additions.is_empty() || !deletions.is_empty();
        let record = self
            .save_services(caller, account, |mut record| {
                for request in additions {
                    assign(&mut record, request, &reseller, mode);
                }
                for plan in &deletions {
                    unassign(&mut record, plan)?;
                }
                let new_overrides = match overrides {
                    Some(Value::Object(new)) if !new.is_empty() => {
                        Some(combine_global_overrides(&record.overrides, new, mode))
                    }
                    _ => None,
                };
                let change = ServicesChange {
                    assignments: changes_plans.then(|| record.assignments.clone()),
                    overrides: new_overrides,
                    billing_id,
                };
                Ok((change, record))
            })
            .await?;
        Ok(plans_map(&record))
    }

    /// Legacy `GET /services/status`.
    pub async fn services_status(&self, caller: &Caller, account: &AccountId) -> Result<Value, OpsError> {
        let node = self.account(caller, account).await?;
        caller.check_access(&node)?;
        let standing = self
            .store()
            .standing(account)
            .await?
            .ok_or_else(|| OpsError::BadIdentifier {
                cause: account.to_string(),
            })?;
        Ok(standing_json(&standing))
    }

    /// Legacy `POST /services/status` (super admin): `{in_good_standing, reason?, reason_code?}`.
    /// A reason or code not given keeps the stored one.
    pub async fn set_services_status(
        &self,
        caller: &Caller,
        account: &AccountId,
        data: &Value,
    ) -> Result<Value, OpsError> {
        let node = self.account(caller, account).await?;
        caller.check_access(&node)?;
        caller.check_super_admin()?;
        let data = input::object(data, "data")?;
        let good = match data.get("in_good_standing") {
            Some(Value::Bool(good)) => *good,
            Some(Value::String(text)) if text == "true" => true,
            Some(Value::String(text)) if text == "false" => false,
            None | Some(Value::Null) => {
                return Err(OpsError::field(
                    "in_good_standing",
                    "required",
                    "Field is required but missing",
                ))
            }
            Some(_) => return Err(OpsError::field("in_good_standing", "type", "must be true or false")),
        };
        let reason = match data.get("reason") {
            None | Some(Value::Null) => None,
            Some(Value::String(reason)) => Some(reason.clone()),
            Some(_) => return Err(OpsError::field("reason", "type", "must be a string")),
        };
        let reason_code = match data.get("reason_code") {
            None | Some(Value::Null) => None,
            Some(Value::Number(code)) if code.is_i64() => Some(code.to_string()),
            Some(Value::String(code)) => Some(code.clone()),
            Some(_) => return Err(OpsError::field("reason_code", "type", "must be an integer")),
        };
        let asked = Standing {
            status: if good { "good_standing" } else { "delinquent" }.to_owned(),
            reason,
            reason_code,
        };
        let standing = self
            .store()
            .set_standing(account, &asked)
            .await?
            .ok_or_else(|| OpsError::BadIdentifier {
                cause: account.to_string(),
            })?;
        tracing::info!(account_id = %account, status = %standing.status, audit = %caller.audit, "standing set");
        Ok(standing_json(&standing))
    }

    /// Sets the legacy billing id (`sync-and-bookkeepers.md` §8): the account itself or
    /// its direct parent. Returns `{billing_id}`.
    pub async fn set_billing_id(
        &self,
        caller: &Caller,
        account: &AccountId,
        billing_id: &str,
    ) -> Result<Value, OpsError> {
        let node = self.account(caller, account).await?;
        caller.check_reseller(&node)?;
        check_billing_id(&node, billing_id)?;
        let change = ServicesChange {
            billing_id: Some(billing_id.to_owned()),
            ..ServicesChange::default()
        };
        self.store().save_services_change(account, &change, self.now()).await?;
        self.commit(caller, account).await;
        Ok(json!({ "billing_id": billing_id }))
    }

    /// `POST /services/{PLAN_ID}`: assign one plan (`data`: overrides, vendor_id, contract).
    pub async fn assign_plan(
        &self,
        caller: &Caller,
        account: &AccountId,
        plan: &str,
        data: &Value,
        mode: WriteMode,
    ) -> Result<Value, OpsError> {
        let node = self.account(caller, account).await?;
        caller.check_reseller(&node)?;
        let mut with_id = input::object(data, "data")?.clone();
        // The plan id comes from the path.
        with_id.insert("id".to_owned(), Value::String(plan.to_owned()));
        let request = plan_requests(&Value::Array(vec![Value::Object(with_id)]), "data")
            .map_err(|error| rename_field(error, "data.0.", ""))?;
        let Some(request) = request.into_iter().next() else {
            return Err(OpsError::field("data", "type", "must be an object"));
        };
        let reseller = reseller_of(&node);
        let vendor = request.vendor_id.clone().unwrap_or_else(|| reseller.clone());
        self.check_plans_exist(&[(vendor, plan.to_owned())]).await?;
        if let Some(overrides) = &request.overrides {
            input::check_overrides(overrides, "overrides")?;
        }
        let record = self
            .modify_assignments(caller, account, |record| {
                assign(record, request, &reseller, mode);
                Ok(())
            })
            .await?;
        Ok(plans_map(&record))
    }

    /// `DELETE /services/{PLAN_ID}`.
    pub async fn unassign_plan(&self, caller: &Caller, account: &AccountId, plan: &str) -> Result<Value, OpsError> {
        let node = self.account(caller, account).await?;
        caller.check_reseller(&node)?;
        let record = self
            .modify_assignments(caller, account, |record| unassign(record, plan))
            .await?;
        Ok(plans_map(&record))
    }

    /// Changes the account's plan assignments under its write lock, saves and commits
    /// them; returns the record as saved.
    pub(super) async fn modify_assignments(
        &self,
        caller: &Caller,
        account: &AccountId,
        change: impl FnOnce(&mut ServicesRecord) -> Result<(), OpsError>,
    ) -> Result<ServicesRecord, OpsError> {
        self.save_services(caller, account, |mut record| {
            change(&mut record)?;
            let change = ServicesChange {
                assignments: Some(record.assignments.clone()),
                ..ServicesChange::default()
            };
            Ok((change, record))
        })
        .await
    }

    /// Saves a services change decided on the stored record (under the account's write
    /// lock) and commits it; in a dry run (`Operations::previewing`) decides the same
    /// change on the stored record, prices its impact and leaves it in the preview,
    /// writing nothing. Answers what `decide` answers.
    async fn save_services<T>(
        &self,
        caller: &Caller,
        account: &AccountId,
        decide: impl FnOnce(ServicesRecord) -> Result<(ServicesChange, T), OpsError>,
    ) -> Result<T, OpsError> {
        let Some(preview) = &self.preview else {
            let answer = self.store().modify_services(account, self.now(), decide).await?;
            self.commit(caller, account).await;
            return Ok(answer);
        };
        let (change, answer) = self.store().preview_services_change(account, decide).await?;
        let pending = PendingChange {
            services: [(account.clone(), change)].into(),
            ..PendingChange::default()
        };
        let touched = [account.clone()];
        let options = self.pricing_options(SyncScope::Accounts(touched.to_vec()));
        let run = impact::run_once(self.store(), &options, &touched, &pending).await?;
        preview.record(wire::impact::impact(&run));
        Ok(answer)
    }

    /// `GET /services/manual`.
    pub async fn manual_quantities(&self, caller: &Caller, account: &AccountId) -> Result<Value, OpsError> {
        let node = self.account(caller, account).await?;
        caller.check_access(&node)?;
        Ok(quantities_json(&self.store().quantities(account).await?.manual))
    }

    /// `POST`/`PATCH /services/manual`: replace, or merge (`null` deletes an item); a
    /// change is a quantity-change record and a commit.
    pub async fn set_manual_quantities(
        &self,
        caller: &Caller,
        account: &AccountId,
        data: &Value,
        mode: WriteMode,
    ) -> Result<Value, OpsError> {
        let node = self.account(caller, account).await?;
        caller.check_reseller(&node)?;
        let data = input::object(data, "data")?;
        // What the request sets (0 deletes), applied to the stored bucket under the
        // account's write lock.
        let mut edits = Quantities::new();
        let mut errors = Vec::new();
        for (category, items) in data {
            let Value::Object(items) = items else {
                errors.push(super::FieldError::new(
                    category.clone(),
                    "type",
                    "must be an object of item quantities",
                ));
                continue;
            };
            for (item, quantity) in items {
                let path = format!("{category}.{item}");
                let (Ok(category_name), Ok(item_name)) =
                    (Category::parse(category.as_str()), ItemName::parse(item.as_str()))
                else {
                    errors.push(super::FieldError::new(
                        path,
                        "type",
                        "category and item names must not be empty",
                    ));
                    continue;
                };
                match quantity {
                    Value::Null if mode == WriteMode::Merge => edits.set(category_name, item_name, 0),
                    Value::Number(number) => match input::manual_quantity(number, &path) {
                        Ok(count) => edits.set(category_name, item_name, count),
                        Err(error) => errors.push(*error),
                    },
                    _ => errors.push(super::FieldError::new(path, "type", "must be a non-negative integer")),
                }
            }
        }
        if !errors.is_empty() {
            return Err(OpsError::Validation(errors));
        }
        let now = self.now();
        let record_id = self.record_id(account, now);
        let (manual, _) = self
            .store()
            .modify_manual_quantities(account, now, &record_id, |stored| {
                let mut manual = match mode {
                    WriteMode::Replace => Quantities::new(),
                    WriteMode::Merge => stored,
                };
                for (category, item, count) in edits.iter() {
                    manual.set(category.clone(), item.clone(), count);
                }
                Ok::<_, OpsError>(without_zeros(manual))
            })
            .await?;
        // The audit log says the manual bucket changed (`audit-and-summaries.md` §2).
        let mut caller = caller.clone();
        if let Value::Object(audit) = &mut caller.audit {
            audit.insert("changes".to_owned(), json!({ "type": ["manual"] }));
        }
        self.commit(&caller, account).await;
        Ok(quantities_json(&manual))
    }

    /// `GET /services/overrides`.
    pub async fn overrides(&self, caller: &Caller, account: &AccountId) -> Result<Value, OpsError> {
        let node = self.account(caller, account).await?;
        caller.check_access(&node)?;
        Ok(self.store().services_record(account).await?.overrides)
    }

    /// `POST`/`PATCH /services/overrides`.
    pub async fn set_overrides(
        &self,
        caller: &Caller,
        account: &AccountId,
        data: &Value,
        mode: WriteMode,
    ) -> Result<Value, OpsError> {
        let node = self.account(caller, account).await?;
        caller.check_reseller(&node)?;
        let new = input::object(data, "data")?.clone();
        input::check_overrides(&Value::Object(new.clone()), "")?;
        self.save_services(caller, account, |record| {
            let overrides = combine_global_overrides(&record.overrides, new, mode);
            let change = ServicesChange {
                overrides: Some(overrides.clone()),
                ..ServicesChange::default()
            };
            Ok((change, overrides))
        })
        .await
    }

    /// `POST /services/reconciliation`: recount and reprice this account now. Returns `{}`.
    pub async fn reconcile_account(&self, caller: &Caller, account: &AccountId) -> Result<Value, OpsError> {
        let node = self.account(caller, account).await?;
        caller.check_reseller(&node)?;
        self.recount(account).await?;
        self.reprice_now(caller, account).await?;
        Ok(json!({}))
    }

    /// `POST /services/synchronization`: recount, reprice and deliver every invoice of
    /// this account now (`sync-and-bookkeepers.md` §4.3). Returns `{}`.
    pub async fn synchronize_account(&self, caller: &Caller, account: &AccountId) -> Result<Value, OpsError> {
        let node = self.account(caller, account).await?;
        caller.check_reseller(&node)?;
        self.recount(account).await?;
        let now = self.now();
        let mut options = self.commit_options(caller, account, "synchronization");
        options.every_invoice = true;
        let report = sync::run_once(self.store(), &options).await?;
        if let Some(skipped) = report.skipped.first() {
            return Err(OpsError::Fault(format!(
                "account {} cannot be priced: {}",
                skipped.account, skipped.reason
            )));
        }
        let mut delivery = self
            .context()
            .bookkeeper_sync_options(None, now, CancellationToken::new());
        delivery.account = Some(account.clone());
        let delivered = bookkeeper_sync::run_once(self.store(), &self.context().bookkeepers, &delivery).await?;
        if let Some(failed) = delivered.failed.first() {
            return Err(OpsError::Fault(format!(
                "delivery to the {} bookkeeper failed: {}",
                failed.bookkeeper.kind, failed.error
            )));
        }
        // Waiting for configuration spends no attempt and is no failure of the run, but
        // this call promised delivery now: say why it did not happen.
        if delivered.pending.awaiting_configuration > 0 {
            return Err(OpsError::Fault(
                "delivery to the http bookkeeper is waiting: http_url not configured \
                 (set [bookkeepers.http] http_url)"
                    .to_owned(),
            ));
        }
        Ok(json!({}))
    }

    /// Recounts the account's quantities and cascades (and those of its ancestors).
    async fn recount(&self, account: &AccountId) -> Result<(), OpsError> {
        let scope = RunScope {
            accounts: Some(vec![account.clone()]),
            batch_size: None,
            changed_only: false,
            full_recount: false,
        };
        self.context()
            .reconcile(&scope, self.now())
            .await
            .map_err(|error| OpsError::Fault(error.to_string()))?;
        Ok(())
    }

    /// `YYYY-` + 32 hex for a quantity-change record written by an operation.
    fn record_id(&self, account: &AccountId, now: crate::domain::summary::GregorianSeconds) -> String {
        let year = now.year().unwrap_or(0);
        let digest = crate::runs::operation_run_label("manual", account);
        format!("{year:04}-{:010x}{}", now.0, &digest[..22])
    }
}

fn rename_field(error: OpsError, from: &str, to: &str) -> OpsError {
    match error {
        OpsError::Validation(fields) => OpsError::Validation(
            fields
                .into_iter()
                .map(|mut field| {
                    field.field = field.field.replacen(from, to, 1);
                    field
                })
                .collect(),
        ),
        other => other,
    }
}

/// The billing id rule (`sync-and-bookkeepers.md` §8).
fn check_billing_id(node: &AccountNode, billing_id: &str) -> Result<(), OpsError> {
    if billing_id == node.id.as_str() || node.parent.as_ref().is_some_and(|parent| parent.as_str() == billing_id) {
        Ok(())
    } else {
        Err(OpsError::InvalidBillingId {
            reason: "Requested billing id is not the parent of this account".to_owned(),
        })
    }
}

/// Global overrides after a write: replaced, or merged by the global-overrides rule
/// of `plans.md` §6 (an empty object replaces, `null` deletes).
pub(super) fn combine_global_overrides(stored: &Value, new: Map<String, Value>, mode: WriteMode) -> Value {
    match (mode, stored) {
        (WriteMode::Merge, Value::Object(old)) => input::merge_overrides(old, &new, OverrideMerge::Global),
        (WriteMode::Merge, _) => input::merge_overrides(&Map::new(), &new, OverrideMerge::Global),
        (WriteMode::Replace, _) => Value::Object(new),
    }
}

fn without_zeros(quantities: Quantities) -> Quantities {
    let mut kept = Quantities::new();
    for (category, item, count) in quantities.iter() {
        if count != 0 {
            kept.set(category.clone(), item.clone(), count);
        }
    }
    kept
}

pub(super) fn quantities_json(quantities: &Quantities) -> Value {
    let mut categories = Map::new();
    for (category, item, count) in quantities.iter() {
        let entry = categories
            .entry(category.to_string())
            .or_insert_with(|| Value::Object(Map::new()));
        if let Value::Object(items) = entry {
            items.insert(item.to_string(), Value::from(count));
        }
    }
    Value::Object(categories)
}
