//! A loopback HTTP bookkeeper for `--demo` runs: it listens on 127.0.0.1 (a free
//! port), answers 200 to every delivery and counts them, so a demo exercises the real
//! HTTP delivery path without any outside system. Never used unless asked for.

use axum::routing::post;
use axum::Router;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

/// A running demo bookkeeper; stops when dropped.
pub struct DemoBookkeeper {
    address: SocketAddr,
    received: Arc<AtomicU64>,
    server: JoinHandle<()>,
}

impl DemoBookkeeper {
    /// Starts listening on 127.0.0.1, port chosen by the system.
    pub async fn start() -> std::io::Result<DemoBookkeeper> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let address = listener.local_addr()?;
        let received = Arc::new(AtomicU64::new(0));
        let counter = Arc::clone(&received);
        let app = Router::new().route(
            "/bookkeeper",
            post(move || {
                let counter = Arc::clone(&counter);
                async move {
                    counter.fetch_add(1, Ordering::Relaxed);
                    "accepted"
                }
            }),
        );
        let server = tokio::spawn(async move {
            if let Err(error) = axum::serve(listener, app).await {
                tracing::warn!(%error, "demo bookkeeper stopped");
            }
        });
        Ok(DemoBookkeeper {
            address,
            received,
            server,
        })
    }

    /// The URL to configure as `http_url`.
    pub fn url(&self) -> String {
        format!("http://{}/bookkeeper", self.address)
    }

    /// Deliveries received so far.
    pub fn received(&self) -> u64 {
        self.received.load(Ordering::Relaxed)
    }
}

impl Drop for DemoBookkeeper {
    fn drop(&mut self) {
        self.server.abort();
    }
}
