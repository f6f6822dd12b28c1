//! Manual top-up (`api.md` §2.16, `sync-and-bookkeepers.md` §10).

use super::{Caller, Operations, OpsError};
use crate::domain::AccountId;
use serde_json::Value;

impl Operations {
    /// `POST /services/topup` `{amount}` (dollars, number or numeric string): credit
    /// the account's ledger through its bookkeeper. Returns `{ledger, transaction?}`.
    pub async fn topup(&self, caller: &Caller, account: &AccountId, data: &Value) -> Result<Value, OpsError> {
        let _ = (caller, account, data);
        Err(OpsError::Fault("not built yet".to_owned()))
    }
}
