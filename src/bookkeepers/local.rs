//! The `default` bookkeeper (legacy `kz_bookkeeper_local`): no external system.
//!
//! It accepts every invoice at once and leaves the stored standing alone
//! (`sync-and-bookkeepers.md` §5.2, §5.3). The sync job normally does not even call
//! it (invoices of type `default` are completed at commit time, §2.3); it exists so
//! that the router can treat every type alike and a full sync has something to call.
//! It must not do I/O: the record of the acceptance is the audit log the sync job
//! writes, plus a tracing event and a counter here for operators and tests.

use std::sync::atomic::{AtomicU64, Ordering};

use super::{Acknowledgement, Bookkeeper, BoxFuture, DeliveryOutcome, DeliveryRequest, StandingChange};

/// Accepts every delivery; counts them.
#[derive(Debug, Default)]
pub struct LocalBookkeeper {
    accepted: AtomicU64,
}

impl LocalBookkeeper {
    pub fn new() -> LocalBookkeeper {
        LocalBookkeeper::default()
    }

    /// How many deliveries this instance accepted since it was created.
    pub fn accepted(&self) -> u64 {
        self.accepted.load(Ordering::Relaxed)
    }
}

impl Bookkeeper for LocalBookkeeper {
    fn deliver<'a>(&'a self, request: &'a DeliveryRequest) -> BoxFuture<'a, DeliveryOutcome> {
        self.accepted.fetch_add(1, Ordering::Relaxed);
        tracing::debug!(
            account_id = %request.account_id(),
            sync_id = %request.sync_id(),
            idempotency_key = %request.idempotency_key(),
            "local bookkeeper accepted invoice"
        );
        Box::pin(std::future::ready(DeliveryOutcome::Synced(Acknowledgement {
            standing: StandingChange::Unchanged,
            response_code: None,
        })))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bookkeepers::SyncId;
    use crate::domain::AccountId;
    use serde_json::json;

    #[tokio::test]
    async fn every_delivery_is_accepted_without_touching_the_standing() {
        let bookkeeper = LocalBookkeeper::new();
        let request = DeliveryRequest::new(
            AccountId::parse("a1").expect("valid"),
            SyncId::parse("s1").expect("valid"),
            &json!({"account_id": "a1", "sync_id": "s1", "items": {}, "invoice": {"items": []},
                    "bookkeeper": {"type": "default", "vendor_id": "v"}}),
        )
        .expect("valid invoice");
        for expected_count in 1..=2 {
            let outcome = bookkeeper.deliver(&request).await;
            assert_eq!(
                outcome,
                DeliveryOutcome::Synced(Acknowledgement {
                    standing: StandingChange::Unchanged,
                    response_code: None
                })
            );
            assert_eq!(bookkeeper.accepted(), expected_count);
        }
    }
}
