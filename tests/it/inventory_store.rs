//! The store side of ingestion: inventory records written set-based, only real changes
//! counted and marked, tombstones, the quarantine, checkpoints, reclassification, and
//! `reconcile` of the marked accounts only.

use crate::helpers::{at, id, on_both_backends, options, reconcile_all};
use std::collections::BTreeMap;
use tally::domain::classify::NumberClassifiers;
use tally::domain::inventory::{
    AccountRecord, AppStoreRecord, Change, Checkpoint, Database, DeviceRecord, DocumentId, InventoryChange,
    InventoryRecord, LimitsRecord, NumberRecord, PortRequestRecord, Presence, StoreApp, UserRecord,
};
use tally::domain::AccountId;
use tally::jobs::reconcile::{run_once, ReconcileOptions};
use tally::store::{CountingQueries, InventoryWrite, InventoryWritten, ReconcileScope, RejectedDocument, Store};

/// 2019-12-09T12:00:00Z.
const NOON: i64 = 63_743_112_000;

fn hex(n: u8) -> String {
    format!("{n:032x}")
}
fn acct(n: u8) -> AccountId {
    id(&hex(n))
}
const MASTER: u8 = 1;

fn change(database: Database, doc: &str, record: InventoryRecord) -> InventoryChange {
    InventoryChange {
        database,
        id: DocumentId::parse(doc).expect("doc id"),
        change: Change::Upsert(record),
    }
}
fn tombstone(database: Database, doc: &str) -> InventoryChange {
    InventoryChange {
        database,
        id: DocumentId::parse(doc).expect("doc id"),
        change: Change::Remove,
    }
}
fn account(n: u8, parent: Option<u8>) -> InventoryChange {
    change(
        Database::Accounts,
        &hex(n),
        InventoryRecord::Account(AccountRecord {
            id: acct(n),
            parent: parent.map(acct),
            name: format!("account {n}"),
            is_reseller: false,
            reseller_id: None,
            billing_id: None,
            presence: Presence::COUNTED,
            api_key: None,
        }),
    )
}
fn device(owner: u8, doc: &str, kind: &str) -> InventoryChange {
    change(
        Database::Account(acct(owner)),
        doc,
        InventoryRecord::Device(DeviceRecord {
            device_type: Some(kind.to_owned()),
            presence: Presence::COUNTED,
        }),
    )
}
fn user(owner: u8, doc: &str, level: &str) -> InventoryChange {
    change(
        Database::Account(acct(owner)),
        doc,
        InventoryRecord::User(UserRecord {
            priv_level: level.to_owned(),
            qubicle_enabled: false,
            qubicle_offering: None,
            presence: Presence::COUNTED,
            username: Some(format!("{doc}@example.net")),
            md5_auth: None,
        }),
    )
}
fn number(number: &str, owner: Option<u8>, features: &[&str]) -> InventoryChange {
    change(
        Database::Numbers("+1415".to_owned()),
        number,
        InventoryRecord::Number(NumberRecord {
            assigned_to: owner.map(acct),
            carrier_module: "knm_local".to_owned(),
            features: features.iter().map(|feature| (*feature).to_owned()).collect(),
            classification: NumberClassifiers::kazoo_defaults().classify(number).map(str::to_owned),
            presence: Presence::COUNTED,
        }),
    )
}
fn app_store(owner: u8, apps: &[(&str, &str)]) -> InventoryChange {
    change(
        Database::Account(acct(owner)),
        "apps_store",
        InventoryRecord::AppStore(AppStoreRecord {
            apps: apps
                .iter()
                .map(|(app_id, name)| StoreApp {
                    app_id: (*app_id).to_owned(),
                    name: (*name).to_owned(),
                    blacklisted: false,
                    allowed_users: "specific".to_owned(),
                    specific_users: 2,
                })
                .collect(),
            presence: Presence::COUNTED,
        }),
    )
}

async fn write(store: &Store, changes: &[InventoryChange]) -> InventoryWritten {
    store
        .write_inventory(InventoryWrite {
            changes,
            rejected: &[],
            checkpoint: None,
            now: at(NOON),
        })
        .await
        .expect("inventory written")
}

/// `category.item → quantity` of one bucket ("account" or "cascade").
async fn bucket(store: &Store, n: u8, which: &str) -> BTreeMap<String, i64> {
    let buckets = store.quantities(&acct(n)).await.expect("quantities");
    let quantities = match which {
        "account" => buckets.account,
        _ => buckets.cascade,
    };
    quantities
        .iter()
        .map(|(category, item, quantity)| (format!("{category}.{item}"), quantity))
        .collect()
}

fn expected(entries: &[(&str, i64)]) -> BTreeMap<String, i64> {
    entries.iter().map(|(key, value)| ((*key).to_owned(), *value)).collect()
}

async fn marks(store: &Store) -> Vec<String> {
    let count = store
        .query_count("SELECT COUNT(*) FROM reconcile_marks")
        .await
        .expect("marks");
    let mut marked = Vec::new();
    for n in 0..=20u8 {
        let sql = format!("SELECT COUNT(*) FROM reconcile_marks WHERE account_id = '{}'", hex(n));
        if store.query_count(&sql).await.expect("mark") == 1 {
            marked.push(hex(n));
        }
    }
    assert_eq!(
        i64::try_from(marked.len()).expect("fits"),
        count,
        "only test accounts are marked"
    );
    marked
}

fn marked(accounts: &[u8]) -> Vec<String> {
    let mut ids: Vec<String> = accounts.iter().map(|n| hex(*n)).collect();
    ids.sort();
    ids
}

async fn reconcile_marked(store: &Store) {
    run_once(
        store,
        &CountingQueries::builtin(),
        &options(ReconcileScope::Marked, at(NOON + 60)),
    )
    .await
    .expect("marked reconcile runs");
}

/// master (1) → reseller (2) → customer (3).
fn small_tree() -> Vec<InventoryChange> {
    vec![account(MASTER, None), account(2, Some(MASTER)), account(3, Some(2))]
}

on_both_backends!(
    upserted_inventory_recounts_to_the_expected_quantities,
    the_same_input_twice_changes_nothing,
    the_last_version_of_a_document_in_a_batch_wins,
    a_tombstone_removes_a_device_and_marks_its_account,
    a_number_moving_between_accounts_marks_both,
    a_reparented_account_marks_its_old_parent_and_the_marked_run_rolls_up_both_chains,
    a_mark_set_again_during_a_reconcile_survives_it,
    a_new_classifier_list_reclassifies_stored_numbers_once,
    quarantined_documents_wait_for_their_account_and_a_good_version_lifts_them,
    checkpoints_round_trip_per_source,
    reconcile_changed_recounts_only_marked_accounts,
    known_accounts_names_existing_ids_and_the_root,
);

async fn upserted_inventory_recounts_to_the_expected_quantities(store: &Store) {
    let mut changes = small_tree();
    changes.extend([
        user(3, "u1", "admin"),
        user(3, "u2", "user"),
        device(3, "d1", "softphone"),
        number("+14155552671", Some(3), &["cnam"]),
        number("+18005551234", Some(3), &["local"]),
        app_store(3, &[("app1", "voip"), ("app2", "fax")]),
        change(
            Database::Account(acct(3)),
            "limits",
            InventoryRecord::Limits(LimitsRecord {
                twoway_trunks: 4,
                inbound_trunks: 0,
                outbound_trunks: 0,
                presence: Presence::COUNTED,
            }),
        ),
        change(
            Database::PortRequests,
            "port1",
            InventoryRecord::PortRequest(PortRequestRecord {
                account: acct(3),
                state: Some("submitted".to_owned()),
                number_count: 2,
                transitions: vec![None, Some("submitted".to_owned())],
                presence: Presence::COUNTED,
            }),
        ),
    ]);
    let written = write(store, &changes).await;
    assert_eq!(written.changed, 11);
    assert_eq!(written.unchanged, 0);
    assert_eq!(written.accounts_marked, 3);

    reconcile_all(store, at(NOON)).await;
    assert_eq!(
        bucket(store, 3, "account").await,
        expected(&[
            ("account_apps.fax", 1),
            ("accounts.account", 1),
            ("account_apps.voip", 1),
            ("devices.softphone", 1),
            ("limits.twoway_trunks", 4),
            ("number_carriers.knm_local", 2),
            ("number_services.cnam", 1),
            ("number_services.local", 1),
            ("phone_numbers.did_us", 1),
            ("port_request.first_submitted", 2),
            ("port_request.submitted", 2),
            ("user_apps.fax", 2),
            ("user_apps.voip", 2),
            ("users.admin", 1),
            ("users.user", 1),
        ])
    );
    assert_eq!(
        bucket(store, MASTER, "cascade").await.get("devices.softphone"),
        Some(&1)
    );
    assert_eq!(bucket(store, 2, "cascade").await.get("accounts.account"), Some(&1));
    assert!(marks(store).await.is_empty(), "a full reconcile settles every mark");
}

async fn the_same_input_twice_changes_nothing(store: &Store) {
    let mut changes = small_tree();
    changes.extend([
        user(3, "u1", "admin"),
        device(3, "d1", "softphone"),
        number("+14155552671", Some(3), &["cnam", "e911"]),
        app_store(3, &[("app1", "voip")]),
    ]);
    write(store, &changes).await;
    reconcile_all(store, at(NOON)).await;
    let before = bucket(store, 3, "account").await;

    let again = write(store, &changes).await;
    assert_eq!(
        again,
        InventoryWritten {
            changed: 0,
            unchanged: 7,
            accounts_marked: 0
        }
    );
    assert!(marks(store).await.is_empty());

    // A change only in child rows is a change of its document.
    let more = write(
        store,
        &[
            number("+14155552671", Some(3), &["cnam", "e911", "sms"]),
            app_store(3, &[("app1", "voip"), ("app2", "fax")]),
        ],
    )
    .await;
    assert_eq!(more.changed, 2);
    assert_eq!(marks(store).await, marked(&[3]));
    reconcile_marked(store).await;
    let after = bucket(store, 3, "account").await;
    assert_eq!(after.get("number_services.sms"), Some(&1));
    assert_eq!(after.get("account_apps.fax"), Some(&1));
    assert_eq!(before.get("number_services.cnam"), after.get("number_services.cnam"));
}

async fn the_last_version_of_a_document_in_a_batch_wins(store: &Store) {
    let mut changes = small_tree();
    changes.extend([
        device(3, "d1", "softphone"),
        device(3, "d1", "fax"),
        device(3, "d2", "ata"),
        tombstone(Database::Account(acct(3)), "d2"),
    ]);
    let written = write(store, &changes).await;
    assert_eq!(written.changed, 4, "three accounts and d1; d2 never stored");
    assert_eq!(written.unchanged, 1);
    reconcile_all(store, at(NOON)).await;
    let counted = bucket(store, 3, "account").await;
    assert_eq!(counted.get("devices.fax"), Some(&1));
    assert_eq!(counted.get("devices.softphone"), None);
    assert_eq!(counted.get("devices.ata"), None);
}

async fn a_tombstone_removes_a_device_and_marks_its_account(store: &Store) {
    let mut changes = small_tree();
    changes.extend([device(3, "d1", "softphone"), device(3, "d2", "softphone")]);
    write(store, &changes).await;
    reconcile_all(store, at(NOON)).await;

    // A tombstone of the same id in another account's database removes nothing.
    let elsewhere = write(store, &[tombstone(Database::Account(acct(2)), "d1")]).await;
    assert_eq!(elsewhere.changed, 0);
    assert!(marks(store).await.is_empty());

    let removed = write(store, &[tombstone(Database::Account(acct(3)), "d1")]).await;
    assert_eq!(removed.changed, 1);
    assert_eq!(marks(store).await, marked(&[3]));
    reconcile_marked(store).await;
    assert_eq!(bucket(store, 3, "account").await.get("devices.softphone"), Some(&1));
    assert_eq!(
        bucket(store, MASTER, "cascade").await.get("devices.softphone"),
        Some(&1)
    );
    assert!(marks(store).await.is_empty());

    // The limits singleton goes with a tombstone of its document.
    let limits = change(
        Database::Account(acct(3)),
        "limits-doc",
        InventoryRecord::Limits(LimitsRecord {
            twoway_trunks: 2,
            inbound_trunks: 0,
            outbound_trunks: 0,
            presence: Presence::COUNTED,
        }),
    );
    write(store, &[limits]).await;
    assert_eq!(
        store
            .query_count("SELECT COUNT(*) FROM trunk_limits")
            .await
            .expect("count"),
        1
    );
    let gone = write(store, &[tombstone(Database::Account(acct(3)), "limits-doc")]).await;
    assert_eq!(gone.changed, 1);
    assert_eq!(
        store
            .query_count("SELECT COUNT(*) FROM trunk_limits")
            .await
            .expect("count"),
        0
    );

    // A tombstone in the accounts database flags the account, never deletes it.
    let deleted = write(store, &[tombstone(Database::Accounts, &hex(3))]).await;
    assert_eq!(deleted.changed, 1);
    let sql = format!("SELECT COUNT(*) FROM accounts WHERE id = '{}' AND deleted", hex(3));
    assert_eq!(store.query_count(&sql).await.expect("count"), 1);
}

async fn a_number_moving_between_accounts_marks_both(store: &Store) {
    let mut changes = small_tree();
    changes.extend([account(4, Some(2)), number("+14155552671", Some(3), &["cnam"])]);
    write(store, &changes).await;
    reconcile_all(store, at(NOON)).await;

    let moved = write(store, &[number("+14155552671", Some(4), &["cnam"])]).await;
    assert_eq!(moved.changed, 1);
    assert_eq!(marks(store).await, marked(&[3, 4]));
    reconcile_marked(store).await;
    assert_eq!(bucket(store, 3, "account").await.get("phone_numbers.did_us"), None);
    assert_eq!(bucket(store, 4, "account").await.get("phone_numbers.did_us"), Some(&1));

    // Leaving the billed states removes the number and its features.
    let released = write(store, &[number("+14155552671", None, &[])]).await;
    assert_eq!(released.changed, 1);
    assert_eq!(marks(store).await, marked(&[4]));
    assert_eq!(
        store
            .query_count("SELECT COUNT(*) FROM phone_number_features")
            .await
            .expect("count"),
        0
    );
}

async fn a_reparented_account_marks_its_old_parent_and_the_marked_run_rolls_up_both_chains(store: &Store) {
    // master → 2 → 3 and master → 4 → 5; account 6 under 3 holds a device.
    let changes = vec![
        account(MASTER, None),
        account(2, Some(MASTER)),
        account(3, Some(2)),
        account(4, Some(MASTER)),
        account(5, Some(4)),
        account(6, Some(3)),
        device(6, "d1", "softphone"),
    ];
    write(store, &changes).await;
    reconcile_all(store, at(NOON)).await;
    assert_eq!(bucket(store, 2, "cascade").await.get("devices.softphone"), Some(&1));

    let moved = write(store, &[account(6, Some(5))]).await;
    assert_eq!(moved.changed, 1);
    assert_eq!(marks(store).await, marked(&[3, 6]));
    reconcile_marked(store).await;
    for old in [2, 3] {
        assert_eq!(
            bucket(store, old, "cascade").await.get("devices.softphone"),
            None,
            "{old}"
        );
        assert_eq!(
            bucket(store, old, "cascade").await.get("accounts.account"),
            (old == 2).then_some(&1)
        );
    }
    for new in [4, 5] {
        assert_eq!(
            bucket(store, new, "cascade").await.get("devices.softphone"),
            Some(&1),
            "{new}"
        );
    }
    assert_eq!(bucket(store, 4, "cascade").await.get("accounts.account"), Some(&2));
    assert_eq!(
        bucket(store, MASTER, "cascade").await.get("devices.softphone"),
        Some(&1)
    );
    assert!(marks(store).await.is_empty());
}

async fn a_mark_set_again_during_a_reconcile_survives_it(store: &Store) {
    let mut changes = small_tree();
    changes.push(account(4, Some(2)));
    write(store, &changes).await;
    reconcile_all(store, at(NOON)).await;
    write(store, &[device(3, "d1", "softphone"), device(4, "d2", "softphone")]).await;
    assert_eq!(marks(store).await, marked(&[3, 4]));

    let mut session = store.reconcile_session().await.expect("session");
    session.walk_tree().await.expect("walk");
    session
        .stage(&ReconcileScope::Marked, &CountingQueries::builtin(), 10)
        .await
        .expect("stage");
    // Account 3 changes again while the run is under way.
    write(store, &[device(3, "d3", "fax")]).await;
    session.apply(at(NOON + 60), "test-run").await.expect("apply");
    session.finish().await.expect("finish");

    assert_eq!(
        marks(store).await,
        marked(&[3]),
        "the new mark survives, the settled one goes"
    );
    assert_eq!(bucket(store, 3, "account").await.get("devices.fax"), None);
    reconcile_marked(store).await;
    assert_eq!(bucket(store, 3, "account").await.get("devices.fax"), Some(&1));
    assert!(marks(store).await.is_empty());
}

async fn a_new_classifier_list_reclassifies_stored_numbers_once(store: &Store) {
    let mut changes = small_tree();
    changes.extend([
        account(4, Some(2)),
        number("+14155552671", Some(3), &[]),
        number("+14155550000", Some(3), &[]),
        number("+18005551234", Some(4), &[]),
    ]);
    write(store, &changes).await;
    let defaults = NumberClassifiers::kazoo_defaults();
    assert_eq!(
        store.reclassify_numbers(&defaults, at(NOON)).await.expect("first"),
        Some(0),
        "stored classifications already follow the defaults"
    );
    assert_eq!(
        store.reclassify_numbers(&defaults, at(NOON)).await.expect("again"),
        None
    );
    reconcile_all(store, at(NOON)).await;
    assert_eq!(bucket(store, 3, "account").await.get("phone_numbers.did_us"), Some(&2));

    let local = NumberClassifiers::new(&[
        ("tollfree_us", r"^\+1800"),
        ("bay_area", r"^\+1415"),
        ("did_us", r"^\+1"),
    ])
    .expect("compiles");
    assert_eq!(
        store.reclassify_numbers(&local, at(NOON)).await.expect("new list"),
        Some(2)
    );
    assert_eq!(marks(store).await, marked(&[3]));
    assert_eq!(
        store.reclassify_numbers(&local, at(NOON)).await.expect("same list"),
        None
    );
    // The job reclassifies with its own list before counting.
    let with_local = ReconcileOptions {
        classifiers: Some(local),
        ..options(ReconcileScope::Marked, at(NOON + 60))
    };
    run_once(store, &CountingQueries::builtin(), &with_local)
        .await
        .expect("marked reconcile runs");
    let counted = bucket(store, 3, "account").await;
    assert_eq!(counted.get("phone_numbers.bay_area"), Some(&2));
    assert_eq!(counted.get("phone_numbers.did_us"), None);
    assert_eq!(
        bucket(store, 4, "account").await.get("phone_numbers.tollfree_us"),
        Some(&1)
    );

    // Back to the defaults: the next run reclassifies again and recounts account 3.
    let with_defaults = ReconcileOptions {
        classifiers: Some(defaults),
        ..options(ReconcileScope::Marked, at(NOON + 120))
    };
    run_once(store, &CountingQueries::builtin(), &with_defaults)
        .await
        .expect("marked reconcile runs");
    assert_eq!(bucket(store, 3, "account").await.get("phone_numbers.did_us"), Some(&2));
    assert_eq!(bucket(store, 3, "account").await.get("phone_numbers.bay_area"), None);
}

async fn quarantined_documents_wait_for_their_account_and_a_good_version_lifts_them(store: &Store) {
    write(store, &[account(MASTER, None)]).await;
    let database = Database::Account(acct(9)).canonical_name();
    let rejected = vec![
        RejectedDocument {
            database: database.clone(),
            id: "d1".to_owned(),
            document: r#"{"_id":"d1","pvt_type":"device"}"#.to_owned(),
            problem: "account 9 does not exist".to_owned(),
            waiting_for: Some(acct(9)),
        },
        RejectedDocument {
            database: "accounts".to_owned(),
            id: "broken".to_owned(),
            document: "{}".to_owned(),
            problem: "not an account id".to_owned(),
            waiting_for: None,
        },
    ];
    let written = store
        .write_inventory(InventoryWrite {
            changes: &[],
            rejected: &rejected,
            checkpoint: None,
            now: at(NOON),
        })
        .await
        .expect("quarantined");
    assert_eq!(written, InventoryWritten::default());
    assert_eq!(store.rejection_count().await.expect("count"), 2);
    let mut listed = store.rejections(10).await.expect("listed");
    listed.sort_by(|a, b| a.id.cmp(&b.id));
    let mut sorted = rejected.clone();
    sorted.sort_by(|a, b| a.id.cmp(&b.id));
    assert_eq!(listed, sorted);
    assert!(store.waiting_rejections(10).await.expect("waiting").is_empty());

    write(store, &[account(9, Some(MASTER))]).await;
    assert_eq!(
        store.waiting_rejections(10).await.expect("waiting"),
        vec![rejected[0].clone()]
    );

    write(store, &[device(9, "d1", "softphone")]).await;
    assert_eq!(store.rejection_count().await.expect("count"), 1);
    assert!(store.waiting_rejections(10).await.expect("waiting").is_empty());
    assert_eq!(store.rejections(10).await.expect("listed"), vec![rejected[1].clone()]);
}

async fn checkpoints_round_trip_per_source(store: &Store) {
    let checkpoint = |source: &str, database: &str, seq: &str| Checkpoint {
        source: source.to_owned(),
        database: database.to_owned(),
        last_seq: seq.to_owned(),
    };
    for item in [
        checkpoint("http://a:5984/", "accounts", "12-abc"),
        checkpoint("http://a:5984/", "port_requests", "3-x"),
        checkpoint("http://b:5984/", "accounts", "99-z"),
        checkpoint("http://a:5984/", "accounts", "15-def"),
    ] {
        store
            .write_inventory(InventoryWrite {
                changes: &[],
                rejected: &[],
                checkpoint: Some(&item),
                now: at(NOON),
            })
            .await
            .expect("checkpoint saved");
    }
    let saved = store.ingest_checkpoints("http://a:5984/").await.expect("read");
    assert_eq!(saved.len(), 2);
    assert_eq!(saved.get("accounts").map(String::as_str), Some("15-def"));
    assert_eq!(saved.get("port_requests").map(String::as_str), Some("3-x"));
    assert!(store
        .ingest_checkpoints("http://c:5984/")
        .await
        .expect("read")
        .is_empty());
}

async fn reconcile_changed_recounts_only_marked_accounts(store: &Store) {
    let mut changes = small_tree();
    changes.push(account(4, Some(2)));
    write(store, &changes).await;
    reconcile_all(store, at(NOON)).await;
    assert!(marks(store).await.is_empty());

    write(store, &[device(3, "d1", "softphone")]).await;
    store
        .execute_script(&format!(
            "INSERT INTO devices (id, account_id, device_type) VALUES ('raw', '{}', 'fax')",
            hex(4)
        ))
        .await
        .expect("raw insert");
    let report = run_once(
        store,
        &CountingQueries::builtin(),
        &options(ReconcileScope::Marked, at(NOON + 60)),
    )
    .await
    .expect("marked reconcile runs");
    // Hand-written SQL marks its account too (the triggers of migration 0011).
    assert_eq!(report.accounts_scanned, 2);
    assert_eq!(bucket(store, 3, "account").await.get("devices.softphone"), Some(&1));
    assert_eq!(
        bucket(store, 4, "account").await.get("devices.fax"),
        Some(&1),
        "marked by the trigger, recounted"
    );
    assert_eq!(bucket(store, 2, "cascade").await.get("devices.softphone"), Some(&1));

    // Nothing marked: nothing recounted.
    let idle = run_once(
        store,
        &CountingQueries::builtin(),
        &options(ReconcileScope::Marked, at(NOON + 120)),
    )
    .await
    .expect("idle run");
    assert_eq!(idle.accounts_scanned, 0);
    assert_eq!(idle.accounts_changed, 0);
}

async fn known_accounts_names_existing_ids_and_the_root(store: &Store) {
    let empty = store.known_accounts(&[acct(2)]).await.expect("known");
    assert!(empty.existing.is_empty());
    assert_eq!(empty.root, None);
    write(store, &small_tree()).await;
    let known = store.known_accounts(&[acct(2), acct(3), acct(7)]).await.expect("known");
    assert_eq!(known.existing, [acct(2), acct(3)].into_iter().collect());
    assert_eq!(known.root, Some(acct(MASTER)));
}
