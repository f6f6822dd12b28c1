//! Kazoo's response envelope (`api.md` §1.1) and the API's refusals.

use super::routes::allowed;
use super::{AUTH_TOKEN_HEADER, REQUEST_ID_HEADER};
use crate::ops::{OpsError, Page};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value};
use std::sync::Arc;

/// What an operation answered: a value, or a page of a listing.
pub(super) enum Reply {
    Value(Value),
    Page(Page),
}

impl From<Value> for Reply {
    fn from(value: Value) -> Reply {
        Reply::Value(value)
    }
}

impl From<Page> for Reply {
    fn from(page: Page) -> Reply {
        Reply::Page(page)
    }
}

/// A refusal in Kazoo's terms.
#[derive(Debug)]
pub(super) struct ApiError {
    status: StatusCode,
    message: String,
    data: Value,
    /// What went wrong inside, for the log only (500s).
    internal: Option<String>,
    allow: Option<String>,
    /// Seconds for the `Retry-After` header of a 429.
    retry_after: Option<u64>,
}

impl ApiError {
    fn new(status: StatusCode, message: &str) -> ApiError {
        ApiError {
            status,
            message: message.to_owned(),
            data: Value::Object(Map::new()),
            internal: None,
            allow: None,
            retry_after: None,
        }
    }

    /// One of Kazoo's system errors: `message` is the error's code, `data.message` its
    /// text (`cb_context:build_system_error`).
    fn system(status: StatusCode, code: &str, text: &str) -> ApiError {
        ApiError {
            data: serde_json::json!({ "message": text }),
            ..ApiError::new(status, code)
        }
    }

    pub(super) fn invalid_credentials() -> ApiError {
        ApiError::system(StatusCode::UNAUTHORIZED, "invalid_credentials", "invalid credentials")
    }

    /// Too many failed logins from one address (`api::login`).
    pub(super) fn too_many_requests(retry_after_seconds: u64) -> ApiError {
        ApiError {
            retry_after: Some(retry_after_seconds),
            ..ApiError::new(StatusCode::TOO_MANY_REQUESTS, "too many requests")
        }
    }

    pub(super) fn not_found() -> ApiError {
        ApiError::system(StatusCode::NOT_FOUND, "not_found", "not found")
    }

    pub(super) fn body_too_large() -> ApiError {
        ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "request body too large")
    }

    pub(super) fn method_not_allowed(path: &str) -> ApiError {
        let verbs: Vec<&str> = allowed(path).into_iter().map(|verb| verb.as_str()).collect();
        ApiError {
            allow: Some(verbs.join(", ")),
            ..ApiError::new(StatusCode::METHOD_NOT_ALLOWED, "method not allowed")
        }
    }
}

impl From<OpsError> for ApiError {
    fn from(error: OpsError) -> ApiError {
        let status = StatusCode::from_u16(error.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        ApiError {
            status,
            message: error.message(),
            data: error.data(),
            internal: status.is_server_error().then(|| error.to_string()),
            allow: None,
            retry_after: None,
        }
    }
}

/// The members every envelope repeats.
pub(super) struct Meta {
    pub(super) request_id: String,
    auth_token: String,
    node: Arc<str>,
}

impl Meta {
    /// The request id (`X-Request-ID` as the middleware settled it) and the token.
    pub(super) fn of(node: &Arc<str>, headers: &HeaderMap) -> Meta {
        let request_id = super::observe::request_id(headers);
        let auth_token = headers
            .get(AUTH_TOKEN_HEADER)
            .and_then(|value| value.to_str().ok())
            .map(|token| token.trim().to_owned())
            .unwrap_or_default();
        Meta {
            request_id,
            auth_token,
            node: node.clone(),
        }
    }

    /// `auth_token` is the token the answer is about: the caller's on a success, the
    /// new one on a login; an error never echoes the token it was sent.
    fn common(&self, body: &mut Map<String, Value>, auth_token: &str) {
        body.insert("timestamp".to_owned(), Value::String(timestamp()));
        body.insert(
            "version".to_owned(),
            Value::String(env!("CARGO_PKG_VERSION").to_owned()),
        );
        body.insert("node".to_owned(), Value::String(self.node.to_string()));
        body.insert("request_id".to_owned(), Value::String(self.request_id.clone()));
        body.insert("auth_token".to_owned(), Value::String(auth_token.to_owned()));
    }

    /// A success; `revision` is the answered document's (`"undefined"` without one).
    pub(super) fn success(&self, reply: Reply, revision: Option<i64>) -> Response {
        let mut body = Map::new();
        match reply {
            Reply::Value(data) => {
                body.insert("data".to_owned(), data);
            }
            Reply::Page(page) => {
                body.insert("data".to_owned(), Value::Array(page.rows));
                if let Some(size) = page.page_size {
                    body.insert("page_size".to_owned(), Value::from(size));
                }
                if let Some(key) = page.start_key {
                    body.insert("start_key".to_owned(), Value::String(key));
                }
                if let Some(key) = page.next_start_key {
                    body.insert("next_start_key".to_owned(), Value::String(key));
                }
            }
        }
        let revision = revision.map_or_else(|| "undefined".to_owned(), |revision| revision.to_string());
        body.insert("revision".to_owned(), Value::String(revision));
        body.insert("status".to_owned(), Value::String("success".to_owned()));
        self.common(&mut body, &self.auth_token);
        self.respond(StatusCode::OK, body, None)
    }

    /// A login's answer: 201 with the new token in `auth_token`, as Kazoo's PUT.
    pub(super) fn issued(&self, token: &str, data: Value) -> Response {
        let mut body = Map::new();
        body.insert("data".to_owned(), data);
        body.insert("revision".to_owned(), Value::String("undefined".to_owned()));
        body.insert("status".to_owned(), Value::String("success".to_owned()));
        self.common(&mut body, token);
        self.respond(StatusCode::CREATED, body, None)
    }

    pub(super) fn failure(&self, error: ApiError) -> Response {
        if let Some(internal) = &error.internal {
            tracing::error!(request_id = %self.request_id, status = error.status.as_u16(), error = %internal, "request failed");
        }
        let mut body = Map::new();
        body.insert("data".to_owned(), error.data);
        body.insert("error".to_owned(), Value::String(error.status.as_u16().to_string()));
        body.insert("message".to_owned(), Value::String(error.message));
        body.insert("status".to_owned(), Value::String("error".to_owned()));
        self.common(&mut body, "");
        let mut response = self.respond(error.status, body, error.allow);
        if let Some(seconds) = error.retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        response
    }

    fn respond(&self, status: StatusCode, body: Map<String, Value>, allow: Option<String>) -> Response {
        let text = serde_json::to_string(&Value::Object(body)).unwrap_or_else(|_| "{}".to_owned());
        let mut response = (status, [(header::CONTENT_TYPE, "application/json")], text).into_response();
        if let Ok(id) = HeaderValue::from_str(&self.request_id) {
            response.headers_mut().insert(REQUEST_ID_HEADER, id);
        }
        if let Some(allow) = allow.and_then(|allow| HeaderValue::from_str(&allow).ok()) {
            response.headers_mut().insert(header::ALLOW, allow);
        }
        response
    }
}

/// ISO-8601 UTC, to the second.
fn timestamp() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// `bytes` random bytes as lowercase hex.
pub(super) fn random_hex(bytes: usize) -> String {
    let mut buffer = vec![0u8; bytes];
    if getrandom::getrandom(&mut buffer).is_err() {
        // No entropy source: an id unique enough to find the request in the log.
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|elapsed| elapsed.as_nanos())
            .unwrap_or_default();
        return format!("{nanos:032x}");
    }
    hex::encode(buffer)
}
