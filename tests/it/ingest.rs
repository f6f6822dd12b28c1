//! Ingestion through the core on both backends: Kazoo documents become inventory that
//! reconciles to the quantities `quantities.md` §1 gives; bad documents are rejected by
//! name and lose nothing; a re-import changes nothing.

use crate::helpers::{at, id, on_both_backends, reconcile_all};
use std::collections::BTreeMap;
use tally::domain::classify::NumberClassifiers;
use tally::ingest::{IngestReport, Ingestor, RawDocument, SourceBatch};
use tally::store::Store;

pub const MASTER: &str = "f0000000000000000000000000000001";
pub const RESELLER: &str = "f00000000000000000000000000000a1";
pub const CUSTOMER: &str = "f00000000000000000000000000000c1";
pub const SUB_CUSTOMER: &str = "f00000000000000000000000000000d1";

const NOW: i64 = 63_900_000_000;

/// The documents of a fixture file of envelopes `{"database", "doc"}`, in order.
pub fn fixture(name: &str) -> Vec<RawDocument> {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/kazoo")
        .join(name);
    let text = std::fs::read_to_string(&path).expect("fixture reads");
    text.lines()
        .enumerate()
        .filter_map(|(index, line)| {
            let envelope: serde_json::Value = serde_json::from_str(line).ok()?;
            Some(RawDocument {
                database: envelope["database"].as_str().expect("database").to_owned(),
                document: envelope["doc"].clone(),
                origin: format!("{name}:{}", index + 1),
            })
        })
        .collect()
}

pub async fn ingest(store: &Store, documents: Vec<RawDocument>, batch_size: usize) -> IngestReport {
    let ingestor = Ingestor::new(store.clone(), NumberClassifiers::kazoo_defaults());
    let mut run = ingestor.start(at(NOW)).await.expect("ingestion starts");
    let mut documents = documents.into_iter().peekable();
    while documents.peek().is_some() {
        let batch: Vec<RawDocument> = documents.by_ref().take(batch_size).collect();
        run.apply(SourceBatch {
            documents: batch,
            checkpoint: None,
        })
        .await
        .expect("the batch is written");
    }
    run.finish().await.expect("ingestion finishes")
}

/// An account's stored buckets as `bucket:category.item → quantity`.
pub async fn quantities(store: &Store, account: &str) -> BTreeMap<String, i64> {
    let buckets = store.quantities(&id(account)).await.expect("quantities read");
    let mut all = BTreeMap::new();
    for (bucket, quantities) in [("account", &buckets.account), ("cascade", &buckets.cascade)] {
        for (category, item, quantity) in quantities.iter() {
            all.insert(format!("{bucket}:{category}.{item}"), quantity);
        }
    }
    all
}

fn expected(pairs: &[(&str, i64)]) -> BTreeMap<String, i64> {
    pairs.iter().map(|(key, value)| ((*key).to_owned(), *value)).collect()
}

/// What the fixture platform counts, worked out by hand from `quantities.md` §1.
pub fn customer_quantities() -> BTreeMap<String, i64> {
    expected(&[
        ("account:accounts.account", 1),
        ("account:devices.sip_device", 1),
        ("account:devices.softphone", 1),
        ("account:users.admin", 1),
        ("account:users.user", 1),
        ("account:qubicle.basic_recipient", 1),
        ("account:qubicle.pro_queue", 1),
        ("account:voicemails.mailbox", 1),
        ("account:voicemails.transcription", 1),
        ("account:faxes.mailbox", 1),
        ("account:conferences.conference", 1),
        ("account:limits.twoway_trunks", 2),
        ("account:limits.inbound_trunks", 1),
        ("account:account_apps.voip", 1),
        ("account:account_apps.fax", 1),
        ("account:user_apps.voip", 2),
        ("account:user_apps.fax", 1),
        ("account:number_carriers.knm_telnyx", 2),
        ("account:number_carriers.knm_bandwidth2", 1),
        ("account:number_services.e911", 1),
        ("account:number_services.cnam", 1),
        ("account:phone_numbers.did_us", 2),
        ("account:phone_numbers.tollfree_us", 1),
        ("account:port_request.submitted", 2),
        ("account:port_request.first_submitted", 2),
        // D below C: its account bucket rolls up into C's cascade.
        ("cascade:accounts.account", 1),
        ("cascade:devices.sip_device", 1),
        ("cascade:users.user", 1),
        ("cascade:number_carriers.knm_local", 1),
        ("cascade:number_services.local", 1),
    ])
}

async fn a_kazoo_platform_becomes_inventory_that_reconciles_to_its_quantities(store: &Store) {
    let report = ingest(store, fixture("platform.ndjson"), 7).await;
    assert_eq!(report.documents, 29);
    assert_eq!(report.rejected, 0, "{:?}", report.rejections);
    assert_eq!(report.ignored.get("callflow"), Some(&1));
    assert_eq!(
        report.ignored.get("number"),
        Some(&1),
        "the account database's copy of a number"
    );
    assert_eq!(report.ignored.get("database services"), Some(&1));
    // The number nobody is assigned is not inventory: writing it changes nothing.
    assert_eq!((report.applied, report.unchanged), (29 - report.ignored_total() - 1, 1));

    let reconciled = reconcile_all(store, at(NOW)).await;
    assert!(reconciled.skipped.is_empty(), "{:?}", reconciled.skipped);
    assert_eq!(quantities(store, CUSTOMER).await, customer_quantities());
    assert_eq!(
        quantities(store, SUB_CUSTOMER).await,
        expected(&[
            ("account:accounts.account", 1),
            ("account:devices.sip_device", 1),
            ("account:users.user", 1),
            ("account:number_carriers.knm_local", 1),
            ("account:number_services.local", 1),
        ])
    );
    let reseller = quantities(store, RESELLER).await;
    assert_eq!(reseller.get("account:branding.whitelabel"), Some(&1));
    assert_eq!(reseller.get("account:ips.dedicated"), Some(&1));
    assert_eq!(reseller.get("cascade:accounts.account"), Some(&2));
    assert_eq!(reseller.get("cascade:devices.sip_device"), Some(&2));
    assert_eq!(reseller.get("cascade:phone_numbers.did_us"), Some(&2));
    let master = quantities(store, MASTER).await;
    assert_eq!(master.get("cascade:accounts.account"), Some(&3));
    assert_eq!(
        store
            .query_count(&format!(
                "SELECT COUNT(*) FROM accounts WHERE id = '{CUSTOMER}' AND api_key = 'c-api-key-0001'"
            ))
            .await
            .expect("counts"),
        1,
        "the api key is kept for the API's api_auth"
    );
}

async fn reimporting_the_same_documents_changes_nothing(store: &Store) {
    let first = ingest(store, fixture("platform.ndjson"), 100).await;
    assert!(first.accounts_marked > 0);
    assert_eq!(
        first.accounts_to_recount, 4,
        "every account of the platform waits for its recount"
    );
    reconcile_all(store, at(NOW)).await;
    let second = ingest(store, fixture("platform.ndjson"), 5).await;
    assert_eq!(second.applied, 0, "{second:?}");
    assert_eq!(second.unchanged, first.applied + first.unchanged);
    assert_eq!(second.accounts_marked, 0);
    assert_eq!(second.accounts_to_recount, 0, "the full reconcile settled every mark");
    let again = reconcile_all(store, at(NOW + 60)).await;
    assert_eq!(again.accounts_changed, 0);
}

async fn bad_documents_are_rejected_by_name_and_the_rest_applies(store: &Store) {
    let mut documents = fixture("platform.ndjson");
    documents.extend(fixture("bad.ndjson"));
    let report = ingest(store, documents, 10).await;
    let named: Vec<(String, String)> = report
        .rejections
        .iter()
        .map(|rejection| (rejection.id.clone().unwrap_or_default(), rejection.path.clone()))
        .collect();
    assert_eq!(report.rejected, 5, "{named:?}");
    for expected in [
        ("dev-c-bad", "device_type"),
        ("not-a-hex-id", "_id"),
        ("f00000000000000000000000000000e1", "pvt_tree"),
        ("f00000000000000000000000000000e2", "pvt_tree"),
        ("+14155550199", "pvt_assigned_to"),
    ] {
        assert!(
            named.contains(&(expected.0.to_owned(), expected.1.to_owned())),
            "{expected:?} in {named:?}"
        );
    }
    let second_root = report
        .rejections
        .iter()
        .find(|rejection| rejection.id.as_deref() == Some("f00000000000000000000000000000e2"))
        .expect("named");
    assert!(second_root.problem.contains("second root"), "{second_root}");
    assert_eq!(second_root.database, "accounts");
    reconcile_all(store, at(NOW)).await;
    assert_eq!(quantities(store, CUSTOMER).await, customer_quantities());
    assert_eq!(store.rejection_count().await.expect("counts"), 5);
}

async fn a_document_waiting_for_its_account_applies_when_the_account_arrives(store: &Store) {
    let documents = fixture("platform.ndjson");
    let (accounts, rest): (Vec<RawDocument>, Vec<RawDocument>) = documents
        .into_iter()
        .partition(|document| document.database == "accounts");
    let (reseller_and_below, master_only): (Vec<RawDocument>, Vec<RawDocument>) = accounts
        .into_iter()
        .partition(|document| document.document["_id"] != MASTER);
    // Everything but the accounts first: every document waits.
    let early = ingest(store, rest, 50).await;
    assert!(early.rejected > 0);
    assert!(early.rejections.iter().all(|rejection| rejection.waiting_for.is_some()));
    // Then the accounts below the master: they wait for the master.
    let middle = ingest(store, reseller_and_below, 50).await;
    assert_eq!(middle.rejected, 3, "{:?}", middle.rejections);
    // The master arrives: everything kept applies.
    let last = ingest(store, master_only, 50).await;
    assert_eq!(last.rejected, 0, "{:?}", last.rejections);
    assert!(last.retried > 0);
    assert_eq!(store.rejection_count().await.expect("counts"), 0);
    reconcile_all(store, at(NOW)).await;
    assert_eq!(quantities(store, CUSTOMER).await, customer_quantities());
}

async fn a_tombstone_removes_what_its_document_put_in(store: &Store) {
    ingest(store, fixture("platform.ndjson"), 100).await;
    reconcile_all(store, at(NOW)).await;
    let customer_db = format!("account/{}/{}/{}", &CUSTOMER[..2], &CUSTOMER[2..4], &CUSTOMER[4..]);
    let tombstones = vec![
        RawDocument {
            database: customer_db.clone(),
            document: serde_json::json!({"_id": "dev-c-1", "_rev": "2-x", "_deleted": true}),
            origin: "test".to_owned(),
        },
        RawDocument {
            database: customer_db,
            document: serde_json::json!({"_id": "limits", "_deleted": true}),
            origin: "test".to_owned(),
        },
        RawDocument {
            database: "numbers/+1800".to_owned(),
            document: serde_json::json!({"_id": "+18005550100", "_deleted": true}),
            origin: "test".to_owned(),
        },
    ];
    let report = ingest(store, tombstones, 10).await;
    assert_eq!(report.applied, 3, "{report:?}");
    reconcile_all(store, at(NOW + 60)).await;
    let customer = quantities(store, CUSTOMER).await;
    assert_eq!(customer.get("account:devices.sip_device"), None);
    assert_eq!(customer.get("account:limits.twoway_trunks"), None);
    assert_eq!(customer.get("account:phone_numbers.tollfree_us"), None);
    assert_eq!(customer.get("account:devices.softphone"), Some(&1));
}

on_both_backends!(
    a_kazoo_platform_becomes_inventory_that_reconciles_to_its_quantities,
    reimporting_the_same_documents_changes_nothing,
    bad_documents_are_rejected_by_name_and_the_rest_applies,
    a_document_waiting_for_its_account_applies_when_the_account_arrives,
    a_tombstone_removes_what_its_document_put_in,
);
