//! The legacy service_plans API over our model (`api.md` §3), and plan import.

use super::{Caller, ListQuery, Operations, OpsError, Page};
use crate::domain::AccountId;
use serde_json::Value;

/// What `tally plans import` did.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct ImportReport {
    pub created: Vec<String>,
    pub updated: Vec<String>,
    pub unchanged: Vec<String>,
}

impl Operations {
    /// `GET /service_plans`: plans stored by the account itself (as vendor).
    pub async fn vendor_plans(
        &self,
        caller: &Caller,
        account: &AccountId,
        query: &ListQuery,
    ) -> Result<Page, OpsError> {
        let _ = (caller, account, query);
        Err(OpsError::Fault("not built yet".to_owned()))
    }

    /// `GET /service_plans/{PLAN_ID}`: a plan the account stores.
    pub async fn vendor_plan(&self, caller: &Caller, account: &AccountId, plan: &str) -> Result<Value, OpsError> {
        let _ = (caller, account, plan);
        Err(OpsError::Fault("not built yet".to_owned()))
    }

    /// `GET /service_plans/available/{PLAN_ID}`: a plan the account's reseller offers.
    pub async fn available_plan(&self, caller: &Caller, account: &AccountId, plan: &str) -> Result<Value, OpsError> {
        let _ = (caller, account, plan);
        Err(OpsError::Fault("not built yet".to_owned()))
    }

    /// `POST /service_plans` `{add, delete}`: returns the merged plan.
    pub async fn update_service_plans(
        &self,
        caller: &Caller,
        account: &AccountId,
        data: &Value,
    ) -> Result<Value, OpsError> {
        let _ = (caller, account, data);
        Err(OpsError::Fault("not built yet".to_owned()))
    }

    /// `POST /service_plans/{PLAN_ID}`: returns the merged plan.
    pub async fn add_service_plan(&self, caller: &Caller, account: &AccountId, plan: &str) -> Result<Value, OpsError> {
        let _ = (caller, account, plan);
        Err(OpsError::Fault("not built yet".to_owned()))
    }

    /// `DELETE /service_plans/{PLAN_ID}`: returns the merged plan.
    pub async fn remove_service_plan(
        &self,
        caller: &Caller,
        account: &AccountId,
        plan: &str,
    ) -> Result<Value, OpsError> {
        let _ = (caller, account, plan);
        Err(OpsError::Fault("not built yet".to_owned()))
    }

    /// `POST /service_plans/override` (super admin): `{overrides: {plan: partial plan}}`
    /// replaces the overrides of every assigned plan. Returns the `plans` map.
    pub async fn override_service_plans(
        &self,
        caller: &Caller,
        account: &AccountId,
        data: &Value,
    ) -> Result<Value, OpsError> {
        let _ = (caller, account, data);
        Err(OpsError::Fault("not built yet".to_owned()))
    }

    /// `GET /service_plans/current`: the legacy "current services" view.
    pub async fn current_services(&self, caller: &Caller, account: &AccountId) -> Result<Value, OpsError> {
        let _ = (caller, account);
        Err(OpsError::Fault("not built yet".to_owned()))
    }

    /// Loads plan documents into a vendor's catalog (`tally plans import`): `documents`
    /// is one plan document with an `id`/`_id`, or an array of them.
    pub async fn import_plans(
        &self,
        caller: &Caller,
        vendor: &AccountId,
        documents: &Value,
    ) -> Result<ImportReport, OpsError> {
        let _ = (caller, vendor, documents);
        Err(OpsError::Fault("not built yet".to_owned()))
    }
}
