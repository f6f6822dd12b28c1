//! The bookkeeper adapters against a real HTTP server on 127.0.0.1
//! (`sync-and-bookkeepers.md` §5, §7, §14).

use std::net::TcpListener as StdTcpListener;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};
use tally::bookkeepers::{
    Acknowledgement, Bookkeeper, Bookkeepers, DeliveryError, DeliveryOutcome, DeliveryRequest, HttpBookkeeper,
    HttpBookkeeperSettings, LocalBookkeeper, Refusal, Rejection, RetryableError, SecretString, StandingChange, SyncId,
};
use tally::domain::merge::StrategyPriorities;
use tally::domain::AccountId;
use tally::quote::{parse_request, price};
use tally::wire::bookkeeper::DeliveryBody;

use crate::fake_bookkeeper::{FakeBookkeeper, Reply};

const ACCOUNT: &str = "4c1b9e2f0a6d4e8f9b3c2d1e0f9a8b7c";

fn settings(url: &str) -> HttpBookkeeperSettings {
    HttpBookkeeperSettings {
        http_url: url.to_owned(),
        authorization_header: SecretString::new("Bearer s3cret-token"),
        connect_timeout_ms: 2_000,
        request_timeout_ms: 5_000,
        ..HttpBookkeeperSettings::default()
    }
}

fn http_bookkeeper(settings: &HttpBookkeeperSettings) -> HttpBookkeeper {
    HttpBookkeeper::new(settings).expect("valid HTTP bookkeeper settings")
}

/// A body as `crate::wire::bookkeeper` renders it, for an invoice of type `kind`.
fn body(sync_id: &str, kind: &str, rate: &str) -> Value {
    let rate: Value = serde_json::from_str(rate).expect("valid number");
    json!({
        "account_id": ACCOUNT,
        "sync_id": sync_id,
        "items": {"devices": {"sip_device": {
            "category": "devices", "item": "sip_device", "name": "SIP Device", "quantity": 4, "rate": rate.clone(),
            "single_discount": false, "single_discount_rate": 0, "cumulative_discount": 0,
            "cumulative_discount_rate": 0, "activation_charge": 0, "minimum": 0, "exceptions": []
        }}},
        "bookkeeper": {"type": kind, "vendor_id": "reseller0000000000000000000000001", "id": "bk1"},
        "invoice": {
            "items": [{"category": "devices", "item": "sip_device", "name": "SIP Device", "quantity": 4,
                       "billable": 4, "rate": rate, "total": 119.96,
                       "prorate": {"additions": true, "removals": true}}],
            "activation_charges": [], "taxes": [],
            "summary": {"today": 0, "recurring": 119.96},
            "bookkeeper": {"type": kind, "vendor_id": "reseller0000000000000000000000001", "id": "bk1"}
        }
    })
}

fn request_for(sync_id: &str, kind: &str) -> DeliveryRequest {
    DeliveryRequest::new(
        AccountId::parse(ACCOUNT).expect("valid account id"),
        SyncId::parse(sync_id).expect("valid sync id"),
        &body(sync_id, kind, "29.99"),
    )
    .expect("valid delivery body")
}

fn request() -> DeliveryRequest {
    request_for("202611-audit-1", "http")
}

fn synced_in_good_standing() -> DeliveryOutcome {
    DeliveryOutcome::Synced(Acknowledgement {
        standing: StandingChange::GoodStanding,
        response_code: Some(200),
    })
}

fn retryable(outcome: DeliveryOutcome) -> RetryableError {
    match outcome {
        DeliveryOutcome::NotSynced(DeliveryError::Retryable(error)) => error,
        other => panic!("expected a retryable failure, got {other:?}"),
    }
}

#[tokio::test]
async fn http_200_is_synced_in_good_standing_with_the_protocol_headers_and_body() {
    let server = FakeBookkeeper::start().await;
    let bookkeeper = http_bookkeeper(&settings(&server.url()));
    let request = request();

    let outcome = bookkeeper.deliver(&request).await;

    assert_eq!(outcome, synced_in_good_standing());
    let received = server.requests();
    assert_eq!(received.len(), 1);
    let sent = &received[0];
    assert_eq!(sent.method, "POST");
    assert_eq!(sent.path, "/bookkeeper");
    assert_eq!(sent.header("content-type"), Some("application/json"));
    assert_eq!(sent.header("x-account-id"), Some(ACCOUNT));
    assert_eq!(sent.header("x-sync-id"), Some("202611-audit-1"));
    assert_eq!(sent.header("idempotency-key"), Some(request.idempotency_key().as_str()));
    assert_eq!(
        sent.body.as_ref(),
        request.body().as_bytes(),
        "the body goes out byte for byte"
    );
    let posted = sent.json();
    assert_eq!(posted["items"]["devices"]["sip_device"]["quantity"], json!(4));
    assert_eq!(posted["invoice"]["summary"]["recurring"].to_string(), "119.96");
    assert_eq!(server.charges().len(), 1);
}

#[tokio::test]
async fn http_402_is_synced_but_not_in_good_standing() {
    let server = FakeBookkeeper::start().await;
    server.script([Reply::Status(402)]);
    let bookkeeper = http_bookkeeper(&settings(&server.url()));

    let outcome = bookkeeper.deliver(&request()).await;

    match outcome {
        DeliveryOutcome::SyncedNotInGoodStanding(Refusal {
            reason,
            standing,
            response_code,
            message,
        }) => {
            assert_eq!(reason, "delinquent");
            assert_eq!(standing, StandingChange::Delinquent);
            assert_eq!(response_code, Some(402));
            assert!(message.contains("402"), "{message}");
        }
        other => panic!("expected synced-not-in-good-standing, got {other:?}"),
    }
    assert_eq!(server.requests().len(), 1);
}

#[tokio::test]
async fn http_500_is_retryable_and_the_retry_carries_the_same_key_and_is_charged_once() {
    let server = FakeBookkeeper::start().await;
    server.script([Reply::Status(500), Reply::Status(200)]);
    let bookkeeper = http_bookkeeper(&settings(&server.url()));
    let first_attempt = request();

    let error = retryable(bookkeeper.deliver(&first_attempt).await);
    assert_eq!(
        error,
        RetryableError::UnexpectedStatus {
            url: server.url(),
            status: 500
        }
    );
    // The sync job rebuilds the request from the same stored state for the retry.
    let retry = request();
    assert_eq!(bookkeeper.deliver(&retry).await, synced_in_good_standing());

    let keys: Vec<_> = server
        .requests()
        .iter()
        .map(|sent| sent.header("idempotency-key").map(str::to_owned))
        .collect();
    assert_eq!(keys.len(), 2);
    assert_eq!(keys[0], keys[1]);
    assert_eq!(keys[0].as_deref(), Some(first_attempt.idempotency_key().as_str()));
    assert_eq!(server.charges().len(), 1);
}

#[tokio::test]
async fn a_bookkeeper_slower_than_the_request_timeout_is_retryable_and_not_charged_twice() {
    let server = FakeBookkeeper::start().await;
    server.script([Reply::Slow {
        delay: Duration::from_secs(10),
        status: 200,
    }]);
    let bookkeeper = http_bookkeeper(&HttpBookkeeperSettings {
        request_timeout_ms: 300,
        ..settings(&server.url())
    });

    let error = retryable(bookkeeper.deliver(&request()).await);
    assert_eq!(
        error,
        RetryableError::Timeout {
            url: server.url(),
            connect_timeout_ms: 2_000,
            request_timeout_ms: 300
        }
    );
    assert_eq!(
        server.charges().len(),
        1,
        "the bookkeeper charged before the client gave up"
    );

    // The answer was lost; the retry is recognised by its key.
    assert_eq!(bookkeeper.deliver(&request()).await, synced_in_good_standing());
    assert_eq!(server.requests().len(), 2);
    assert_eq!(server.charges().len(), 1);
}

#[tokio::test]
async fn connection_refused_is_a_retryable_transport_error() {
    let listener = StdTcpListener::bind("127.0.0.1:0").expect("bind a port");
    let address = listener.local_addr().expect("bound address");
    drop(listener);
    let url = format!("http://{address}/bookkeeper");
    let bookkeeper = http_bookkeeper(&settings(&url));

    let outcome = bookkeeper.deliver(&request()).await;

    assert_eq!(outcome.response_code(), None);
    match retryable(outcome) {
        RetryableError::Transport { url: shown, detail } => {
            assert_eq!(shown, url);
            assert!(detail.to_lowercase().contains("refused"), "{detail}");
        }
        other => panic!("expected a transport error, got {other:?}"),
    }
}

#[tokio::test]
async fn a_response_lost_after_the_charge_is_retried_with_the_same_key_and_charged_once() {
    let server = FakeBookkeeper::start().await;
    server.script([Reply::ChargeThenDrop]);
    let bookkeeper = http_bookkeeper(&settings(&server.url()));
    let first_attempt = request();

    let error = retryable(bookkeeper.deliver(&first_attempt).await);
    assert!(
        matches!(error, RetryableError::Transport { .. }),
        "a connection closed before the answer is a transport error: {error:?}"
    );
    assert_eq!(server.charges().len(), 1);

    let retry = request();
    assert_eq!(retry.idempotency_key(), first_attempt.idempotency_key());
    assert_eq!(bookkeeper.deliver(&retry).await, synced_in_good_standing());

    let received = server.requests();
    assert_eq!(received.len(), 2);
    assert_eq!(
        received[0].header("idempotency-key"),
        received[1].header("idempotency-key")
    );
    assert_eq!(received[0].body, received[1].body);
    let charges = server.charges();
    assert_eq!(charges.len(), 1, "exactly one charge: {charges:?}");
    assert_eq!(charges[0].account_id.as_deref(), Some(ACCOUNT));
    assert_eq!(charges[0].body.as_ref(), first_attempt.body().as_bytes());
}

#[tokio::test]
async fn a_changed_invoice_is_a_new_delivery_with_a_new_key() {
    let server = FakeBookkeeper::start().await;
    let bookkeeper = http_bookkeeper(&settings(&server.url()));
    let account = AccountId::parse(ACCOUNT).expect("valid account id");
    let sync_id = SyncId::parse("202611-audit-1").expect("valid sync id");
    let first = DeliveryRequest::new(
        account.clone(),
        sync_id.clone(),
        &body("202611-audit-1", "http", "29.99"),
    )
    .expect("valid body");
    let repriced =
        DeliveryRequest::new(account, sync_id, &body("202611-audit-1", "http", "24.99")).expect("valid body");

    assert_eq!(bookkeeper.deliver(&first).await, synced_in_good_standing());
    assert_eq!(bookkeeper.deliver(&repriced).await, synced_in_good_standing());

    assert_ne!(first.idempotency_key(), repriced.idempotency_key());
    assert_eq!(server.charges().len(), 2);
}

#[tokio::test]
async fn the_authorization_header_is_sent_verbatim_and_omitted_when_empty() {
    let server = FakeBookkeeper::start().await;
    let with_secret = http_bookkeeper(&settings(&server.url()));
    let without_secret = http_bookkeeper(&HttpBookkeeperSettings {
        authorization_header: SecretString::default(),
        ..settings(&server.url())
    });

    assert_eq!(
        with_secret.deliver(&request_for("s-1", "http")).await,
        synced_in_good_standing()
    );
    assert_eq!(
        without_secret.deliver(&request_for("s-2", "http")).await,
        synced_in_good_standing()
    );

    let received = server.requests();
    assert_eq!(received[0].header("authorization"), Some("Bearer s3cret-token"));
    assert_eq!(received[1].header("authorization"), None);
}

#[tokio::test]
async fn an_unconfigured_url_fails_retryably_with_a_clear_message_and_sends_nothing() {
    let server = FakeBookkeeper::start().await;
    let bookkeeper = http_bookkeeper(&settings(""));

    let outcome = bookkeeper.deliver(&request()).await;

    let error = retryable(outcome.clone());
    assert!(matches!(error, RetryableError::NotConfigured { .. }), "{error:?}");
    match outcome {
        DeliveryOutcome::NotSynced(error) => {
            assert!(error.is_retryable());
            assert_eq!(error.code(), "not_configured");
            assert!(error.to_string().contains("http_url not configured"), "{error}");
        }
        other => panic!("expected not synced, got {other:?}"),
    }
    assert!(server.requests().is_empty());
}

#[tokio::test]
async fn redirects_and_other_2xx_answers_are_retried_not_followed() {
    let server = FakeBookkeeper::start().await;
    let elsewhere = format!("http://{}/elsewhere", server.address());
    server.script([Reply::Redirect(elsewhere), Reply::Status(201), Reply::Status(204)]);
    let bookkeeper = http_bookkeeper(&settings(&server.url()));

    for expected_status in [302, 201, 204] {
        let outcome = bookkeeper.deliver(&request()).await;
        assert_eq!(outcome.response_code(), Some(expected_status));
        assert!(matches!(
            retryable(outcome),
            RetryableError::UnexpectedStatus { status, .. } if status == expected_status
        ));
    }
    let paths: Vec<_> = server.requests().iter().map(|sent| sent.path.clone()).collect();
    assert_eq!(
        paths,
        ["/bookkeeper", "/bookkeeper", "/bookkeeper"],
        "the redirect was not followed"
    );
    assert!(server.charges().is_empty());
}

#[tokio::test]
async fn the_router_sends_each_type_to_its_adapter_and_rejects_braintree() {
    let server = FakeBookkeeper::start().await;
    let local = Arc::new(LocalBookkeeper::new());
    let bookkeepers = Bookkeepers::new(local.clone(), Arc::new(http_bookkeeper(&settings(&server.url()))));

    let http = bookkeepers.deliver(&request_for("s-http", "kz_bookkeeper_http")).await;
    let default = bookkeepers
        .deliver(&request_for("s-local", "kz_bookkeeper_local"))
        .await;
    let braintree = bookkeepers.deliver(&request_for("s-bt", "braintree")).await;

    assert_eq!(http, synced_in_good_standing());
    assert_eq!(
        default,
        DeliveryOutcome::Synced(Acknowledgement {
            standing: StandingChange::Unchanged,
            response_code: None
        })
    );
    match braintree {
        DeliveryOutcome::NotSynced(DeliveryError::Rejected(rejection)) => {
            assert_eq!(
                rejection,
                Rejection::UnsupportedBookkeeperType {
                    type_name: "braintree".into(),
                    bookkeeper_id: "bk1".into(),
                    vendor_id: "reseller0000000000000000000000001".into()
                }
            );
            assert!(rejection
                .to_string()
                .contains("unsupported bookkeeper type `braintree`"));
        }
        other => panic!("expected a rejection, got {other:?}"),
    }
    assert_eq!(local.accepted(), 1);
    let received = server.requests();
    assert_eq!(received.len(), 1, "only the http invoice reaches the HTTP bookkeeper");
    assert_eq!(received[0].header("x-sync-id"), Some("s-http"));
}

#[tokio::test]
async fn an_invoice_priced_by_the_core_is_delivered_exactly_as_rendered() {
    let quote_request = r#"{"plans":[{"id":"p","bookkeeper":{"type":"http","id":"bk1"},"plan":{"devices":{
        "sip_device":{"rate":29.99,"name":"SIP Device","activation_charge":10,"minimum":2}}}}],
        "quantities":{"account":{"devices":{"sip_device":4}}}}"#;
    let quote = price(
        &parse_request(quote_request).expect("valid quote request"),
        &StrategyPriorities::default(),
    )
    .expect("prices");
    let invoice = &quote.invoices[0];
    let rendered = DeliveryBody::new(ACCOUNT, "202611-audit-7", invoice);
    let request = DeliveryRequest::new(
        AccountId::parse(ACCOUNT).expect("valid account id"),
        SyncId::parse("202611-audit-7").expect("valid sync id"),
        &rendered,
    )
    .expect("the rendered body is a valid delivery");
    let server = FakeBookkeeper::start().await;

    let outcome = http_bookkeeper(&settings(&server.url())).deliver(&request).await;

    assert_eq!(outcome, synced_in_good_standing());
    let sent = &server.requests()[0];
    assert_eq!(
        sent.body.as_ref(),
        serde_json::to_vec(&rendered).expect("renders").as_slice()
    );
    let posted = sent.json();
    assert_eq!(posted["items"]["devices"]["sip_device"]["rate"].to_string(), "29.99");
    assert_eq!(posted["items"]["devices"]["sip_device"]["activation_charge"], json!(10));
    assert_eq!(posted["items"]["devices"]["sip_device"]["minimum"], json!(2));
    assert!(posted["invoice"].get("plan").is_none());
    assert_eq!(request.bookkeeper().id, "bk1");
}

#[tokio::test]
async fn a_frozen_delivery_rebuilt_from_its_stored_bytes_is_resent_identically() {
    let server = FakeBookkeeper::start().await;
    server.script([Reply::ChargeThenDrop]);
    let bookkeeper = http_bookkeeper(&settings(&server.url()));
    let first_attempt = request();
    retryable(bookkeeper.deliver(&first_attempt).await);
    // What the sync job stores after the first attempt, and reads back in another process.
    let stored_bytes = first_attempt.body().as_bytes().to_vec();
    let stored_sync_id = first_attempt.sync_id().clone();

    let retry = DeliveryRequest::from_stored_body(
        AccountId::parse(ACCOUNT).expect("valid account id"),
        stored_sync_id,
        stored_bytes,
    )
    .expect("the stored body is valid");
    assert_eq!(bookkeeper.deliver(&retry).await, synced_in_good_standing());

    let received = server.requests();
    assert_eq!(received.len(), 2);
    assert_eq!(received[0].body, received[1].body);
    assert_eq!(
        received[1].header("idempotency-key"),
        Some(first_attempt.idempotency_key().as_str())
    );
    assert_eq!(server.charges().len(), 1);
}

#[tokio::test]
async fn parallel_deliveries_through_a_shared_router_are_each_charged_once() {
    let server = FakeBookkeeper::start().await;
    let bookkeepers = Arc::new(Bookkeepers::new(
        Arc::new(LocalBookkeeper::new()),
        Arc::new(http_bookkeeper(&settings(&server.url()))),
    ));
    let mut deliveries = tokio::task::JoinSet::new();
    for index in 0..24 {
        let bookkeepers = Arc::clone(&bookkeepers);
        let sync_id = format!("202611-audit-{index}");
        let request = request_for(&sync_id, "http");
        deliveries.spawn(async move { bookkeepers.deliver(&request).await });
    }
    while let Some(outcome) = deliveries.join_next().await {
        assert_eq!(outcome.expect("delivery task completes"), synced_in_good_standing());
    }
    let charges = server.charges();
    assert_eq!(charges.len(), 24);
    let mut keys: Vec<_> = charges.iter().map(|charge| charge.idempotency_key.clone()).collect();
    keys.sort();
    keys.dedup();
    assert_eq!(keys.len(), 24, "each delivery has its own key");
}
