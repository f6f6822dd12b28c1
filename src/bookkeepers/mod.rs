//! Bookkeepers: the external systems that bill a customer for an invoice.
//!
//! This module owns the adapter contract of `sync-and-bookkeepers.md` §5 (one
//! delivery of one invoice to one bookkeeper, and what came of it), the two adapters
//! we implement ([`local`] for type `default`, [`http`] for type `http`, §7), the
//! idempotency key that makes a retried delivery safe ([`idempotency`]), the checked
//! delivery body ([`body`]) and the retry schedule of a failed delivery ([`retry`]).
//!
//! It must not touch the store, the clock or the scheduler: the sync job decides what
//! to deliver and when, records the [`DeliveryOutcome`] (audit log, standing, dirty,
//! `last_acknowledged_invoices`, §5.3) and asks [`retry::RetryPolicy`] when to try
//! again. It does not know the domain invoice type either: it receives the body of
//! §7 already rendered (by `crate::wire::bookkeeper`), so that the pricing core and
//! this adapter layer can change independently.
//!
//! # Why a trait object and a boxed future
//! The sync job holds one [`Bookkeepers`] router and delivers many invoices in
//! parallel (tokio tasks), so the future must be `Send` and the adapters shareable as
//! `Arc<dyn Bookkeeper>`. Native `async fn` in traits is not object safe and cannot
//! promise `Send` to a caller that only sees `dyn`, so [`Bookkeeper::deliver`]
//! returns a boxed future instead. A trait (rather than a closed enum of adapters)
//! lets a future Braintree-like adapter, or a test double, be plugged into the router
//! without touching the sync job; the *types* a plan may name stay a closed enum
//! ([`BookkeeperType`]) matched exhaustively.
//!
//! # Retrying a delivery
//! The idempotency key protects a retry only if the retry is the same delivery. When
//! an attempt ends without a final answer (timeout, transport error, unexpected
//! status) the bookkeeper may have charged it, including its activation charges. If a
//! new change were folded into the retry, the body and so the key would differ and
//! those activation charges would be charged again. So the sync job should freeze a
//! delivery once attempted: store its body bytes ([`SyncBody::as_bytes`]) with its
//! sync id, resend exactly them ([`DeliveryRequest::from_stored_body`]) until the
//! answer is 200 or 402, and deliver later changes as the next delivery, annotated
//! against what that answer acknowledged.

pub mod body;
pub mod demo;
pub mod http;
pub mod idempotency;
pub mod local;
pub mod retry;
pub mod sale;

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use crate::domain::AccountId;

pub use body::{InvalidDelivery, SyncBody};
pub use http::{HttpBookkeeper, HttpBookkeeperSettings, HttpSetupError, SecretString};
pub use idempotency::IdempotencyKey;
pub use local::LocalBookkeeper;
pub use retry::{RetryDecision, RetryPolicy};

/// A boxed, `Send` future: what [`Bookkeeper::deliver`] returns (see the module docs
/// for why it is boxed).
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// One bookkeeper adapter: delivers an invoice and says what the bookkeeper made of it.
///
/// Implementations never fail "outside" the outcome: every transport problem, refusal
/// or misconfiguration is a [`DeliveryOutcome`], because the sync job must record a
/// result for every delivery and go on with the other accounts.
pub trait Bookkeeper: Send + Sync {
    /// Delivers `request` once. No retry happens inside: retrying is the sync job's
    /// decision ([`retry::RetryPolicy`]), and it must resend the *same* request (same
    /// idempotency key) so the bookkeeper can discard a duplicate.
    fn deliver<'a>(&'a self, request: &'a DeliveryRequest) -> BoxFuture<'a, DeliveryOutcome>;
}

/// The bookkeeper types a plan may name (`plans.md` §5.3, `sync-and-bookkeepers.md`
/// §5.2), after the legacy aliases of quirk Q-SYN-5 are folded in.
///
/// Parsing never fails: an unknown or unimplemented type is data we must report per
/// delivery ([`Rejection::UnsupportedBookkeeperType`]), not a reason to stop a run.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum BookkeeperType {
    /// `default` (also `local`, legacy `kz_bookkeeper_local`): no external system.
    Default,
    /// `http` (legacy `kz_bookkeeper_http`): the protocol of §7.
    Http,
    /// Anything else, kept by its (alias-folded) name so the rejection can say which
    /// type was asked for. `braintree` lands here: we do not implement it.
    Unsupported(String),
}

impl BookkeeperType {
    /// Folds the legacy names of Q-SYN-5: `kz_bookkeeper_local` is `default`,
    /// `kz_bookkeeper_http` is `http`, `kz_bookkeeper_braintree` is `braintree`.
    /// Matching is exact (Kazoo compares binaries exactly).
    pub fn parse(name: &str) -> BookkeeperType {
        match name {
            "default" | "local" | "kz_bookkeeper_local" => BookkeeperType::Default,
            "http" | "kz_bookkeeper_http" => BookkeeperType::Http,
            "kz_bookkeeper_braintree" => BookkeeperType::Unsupported("braintree".to_owned()),
            other => BookkeeperType::Unsupported(other.to_owned()),
        }
    }

    /// The canonical name, as sent in the `bookkeeper` member of the HTTP body.
    pub fn as_str(&self) -> &str {
        match self {
            BookkeeperType::Default => "default",
            BookkeeperType::Http => "http",
            BookkeeperType::Unsupported(name) => name,
        }
    }
}

impl fmt::Display for BookkeeperType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Which bookkeeper an invoice belongs to: `{id, type, vendor_id}` of the merged plan
/// (`pricing.md` §8). Two invoices of one account differ by this identity.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct BookkeeperIdentity {
    /// The bookkeeper document id (`default_bookkeeper` when the plan names none).
    pub id: String,
    /// Which adapter serves it.
    pub kind: BookkeeperType,
    /// The account owning the bookkeeper (normally the reseller).
    pub vendor_id: String,
}

/// The id of the audit log being delivered: sent as `X-Sync-ID` and `sync_id`
/// (§7, "ours: the id of the audit log being delivered").
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SyncId(String);

impl SyncId {
    /// Accepts any non-empty text: the store chooses the audit log ids.
    pub fn parse(text: impl Into<String>) -> Result<SyncId, InvalidDelivery> {
        let text = text.into();
        if text.is_empty() {
            return Err(InvalidDelivery::new("sync_id", "must not be empty"));
        }
        Ok(SyncId(text))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for SyncId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Everything one delivery needs, parsed once.
///
/// Built by [`DeliveryRequest::new`] from the account id, the id of the audit log
/// being delivered and the rendered body. The idempotency key is derived from the
/// body here, so a retry that rebuilds the request from the same stored state carries
/// the same key, and no caller can pair a body with the key of another body.
#[derive(Debug, Clone, PartialEq)]
pub struct DeliveryRequest {
    account_id: AccountId,
    bookkeeper: BookkeeperIdentity,
    sync_id: SyncId,
    body: SyncBody,
    idempotency_key: IdempotencyKey,
}

impl DeliveryRequest {
    /// `body` is the JSON of §7 (`crate::wire::bookkeeper::DeliveryBody` renders it
    /// from the invoice; tests may pass a `serde_json::Value`). It is serialised once
    /// here; its `account_id` and `sync_id` must be the given ones, and the bookkeeper
    /// identity is read from its `bookkeeper` member, so there is one source of truth
    /// for where an invoice goes.
    pub fn new(
        account_id: AccountId,
        sync_id: SyncId,
        body: &impl serde::Serialize,
    ) -> Result<DeliveryRequest, InvalidDelivery> {
        let (bookkeeper, body) = body::parse(&account_id, &sync_id, body)?;
        Ok(DeliveryRequest::assemble(account_id, sync_id, bookkeeper, body))
    }

    /// Rebuilds a delivery from the bytes of a body sent before (see "Retrying a
    /// delivery" in the module docs). The bytes are sent again exactly and the key is
    /// the same as the first attempt's.
    pub fn from_stored_body(
        account_id: AccountId,
        sync_id: SyncId,
        body_bytes: Vec<u8>,
    ) -> Result<DeliveryRequest, InvalidDelivery> {
        let (bookkeeper, body) = body::parse_bytes(&account_id, &sync_id, body_bytes)?;
        Ok(DeliveryRequest::assemble(account_id, sync_id, bookkeeper, body))
    }

    fn assemble(account_id: AccountId, sync_id: SyncId, bookkeeper: BookkeeperIdentity, body: SyncBody) -> Self {
        let idempotency_key = IdempotencyKey::derive(&account_id, body.as_value());
        DeliveryRequest {
            account_id,
            bookkeeper,
            sync_id,
            body,
            idempotency_key,
        }
    }

    pub fn account_id(&self) -> &AccountId {
        &self.account_id
    }

    pub fn bookkeeper(&self) -> &BookkeeperIdentity {
        &self.bookkeeper
    }

    pub fn sync_id(&self) -> &SyncId {
        &self.sync_id
    }

    /// The body, exactly as posted.
    pub fn body(&self) -> &SyncBody {
        &self.body
    }

    pub fn idempotency_key(&self) -> &IdempotencyKey {
        &self.idempotency_key
    }
}

/// What a bookkeeper made of one delivery: the three rows of §5.3.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeliveryOutcome {
    /// Acknowledged (HTTP 200, local): pending audit logs → `completed`, dirty
    /// cleared, `last_acknowledged_invoices[hash]` := the delivered invoice.
    Synced(Acknowledgement),
    /// Taken but refused payment (HTTP 402): pending audit logs → `failed` with the
    /// reason, dirty cleared, `last_acknowledged_invoices[hash]` := the delivered
    /// invoice. Terminal: it is not retried.
    SyncedNotInGoodStanding(Refusal),
    /// Not synced: audit logs stay `pending` with `last_error`, dirty kept. Whether an
    /// automatic retry makes sense is [`DeliveryError::is_retryable`].
    NotSynced(DeliveryError),
}

impl DeliveryOutcome {
    /// The HTTP status the bookkeeper answered, for the delivery record (`None` for
    /// the local bookkeeper and when no response arrived).
    pub fn response_code(&self) -> Option<u16> {
        match self {
            DeliveryOutcome::Synced(acknowledgement) => acknowledgement.response_code,
            DeliveryOutcome::SyncedNotInGoodStanding(refusal) => refusal.response_code,
            DeliveryOutcome::NotSynced(error) => error.response_code(),
        }
    }
}

/// The bookkeeper took the invoice.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Acknowledgement {
    /// What to do with the account's stored standing: the HTTP bookkeeper sets
    /// `good_standing`, other types leave it alone (§5.3).
    pub standing: StandingChange,
    /// The HTTP status, when there was one.
    pub response_code: Option<u16>,
}

/// The bookkeeper took the invoice but the customer is not in good standing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// The audit-log reason (`delinquent` for HTTP 402, or an adapter's own code such
    /// as Braintree's `action_required`).
    pub reason: String,
    /// A sentence for the audit log and the operator.
    pub message: String,
    /// What to do with the stored standing (`delinquent` for HTTP, §5.3).
    pub standing: StandingChange,
    /// The HTTP status, when there was one.
    pub response_code: Option<u16>,
}

/// The change a delivery result makes to the account's stored standing (§6.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StandingChange {
    /// Leave `status` as it is (local bookkeeper, any non-terminal result).
    Unchanged,
    /// Set `status` = `good_standing`.
    GoodStanding,
    /// Set `status` = `delinquent`.
    Delinquent,
}

impl StandingChange {
    /// The `status` value to store, if any.
    pub fn status(self) -> Option<&'static str> {
        match self {
            StandingChange::Unchanged => None,
            StandingChange::GoodStanding => Some("good_standing"),
            StandingChange::Delinquent => Some("delinquent"),
        }
    }
}

/// Why a delivery did not sync. Split by the decision the sync job takes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DeliveryError {
    /// Trying again later may succeed: keep the account dirty and schedule a retry.
    #[error(transparent)]
    Retryable(#[from] RetryableError),
    /// Trying again cannot succeed until someone changes the plan or configuration:
    /// keep the account dirty, do not schedule automatic retries, report it now.
    #[error(transparent)]
    Rejected(#[from] Rejection),
}

impl DeliveryError {
    pub fn is_retryable(&self) -> bool {
        match self {
            DeliveryError::Retryable(_) => true,
            DeliveryError::Rejected(_) => false,
        }
    }

    /// A short stable code for the delivery record (`last_error_code`), so reports
    /// can group failures without parsing messages.
    pub fn code(&self) -> &'static str {
        match self {
            DeliveryError::Retryable(error) => error.code(),
            DeliveryError::Rejected(rejection) => rejection.code(),
        }
    }

    pub fn response_code(&self) -> Option<u16> {
        match self {
            DeliveryError::Retryable(RetryableError::UnexpectedStatus { status, .. }) => Some(*status),
            DeliveryError::Retryable(
                RetryableError::NotConfigured { .. }
                | RetryableError::Transport { .. }
                | RetryableError::Timeout { .. },
            ) => None,
            DeliveryError::Rejected(_) => None,
        }
    }
}

/// Failures after which the same delivery is tried again (§5.3 "retryable", §14).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RetryableError {
    /// The adapter has no usable endpoint (Q-SYN-4: Kazoo's default URL is empty and
    /// every sync silently failed; we say so). Retryable because fixing the
    /// configuration is enough: the stored deliveries then go out unchanged.
    #[error("bookkeeper not configured: {reason}")]
    NotConfigured { reason: String },
    /// No HTTP response: connection refused, reset, closed before the answer, DNS.
    /// The bookkeeper may or may not have recorded the charge, which is what the
    /// idempotency key is for.
    #[error("bookkeeper at {url} unreachable: {detail}")]
    Transport { url: String, detail: String },
    /// No complete answer within the configured connect or request timeout.
    #[error("bookkeeper at {url} did not answer in time (connect timeout {connect_timeout_ms} ms, request timeout {request_timeout_ms} ms)")]
    Timeout {
        url: String,
        connect_timeout_ms: u64,
        request_timeout_ms: u64,
    },
    /// An answer other than 200 or 402 (Q-SYN-3: 201, 204 and 3xx included).
    #[error("bookkeeper at {url} answered HTTP {status}; only 200 (synced) and 402 (delinquent) are final")]
    UnexpectedStatus { url: String, status: u16 },
}

impl RetryableError {
    pub fn code(&self) -> &'static str {
        match self {
            RetryableError::NotConfigured { .. } => "not_configured",
            RetryableError::Transport { .. } => "transport_error",
            RetryableError::Timeout { .. } => "timeout",
            RetryableError::UnexpectedStatus { .. } => "unexpected_status",
        }
    }
}

/// Failures that a retry of the same delivery cannot fix.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Rejection {
    /// The invoice names a bookkeeper type we do not implement (`braintree`, or a
    /// name nobody serves). Kazoo would let such an update time out after 20 s; we
    /// refuse at once and say which type was asked for.
    #[error("unsupported bookkeeper type `{type_name}` (bookkeeper `{bookkeeper_id}` of vendor `{vendor_id}`); supported: default, http")]
    UnsupportedBookkeeperType {
        type_name: String,
        bookkeeper_id: String,
        vendor_id: String,
    },
    /// The request cannot be put on the wire (e.g. an account id that is not a valid
    /// HTTP header value).
    #[error("delivery cannot be sent: {reason}")]
    InvalidRequest { reason: String },
}

impl Rejection {
    pub fn code(&self) -> &'static str {
        match self {
            Rejection::UnsupportedBookkeeperType { .. } => "unsupported_bookkeeper_type",
            Rejection::InvalidRequest { .. } => "invalid_request",
        }
    }
}

/// Routes each delivery to the adapter of its bookkeeper type.
///
/// The sync job holds one of these; an invoice whose type is unsupported gets
/// [`Rejection::UnsupportedBookkeeperType`] instead of reaching any adapter.
#[derive(Clone)]
pub struct Bookkeepers {
    local: Arc<dyn Bookkeeper>,
    http: Arc<dyn Bookkeeper>,
    sales: sale::Sales,
}

impl Bookkeepers {
    /// Any adapters: production passes [`LocalBookkeeper`] and [`HttpBookkeeper`],
    /// tests may pass doubles.
    pub fn new(local: Arc<dyn Bookkeeper>, http: Arc<dyn Bookkeeper>) -> Bookkeepers {
        Bookkeepers {
            local,
            http,
            sales: sale::Sales::default(),
        }
    }

    /// Replaces who sells top-ups (by default nobody: every top-up credits directly).
    pub fn with_sales(mut self, sales: sale::Sales) -> Bookkeepers {
        self.sales = sales;
        self
    }

    /// Who sells top-ups, by bookkeeper type.
    pub fn sales(&self) -> &sale::Sales {
        &self.sales
    }

    /// The production set: local, and HTTP from its settings.
    pub fn from_settings(http_settings: &HttpBookkeeperSettings) -> Result<Bookkeepers, HttpSetupError> {
        let http = HttpBookkeeper::new(http_settings)?;
        let sales = sale::Sales::from_settings(http_settings)?;
        Ok(Bookkeepers::new(Arc::new(LocalBookkeeper::new()), Arc::new(http)).with_sales(sales))
    }

    /// The adapter serving `identity`, or why there is none.
    pub fn adapter_for(&self, identity: &BookkeeperIdentity) -> Result<&Arc<dyn Bookkeeper>, Rejection> {
        match &identity.kind {
            BookkeeperType::Default => Ok(&self.local),
            BookkeeperType::Http => Ok(&self.http),
            BookkeeperType::Unsupported(type_name) => Err(Rejection::UnsupportedBookkeeperType {
                type_name: type_name.clone(),
                bookkeeper_id: identity.id.clone(),
                vendor_id: identity.vendor_id.clone(),
            }),
        }
    }
}

impl fmt::Debug for Bookkeepers {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Bookkeepers").finish_non_exhaustive()
    }
}

impl Bookkeeper for Bookkeepers {
    fn deliver<'a>(&'a self, request: &'a DeliveryRequest) -> BoxFuture<'a, DeliveryOutcome> {
        match self.adapter_for(request.bookkeeper()) {
            Ok(adapter) => adapter.deliver(request),
            Err(rejection) => Box::pin(std::future::ready(DeliveryOutcome::NotSynced(rejection.into()))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bookkeeper_type_names_and_legacy_aliases_parse_to_their_adapter() {
        let table = [
            ("default", BookkeeperType::Default),
            ("local", BookkeeperType::Default),
            ("kz_bookkeeper_local", BookkeeperType::Default),
            ("http", BookkeeperType::Http),
            ("kz_bookkeeper_http", BookkeeperType::Http),
            ("braintree", BookkeeperType::Unsupported("braintree".into())),
            (
                "kz_bookkeeper_braintree",
                BookkeeperType::Unsupported("braintree".into()),
            ),
            ("HTTP", BookkeeperType::Unsupported("HTTP".into())),
            ("", BookkeeperType::Unsupported(String::new())),
        ];
        for (name, expected) in table {
            assert_eq!(BookkeeperType::parse(name), expected, "parsing {name:?}");
        }
    }

    #[test]
    fn canonical_names_round_trip() {
        for kind in [BookkeeperType::Default, BookkeeperType::Http] {
            assert_eq!(BookkeeperType::parse(kind.as_str()), kind);
        }
    }

    #[test]
    fn only_rejections_are_not_retryable() {
        let retryable = DeliveryError::from(RetryableError::NotConfigured { reason: "x".into() });
        let rejected = DeliveryError::from(Rejection::InvalidRequest { reason: "x".into() });
        assert!(retryable.is_retryable());
        assert!(!rejected.is_retryable());
    }

    #[test]
    fn standing_changes_name_the_stored_status() {
        assert_eq!(StandingChange::Unchanged.status(), None);
        assert_eq!(StandingChange::GoodStanding.status(), Some("good_standing"));
        assert_eq!(StandingChange::Delinquent.status(), Some("delinquent"));
    }

    #[test]
    fn an_empty_sync_id_is_refused() {
        assert!(SyncId::parse("").is_err());
        assert_eq!(
            SyncId::parse("202611-abc").map(|id| id.to_string()).ok(),
            Some("202611-abc".to_owned())
        );
    }
}
