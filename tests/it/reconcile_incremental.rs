//! The nightly's incremental reconcile (`ReconcileScope::Incremental`, issue 13 §2):
//! after every kind of change, an incremental run stages exactly the changes a full
//! recount stages, and leaves the stored quantities a full recount would leave.

use crate::helpers::{account_sql, at, id, on_both_backends, options};
use tally::domain::classify::NumberClassifiers;
use tally::jobs::reconcile::{run_once, ReconcileOptions, ReconcileReport};
use tally::store::{Backend, CountingQueries, FullRecount, ReconcileScope, StagedChange, Store};

/// 2019-12-09T12:00:00Z.
const NOON: i64 = 63_743_112_000;

/// r → a → a1, a2; r → b → b1; one of each kind of inventory.
fn fixture() -> String {
    let mut script = String::new();
    for (account, parent) in [
        ("r", None),
        ("a", Some("r")),
        ("a1", Some("a")),
        ("a2", Some("a")),
        ("b", Some("r")),
        ("b1", Some("b")),
    ] {
        script.push_str(&account_sql(account, parent));
        script.push('\n');
    }
    script.push_str(
        "INSERT INTO devices (id, account_id, device_type) VALUES ('d1', 'a1', 'softphone'), ('d2', 'a1', NULL), \
             ('d3', 'a2', NULL), ('d4', 'b1', 'cellphone'), ('d5', 'b', NULL);
         INSERT INTO users (id, account_id, priv_level) VALUES ('u1', 'a1', 'admin'), ('u2', 'a1', 'user'), \
             ('u3', 'b1', 'user');
         INSERT INTO phone_numbers (id, account_id, carrier_module, classification) VALUES \
             ('+15550001', 'a1', 'knm_local', 'did_us'), ('+15550002', 'b1', 'knm_bandwidth', 'tollfree_us');
         INSERT INTO phone_number_features (number_id, feature) VALUES ('+15550001', 'cnam'), ('+15550002', 'e911');
         INSERT INTO port_requests (id, account_id, port_state, number_count) VALUES ('p1', 'a2', 'submitted', 3);
         INSERT INTO port_request_transitions (port_request_id, position, new_state) VALUES ('p1', 1, 'submitted');
         INSERT INTO trunk_limits (account_id, twoway_trunks, inbound_trunks, outbound_trunks) VALUES ('b', 2, 0, 1);
         INSERT INTO app_stores (account_id) VALUES ('a1');
         INSERT INTO app_store_apps (account_id, app_id, name, allowed_users, specific_users) VALUES \
             ('a1', 'app1', 'voip', 'all', 0);
         INSERT INTO vmboxes (id, account_id) VALUES ('v1', 'b1');",
    );
    script
}

fn dry(scope: ReconcileScope) -> ReconcileOptions {
    ReconcileOptions {
        dry_run: true,
        ..options(scope, at(NOON))
    }
}

async fn staged(store: &Store, counting: &CountingQueries, scope: ReconcileScope) -> Vec<StagedChange> {
    run_once(store, counting, &dry(scope)).await.expect("dry run").changes
}

/// Runs the nightly's incremental reconcile and checks it against a full recount: the
/// same staged changes before, nothing left for a full recount after. `full` says
/// whether the run must have fallen back to a full recount.
async fn incremental_matches_full(
    store: &Store,
    counting: &CountingQueries,
    now: i64,
    full: bool,
    what: &str,
) -> ReconcileReport {
    let expected = staged(store, counting, ReconcileScope::All).await;
    let incremental = staged(store, counting, ReconcileScope::Incremental).await;
    assert_eq!(
        incremental, expected,
        "{what}: incremental staging differs from a full recount"
    );
    let report = run_once(store, counting, &options(ReconcileScope::Incremental, at(now)))
        .await
        .expect("incremental run");
    assert_eq!(
        report.full_recount.is_some(),
        full,
        "{what}: full recount {:?}",
        report.full_recount
    );
    let accounts: std::collections::BTreeSet<_> = expected.iter().map(|staged| staged.account.clone()).collect();
    assert_eq!(report.accounts_changed, accounts.len() as u64, "{what}");
    assert_eq!(report.items_changed, expected.len() as u64, "{what}");
    let left = staged(store, counting, ReconcileScope::All).await;
    assert!(
        left.is_empty(),
        "{what}: a full recount after it still changes {left:?}"
    );
    report
}

async fn script(store: &Store, sql: &str) {
    store.execute_script(sql).await.expect("test SQL runs");
}

async fn record_count(store: &Store, account: &str) -> usize {
    store.change_records(&id(account)).await.expect("read records").len()
}

async fn every_inventory_write_is_picked_up_by_the_next_incremental_run(store: &Store) {
    let counting = CountingQueries::builtin();
    script(store, &fixture()).await;
    // Writes made before the triggers existed were never marked: the first run is full.
    let first = incremental_matches_full(store, &counting, NOON, true, "first run").await;
    assert!(matches!(first.full_recount, Some(FullRecount::Pending(_))));
    assert!(first.accounts_changed > 0);

    let quiet = incremental_matches_full(store, &counting, NOON + 10, false, "nothing changed").await;
    assert_eq!((quiet.accounts_scanned, quiet.accounts_changed), (0, 0));

    // Hand-written SQL on every inventory table, one kind at a time.
    let writes = [
        "INSERT INTO devices (id, account_id) VALUES ('d9', 'a2')",
        "UPDATE devices SET enabled = FALSE WHERE id = 'd4'",
        "UPDATE devices SET account_id = 'a2' WHERE id = 'd1'",
        "DELETE FROM devices WHERE id = 'd5'",
        "UPDATE users SET priv_level = 'admin' WHERE id = 'u2'",
        "DELETE FROM phone_number_features WHERE number_id = '+15550002'",
        "INSERT INTO phone_number_features (number_id, feature) VALUES ('+15550001', 'local')",
        "UPDATE phone_numbers SET carrier_module = 'knm_other' WHERE id = '+15550001'",
        "INSERT INTO port_request_transitions (port_request_id, position, new_state) VALUES ('p1', 2, 'submitted')",
        "UPDATE port_requests SET number_count = 5 WHERE id = 'p1'",
        "UPDATE trunk_limits SET inbound_trunks = 4 WHERE account_id = 'b'",
        "UPDATE app_store_apps SET allowed_users = 'specific', specific_users = 7 WHERE app_id = 'app1'",
        "INSERT INTO whitelabels (account_id) VALUES ('a2')",
        "INSERT INTO dedicated_ips (id, account_id, ip) VALUES ('ip1', 'b1', '10.0.0.1')",
        "INSERT INTO faxboxes (id, account_id) VALUES ('f1', 'a')",
        "INSERT INTO conferences (id, account_id) VALUES ('c1', 'r')",
        "INSERT INTO qubicle_queues (id, account_id) VALUES ('q1', 'a1')",
        "UPDATE vmboxes SET transcribe = TRUE WHERE id = 'v1'",
        "UPDATE accounts SET enabled = FALSE WHERE id = 'a2'",
    ];
    for (step, write) in writes.iter().enumerate() {
        let now = NOON + 100 * (i64::try_from(step).expect("small") + 1);
        script(store, write).await;
        let report = incremental_matches_full(store, &counting, now, false, write).await;
        assert!(report.accounts_changed > 0, "{write}: nothing changed");
        assert!(
            report.accounts_scanned <= 2,
            "{write}: scanned {}",
            report.accounts_scanned
        );
    }
    // The audit trail of a recounted account grows by one record per run that changed it.
    assert!(record_count(store, "a2").await >= 3);
}

async fn tree_changes_fall_back_to_a_full_recount(store: &Store) {
    let counting = CountingQueries::builtin();
    script(store, &fixture()).await;
    incremental_matches_full(store, &counting, NOON, true, "first run").await;
    let changes = [
        ("moving a subtree", "UPDATE accounts SET parent_id = 'b' WHERE id = 'a'"),
        ("adding an account", &account_sql("b2", Some("b1"))),
        (
            "deleting an account",
            "UPDATE accounts SET deleted = TRUE WHERE id = 'a1'",
        ),
        (
            "undeleting an account",
            "UPDATE accounts SET deleted = FALSE WHERE id = 'a1'",
        ),
        ("removing an account", "DELETE FROM accounts WHERE id = 'b2'"),
    ];
    for (step, (what, write)) in changes.iter().enumerate() {
        let now = NOON + 100 * (i64::try_from(step).expect("small") + 1);
        script(store, write).await;
        let report = incremental_matches_full(store, &counting, now, true, what).await;
        assert_eq!(
            report.full_recount,
            Some(FullRecount::Pending("account tree".to_string())),
            "{what}"
        );
        // Settled: the next run is incremental again.
        incremental_matches_full(store, &counting, now + 10, false, what).await;
    }
}

async fn other_counting_queries_or_classifiers_fall_back_to_a_full_recount(store: &Store) {
    let builtin = CountingQueries::builtin();
    script(store, &fixture()).await;
    incremental_matches_full(store, &builtin, NOON, true, "first run").await;

    // An operator's counting directory without devices.sql.
    let directory = tempfile::tempdir().expect("temp dir");
    for query in builtin.iter().filter(|query| query.name != "devices.sql") {
        std::fs::write(directory.path().join(&query.name), &query.sql).expect("write query");
    }
    let custom = CountingQueries::from_dir(directory.path()).expect("loads");
    let report = incremental_matches_full(store, &custom, NOON + 100, true, "other counting queries").await;
    assert_eq!(report.full_recount, Some(FullRecount::CountingQueriesChanged));
    assert!(report.accounts_changed > 0);
    incremental_matches_full(store, &custom, NOON + 200, false, "same counting queries").await;
    let back = incremental_matches_full(store, &builtin, NOON + 300, true, "back to the builtin set").await;
    assert_eq!(back.full_recount, Some(FullRecount::CountingQueriesChanged));

    // A new classifier list reclassifies stored numbers first, then recounts in full.
    let classifiers = NumberClassifiers::new(&[("everything", "^\\+1")]).expect("classifiers");
    let first = run_once(
        store,
        &builtin,
        &ReconcileOptions {
            classifiers: Some(classifiers.clone()),
            ..options(ReconcileScope::Incremental, at(NOON + 400))
        },
    )
    .await
    .expect("run with new classifiers");
    assert_eq!(first.full_recount, Some(FullRecount::Requested));
    assert!(first.accounts_changed > 0);
    assert!(staged(store, &builtin, ReconcileScope::All).await.is_empty());
    let again = run_once(
        store,
        &builtin,
        &ReconcileOptions {
            classifiers: Some(classifiers),
            ..options(ReconcileScope::Incremental, at(NOON + 500))
        },
    )
    .await
    .expect("run with the same classifiers");
    assert_eq!((again.full_recount, again.accounts_scanned), (None, 0));
}

/// A trigger that makes writing `account`'s change record fail.
fn failing_records(store: &Store, account: &str) -> (String, &'static str) {
    if store.backend() == Backend::Postgres {
        (
            format!(
                "CREATE FUNCTION test_fail_record() RETURNS trigger LANGUAGE plpgsql AS $$ \
                 BEGIN IF NEW.account_id = '{account}' THEN RAISE EXCEPTION 'injected failure'; END IF; \
                 RETURN NEW; END $$; \
                 CREATE TRIGGER test_fail_record BEFORE INSERT ON quantity_change_records \
                 FOR EACH ROW EXECUTE FUNCTION test_fail_record();"
            ),
            "DROP TRIGGER test_fail_record ON quantity_change_records; DROP FUNCTION test_fail_record();",
        )
    } else {
        (
            format!(
                "CREATE TRIGGER test_fail_record BEFORE INSERT ON quantity_change_records \
                 WHEN NEW.account_id = '{account}' BEGIN SELECT RAISE(ABORT, 'injected failure'); END;"
            ),
            "DROP TRIGGER test_fail_record;",
        )
    }
}

async fn a_run_failing_between_batches_leaves_what_the_rerun_needs(store: &Store) {
    let counting = CountingQueries::builtin();
    script(store, &fixture()).await;
    incremental_matches_full(store, &counting, NOON, true, "first run").await;
    // Changes under a and under b; batches of one account, in account order: a's
    // batches commit, b's fails, r's never runs.
    script(
        store,
        "INSERT INTO devices (id, account_id) VALUES ('d7', 'a1'), ('d8', 'b1'); \
         UPDATE users SET priv_level = 'admin' WHERE id = 'u3';",
    )
    .await;
    let (install, remove) = failing_records(store, "b");
    script(store, &install).await;
    let failed = run_once(
        store,
        &counting,
        &ReconcileOptions {
            batch_size: 1,
            ..options(ReconcileScope::Incremental, at(NOON + 100))
        },
    )
    .await;
    assert!(failed.is_err(), "the injected failure stops the run");
    script(store, remove).await;
    assert!(
        !staged(store, &counting, ReconcileScope::All).await.is_empty(),
        "the stopped run left work"
    );
    let rerun = incremental_matches_full(store, &counting, NOON + 200, true, "rerun after a failed batch").await;
    assert_eq!(
        rerun.full_recount,
        Some(FullRecount::Pending("run stopped while writing".to_string()))
    );
    // Converged: no duplicate records for the accounts the stopped run had written.
    assert_eq!(record_count(store, "a").await, 2);
    assert_eq!(record_count(store, "b").await, 2);
    incremental_matches_full(store, &counting, NOON + 300, false, "after convergence").await;
}

/// A deterministic pseudo-random sequence (no dependency, same on every machine).
struct Lcg(u64);
impl Lcg {
    fn below(&mut self, bound: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (self.0 >> 33) % bound
    }
}

async fn random_changes_over_several_runs_match_full_recounts(store: &Store) {
    let counting = CountingQueries::builtin();
    let mut random = Lcg(13);
    let accounts: Vec<String> = (0..24).map(|index| format!("acct{index:02}")).collect();
    let mut setup = String::new();
    for (index, account) in accounts.iter().enumerate() {
        let parent = (index > 0).then(|| accounts[random.below(index as u64) as usize].as_str());
        setup.push_str(&account_sql(account, parent));
        setup.push('\n');
    }
    script(store, &setup).await;
    incremental_matches_full(store, &counting, NOON, true, "first run").await;
    let mut object = 0u64;
    for night in 1..=12i64 {
        let mut tree_changed = false;
        for _ in 0..=random.below(5) {
            object += 1;
            let account = &accounts[random.below(24) as usize];
            let other = &accounts[random.below(24) as usize];
            let write = match random.below(10) {
                0..=2 => format!(
                    "INSERT INTO devices (id, account_id, device_type) VALUES ('dev{object}', '{account}', '{}')",
                    ["sip_device", "softphone", "fax"][random.below(3) as usize]
                ),
                3 => format!("UPDATE devices SET enabled = NOT enabled WHERE account_id = '{account}'"),
                4 => format!("UPDATE devices SET account_id = '{other}' WHERE account_id = '{account}'"),
                5 => format!(
                    "INSERT INTO users (id, account_id, priv_level) VALUES ('usr{object}', '{account}', 'admin')"
                ),
                6 => format!("DELETE FROM users WHERE account_id = '{account}'"),
                7 => format!(
                    "INSERT INTO phone_numbers (id, account_id, carrier_module, classification) \
                     VALUES ('+1555{object:07}', '{account}', 'knm_local', 'did_us')"
                ),
                8 => {
                    tree_changed = true;
                    format!("UPDATE accounts SET deleted = NOT deleted WHERE id = '{account}'")
                }
                _ => format!("UPDATE accounts SET enabled = NOT enabled WHERE id = '{account}'"),
            };
            script(store, &write).await;
        }
        incremental_matches_full(
            store,
            &counting,
            NOON + night * 86_400,
            tree_changed,
            &format!("night {night}"),
        )
        .await;
    }
}

on_both_backends!(
    every_inventory_write_is_picked_up_by_the_next_incremental_run,
    tree_changes_fall_back_to_a_full_recount,
    other_counting_queries_or_classifiers_fall_back_to_a_full_recount,
    a_run_failing_between_batches_leaves_what_the_rerun_needs,
    random_changes_over_several_runs_match_full_recounts,
);
