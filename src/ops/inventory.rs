//! `POST /v2/inventory`: documents sent over HTTP, through the same ingestion core as
//! a dump or a CouchDB feed (super admins only: it writes any account's inventory).

use super::{Caller, Operations, OpsError};
use crate::ingest::sources::documents_from_body;
use crate::ingest::{IngestError, SourceBatch};

impl From<IngestError> for OpsError {
    fn from(error: IngestError) -> Self {
        match error {
            IngestError::Store(error) => OpsError::Store(error),
        }
    }
}

impl Operations {
    /// Applies the documents of `body` (NDJSON or a JSON array, each document possibly
    /// an envelope `{"database", "doc"}`; `database` names the others) and answers the
    /// report: counts of applied, unchanged, ignored and rejected documents, and each
    /// rejected one by database, id and field.
    pub async fn ingest_documents(
        &self,
        caller: &Caller,
        body: &[u8],
        database: Option<&str>,
    ) -> Result<serde_json::Value, OpsError> {
        caller.check_super_admin()?;
        let documents = documents_from_body(body, database)
            .map_err(|problem| OpsError::field("data", "type", problem.to_string()))?;
        let batch_size = self.context.settings.ingest.batch_size.max(1);
        let mut run = self.context.ingestor().start(self.clock.now()).await?;
        let mut documents = documents.into_iter().peekable();
        while documents.peek().is_some() {
            let batch = SourceBatch {
                documents: documents.by_ref().take(batch_size).collect(),
                checkpoint: None,
            };
            run.apply(batch).await?;
        }
        let report = run.finish().await?;
        Ok(report.to_json())
    }
}
