//! `tally backup` (issue 14): on SQLite an online copy that is consistent while a
//! writer keeps writing, checked, never over an existing file without `--force` nor
//! over the live database; on PostgreSQL the `pg_dump` command for the configured
//! database, which works as printed.

use crate::helpers::{account_sql, on_both_backends};
use std::sync::atomic::{AtomicBool, Ordering};
use tally::backup::{backup, BackupError, BackupReport};
use tally::config::DatabaseUrl;
use tally::store::Store;

/// One account and its services row per transaction: a consistent copy holds both
/// or neither of each pair.
fn pair_sql(n: u64) -> String {
    let id = format!("{n:032x}");
    format!(
        "BEGIN; {} INSERT INTO services (account_id) VALUES ('{id}'); COMMIT;",
        account_sql(&id, None)
    )
}

/// Writes pairs from `first` on until `stop` is set; returns how many it wrote.
async fn write_until(store: &Store, first: u64, stop: &AtomicBool) -> u64 {
    let mut n = first;
    while !stop.load(Ordering::Relaxed) {
        store.execute_script(&pair_sql(n)).await.expect("the writer writes");
        n += 1;
    }
    n - first
}

async fn a_backup_while_a_writer_writes_is_consistent_or_points_to_pg_dump(store: &Store) {
    const BEFORE: u64 = 200;
    for n in 0..BEFORE {
        store.execute_script(&pair_sql(n)).await.expect("seed");
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("backup.db");

    // The writer and the backup interleave on separate connections of the pool.
    let stop = AtomicBool::new(false);
    let copy = async {
        // Let the writer get going before the copy starts.
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        let report = backup(store, &path, false).await.expect("backup");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        stop.store(true, Ordering::Relaxed);
        report
    };
    let (report, written_meanwhile) = tokio::join!(copy, write_until(store, BEFORE, &stop));
    assert!(written_meanwhile > 0, "the writer wrote during the backup");

    match report {
        BackupReport::Copied {
            path: copied, bytes, ..
        } => {
            assert_eq!(copied, path);
            assert_eq!(bytes, std::fs::metadata(&path).expect("copy exists").len());
            let copy = Store::connect(&DatabaseUrl::new(format!("sqlite://{}", path.display())))
                .await
                .expect("the copy opens");
            let accounts = copy.query_count("SELECT COUNT(*) FROM accounts").await.expect("counts");
            let services = copy.query_count("SELECT COUNT(*) FROM services").await.expect("counts");
            assert_eq!(accounts, services, "every pair whole: one consistent state");
            let total = i64::try_from(BEFORE + written_meanwhile).expect("small");
            assert!(
                (i64::try_from(BEFORE).expect("small")..=total).contains(&accounts),
                "{accounts} accounts in the copy, {total} written"
            );
            copy.close().await;
        }
        BackupReport::PgDump(advice) => {
            assert!(!path.exists(), "nothing is copied on PostgreSQL");
            let database = store
                .postgres_server()
                .await
                .expect("server answers")
                .and_then(|(_, target)| target.database)
                .expect("a database");
            assert!(advice
                .command
                .starts_with("pg_dump --host=127.0.0.1 --port=5432 --username=postgres "));
            assert!(
                advice.command.contains(&format!("--dbname={database}")),
                "{}",
                advice.command
            );
            assert!(advice.server_major >= 10, "{advice:?}");
            if advice.problem().is_some() {
                eprintln!(
                    "SKIPPED: the printed pg_dump command was NOT run: {:?}",
                    advice.problem()
                );
                return;
            }
            // The command works as printed.
            let dumped = std::process::Command::new("sh")
                .args(["-c", &advice.command])
                .output()
                .expect("sh runs");
            assert!(dumped.status.success(), "{}", String::from_utf8_lossy(&dumped.stderr));
            let dump = std::fs::read(&path).expect("pg_dump wrote the file");
            assert!(dump.starts_with(b"PGDMP"), "a custom-format dump");
        }
    }
}

on_both_backends!(a_backup_while_a_writer_writes_is_consistent_or_points_to_pg_dump);

#[tokio::test]
async fn a_backup_never_replaces_a_file_without_force_nor_the_live_database() {
    let database = crate::helpers::sqlite_store().await;
    let store = &database.store;
    store.execute_script(&pair_sql(1)).await.expect("seed");
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("backup.db");
    std::fs::write(&path, b"yesterday's backup").expect("write");

    let refused = backup(store, &path, false).await.expect_err("refused");
    assert!(matches!(refused, BackupError::Exists(_)), "{refused}");
    assert_eq!(std::fs::read(&path).expect("kept"), b"yesterday's backup");

    assert!(matches!(
        backup(store, &path, true).await,
        Ok(BackupReport::Copied { .. })
    ));
    let copy = Store::connect(&DatabaseUrl::new(format!("sqlite://{}", path.display())))
        .await
        .expect("the copy opens");
    assert_eq!(
        copy.query_count("SELECT COUNT(*) FROM accounts").await.expect("counts"),
        1
    );
    copy.close().await;
    let leftovers: Vec<_> = std::fs::read_dir(dir.path())
        .expect("listable")
        .map(|entry| entry.expect("entry").file_name())
        .collect();
    assert_eq!(
        leftovers,
        vec![std::ffi::OsString::from("backup.db")],
        "no temporary file left"
    );

    let live = store.sqlite_file().expect("a SQLite file");
    let refused = backup(store, &live, true).await.expect_err("refused");
    assert!(matches!(refused, BackupError::LiveDatabase(_)), "{refused}");
}

/// `tally backup` on PostgreSQL prints the command, copies nothing and exits 0.
#[tokio::test]
async fn tally_backup_on_postgres_prints_the_pg_dump_command_and_copies_nothing() {
    let Some(database) = crate::helpers::postgres_store().await else {
        return;
    };
    let url = database.postgres_url().expect("a PostgreSQL URL");
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("tally.dump");
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_tally"))
        .args(["backup", path.to_str().expect("utf-8")])
        .current_dir(dir.path())
        .env_remove("TALLY_CONFIG")
        .env("TALLY_DATABASE_URL", &url)
        .env("RUST_LOG", "warn")
        .output()
        .expect("tally runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(
        output.status.code(),
        Some(0),
        "{stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(stdout.contains("nothing was copied"), "{stdout}");
    let name = url.rsplit('/').next().expect("a database name");
    assert!(
        stdout.lines().any(|line| line.starts_with("pg_dump ")
            && line.contains(&format!("--dbname={name}"))
            && line.ends_with(&format!("--file={}", path.display()))),
        "{stdout}"
    );
    assert!(!path.exists());
}

/// `tally backup` over an existing file: exit 2 (usage) and one line saying `--force`;
/// with `--force` the file is replaced by a copy that opens.
#[test]
fn tally_backup_refuses_an_existing_file_with_exit_2_unless_forced() {
    let dir = tempfile::tempdir().expect("temp dir");
    let tally = |args: &[&str]| {
        crate::helpers::on_sqlite_in(&mut std::process::Command::new(env!("CARGO_BIN_EXE_tally")), dir.path())
            .args(args)
            .env("RUST_LOG", "warn")
            .output()
            .expect("tally runs")
    };
    assert!(tally(&["migrate"]).status.success());
    std::fs::write(dir.path().join("copy.db"), b"keep me").expect("write");

    let refused = tally(&["backup", "copy.db"]);
    assert_eq!(refused.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&refused.stderr).contains("pass --force"));
    assert_eq!(std::fs::read(dir.path().join("copy.db")).expect("kept"), b"keep me");

    let forced = tally(&["backup", "--force", "--json", "copy.db"]);
    assert_eq!(
        forced.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&forced.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&forced.stdout).expect("one JSON object");
    assert_eq!(
        (report["backend"].as_str(), report["integrity_check"].as_str()),
        (Some("sqlite"), Some("ok"))
    );
    assert_eq!(
        report["bytes"].as_u64(),
        std::fs::metadata(dir.path().join("copy.db")).ok().map(|m| m.len())
    );
}
