//! Ingestion: the platform's documents (Kazoo's accounts, users, devices, numbers…)
//! become tally's inventory.
//!
//! One core, three faces. Every face (a dump on disk, a CouchDB `_changes` feed, an
//! HTTP `POST /v2/inventory`) produces [`SourceBatch`]es of raw documents; the
//! [`Ingestor`] reads each document (`wire::kazoo`), checks its references against the
//! accounts known (`domain::inventory::check_references`), and has the store write the
//! batch in one transaction with the checkpoint it reached. A document that cannot be
//! used is rejected with its database, id and field, and kept in the store's
//! quarantine: one that waits for an account still to come is retried when accounts
//! arrive, so nothing is lost to the order documents come in.
//!
//! Must not: price, reconcile, or hold a whole input in memory (sources stream).

mod core;
pub mod couchdb;
pub mod sources;

pub use self::core::{
    IngestError, IngestReport, IngestRun, Ingestor, PreparedBatch, RejectionReport, SourceApplyError, NAMED_REJECTIONS,
};

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
    /// A feed's position after these documents; written in the batch's transaction so
    /// a restart resumes exactly after what was applied.
    pub checkpoint: Option<crate::domain::inventory::Checkpoint>,
}
