//! Manual top-up (`api.md` §2.16, `sync-and-bookkeepers.md` §10).
//!
//! Who asked is kept on the ledger and transaction rows (`audit`, the caller's audit
//! object): the invoice-shaped audit logs do not fit a sale.

use super::{Caller, FieldError, Operations, OpsError};
use crate::bookkeepers::sale::NO_PAYMENT_TOKEN;
use crate::domain::topup::{dollars_to_units, parse_dollars, units_to_dollars, Trigger};
use crate::domain::{AccountId, Money};
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

/// `data.amount` in units, refused at the door naming `amount` (`api.md` §2.16):
/// missing is Kazoo's `required`; text that is no number is `type`; an amount that
/// credits nothing (zero, negative, or below one unit once rounded) is `minimum`; one
/// beyond the largest amount tally stores is `maximum`, since no ledger could hold it.
fn amount_units(data: &Value) -> Result<i64, OpsError> {
    let text = match data.get("amount") {
        None | Some(Value::Null) => return Err(OpsError::field("amount", "required", "Field is required but missing")),
        Some(Value::Number(number)) => number.to_string(),
        Some(Value::String(text)) => text.trim().to_owned(),
        Some(_) => return Err(not_a_number()),
    };
    let dollars = match parse_dollars(&text) {
        Ok(dollars) => dollars,
        // A JSON number too large (or too precise) for a decimal is out of range.
        Err(_) if crate::domain::document::Number::parse(&text).is_some() => return Err(too_large()),
        Err(_) => return Err(not_a_number()),
    };
    if !dollars.is_sign_positive() || dollars.is_zero() {
        return Err(OpsError::Validation(vec![FieldError::new(
            "amount",
            "minimum",
            "must be more than 0 dollars",
        )
        .with_cause(json!(0))]));
    }
    match dollars_to_units(dollars) {
        Some(units) if units > 0 => Ok(units),
        Some(_) => Err(OpsError::Validation(vec![FieldError::new(
            "amount",
            "minimum",
            "must be at least one unit (0.0001 dollars)",
        )
        .with_cause(json!(Amount(Money::from_units(1))))])),
        None => Err(too_large()),
    }
}

fn not_a_number() -> OpsError {
    OpsError::field(
        "amount",
        "type",
        "must be an amount in dollars (a number or a numeric string)",
    )
}

fn too_large() -> OpsError {
    OpsError::Validation(vec![FieldError::new(
        "amount",
        "maximum",
        format!("must be at most {} dollars", Money::LARGEST_STORED),
    )
    .with_cause(json!(Amount(Money::LARGEST_STORED)))])
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
    fn amounts_are_numbers_or_numeric_strings_above_zero_and_within_range() {
        let number: Value = serde_json::from_str(r#"{"amount": 10.00005}"#).expect("json");
        assert_eq!(amount_units(&number).ok(), Some(100_001));
        assert_eq!(amount_units(&json!({"amount": "2.5"})).ok(), Some(25_000));
        assert_eq!(
            amount_units(&json!({"amount": "922337203685477.5807"})).ok(),
            Some(i64::MAX)
        );
        let huge: Value = serde_json::from_str(r#"{"amount": 1e40}"#).expect("json");
        let table = [
            (json!({}), "required"),
            (json!({"amount": null}), "required"),
            (json!({"amount": "abc"}), "type"),
            (json!({"amount": true}), "type"),
            (json!({"amount": "0"}), "minimum"),
            (json!({"amount": 0}), "minimum"),
            (json!({"amount": "-1"}), "minimum"),
            (json!({"amount": -0.5}), "minimum"),
            (json!({"amount": "0.00004"}), "minimum"),
            (json!({"amount": "922337203685477.5808"}), "maximum"),
            (json!({"amount": "1e20"}), "maximum"),
            (huge, "maximum"),
        ];
        for (bad, expected) in table {
            let (field, rule, _) = rule(amount_units(&bad).expect_err("refused"));
            assert_eq!((field.as_str(), rule.as_str()), ("amount", expected), "{bad}");
        }
    }
}
