//! Read-only views of billing: the summary, quotes, plans on offer, editable fields
//! (`api.md` §2.13, §2.17-§2.19; `plans.md` §9, §10).

use super::services::{combine_global_overrides, plans_map, quantities_json, reseller_of};
use super::{input, Caller, ListQuery, Operations, OpsError, Page, WriteMode};
use crate::domain::document::Map as DocumentMap;
use crate::domain::explain::explain_account;
use crate::domain::invoice::{annotate, removed_invoice, Invoice};
use crate::domain::pricing::{merge_account_plans, price_invoice};
use crate::domain::quantities::QuantityBuckets;
use crate::domain::summary::GregorianSeconds;
use crate::domain::{AccountId, PlanId};
use crate::jobs::sync::account_pricing;
use crate::store::{AccountNode, CatalogPlan, StoredAccount, StoredAssignment, SyncScope};
use crate::wire::document::{map_from_json, Document};
use crate::wire::explain::explanation as explanation_json;
use crate::wire::invoice::invoice as invoice_json;
use chrono::{Datelike, NaiveDate};
use serde_json::{json, Map, Value};

/// `category.item` of an explain request.
fn parse_item_filter(text: &str) -> Result<(String, String), OpsError> {
    match text.split_once('.') {
        Some((category, item)) if !category.is_empty() && !item.is_empty() => {
            Ok((category.to_owned(), item.to_owned()))
        }
        _ => Err(OpsError::field(
            "item",
            "type",
            "must be CATEGORY.ITEM, e.g. devices.sip_device",
        )),
    }
}

/// The default quantifier list (`quantities.md` §1), for the editable fields.
const EDITABLE_CATEGORIES: &[(&str, &[&str])] = &[
    ("users", &["user", "admin"]),
    (
        "devices",
        &[
            "sip_device",
            "ata",
            "cellphone",
            "fax",
            "landline",
            "mobile",
            "sip_uri",
            "smartphone",
            "softphone",
            "ctu",
            "application",
        ],
    ),
    ("limits", &["twoway_trunks", "inbound_trunks", "outbound_trunks"]),
    ("branding", &["whitelabel"]),
    ("ips", &["dedicated"]),
    (
        "phone_numbers",
        &[
            "caribbean",
            "did_us",
            "emergency",
            "international",
            "toll_us",
            "tollfree_us",
            "unknown",
        ],
    ),
    (
        "number_carriers",
        &[
            "knm_bandwidth2",
            "knm_bandwidth",
            "knm_inum",
            "knm_inventory",
            "knm_local",
            "knm_managed",
            "knm_mdn",
            "knm_other",
            "knm_reserved",
            "knm_reserved_reseller",
            "knm_simwood",
            "knm_telnyx",
            "knm_vitelity",
            "knm_voip_innovations",
            "knm_voxbone",
        ],
    ),
    ("number_services", &["cnam", "e911", "port", "sms", "mms"]),
    (
        "port_request",
        &[
            "canceled",
            "completed",
            "first_canceled",
            "first_completed",
            "first_pending",
            "first_rejected",
            "first_scheduled",
            "first_submitted",
            "first_unconfirmed",
            "pending",
            "rejected",
            "scheduled",
            "submitted",
            "unconfirmed",
        ],
    ),
    ("voicemails", &["mailbox", "transcription"]),
    ("faxes", &["mailbox"]),
];

/// The item-plan fields an override may set (`plans.md` §3), as JSON schemas.
fn item_plan_fields() -> Map<String, Value> {
    let tiers = json!({"type": "object", "patternProperties": {"^[0-9]+$": {"type": "number"}}});
    let discount = json!({"type": "object", "properties": {
        "rate": {"type": "number"}, "rates": tiers, "minimum": {"type": "integer"}, "maximum": {"type": "integer"}}});
    let fields = json!({
        "rate": {"type": "number", "description": "per-unit price"},
        "rates": {"type": "object", "description": "tiered per-unit price by quantity", "patternProperties": {"^[0-9]+$": {"type": "number"}}},
        "flat_rate": {"type": "number", "description": "bill once at this price"},
        "flat_rates": {"type": "object", "description": "tiered fixed price by quantity", "patternProperties": {"^[0-9]+$": {"type": "number"}}},
        "minimum": {"type": "integer", "description": "floor of the billable quantity"},
        "maximum": {"type": "integer", "description": "ceiling of the billable quantity"},
        "step": {"type": "integer", "minimum": 1, "description": "billable quantities are multiples of this"},
        "cascade": {"type": "boolean", "description": "count the account and all its descendants"},
        "activation_charge": {"type": "number", "description": "one-time charge per added unit"},
        "name": {"type": "string", "description": "display name in invoices"},
        "as": {"type": "string", "description": "output item name"},
        "exceptions": {"type": "array", "items": {"type": "string"}, "description": "items left out of `_all`"},
        "discounts": {"type": "object", "properties": {"single": discount, "cumulative": discount}},
        "prorate": {"type": "object", "properties": {"additions": {"type": "boolean"}, "removals": {"type": "boolean"}}},
        "enabled": {"type": "boolean"},
    });
    match fields {
        Value::Object(fields) => fields,
        _ => Map::new(),
    }
}

/// Gregorian seconds of the first second of the month after `now` (UTC).
fn next_month(now: GregorianSeconds) -> i64 {
    let Some(day) = now.day() else {
        return now.0;
    };
    let (year, month) = if day.month() == 12 {
        (day.year() + 1, 1)
    } else {
        (day.year(), day.month() + 1)
    };
    NaiveDate::from_ymd_opt(year, month, 1)
        .and_then(|first| first.and_hms_opt(0, 0, 0))
        .map(|midnight| GregorianSeconds::from_utc(midnight.and_utc()).0)
        .unwrap_or(now.0)
}

fn listing(plan: &CatalogPlan, details: bool) -> Value {
    if details {
        return public_plan(plan);
    }
    json!({
        "id": plan.plan_id,
        "name": plan.name,
        "description": plan.description,
        "category": plan.category,
    })
}

/// A plan document's public fields (no `_*`, no `pvt_*`) and its `id`.
pub(super) fn public_plan(plan: &CatalogPlan) -> Value {
    let mut public = Map::new();
    public.insert("id".to_owned(), Value::String(plan.plan_id.clone()));
    if let Value::Object(document) = &plan.document {
        for (key, value) in document {
            if !key.starts_with('_') && !key.starts_with("pvt_") {
                public.insert(key.clone(), value.clone());
            }
        }
    }
    Value::Object(public)
}

fn document_json(map: &DocumentMap) -> Value {
    serde_json::to_value(Document::Map(map)).unwrap_or_else(|_| json!({}))
}

/// Members of the merged documents unioned (`plans.md` §9: applications, im).
fn union_member(merged: &[crate::domain::pricing::MergedPlan], member: &str) -> Value {
    let mut union = Map::new();
    for plan in merged {
        if let Some(crate::domain::document::Value::Object(map)) = plan.document.get(member) {
            if let Value::Object(entries) = document_json(map) {
                union.extend(entries);
            }
        }
    }
    Value::Object(union)
}

fn ratedeck(merged: &[crate::domain::pricing::MergedPlan]) -> Value {
    for plan in merged {
        if let Some(crate::domain::document::Value::Object(map)) = plan.document.get("ratedeck") {
            let mut deck = Map::new();
            for key in ["id", "name"] {
                if let Some(crate::domain::document::Value::String(text)) = map.get(key) {
                    deck.insert(key.to_owned(), Value::String(text.clone()));
                }
            }
            return Value::Object(deck);
        }
    }
    json!({})
}

/// An account's record with different plans and overrides, for a quote.
struct Hypothesis {
    stored: StoredAccount,
    /// Plan ids asked for that no vendor has (Q-API-9: ignored, listed as warnings).
    unknown: Vec<String>,
}

impl Operations {
    /// What repricing reads about an account (its stored record).
    async fn stored_account(&self, account: &AccountId) -> Result<StoredAccount, OpsError> {
        let (mut readable, unreadable) = self.store().pricing_inputs(std::slice::from_ref(account)).await?;
        if let Some(problem) = unreadable.into_iter().next() {
            return Err(OpsError::Fault(format!(
                "account {}: {}",
                problem.account, problem.problem
            )));
        }
        readable.pop().ok_or_else(|| OpsError::BadIdentifier {
            cause: account.to_string(),
        })
    }

    /// Prices a stored (or hypothetical) account: its invoices, un-annotated, and
    /// its merged plans.
    fn price(
        &self,
        stored: &StoredAccount,
    ) -> Result<(Vec<Invoice>, Vec<crate::domain::pricing::MergedPlan>), OpsError> {
        let options = self.pricing_options(SyncScope::Accounts(Vec::new()));
        let pricing = account_pricing(stored, &options, &mut Vec::new());
        let merged = merge_account_plans(&pricing.context, &pricing.plans, &[], &options.priorities);
        let invoices = merged
            .iter()
            .map(|plan| price_invoice(plan, &pricing.quantities))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|error| OpsError::Fault(format!("account {}: {error}", stored.account)))?;
        Ok((invoices, merged))
    }

    /// The summary of `api.md` §2.17 for a stored or hypothetical record.
    async fn summary_of(
        &self,
        node: Option<&AccountNode>,
        stored: &StoredAccount,
        invoices: Vec<Value>,
        merged: &[crate::domain::pricing::MergedPlan],
        plans: Value,
        overrides: Value,
    ) -> Result<Value, OpsError> {
        let limits = match node {
            Some(node) => self.store().account_limits(&node.id).await?,
            None => None,
        };
        let (is_reseller, standing) = match node {
            Some(node) => (node.is_reseller, self.store().standing(&node.id).await?),
            None => (false, None),
        };
        let status = match (&standing, merged.is_empty()) {
            (_, true) => json!({"acceptable": true, "reason": "no service plans assigned"}),
            (Some(standing), false) if !standing.in_good_standing() => json!({
                "acceptable": false,
                "reason": standing.reason.clone().unwrap_or_else(|| standing.status.clone()),
                "message": "There is a billing issue with this account, please contact your sales representative.",
            }),
            _ => json!({"acceptable": true, "reason": format!("account {} is in good standing", stored.account)}),
        };
        Ok(json!({
            "plans": plans,
            "overrides": overrides,
            "invoices": invoices,
            "quantities": {
                "account": quantities_json(&stored.quantities.account),
                "cascade": quantities_json(&stored.quantities.cascade),
                "manual": quantities_json(&stored.quantities.manual),
            },
            "reseller": { "id": stored.reseller_id.as_str(), "is_reseller": is_reseller },
            "ratedeck": ratedeck(merged),
            "applications": union_member(merged, "applications"),
            "limits": limits.unwrap_or_else(|| json!({})),
            "im": union_member(merged, "im"),
            "payment_tokens": {},
            "billing_cycle": { "next": next_month(self.now()), "period": 1, "unit": "month" },
            "status": status,
        }))
    }

    /// `POST /services/quote` (account-less: super admin only): the summary of a
    /// hypothetical plan set, annotated against the account's current invoices;
    /// nothing is saved.
    pub async fn quote(&self, caller: &Caller, account: Option<&AccountId>, data: &Value) -> Result<Value, OpsError> {
        let node = match account {
            Some(account) => {
                let node = self.account(caller, account).await?;
                caller.check_access(&node)?;
                Some(node)
            }
            None => {
                caller.check_super_admin()?;
                None
            }
        };
        let data = input::object(data, "data")?;
        let (current_stored, current) = match &node {
            Some(node) => {
                let stored = self.stored_account(&node.id).await?;
                let (invoices, _) = self.price(&stored)?;
                (Some(stored), invoices)
            }
            None => (None, Vec::new()),
        };
        let base = match current_stored {
            Some(stored) => stored,
            None => self.empty_record().await?,
        };
        let hypothesis = self.hypothesis(base, node.as_ref(), data).await?;
        let (proposed, merged) = self.price(&hypothesis.stored)?;

        let mut annotated = Vec::new();
        for invoice in &proposed {
            let before = current.iter().find(|old| old.bookkeeper == invoice.bookkeeper);
            annotated.push(annotate(before, invoice).map_err(|error| OpsError::Fault(error.to_string()))?);
        }
        for gone in current
            .iter()
            .filter(|old| !proposed.iter().any(|new| new.bookkeeper == old.bookkeeper))
        {
            annotated.push(removed_invoice(gone).map_err(|error| OpsError::Fault(error.to_string()))?);
        }
        let plans = {
            let mut plans = Map::new();
            for assignment in &hypothesis.stored.assignments {
                plans.insert(
                    assignment.plan_id.to_string(),
                    json!({ "vendor_id": assignment.vendor_id.as_str(), "overrides": document_json(&assignment.overrides) }),
                );
            }
            Value::Object(plans)
        };
        let overrides = document_json(&hypothesis.stored.overrides);
        let invoices = annotated.iter().map(invoice_json).collect();
        let mut summary = self
            .summary_of(node.as_ref(), &hypothesis.stored, invoices, &merged, plans, overrides)
            .await?;
        if let Value::Object(summary) = &mut summary {
            let warnings: Vec<Value> = hypothesis
                .unknown
                .iter()
                .map(|plan| Value::String(format!("plan {plan} not found; ignored")))
                .collect();
            summary.insert("warnings".to_owned(), Value::Array(warnings));
        }
        Ok(summary)
    }

    /// A record with nothing, billed by the master (the account-less quote).
    async fn empty_record(&self) -> Result<StoredAccount, OpsError> {
        let master = self
            .store()
            .master_account()
            .await?
            .ok_or_else(|| OpsError::Fault("there is no master account".to_owned()))?;
        Ok(StoredAccount {
            account: master.clone(),
            name: String::new(),
            is_master: false,
            reseller_id: master,
            billed_by_master: true,
            bookkeeper: None,
            bookkeeper_text: String::new(),
            overrides: DocumentMap::new(),
            overrides_text: String::new(),
            assignments: Vec::new(),
            quantities: QuantityBuckets::default(),
            last_computed: Vec::new(),
            priced: false,
            marked_since: None,
            revision: 0,
        })
    }

    /// Replaces the record's plans by the quote's (`api.md` §2.13 step 2).
    async fn hypothesis(
        &self,
        mut stored: StoredAccount,
        node: Option<&AccountNode>,
        data: &Map<String, Value>,
    ) -> Result<Hypothesis, OpsError> {
        let reseller = match node {
            Some(node) => reseller_of(node),
            None => stored.reseller_id.to_string(),
        };
        let (field, list) = match (data.get("add"), data.get("plans")) {
            (Some(add), _) => ("add", add.clone()),
            (None, Some(plans)) => ("plans", plans.clone()),
            (None, None) => ("plans", json!([])),
        };
        let Value::Array(entries) = list else {
            return Err(OpsError::field(
                field,
                "type",
                "must be an array of plan ids or plan objects",
            ));
        };
        let deleted: Vec<String> = match data.get("delete") {
            Some(Value::Array(ids)) => ids.iter().filter_map(|id| id.as_str().map(str::to_owned)).collect(),
            None | Some(Value::Null) => Vec::new(),
            Some(_) => return Err(OpsError::field("delete", "type", "must be an array of plan ids")),
        };
        let mut assignments: Vec<StoredAssignment> = Vec::new();
        let mut unknown = Vec::new();
        for (index, entry) in entries.iter().enumerate() {
            let (id, vendor, overrides) = match entry {
                Value::String(id) => (id.clone(), reseller.clone(), None),
                Value::Object(object) => {
                    let Some(id) = object.get("id").and_then(Value::as_str) else {
                        return Err(OpsError::field(
                            format!("{field}.{index}.id"),
                            "required",
                            "Field is required but missing",
                        ));
                    };
                    let vendor = object
                        .get("vendor_id")
                        .and_then(Value::as_str)
                        .map_or_else(|| reseller.clone(), str::to_owned);
                    let overrides =
                        input::optional_object(object.get("overrides"), &format!("{field}.{index}.overrides"))?;
                    (id.to_owned(), vendor, overrides)
                }
                _ => {
                    return Err(OpsError::field(
                        format!("{field}.{index}"),
                        "type",
                        "must be a plan id or a plan object",
                    ))
                }
            };
            if deleted.contains(&id) {
                continue;
            }
            let (Ok(plan_id), Ok(vendor_id)) = (PlanId::parse(id.as_str()), AccountId::parse(vendor.as_str())) else {
                return Err(OpsError::field(
                    format!("{field}.{index}"),
                    "type",
                    "plan and vendor ids must not be empty",
                ));
            };
            let Some(plan) = self.store().catalog_plan(&vendor, &id).await? else {
                unknown.push(id);
                continue;
            };
            if let Some(overrides) = &overrides {
                input::check_overrides(overrides, &format!("{field}.{index}.overrides"))?;
            }
            let overrides = match overrides {
                Some(Value::Object(map)) => map,
                _ => Map::new(),
            };
            let document = match &plan.document {
                Value::Object(map) => map_from_json(map),
                _ => DocumentMap::new(),
            };
            assignments.push(StoredAssignment {
                plan_id,
                vendor_id,
                overrides_text: Value::Object(overrides.clone()).to_string(),
                overrides: map_from_json(&overrides),
                document: Some(std::sync::Arc::new(document)),
            });
        }
        if let Some(overrides) = input::optional_object(data.get("overrides"), "overrides")? {
            input::check_overrides(&overrides, "overrides")?;
            if let Value::Object(map) = overrides {
                let mode = match data.get("merge").and_then(Value::as_bool) {
                    Some(true) => WriteMode::Merge,
                    _ => WriteMode::Replace,
                };
                let old = serde_json::from_str::<Value>(&stored.overrides_text).unwrap_or_else(|_| json!({}));
                let combined = combine_global_overrides(&old, map, mode);
                stored.overrides_text = combined.to_string();
                stored.overrides = match &combined {
                    Value::Object(combined) => map_from_json(combined),
                    _ => DocumentMap::new(),
                };
            }
        }
        stored.assignments = assignments;
        Ok(Hypothesis { stored, unknown })
    }

    /// `GET /services/summary`.
    pub async fn services_summary(&self, caller: &Caller, account: &AccountId) -> Result<Value, OpsError> {
        let node = self.account(caller, account).await?;
        caller.check_access(&node)?;
        let stored = self.stored_account(account).await?;
        let (invoices, merged) = self.price(&stored)?;
        let record = self.store().services_record(account).await?;
        let invoices = invoices.iter().map(invoice_json).collect();
        self.summary_of(
            Some(&node),
            &stored,
            invoices,
            &merged,
            plans_map(&record),
            record.overrides,
        )
        .await
    }

    /// `GET /services/explain` and `tally services explain`: every line of the
    /// account's invoices with how it was reached (issue 15), from one account's reads
    /// and the pricing code sync runs. `item` (`category.item`, the plan key or its
    /// `as` name) keeps only that line.
    pub async fn explain(&self, caller: &Caller, account: &AccountId, item: Option<&str>) -> Result<Value, OpsError> {
        let node = self.account(caller, account).await?;
        caller.check_access(&node)?;
        let wanted = item.map(parse_item_filter).transpose()?;
        let stored = self.stored_account(account).await?;
        let options = self.pricing_options(SyncScope::Accounts(Vec::new()));
        let pricing = account_pricing(&stored, &options, &mut Vec::new());
        let mut invoices = explain_account(
            &pricing.context,
            &pricing.plans,
            &pricing.quantities,
            &options.priorities,
        )
        .map_err(|error| OpsError::Fault(format!("account {account}: {error}")))?;
        if let Some((category, name)) = &wanted {
            for invoice in &mut invoices {
                invoice.lines.retain(|line| {
                    line.item.category.as_str() == category
                        && (line.item.plan_item.as_str() == name || line.item.item == *name)
                });
            }
            invoices.retain(|invoice| !invoice.lines.is_empty());
            if invoices.is_empty() {
                return Err(OpsError::field(
                    "item",
                    "not_found",
                    format!("no invoice line of the account is {category}.{name}"),
                ));
            }
        }
        Ok(json!({
            "account_id": account.as_str(),
            "invoices": explanation_json(&invoices),
        }))
    }

    /// `GET /services/available` and `/service_plans/available`: the plans the
    /// account's reseller offers.
    pub async fn available_plans(
        &self,
        caller: &Caller,
        account: &AccountId,
        query: &ListQuery,
    ) -> Result<Page, OpsError> {
        let node = self.account(caller, account).await?;
        caller.check_access(&node)?;
        self.plan_page(&reseller_of(&node), query).await
    }

    /// A page of a vendor's catalog.
    pub(super) async fn plan_page(&self, vendor: &str, query: &ListQuery) -> Result<Page, OpsError> {
        let page_size = query
            .paginate
            .then(|| query.page_size.unwrap_or(super::audit::DEFAULT_PAGE_SIZE).max(1));
        let start = query.start_key.as_deref().filter(|_| query.paginate);
        let mut plans = self
            .store()
            .catalog_plans(vendor, start, page_size.map(|size| size + 1))
            .await?;
        let next = match page_size {
            Some(size) if plans.len() > size => plans.pop().map(|plan| plan.plan_id),
            _ => None,
        };
        let rows: Vec<Value> = plans.iter().map(|plan| listing(plan, query.details)).collect();
        Ok(Page {
            page_size: page_size.map(|_| rows.len()),
            rows,
            start_key: start.map(str::to_owned),
            next_start_key: next,
        })
    }

    /// `GET /services/editable` (account-less: any authenticated caller): what an
    /// override may change, per category and item (`plans.md` §10).
    pub async fn editable(&self, caller: &Caller, account: Option<&AccountId>) -> Result<Value, OpsError> {
        let reseller = match account {
            Some(account) => {
                let node = self.account(caller, account).await?;
                caller.check_access(&node)?;
                if node.is_reseller || node.is_master {
                    node.id.clone()
                } else {
                    AccountId::parse(reseller_of(&node)).map_err(|error| OpsError::Fault(error.to_string()))?
                }
            }
            None => self
                .store()
                .master_account()
                .await?
                .ok_or_else(|| OpsError::Fault("there is no master account".to_owned()))?,
        };
        let apps = self.store().app_names(&reseller).await?;
        let all = item_plan_fields();
        let mut item = all.clone();
        item.remove("as");
        let mut editable = Map::new();
        let mut add = |category: &str, items: &mut dyn Iterator<Item = &str>| {
            let mut fields = Map::new();
            fields.insert("_all".to_owned(), Value::Object(all.clone()));
            for name in items {
                fields.insert(name.to_owned(), Value::Object(item.clone()));
            }
            editable.insert(category.to_owned(), Value::Object(fields));
        };
        for (category, items) in EDITABLE_CATEGORIES {
            add(category, &mut items.iter().copied());
        }
        for category in ["account_apps", "user_apps"] {
            add(category, &mut apps.iter().map(String::as_str));
        }
        Ok(Value::Object(editable))
    }
}
