//! Sales (`sync-and-bookkeepers.md` §5.1 `sale`): asking a bookkeeper to charge a
//! top-up transaction.
//!
//! `default` cannot sell (Kazoo's `invalid_bookkeeper`): the caller credits the ledger
//! directly. `http` sells when `sale_url` is configured: `POST <sale_url>` with
//! `{"account_id", "transaction": {"id", "amount", "amount_units", "description",
//! "trigger"}}` (amount in dollars, exact) and the headers `Content-Type`,
//! `X-Account-ID`, `Idempotency-Key` (the transaction id, so a resent sale is not
//! charged twice) and the configured `Authorization`. Exactly 200 completes it; 402
//! means no payment method (`no_payment_token`); anything else is not completed, with
//! the `reason` of a JSON answer or `bookkeeper_fault`. Never retried here, never a
//! redirect followed, no proxy from the environment (as for deliveries).

use std::sync::Arc;
use std::time::Duration;

use reqwest::header::{HeaderValue, AUTHORIZATION, CONTENT_TYPE};
use reqwest::Url;
use serde::Serialize;

use super::http::{ACCOUNT_ID_HEADER, IDEMPOTENCY_KEY_HEADER};
use super::{BookkeeperType, HttpBookkeeperSettings, HttpSetupError};
use crate::domain::{AccountId, Money};

/// The reason of a sale refused for want of a payment method (HTTP 402).
pub const NO_PAYMENT_TOKEN: &str = "no_payment_token";
/// The reason of a sale that failed without a reason of its own.
pub const BOOKKEEPER_FAULT: &str = "bookkeeper_fault";

/// The most of a response body read for its `reason`.
const MAX_ANSWER_BYTES: usize = 64 * 1024;

/// One sale to ask for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SaleRequest {
    pub account_id: AccountId,
    /// The transaction id: also the idempotency key.
    pub transaction_id: String,
    pub amount_units: i64,
    pub description: String,
    pub trigger: String,
}

#[derive(Serialize)]
struct SaleBody<'a> {
    account_id: &'a str,
    transaction: SaleTransaction<'a>,
}

#[derive(Serialize)]
struct SaleTransaction<'a> {
    id: &'a str,
    /// Dollars, exact (a JSON number keeping its digits).
    amount: serde_json::Number,
    amount_units: i64,
    description: &'a str,
    trigger: &'a str,
}

/// What came of a sale.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SaleOutcome {
    /// This bookkeeper cannot sell: credit the ledger directly.
    NoSaleCapability,
    /// Charged.
    Completed { response_code: u16 },
    /// Not charged, or not known to be: no ledger.
    NotCompleted(SaleFailure),
}

/// Why a sale did not complete.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SaleFailure {
    /// `no_payment_token`, the bookkeeper's own reason, or `bookkeeper_fault`.
    pub reason: String,
    pub message: String,
    /// `None` when no answer arrived: the bookkeeper may have charged it (resending
    /// with the same idempotency key is safe).
    pub response_code: Option<u16>,
}

impl SaleFailure {
    fn fault(message: String) -> SaleFailure {
        SaleFailure {
            reason: BOOKKEEPER_FAULT.to_owned(),
            message,
            response_code: None,
        }
    }
}

/// The HTTP bookkeeper's sale endpoint.
#[derive(Debug, Clone)]
pub struct HttpSale {
    client: reqwest::Client,
    /// `Err` when `sale_url` is set but unusable: every sale fails (never a free credit).
    endpoint: Result<(Url, String), String>,
    authorization: Option<HeaderValue>,
}

impl HttpSale {
    /// `None` when `sale_url` is empty: the HTTP bookkeeper cannot sell.
    pub fn from_settings(settings: &HttpBookkeeperSettings) -> Result<Option<HttpSale>, HttpSetupError> {
        let text = settings.sale_url.trim();
        if text.is_empty() {
            return Ok(None);
        }
        for (setting, value) in [
            ("connect_timeout_ms", settings.connect_timeout_ms),
            ("request_timeout_ms", settings.request_timeout_ms),
        ] {
            if value == 0 {
                return Err(HttpSetupError::ZeroTimeout { setting });
            }
        }
        let client = reqwest::Client::builder()
            .connect_timeout(Duration::from_millis(settings.connect_timeout_ms))
            .timeout(Duration::from_millis(settings.request_timeout_ms))
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .user_agent(concat!("tally/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(HttpSetupError::Client)?;
        let endpoint = match Url::parse(text) {
            Ok(url) if matches!(url.scheme(), "http" | "https") => {
                let mut shown = url.clone();
                let _ = shown.set_password(None);
                let _ = shown.set_username("");
                if shown.query().is_some() {
                    shown.set_query(Some("redacted"));
                }
                Ok((url, shown.to_string()))
            }
            Ok(url) => Err(format!("sale_url must use http or https, not `{}`", url.scheme())),
            Err(error) => Err(format!("sale_url is not a valid URL ({error})")),
        };
        let authorization = match settings.authorization_header.is_empty() {
            true => None,
            false => match HeaderValue::from_str(settings.authorization_header.expose()) {
                Ok(mut value) => {
                    value.set_sensitive(true);
                    Some(value)
                }
                Err(_) => {
                    return Ok(Some(HttpSale {
                        client,
                        endpoint: Err("authorization_header is not a valid HTTP header value".to_owned()),
                        authorization: None,
                    }))
                }
            },
        };
        Ok(Some(HttpSale {
            client,
            endpoint,
            authorization,
        }))
    }

    /// Posts one sale; every failure is an outcome.
    pub async fn sell(&self, request: &SaleRequest) -> SaleOutcome {
        let (url, shown) = match &self.endpoint {
            Ok(endpoint) => endpoint,
            Err(reason) => return SaleOutcome::NotCompleted(SaleFailure::fault(reason.clone())),
        };
        let amount = match Money::from_units(request.amount_units)
            .to_string()
            .parse::<serde_json::Number>()
        {
            Ok(amount) => amount,
            Err(error) => return SaleOutcome::NotCompleted(SaleFailure::fault(format!("sale amount: {error}"))),
        };
        let body = SaleBody {
            account_id: request.account_id.as_str(),
            transaction: SaleTransaction {
                id: &request.transaction_id,
                amount,
                amount_units: request.amount_units,
                description: &request.description,
                trigger: &request.trigger,
            },
        };
        let body = match serde_json::to_vec(&body) {
            Ok(body) => body,
            Err(error) => return SaleOutcome::NotCompleted(SaleFailure::fault(format!("sale body: {error}"))),
        };
        let (Ok(account), Ok(key)) = (
            HeaderValue::from_str(request.account_id.as_str()),
            HeaderValue::from_str(&request.transaction_id),
        ) else {
            return SaleOutcome::NotCompleted(SaleFailure::fault(
                "the account or transaction id is not a valid HTTP header value".to_owned(),
            ));
        };
        let mut builder = self
            .client
            .post(url.clone())
            .header(CONTENT_TYPE, HeaderValue::from_static("application/json"))
            .header(ACCOUNT_ID_HEADER, account)
            .header(IDEMPOTENCY_KEY_HEADER, key)
            .body(body);
        if let Some(authorization) = &self.authorization {
            builder = builder.header(AUTHORIZATION, authorization.clone());
        }
        let outcome = match builder.send().await {
            Ok(response) => answer(shown, response).await,
            Err(error) => SaleOutcome::NotCompleted(SaleFailure::fault(format!(
                "sale at {shown} got no answer{}: {}",
                if error.is_timeout() { " in time" } else { "" },
                error_chain(&error)
            ))),
        };
        match &outcome {
            SaleOutcome::NotCompleted(failure) => tracing::warn!(
                account_id = %request.account_id,
                transaction_id = %request.transaction_id,
                reason = %failure.reason,
                message = %failure.message,
                "top-up sale not completed"
            ),
            _ => tracing::debug!(account_id = %request.account_id, transaction_id = %request.transaction_id,
                "top-up sale completed"),
        }
        outcome
    }
}

async fn answer(shown: &str, mut response: reqwest::Response) -> SaleOutcome {
    let status = response.status().as_u16();
    match status {
        200 => return SaleOutcome::Completed { response_code: status },
        402 => {
            return SaleOutcome::NotCompleted(SaleFailure {
                reason: NO_PAYMENT_TOKEN.to_owned(),
                message: "no payment method available".to_owned(),
                response_code: Some(status),
            })
        }
        _ => {}
    }
    let mut bytes = Vec::new();
    while let Ok(Some(chunk)) = response.chunk().await {
        bytes.extend_from_slice(&chunk);
        if bytes.len() > MAX_ANSWER_BYTES {
            bytes.clear();
            break;
        }
    }
    let answer: Option<serde_json::Value> = serde_json::from_slice(&bytes).ok();
    let member = |key: &str| {
        answer
            .as_ref()
            .and_then(|value| value.get(key))
            .and_then(serde_json::Value::as_str)
            .filter(|text| !text.is_empty())
            .map(str::to_owned)
    };
    SaleOutcome::NotCompleted(SaleFailure {
        reason: member("reason").unwrap_or_else(|| BOOKKEEPER_FAULT.to_owned()),
        message: member("message").unwrap_or_else(|| format!("sale at {shown} answered HTTP {status}")),
        response_code: Some(status),
    })
}

fn error_chain(error: &reqwest::Error) -> String {
    let mut text = error.to_string();
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// Who sells for each bookkeeper type.
#[derive(Debug, Clone, Default)]
pub struct Sales {
    http: Option<Arc<HttpSale>>,
}

impl Sales {
    pub fn from_settings(settings: &HttpBookkeeperSettings) -> Result<Sales, HttpSetupError> {
        Ok(Sales {
            http: HttpSale::from_settings(settings)?.map(Arc::new),
        })
    }

    /// Whether a top-up for a bookkeeper of `kind` goes through a sale; else the
    /// ledger is credited directly (`default`, or `http` without `sale_url`).
    pub fn sells(&self, kind: &BookkeeperType) -> bool {
        match kind {
            BookkeeperType::Default => false,
            BookkeeperType::Http => self.http.is_some(),
            BookkeeperType::Unsupported(_) => true,
        }
    }

    /// Asks the bookkeeper of `kind` to sell. A type we do not implement is not
    /// completed (crediting it directly would give away what its bookkeeper charges).
    pub async fn sell(&self, kind: &BookkeeperType, request: &SaleRequest) -> SaleOutcome {
        match (kind, &self.http) {
            (BookkeeperType::Default, _) | (BookkeeperType::Http, None) => SaleOutcome::NoSaleCapability,
            (BookkeeperType::Http, Some(sale)) => sale.sell(request).await,
            (BookkeeperType::Unsupported(name), _) => SaleOutcome::NotCompleted(SaleFailure::fault(format!(
                "unsupported bookkeeper type `{name}` cannot sell; supported: default, http"
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn without_a_sale_url_only_unsupported_types_fail() {
        let sales = Sales::from_settings(&HttpBookkeeperSettings::default()).expect("defaults build");
        let request = SaleRequest {
            account_id: AccountId::parse("a1").expect("valid"),
            transaction_id: "t1".to_owned(),
            amount_units: 10_000,
            description: "Manual top-up".to_owned(),
            trigger: "manual".to_owned(),
        };
        assert_eq!(
            sales.sell(&BookkeeperType::Default, &request).await,
            SaleOutcome::NoSaleCapability
        );
        assert_eq!(
            sales.sell(&BookkeeperType::Http, &request).await,
            SaleOutcome::NoSaleCapability
        );
        let SaleOutcome::NotCompleted(failure) = sales
            .sell(&BookkeeperType::Unsupported("braintree".into()), &request)
            .await
        else {
            panic!("an unsupported type cannot sell");
        };
        assert_eq!(failure.reason, BOOKKEEPER_FAULT);
    }

    #[tokio::test]
    async fn an_unusable_sale_url_fails_every_sale() {
        let settings = HttpBookkeeperSettings {
            sale_url: "ftp://example.org/sale".to_owned(),
            ..HttpBookkeeperSettings::default()
        };
        let sales = Sales::from_settings(&settings).expect("builds");
        let request = SaleRequest {
            account_id: AccountId::parse("a1").expect("valid"),
            transaction_id: "t1".to_owned(),
            amount_units: 1,
            description: String::new(),
            trigger: "manual".to_owned(),
        };
        let SaleOutcome::NotCompleted(failure) = sales.sell(&BookkeeperType::Http, &request).await else {
            panic!("must not complete");
        };
        assert!(failure.message.contains("http or https"), "{}", failure.message);
    }
}
