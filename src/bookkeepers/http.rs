//! The `http` bookkeeper (legacy `kz_bookkeeper_http`): the protocol of
//! `sync-and-bookkeepers.md` §7.
//!
//! One `POST <http_url>` per delivery, body [`super::SyncBody`], headers
//! `Content-Type`, `X-Account-ID`, `X-Sync-ID`, `Idempotency-Key` and the configured
//! `Authorization`. Exactly 200 is synced in good standing, exactly 402 is synced and
//! delinquent, everything else (other statuses including 201/204/3xx — quirk Q-SYN-3 —,
//! connection errors, timeouts, an unusable configuration — Q-SYN-4) is retryable.
//! The response body is ignored.
//!
//! This module owns the HTTP client and its settings. It must not retry (the sync
//! job does, with the same request), must not follow redirects (a 3xx is an answer,
//! and following it would post the invoice somewhere nobody configured) and must not
//! read proxy settings from the environment (where invoices go is configuration).

use std::fmt;
use std::time::Duration;

use reqwest::header::{HeaderValue, AUTHORIZATION, CONTENT_TYPE};
use reqwest::Url;
use serde::Deserialize;

use super::{
    Acknowledgement, Bookkeeper, BoxFuture, DeliveryOutcome, DeliveryRequest, Refusal, Rejection, RetryableError,
    StandingChange,
};

/// Header carrying the billed account (§7).
pub const ACCOUNT_ID_HEADER: &str = "X-Account-ID";
/// Header carrying the id of the audit log being delivered (§7).
pub const SYNC_ID_HEADER: &str = "X-Sync-ID";
/// Header carrying [`super::IdempotencyKey`] on every delivery.
pub const IDEMPOTENCY_KEY_HEADER: &str = "Idempotency-Key";

/// A string that must not reach logs: `Debug` prints whether it is set, not its value.
#[derive(Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct SecretString(String);

impl SecretString {
    pub fn new(secret: impl Into<String>) -> SecretString {
        SecretString(secret.into())
    }

    /// The secret itself, for the one place that must send it.
    pub fn expose(&self) -> &str {
        &self.0
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// A set secret serializes as [`crate::config::REDACTED`] (an unset one as `""`, so
/// it reads back as unset): the only serialization is `tally config`'s, which must
/// show that a secret is set, never what it is.
impl serde::Serialize for SecretString {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self.0.is_empty() {
            true => serializer.serialize_str(""),
            false => serializer.serialize_str(crate::config::REDACTED),
        }
    }
}

impl fmt::Debug for SecretString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0.is_empty() {
            true => f.write_str("SecretString(<empty>)"),
            false => f.write_str("SecretString(<redacted>)"),
        }
    }
}

/// `system_config/services.http_sync` (§7), plus our request timeout.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct HttpBookkeeperSettings {
    /// Where invoices are posted. Empty (the default, as in Kazoo) means "not
    /// configured": deliveries wait, without spending attempts, until it is set.
    /// Credentials in it (`https://user:password@host/`) print redacted.
    #[serde(serialize_with = "crate::config::serialize_redacted_url")]
    pub http_url: String,
    /// Sent verbatim as `Authorization`; omitted when empty.
    pub authorization_header: SecretString,
    /// Time allowed to open the TCP (and TLS) connection.
    pub connect_timeout_ms: u64,
    /// Time allowed for the whole exchange, until the response status arrives.
    pub request_timeout_ms: u64,
    /// Where top-up sales are posted (`super::sale`). Empty (the default) means the
    /// HTTP bookkeeper cannot sell: top-ups credit the ledger directly, as for `default`.
    #[serde(serialize_with = "crate::config::serialize_redacted_url")]
    pub sale_url: String,
}

impl HttpBookkeeperSettings {
    /// Why no invoice can be posted with these settings (`http_url` empty or not a
    /// URL), or `None` when they name an endpoint: what a delivery would be told.
    pub fn unconfigured_reason(&self) -> Option<String> {
        match endpoint(self) {
            Endpoint::NotConfigured { reason } => Some(reason),
            Endpoint::Ready { .. } => None,
        }
    }
}

impl Default for HttpBookkeeperSettings {
    fn default() -> Self {
        HttpBookkeeperSettings {
            http_url: String::new(),
            authorization_header: SecretString::default(),
            connect_timeout_ms: 10_000,
            request_timeout_ms: 30_000,
            sale_url: String::new(),
        }
    }
}

/// Settings that cannot even make a client. (An unusable URL is not one of them: it
/// is reported per delivery, so the worker still runs its other bookkeepers.)
#[derive(Debug, thiserror::Error)]
pub enum HttpSetupError {
    #[error("HTTP bookkeeper: {setting} must be greater than 0 ms")]
    ZeroTimeout { setting: &'static str },
    #[error("HTTP bookkeeper: cannot build the HTTP client")]
    Client(#[source] reqwest::Error),
}

/// How a response status is read (§7 "Response handling").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatusMeaning {
    /// Exactly 200.
    SyncedInGoodStanding,
    /// Exactly 402.
    SyncedDelinquent,
    /// Anything else.
    Retry,
}

/// Pure status classification, kept apart so it is tested on its own.
pub fn status_meaning(status: u16) -> StatusMeaning {
    match status {
        200 => StatusMeaning::SyncedInGoodStanding,
        402 => StatusMeaning::SyncedDelinquent,
        _ => StatusMeaning::Retry,
    }
}

/// Where deliveries go, decided once from the settings.
#[derive(Debug, Clone)]
enum Endpoint {
    Ready {
        url: Url,
        /// The URL without user info and query, safe for logs and error messages.
        shown: String,
        authorization: Option<HeaderValue>,
    },
    NotConfigured {
        reason: String,
    },
}

/// Posts invoices to one configured URL.
#[derive(Debug, Clone)]
pub struct HttpBookkeeper {
    client: reqwest::Client,
    endpoint: Endpoint,
    connect_timeout_ms: u64,
    request_timeout_ms: u64,
}

impl HttpBookkeeper {
    pub fn new(settings: &HttpBookkeeperSettings) -> Result<HttpBookkeeper, HttpSetupError> {
        if settings.connect_timeout_ms == 0 {
            return Err(HttpSetupError::ZeroTimeout {
                setting: "connect_timeout_ms",
            });
        }
        if settings.request_timeout_ms == 0 {
            return Err(HttpSetupError::ZeroTimeout {
                setting: "request_timeout_ms",
            });
        }
        let client = reqwest::Client::builder()
            .connect_timeout(Duration::from_millis(settings.connect_timeout_ms))
            .timeout(Duration::from_millis(settings.request_timeout_ms))
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .user_agent(concat!("tally/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(HttpSetupError::Client)?;
        // Not configured is said by the run that has a delivery for it, once (not here:
        // every command builds the bookkeepers).
        let endpoint = endpoint(settings);
        Ok(HttpBookkeeper {
            client,
            endpoint,
            connect_timeout_ms: settings.connect_timeout_ms,
            request_timeout_ms: settings.request_timeout_ms,
        })
    }

    async fn post(&self, request: &DeliveryRequest) -> DeliveryOutcome {
        let (url, shown, authorization) = match &self.endpoint {
            Endpoint::Ready {
                url,
                shown,
                authorization,
            } => (url, shown, authorization),
            Endpoint::NotConfigured { reason } => {
                return DeliveryOutcome::NotSynced(RetryableError::NotConfigured { reason: reason.clone() }.into())
            }
        };
        let (account_id, sync_id, key) = match (
            header_value(ACCOUNT_ID_HEADER, request.account_id().as_str()),
            header_value(SYNC_ID_HEADER, request.sync_id().as_str()),
            header_value(IDEMPOTENCY_KEY_HEADER, request.idempotency_key().as_str()),
        ) {
            (Ok(account_id), Ok(sync_id), Ok(key)) => (account_id, sync_id, key),
            (Err(rejection), _, _) | (_, Err(rejection), _) | (_, _, Err(rejection)) => {
                return DeliveryOutcome::NotSynced(rejection.into())
            }
        };
        let mut builder = self
            .client
            .post(url.clone())
            .header(CONTENT_TYPE, HeaderValue::from_static("application/json"))
            .header(ACCOUNT_ID_HEADER, account_id)
            .header(SYNC_ID_HEADER, sync_id)
            .header(IDEMPOTENCY_KEY_HEADER, key)
            .body(request.body().as_bytes().to_vec());
        if let Some(authorization) = authorization {
            builder = builder.header(AUTHORIZATION, authorization.clone());
        }
        match builder.send().await {
            Ok(response) => outcome_of_status(shown, response.status().as_u16()),
            Err(error) if error.is_timeout() => DeliveryOutcome::NotSynced(
                RetryableError::Timeout {
                    url: shown.clone(),
                    connect_timeout_ms: self.connect_timeout_ms,
                    request_timeout_ms: self.request_timeout_ms,
                }
                .into(),
            ),
            Err(error) => DeliveryOutcome::NotSynced(
                RetryableError::Transport {
                    url: shown.clone(),
                    detail: error_chain(&error),
                }
                .into(),
            ),
        }
    }
}

impl Bookkeeper for HttpBookkeeper {
    fn deliver<'a>(&'a self, request: &'a DeliveryRequest) -> BoxFuture<'a, DeliveryOutcome> {
        Box::pin(async move {
            let outcome = self.post(request).await;
            match &outcome {
                DeliveryOutcome::Synced(_) | DeliveryOutcome::SyncedNotInGoodStanding(_) => tracing::debug!(
                    account_id = %request.account_id(),
                    sync_id = %request.sync_id(),
                    idempotency_key = %request.idempotency_key(),
                    response_code = outcome.response_code(),
                    "HTTP bookkeeper took the invoice"
                ),
                // The sync job says it once per delivery (with its attempts), or once per
                // run for a missing configuration.
                DeliveryOutcome::NotSynced(error) => tracing::debug!(
                    account_id = %request.account_id(),
                    sync_id = %request.sync_id(),
                    idempotency_key = %request.idempotency_key(),
                    error_code = error.code(),
                    error = %error,
                    "HTTP bookkeeper delivery failed"
                ),
            }
            outcome
        })
    }
}

fn outcome_of_status(shown_url: &str, status: u16) -> DeliveryOutcome {
    match status_meaning(status) {
        StatusMeaning::SyncedInGoodStanding => DeliveryOutcome::Synced(Acknowledgement {
            standing: StandingChange::GoodStanding,
            response_code: Some(status),
        }),
        StatusMeaning::SyncedDelinquent => DeliveryOutcome::SyncedNotInGoodStanding(Refusal {
            reason: "delinquent".to_owned(),
            message: "the HTTP bookkeeper answered 402 Payment Required: the account is not in good standing"
                .to_owned(),
            standing: StandingChange::Delinquent,
            response_code: Some(status),
        }),
        StatusMeaning::Retry => DeliveryOutcome::NotSynced(
            RetryableError::UnexpectedStatus {
                url: shown_url.to_owned(),
                status,
            }
            .into(),
        ),
    }
}

fn endpoint(settings: &HttpBookkeeperSettings) -> Endpoint {
    let text = settings.http_url.trim();
    if text.is_empty() {
        return Endpoint::NotConfigured {
            reason:
                "http_url not configured: set the HTTP bookkeeper's http_url to the endpoint that receives invoices"
                    .to_owned(),
        };
    }
    let url = match Url::parse(text) {
        Ok(url) => url,
        Err(error) => {
            return Endpoint::NotConfigured {
                reason: format!("http_url is not a valid URL ({error})"),
            }
        }
    };
    match url.scheme() {
        "http" | "https" => {}
        other => {
            return Endpoint::NotConfigured {
                reason: format!("http_url must use http or https, not `{other}`"),
            }
        }
    }
    let authorization = match settings.authorization_header.is_empty() {
        true => None,
        false => match HeaderValue::from_str(settings.authorization_header.expose()) {
            Ok(mut value) => {
                value.set_sensitive(true);
                Some(value)
            }
            Err(_) => {
                return Endpoint::NotConfigured {
                    reason: "authorization_header is not a valid HTTP header value (control characters?)".to_owned(),
                }
            }
        },
    };
    Endpoint::Ready {
        shown: shown_url(&url),
        url,
        authorization,
    }
}

/// The URL without user info and query string, which may carry credentials.
fn shown_url(url: &Url) -> String {
    let mut shown = url.clone();
    // Both setters only fail for URLs that cannot have credentials; nothing to hide then.
    let _ = shown.set_password(None);
    let _ = shown.set_username("");
    if shown.query().is_some() {
        shown.set_query(Some("redacted"));
    }
    shown.to_string()
}

fn header_value(name: &str, value: &str) -> Result<HeaderValue, Rejection> {
    HeaderValue::from_str(value).map_err(|_| Rejection::InvalidRequest {
        reason: format!("{name} `{value}` is not a valid HTTP header value"),
    })
}

/// reqwest's top-level message is generic ("error sending request"); the cause
/// ("Connection refused", "connection closed before message completed") is below.
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_200_and_402_are_final_answers() {
        let table = [
            (200, StatusMeaning::SyncedInGoodStanding),
            (402, StatusMeaning::SyncedDelinquent),
            (100, StatusMeaning::Retry),
            (201, StatusMeaning::Retry),
            (204, StatusMeaning::Retry),
            (301, StatusMeaning::Retry),
            (302, StatusMeaning::Retry),
            (400, StatusMeaning::Retry),
            (401, StatusMeaning::Retry),
            (403, StatusMeaning::Retry),
            (404, StatusMeaning::Retry),
            (409, StatusMeaning::Retry),
            (500, StatusMeaning::Retry),
            (503, StatusMeaning::Retry),
        ];
        for (status, expected) in table {
            assert_eq!(status_meaning(status), expected, "HTTP {status}");
        }
    }

    #[test]
    fn secrets_are_redacted_in_debug_output() {
        let settings = HttpBookkeeperSettings {
            http_url: "http://127.0.0.1:1/".into(),
            authorization_header: SecretString::new("Bearer hunter2"),
            ..HttpBookkeeperSettings::default()
        };
        let printed = format!("{settings:?}");
        assert!(!printed.contains("hunter2"), "{printed}");
        assert!(printed.contains("<redacted>"), "{printed}");
        let bookkeeper = HttpBookkeeper::new(&settings).expect("valid settings");
        assert!(!format!("{bookkeeper:?}").contains("hunter2"));
    }

    #[test]
    fn settings_default_to_kazoo_values_and_read_from_toml() {
        let defaults = HttpBookkeeperSettings::default();
        assert_eq!(defaults.connect_timeout_ms, 10_000);
        assert_eq!(defaults.request_timeout_ms, 30_000);
        assert!(defaults.http_url.is_empty());
        let parsed: HttpBookkeeperSettings =
            toml::from_str("http_url = \"https://billing.example/x\"\nauthorization_header = \"Basic abc\"\n")
                .expect("valid TOML");
        assert_eq!(parsed.http_url, "https://billing.example/x");
        assert_eq!(parsed.authorization_header.expose(), "Basic abc");
        assert_eq!(parsed.connect_timeout_ms, 10_000);
        let unknown = toml::from_str::<HttpBookkeeperSettings>("http_uri = \"x\"\n");
        assert!(unknown.is_err(), "a misspelt key must not be silently ignored");
    }

    #[test]
    fn unusable_endpoints_are_not_configured_with_a_reason() {
        let table = [
            ("", "", "http_url not configured"),
            ("   ", "", "http_url not configured"),
            ("not a url", "", "http_url is not a valid URL"),
            ("ftp://example.org/", "", "http_url must use http or https, not `ftp`"),
            (
                "http://127.0.0.1:1/",
                "Bearer a\nb",
                "authorization_header is not a valid HTTP header value",
            ),
        ];
        for (url, authorization, expected) in table {
            let settings = HttpBookkeeperSettings {
                http_url: url.into(),
                authorization_header: SecretString::new(authorization),
                ..HttpBookkeeperSettings::default()
            };
            match endpoint(&settings) {
                Endpoint::NotConfigured { reason } => {
                    assert!(reason.contains(expected), "{url:?}: {reason}");
                    assert!(!reason.contains("Bearer"), "the secret must not leak: {reason}");
                }
                Endpoint::Ready { .. } => panic!("{url:?} must not be usable"),
            }
        }
    }

    #[test]
    fn urls_in_messages_hide_credentials_and_queries() {
        let url = Url::parse("https://user:pw@billing.example:8443/invoices?token=s3cret").expect("valid URL");
        assert_eq!(shown_url(&url), "https://billing.example:8443/invoices?redacted");
    }

    #[test]
    fn zero_timeouts_are_refused_at_setup() {
        let settings = HttpBookkeeperSettings {
            connect_timeout_ms: 0,
            ..HttpBookkeeperSettings::default()
        };
        assert!(matches!(
            HttpBookkeeper::new(&settings),
            Err(HttpSetupError::ZeroTimeout {
                setting: "connect_timeout_ms"
            })
        ));
    }
}
