//! `tally run reconcile`: recount every account's quantities, roll them up the tree,
//! and record what changed (`quantities.md` §3, §4, §8; `audit-and-summaries.md` §4.2,
//! §5.6; `sync-and-bookkeepers.md` §3).
//!
//! The order of work: walk the tree, classify the accounts the walk could not reach
//! (pure, `domain::tree`), stage the recount and diff in the store, then either return
//! the staged changes (dry run) or let the store write them batch by batch. Broken
//! accounts are skipped and reported; the rest of the run goes on.

use crate::domain::classify::NumberClassifiers;
use crate::domain::summary::GregorianSeconds;
use crate::domain::tree::{find_broken, Breakage};
use crate::domain::AccountId;
use crate::store::{CountingQueries, FullRecount, ReconcileScope, ReconcileSession, StagedChange, Store, StoreError};
use std::collections::BTreeSet;
use std::fmt;
use std::time::{Duration, Instant};

/// How to run.
#[derive(Debug, Clone)]
pub struct ReconcileOptions {
    pub scope: ReconcileScope,
    /// Stage and report the changes; write nothing.
    pub dry_run: bool,
    /// The time written on records, summaries and dirty flags.
    pub now: GregorianSeconds,
    /// Changed accounts per transaction.
    pub batch_size: u64,
    /// The phone-number classifiers: stored classifications are recomputed first when
    /// the list changed since they were computed (`quantities.md` §2). `None` leaves
    /// them as stored (hand-made test data, benchmarks).
    pub classifiers: Option<NumberClassifiers>,
}

/// Why an account was left out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SkipReason {
    /// Its place in the tree is broken (cycle, dangling parent, broken ancestor).
    Tree(Breakage),
    /// It was asked for with `--account` but does not exist.
    Unknown,
}

impl fmt::Display for SkipReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SkipReason::Tree(breakage) => breakage.fmt(f),
            SkipReason::Unknown => f.write_str("no such account"),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SkippedAccount {
    pub account: AccountId,
    pub reason: SkipReason,
}

/// What a run did (or, dry, would do).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReconcileReport {
    pub accounts_scanned: u64,
    pub accounts_changed: u64,
    pub items_changed: u64,
    pub duration: Duration,
    pub skipped: Vec<SkippedAccount>,
    /// The staged changes, filled by dry runs only (a real run may change millions).
    pub changes: Vec<StagedChange>,
    pub dry_run: bool,
    /// Set when every reachable account was recounted, with why (an incremental run
    /// that found nothing forcing it leaves it `None`).
    pub full_recount: Option<FullRecount>,
}

impl ReconcileReport {
    /// Some accounts were skipped: the run is partial (exit code 65).
    pub fn is_partial(&self) -> bool {
        !self.skipped.is_empty()
    }

    /// What kept the run from doing all its work, for the run record's message.
    pub fn problems(&self) -> Vec<String> {
        match self.skipped.len() {
            0 => Vec::new(),
            skipped => vec![format!("{skipped} account(s) skipped")],
        }
    }

    /// The skipped accounts for JSON reports: `[{"account_id", "reason"}]`, as the
    /// sync report lists its own.
    pub fn skipped_json(&self) -> serde_json::Value {
        self.skipped
            .iter()
            .map(|skipped| {
                serde_json::json!({ "account_id": skipped.account.as_str(), "reason": skipped.reason.to_string() })
            })
            .collect()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ReconcileError {
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// One reconciliation over the configured scope.
pub async fn run_once(
    store: &Store,
    counting: &CountingQueries,
    options: &ReconcileOptions,
) -> Result<ReconcileReport, ReconcileError> {
    let started = Instant::now();
    let (mut session, mut report) = stage(store, counting, options).await?;
    if options.dry_run {
        report.changes = session.changes().await?;
    } else {
        session.begin_writing(options.now).await?;
        session
            .apply(options.now, &crate::runs::job_run_label("reconcile", options.now))
            .await?;
        session.settle(counting).await?;
    }
    session.finish().await?;
    report.duration = started.elapsed();
    Ok(report)
}

/// Walks the tree and stages the recount: the session's temporary tables hold every
/// change, nothing is written yet. The caller writes them (`apply`), reads them (a dry
/// run), and always ends with `finish`. The report's `changes` are left empty.
pub(crate) async fn stage(
    store: &Store,
    counting: &CountingQueries,
    options: &ReconcileOptions,
) -> Result<(ReconcileSession, ReconcileReport), ReconcileError> {
    let started = Instant::now();
    let mut scope = options.scope.clone();
    // Before staging, so the recount reads current classifications; a dry run writes
    // nothing, so it counts what is stored.
    if let (Some(classifiers), false) = (&options.classifiers, options.dry_run) {
        if let Some(changed) = store.reclassify_numbers(classifiers, options.now).await? {
            tracing::info!(numbers = changed, "numbers reclassified with a new classifier list");
            // The triggers marked their accounts, but a new list may touch most numbers:
            // a full recount is the safe and, then, cheaper way.
            if scope == ReconcileScope::Incremental {
                scope = ReconcileScope::All;
            }
        }
    }
    let mut session = store.reconcile_session().await?;
    let unreachable = session.walk_tree().await?;
    let broken = find_broken(&unreachable);
    let stage = session.stage(&scope, counting, options.batch_size).await?;
    if let Some(reason) = &stage.full_recount {
        tracing::info!(reason = %reason, "reconcile recounts every account");
    }

    // A marked run reports broken accounts as a full run does: they are skipped by
    // every run until the tree is repaired.
    let requested: Option<BTreeSet<&AccountId>> = match &options.scope {
        ReconcileScope::All | ReconcileScope::Marked | ReconcileScope::Incremental => None,
        ReconcileScope::Accounts(accounts) => Some(accounts.iter().collect()),
    };
    let mut skipped: Vec<SkippedAccount> = broken
        .into_iter()
        .filter(|broken| {
            requested
                .as_ref()
                .is_none_or(|requested| requested.contains(&broken.account))
        })
        .map(|broken| SkippedAccount {
            account: broken.account,
            reason: SkipReason::Tree(broken.breakage),
        })
        .collect();
    skipped.extend(stage.unknown_accounts.iter().map(|account| SkippedAccount {
        account: account.clone(),
        reason: SkipReason::Unknown,
    }));
    for skip in &skipped {
        tracing::warn!(account_id = %skip.account, reason = %skip.reason, "account skipped");
    }

    let report = ReconcileReport {
        accounts_scanned: stage.accounts_scanned,
        accounts_changed: stage.accounts_changed,
        items_changed: stage.items_changed,
        duration: started.elapsed(),
        skipped,
        changes: Vec::new(),
        dry_run: options.dry_run,
        full_recount: stage.full_recount,
    };
    Ok((session, report))
}
