//! Audit logs and day summaries (`audit-and-summaries.md` §5, §6; `api.md` §2.6-§2.8).

use super::{Caller, ListQuery, Operations, OpsError, Page};
use crate::domain::AccountId;
use serde_json::Value;

impl Operations {
    /// `GET /services/audit`: `{id, status, reason?, message?, type?, summary}` rows,
    /// newest first, paged.
    pub async fn audit_logs(&self, caller: &Caller, account: &AccountId, query: &ListQuery) -> Result<Page, OpsError> {
        let _ = (caller, account, query);
        Err(OpsError::Fault("not built yet".to_owned()))
    }

    /// `GET /services/audit/{AUDIT_ID}`: the audit log's public fields and `id`.
    pub async fn audit_log(&self, caller: &Caller, account: &AccountId, audit_id: &str) -> Result<Value, OpsError> {
        let _ = (caller, account, audit_id);
        Err(OpsError::Fault("not built yet".to_owned()))
    }

    /// `GET /services/audit/summary[/{SOURCE}]`: day summaries over whole UTC days.
    pub async fn audit_summary(
        &self,
        caller: &Caller,
        account: &AccountId,
        query: &ListQuery,
        source: Option<&str>,
    ) -> Result<Value, OpsError> {
        let _ = (caller, account, query, source);
        Err(OpsError::Fault("not built yet".to_owned()))
    }
}
