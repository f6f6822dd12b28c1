//! The services record of one account: plans, overrides, manual quantities, standing,
//! billing id; and the reconciliation and synchronisation of one account
//! (`api.md` §2.2-§2.15).

use super::{Caller, Operations, OpsError, WriteMode};
use crate::domain::AccountId;
use serde_json::Value;

fn not_built() -> OpsError {
    OpsError::Fault("not built yet".to_owned())
}

impl Operations {
    /// `GET /services`: the `plans` map, in assignment order.
    pub async fn services_plans(&self, caller: &Caller, account: &AccountId) -> Result<Value, OpsError> {
        let _ = (caller, account);
        Err(not_built())
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
        let _ = (caller, account, data, mode);
        Err(not_built())
    }

    /// Legacy `GET /services/status`.
    pub async fn services_status(&self, caller: &Caller, account: &AccountId) -> Result<Value, OpsError> {
        let _ = (caller, account);
        Err(not_built())
    }

    /// Legacy `POST /services/status` (super admin): `{in_good_standing, reason?, reason_code?}`.
    pub async fn set_services_status(
        &self,
        caller: &Caller,
        account: &AccountId,
        data: &Value,
    ) -> Result<Value, OpsError> {
        let _ = (caller, account, data);
        Err(not_built())
    }

    /// Sets the legacy billing id (`sync-and-bookkeepers.md` §8): the account itself or
    /// its direct parent. Returns `{billing_id}`.
    pub async fn set_billing_id(
        &self,
        caller: &Caller,
        account: &AccountId,
        billing_id: &str,
    ) -> Result<Value, OpsError> {
        let _ = (caller, account, billing_id);
        Err(not_built())
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
        let _ = (caller, account, plan, data, mode);
        Err(not_built())
    }

    /// `DELETE /services/{PLAN_ID}`.
    pub async fn unassign_plan(&self, caller: &Caller, account: &AccountId, plan: &str) -> Result<Value, OpsError> {
        let _ = (caller, account, plan);
        Err(not_built())
    }

    /// `GET /services/manual`.
    pub async fn manual_quantities(&self, caller: &Caller, account: &AccountId) -> Result<Value, OpsError> {
        let _ = (caller, account);
        Err(not_built())
    }

    /// `POST`/`PATCH /services/manual`.
    pub async fn set_manual_quantities(
        &self,
        caller: &Caller,
        account: &AccountId,
        data: &Value,
        mode: WriteMode,
    ) -> Result<Value, OpsError> {
        let _ = (caller, account, data, mode);
        Err(not_built())
    }

    /// `GET /services/overrides`.
    pub async fn overrides(&self, caller: &Caller, account: &AccountId) -> Result<Value, OpsError> {
        let _ = (caller, account);
        Err(not_built())
    }

    /// `POST`/`PATCH /services/overrides`.
    pub async fn set_overrides(
        &self,
        caller: &Caller,
        account: &AccountId,
        data: &Value,
        mode: WriteMode,
    ) -> Result<Value, OpsError> {
        let _ = (caller, account, data, mode);
        Err(not_built())
    }

    /// `POST /services/reconciliation`: recount and reprice this account now. Returns `{}`.
    pub async fn reconcile_account(&self, caller: &Caller, account: &AccountId) -> Result<Value, OpsError> {
        let _ = (caller, account);
        Err(not_built())
    }

    /// `POST /services/synchronization`: recount, reprice and deliver every invoice of
    /// this account now. Returns `{}`.
    pub async fn synchronize_account(&self, caller: &Caller, account: &AccountId) -> Result<Value, OpsError> {
        let _ = (caller, account);
        Err(not_built())
    }
}
