//! `tally run reconcile` against real databases: counts, cascades, records, summaries.

use crate::helpers::{account_sql, at, id, on_both_backends, options, reconcile_all};
use std::collections::{BTreeMap, BTreeSet};
use tally::domain::quantities::Bucket;
use tally::domain::summary::{summarise, DaySummary, GregorianSeconds};
use tally::domain::tree::Breakage;
use tally::domain::{Category, ItemName, Quantities};
use tally::jobs::reconcile::{run_once, ReconcileOptions, SkipReason};
use tally::store::{Backend, CountingQueries, ReconcileScope, Store};

/// 2019-12-09T12:00:00Z.
const NOON: i64 = 63_743_112_000;

fn c(text: &str) -> Category {
    Category::parse(text).expect("test category")
}
fn i(text: &str) -> ItemName {
    ItemName::parse(text).expect("test item")
}
fn bucket(entries: &[(&str, &str, i64)]) -> Quantities {
    entries
        .iter()
        .map(|(category, item, count)| (c(category), i(item), *count))
        .collect()
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

/// Builds a random tree with inventory, inserts it, and returns the account buckets
/// computed independently in Rust from the same rows, plus parents and deleted flags.
struct Generated {
    script: String,
    parents: Vec<Option<usize>>,
    deleted: Vec<bool>,
    account: Vec<Quantities>,
}

fn generate_tree(accounts: usize, seed: u64) -> Generated {
    let mut random = Lcg(seed);
    let name = |index: usize| format!("acct{index:03}");
    let mut script = String::new();
    let mut parents = Vec::new();
    let mut deleted = Vec::new();
    let mut account = Vec::new();
    let mut object = 0u64;
    for index in 0..accounts {
        let parent = (index > 0).then(|| usize::try_from(random.below(index as u64)).expect("small"));
        let is_deleted = index % 11 == 5;
        let is_enabled = index % 13 != 7;
        script.push_str(&format!(
            "INSERT INTO accounts (id, parent_id, name, enabled, deleted) VALUES ('{}', {}, 'a', {}, {});\n",
            name(index),
            parent
                .map(|p| format!("'{}'", name(p)))
                .unwrap_or_else(|| "NULL".to_string()),
            is_enabled,
            is_deleted
        ));
        let mut counts: BTreeMap<(String, String), i64> = BTreeMap::new();
        let mut add = |category: &str, item: &str, value: i64| {
            *counts.entry((category.to_string(), item.to_string())).or_insert(0) += value;
        };
        if is_enabled && !is_deleted {
            add("accounts", "account", 1);
        }
        let (mut users, mut admins) = (0i64, 0i64);
        for _ in 0..random.below(6) {
            object += 1;
            let priv_level = ["user", "admin", "operator"][random.below(3) as usize];
            let enabled = random.below(5) != 0;
            let gone = random.below(7) == 0;
            script.push_str(&format!(
                "INSERT INTO users (id, account_id, priv_level, enabled, deleted) VALUES ('u{object}', '{}', '{priv_level}', {enabled}, {gone});\n",
                name(index)
            ));
            if enabled && !gone {
                add("users", priv_level, 1);
                users += 1;
                if priv_level == "admin" {
                    admins += 1;
                }
            }
        }
        for _ in 0..random.below(6) {
            object += 1;
            let device_type = [None, Some("softphone"), Some("fax"), Some("sip_device")][random.below(4) as usize];
            let enabled = random.below(5) != 0;
            let gone = random.below(7) == 0;
            script.push_str(&format!(
                "INSERT INTO devices (id, account_id, device_type, enabled, deleted) VALUES ('d{object}', '{}', {}, {enabled}, {gone});\n",
                name(index),
                device_type.map(|t| format!("'{t}'")).unwrap_or_else(|| "NULL".to_string())
            ));
            if enabled && !gone {
                add("devices", device_type.unwrap_or("sip_device"), 1);
            }
        }
        for _ in 0..random.below(4) {
            object += 1;
            let classification = ["did_us", "tollfree_us", "international"][random.below(3) as usize];
            let local = random.below(4) == 0;
            let cnam = random.below(2) == 0;
            let carrier = ["knm_local", "knm_inventory"][random.below(2) as usize];
            let enabled = random.below(6) != 0;
            script.push_str(&format!(
                "INSERT INTO phone_numbers (id, account_id, carrier_module, classification, enabled) VALUES ('+1415555{object:04}', '{}', '{carrier}', '{classification}', {enabled});\n",
                name(index)
            ));
            if local {
                script.push_str(&format!(
                    "INSERT INTO phone_number_features (number_id, feature) VALUES ('+1415555{object:04}', 'local');\n"
                ));
            }
            if cnam {
                script.push_str(&format!(
                    "INSERT INTO phone_number_features (number_id, feature) VALUES ('+1415555{object:04}', 'cnam');\n"
                ));
            }
            if enabled {
                add("number_carriers", carrier, 1);
                if local {
                    add("number_services", "local", 1);
                } else {
                    add("phone_numbers", classification, 1);
                }
                if cnam {
                    add("number_services", "cnam", 1);
                }
            }
        }
        for _ in 0..random.below(3) {
            object += 1;
            let transcribe = random.below(2) == 0;
            script.push_str(&format!(
                "INSERT INTO vmboxes (id, account_id, transcribe) VALUES ('v{object}', '{}', {transcribe});\n",
                name(index)
            ));
            add("voicemails", "mailbox", 1);
            if transcribe {
                add("voicemails", "transcription", 1);
            }
        }
        if random.below(2) == 0 {
            let twoway = random.below(4) as i64;
            let inbound = random.below(3) as i64;
            script.push_str(&format!(
                "INSERT INTO trunk_limits (account_id, twoway_trunks, inbound_trunks, outbound_trunks) VALUES ('{}', {twoway}, {inbound}, -2);\n",
                name(index)
            ));
            if twoway > 0 {
                add("limits", "twoway_trunks", twoway);
            }
            if inbound > 0 {
                add("limits", "inbound_trunks", inbound);
            }
        }
        if random.below(2) == 0 {
            script.push_str(&format!(
                "INSERT INTO app_stores (account_id) VALUES ('{}');\n",
                name(index)
            ));
            script.push_str(&format!(
                "INSERT INTO app_store_apps (account_id, app_id, name, blacklisted, allowed_users, specific_users) VALUES \
                 ('{0}', 'a1', 'voip', FALSE, 'all', 0), ('{0}', 'a2', 'callflows', FALSE, 'admins', 0), \
                 ('{0}', 'a3', 'fax', FALSE, 'specific', 2), ('{0}', 'a4', 'blocked', TRUE, 'all', 0);\n",
                name(index)
            ));
            add("account_apps", "voip", 1);
            add("account_apps", "callflows", 1);
            add("account_apps", "fax", 1);
            add("user_apps", "voip", users);
            add("user_apps", "callflows", admins);
            add("user_apps", "fax", 2);
        }
        parents.push(parent);
        deleted.push(is_deleted);
        account.push(
            counts
                .into_iter()
                .filter(|(_, value)| *value != 0)
                .map(|((category, item), value)| (c(&category), i(&item), value))
                .collect(),
        );
    }
    Generated {
        script,
        parents,
        deleted,
        account,
    }
}

async fn quantities_equal_an_independent_count_on_a_generated_tree(store: &Store) {
    let generated = generate_tree(60, 42);
    store.execute_script(&generated.script).await.expect("fixture loads");

    let report = reconcile_all(store, at(NOON)).await;
    assert!(report.skipped.is_empty());
    assert_eq!(report.accounts_scanned, 60);

    // Cascade: every non-deleted descendant's account values ≥ 1.
    let mut cascade: Vec<Quantities> = vec![Quantities::new(); generated.parents.len()];
    for (index, counts) in generated.account.iter().enumerate() {
        if generated.deleted[index] {
            continue;
        }
        let positive: Quantities = counts
            .iter()
            .filter(|(_, _, n)| *n >= 1)
            .map(|(a, b, n)| (a.clone(), b.clone(), n))
            .collect();
        let mut ancestor = generated.parents[index];
        while let Some(above) = ancestor {
            cascade[above].add_all(&positive);
            ancestor = generated.parents[above];
        }
    }
    for (index, expected) in generated.account.iter().enumerate() {
        let stored = store.quantities(&id(&format!("acct{index:03}"))).await.expect("read");
        assert_eq!(&stored.account, expected, "account bucket of acct{index:03}");
        assert_eq!(stored.cascade, cascade[index], "cascade bucket of acct{index:03}");
    }
}

async fn cascade_quantities_cover_a_four_level_tree(store: &Store) {
    let mut script = String::new();
    for (account, parent) in [
        ("m", None),
        ("r1", Some("m")),
        ("r2", Some("r1")),
        ("c1", Some("r2")),
        ("c2", Some("r2")),
        ("gone", Some("r2")),
        ("c3", Some("r1")),
    ] {
        script.push_str(&account_sql(account, parent));
    }
    script.push_str(
        "UPDATE accounts SET deleted = TRUE WHERE id = 'gone';
         INSERT INTO devices (id, account_id, device_type) VALUES ('d1', 'c1', 'softphone'), ('d2', 'c1', NULL),
             ('d3', 'c2', NULL), ('d4', 'gone', NULL), ('d5', 'c3', 'softphone'), ('d6', 'r2', NULL), ('d7', 'm', NULL);
         INSERT INTO trunk_limits (account_id, twoway_trunks) VALUES ('c2', 0), ('c3', 4);",
    );
    store.execute_script(&script).await.expect("fixture loads");
    reconcile_all(store, at(NOON)).await;

    let read = |name: &'static str| async move { store.quantities(&id(name)).await.expect("read") };
    // r2: c1, c2 (gone is deleted and excluded).
    assert_eq!(
        read("r2").await.cascade,
        bucket(&[
            ("accounts", "account", 2),
            ("devices", "sip_device", 2),
            ("devices", "softphone", 1)
        ])
    );
    // r1: r2 itself, its subtree, and c3.
    assert_eq!(
        read("r1").await.cascade,
        bucket(&[
            ("accounts", "account", 4),
            ("devices", "sip_device", 3),
            ("devices", "softphone", 2),
            ("limits", "twoway_trunks", 4),
        ])
    );
    // m: the whole system but itself.
    assert_eq!(
        read("m").await.cascade,
        bucket(&[
            ("accounts", "account", 5),
            ("devices", "sip_device", 3),
            ("devices", "softphone", 2),
            ("limits", "twoway_trunks", 4),
        ])
    );
    assert_eq!(
        read("m").await.account,
        bucket(&[("accounts", "account", 1), ("devices", "sip_device", 1)])
    );
    assert!(read("c1").await.cascade.is_empty());
    // The deleted account's own objects are still counted on it.
    assert_eq!(read("gone").await.account, bucket(&[("devices", "sip_device", 1)]));
    // Every account whose buckets changed is marked for repricing.
    assert_eq!(store.dirty(&id("r1")).await.expect("read"), Some(at(NOON)));
}

async fn snapshot(store: &Store, accounts: &[&str]) -> Vec<String> {
    let mut lines = Vec::new();
    for account in accounts {
        let account = id(account);
        lines.push(format!("{:?}", store.quantities(&account).await.expect("read")));
        lines.push(format!(
            "{:?}",
            store.change_records(&account).await.expect("read").len()
        ));
        lines.push(format!("{:?}", store.day_summaries(&account).await.expect("read")));
        lines.push(format!("{:?}", store.dirty(&account).await.expect("read")));
    }
    lines
}

async fn a_rerun_without_inventory_change_writes_nothing(store: &Store) {
    let generated = generate_tree(25, 7);
    store.execute_script(&generated.script).await.expect("fixture loads");
    let first = reconcile_all(store, at(NOON)).await;
    assert!(first.accounts_changed > 0);
    let names: Vec<String> = (0..25).map(|index| format!("acct{index:03}")).collect();
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    let before = snapshot(store, &names).await;
    let records_before = store
        .query_count("SELECT COUNT(*) FROM quantity_change_records")
        .await
        .expect("count");

    let second = reconcile_all(store, at(NOON + 60)).await;
    assert_eq!((second.accounts_changed, second.items_changed), (0, 0));
    assert_eq!(snapshot(store, &names).await, before);
    assert_eq!(
        store
            .query_count("SELECT COUNT(*) FROM quantity_change_records")
            .await
            .expect("count"),
        records_before
    );
}

async fn the_day_summary_reproduces_the_worked_example(store: &Store) {
    // Day 0 (2019-12-04): reseller r with sub-account s1 (2 softphones, 1 user).
    store
        .execute_script(&format!(
            "{}{}{}
             UPDATE accounts SET is_reseller = TRUE WHERE id = 'r';
             INSERT INTO devices (id, account_id, device_type) VALUES ('p1', 's1', 'softphone'), ('p2', 's1', 'softphone');
             INSERT INTO users (id, account_id) VALUES ('u1', 's1');",
            account_sql("m", None),
            account_sql("r", Some("m")),
            account_sql("s1", Some("r"))
        ))
        .await
        .expect("fixture loads");
    reconcile_all(store, at(63_742_700_000)).await;

    // Record 1: a second sub-account (cascade accounts.account 1 → 2).
    store
        .execute_script(&account_sql("s2", Some("r")))
        .await
        .expect("add s2");
    reconcile_all(store, at(63_742_805_754)).await;
    // Record 2: a third sub-account (→ 3).
    store
        .execute_script(&account_sql("s3", Some("r")))
        .await
        .expect("add s3");
    reconcile_all(store, at(63_743_140_500)).await;
    // Record 3: a softphone (→ 3).
    store
        .execute_script("INSERT INTO devices (id, account_id, device_type) VALUES ('p3', 's2', 'softphone');")
        .await
        .expect("add softphone");
    reconcile_all(store, at(63_743_140_580)).await;
    // Record 4: s3 deleted (accounts → 2): a removal.
    store
        .execute_script("UPDATE accounts SET deleted = TRUE WHERE id = 's3';")
        .await
        .expect("delete s3");
    reconcile_all(store, at(63_743_140_658)).await;
    // Record 5: a user (→ 2) and three mailboxes (→ 3).
    store
        .execute_script(
            "INSERT INTO users (id, account_id) VALUES ('u2', 's2');
             INSERT INTO vmboxes (id, account_id) VALUES ('v1', 's1'), ('v2', 's1'), ('v3', 's2');",
        )
        .await
        .expect("add user and boxes");
    reconcile_all(store, at(63_743_140_695)).await;

    let rows: BTreeMap<(String, String), DaySummary> = store
        .day_summaries(&id("r"))
        .await
        .expect("read")
        .into_iter()
        .filter(|(day, _, _)| day.as_str() >= "2019-12-05")
        .map(|(day, source, row)| ((day, source.to_string()), row))
        .collect();
    let row = |addition, removal, last_timestamp, quantity| DaySummary {
        addition,
        removal,
        quantity,
        last_timestamp: GregorianSeconds(last_timestamp),
    };
    let key = |day: &str, source: &str| (day.to_string(), source.to_string());
    let expected: BTreeMap<(String, String), DaySummary> = [
        (key("2019-12-05", "account"), row(1, 0, 63_742_805_754, 2)),
        (key("2019-12-09", "account"), row(1, 1, 63_743_140_658, 2)),
        (key("2019-12-09", "softphone"), row(1, 0, 63_743_140_580, 3)),
        (key("2019-12-09", "mailbox"), row(3, 0, 63_743_140_695, 3)),
        (key("2019-12-09", "user"), row(1, 0, 63_743_140_695, 2)),
    ]
    .into();
    assert_eq!(rows, expected);

    // The materialised rows of every account equal the reference fold of its records.
    for account in ["m", "r", "s1", "s2", "s3"] {
        let records = store.change_records(&id(account)).await.expect("read");
        let reference: Vec<(String, String, DaySummary)> = summarise(&records)
            .into_iter()
            .map(|((day, source), row)| (day, source.to_string(), row))
            .collect();
        let stored: Vec<(String, String, DaySummary)> = store
            .day_summaries(&id(account))
            .await
            .expect("read")
            .into_iter()
            .map(|(day, source, row)| (day, source.to_string(), row))
            .collect();
        assert_eq!(stored, reference, "summaries of {account}");
    }
    // The deleted account's own removal shows on its own summary.
    let s3 = store.day_summaries(&id("s3")).await.expect("read");
    let own = s3
        .iter()
        .find(|(day, source, _)| day == "2019-12-09" && source.as_str() == "account")
        .expect("s3 has an account row");
    assert_eq!((own.2.addition, own.2.removal, own.2.quantity), (1, 1, 0));
}

/// An account's day-summary rows keyed by source, for fixtures whose rows are of one day.
async fn summaries_by_source(store: &Store, account: &str) -> BTreeMap<String, DaySummary> {
    store
        .day_summaries(&id(account))
        .await
        .expect("read")
        .into_iter()
        .map(|(_, source, row)| (source.to_string(), row))
        .collect()
}

async fn disabled_and_deleted_objects_are_removals_and_new_ones_additions(store: &Store) {
    store
        .execute_script(&format!(
            "{}{}
             INSERT INTO devices (id, account_id) VALUES ('d1', 'a'), ('d2', 'a'), ('d3', 'a');
             INSERT INTO users (id, account_id) VALUES ('u1', 'a'), ('u2', 'a');",
            account_sql("m", None),
            account_sql("a", Some("m"))
        ))
        .await
        .expect("fixture loads");
    reconcile_all(store, at(NOON)).await;
    store
        .execute_script(
            "UPDATE devices SET enabled = FALSE WHERE id = 'd1';
             UPDATE users SET deleted = TRUE WHERE id = 'u1';
             INSERT INTO faxboxes (id, account_id) VALUES ('f1', 'a');",
        )
        .await
        .expect("change inventory");
    reconcile_all(store, at(NOON + 3_600)).await;

    let rows = summaries_by_source(store, "a").await;
    let later = GregorianSeconds(NOON + 3_600);
    assert_eq!(
        rows["sip_device"],
        DaySummary {
            addition: 3,
            removal: 1,
            quantity: 2,
            last_timestamp: later
        }
    );
    assert_eq!(
        rows["user"],
        DaySummary {
            addition: 2,
            removal: 1,
            quantity: 1,
            last_timestamp: later
        }
    );
    assert_eq!(
        rows["mailbox"],
        DaySummary {
            addition: 1,
            removal: 0,
            quantity: 1,
            last_timestamp: later
        }
    );
    // The parent sees the same changes in its cascade bucket.
    let master = summaries_by_source(store, "m").await;
    assert_eq!(
        master["sip_device"],
        DaySummary {
            addition: 3,
            removal: 1,
            quantity: 2,
            last_timestamp: later
        }
    );
    // The second record lists exactly the three changed items, in record order.
    let records = store.change_records(&id("a")).await.expect("read");
    assert_eq!(records.len(), 2);
    let second: Vec<(Bucket, &str, i64, i64)> = records[1]
        .entries
        .iter()
        .map(|e| (e.bucket, e.source.as_str(), e.quantity, e.billable))
        .collect();
    assert_eq!(
        second,
        vec![
            (Bucket::Account, "sip_device", -1, 2),
            (Bucket::Account, "mailbox", 1, 1),
            (Bucket::Account, "user", -1, 1)
        ]
    );
}

async fn manual_quantities_are_left_alone(store: &Store) {
    store
        .execute_script(&format!(
            "{}{}INSERT INTO users (id, account_id) VALUES ('u1', 'a');",
            account_sql("m", None),
            account_sql("a", Some("m"))
        ))
        .await
        .expect("fixture loads");
    store
        .set_manual_quantity(&id("a"), &c("users"), &i("user"), 7)
        .await
        .expect("manual");
    store
        .set_manual_quantity(&id("a"), &c("spacely_space"), &i("sprockets"), 0)
        .await
        .expect("manual");
    reconcile_all(store, at(NOON)).await;
    store.execute_script("DELETE FROM users;").await.expect("remove users");
    reconcile_all(store, at(NOON + 10)).await;

    let stored = store.quantities(&id("a")).await.expect("read");
    assert_eq!(
        stored.manual,
        bucket(&[("spacely_space", "sprockets", 0), ("users", "user", 7)])
    );
    assert_eq!(stored.account, bucket(&[("accounts", "account", 1)]));
    let records = store.change_records(&id("a")).await.expect("read");
    assert_eq!(records.len(), 2, "the first count and the removal of the users");
    let manual_entries = records
        .iter()
        .flat_map(|record| &record.entries)
        .filter(|entry| entry.bucket == Bucket::Manual)
        .count();
    assert_eq!(manual_entries, 0);
}

async fn a_dry_run_writes_nothing(store: &Store) {
    let generated = generate_tree(12, 3);
    store.execute_script(&generated.script).await.expect("fixture loads");
    let tables = [
        "service_quantities",
        "quantity_change_records",
        "quantity_day_summaries",
        "services",
    ];
    let dry = ReconcileOptions {
        dry_run: true,
        ..options(ReconcileScope::All, at(NOON))
    };
    let report = run_once(store, &CountingQueries::builtin(), &dry)
        .await
        .expect("dry run");
    assert!(report.accounts_changed > 0);
    assert_eq!(u64::try_from(report.changes.len()).expect("fits"), report.items_changed);
    for table in tables {
        let rows = store
            .query_count(&format!("SELECT COUNT(*) FROM {table}"))
            .await
            .expect("count");
        assert_eq!(rows, 0, "{table} after a dry run");
    }
    let paths = store
        .query_count("SELECT COUNT(*) FROM accounts WHERE tree <> '[]'")
        .await
        .expect("count");
    assert_eq!(paths, 0);

    // The real run then writes exactly what the dry run announced.
    let real = reconcile_all(store, at(NOON)).await;
    assert_eq!(
        (real.accounts_changed, real.items_changed),
        (report.accounts_changed, report.items_changed)
    );
}

async fn broken_accounts_are_skipped_and_reported(store: &Store) {
    let mut script = String::new();
    for (account, parent) in [
        ("m", None),
        ("a", Some("m")),
        ("x", Some("ghost")),
        ("y", Some("x")),
        ("c1", Some("c2")),
        ("c2", Some("c1")),
    ] {
        script.push_str(&account_sql(account, parent));
    }
    script.push_str("INSERT INTO devices (id, account_id) VALUES ('d1', 'a'), ('d2', 'y'), ('d3', 'c1');");
    store.execute_script(&script).await.expect("fixture loads");

    let report = reconcile_all(store, at(NOON)).await;
    let skipped: Vec<(String, SkipReason)> = report
        .skipped
        .iter()
        .map(|skip| (skip.account.to_string(), skip.reason.clone()))
        .collect();
    assert_eq!(
        skipped,
        vec![
            ("c1".to_string(), SkipReason::Tree(Breakage::Cycle)),
            ("c2".to_string(), SkipReason::Tree(Breakage::Cycle)),
            (
                "x".to_string(),
                SkipReason::Tree(Breakage::DanglingParent { parent: id("ghost") })
            ),
            (
                "y".to_string(),
                SkipReason::Tree(Breakage::BrokenAncestor { ancestor: id("x") })
            ),
        ]
    );
    assert!(report.is_partial());
    assert_eq!(report.accounts_scanned, 2);
    assert_eq!(
        store.quantities(&id("a")).await.expect("read").account,
        bucket(&[("accounts", "account", 1), ("devices", "sip_device", 1)])
    );
    assert!(store.quantities(&id("y")).await.expect("read").account.is_empty());
    assert_eq!(
        store
            .quantities(&id("m"))
            .await
            .expect("read")
            .cascade
            .get(&c("devices"), &i("sip_device")),
        Some(1)
    );
}

async fn one_account_is_recounted_and_its_ancestors_rolled_up(store: &Store) {
    let mut script = String::new();
    for (account, parent) in [("m", None), ("r", Some("m")), ("a", Some("r")), ("b", Some("r"))] {
        script.push_str(&account_sql(account, parent));
    }
    script.push_str("INSERT INTO devices (id, account_id) VALUES ('d1', 'a'), ('d2', 'b');");
    store.execute_script(&script).await.expect("fixture loads");
    reconcile_all(store, at(NOON)).await;
    store
        .execute_script("INSERT INTO devices (id, account_id) VALUES ('d3', 'a'), ('d4', 'b');")
        .await
        .expect("more devices");

    let only_a = options(ReconcileScope::Accounts(vec![id("a"), id("nobody")]), at(NOON + 5));
    let report = run_once(store, &CountingQueries::builtin(), &only_a)
        .await
        .expect("runs");
    assert_eq!(report.accounts_scanned, 1);
    let skipped: Vec<(String, SkipReason)> = report
        .skipped
        .iter()
        .map(|skip| (skip.account.to_string(), skip.reason.clone()))
        .collect();
    assert_eq!(skipped, vec![("nobody".to_string(), SkipReason::Unknown)]);
    let sip = |quantities: &Quantities| quantities.get(&c("devices"), &i("sip_device"));
    assert_eq!(sip(&store.quantities(&id("a")).await.expect("read").account), Some(2));
    // b was not recounted: its stored bucket still says 1, and the roll-up uses it.
    assert_eq!(sip(&store.quantities(&id("b")).await.expect("read").account), Some(1));
    assert_eq!(sip(&store.quantities(&id("r")).await.expect("read").cascade), Some(3));
    assert_eq!(sip(&store.quantities(&id("m")).await.expect("read").cascade), Some(3));
    assert_eq!(store.dirty(&id("r")).await.expect("read"), Some(at(NOON + 5)));
}

async fn a_run_stopped_halfway_and_rerun_ends_like_one_clean_run(store: &Store) {
    let generated = generate_tree(30, 11);
    store.execute_script(&generated.script).await.expect("fixture loads");
    // The "interrupted" run: only some accounts committed (a partial run commits whole
    // accounts, exactly as a run stopped between batches).
    let some: Vec<_> = (0..30).step_by(3).map(|index| id(&format!("acct{index:03}"))).collect();
    run_once(
        store,
        &CountingQueries::builtin(),
        &options(ReconcileScope::Accounts(some), at(NOON)),
    )
    .await
    .expect("partial run");
    reconcile_all(store, at(NOON + 1)).await;
    let rerun = reconcile_all(store, at(NOON + 2)).await;
    assert_eq!(rerun.accounts_changed, 0);

    let mut expected_cascade: Vec<Quantities> = vec![Quantities::new(); 30];
    for (index, counts) in generated.account.iter().enumerate() {
        if generated.deleted[index] {
            continue;
        }
        let mut ancestor = generated.parents[index];
        while let Some(above) = ancestor {
            expected_cascade[above].add_all(counts);
            ancestor = generated.parents[above];
        }
    }
    let mut sources_seen = BTreeSet::new();
    for (index, cascade) in expected_cascade.iter().enumerate() {
        let account = id(&format!("acct{index:03}"));
        let stored = store.quantities(&account).await.expect("read");
        assert_eq!(stored.account, generated.account[index]);
        assert_eq!(&stored.cascade, cascade);
        // Each day row's quantity is the final level of its source.
        for (_, source, row) in store.day_summaries(&account).await.expect("read") {
            sources_seen.insert(source.to_string());
            assert!(
                row.addition >= row.quantity || row.removal > 0,
                "{account} {source}: {row:?}"
            );
        }
    }
    assert!(!sources_seen.is_empty());
}

/// A stored row holding 0 (a manual write, or an older version's) counts as stored: it
/// is updated in place when its item is counted again, not inserted a second time.
async fn a_stored_zero_quantity_is_updated_when_counted_again(store: &Store) {
    store
        .execute_script(&format!(
            "{}{}INSERT INTO devices (id, account_id, device_type) VALUES ('p1', 'a', 'softphone'), ('p2', 'a', 'softphone');
             INSERT INTO service_quantities (account_id, bucket, category, item, quantity)
             VALUES ('a', 'account', 'devices', 'softphone', 0);",
            account_sql("m", None),
            account_sql("a", Some("m"))
        ))
        .await
        .expect("fixture loads");
    let report = reconcile_all(store, at(NOON)).await;
    assert!(report.skipped.is_empty(), "{:?}", report.skipped);

    let stored = store.quantities(&id("a")).await.expect("read");
    assert_eq!(
        stored.account,
        bucket(&[("accounts", "account", 1), ("devices", "softphone", 2)])
    );
    let records = store.change_records(&id("a")).await.expect("read");
    let softphones: Vec<(i64, i64)> = records
        .iter()
        .flat_map(|record| &record.entries)
        .filter(|entry| entry.source.as_str() == "softphone")
        .map(|entry| (entry.quantity, entry.billable))
        .collect();
    assert_eq!(softphones, [(2, 2)], "one addition from the stored 0 to 2");
}

/// One run can change a source in several entries of a record: a reseller's own
/// `accounts.account` and its cascade, mailboxes of faxes and of voicemails. The day's
/// row adds them up and keeps the quantity of the last entry in record order (§5.2):
/// the cascade's, then voicemails' (after faxes), neither the first nor the largest.
async fn a_source_changed_in_several_entries_keeps_the_last_ones_quantity(store: &Store) {
    store
        .execute_script(&format!(
            "{}{}{}{}
             UPDATE accounts SET is_reseller = TRUE WHERE id = 'r';
             INSERT INTO vmboxes (id, account_id) VALUES ('v1', 'r');
             INSERT INTO faxboxes (id, account_id) VALUES ('f1', 'r'), ('f2', 'r');",
            account_sql("m", None),
            account_sql("r", Some("m")),
            account_sql("s1", Some("r")),
            account_sql("s2", Some("r"))
        ))
        .await
        .expect("fixture loads");
    reconcile_all(store, at(NOON)).await;

    let rows = summaries_by_source(store, "r").await;
    let row = |addition, quantity| DaySummary {
        addition,
        removal: 0,
        quantity,
        last_timestamp: GregorianSeconds(NOON),
    };
    let expected: BTreeMap<String, DaySummary> =
        [("account".to_string(), row(3, 2)), ("mailbox".to_string(), row(3, 1))].into();
    assert_eq!(rows, expected);
}

/// The reconcile session's PostgreSQL settings (`work_mem`, `random_page_cost`) end
/// with the run: the pooled connection it used is back to the server's values.
async fn the_session_settings_end_with_the_run(store: &Store) {
    let single = store.with_pool_size(1).await.expect("a pool of one connection");
    single
        .execute_script(&format!(
            "{}{}INSERT INTO users (id, account_id) VALUES ('u1', 'a');",
            account_sql("m", None),
            account_sql("a", Some("m"))
        ))
        .await
        .expect("fixture loads");
    // SQLite: reconcile counts with a smaller page cache (it bounds the sorters' memory).
    let cache_size = "PRAGMA cache_size";
    let cache_before = match single.backend() {
        Backend::Sqlite => Some(single.query_count(cache_size).await.expect("reads the cache size")),
        Backend::Postgres => None,
    };
    reconcile_all(&single, at(NOON)).await;
    if let Some(cache_before) = cache_before {
        let cache_after = single.query_count(cache_size).await.expect("reads the cache size");
        assert_eq!(cache_after, cache_before, "the counting cache outlived the run");
    }
    if single.backend() == Backend::Postgres {
        let left_set = single
            .query_count(
                "SELECT COUNT(*) FROM pg_settings \
                 WHERE name IN ('work_mem', 'random_page_cost') AND source = 'session'",
            )
            .await
            .expect("reads pg_settings");
        assert_eq!(left_set, 0, "a session setting outlived the run");
    }
    let stored = single.quantities(&id("a")).await.expect("read");
    assert_eq!(
        stored.account,
        bucket(&[("accounts", "account", 1), ("users", "user", 1)])
    );
}

on_both_backends!(
    quantities_equal_an_independent_count_on_a_generated_tree,
    cascade_quantities_cover_a_four_level_tree,
    a_rerun_without_inventory_change_writes_nothing,
    the_day_summary_reproduces_the_worked_example,
    disabled_and_deleted_objects_are_removals_and_new_ones_additions,
    manual_quantities_are_left_alone,
    a_dry_run_writes_nothing,
    broken_accounts_are_skipped_and_reported,
    one_account_is_recounted_and_its_ancestors_rolled_up,
    a_run_stopped_halfway_and_rerun_ends_like_one_clean_run,
    a_stored_zero_quantity_is_updated_when_counted_again,
    a_source_changed_in_several_entries_keeps_the_last_ones_quantity,
    the_session_settings_end_with_the_run,
    an_empty_item_name_counted_stops_no_run,
);

/// A name the domain would refuse (an empty device type, written by hand) is counted
/// and recorded as it is, as on SQLite: the run goes on and writes every account.
async fn an_empty_item_name_counted_stops_no_run(store: &Store) {
    store
        .execute_script(&format!(
            "{}{}{}INSERT INTO devices (id, account_id, device_type) VALUES ('d1', 'a', ''); \
             INSERT INTO users (id, account_id) VALUES ('u1', 'b');",
            account_sql("m", None),
            account_sql("a", Some("m")),
            account_sql("b", Some("m"))
        ))
        .await
        .expect("fixture loads");
    let report = reconcile_all(store, at(NOON)).await;
    assert_eq!(report.accounts_changed, 3, "{report:?}");
    assert_eq!(
        store
            .query_count("SELECT COUNT(*) FROM service_quantities WHERE account_id = 'a' AND item = ''")
            .await
            .expect("count"),
        1
    );
    let records = store.change_records(&id("b")).await.expect("read");
    assert_eq!(records.len(), 1);
    assert!(store.dirty(&id("a")).await.expect("read").is_some());
}

/// A manual write holding an account's services row (its write lock) while reconcile
/// reaches the same account must not deadlock with it: the batch takes the services
/// rows first, as every other writer does, so it waits there holding nothing the
/// write needs. The write's day-summary upsert (the row reconcile would otherwise have
/// taken first) goes through at once, and both commit. PostgreSQL only: SQLite has
/// one writer at a time, so the two cannot interleave.
#[tokio::test]
async fn a_concurrent_manual_write_and_reconcile_do_not_deadlock() {
    use sqlx::Connection;
    let Some(database) = crate::helpers::postgres_store().await else {
        return;
    };
    let store = &database.store;
    store
        .execute_script(&format!(
            "{}{}INSERT INTO users (id, account_id) VALUES ('u1', 'a');",
            account_sql("m", None),
            account_sql("a", Some("m"))
        ))
        .await
        .expect("fixture loads");
    reconcile_all(store, at(NOON)).await;
    store
        .execute_script("INSERT INTO users (id, account_id) VALUES ('u2', 'a');")
        .await
        .expect("a second user");
    let later = at(NOON + 60);
    let day = later.day_key().expect("a calendar day");

    // The write: it takes the account's lock as `lock_account` does and holds it.
    let mut writer = sqlx::PgConnection::connect(&database.url).await.expect("connects");
    sqlx::query("BEGIN").execute(&mut writer).await.expect("begin");
    sqlx::query(
        "INSERT INTO services (account_id, dirty, dirty_since, revision) VALUES ('a', TRUE, $1, 1) \
         ON CONFLICT (account_id) DO UPDATE SET dirty = TRUE, revision = services.revision + 1",
    )
    .bind(later.0)
    .execute(&mut writer)
    .await
    .expect("takes the account's lock");

    let reconciling = {
        let store = store.clone();
        tokio::spawn(async move {
            run_once(
                &store,
                &CountingQueries::builtin(),
                &options(ReconcileScope::All, later),
            )
            .await
        })
    };
    // Until reconcile waits on a lock (ours), so the write goes on while it waits.
    let mut waited = false;
    for _ in 0..200 {
        let waiting: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM pg_stat_activity \
             WHERE datname = current_database() AND wait_event_type = 'Lock' AND pid <> pg_backend_pid()",
        )
        .fetch_one(&mut writer)
        .await
        .expect("reads pg_stat_activity");
        if waiting > 0 {
            waited = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    assert!(waited, "reconcile never waited for the account's lock");

    // Shorter than `deadlock_timeout` (1 s): blocked behind reconcile's summary row,
    // this fails instead of waiting for the deadlock check to pick a victim.
    sqlx::query("SET LOCAL lock_timeout = '500ms'")
        .execute(&mut writer)
        .await
        .expect("lock_timeout");
    sqlx::query(
        "INSERT INTO quantity_day_summaries \
             (account_id, day, source, addition, removal, quantity, last_timestamp, sum_quantity) \
         VALUES ('a', $1, 'user', 0, 0, 1, $2, FALSE) \
         ON CONFLICT (account_id, day, source) DO UPDATE SET quantity = excluded.quantity",
    )
    .bind(day.as_str())
    .bind(later.0)
    .execute(&mut writer)
    .await
    .expect("the write's day summary is not blocked by reconcile");
    sqlx::query("COMMIT")
        .execute(&mut writer)
        .await
        .expect("the write commits");

    let report = reconciling
        .await
        .expect("reconcile task")
        .expect("reconcile commits after the write");
    assert_eq!(report.accounts_changed, 2, "a and its parent's cascade");
    let stored = store.quantities(&id("a")).await.expect("read");
    assert_eq!(
        stored.account,
        bucket(&[("accounts", "account", 1), ("users", "user", 2)])
    );
}

/// PostgreSQL writes a run's batches on several connections at once; a pool of one
/// connection writes them one at a time on the session's. Both leave the same rows:
/// quantities, change entries by account, day summaries and repricing marks.
#[tokio::test]
async fn batches_written_in_parallel_leave_the_rows_of_one_at_a_time() {
    use sqlx::Connection;
    let (Some(parallel), Some(sequential)) = (
        crate::helpers::postgres_store().await,
        crate::helpers::postgres_store().await,
    ) else {
        return;
    };
    let mut fixture = format!("{}{}", account_sql("m", None), account_sql("r", Some("m")));
    for n in 0..8 {
        fixture.push_str(&account_sql(&format!("a{n}"), Some("r")));
        for d in 0..=n {
            fixture.push_str(&format!(
                "INSERT INTO devices (id, account_id, device_type) VALUES ('d{n}_{d}', 'a{n}', '{}');",
                if d % 2 == 0 { "sip_device" } else { "softphone" }
            ));
        }
        fixture.push_str(&format!("INSERT INTO users (id, account_id) VALUES ('u{n}', 'a{n}');"));
    }
    let one_at_a_time = sequential
        .store
        .with_pool_size(1)
        .await
        .expect("a pool of one connection");
    for store in [&parallel.store, &one_at_a_time] {
        store.execute_script(&fixture).await.expect("fixture loads");
        let report = run_once(
            store,
            &CountingQueries::builtin(),
            &ReconcileOptions {
                batch_size: 1,
                ..options(ReconcileScope::All, at(NOON))
            },
        )
        .await
        .expect("reconcile runs");
        assert_eq!(report.accounts_changed, 10, "every account changed, one per batch");
    }
    let dump = "SELECT string_agg(row, ' | ' ORDER BY row) FROM ( \
        SELECT concat_ws(',', 'q', account_id, bucket, category, item, quantity) AS row FROM service_quantities \
        UNION ALL SELECT concat_ws(',', 'e', account_id, entries) FROM quantity_change_records \
        UNION ALL SELECT concat_ws(',', 's', account_id, day, source, addition, removal, quantity) \
            FROM quantity_day_summaries \
        UNION ALL SELECT concat_ws(',', 'd', account_id, dirty) FROM services) rows";
    let mut dumps = Vec::new();
    for database in [&parallel, &sequential] {
        let mut conn = sqlx::PgConnection::connect(&database.url).await.expect("connects");
        let text: String = sqlx::query_scalar(dump).fetch_one(&mut conn).await.expect("dumps");
        dumps.push(text);
    }
    assert!(dumps[0].contains("e,a7,"), "the dump holds change entries");
    assert_eq!(dumps[0], dumps[1]);
}
