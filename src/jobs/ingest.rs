//! The `ingest` job and `tally inventory follow`: one follow cycle over the configured
//! CouchDB (every inventory database's `_changes` from its stored checkpoint), through
//! the ingestion core, then, when asked, a recount of the accounts it changed.
//!
//! Orchestration only: the feed is `ingest::couchdb`'s, the writes the core's.

use super::context::JobContext;
use super::reconcile::{ReconcileError, ReconcileReport};
use crate::domain::summary::GregorianSeconds;
use crate::ingest::couchdb::{follow_cycle, CouchClient, CouchError, CouchSettings, CycleReport, FollowError};
use crate::ingest::{IngestError, IngestReport, Ingestor};
use crate::store::StoreError;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Mutex;

/// What one cycle did.
#[derive(Debug, Clone)]
pub struct IngestCycle {
    pub feed: CycleReport,
    pub ingest: IngestReport,
    /// The recount of the accounts the cycle changed, when the run asked for one.
    pub reconcile: Option<ReconcileReport>,
}

#[derive(Debug, thiserror::Error)]
pub enum IngestJobError {
    #[error("no CouchDB to follow: set [ingest.couchdb] url (or TALLY_INGEST__COUCHDB__URL)")]
    NotConfigured,
    /// Temporary when the server is unreachable: the checkpoints stay, exit 75.
    #[error(transparent)]
    Couch(#[from] CouchError),
    #[error(transparent)]
    Ingest(#[from] IngestError),
    #[error(transparent)]
    Reconcile(#[from] ReconcileError),
}

impl IngestJobError {
    /// Retrying later may succeed: the server or the database was unreachable.
    pub fn is_temporary(&self) -> bool {
        match self {
            IngestJobError::Couch(error) => error.is_temporary(),
            IngestJobError::Ingest(IngestError::Store(error))
            | IngestJobError::Reconcile(ReconcileError::Store(error)) => error.is_temporary(),
            IngestJobError::NotConfigured => false,
        }
    }
}

impl From<StoreError> for IngestJobError {
    fn from(error: StoreError) -> Self {
        IngestJobError::Ingest(IngestError::Store(error))
    }
}

impl JobContext {
    /// The ingestion core over this context's store and classifiers.
    pub fn ingestor(&self) -> Ingestor {
        Ingestor::new(self.store.clone(), self.classifiers.clone())
    }

    /// The CouchDB client of `[ingest.couchdb]`.
    pub fn couch_client(&self) -> Result<CouchClient, IngestJobError> {
        let couchdb = &self.settings.ingest.couchdb;
        if couchdb.url.expose().is_empty() {
            return Err(IngestJobError::NotConfigured);
        }
        let settings = CouchSettings {
            url: couchdb.url.expose().to_owned(),
            username: Some(couchdb.username.clone()).filter(|name| !name.is_empty()),
            password: Some(couchdb.password.expose())
                .filter(|password| !password.is_empty())
                .map(crate::domain::inventory::Secret::new),
            batch_size: couchdb.page_size,
            timeout: Duration::from_secs(couchdb.timeout_seconds.max(1)),
        };
        Ok(CouchClient::new(&settings)?)
    }

    /// One follow cycle: every feed read to its end, each page written with its
    /// checkpoint; with `reconcile_changed`, the changed accounts recounted after.
    pub async fn ingest_cycle(
        &self,
        client: &CouchClient,
        reconcile_changed: bool,
        now: GregorianSeconds,
    ) -> Result<IngestCycle, IngestJobError> {
        let checkpoints = self.store.ingest_checkpoints(client.source()).await?;
        let run = Arc::new(Mutex::new(self.ingestor().start(now).await?));
        let feed = follow_cycle(client, &checkpoints, |batch| {
            let run = Arc::clone(&run);
            async move { run.lock().await.apply(batch).await }
        })
        .await;
        let run = Arc::into_inner(run)
            .expect("the sink is dropped once the cycle returns")
            .into_inner();
        let feed = match feed {
            Ok(feed) => feed,
            Err(FollowError::Couch(error)) => return Err(error.into()),
            Err(FollowError::Sink(error)) => return Err(error.into()),
        };
        let ingest = run.finish().await?;
        let reconcile = match reconcile_changed {
            true => Some(self.reconcile_changed(now).await?),
            false => None,
        };
        Ok(IngestCycle {
            feed,
            ingest,
            reconcile,
        })
    }
}
