//! Issue 10, done when: a CouchDB-protocol server (pouchdb-server) holding a
//! Kazoo-shaped platform of 1,000 accounts is followed by tally and billed; changing
//! one device there changes that account's invoice after the next `ingest` and sync,
//! with exactly one audit row.

use crate::couchdb_server::{url_name, CouchServer};
use crate::fake_bookkeeper::FakeBookkeeper;
use crate::helpers::{at, on_both_backends};
use serde_json::Value;
use tally::config::{DatabaseUrl, Settings};
use tally::demo::documents::{account_database, documents};
use tally::demo::{generate, DemoSpec};
use tally::jobs::context::{JobContext, RunScope};
use tally::store::Store;
use tokio_util::sync::CancellationToken;

const T0: i64 = 63_900_000_000;

async fn audit_rows(store: &Store) -> i64 {
    store
        .query_count("SELECT COUNT(*) FROM audit_logs")
        .await
        .expect("counts")
}

async fn a_followed_platform_of_a_thousand_accounts_is_billed_and_one_device_change_makes_one_audit_row(store: &Store) {
    let Some(couch) = CouchServer::start().await else {
        return;
    };
    let spec = DemoSpec {
        accounts: 1_000,
        seed: 3,
    };
    let data = generate(spec);
    let platform: Vec<(String, Value)> = documents(spec, &data).collect();
    couch.load(&platform).await;

    let bookkeeper = FakeBookkeeper::start().await;
    let mut settings = Settings::default();
    settings.ingest.couchdb.url = DatabaseUrl::new(couch.url.clone());
    settings.bookkeepers.http.http_url = bookkeeper.url();
    let context = JobContext::new(store.clone(), settings).expect("context");
    let client = context.couch_client().expect("client");

    let followed = context
        .ingest_cycle(&client, false, at(T0))
        .await
        .expect("the platform is read");
    assert_eq!(followed.ingest.rejected, 0, "{:?}", followed.ingest.rejections);
    assert_eq!(followed.ingest.documents, platform.len() as u64);
    store.seed_demo(&data).await.expect("the plan catalog and assignments");
    let billed = context
        .billing(&RunScope::default(), at(T0 + 10), CancellationToken::new(), &|_| {})
        .await
        .expect("billing runs");
    assert_eq!(billed.reconcile.accounts_scanned, 1_000);
    let synced = billed.sync.as_ref().expect("sync ran");
    assert!(synced.invoices_changed > 500, "{synced:?}");
    assert!(!bookkeeper.requests().is_empty(), "HTTP invoices were delivered");

    // A customer billed on SIP devices (plans simple_a and simple_b), and one of its
    // softphones, which becomes a SIP device on the platform.
    let customer = data
        .accounts
        .iter()
        .find(|account| {
            account.parent_id.is_some()
                && !account.is_reseller
                && account.index % 5 == 0
                && account.enabled
                && !account.deleted
        })
        .expect("such a customer");
    let database = account_database(&customer.id);
    let softphone = platform
        .iter()
        .find(|(name, document)| {
            *name == database
                && document["pvt_type"] == "device"
                && document["device_type"] == "softphone"
                && document.get("enabled") != Some(&Value::Bool(false))
                && document.get("pvt_deleted") != Some(&Value::Bool(true))
        })
        .map(|(_, document)| document["_id"].as_str().expect("an id").to_owned())
        .expect("the customer has a softphone");
    let mut device = couch.get(&url_name(&database), &softphone).await;
    device["device_type"] = Value::from("sip_device");
    couch.put(&url_name(&database), device).await;

    let before = audit_rows(store).await;
    let cycle = context
        .ingest_cycle(&client, true, at(T0 + 100))
        .await
        .expect("the change is read");
    assert_eq!(cycle.ingest.applied, 1, "{:?}", cycle.ingest);
    let recount = cycle.reconcile.expect("the job recounts what changed");
    assert_eq!(
        recount.accounts_scanned, 1,
        "only the changed account is recounted: {recount:?}"
    );
    // The customer's account bucket, and each ancestor's cascade bucket.
    assert!(recount.accounts_changed >= 2, "{recount:?}");
    let synced = context
        .sync(&RunScope::default(), at(T0 + 110), CancellationToken::new())
        .await
        .expect("sync runs");
    assert_eq!(synced.invoices_changed, 1, "{:?}", synced.changes);
    assert_eq!(audit_rows(store).await, before + 1);
    let changed = store
        .query_count(&format!(
            "SELECT COUNT(*) FROM audit_logs WHERE account_id = '{}' AND created_at = {}",
            customer.id,
            T0 + 110
        ))
        .await
        .expect("counts");
    assert_eq!(changed, 1, "the one audit row is the customer's");
}

on_both_backends!(a_followed_platform_of_a_thousand_accounts_is_billed_and_one_device_change_makes_one_audit_row);
