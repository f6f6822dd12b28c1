//! Manual top-up (`api.md` §2.16, `sync-and-bookkeepers.md` §10).
//!
//! Who asked is kept on the ledger and transaction rows (`audit`, the caller's audit
//! object): the invoice-shaped audit logs do not fit a sale.

use super::{Caller, Operations, OpsError};
use crate::bookkeepers::sale::NO_PAYMENT_TOKEN;
use crate::domain::topup::{dollars_to_units, parse_dollars, units_to_dollars, Trigger};
use crate::domain::AccountId;
use crate::jobs::topup::{bookkeeper_type, top_up, TopupRequest, TopupResult};
use crate::store::{LedgerRow, TransactionRow};
use crate::wire::document::Amount;
use serde_json::{json, Value};

impl Operations {
    /// `POST /services/topup` `{amount}` (dollars, number or numeric string): credit
    /// the account's ledger through its bookkeeper. Returns `{ledger, transaction?}`.
    pub async fn topup(&self, caller: &Caller, account: &AccountId, data: &Value) -> Result<Value, OpsError> {
        let node = self.account(caller, account).await?;
        caller.check_access(&node)?;
        let units = amount_units(data)?;
        let now = self.now();
        let (mut accounts, unreadable) = self
            .store()
            .topup_accounts(Some(std::slice::from_ref(account)), now)
            .await?;
        if let Some(problem) = unreadable.into_iter().next() {
            return Err(OpsError::Fault(problem.problem));
        }
        let Some(stored) = accounts.pop() else {
            return Err(OpsError::BadIdentifier {
                cause: account.to_string(),
            });
        };
        let settings = &self.context().settings;
        let request = TopupRequest {
            account: account.clone(),
            units,
            trigger: Trigger::Manual,
            bookkeeper: bookkeeper_type(&stored, &settings.services.master_account_bookkeeper),
            audit: Some(caller.audit.clone()),
            now,
        };
        match top_up(self.store(), &self.context().bookkeepers, &request).await? {
            TopupResult::Credited { ledger, transaction } => {
                let mut result = json!({ "ledger": ledger_json(&ledger) });
                if let Some(transaction) = transaction {
                    result["transaction"] = transaction_json(&transaction);
                }
                Ok(result)
            }
            TopupResult::NotCompleted { transaction } => match transaction.reason.as_deref() {
                Some(NO_PAYMENT_TOKEN) => Err(OpsError::NoPaymentToken),
                reason => Err(OpsError::SaleNotCompleted {
                    reason: reason.map(str::to_owned),
                    transaction: transaction_json(&transaction),
                }),
            },
        }
    }
}

/// `data.amount` in units; missing, unreadable or not above zero is the one
/// validation error of `api.md` §2.16.
fn amount_units(data: &Value) -> Result<i64, OpsError> {
    let missing = || OpsError::field("amount", "required", "Field is required but missing");
    let text = match data.get("amount") {
        Some(Value::Number(number)) => number.to_string(),
        Some(Value::String(text)) => text.clone(),
        _ => return Err(missing()),
    };
    let dollars = parse_dollars(&text).map_err(|_| missing())?;
    match dollars_to_units(dollars) {
        Some(units) if units > 0 => Ok(units),
        _ => Err(missing()),
    }
}

/// A ledger row as the API shows it: amounts in dollars (exact) and in units.
pub fn ledger_json(ledger: &LedgerRow) -> Value {
    let mut shown = json!({
        "id": ledger.id,
        "account_id": ledger.account.as_str(),
        "amount": Amount(units_to_dollars(ledger.amount_units)),
        "amount_units": ledger.amount_units,
        "description": ledger.description,
        "source": { "service": ledger.source_service, "id": ledger.source_id },
        "created": ledger.created_at.0,
        "metadata": ledger.metadata,
    });
    if let Some(trigger) = &ledger.trigger {
        shown["executor"] = json!({ "trigger": trigger, "module": "topup" });
    }
    if let Some(transaction) = &ledger.transaction_id {
        shown["transaction_id"] = json!(transaction);
    }
    shown
}

/// A transaction as the API shows it.
pub fn transaction_json(transaction: &TransactionRow) -> Value {
    let mut shown = json!({
        "id": transaction.id,
        "account_id": transaction.account.as_str(),
        "amount": Amount(units_to_dollars(transaction.amount_units)),
        "amount_units": transaction.amount_units,
        "description": transaction.description,
        "executor": { "trigger": transaction.trigger, "module": "topup" },
        "status": transaction.status.as_str(),
        "bookkeeper_type": transaction.bookkeeper_type,
        "created": transaction.created_at.0,
        "metadata": transaction.metadata,
    });
    if let Some(reason) = &transaction.reason {
        shown["reason"] = json!(reason);
    }
    if let Some(message) = &transaction.message {
        shown["message"] = json!(message);
    }
    shown
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(error: OpsError) -> (String, String, String) {
        match error {
            OpsError::Validation(fields) => (
                fields[0].field.clone(),
                fields[0].rule.clone(),
                fields[0].message.clone(),
            ),
            other => panic!("expected a validation error, got {other:?}"),
        }
    }

    #[test]
    fn amounts_are_numbers_or_numeric_strings_above_zero() {
        let number: Value = serde_json::from_str(r#"{"amount": 10.00005}"#).expect("json");
        assert_eq!(amount_units(&number).ok(), Some(100_001));
        assert_eq!(amount_units(&json!({"amount": "2.5"})).ok(), Some(25_000));
        for bad in [
            json!({}),
            json!({"amount": "0"}),
            json!({"amount": "-1"}),
            json!({"amount": "abc"}),
            json!({"amount": null}),
            json!({"amount": true}),
            json!({"amount": "0.00004"}),
        ] {
            let (field, rule, message) = rule(amount_units(&bad).expect_err("refused"));
            assert_eq!(
                (field.as_str(), rule.as_str(), message.as_str()),
                ("amount", "required", "Field is required but missing"),
                "{bad}"
            );
        }
    }
}
