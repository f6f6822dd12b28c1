//! `tally demo` on both backends: loaded through the ingestion core, complete,
//! deterministic, and consistent with what reconcile counts from it.

use crate::helpers::{at, id, on_both_backends, reconcile_all};
use tally::demo::{generate, DemoSpec, EXAMPLE_PLANS};
use tally::domain::classify::NumberClassifiers;
use tally::jobs::demo::{load, DemoReport};
use tally::store::Store;

pub async fn load_demo(store: &Store, spec: DemoSpec) -> DemoReport {
    load(
        store,
        NumberClassifiers::kazoo_defaults(),
        spec,
        at(63_899_000_000),
        500,
    )
    .await
    .expect("the demo loads")
}

async fn demo_data_covers_every_category_and_reconciles_to_its_own_inventory(store: &Store) {
    let spec = DemoSpec { accounts: 300, seed: 9 };
    let data = generate(spec);
    let report = load_demo(store, spec).await;
    assert_eq!(report.accounts, 300);
    assert!(
        report.objects >= 300 * 90,
        "about a hundred objects per account, got {}",
        report.objects
    );
    assert_eq!(
        report.ingest.rejected, 0,
        "every demo document is accepted: {:?}",
        report.ingest.rejections
    );
    assert_eq!(
        store.rejection_count().await.expect("count"),
        0,
        "nothing is kept in quarantine"
    );
    assert_eq!(report.documents, report.ingest.documents);
    assert_eq!(
        report.ingest.applied + report.ingest.ignored_total(),
        report.documents,
        "a fresh load applies every document: {}",
        report.ingest.summary()
    );
    let vendors = 1 + report.resellers;
    assert_eq!(
        report.plans,
        vendors * u64::try_from(EXAMPLE_PLANS.len()).expect("small")
    );
    assert!(
        store
            .query_count("SELECT COUNT(*) FROM service_plan_assignments")
            .await
            .expect("count")
            >= 299
    );

    reconcile_all(store, at(63_900_000_000)).await;

    let counted = store
        .query_count("SELECT CAST(SUM(quantity) AS BIGINT) FROM service_quantities WHERE bucket = 'account' AND category = 'devices'")
        .await
        .expect("sum");
    let live = store
        .query_count("SELECT COUNT(*) FROM devices WHERE enabled AND NOT deleted")
        .await
        .expect("count");
    assert_eq!(counted, live);

    let master = store.quantities(&id(&data.accounts[0].id)).await.expect("read");
    let live_sub_accounts = store
        .query_count("SELECT COUNT(*) FROM accounts WHERE parent_id IS NOT NULL AND enabled AND NOT deleted")
        .await
        .expect("count");
    let cascade_accounts = master
        .cascade
        .iter()
        .find(|(category, item, _)| category.as_str() == "accounts" && item.as_str() == "account")
        .map(|(_, _, count)| count);
    assert_eq!(cascade_accounts, Some(live_sub_accounts));
    for category in [
        "accounts",
        "users",
        "devices",
        "phone_numbers",
        "number_carriers",
        "number_services",
        "limits",
        "branding",
        "ips",
        "account_apps",
        "user_apps",
        "voicemails",
        "faxes",
        "conferences",
        "qubicle",
        "port_request",
    ] {
        assert!(
            master
                .cascade
                .iter()
                .any(|(found, _, count)| found.as_str() == category && count > 0),
            "the master's cascade has {category}"
        );
    }
}

async fn the_same_seed_gives_the_same_quantities(store: &Store) {
    let spec = DemoSpec { accounts: 40, seed: 4 };
    load_demo(store, spec).await;
    reconcile_all(store, at(63_900_000_000)).await;
    let here = store
        .quantities(&id(&generate(spec).accounts[0].id))
        .await
        .expect("read");

    let other = crate::helpers::sqlite_store().await;
    load_demo(&other.store, spec).await;
    reconcile_all(&other.store, at(63_900_000_000)).await;
    let there = other
        .store
        .quantities(&id(&generate(spec).accounts[0].id))
        .await
        .expect("read");
    assert_eq!(here, there);
    assert!(
        load(
            store,
            NumberClassifiers::kazoo_defaults(),
            spec,
            at(63_900_000_100),
            500
        )
        .await
        .is_err(),
        "a second demo into a full database is refused"
    );
}

on_both_backends!(
    demo_data_covers_every_category_and_reconciles_to_its_own_inventory,
    the_same_seed_gives_the_same_quantities,
);
