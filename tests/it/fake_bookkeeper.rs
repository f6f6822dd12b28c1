//! A fake HTTP bookkeeper: a real HTTP server on 127.0.0.1, port 0, for the bookkeeper
//! and sync tests.
//!
//! It records every request (method, path, headers, body), answers from a script
//! (default: 200), and behaves like a bookkeeper that honours `Idempotency-Key`: a
//! request it accepts (200 or 402, or a charge whose response is then lost) is
//! recorded as a charge under its key, and a later request with a key already charged
//! gets the first answer again without a second charge. So "charged exactly once" is
//! something a test can assert, and a client that forgot the key or changed it
//! between retries shows up as two charges.
//!
//! Connections are served one by one (an axum router on hyper) so that a reply can
//! close its connection without answering: the lost-response case.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{header, HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Router;
use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;
use serde_json::Value;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::{JoinHandle, JoinSet};

/// What the fake answers to the next request.
#[derive(Debug, Clone)]
pub enum Reply {
    /// Answer at once with this status. 200 and 402 record a charge.
    Status(u16),
    /// Record the charge (for 200 and 402) at once, then answer after `delay`: with a
    /// delay beyond the client's timeout, the bookkeeper charged but the client never
    /// heard.
    Slow { delay: Duration, status: u16 },
    /// Record a charge (as if answering 200) and close the connection without any
    /// response: the answer is lost on the way back.
    ChargeThenDrop,
    /// Answer `302 Found` with this `Location`; no charge.
    Redirect(String),
}

/// One request as the fake received it.
#[derive(Debug, Clone)]
pub struct RecordedRequest {
    pub method: Method,
    pub path: String,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl RecordedRequest {
    /// A header as text (`None` when absent or not visible ASCII).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|value| value.to_str().ok())
    }

    /// The body parsed as JSON (numbers keep their text).
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).expect("the fake bookkeeper only receives JSON")
    }
}

/// A charge the fake bookkeeper recorded.
#[derive(Debug, Clone)]
pub struct Charge {
    pub idempotency_key: Option<String>,
    pub account_id: Option<String>,
    /// The status the bookkeeper decided on (200 or 402), replayed to duplicates.
    pub status: u16,
    pub body: Bytes,
}

#[derive(Debug, Default)]
struct Ledger {
    script: VecDeque<Reply>,
    requests: Vec<RecordedRequest>,
    charges: Vec<Charge>,
}

/// Per-connection handler state: the shared ledger and the switch that drops this
/// connection.
#[derive(Clone)]
struct Connection {
    ledger: Arc<Mutex<Ledger>>,
    drop_connection: Arc<Mutex<Option<oneshot::Sender<()>>>>,
}

/// A running fake bookkeeper; stops when dropped.
pub struct FakeBookkeeper {
    address: SocketAddr,
    ledger: Arc<Mutex<Ledger>>,
    server: JoinHandle<()>,
}

impl FakeBookkeeper {
    /// Binds 127.0.0.1 on a free port and serves until dropped.
    pub async fn start() -> FakeBookkeeper {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind 127.0.0.1:0 for the fake bookkeeper");
        let address = listener.local_addr().expect("a bound listener has an address");
        let ledger = Arc::new(Mutex::new(Ledger::default()));
        let server = tokio::spawn(serve(listener, Arc::clone(&ledger)));
        FakeBookkeeper {
            address,
            ledger,
            server,
        }
    }

    /// The URL to configure as `http_url`.
    pub fn url(&self) -> String {
        format!("http://{}/bookkeeper", self.address)
    }

    pub fn address(&self) -> SocketAddr {
        self.address
    }

    /// Appends replies for the next requests (after the script runs out: 200).
    pub fn script(&self, replies: impl IntoIterator<Item = Reply>) {
        self.lock().script.extend(replies);
    }

    /// Every request received so far, in order.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.lock().requests.clone()
    }

    /// Every charge recorded so far, in order.
    pub fn charges(&self) -> Vec<Charge> {
        self.lock().charges.clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Ledger> {
        self.ledger
            .lock()
            .expect("the fake bookkeeper's ledger is never poisoned")
    }
}

impl Drop for FakeBookkeeper {
    fn drop(&mut self) {
        // Aborting the accept loop drops its JoinSet, which aborts every connection.
        self.server.abort();
    }
}

async fn serve(listener: TcpListener, ledger: Arc<Mutex<Ledger>>) {
    let mut connections = JoinSet::new();
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _peer)) => stream,
            Err(_) => continue,
        };
        while connections.try_join_next().is_some() {}
        let (drop_sender, drop_receiver) = oneshot::channel::<()>();
        let connection = Connection {
            ledger: Arc::clone(&ledger),
            drop_connection: Arc::new(Mutex::new(Some(drop_sender))),
        };
        let service = TowerToHyperService::new(Router::new().fallback(handle).with_state(connection));
        connections.spawn(async move {
            let serving = hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), service);
            // Dropping the connection future closes the socket with no response.
            tokio::select! {
                _ = serving => {}
                _ = drop_receiver => {}
            }
        });
    }
}

async fn handle(
    State(connection): State<Connection>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let key = headers
        .get("idempotency-key")
        .and_then(|value| value.to_str().ok())
        .map(str::to_owned);
    let account_id = headers
        .get("x-account-id")
        .and_then(|value| value.to_str().ok())
        .map(str::to_owned);
    let reply = {
        let mut ledger = connection.ledger.lock().expect("ledger is never poisoned");
        ledger.requests.push(RecordedRequest {
            method,
            path: uri.path().to_owned(),
            headers,
            body: body.clone(),
        });
        let replayed = key.as_ref().and_then(|key| {
            ledger
                .charges
                .iter()
                .find(|charge| charge.idempotency_key.as_ref() == Some(key))
                .map(|charge| charge.status)
        });
        if let Some(status) = replayed {
            return status_response(status);
        }
        let reply = ledger.script.pop_front().unwrap_or(Reply::Status(200));
        let charged_status = match &reply {
            Reply::Status(status) | Reply::Slow { status, .. } if matches!(status, 200 | 402) => Some(*status),
            Reply::ChargeThenDrop => Some(200),
            Reply::Status(_) | Reply::Slow { .. } | Reply::Redirect(_) => None,
        };
        if let Some(status) = charged_status {
            ledger.charges.push(Charge {
                idempotency_key: key,
                account_id,
                status,
                body,
            });
        }
        reply
    };
    match reply {
        Reply::Status(status) => status_response(status),
        Reply::Slow { delay, status } => {
            tokio::time::sleep(delay).await;
            status_response(status)
        }
        Reply::ChargeThenDrop => {
            let sender = connection
                .drop_connection
                .lock()
                .expect("drop switch is never poisoned")
                .take();
            if let Some(sender) = sender {
                let _ = sender.send(());
            }
            std::future::pending::<Response>().await
        }
        Reply::Redirect(location) => (StatusCode::FOUND, [(header::LOCATION, location)]).into_response(),
    }
}

fn status_response(status: u16) -> Response {
    let status = StatusCode::from_u16(status).expect("scripted statuses are valid HTTP statuses");
    (status, "{\"ignored\": \"the client must not read this body\"}").into_response()
}
