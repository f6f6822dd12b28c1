//! Following a CouchDB server (`tally inventory follow`, the `ingest` job): its
//! databases' `_changes` feeds, read from each database's checkpoint and handed over
//! page by page as [`SourceBatch`]es that carry the checkpoint after them.
//!
//! This module owns the CouchDB protocol and nothing else: it neither maps documents
//! nor writes them; the caller's sink does, and the checkpoint it receives is written
//! in the same transaction as the page's documents.
//!
//! Invariants:
//! - The checkpoint is never ahead of what was written: a database's next page is not
//!   read before the sink has accepted the previous one.
//! - `accounts` is handed over before any other database (documents reference accounts).
//! - Credentials never appear in a checkpoint's `source`, an error, or a log line.
//! - Request URLs use the database name exactly as the server listed it, percent-encoded
//!   (pouchdb-server lists `account/xx/yy/rest` as `accountxxyyrest`, and only that
//!   name reaches the database); tally keeps the canonical name.

use super::sources::{arrival_rank, document_of_change};
use super::{RawDocument, SourceBatch};
use crate::domain::inventory::{Checkpoint, Database, Secret};
use futures_util::StreamExt;
use reqwest::{StatusCode, Url};
use serde_json::Value;
use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::time::Duration;

/// How many databases' first pages are read at once. Most databases of a steady-state
/// cycle have no change, so a cycle is mostly one small request per database: a few in
/// flight hide the round trips without loading the server.
const CONCURRENT_DATABASES: usize = 4;

/// How to reach the server; the lead maps `[ingest.couchdb]` onto it.
#[derive(Debug, Clone)]
pub struct CouchSettings {
    /// The server's base URL, e.g. `http://127.0.0.1:5984/`. Credentials in it
    /// (`http://user:pw@host/`) are used when `username` is not given, and removed.
    pub url: String,
    pub username: Option<String>,
    pub password: Option<Secret>,
    /// Changes per page (`limit`), hence documents per batch; 0 means 1,000.
    pub batch_size: usize,
    /// Each request's time limit (connect and body).
    pub timeout: Duration,
}

/// Why the server could not be followed. The variants are the caller's decisions.
#[derive(Debug, thiserror::Error)]
pub enum CouchError {
    /// Connection refused, timeout, a cut body, a 5xx: try again later; the run exits
    /// 75 (temporary failure) and the checkpoints stay where they are.
    #[error("CouchDB at {url} is unreachable: {detail}")]
    Unreachable { url: String, detail: String },
    /// 401 or 403: the credentials are wrong or lack rights. Retrying will not help.
    #[error("CouchDB at {url} refused the request ({status}): check the credentials")]
    Refused { url: String, status: u16 },
    /// 404: the database vanished (deleted between listing and reading).
    /// [`follow_cycle`] skips such a database with a warning.
    #[error("CouchDB at {url}: not found")]
    NotFound { url: String },
    /// Any other answer (an unexpected status, a body that is not the protocol's), or
    /// settings that cannot make a client. Not temporary.
    #[error("CouchDB at {url}: {detail}")]
    Protocol { url: String, detail: String },
}

impl CouchError {
    /// Whether retrying later may succeed (the run exits 75 and keeps its checkpoints).
    pub fn is_temporary(&self) -> bool {
        match self {
            CouchError::Unreachable { .. } => true,
            CouchError::Refused { .. } | CouchError::NotFound { .. } | CouchError::Protocol { .. } => false,
        }
    }
}

/// The error of [`follow_cycle`]: the server's, or the sink's (as the sink gave it).
#[derive(Debug, thiserror::Error)]
pub enum FollowError<E> {
    #[error(transparent)]
    Couch(#[from] CouchError),
    #[error("writing a batch failed: {0}")]
    Sink(E),
}

/// A database as the server listed it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListedDatabase {
    /// The exact name the server listed, the one request URLs must use.
    pub listed: String,
    pub database: Database,
}

/// One page of a database's `_changes` feed.
#[derive(Debug, Clone)]
pub struct ChangesPage {
    /// The documents, tombstones for deletions (origins `couchdb {db} seq {seq}`).
    pub documents: Vec<RawDocument>,
    /// How many results the page had (documents and unusable results).
    pub results: usize,
    /// Results that cannot be documents, as `(origin, problem)`: logged and skipped.
    pub problems: Vec<(String, String)>,
    /// The feed's position after this page, as the server wrote it.
    pub last_seq: String,
}

/// What a follow cycle did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CycleReport {
    /// Inventory databases listed and read.
    pub databases: usize,
    /// Batches handed to the sink (pages with at least one result).
    pub batches: usize,
    pub documents: usize,
    /// Results skipped because they could not be documents (logged as warnings).
    pub problems: usize,
    /// Databases listed but gone when read (404), by canonical name; skipped.
    pub vanished: Vec<String>,
}

/// A client of one CouchDB server.
#[derive(Clone)]
pub struct CouchClient {
    http: reqwest::Client,
    /// The base URL without credentials, ending in `/`.
    base: Url,
    credentials: Option<(String, Option<Secret>)>,
    batch_size: usize,
}

impl fmt::Debug for CouchClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CouchClient")
            .field("base", &self.base.as_str())
            .finish_non_exhaustive()
    }
}

impl CouchClient {
    pub fn new(settings: &CouchSettings) -> Result<CouchClient, CouchError> {
        let protocol = |detail: String| CouchError::Protocol {
            url: "(settings)".to_owned(),
            detail,
        };
        let mut base = Url::parse(&settings.url).map_err(|error| protocol(format!("invalid URL: {error}")))?;
        if !matches!(base.scheme(), "http" | "https") {
            return Err(protocol(format!("{:?} is not an http or https URL", base.scheme())));
        }
        let in_url = match base.username() {
            "" => None,
            username => Some((
                decode(username),
                base.password().map(|password| Secret::new(decode(password))),
            )),
        };
        let _ = base.set_username("");
        let _ = base.set_password(None);
        base.set_query(None);
        base.set_fragment(None);
        if !base.path().ends_with('/') {
            let path = format!("{}/", base.path());
            base.set_path(&path);
        }
        let credentials = match &settings.username {
            Some(username) => Some((username.clone(), settings.password.clone())),
            None => in_url,
        };
        let http = reqwest::Client::builder()
            .timeout(settings.timeout)
            .connect_timeout(settings.timeout)
            .build()
            .map_err(|error| protocol(format!("cannot build an HTTP client: {error}")))?;
        let batch_size = if settings.batch_size == 0 {
            super::sources::DEFAULT_BATCH_SIZE
        } else {
            settings.batch_size
        };
        Ok(CouchClient {
            http,
            base,
            credentials,
            batch_size,
        })
    }

    /// The checkpoints' `source`: the base URL without credentials.
    pub fn source(&self) -> &str {
        self.base.as_str()
    }

    /// The inventory databases (`holds_inventory`), `accounts` first, then account
    /// databases, numbers and port requests, each group by canonical name.
    pub async fn all_dbs(&self) -> Result<Vec<ListedDatabase>, CouchError> {
        let body = self.get("_all_dbs").await?;
        let names: Vec<String> = serde_json::from_value(body).map_err(|error| CouchError::Protocol {
            url: self.shown("_all_dbs"),
            detail: format!("_all_dbs is not a list of names: {error}"),
        })?;
        let mut databases: Vec<ListedDatabase> = names
            .into_iter()
            .map(|listed| ListedDatabase {
                database: Database::parse(&listed),
                listed,
            })
            .filter(|listed| listed.database.holds_inventory())
            .collect();
        databases.sort_by_cached_key(|listed| (arrival_rank(&listed.database), listed.database.canonical_name()));
        Ok(databases)
    }

    /// One page of `database`'s changes after `since` (`"0"` from the start), with
    /// their documents.
    pub async fn changes(
        &self,
        database: &ListedDatabase,
        since: &str,
        limit: usize,
    ) -> Result<ChangesPage, CouchError> {
        let path = format!(
            "{}/_changes?include_docs=true&since={}&limit={limit}",
            encode(&database.listed),
            encode(since)
        );
        let body = self.get(&path).await?;
        let protocol = |detail: &str| CouchError::Protocol {
            url: self.shown(&path),
            detail: detail.to_owned(),
        };
        let Value::Object(mut body) = body else {
            return Err(protocol("a _changes answer that is not an object"));
        };
        let last_seq = match body.remove("last_seq") {
            Some(Value::String(text)) => text,
            Some(Value::Number(number)) => number.to_string(),
            _ => return Err(protocol("a _changes answer without last_seq")),
        };
        let Some(Value::Array(results)) = body.remove("results") else {
            return Err(protocol("a _changes answer without results"));
        };
        let canonical = database.database.canonical_name();
        let mut page = ChangesPage {
            documents: Vec::new(),
            results: results.len(),
            problems: Vec::new(),
            last_seq,
        };
        for result in results {
            let seq = match result.get("seq") {
                Some(Value::String(text)) => text.clone(),
                Some(other) => other.to_string(),
                None => "?".to_owned(),
            };
            let origin = format!("couchdb {canonical} seq {seq}");
            match document_of_change(result) {
                Ok(document) => page.documents.push(RawDocument {
                    database: canonical.clone(),
                    document,
                    origin,
                }),
                Err(problem) => page.problems.push((origin, problem)),
            }
        }
        Ok(page)
    }

    async fn get(&self, path: &str) -> Result<Value, CouchError> {
        let url = self.base.join(path).map_err(|error| CouchError::Protocol {
            url: self.shown(path),
            detail: format!("cannot build a URL: {error}"),
        })?;
        let mut request = self.http.get(url).header(reqwest::header::ACCEPT, "application/json");
        if let Some((username, password)) = &self.credentials {
            request = request.basic_auth(username, password.as_ref().map(Secret::expose));
        }
        let unreachable = |error: reqwest::Error| CouchError::Unreachable {
            url: self.shown(path),
            detail: error.without_url().to_string(),
        };
        let response = request.send().await.map_err(unreachable)?;
        let status = response.status();
        match status {
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => {
                return Err(CouchError::Refused {
                    url: self.shown(path),
                    status: status.as_u16(),
                })
            }
            StatusCode::NOT_FOUND => return Err(CouchError::NotFound { url: self.shown(path) }),
            status if status.is_server_error() || status == StatusCode::TOO_MANY_REQUESTS => {
                return Err(CouchError::Unreachable {
                    url: self.shown(path),
                    detail: format!("answered {status}"),
                })
            }
            status if !status.is_success() => {
                let body = response.text().await.unwrap_or_default();
                let body: String = body.chars().take(200).collect();
                return Err(CouchError::Protocol {
                    url: self.shown(path),
                    detail: format!("answered {status}: {body}"),
                });
            }
            _ => {}
        }
        let bytes = response.bytes().await.map_err(unreachable)?;
        serde_json::from_slice(&bytes).map_err(|error| CouchError::Protocol {
            url: self.shown(path),
            detail: format!("the answer is not JSON: {error}"),
        })
    }

    /// A request's URL for messages: the base (no credentials) and the path.
    fn shown(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }
}

/// One follow cycle: every inventory database's changes from its checkpoint
/// (`checkpoints`: canonical name → `last_seq`, as `Store::ingest_checkpoints` gives
/// them), in pages of the client's batch size until caught up, each page handed to
/// `sink` as a batch with its checkpoint and awaited before the next page is read.
///
/// The first pages of up to four databases are read at once; the sink still sees
/// `accounts` first and each database's pages in order. A database that vanished (404)
/// is skipped with a warning; any other server error ends the cycle (the checkpoints
/// already written stay: the next cycle resumes there).
pub async fn follow_cycle<F, Fut, E>(
    client: &CouchClient,
    checkpoints: &HashMap<String, String>,
    mut sink: F,
) -> Result<CycleReport, FollowError<E>>
where
    F: FnMut(SourceBatch) -> Fut,
    Fut: Future<Output = Result<(), E>>,
{
    let databases = client.all_dbs().await?;
    let mut report = CycleReport {
        databases: databases.len(),
        ..CycleReport::default()
    };
    let limit = client.batch_size;
    // Owned values in, owned values out: the stream's futures borrow nothing from the
    // closure, so the whole cycle stays `Send` for the scheduler.
    let starts: Vec<(ListedDatabase, String)> = databases
        .into_iter()
        .map(|database| {
            let since = checkpoints
                .get(&database.database.canonical_name())
                .cloned()
                .unwrap_or_else(|| "0".to_owned());
            (database, since)
        })
        .collect();
    let mut first_pages = futures_util::stream::iter(starts)
        .map(|(database, since)| {
            let client = client.clone();
            async move {
                let page = client.changes(&database, &since, limit).await;
                (database, page)
            }
        })
        .buffered(CONCURRENT_DATABASES);
    while let Some((database, first_page)) = first_pages.next().await {
        let canonical = database.database.canonical_name();
        let mut page = match first_page {
            Ok(page) => page,
            Err(CouchError::NotFound { .. }) => {
                tracing::warn!(database = %canonical, "database vanished before it was read; skipped");
                report.vanished.push(canonical);
                continue;
            }
            Err(error) => return Err(error.into()),
        };
        loop {
            if page.results == 0 {
                break;
            }
            let caught_up = page.results < limit;
            for (origin, problem) in &page.problems {
                tracing::warn!(origin = %origin, problem = %problem, "change skipped");
            }
            report.problems += page.problems.len();
            report.documents += page.documents.len();
            report.batches += 1;
            let checkpoint = Checkpoint {
                source: client.source().to_owned(),
                database: canonical.clone(),
                last_seq: page.last_seq.clone(),
            };
            let since = page.last_seq.clone();
            sink(SourceBatch {
                documents: page.documents,
                checkpoint: Some(checkpoint),
            })
            .await
            .map_err(FollowError::Sink)?;
            if caught_up {
                break;
            }
            page = match client.changes(&database, &since, limit).await {
                Ok(page) => page,
                Err(CouchError::NotFound { .. }) => {
                    tracing::warn!(database = %canonical, "database vanished while it was read; skipped");
                    report.vanished.push(canonical.clone());
                    break;
                }
                Err(error) => return Err(error.into()),
            };
        }
    }
    Ok(report)
}

/// Percent-encodes a path segment or query value: everything but `A-Z a-z 0-9 - _ . ~`
/// (so `/` is `%2F` and `+` is `%2B`, as CouchDB database names need).
fn encode(text: &str) -> String {
    let mut encoded = String::with_capacity(text.len());
    for byte in text.bytes() {
        match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => encoded.push(byte as char),
            _ => encoded.push_str(&format!("%{byte:02X}")),
        }
    }
    encoded
}

/// Undoes the percent-encoding of a URL's user name or password.
fn decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut index = 0;
    while index < bytes.len() {
        let hex = text
            .get(index + 1..index + 3)
            .and_then(|hex| u8::from_str_radix(hex, 16).ok());
        match (bytes[index], hex) {
            (b'%', Some(byte)) => {
                decoded.push(byte);
                index += 3;
            }
            (byte, _) => {
                decoded.push(byte);
                index += 1;
            }
        }
    }
    String::from_utf8_lossy(&decoded).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(url: &str) -> CouchSettings {
        CouchSettings {
            url: url.to_owned(),
            username: None,
            password: None,
            batch_size: 0,
            timeout: Duration::from_secs(5),
        }
    }

    #[test]
    fn database_names_are_percent_encoded_in_urls() {
        assert_eq!(encode("account/4f/a2/rest"), "account%2F4f%2Fa2%2Frest");
        assert_eq!(encode("numbers/+1415"), "numbers%2F%2B1415");
        assert_eq!(encode("12-g1AAAA_x"), "12-g1AAAA_x");
    }

    #[test]
    fn the_source_is_the_url_without_credentials() {
        let client = CouchClient::new(&settings("http://admin:p%40ss@127.0.0.1:5984")).expect("client");
        assert_eq!(client.source(), "http://127.0.0.1:5984/");
        let (username, password) = client.credentials.clone().expect("credentials from the URL");
        assert_eq!(username, "admin");
        assert_eq!(password.expect("password").expose(), "p@ss");
        assert!(!format!("{client:?}").contains("p@ss"));
    }

    #[test]
    fn explicit_credentials_win_and_a_path_keeps_its_prefix() {
        let mut settings = settings("https://couch.example/prefix?x=1");
        settings.username = Some("tally".to_owned());
        settings.password = Some(Secret::new("pw"));
        let client = CouchClient::new(&settings).expect("client");
        assert_eq!(client.source(), "https://couch.example/prefix/");
        assert_eq!(client.credentials.expect("credentials").0, "tally");
    }

    #[test]
    fn a_url_that_is_not_http_is_refused() {
        assert!(CouchClient::new(&settings("ftp://x")).is_err());
        assert!(CouchClient::new(&settings("not a url")).is_err());
    }

    #[test]
    fn only_unreachable_is_temporary() {
        let url = String::new();
        assert!(CouchError::Unreachable {
            url: url.clone(),
            detail: String::new()
        }
        .is_temporary());
        assert!(!CouchError::Refused {
            url: url.clone(),
            status: 401
        }
        .is_temporary());
        assert!(!CouchError::NotFound { url: url.clone() }.is_temporary());
        assert!(!CouchError::Protocol {
            url,
            detail: String::new()
        }
        .is_temporary());
    }
}
