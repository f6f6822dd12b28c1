//! `tally demo`: the demo data set loaded the way a platform's data is, so a newcomer
//! exercises what production does. The accounts and their inventory are Kazoo
//! documents ([`crate::demo::documents`]) applied through the ingestion core in
//! batches; the plan catalog and assignments, which are not inventory, are written by
//! the store once the accounts they name exist.
//!
//! Orchestration only: the documents come from `demo`, the rules from `ingest`, the
//! SQL from `store`.

use crate::demo::documents::documents;
use crate::demo::{generate, DemoSpec};
use crate::domain::classify::NumberClassifiers;
use crate::domain::summary::GregorianSeconds;
use crate::ingest::{IngestError, IngestReport, Ingestor, RawDocument, SourceBatch};
use crate::store::{Backend, Store, StoreError};
use std::time::{Duration, Instant};

/// Documents per ingestion batch unless told otherwise.
pub const DEMO_BATCH_SIZE: usize = 2_000;

/// Where the demo's documents say they come from.
pub const DEMO_ORIGIN: &str = "tally demo";

/// What `tally demo` loaded.
#[derive(Debug)]
pub struct DemoReport {
    pub accounts: u64,
    pub resellers: u64,
    pub plans: u64,
    pub assignments: u64,
    /// Documents applied through the ingestion core.
    pub documents: u64,
    /// Inventory rows stored (users, devices, numbers, boxes, apps, limits, …).
    pub objects: u64,
    /// The ingestion core's own account of the load.
    pub ingest: IngestReport,
    /// The whole load: documents, catalog and assignments.
    pub duration: Duration,
}

impl DemoReport {
    pub fn documents_per_second(&self) -> f64 {
        self.documents as f64 / self.duration.as_secs_f64().max(1e-9)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Ingest(#[from] IngestError),
}

/// Loads the demo data set into an empty database: the account documents first, then
/// the catalog, assignments and services rows (they name accounts), then every other
/// document, then the run's `finish` (which retries anything kept waiting). Documents
/// are made lazily and applied `batch_size` at a time: memory stays flat whatever the
/// number of accounts.
pub async fn load(
    store: &Store,
    classifiers: NumberClassifiers,
    spec: DemoSpec,
    now: GregorianSeconds,
    batch_size: usize,
) -> Result<DemoReport, DemoError> {
    let started = Instant::now();
    store.ensure_empty_for_demo().await?;
    let data = generate(spec);
    let account_documents = data.accounts.len();
    let mut run = Ingestor::new(store.clone(), classifiers).start(now).await?;
    let mut pending = documents(spec, &data);
    let batch_size = batch_size.max(1);
    let mut next_batch = |count: usize| SourceBatch {
        documents: pending
            .by_ref()
            .take(count)
            .map(|(database, document)| RawDocument {
                database,
                document,
                origin: DEMO_ORIGIN.to_owned(),
            })
            .collect(),
        checkpoint: None,
    };

    let mut accounts_left = account_documents;
    while accounts_left > 0 {
        let batch = next_batch(accounts_left.min(batch_size));
        if batch.documents.is_empty() {
            break;
        }
        accounts_left -= batch.documents.len();
        run.apply(batch).await?;
    }
    let catalog = store.seed_demo(&data).await?;
    loop {
        let batch = next_batch(batch_size);
        if batch.documents.is_empty() {
            break;
        }
        run.apply(batch).await?;
    }
    let ingest = run.finish().await?;
    if store.backend() == Backend::Postgres {
        // A million fresh rows: the planner's statistics are stale until analysed.
        store.execute_script("ANALYZE").await?;
    }
    let objects = store.inventory_object_count().await?;
    Ok(DemoReport {
        accounts: u64::try_from(account_documents).unwrap_or(u64::MAX),
        resellers: u64::try_from(data.accounts.iter().filter(|account| account.is_reseller).count())
            .unwrap_or(u64::MAX),
        plans: catalog.plans,
        assignments: catalog.assignments,
        documents: ingest.documents,
        objects,
        ingest,
        duration: started.elapsed(),
    })
}
