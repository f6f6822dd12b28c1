//! The one ingestion path every face shares: a batch of raw documents is read, its
//! references checked, and written in one transaction with the checkpoint it reached.

use super::sources::{SourceError, SourceMessage, SourceProblem};
use super::{RawDocument, SourceBatch};
use crate::domain::classify::NumberClassifiers;
use crate::domain::inventory::{check_references, Change, Database, InventoryChange, InventoryRecord};
use crate::domain::summary::GregorianSeconds;
use crate::domain::AccountId;
use crate::store::{InventoryWrite, RejectedDocument, Store, StoreError};
use crate::wire::kazoo::{read_document, Reading, Rejection};
use std::collections::{BTreeMap, HashSet};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

/// Rejections named one by one in a report; the rest are counted (all of them stay in
/// the store's quarantine, `tally inventory rejected` lists them).
pub const NAMED_REJECTIONS: usize = 100;

/// Rounds of retrying quarantined documents at the end of a run: each round can only
/// apply documents whose awaited account arrived in the round before.
const RETRY_ROUNDS: usize = 16;

/// Quarantined documents read per retry round.
const RETRY_PAGE: u64 = 5_000;

/// Why ingestion stopped (a bad document never stops it: it is rejected and counted).
#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Why [`IngestRun::apply_source`] stopped.
#[derive(Debug, thiserror::Error)]
pub enum SourceApplyError {
    #[error(transparent)]
    Source(#[from] SourceError),
    #[error(transparent)]
    Ingest(#[from] IngestError),
}

/// One rejected document, named.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RejectionReport {
    pub database: String,
    pub id: Option<String>,
    /// Where the source read it (file and line, feed sequence, request).
    pub origin: String,
    /// The JSON path of the field at fault.
    pub path: String,
    pub problem: String,
    /// The account the document waits for, if it can still be applied when it arrives.
    pub waiting_for: Option<AccountId>,
}

impl std::fmt::Display for RejectionReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let id = self.id.as_deref().unwrap_or("(no _id)");
        write!(
            f,
            "{}: {} {}: {}: {}",
            self.origin, self.database, id, self.path, self.problem
        )?;
        if let Some(account) = &self.waiting_for {
            write!(f, " (kept; applied when {account} arrives)")?;
        }
        Ok(())
    }
}

/// What a run of ingestion did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IngestReport {
    /// Documents read.
    pub documents: u64,
    /// Documents that changed the inventory.
    pub applied: u64,
    /// Documents already in the inventory as they are (a re-import).
    pub unchanged: u64,
    /// Documents tally does not count, by type.
    pub ignored: BTreeMap<String, u64>,
    /// Documents rejected and still not applied at the end of the run.
    pub rejected: u64,
    /// The first [`NAMED_REJECTIONS`] of them.
    pub rejections: Vec<RejectionReport>,
    /// Times an account was marked for recounting by a batch (an account written by
    /// several batches counts once per batch).
    pub accounts_marked: u64,
    /// Accounts waiting for a recount at the end of the run (`tally run reconcile
    /// --changed`), whoever marked them.
    pub accounts_to_recount: u64,
    /// Documents kept from earlier (or this) run that applied once their account came.
    pub retried: u64,
    pub duration: Duration,
}

impl IngestReport {
    pub fn ignored_total(&self) -> u64 {
        self.ignored.values().sum()
    }

    /// Some documents could not be used (exit code 65).
    pub fn is_partial(&self) -> bool {
        self.rejected > 0
    }

    /// The report as the command line's `--json` and the API answer it.
    pub fn to_json(&self) -> serde_json::Value {
        let rejections: Vec<serde_json::Value> = self
            .rejections
            .iter()
            .map(|rejection| {
                serde_json::json!({
                    "database": rejection.database,
                    "id": rejection.id,
                    "origin": rejection.origin,
                    "path": rejection.path,
                    "problem": rejection.problem,
                    "waiting_for": rejection.waiting_for.as_ref().map(AccountId::as_str),
                })
            })
            .collect();
        serde_json::json!({
            "documents": self.documents,
            "applied": self.applied,
            "unchanged": self.unchanged,
            "ignored": self.ignored_total(),
            "ignored_by_type": self.ignored,
            "rejected": self.rejected,
            "rejections": rejections,
            "accounts_to_recount": self.accounts_to_recount,
            "retried": self.retried,
            "duration_ms": u64::try_from(self.duration.as_millis()).unwrap_or(u64::MAX),
        })
    }

    /// One line for people: what was read and what became of it.
    pub fn summary(&self) -> String {
        format!(
            "{} documents: {} applied, {} unchanged, {} ignored, {} rejected; {} accounts to recount; {} ms",
            self.documents,
            self.applied,
            self.unchanged,
            self.ignored_total(),
            self.rejected,
            self.accounts_to_recount,
            self.duration.as_millis()
        )
    }

    fn reject(&mut self, rejection: RejectionReport) {
        self.rejected += 1;
        if self.rejections.len() < NAMED_REJECTIONS {
            self.rejections.push(rejection);
        }
    }
}

/// The ingestion core.
#[derive(Clone)]
pub struct Ingestor {
    store: Store,
    classifiers: NumberClassifiers,
}

/// A document rejected by this run, so a later retry that applies it can take the
/// rejection back.
type RejectedKey = (String, String);

impl Ingestor {
    pub fn new(store: Store, classifiers: NumberClassifiers) -> Ingestor {
        Ingestor { store, classifiers }
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Reads every document of `batch` (`wire::kazoo::read_document`): pure work that
    /// needs no store, so a source can prepare the next batch on another thread while
    /// [`IngestRun::apply_prepared`] writes this one.
    pub fn prepare(&self, batch: SourceBatch) -> PreparedBatch {
        let readings = batch
            .documents
            .iter()
            .map(|raw| read_document(&Database::parse(&raw.database), &raw.document, &self.classifiers))
            .collect();
        PreparedBatch { batch, readings }
    }

    /// Starts a run: stored numbers are reclassified first if the classifier list
    /// changed since they were written.
    pub async fn start(&self, now: GregorianSeconds) -> Result<IngestRun, IngestError> {
        self.store.reclassify_numbers(&self.classifiers, now).await?;
        Ok(IngestRun {
            ingestor: self.clone(),
            report: IngestReport::default(),
            rejected_here: HashSet::new(),
            started: Instant::now(),
            now,
        })
    }
}

/// A batch whose documents are read, ready for [`IngestRun::apply_prepared`].
pub struct PreparedBatch {
    batch: SourceBatch,
    /// One per document of the batch, in order.
    readings: Vec<Result<Reading, Rejection>>,
}

/// One run of ingestion: batches go in, one report comes out.
pub struct IngestRun {
    ingestor: Ingestor,
    report: IngestReport,
    rejected_here: HashSet<RejectedKey>,
    started: Instant,
    now: GregorianSeconds,
}

impl IngestRun {
    pub fn report(&self) -> &IngestReport {
        &self.report
    }

    /// Reads, checks and writes one batch in one transaction (with its checkpoint).
    pub async fn apply(&mut self, batch: SourceBatch) -> Result<(), IngestError> {
        let prepared = self.ingestor.prepare(batch);
        self.apply_documents(prepared, false).await
    }

    /// [`IngestRun::apply`] of a batch [`Ingestor::prepare`] read beforehand.
    pub async fn apply_prepared(&mut self, prepared: PreparedBatch) -> Result<(), IngestError> {
        self.apply_documents(prepared, false).await
    }

    /// Applies every batch a file source sends ([`super::sources::read_path`],
    /// [`super::sources::read_stdin`]), as `tally inventory import` does: each batch's
    /// documents are read ([`Ingestor::prepare`]) on a blocking thread while the batch
    /// before is written, so reading no longer waits for the database. Batches are
    /// applied in order, each in its own transaction; a source's fatal error is returned
    /// after the batches read before it are applied.
    pub async fn apply_source(&mut self, receiver: &mut mpsc::Receiver<SourceMessage>) -> Result<(), SourceApplyError> {
        let mut pending: Option<(Vec<SourceProblem>, tokio::task::JoinHandle<PreparedBatch>)> = None;
        while let Some(message) = receiver.recv().await {
            let read = match message {
                Ok(read) => read,
                Err(error) => {
                    if let Some((problems, prepared)) = pending.take() {
                        self.apply_pending(problems, prepared).await?;
                    }
                    return Err(error.into());
                }
            };
            let ingestor = self.ingestor.clone();
            let next = tokio::task::spawn_blocking(move || ingestor.prepare(read.batch));
            if let Some((problems, prepared)) = pending.replace((read.problems, next)) {
                self.apply_pending(problems, prepared).await?;
            }
        }
        if let Some((problems, prepared)) = pending.take() {
            self.apply_pending(problems, prepared).await?;
        }
        Ok(())
    }

    async fn apply_pending(
        &mut self,
        problems: Vec<SourceProblem>,
        prepared: tokio::task::JoinHandle<PreparedBatch>,
    ) -> Result<(), IngestError> {
        for problem in problems {
            self.reject_unreadable(problem.origin, problem.problem);
        }
        let prepared = match prepared.await {
            Ok(prepared) => prepared,
            Err(error) => std::panic::resume_unwind(error.into_panic()),
        };
        self.apply_prepared(prepared).await
    }

    /// Counts a document its source could not even parse (a line that is not JSON).
    pub fn reject_unreadable(&mut self, origin: String, problem: String) {
        self.report.documents += 1;
        self.report.reject(RejectionReport {
            database: String::new(),
            id: None,
            origin,
            path: "$".to_owned(),
            problem,
            waiting_for: None,
        });
    }

    async fn apply_documents(&mut self, prepared: PreparedBatch, retrying: bool) -> Result<(), IngestError> {
        let PreparedBatch { batch, readings } = prepared;
        let mut changes: Vec<InventoryChange> = Vec::with_capacity(batch.documents.len());
        let mut sources: Vec<&RawDocument> = Vec::with_capacity(batch.documents.len());
        let mut quarantine: Vec<RejectedDocument> = Vec::new();
        let mut rejections: Vec<RejectionReport> = Vec::new();
        if !retrying {
            self.report.documents += u64::try_from(batch.documents.len()).unwrap_or(u64::MAX);
        }
        for (raw, reading) in batch.documents.iter().zip(readings) {
            match reading {
                Ok(Reading::Change(change)) => {
                    changes.push(change);
                    sources.push(raw);
                }
                Ok(Reading::Ignored { kind }) => *self.report.ignored.entry(kind).or_default() += 1,
                Err(rejection) => {
                    if let Some(id) = &rejection.id {
                        let database = Database::parse(&raw.database);
                        quarantine.push(quarantined(raw, &database, id, rejection.to_string(), None));
                    }
                    rejections.push(named(raw, rejection, None));
                }
            }
        }

        let referenced = referenced_accounts(&changes);
        let known = self.ingestor.store.known_accounts(&referenced).await?;
        let verdicts = check_references(&changes, &known.existing, known.root.as_ref());
        let mut accepted: Vec<InventoryChange> = Vec::with_capacity(changes.len());
        let mut accepted_keys: Vec<RejectedKey> = Vec::new();
        for ((change, raw), verdict) in changes.into_iter().zip(sources).zip(verdicts) {
            match verdict {
                None => {
                    if retrying || !self.rejected_here.is_empty() {
                        accepted_keys.push((change.database.canonical_name(), change.id.as_str().to_owned()));
                    }
                    accepted.push(change);
                }
                Some(problem) => {
                    let rejection = Rejection {
                        database: change.database.canonical_name(),
                        id: Some(change.id.as_str().to_owned()),
                        path: problem.path(&change).to_owned(),
                        problem: problem.to_string(),
                    };
                    let waiting_for = problem.waiting_for().cloned();
                    quarantine.push(quarantined(
                        raw,
                        &change.database,
                        change.id.as_str(),
                        rejection.to_string(),
                        waiting_for.clone(),
                    ));
                    rejections.push(named(raw, rejection, waiting_for));
                }
            }
        }

        let written = self
            .ingestor
            .store
            .write_inventory(InventoryWrite {
                changes: &accepted,
                rejected: &quarantine,
                checkpoint: batch.checkpoint.as_ref(),
                now: self.now,
            })
            .await?;
        self.report.applied += written.changed;
        self.report.unchanged += written.unchanged;
        self.report.accounts_marked += written.accounts_marked;

        // A document this run rejected earlier and has now applied is not rejected.
        for key in accepted_keys {
            if self.rejected_here.remove(&key) {
                self.report.rejected = self.report.rejected.saturating_sub(1);
                self.report
                    .rejections
                    .retain(|named| !(named.database == key.0 && named.id.as_deref() == Some(key.1.as_str())));
            }
            if retrying {
                self.report.retried += 1;
            }
        }
        for rejection in rejections {
            if retrying {
                // Already reported by the run that rejected it; it stays in quarantine.
                tracing::debug!(rejection = %rejection, "a kept document still waits");
                continue;
            }
            if let Some(id) = &rejection.id {
                if !self.rejected_here.insert((rejection.database.clone(), id.clone())) {
                    continue;
                }
            }
            tracing::warn!(rejection = %rejection, "document rejected");
            self.report.reject(rejection);
        }
        Ok(())
    }

    /// Retries the quarantined documents whose awaited account has arrived, then
    /// returns the run's report.
    pub async fn finish(mut self) -> Result<IngestReport, IngestError> {
        for _ in 0..RETRY_ROUNDS {
            let waiting = self.ingestor.store.waiting_rejections(RETRY_PAGE).await?;
            if waiting.is_empty() {
                break;
            }
            let before = self.report.applied + self.report.unchanged;
            let documents = waiting
                .into_iter()
                .filter_map(|kept| {
                    let document = serde_json::from_str(&kept.document).ok()?;
                    Some(RawDocument {
                        origin: format!("quarantine {} {}", kept.database, kept.id),
                        database: kept.database,
                        document,
                    })
                })
                .collect();
            let prepared = self.ingestor.prepare(SourceBatch {
                documents,
                checkpoint: None,
            });
            self.apply_documents(prepared, true).await?;
            if self.report.applied + self.report.unchanged == before {
                break;
            }
        }
        self.report.accounts_to_recount = self.ingestor.store.marked_account_count().await?;
        self.report.duration = self.started.elapsed();
        Ok(self.report)
    }
}

/// Every account a batch names: accounts, their parents, owners of objects and numbers.
fn referenced_accounts(changes: &[InventoryChange]) -> Vec<AccountId> {
    let mut accounts: HashSet<&AccountId> = HashSet::new();
    for change in changes {
        if let Change::Upsert(InventoryRecord::Account(account)) = &change.change {
            accounts.insert(&account.id);
            if let Some(parent) = &account.parent {
                accounts.insert(parent);
            }
        }
        if let Some(account) = change.account() {
            accounts.insert(account);
        }
    }
    accounts.into_iter().cloned().collect()
}

fn quarantined(
    raw: &RawDocument,
    database: &Database,
    id: &str,
    problem: String,
    waiting_for: Option<AccountId>,
) -> RejectedDocument {
    RejectedDocument {
        database: database.canonical_name(),
        id: id.to_owned(),
        document: raw.document.to_string(),
        problem,
        waiting_for,
    }
}

fn named(raw: &RawDocument, rejection: Rejection, waiting_for: Option<AccountId>) -> RejectionReport {
    RejectionReport {
        database: rejection.database,
        id: rejection.id,
        origin: raw.origin.clone(),
        path: rejection.path,
        problem: rejection.problem,
        waiting_for,
    }
}
