//! (lead writes the module doc)
pub mod couchdb;
pub mod sources;

/// One document as a source read it, before tally makes sense of it.
#[derive(Debug, Clone)]
pub struct RawDocument {
    /// The database the document came from, as the source named it (any form).
    pub database: String,
    pub document: serde_json::Value,
    /// Where it was read, for error messages: `dump.ndjson:12`, `couchdb seq 42`.
    pub origin: String,
}

/// Documents a source hands over together, and how far the source got with them.
#[derive(Debug, Clone, Default)]
pub struct SourceBatch {
    pub documents: Vec<RawDocument>,
    /// A feed's position after these documents; written in the batch's transaction.
    pub checkpoint: Option<crate::domain::inventory::Checkpoint>,
}
