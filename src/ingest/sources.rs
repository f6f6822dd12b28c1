//! Kazoo documents read from files: a dump on disk, standard input, or an HTTP body.
//!
//! This module owns the file formats and nothing else: it hands over raw documents
//! with the database each came from and where it was read; making sense of them is
//! `wire::kazoo`'s job, writing them the store's.
//!
//! # Formats, detected from the content
//! - **NDJSON**: one JSON document per line; blank lines are skipped. A line may be an
//!   **envelope** `{"database": "accounts", "doc": {…}}` (exactly these two members,
//!   `doc` an object) so one file can carry many databases.
//! - A CouchDB **`_all_docs?include_docs=true`** response (`{"total_rows":…,"rows":[…]}`):
//!   each row's `doc`; a row whose `doc` is missing or null, or whose `value` says
//!   `"deleted": true`, becomes a tombstone `{"_id": id, "_deleted": true}`.
//! - A CouchDB **`_changes?include_docs=true`** response (`{"results":[…],"last_seq":…}`):
//!   each result's `doc`; a `"deleted": true` result without a doc becomes a tombstone.
//! - A JSON **array** of documents (each possibly an envelope).
//!
//! A file whose content starts with `{` is a CouchDB response when its first member is
//! one of `total_rows`, `offset`, `rows`, `update_seq`, `results`, `last_seq` or
//! `pending`; otherwise it is NDJSON (so a single document must sit on one line).
//!
//! # Which database
//! An envelope's `database` wins; then `--database`; then the file's name: its stem
//! (`account%2F4f%2Fa2%2F….json`, `accounts.ndjson`, `numbers%2F%2B1415.json`), in any
//! form [`Database::parse`] accepts. A document with none of these is a problem.
//!
//! # Streaming
//! Nothing holds a whole file: NDJSON is read line by line, the array forms element by
//! element (serde's `SeqAccess::next_element` over a `BufReader`), on a blocking
//! thread that sends [`ReadBatch`]es over a bounded channel, so parsing overlaps the
//! caller's writes and memory stays flat.
//!
//! # Errors
//! A line or element that cannot be a document (not JSON, not an object, no database)
//! is a [`SourceProblem`] carried in the batch: the caller counts and names it and the
//! import goes on. An unreadable file or a malformed top-level structure (a syntax
//! error inside an array or a CouchDB response, after which nothing can be trusted) is
//! a fatal [`SourceError`] naming the file; it is the channel's last message.

use super::{RawDocument, SourceBatch};
use crate::domain::inventory::Database;
use serde::de::{self, DeserializeSeed, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};
use std::fmt;
use std::fs::File;
use std::io::{self, BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use tokio::sync::mpsc;

/// The default number of documents in one batch.
pub const DEFAULT_BATCH_SIZE: usize = 1_000;

/// How many batches may wait in the channel: enough to overlap parsing and writing,
/// few enough that memory stays flat when the writer is slower.
const CHANNEL_CAPACITY: usize = 2;

/// What the channel of [`read_path`] and [`read_stdin`] carries. After an `Err`, the
/// channel closes.
pub type SourceMessage = Result<ReadBatch, SourceError>;

/// Documents read from a file together, and the lines among them that were not.
#[derive(Debug, Clone, Default)]
pub struct ReadBatch {
    /// The documents; a file gives no checkpoint (`batch.checkpoint` is `None`).
    pub batch: SourceBatch,
    /// Lines or elements skipped, in reading order.
    pub problems: Vec<SourceProblem>,
}

/// A line or element that is not a document; the import reports it and goes on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceProblem {
    /// Where: `dump.ndjson:12`, `all_docs.json rows[3]`, `docs.json[7]`.
    pub origin: String,
    /// What is wrong, as a sentence fragment.
    pub problem: String,
}

impl fmt::Display for SourceProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.origin, self.problem)
    }
}

/// Why a source stopped: nothing after this can be read.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// The file or directory could not be opened or read.
    #[error("cannot read {path}: {source}")]
    Unreadable {
        path: String,
        #[source]
        source: io::Error,
    },
    /// The top-level structure is broken (a syntax error in an array or a CouchDB
    /// response, a top-level value that is neither an object nor an array).
    #[error("{path} is not a readable dump: {detail}")]
    Malformed { path: String, detail: String },
}

/// Reads a file or a directory of files on a blocking thread and sends batches of at
/// most `batch_size` documents (0 means [`DEFAULT_BATCH_SIZE`]).
///
/// A directory's files (`.json`, `.ndjson`, `.jsonl`; not its subdirectories) are read
/// with `accounts` first, then account databases, then numbers and `port_requests`,
/// then anything else, so accounts arrive before what references them.
/// Must be called inside a tokio runtime.
pub fn read_path(path: &Path, database: Option<&str>, batch_size: usize) -> mpsc::Receiver<SourceMessage> {
    let path = path.to_owned();
    let database = database.map(str::to_owned);
    spawn_reader(batch_size, move |sender| {
        read_path_blocking(&path, database.as_deref(), sender)
    })
}

/// Reads standard input (`-`) like a file; with no file name, each document's database
/// comes from `database` or its envelope. Must be called inside a tokio runtime.
pub fn read_stdin(database: Option<&str>, batch_size: usize) -> mpsc::Receiver<SourceMessage> {
    let database = database.map(str::to_owned);
    spawn_reader(batch_size, move |sender| {
        let name = SourceName {
            display: "stdin".to_owned(),
            database: database.clone(),
        };
        read_stream(io::stdin().lock(), &name, sender)
    })
}

/// Parses a body already in memory (the HTTP face's `POST /v2/inventory`): any format
/// above, each document possibly an envelope, else of `database`. Strict: the first
/// line or element that is not a document is the error (origins are `line 3`, `[2]`).
pub fn documents_from_body(body: &[u8], database: Option<&str>) -> Result<Vec<RawDocument>, SourceProblem> {
    let name = SourceName {
        display: "body".to_owned(),
        database: database.map(str::to_owned),
    };
    let mut collector = Collector::default();
    if let Err(error) = read_stream(body, &name, &mut collector) {
        let problem = match error {
            Stopped::Fatal(SourceError::Malformed { detail, .. }) => detail,
            Stopped::Fatal(other) => other.to_string(),
            Stopped::ReceiverGone => "the reader stopped".to_owned(),
        };
        return Err(SourceProblem {
            origin: "body".to_owned(),
            problem,
        });
    }
    match collector.problems.into_iter().next() {
        Some(mut first) => {
            first.origin = first
                .origin
                .trim_start_matches("body")
                .trim_start_matches(':')
                .to_owned();
            if first
                .origin
                .chars()
                .next()
                .is_some_and(|character| character.is_ascii_digit())
            {
                first.origin = format!("line {}", first.origin);
            }
            Err(first)
        }
        None => Ok(collector.documents),
    }
}

/// The order in which databases are handed over: `accounts` first (every other
/// document references an account), then account databases, numbers, port requests,
/// and anything else.
pub(crate) fn arrival_rank(database: &Database) -> u8 {
    match database {
        Database::Accounts => 0,
        Database::Account(_) => 1,
        Database::Numbers(_) => 2,
        Database::PortRequests => 3,
        Database::Other(_) => 4,
    }
}

/// A document of a CouchDB `_changes` result, or a tombstone for a deletion without
/// one; the error says why the result cannot be a document.
pub(crate) fn document_of_change(result: Value) -> Result<Value, String> {
    let Value::Object(mut result) = result else {
        return Err("a result that is not an object".to_owned());
    };
    let deleted = result.get("deleted").and_then(Value::as_bool) == Some(true);
    match result.remove("doc") {
        Some(Value::Object(mut document)) => {
            if deleted {
                document.insert("_deleted".to_owned(), Value::Bool(true));
            }
            Ok(Value::Object(document))
        }
        Some(Value::Null) | None if deleted => match result.get("id").and_then(Value::as_str) {
            Some(id) => Ok(tombstone(id)),
            None => Err("a deleted result without an id".to_owned()),
        },
        Some(Value::Null) | None => Err("a result without its doc (read _changes with include_docs=true)".to_owned()),
        Some(_) => Err("a doc that is not an object".to_owned()),
    }
}

/// A document of a CouchDB `_all_docs` row, or a tombstone.
fn document_of_row(row: Value) -> Result<Value, String> {
    let Value::Object(mut row) = row else {
        return Err("a row that is not an object".to_owned());
    };
    if let Some(error) = row.get("error") {
        return Err(format!("a row with an error: {error}"));
    }
    let deleted = row
        .get("value")
        .and_then(|value| value.get("deleted"))
        .and_then(Value::as_bool)
        == Some(true);
    let id = row.get("id").and_then(Value::as_str).map(str::to_owned);
    match (row.remove("doc"), deleted) {
        (Some(Value::Object(document)), false) => Ok(Value::Object(document)),
        (Some(Value::Object(_) | Value::Null) | None, _) => match id {
            Some(id) => Ok(tombstone(&id)),
            None => Err("a row without a doc and without an id".to_owned()),
        },
        (Some(_), _) => Err("a doc that is not an object".to_owned()),
    }
}

fn tombstone(id: &str) -> Value {
    let mut document = Map::new();
    document.insert("_id".to_owned(), Value::String(id.to_owned()));
    document.insert("_deleted".to_owned(), Value::Bool(true));
    Value::Object(document)
}

fn spawn_reader<F>(batch_size: usize, read: F) -> mpsc::Receiver<SourceMessage>
where
    F: FnOnce(&mut BatchSender) -> Result<(), Stopped> + Send + 'static,
{
    let (sender, receiver) = mpsc::channel(CHANNEL_CAPACITY);
    let batch_size = if batch_size == 0 {
        DEFAULT_BATCH_SIZE
    } else {
        batch_size
    };
    tokio::task::spawn_blocking(move || {
        let mut batches = BatchSender {
            sender,
            batch_size,
            current: ReadBatch::default(),
        };
        match read(&mut batches) {
            Ok(()) => {
                let _ = batches.flush();
            }
            Err(Stopped::Fatal(error)) => {
                // The documents before the error are sent first: the caller may keep them.
                if batches.flush().is_ok() {
                    let _ = batches.sender.blocking_send(Err(error));
                }
            }
            Err(Stopped::ReceiverGone) => {}
        }
    });
    receiver
}

fn read_path_blocking(path: &Path, database: Option<&str>, sender: &mut BatchSender) -> Result<(), Stopped> {
    let unreadable = |source| {
        Stopped::Fatal(SourceError::Unreadable {
            path: path.display().to_string(),
            source,
        })
    };
    let metadata = std::fs::metadata(path).map_err(unreadable)?;
    if !metadata.is_dir() {
        return read_file(path, database, sender);
    }
    let mut files = Vec::new();
    for entry in std::fs::read_dir(path).map_err(unreadable)? {
        let entry = entry.map_err(unreadable)?;
        let file = entry.path();
        let is_dump = file.is_file() && dump_stem(&file).is_some();
        if is_dump {
            files.push(file);
        }
    }
    sort_directory_files(&mut files);
    for file in files {
        read_file(&file, database, sender)?;
    }
    Ok(())
}

/// The directory order: by database rank, then by name, so a rerun reads the same order.
fn sort_directory_files(files: &mut [PathBuf]) {
    files.sort_by_cached_key(|file| {
        let stem = dump_stem(file).unwrap_or_default();
        (arrival_rank(&Database::parse(&stem)), stem)
    });
}

/// A dump file's database name: its file name without the extension; `None` for files
/// that are not dumps.
fn dump_stem(file: &Path) -> Option<String> {
    let name = file.file_name()?.to_str()?;
    if name.starts_with('.') {
        return None;
    }
    [".json", ".ndjson", ".jsonl"]
        .iter()
        .find_map(|extension| name.strip_suffix(extension))
        .filter(|stem| !stem.is_empty())
        .map(str::to_owned)
}

fn read_file(path: &Path, database: Option<&str>, sender: &mut BatchSender) -> Result<(), Stopped> {
    let file = File::open(path).map_err(|source| {
        Stopped::Fatal(SourceError::Unreadable {
            path: path.display().to_string(),
            source,
        })
    })?;
    let display = path
        .file_name()
        .map(|name| name.to_string_lossy().into_owned())
        .unwrap_or_else(|| path.display().to_string());
    let database = database.map(str::to_owned).or_else(|| dump_stem(path));
    let name = SourceName { display, database };
    read_stream(BufReader::with_capacity(64 * 1024, file), &name, sender)
}

/// The file being read: its name for origins, and the database of its documents
/// without an envelope.
struct SourceName {
    display: String,
    database: Option<String>,
}

/// Why reading stopped early.
enum Stopped {
    Fatal(SourceError),
    /// The caller dropped the receiver: stop quietly.
    ReceiverGone,
}

/// Where read documents go: the channel, or a vector for an in-memory body.
trait Sink {
    fn document(&mut self, document: RawDocument) -> Result<(), Stopped>;
    fn problem(&mut self, problem: SourceProblem) -> Result<(), Stopped>;
}

struct BatchSender {
    sender: mpsc::Sender<SourceMessage>,
    batch_size: usize,
    current: ReadBatch,
}

impl BatchSender {
    fn send_if_full(&mut self) -> Result<(), Stopped> {
        // Problems count too, so a file of garbage does not grow one batch without end.
        if self.current.batch.documents.len() + self.current.problems.len() >= self.batch_size {
            return self.flush();
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<(), Stopped> {
        if self.current.batch.documents.is_empty() && self.current.problems.is_empty() {
            return Ok(());
        }
        let batch = std::mem::take(&mut self.current);
        self.sender.blocking_send(Ok(batch)).map_err(|_| Stopped::ReceiverGone)
    }
}

impl Sink for BatchSender {
    fn document(&mut self, document: RawDocument) -> Result<(), Stopped> {
        self.current.batch.documents.push(document);
        self.send_if_full()
    }

    fn problem(&mut self, problem: SourceProblem) -> Result<(), Stopped> {
        self.current.problems.push(problem);
        self.send_if_full()
    }
}

impl<T: Sink + ?Sized> Sink for &mut T {
    fn document(&mut self, document: RawDocument) -> Result<(), Stopped> {
        (**self).document(document)
    }

    fn problem(&mut self, problem: SourceProblem) -> Result<(), Stopped> {
        (**self).problem(problem)
    }
}

#[derive(Default)]
struct Collector {
    documents: Vec<RawDocument>,
    problems: Vec<SourceProblem>,
}

impl Sink for Collector {
    fn document(&mut self, document: RawDocument) -> Result<(), Stopped> {
        self.documents.push(document);
        Ok(())
    }

    fn problem(&mut self, problem: SourceProblem) -> Result<(), Stopped> {
        self.problems.push(problem);
        Ok(())
    }
}

/// The members that make a top-level object a CouchDB response rather than a document.
const RESPONSE_MEMBERS: [&str; 7] = [
    "total_rows",
    "offset",
    "rows",
    "update_seq",
    "results",
    "last_seq",
    "pending",
];

enum Format {
    Empty,
    Ndjson,
    /// A JSON array of documents, or a CouchDB response: both streamed by serde.
    Streamed,
}

/// Looks at the first bytes of the stream, without consuming them, to tell the format.
fn detect_format<R: BufRead>(reader: &mut R) -> io::Result<Format> {
    // Skip a byte-order mark and leading whitespace.
    loop {
        let buffer = reader.fill_buf()?;
        if buffer.is_empty() {
            return Ok(Format::Empty);
        }
        let skip = buffer
            .iter()
            .take_while(|byte| matches!(byte, b' ' | b'\t' | b'\r' | b'\n' | 0xEF | 0xBB | 0xBF))
            .count();
        if skip == 0 {
            break;
        }
        reader.consume(skip);
    }
    let buffer = reader.fill_buf()?;
    match buffer[0] {
        b'[' => Ok(Format::Streamed),
        b'{' => match first_member(&buffer[1..]) {
            Some(member) if RESPONSE_MEMBERS.contains(&member) => Ok(Format::Streamed),
            _ => Ok(Format::Ndjson),
        },
        _ => Ok(Format::Ndjson),
    }
}

/// The first member name of an object whose `{` was just passed, if the buffer holds it
/// as plain text (member names of CouchDB responses have no escapes).
fn first_member(after_brace: &[u8]) -> Option<&str> {
    let text = after_brace.trim_ascii_start().strip_prefix(b"\"")?;
    let end = text.iter().position(|byte| *byte == b'"')?;
    std::str::from_utf8(&text[..end]).ok()
}

fn read_stream<R: BufRead, S: Sink>(mut reader: R, name: &SourceName, sink: S) -> Result<(), Stopped> {
    let unreadable = |source| {
        Stopped::Fatal(SourceError::Unreadable {
            path: name.display.clone(),
            source,
        })
    };
    match detect_format(&mut reader).map_err(unreadable)? {
        Format::Empty => Ok(()),
        Format::Ndjson => read_ndjson(reader, name, sink),
        Format::Streamed => read_streamed(reader, name, sink),
    }
}

fn read_ndjson<R: BufRead, S: Sink>(mut reader: R, name: &SourceName, mut sink: S) -> Result<(), Stopped> {
    let mut line = Vec::new();
    let mut number = 0usize;
    loop {
        line.clear();
        let read = reader.read_until(b'\n', &mut line).map_err(|source| {
            Stopped::Fatal(SourceError::Unreadable {
                path: name.display.clone(),
                source,
            })
        })?;
        if read == 0 {
            return Ok(());
        }
        number += 1;
        if line.trim_ascii().is_empty() {
            continue;
        }
        let origin = format!("{}:{number}", name.display);
        match serde_json::from_slice::<Value>(&line) {
            Ok(value) => hand_over(value, origin, name, &mut sink)?,
            Err(error) => sink.problem(SourceProblem {
                origin,
                problem: format!("not JSON: {error}"),
            })?,
        }
    }
}

/// One document (or envelope) read: to the sink as a document, or as a problem.
fn hand_over<S: Sink>(value: Value, origin: String, name: &SourceName, sink: &mut S) -> Result<(), Stopped> {
    match into_document(value, name) {
        Ok((database, document)) => sink.document(RawDocument {
            database,
            document,
            origin,
        }),
        Err(problem) => sink.problem(SourceProblem { origin, problem }),
    }
}

/// Unwraps an envelope and finds the document's database.
fn into_document(value: Value, name: &SourceName) -> Result<(String, Value), String> {
    let Value::Object(mut object) = value else {
        return Err("not a JSON object".to_owned());
    };
    let is_envelope = object.len() == 2
        && object.get("database").is_some_and(Value::is_string)
        && object.get("doc").is_some_and(Value::is_object);
    if is_envelope {
        let Some(Value::String(database)) = object.remove("database") else {
            unreachable!("checked above")
        };
        let document = object.remove("doc").expect("checked above");
        return Ok((database, document));
    }
    match &name.database {
        Some(database) => Ok((database.clone(), Value::Object(object))),
        None => Err("no database: give --database, a file name, or an envelope {\"database\", \"doc\"}".to_owned()),
    }
}

fn read_streamed<R: Read, S: Sink>(reader: R, name: &SourceName, mut sink: S) -> Result<(), Stopped> {
    let mut deserializer = serde_json::Deserializer::from_reader(reader);
    let mut stopped = None;
    let seed = TopLevel {
        name,
        sink: &mut sink,
        stopped: &mut stopped,
    };
    let outcome = seed.deserialize(&mut deserializer).and_then(|()| deserializer.end());
    if let Some(stopped) = stopped {
        return Err(stopped);
    }
    outcome.map_err(|error| {
        if error.is_io() {
            let source = io::Error::other(error.to_string());
            return Stopped::Fatal(SourceError::Unreadable {
                path: name.display.clone(),
                source,
            });
        }
        Stopped::Fatal(SourceError::Malformed {
            path: name.display.clone(),
            detail: error.to_string(),
        })
    })
}

/// The top-level value of a streamed file: an array of documents, or a CouchDB
/// response whose `rows` or `results` array is streamed.
struct TopLevel<'a, S> {
    name: &'a SourceName,
    sink: &'a mut S,
    /// Set when the sink stopped the reading (the serde error is then only a carrier).
    stopped: &'a mut Option<Stopped>,
}

#[derive(Clone, Copy)]
enum Elements {
    Documents,
    Rows,
    Results,
}

impl<'de, S: Sink> DeserializeSeed<'de> for TopLevel<'_, S> {
    type Value = ();

    fn deserialize<D: de::Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de, S: Sink> Visitor<'de> for TopLevel<'_, S> {
    type Value = ();

    fn expecting(&self, formatter: &mut fmt::Formatter) -> fmt::Result {
        formatter.write_str("an array of documents or a CouchDB _all_docs or _changes response")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<(), A::Error> {
        ElementStream {
            top: self,
            kind: Elements::Documents,
        }
        .visit_seq(seq)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let TopLevel { name, sink, stopped } = self;
        while let Some(member) = map.next_key::<String>()? {
            let kind = match member.as_str() {
                "rows" => Elements::Rows,
                "results" => Elements::Results,
                _ => {
                    map.next_value::<IgnoredAny>()?;
                    continue;
                }
            };
            let top = TopLevel {
                name,
                sink: &mut *sink,
                stopped: &mut *stopped,
            };
            map.next_value_seed(ElementStream { top, kind })?;
        }
        Ok(())
    }
}

struct ElementStream<'a, S> {
    top: TopLevel<'a, S>,
    kind: Elements,
}

impl<'de, S: Sink> DeserializeSeed<'de> for ElementStream<'_, S> {
    type Value = ();

    fn deserialize<D: de::Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_seq(self)
    }
}

impl<'de, S: Sink> Visitor<'de> for ElementStream<'_, S> {
    type Value = ();

    fn expecting(&self, formatter: &mut fmt::Formatter) -> fmt::Result {
        formatter.write_str("an array")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let TopLevel { name, sink, stopped } = self.top;
        let mut index = 0usize;
        // One element at a time: only the current element is in memory.
        while let Some(element) = seq.next_element::<Value>()? {
            let (origin, document) = match self.kind {
                Elements::Documents => (format!("{}[{index}]", name.display), Ok(element)),
                Elements::Rows => (format!("{} rows[{index}]", name.display), document_of_row(element)),
                Elements::Results => (
                    format!("{} results[{index}]", name.display),
                    document_of_change(element),
                ),
            };
            index += 1;
            let handed = match document {
                Ok(document) => hand_over(document, origin, name, sink),
                Err(problem) => sink.problem(SourceProblem { origin, problem }),
            };
            if let Err(stop) = handed {
                *stopped = Some(stop);
                return Err(de::Error::custom("reading stopped"));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const ACCOUNT_DB: &str = "account%2F4f%2Fa2%2Fc3d45e6f708192a3b4c5d6e7f809";

    fn read_all(text: &str, database: Option<&str>) -> (Vec<RawDocument>, Vec<SourceProblem>) {
        let name = SourceName {
            display: "dump.json".to_owned(),
            database: database.map(str::to_owned),
        };
        let mut collector = Collector::default();
        match read_stream(text.as_bytes(), &name, &mut collector) {
            Ok(()) => {}
            Err(Stopped::Fatal(error)) => panic!("fatal: {error}"),
            Err(Stopped::ReceiverGone) => panic!("receiver gone"),
        }
        (collector.documents, collector.problems)
    }

    fn ids(documents: &[RawDocument]) -> Vec<String> {
        documents
            .iter()
            .map(|document| document.document["_id"].as_str().unwrap_or("?").to_owned())
            .collect()
    }

    async fn receive_all(mut receiver: mpsc::Receiver<SourceMessage>) -> (Vec<ReadBatch>, Option<SourceError>) {
        let mut batches = Vec::new();
        while let Some(message) = receiver.recv().await {
            match message {
                Ok(batch) => batches.push(batch),
                Err(error) => return (batches, Some(error)),
            }
        }
        (batches, None)
    }

    #[test]
    fn ndjson_gives_one_document_per_line_and_skips_blank_lines() {
        let (documents, problems) = read_all(
            "{\"_id\":\"a\"}\n\n  \r\n{\"_id\":\"b\",\"n\":1.50}\n",
            Some("accounts"),
        );
        assert_eq!(ids(&documents), ["a", "b"]);
        assert!(problems.is_empty());
        assert_eq!(documents[1].origin, "dump.json:4");
        assert_eq!(documents[1].database, "accounts");
        assert_eq!(
            documents[1].document["n"].to_string(),
            "1.50",
            "numbers keep their text"
        );
    }

    #[test]
    fn a_bad_line_is_a_problem_naming_its_line_and_the_import_goes_on() {
        let (documents, problems) = read_all("{\"_id\":\"a\"}\n{not json\n[1]\n{\"_id\":\"b\"}", Some("accounts"));
        assert_eq!(ids(&documents), ["a", "b"]);
        assert_eq!(problems.len(), 2);
        assert_eq!(problems[0].origin, "dump.json:2");
        assert!(problems[0].problem.starts_with("not JSON"), "{}", problems[0].problem);
        assert_eq!(problems[1].origin, "dump.json:3");
        assert_eq!(problems[1].problem, "not a JSON object");
    }

    #[test]
    fn an_envelope_names_the_database_of_its_document() {
        let text = format!(
            "{{\"database\":\"accounts\",\"doc\":{{\"_id\":\"a\"}}}}\n{{\"database\":\"{ACCOUNT_DB}\",\"doc\":{{\"_id\":\"d\"}}}}\n{{\"_id\":\"plain\"}}\n"
        );
        let (documents, problems) = read_all(&text, None);
        assert_eq!(ids(&documents), ["a", "d"]);
        assert_eq!(documents[0].database, "accounts");
        assert_eq!(documents[1].database, ACCOUNT_DB);
        assert_eq!(documents[1].document, json!({"_id": "d"}), "the envelope is removed");
        assert_eq!(problems.len(), 1, "a document without a database is a problem");
        assert!(problems[0].problem.starts_with("no database"));
    }

    #[test]
    fn an_envelope_wins_over_the_default_database() {
        let (documents, _) = read_all(
            "{\"database\":\"numbers%2F%2B1415\",\"doc\":{\"_id\":\"+14155550100\"}}",
            Some("accounts"),
        );
        assert_eq!(documents[0].database, "numbers%2F%2B1415");
    }

    #[test]
    fn all_docs_rows_give_their_docs_and_deleted_rows_give_tombstones() {
        let text = r#"{"total_rows":4,"offset":0,"rows":[
            {"id":"a","key":"a","value":{"rev":"1-x"},"doc":{"_id":"a","_rev":"1-x","name":"A"}},
            {"id":"b","key":"b","value":{"rev":"2-y","deleted":true},"doc":null},
            {"id":"c","key":"c","value":{"rev":"1-z"}},
            {"key":"d","error":"not_found"},
            {"id":"e","key":"e","value":{"rev":"1-e"},"doc":{"_id":"e"}}
        ]}"#;
        let (documents, problems) = read_all(text, Some("accounts"));
        assert_eq!(ids(&documents), ["a", "b", "c", "e"]);
        assert_eq!(documents[0].document["name"], "A");
        assert_eq!(documents[1].document, json!({"_id": "b", "_deleted": true}));
        assert_eq!(documents[2].document, json!({"_id": "c", "_deleted": true}));
        assert_eq!(documents[3].origin, "dump.json rows[4]");
        assert_eq!(problems.len(), 1);
        assert_eq!(problems[0].origin, "dump.json rows[3]");
    }

    #[test]
    fn changes_results_give_their_docs_and_deletions_give_tombstones() {
        let text = r#"{"results":[
            {"seq":1,"id":"a","changes":[{"rev":"1-x"}],"doc":{"_id":"a","_rev":"1-x"}},
            {"seq":2,"id":"b","changes":[{"rev":"2-y"}],"deleted":true},
            {"seq":3,"id":"c","changes":[{"rev":"2-z"}],"deleted":true,"doc":{"_id":"c","_rev":"2-z","_deleted":true}},
            {"seq":4,"id":"d","changes":[{"rev":"1-d"}]}
        ],"last_seq":4}"#;
        let (documents, problems) = read_all(text, Some("accounts"));
        assert_eq!(ids(&documents), ["a", "b", "c"]);
        assert_eq!(documents[1].document, json!({"_id": "b", "_deleted": true}));
        assert_eq!(documents[2].document["_deleted"], true);
        assert_eq!(problems.len(), 1, "a live result without its doc");
        assert_eq!(problems[0].origin, "dump.json results[3]");
    }

    #[test]
    fn a_json_array_gives_its_documents_with_their_index() {
        let (documents, problems) = read_all(
            r#"[{"_id":"a"}, 7, {"database":"accounts","doc":{"_id":"b"}}]"#,
            Some("x"),
        );
        assert_eq!(ids(&documents), ["a", "b"]);
        assert_eq!(documents[1].origin, "dump.json[2]");
        assert_eq!(documents[1].database, "accounts");
        assert_eq!(
            problems,
            [SourceProblem {
                origin: "dump.json[1]".to_owned(),
                problem: "not a JSON object".to_owned()
            }]
        );
    }

    #[test]
    fn a_broken_array_is_fatal_and_names_the_file() {
        let name = SourceName {
            display: "dump.json".to_owned(),
            database: Some("accounts".to_owned()),
        };
        let mut collector = Collector::default();
        let outcome = read_stream(&b"[{\"_id\":\"a\"}, {\"_id\": ]"[..], &name, &mut collector);
        let Err(Stopped::Fatal(error)) = outcome else {
            panic!("expected a fatal error")
        };
        assert!(
            error.to_string().starts_with("dump.json is not a readable dump"),
            "{error}"
        );
        assert_eq!(ids(&collector.documents), ["a"], "what came before is kept");
    }

    #[test]
    fn a_document_whose_first_member_is_not_a_response_member_is_ndjson() {
        let (documents, _) = read_all("{\"_id\":\"rows\",\"rows\":[1]}\n{\"_id\":\"b\"}\n", Some("accounts"));
        assert_eq!(ids(&documents), ["rows", "b"]);
    }

    #[test]
    fn an_empty_file_gives_nothing() {
        assert!(read_all("  \n", Some("accounts")).0.is_empty());
        assert!(read_all("", None).0.is_empty());
    }

    #[test]
    fn documents_from_body_reads_ndjson_and_arrays_strictly() {
        let body = b"{\"database\":\"accounts\",\"doc\":{\"_id\":\"a\"}}\n{\"_id\":\"b\"}\n";
        let documents = documents_from_body(body, Some(ACCOUNT_DB)).expect("documents");
        assert_eq!(ids(&documents), ["a", "b"]);
        assert_eq!(documents[1].database, ACCOUNT_DB);

        let error = documents_from_body(b"{\"_id\":\"a\"}\n{bad\n", Some("accounts")).expect_err("bad line");
        assert_eq!(error.origin, "line 2");
        let error = documents_from_body(b"[{\"_id\":\"a\"}, 3]", Some("accounts")).expect_err("bad element");
        assert_eq!(error.origin, "[1]");
        let error = documents_from_body(b"[{\"_id\":\"a\"}", Some("accounts")).expect_err("cut array");
        assert_eq!(error.origin, "body");
    }

    #[test]
    fn directory_files_are_read_accounts_first_then_accounts_then_numbers() {
        let mut files: Vec<PathBuf> = [
            "port_requests.json",
            "numbers%2F%2B1415.json",
            "account%2F4f%2Fa2%2Fc3d45e6f708192a3b4c5d6e7f809.json",
            "services.json",
            "accounts.ndjson",
            "account%2F00%2Fa2%2Fc3d45e6f708192a3b4c5d6e7f809.ndjson",
        ]
        .iter()
        .map(PathBuf::from)
        .collect();
        sort_directory_files(&mut files);
        let names: Vec<&str> = files.iter().map(|file| file.to_str().expect("utf-8")).collect();
        assert_eq!(
            names,
            [
                "accounts.ndjson",
                "account%2F00%2Fa2%2Fc3d45e6f708192a3b4c5d6e7f809.ndjson",
                "account%2F4f%2Fa2%2Fc3d45e6f708192a3b4c5d6e7f809.json",
                "numbers%2F%2B1415.json",
                "port_requests.json",
                "services.json",
            ]
        );
    }

    #[tokio::test]
    async fn a_directory_is_streamed_in_batches_with_each_file_naming_its_database() {
        let directory = tempfile::tempdir().expect("temp dir");
        std::fs::write(
            directory.path().join("numbers%2F%2B1415.json"),
            r#"[{"_id":"+14155550100"}]"#,
        )
        .expect("write");
        std::fs::write(
            directory.path().join(format!("{ACCOUNT_DB}.ndjson")),
            "{\"_id\":\"d1\"}\n{\"_id\":\"d2\"}\noops\n",
        )
        .expect("write");
        std::fs::write(
            directory.path().join("accounts.json"),
            r#"{"total_rows":1,"rows":[{"id":"a","doc":{"_id":"a"}}]}"#,
        )
        .expect("write");
        std::fs::write(directory.path().join("README.txt"), "not a dump").expect("write");

        let (batches, error) = receive_all(read_path(directory.path(), None, 2)).await;

        assert!(error.is_none(), "{error:?}");
        assert!(batches
            .iter()
            .all(|batch| batch.batch.documents.len() + batch.problems.len() <= 2));
        let documents: Vec<RawDocument> = batches.iter().flat_map(|batch| batch.batch.documents.clone()).collect();
        let read: Vec<(String, String)> = documents
            .iter()
            .map(|document| {
                (
                    document.database.clone(),
                    document.document["_id"].as_str().expect("id").to_owned(),
                )
            })
            .collect();
        assert_eq!(
            read,
            [
                ("accounts".to_owned(), "a".to_owned()),
                (ACCOUNT_DB.to_owned(), "d1".to_owned()),
                (ACCOUNT_DB.to_owned(), "d2".to_owned()),
                ("numbers%2F%2B1415".to_owned(), "+14155550100".to_owned()),
            ]
        );
        let problems: Vec<String> = batches
            .iter()
            .flat_map(|batch| batch.problems.iter().map(|problem| problem.origin.clone()))
            .collect();
        assert_eq!(problems, [format!("{ACCOUNT_DB}.ndjson:3")]);
    }

    #[tokio::test]
    async fn an_unreadable_file_is_a_fatal_error_naming_it() {
        let (batches, error) = receive_all(read_path(Path::new("/nonexistent/dump.ndjson"), None, 10)).await;
        assert!(batches.is_empty());
        let error = error.expect("an error").to_string();
        assert!(error.contains("/nonexistent/dump.ndjson"), "{error}");
    }

    #[tokio::test]
    async fn database_option_wins_over_the_file_name() {
        let directory = tempfile::tempdir().expect("temp dir");
        let file = directory.path().join("export.ndjson");
        std::fs::write(&file, "{\"_id\":\"a\"}\n").expect("write");
        let (batches, _) = receive_all(read_path(&file, Some("accounts"), 10)).await;
        assert_eq!(batches[0].batch.documents[0].database, "accounts");
        let (batches, _) = receive_all(read_path(&file, None, 10)).await;
        assert_eq!(batches[0].batch.documents[0].database, "export");
    }

    /// Throughput of the two big formats; run with
    /// `cargo test --release --lib ingest::sources::tests::throughput -- --ignored --nocapture`.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    #[ignore = "a measurement, not a check"]
    async fn throughput() {
        use std::io::Write;
        const COUNT: usize = 200_000;
        let directory = tempfile::tempdir().expect("temp dir");
        let document = |index: usize| {
            json!({"_id": format!("{index:032x}"), "_rev": "1-0123456789abcdef", "pvt_type": "device",
                   "name": format!("Device {index}"), "device_type": "sip_device", "enabled": true,
                   "sip": {"username": format!("user{index}"), "password": "secret", "realm": "example.com"},
                   "pvt_created": 63_800_000_000u64, "pvt_modified": 63_800_000_000u64})
        };
        let ndjson = directory.path().join("accounts.ndjson");
        let mut writer = io::BufWriter::new(File::create(&ndjson).expect("create"));
        for index in 0..COUNT {
            serde_json::to_writer(&mut writer, &document(index)).expect("write");
            writer.write_all(b"\n").expect("write");
        }
        writer.flush().expect("flush");
        drop(writer);
        let all_docs = directory.path().join("accounts.json");
        let mut writer = io::BufWriter::new(File::create(&all_docs).expect("create"));
        write!(writer, "{{\"total_rows\":{COUNT},\"offset\":0,\"rows\":[\r\n").expect("write");
        for index in 0..COUNT {
            let id = format!("{index:032x}");
            if index > 0 {
                writer.write_all(b",\r\n").expect("write");
            }
            serde_json::to_writer(
                &mut writer,
                &json!({"id": id, "key": id, "value": {"rev": "1-0"}, "doc": document(index)}),
            )
            .expect("write");
        }
        writer.write_all(b"\r\n]}\n").expect("write");
        writer.flush().expect("flush");
        drop(writer);
        for file in [ndjson, all_docs] {
            let bytes = std::fs::metadata(&file).expect("metadata").len();
            let started = std::time::Instant::now();
            let mut receiver = read_path(&file, None, DEFAULT_BATCH_SIZE);
            let mut count = 0;
            while let Some(message) = receiver.recv().await {
                count += message.expect("no error").batch.documents.len();
            }
            let elapsed = started.elapsed();
            assert_eq!(count, COUNT);
            println!(
                "{}: {COUNT} documents, {} MB in {:.2?}: {:.0} documents/s",
                file.file_name().expect("name").to_string_lossy(),
                bytes / 1_000_000,
                elapsed,
                COUNT as f64 / elapsed.as_secs_f64()
            );
        }
    }
}
