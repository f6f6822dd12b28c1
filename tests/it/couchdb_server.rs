//! A real CouchDB-protocol server for the ingestion tests: pouchdb-server, in memory, on
//! a free port of 127.0.0.1, killed when dropped.
//!
//! It is installed by `npm ci --prefix tests/couchdb` (CI does). When it is not, a test
//! that asks for it prints a loud `SKIPPED` line and returns, unless
//! `TALLY_REQUIRE_COUCHDB=1`, which turns the skip into a failure.

use serde_json::{json, Value};
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct CouchServer {
    process: Child,
    /// The server's base URL, `http://127.0.0.1:PORT/`.
    pub url: String,
    http: reqwest::Client,
    /// pouchdb-server writes `log.txt` and `config.json` in its working directory.
    _directory: tempfile::TempDir,
}

impl CouchServer {
    /// Starts a server, or returns `None` (after a loud message) when pouchdb-server is
    /// not installed and `TALLY_REQUIRE_COUCHDB` is not `1`.
    pub async fn start() -> Option<CouchServer> {
        let binary = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/couchdb/node_modules/.bin/pouchdb-server");
        if !binary.exists() {
            if std::env::var("TALLY_REQUIRE_COUCHDB").as_deref() == Ok("1") {
                panic!(
                    "pouchdb-server not installed at {} and TALLY_REQUIRE_COUCHDB=1",
                    binary.display()
                );
            }
            eprintln!("SKIPPED: pouchdb-server not installed (run npm ci in tests/couchdb)");
            return None;
        }
        let port = TcpListener::bind("127.0.0.1:0")
            .expect("a free port")
            .local_addr()
            .expect("address")
            .port();
        let directory = tempfile::tempdir().expect("a temporary directory");
        let process = Command::new(&binary)
            .args(["--in-memory", "--host", "127.0.0.1", "--port", &port.to_string()])
            .current_dir(directory.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start pouchdb-server");
        let server = CouchServer {
            process,
            url: format!("http://127.0.0.1:{port}/"),
            http: reqwest::Client::new(),
            _directory: directory,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(response) = server.http.get(&server.url).send().await {
                if response.status().is_success() {
                    return Some(server);
                }
            }
            assert!(
                Instant::now() < deadline,
                "pouchdb-server did not answer on {} within 30 s",
                server.url
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Creates a database; `name` as it travels in a URL (`account%2F4f%2F…`).
    pub async fn create_database(&self, name: &str) {
        let response = self
            .http
            .put(format!("{}{name}", self.url))
            .send()
            .await
            .expect("PUT database");
        assert!(response.status().is_success(), "PUT {name}: {}", response.status());
    }

    /// Writes a document (with its `_id`, and `_rev` for an update); returns the new rev.
    pub async fn put(&self, database: &str, document: Value) -> String {
        let id = document["_id"].as_str().expect("an _id").to_owned();
        let url = format!("{}{database}/{}", self.url, id.replace('+', "%2B"));
        let response = self.http.put(url).json(&document).send().await.expect("PUT document");
        let status = response.status();
        let body: Value = response.json().await.expect("JSON answer");
        assert!(status.is_success(), "PUT {database}/{id}: {status} {body}");
        body["rev"].as_str().expect("rev").to_owned()
    }

    /// Writes many new documents at once (`_bulk_docs`); `database` as in a URL.
    pub async fn bulk_docs(&self, database: &str, documents: &[Value]) {
        let url = format!("{}{database}/_bulk_docs", self.url);
        let response = self
            .http
            .post(url)
            .json(&json!({ "docs": documents }))
            .send()
            .await
            .expect("POST _bulk_docs");
        let status = response.status();
        let body: Value = response.json().await.expect("JSON answer");
        assert!(status.is_success(), "_bulk_docs {database}: {status}");
        let failed: Vec<&Value> = body
            .as_array()
            .map(|results| results.iter().filter(|result| result.get("error").is_some()).collect())
            .unwrap_or_default();
        assert!(failed.is_empty(), "_bulk_docs {database}: {failed:?}");
    }

    /// Loads documents grouped by database (any Kazoo form of the name), creating each
    /// database first; `_rev`s are dropped, the server gives its own.
    pub async fn load(&self, documents: &[(String, Value)]) {
        let mut by_database: std::collections::BTreeMap<String, Vec<Value>> = std::collections::BTreeMap::new();
        for (database, document) in documents {
            let canonical = tally::domain::inventory::Database::parse(database).canonical_name();
            let mut document = document.clone();
            if let Some(fields) = document.as_object_mut() {
                fields.remove("_rev");
            }
            by_database.entry(url_name(&canonical)).or_default().push(document);
        }
        for (database, documents) in by_database {
            self.create_database(&database).await;
            for chunk in documents.chunks(2_000) {
                self.bulk_docs(&database, chunk).await;
            }
        }
    }

    /// Reads a document (with its current `_rev`).
    pub async fn get(&self, database: &str, id: &str) -> Value {
        let url = format!("{}{database}/{}", self.url, id.replace('+', "%2B"));
        let response = self.http.get(url).send().await.expect("GET document");
        assert!(
            response.status().is_success(),
            "GET {database}/{id}: {}",
            response.status()
        );
        response.json().await.expect("JSON document")
    }

    /// Deletes a document at `rev`.
    pub async fn delete(&self, database: &str, id: &str, rev: &str) {
        let url = format!("{}{database}/{id}?rev={rev}", self.url);
        let response = self.http.delete(url).send().await.expect("DELETE document");
        assert!(
            response.status().is_success(),
            "DELETE {database}/{id}: {}",
            response.status()
        );
    }

    /// Ends the admin party: from now on, requests with wrong credentials are refused.
    pub async fn create_admin(&self, username: &str, password: &str) {
        let url = format!("{}_config/admins/{username}", self.url);
        let response = self
            .http
            .put(url)
            .json(&json!(password))
            .send()
            .await
            .expect("PUT admin");
        assert!(response.status().is_success(), "create admin: {}", response.status());
    }
}

impl Drop for CouchServer {
    fn drop(&mut self) {
        let _ = self.process.kill();
        let _ = self.process.wait();
    }
}

/// A database name as it travels in a URL: `/` and `+` encoded.
pub fn url_name(name: &str) -> String {
    name.replace('/', "%2F").replace('+', "%2B")
}
