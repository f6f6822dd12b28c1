//! The impact of a change before it is made (issue 15 item 1): every account the change
//! touches is priced twice from what sync reads, once as stored ("old") and once with
//! the change laid over the stored rows ("new", `Store::pricing_inputs_with`), and the
//! two are compared by the domain (`domain::impact`). Nothing is written.
//!
//! "Old" is the account re-priced now, not its last invoice: the report isolates the
//! change's effect even when sync is behind (quantities changed since the last run).
//! Batches of accounts as in sync, a few set-based reads each; only the changed
//! accounts' figures and changed lines are kept, never their invoices.

use crate::domain::impact::{account_impact, AccountImpact, ImpactReport};
use crate::domain::repricing::{reprice, MergeCache};
use crate::domain::AccountId;
use crate::jobs::sync::{account_pricing, read_batch, SkippedAccount, SyncOptions, SyncReport};
use crate::store::{AncestorCache, PendingChange, PricingSource, Store, StoreError, StoredAccount};
use std::collections::HashMap;

/// What pricing a pending change found.
#[derive(Debug, Clone, Default)]
pub struct ImpactRun {
    /// The accounts whose invoices the change alters, largest change first.
    pub report: ImpactReport,
    /// Accounts the change touches (assigned a changed plan, or changed themselves).
    pub accounts_touched: usize,
    /// Touched accounts that could not be priced on either side; they are not in the report.
    pub skipped: Vec<SkippedAccount>,
}

/// Prices `touched` with and without `pending` and reports what differs.
pub async fn run_once(
    store: &Store,
    options: &SyncOptions,
    touched: &[AccountId],
    pending: &PendingChange,
) -> Result<ImpactRun, StoreError> {
    let mut reads = SyncReport::default();
    let mut ancestors = AncestorCache::default();
    // Merged plans are cached by plan ids, not documents: one cache per side.
    let (mut old_cache, mut new_cache) = (MergeCache::new(), MergeCache::new());
    let mut impacts: Vec<AccountImpact> = Vec::new();
    let mut skipped: Vec<SkippedAccount> = Vec::new();
    for batch in touched.chunks(options.batch_size.max(1)) {
        let stored = PendingChange::default();
        let mut old_source = PricingSource::Stored {
            store,
            pending: &stored,
        };
        let old_accounts = read_batch(&mut old_source, batch, &mut ancestors, &mut reads).await?;
        let mut new_source = PricingSource::Stored { store, pending };
        let new_accounts = read_batch(&mut new_source, batch, &mut ancestors, &mut reads).await?;
        let mut old_by_id: HashMap<AccountId, StoredAccount> = old_accounts
            .into_iter()
            .map(|stored| (stored.account.clone(), stored))
            .collect();
        for new in new_accounts {
            let Some(old) = old_by_id.remove(&new.account) else {
                continue;
            };
            let priced = price(&old, options, &mut old_cache)
                .and_then(|before| Ok((before, price(&new, options, &mut new_cache)?)))
                .and_then(|(before, after)| {
                    account_impact(new.account.clone(), new.reseller_id.clone(), &before, &after)
                        .map_err(|error| error.to_string())
                });
            match priced {
                Ok(Some(impact)) => impacts.push(impact),
                Ok(None) => {}
                Err(reason) => skipped.push(SkippedAccount {
                    account: new.account.clone(),
                    reason,
                }),
            }
        }
    }
    for problem in reads.skipped {
        if !skipped.iter().any(|known| known.account == problem.account) {
            skipped.push(problem);
        }
    }
    let report = ImpactReport::new(impacts).map_err(|error| StoreError::Refused(error.to_string()))?;
    Ok(ImpactRun {
        report,
        accounts_touched: touched.len(),
        skipped,
    })
}

/// The invoices sync would compute for a stored account.
fn price(
    stored: &StoredAccount,
    options: &SyncOptions,
    cache: &mut MergeCache,
) -> Result<Vec<crate::domain::invoice::Invoice>, String> {
    let pricing = account_pricing(stored, options, &mut Vec::new());
    reprice(&pricing, &options.priorities, options.first_commit, cache)
        .map(|commit| commit.snapshot)
        .map_err(|error| error.to_string())
}
