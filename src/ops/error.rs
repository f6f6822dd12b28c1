//! What an operation can refuse, by what the caller can do about it (`api.md` §1.2).
//! The HTTP API maps each to its status and Kazoo's error shape; the command line to
//! an exit code and one line naming the failing field.

use crate::store::StoreError;

/// One failing input field: `data.<field>: {<rule>: {message, cause?}}` in the API.
#[derive(Debug, Clone, PartialEq)]
pub struct FieldError {
    /// The field's path inside `data`, dotted (`amount`, `devices.sip_device`).
    pub field: String,
    /// The rule it broke (`required`, `type`, `minimum`, `date_range`, `invalid`, ...).
    pub rule: String,
    pub message: String,
    pub cause: Option<serde_json::Value>,
}

impl FieldError {
    pub fn new(field: impl Into<String>, rule: &str, message: impl Into<String>) -> FieldError {
        FieldError {
            field: field.into(),
            rule: rule.to_owned(),
            message: message.into(),
            cause: None,
        }
    }

    pub fn with_cause(mut self, cause: serde_json::Value) -> FieldError {
        self.cause = Some(cause);
        self
    }
}

#[derive(Debug, thiserror::Error)]
pub enum OpsError {
    /// Outside the caller's tree, or a reseller-only or super-admin operation (403).
    #[error("forbidden")]
    Forbidden,
    /// An unknown account, plan or audit log (404).
    #[error("bad identifier: {cause}")]
    BadIdentifier { cause: String },
    /// Bad input (400), with the failing field.
    #[error("validation error: {}", describe(.0))]
    Validation(Vec<FieldError>),
    /// Unassigning a plan the account does not have (400; Kazoo answers 500, Q-API-2).
    #[error("plan_is_not_assigned: {plan}")]
    PlanNotAssigned { plan: String },
    /// A billing id that is neither the account nor its parent (400).
    #[error("invalid_billing_id: {reason}")]
    InvalidBillingId { reason: String },
    /// The bookkeeper has no payment method for the account (402).
    #[error("no payment method available")]
    NoPaymentToken,
    /// A sale that did not complete (500 with the bookkeeper's reason).
    #[error("top-up not completed: {}", .reason.as_deref().unwrap_or("unspecified fault"))]
    SaleNotCompleted {
        reason: Option<String>,
        transaction: serde_json::Value,
    },
    /// Anything else (500).
    #[error("unspecified fault: {0}")]
    Fault(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

fn describe(fields: &[FieldError]) -> String {
    fields
        .iter()
        .map(|field| format!("{}: {}", field.field, field.message))
        .collect::<Vec<_>>()
        .join("; ")
}

impl OpsError {
    /// A single-field validation error.
    pub fn field(field: impl Into<String>, rule: &str, message: impl Into<String>) -> OpsError {
        OpsError::Validation(vec![FieldError::new(field, rule, message)])
    }

    /// The HTTP status of this refusal.
    pub fn http_status(&self) -> u16 {
        match self {
            OpsError::Forbidden => 403,
            OpsError::BadIdentifier { .. } => 404,
            OpsError::Validation(_) | OpsError::PlanNotAssigned { .. } | OpsError::InvalidBillingId { .. } => 400,
            OpsError::NoPaymentToken => 402,
            OpsError::SaleNotCompleted { .. } | OpsError::Fault(_) | OpsError::Store(_) => 500,
        }
    }

    /// Kazoo's `message` member. For Kazoo's system errors it is the error's code
    /// (`bad_identifier`, `unspecified_fault`: `cb_context:build_system_error` answers
    /// the atom), and the readable text goes into `data.message` ([`OpsError::data`]);
    /// a validation error is `validation error`.
    pub fn message(&self) -> String {
        match self {
            OpsError::Forbidden => "forbidden".to_owned(),
            OpsError::BadIdentifier { .. } => "bad_identifier".to_owned(),
            OpsError::Validation(_) => "validation error".to_owned(),
            OpsError::PlanNotAssigned { .. } => "plan_is_not_assigned".to_owned(),
            OpsError::InvalidBillingId { .. } => "invalid_billing_id".to_owned(),
            OpsError::NoPaymentToken => "no payment method available".to_owned(),
            OpsError::SaleNotCompleted { reason, .. } => {
                reason.clone().unwrap_or_else(|| "unspecified_fault".to_owned())
            }
            OpsError::Fault(_) | OpsError::Store(_) => "unspecified_fault".to_owned(),
        }
    }

    /// Kazoo's error `data` member.
    pub fn data(&self) -> serde_json::Value {
        use serde_json::{json, Map, Value};
        match self {
            OpsError::BadIdentifier { cause } => json!({ "cause": cause, "message": "bad identifier" }),
            OpsError::Validation(fields) => {
                let mut data = Map::new();
                for field in fields {
                    let mut rule = Map::new();
                    rule.insert("message".to_owned(), Value::String(field.message.clone()));
                    if let Some(cause) = &field.cause {
                        rule.insert("cause".to_owned(), cause.clone());
                    }
                    let entry = data
                        .entry(field.field.clone())
                        .or_insert_with(|| Value::Object(Map::new()));
                    if let Value::Object(rules) = entry {
                        rules.insert(field.rule.clone(), Value::Object(rule));
                    }
                }
                Value::Object(data)
            }
            OpsError::PlanNotAssigned { plan } => json!({ "cause": plan }),
            OpsError::InvalidBillingId { reason } => json!({ "billing_id": { "invalid": reason } }),
            OpsError::SaleNotCompleted { transaction, .. } => transaction.clone(),
            OpsError::Forbidden => json!({ "message": "forbidden" }),
            OpsError::Fault(_) | OpsError::Store(_) => json!({ "message": "unspecified fault" }),
            OpsError::NoPaymentToken => json!({}),
        }
    }
}
