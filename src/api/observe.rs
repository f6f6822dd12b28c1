//! What the API says about itself, outside Kazoo's tree: the request id, one access-log
//! line per request, the Prometheus request metrics (`GET /metrics`) and the liveness
//! and readiness check (`GET /healthz`).
//!
//! One middleware ([`observe`]) wraps every request, the Kazoo routes, the fallbacks
//! and these two alike: it settles the request id before anything reads it, times the
//! request, counts it under its route template (never the raw path, so the number of
//! series stays bounded by the route table) and writes the access-log line. The
//! registry is hand-written: two metric families with fixed labels do not need a
//! client library, and the text format is small (as in `crate::metrics`).

use super::REQUEST_ID_HEADER;
use crate::domain::AccountId;
use crate::store::Store;
use axum::extract::{MatchedPath, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The route label of a request no route matched (any path outside the table).
const UNMATCHED_ROUTE: &str = "unmatched";

/// Upper bounds of the latency histogram's buckets, in seconds (Prometheus' defaults).
const BUCKETS_SECONDS: [f64; 11] = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];

/// How long `/healthz` waits for the database before answering 503.
const HEALTH_TIMEOUT: Duration = Duration::from_secs(2);

/// The account a request acted as, put on the response by the handler so the access
/// log can name it (requests refused before authentication have none).
#[derive(Debug, Clone)]
pub(super) struct CallerAccount(pub(super) AccountId);

/// The request id of a request: the client's `X-Request-ID` when it is a sane token
/// (1 to 128 visible ASCII characters), else a new random one.
pub(super) fn request_id(headers: &HeaderMap) -> String {
    let given = headers
        .get(REQUEST_ID_HEADER)
        .and_then(|value| value.to_str().ok())
        .filter(|id| !id.is_empty() && id.len() <= 128 && id.bytes().all(|byte| byte.is_ascii_graphic()));
    match given {
        Some(id) => id.to_owned(),
        None => super::envelope::random_hex(16),
    }
}

/// One series: requests of one (method, route, status).
#[derive(Debug, Default, Clone)]
struct Series {
    count: u64,
    /// Requests at or under each bound of [`BUCKETS_SECONDS`] (cumulative at render).
    buckets: [u64; BUCKETS_SECONDS.len()],
    /// Total time, in nanoseconds (exact; shown in seconds).
    nanos: u128,
}

type SeriesKey = (String, String, u16);

/// Request counts and latencies by method, route template and status.
#[derive(Debug, Default, Clone)]
pub struct RequestMetrics {
    series: Arc<Mutex<BTreeMap<SeriesKey, Series>>>,
}

impl RequestMetrics {
    /// Counts one request.
    pub fn record(&self, method: &str, route: &str, status: u16, elapsed: Duration) {
        let seconds = elapsed.as_secs_f64();
        let mut series = self.series.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let entry = series.entry((method.to_owned(), route.to_owned(), status)).or_default();
        entry.count += 1;
        entry.nanos += elapsed.as_nanos();
        if let Some(index) = BUCKETS_SECONDS.iter().position(|bound| seconds <= *bound) {
            entry.buckets[index] += 1;
        }
    }

    /// The Prometheus text exposition format (version 0.0.4).
    pub fn render(&self) -> String {
        let series = self
            .series
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone();
        let mut text = String::new();
        text.push_str(
            "# HELP tally_http_requests_total HTTP requests answered, by method, route template and status.\n",
        );
        text.push_str("# TYPE tally_http_requests_total counter\n");
        for ((method, route, status), figures) in &series {
            let labels = labels(method, route, *status);
            let _ = writeln!(text, "tally_http_requests_total{{{labels}}} {}", figures.count);
        }
        text.push_str(
            "# HELP tally_http_request_duration_seconds Time to answer an HTTP request, by method, route template and status.\n",
        );
        text.push_str("# TYPE tally_http_request_duration_seconds histogram\n");
        for ((method, route, status), figures) in &series {
            let labels = labels(method, route, *status);
            let mut cumulative = 0;
            for (bound, count) in BUCKETS_SECONDS.iter().zip(figures.buckets) {
                cumulative += count;
                let _ = writeln!(
                    text,
                    "tally_http_request_duration_seconds_bucket{{{labels},le=\"{bound}\"}} {cumulative}"
                );
            }
            let _ = writeln!(
                text,
                "tally_http_request_duration_seconds_bucket{{{labels},le=\"+Inf\"}} {}",
                figures.count
            );
            let seconds = Duration::from_nanos(u64::try_from(figures.nanos).unwrap_or(u64::MAX)).as_secs_f64();
            let _ = writeln!(text, "tally_http_request_duration_seconds_sum{{{labels}}} {seconds}");
            let _ = writeln!(
                text,
                "tally_http_request_duration_seconds_count{{{labels}}} {}",
                figures.count
            );
        }
        text
    }
}

fn labels(method: &str, route: &str, status: u16) -> String {
    format!(
        "method=\"{}\",route=\"{}\",status=\"{status}\"",
        escape_label(method),
        escape_label(route)
    )
}

/// Escapes a label value as the exposition format requires.
fn escape_label(value: &str) -> String {
    value.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

/// What the middleware needs: the metrics it counts into.
#[derive(Clone)]
pub(super) struct Observer {
    pub(super) metrics: RequestMetrics,
}

/// The middleware around every request: request id in (set on the request, so the
/// envelope reads the same one) and out (`X-Request-ID`), timing, metrics, and the
/// access-log line (`target: tally::api::access`): method, route template, status,
/// duration_ms, request_id, account_id.
pub(super) async fn observe(State(observer): State<Observer>, mut request: Request, next: Next) -> Response {
    let started = Instant::now();
    let request_id = request_id(request.headers());
    if let Ok(value) = HeaderValue::from_str(&request_id) {
        request.headers_mut().insert(REQUEST_ID_HEADER, value);
    }
    let method = request.method().as_str().to_owned();
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map(|path| path.as_str().to_owned())
        .unwrap_or_else(|| UNMATCHED_ROUTE.to_owned());
    let mut response = next.run(request).await;
    let elapsed = started.elapsed();
    let status = response.status().as_u16();
    if !response.headers().contains_key(REQUEST_ID_HEADER) {
        if let Ok(value) = HeaderValue::from_str(&request_id) {
            response.headers_mut().insert(REQUEST_ID_HEADER, value);
        }
    }
    observer.metrics.record(&method, &route, status, elapsed);
    let account = response
        .extensions()
        .get::<CallerAccount>()
        .map(|CallerAccount(account)| account.to_string());
    tracing::info!(
        target: "tally::api::access",
        method = %method,
        route = %route,
        status,
        duration_ms = elapsed.as_secs_f64() * 1000.0,
        request_id = %request_id,
        account_id = account.as_deref(),
        "request"
    );
    response
}

/// `GET /metrics`.
pub(super) async fn metrics(State(observer): State<Observer>) -> Response {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")],
        observer.metrics.render(),
    )
        .into_response()
}

/// `GET /healthz`: 200 when the database answers a trivial query within
/// [`HEALTH_TIMEOUT`], else 503; the cause goes to the log, not to the client.
pub(super) async fn healthz(State(store): State<Store>) -> Response {
    let outcome = tokio::time::timeout(HEALTH_TIMEOUT, store.ping()).await;
    let (status, database) = match outcome {
        Ok(Ok(())) => (StatusCode::OK, "ok"),
        Ok(Err(error)) => {
            tracing::warn!(%error, "health check: the database did not answer");
            (StatusCode::SERVICE_UNAVAILABLE, "unavailable")
        }
        Err(_) => {
            tracing::warn!(
                timeout_ms = HEALTH_TIMEOUT.as_millis() as u64,
                "health check: the database timed out"
            );
            (StatusCode::SERVICE_UNAVAILABLE, "unavailable")
        }
    };
    let body = serde_json::json!({
        "status": if status == StatusCode::OK { "ok" } else { "unavailable" },
        "checks": { "database": database },
        "version": env!("CARGO_PKG_VERSION"),
    });
    (status, [(header::CONTENT_TYPE, "application/json")], body.to_string()).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_exposition_counts_requests_and_cumulative_buckets_per_series() {
        let metrics = RequestMetrics::default();
        let route = "/v2/accounts/{account_id}/services";
        metrics.record("GET", route, 200, Duration::from_millis(3));
        metrics.record("GET", route, 200, Duration::from_millis(40));
        metrics.record("GET", route, 200, Duration::from_secs(20));
        metrics.record("POST", UNMATCHED_ROUTE, 404, Duration::from_millis(1));
        let text = metrics.render();
        let labels = format!("method=\"GET\",route=\"{route}\",status=\"200\"");
        for line in [
            format!("tally_http_requests_total{{{labels}}} 3"),
            "tally_http_requests_total{method=\"POST\",route=\"unmatched\",status=\"404\"} 1".to_owned(),
            format!("tally_http_request_duration_seconds_bucket{{{labels},le=\"0.005\"}} 1"),
            format!("tally_http_request_duration_seconds_bucket{{{labels},le=\"0.025\"}} 1"),
            format!("tally_http_request_duration_seconds_bucket{{{labels},le=\"0.05\"}} 2"),
            format!("tally_http_request_duration_seconds_bucket{{{labels},le=\"10\"}} 2"),
            format!("tally_http_request_duration_seconds_bucket{{{labels},le=\"+Inf\"}} 3"),
            format!("tally_http_request_duration_seconds_sum{{{labels}}} 20.043"),
            format!("tally_http_request_duration_seconds_count{{{labels}}} 3"),
            "# TYPE tally_http_requests_total counter".to_owned(),
            "# TYPE tally_http_request_duration_seconds histogram".to_owned(),
        ] {
            assert!(text.lines().any(|found| found == line), "{line} missing in:\n{text}");
        }
    }

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(escape_label("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }

    #[test]
    fn request_ids_are_taken_when_sane_and_made_otherwise() {
        let mut headers = HeaderMap::new();
        headers.insert(REQUEST_ID_HEADER, HeaderValue::from_static("req-42"));
        assert_eq!(request_id(&headers), "req-42");
        headers.insert(REQUEST_ID_HEADER, HeaderValue::from_static("has space"));
        let made = request_id(&headers);
        assert_eq!(made.len(), 32, "{made}");
        assert_ne!(request_id(&HeaderMap::new()), made);
    }
}
