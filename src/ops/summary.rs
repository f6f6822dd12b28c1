//! Read-only views of billing: the summary, quotes, plans on offer, editable fields
//! (`api.md` §2.13, §2.17-§2.19).

use super::{Caller, ListQuery, Operations, OpsError, Page};
use crate::domain::AccountId;
use serde_json::Value;

impl Operations {
    /// `POST /services/quote` (account-less: super admin only): the summary of a
    /// hypothetical plan set; nothing is saved.
    pub async fn quote(&self, caller: &Caller, account: Option<&AccountId>, data: &Value) -> Result<Value, OpsError> {
        let _ = (caller, account, data);
        Err(OpsError::Fault("not built yet".to_owned()))
    }

    /// `GET /services/summary`.
    pub async fn services_summary(&self, caller: &Caller, account: &AccountId) -> Result<Value, OpsError> {
        let _ = (caller, account);
        Err(OpsError::Fault("not built yet".to_owned()))
    }

    /// `GET /services/available` and `/service_plans/available`: the plans the
    /// account's reseller offers.
    pub async fn available_plans(
        &self,
        caller: &Caller,
        account: &AccountId,
        query: &ListQuery,
    ) -> Result<Page, OpsError> {
        let _ = (caller, account, query);
        Err(OpsError::Fault("not built yet".to_owned()))
    }

    /// `GET /services/editable` (account-less: any authenticated caller).
    pub async fn editable(&self, caller: &Caller, account: Option<&AccountId>) -> Result<Value, OpsError> {
        let _ = (caller, account);
        Err(OpsError::Fault("not built yet".to_owned()))
    }
}
