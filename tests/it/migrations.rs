//! Migrations that move stored data: a database written by an earlier tally is
//! migrated with what it holds, on both backends.

use crate::helpers::{drop_postgres_database, empty_postgres_database, id};
use sqlx::migrate::Migrator;
use std::path::Path;
use tally::config::DatabaseUrl;
use tally::domain::quantities::Bucket;
use tally::domain::summary::RecordEntry;
use tally::domain::ItemName;
use tally::store::Store;

/// A record of the old shape (entries one row each, written out of order) and a record
/// without entries, as migrations up to 0016 stored them.
const OLD_RECORDS: &str = "\
    INSERT INTO quantity_change_records (id, account_id, run_id, created_at) VALUES \
        ('2026-a', 'acct', 'run-1', 100), ('2026-b', 'acct', 'run-2', 200); \
    INSERT INTO quantity_change_entries (record_id, position, bucket, category, source, quantity, billable) VALUES \
        ('2026-a', 2, 'cascade', 'users', 'user', 3, 5), \
        ('2026-a', 1, 'account', 'devices', 'sip_device', -1, 0);";

/// Applies `directory`'s migrations up to `last` with a migrator of its own.
async fn migrator_up_to(directory: &str, last: i64) -> Migrator {
    let mut migrator = Migrator::new(Path::new(env!("CARGO_MANIFEST_DIR")).join(directory))
        .await
        .expect("migrations read");
    let earlier: Vec<_> = migrator
        .migrations
        .iter()
        .filter(|migration| migration.version <= last)
        .cloned()
        .collect();
    migrator.migrations = earlier.into();
    migrator
}

/// The old records, read through the store once the rest of the migrations ran.
async fn assert_entries_moved_into_their_records(url: &DatabaseUrl) {
    let store = Store::open(url).await.expect("opens and migrates the rest");
    let records = store.change_records(&id("acct")).await.expect("records read");
    let entry = |bucket, category: &str, source: &str, quantity, billable| RecordEntry {
        bucket,
        category: category.to_owned(),
        source: ItemName::parse(source).expect("item"),
        quantity,
        billable,
    };
    let entries: Vec<&[RecordEntry]> = records.iter().map(|record| record.entries.as_slice()).collect();
    assert_eq!(
        entries,
        vec![
            &[
                entry(Bucket::Account, "devices", "sip_device", -1, 0),
                entry(Bucket::Cascade, "users", "user", 3, 5),
            ][..],
            &[][..],
        ],
        "each record holds its entries in position order"
    );
    store.close().await;
}

#[tokio::test]
async fn change_entries_move_into_their_records_on_sqlite() {
    let directory = tempfile::tempdir().expect("temp dir");
    let url = format!("sqlite://{}?mode=rwc", directory.path().join("tally.db").display());
    let pool = sqlx::SqlitePool::connect(&url).await.expect("sqlite opens");
    migrator_up_to("sql/sqlite", 16)
        .await
        .run(&pool)
        .await
        .expect("migrations up to 0016");
    sqlx::raw_sql(OLD_RECORDS).execute(&pool).await.expect("old records");
    pool.close().await;
    let url = format!("sqlite://{}", directory.path().join("tally.db").display());
    assert_entries_moved_into_their_records(&DatabaseUrl::new(url)).await;
}

#[tokio::test]
async fn change_entries_move_into_their_records_on_postgres() {
    let Some((name, url)) = empty_postgres_database().await else {
        return;
    };
    let pool = sqlx::PgPool::connect(&url).await.expect("postgres opens");
    migrator_up_to("sql/postgres", 16)
        .await
        .run(&pool)
        .await
        .expect("migrations up to 0016");
    sqlx::raw_sql(OLD_RECORDS).execute(&pool).await.expect("old records");
    pool.close().await;
    assert_entries_moved_into_their_records(&DatabaseUrl::new(url)).await;
    drop_postgres_database(name);
}
