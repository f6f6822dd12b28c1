//! A loaded demo kept between bench runs (`TALLY_BENCH_REUSE=1`): loading 100,000
//! accounts (10M documents) takes minutes, copying the loaded database takes far less.
//!
//! A saved demo is keyed by its size, its seed and a fingerprint of what decides its
//! rows (the backend's migrations and the demo and ingestion sources), so a changed
//! schema or generator never serves stale rows. PostgreSQL keeps it as a database
//! `tally_bench_demo_{accounts}_s{seed}_{fingerprint}` used as the template of each
//! run's database (`CREATE DATABASE .. TEMPLATE ..`); SQLite as a file under
//! `target/tmp/bench-demos/`, copied for each run. Both hold the load's object count in
//! a table `bench_demo`. Nothing is saved unless asked; [`saved_demo_note`] says how to
//! remove what was.

use super::{admin_url, create_from_template, BenchDatabase};
use sha2::{Digest, Sha256};
use sqlx::Connection;
use std::path::{Path, PathBuf};
use std::time::Instant;
use tally::config::Settings;
use tally::demo::DemoSpec;
use tally::domain::summary::GregorianSeconds;
use tally::jobs::demo::{load, DEMO_BATCH_SIZE};
use tally::store::{Backend, Store};

/// True when `TALLY_BENCH_REUSE=1`.
pub fn reuse_requested() -> bool {
    std::env::var("TALLY_BENCH_REUSE").is_ok_and(|reuse| reuse == "1")
}

/// 12 hex digits over the files that decide a loaded demo's rows on `backend`.
pub fn demo_fingerprint(backend: &str) -> String {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = Vec::new();
    for directory in [format!("sql/{backend}"), "src/demo".to_owned(), "src/ingest".to_owned()] {
        collect_files(&root.join(directory), &mut files);
    }
    for file in [
        "src/demo.rs",
        "src/jobs/demo.rs",
        "src/store/demo.rs",
        "src/store/inventory.rs",
    ] {
        files.push(root.join(file));
    }
    files.sort();
    let mut digest = Sha256::new();
    for file in &files {
        // A missing file is part of the fingerprint too (renamed sources change it).
        digest.update(file.strip_prefix(root).unwrap_or(file).to_string_lossy().as_bytes());
        digest.update(std::fs::read(file).unwrap_or_default());
    }
    hex::encode(digest.finalize()).chars().take(12).collect()
}

fn collect_files(directory: &Path, files: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(directory) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            collect_files(&path, files);
        } else {
            files.push(path);
        }
    }
}

/// Where a saved demo lives.
pub enum SavedDemo {
    /// A PostgreSQL database of that name (a template, never opened by the bench).
    Postgres(String),
    /// A SQLite file.
    Sqlite(PathBuf),
}

impl SavedDemo {
    /// The saved demo's place for `backend`, `accounts` and `seed` (it may not exist).
    pub fn locate(backend: &str, accounts: u64, seed: u64) -> Option<SavedDemo> {
        let fingerprint = demo_fingerprint(backend);
        let name = format!("tally_bench_demo_{accounts}_s{seed}_{fingerprint}");
        match backend {
            "postgres" => Some(SavedDemo::Postgres(name)),
            "sqlite" => Some(SavedDemo::Sqlite(
                Path::new(env!("CARGO_TARGET_TMPDIR"))
                    .join("bench-demos")
                    .join(format!("{name}.db")),
            )),
            _ => None,
        }
    }

    /// Whether it was saved already.
    pub async fn exists(&self) -> bool {
        match self {
            SavedDemo::Postgres(name) => {
                let mut admin = sqlx::PgConnection::connect(&admin_url())
                    .await
                    .expect("PostgreSQL reachable");
                let found: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM pg_database WHERE datname = $1")
                    .bind(name)
                    .fetch_one(&mut admin)
                    .await
                    .expect("reads pg_database");
                let _ = admin.close().await;
                found > 0
            }
            SavedDemo::Sqlite(path) => path.is_file(),
        }
    }

    /// A new bench database holding a copy of the saved demo.
    pub async fn copy(&self, label: &str) -> BenchDatabase {
        match self {
            SavedDemo::Postgres(name) => BenchDatabase::create_postgres(label, Some(name)).await,
            SavedDemo::Sqlite(path) => {
                let database = BenchDatabase::create("sqlite", label).await.expect("sqlite is known");
                std::fs::copy(path, database.sqlite_path().expect("a SQLite bench database"))
                    .expect("copies the saved demo");
                database
            }
        }
    }

    /// Saves the demo loaded in `database`; its store must be closed (PostgreSQL copies
    /// only a database nobody is connected to; SQLite's WAL must be checkpointed).
    pub async fn save_from(&self, database: &BenchDatabase) {
        match self {
            SavedDemo::Postgres(name) => {
                let source = database.postgres_name().expect("a PostgreSQL bench database");
                let mut admin = sqlx::PgConnection::connect(&admin_url())
                    .await
                    .expect("PostgreSQL reachable");
                // The store is closed, but autovacuum may be working on the fresh load.
                create_from_template(&mut admin, name, source).await;
                let _ = admin.close().await;
            }
            SavedDemo::Sqlite(path) => {
                std::fs::create_dir_all(path.parent().expect("a directory")).expect("creates the demo directory");
                std::fs::copy(database.sqlite_path().expect("a SQLite bench database"), path)
                    .expect("saves the demo file");
            }
        }
    }

    /// How to remove it, for the bench's output.
    pub fn removal_hint(&self) -> String {
        match self {
            SavedDemo::Postgres(name) => format!("psql -c 'DROP DATABASE {name}'"),
            SavedDemo::Sqlite(path) => format!("rm {}", path.display()),
        }
    }
}

/// A line naming what `TALLY_BENCH_REUSE` keeps.
pub fn saved_demo_note(saved: &SavedDemo) -> String {
    format!("  saved demo kept for the next run (remove: {})", saved.removal_hint())
}

/// The demo's seed (the saved demos are keyed by it).
pub const DEMO_SEED: u64 = 1;

/// A bench database holding the loaded demo, open.
pub struct PreparedDemo {
    pub database: BenchDatabase,
    pub store: Store,
    /// The inventory objects the load stored.
    pub objects: u64,
    /// Where the demo is kept between runs (`TALLY_BENCH_REUSE=1`), to name it.
    pub saved: Option<SavedDemo>,
}

/// A new database on `backend` with the demo of `accounts` accounts: a copy of the
/// saved demo when `TALLY_BENCH_REUSE=1` and one exists, else loaded through the
/// production path as of `loaded_at` (and saved when reuse is asked). `None` for an
/// unknown backend.
pub async fn prepare_demo(
    backend: &str,
    accounts: u64,
    label: &str,
    loaded_at: GregorianSeconds,
) -> Option<PreparedDemo> {
    let saved = if reuse_requested() {
        SavedDemo::locate(backend, accounts, DEMO_SEED)
    } else {
        None
    };
    let reusable = match &saved {
        Some(saved) => saved.exists().await,
        None => false,
    };
    if let (Some(kept), true) = (&saved, reusable) {
        let copied = Instant::now();
        let database = kept.copy(label).await;
        let store = Store::open(&database.url).await.expect("opens");
        let objects = u64::try_from(
            store
                .query_count("SELECT objects FROM bench_demo")
                .await
                .expect("the saved demo's object count"),
        )
        .expect("a count");
        println!(
            "  demo: the saved demo ({objects} objects) copied in {:.1} s",
            copied.elapsed().as_secs_f64()
        );
        return Some(PreparedDemo {
            database,
            store,
            objects,
            saved,
        });
    }
    let database = BenchDatabase::create(backend, label).await?;
    let mut store = Store::open(&database.url).await.expect("opens");
    let objects = load_demo(&store, accounts, loaded_at).await;
    if let Some(saved) = &saved {
        store = save_demo(store, &database, saved, objects).await;
    }
    Some(PreparedDemo {
        database,
        store,
        objects,
        saved,
    })
}

/// Loads the demo through the production path; returns the inventory object count.
async fn load_demo(store: &Store, accounts: u64, now: GregorianSeconds) -> u64 {
    let settings = Settings::default();
    let classifiers = settings.ingest.classifiers().expect("the default classifiers compile");
    let started = Instant::now();
    let report = load(
        store,
        classifiers,
        DemoSpec {
            accounts,
            seed: DEMO_SEED,
        },
        now,
        DEMO_BATCH_SIZE,
    )
    .await
    .expect("the demo loads");
    assert_eq!(report.ingest.rejected, 0, "the demo's documents are all accepted");
    println!(
        "  demo: {} accounts, {} resellers, {} objects ({} documents) loaded in {:.1} s",
        report.accounts,
        report.resellers,
        report.objects,
        report.documents,
        started.elapsed().as_secs_f64()
    );
    report.objects
}

/// Saves the freshly loaded demo with its object count for the next run
/// (`TALLY_BENCH_REUSE=1`), closing the store for the copy; returns it reopened.
async fn save_demo(store: Store, fresh: &BenchDatabase, saved: &SavedDemo, objects: u64) -> Store {
    let started = Instant::now();
    store
        .execute_script(&format!(
            "CREATE TABLE bench_demo (objects BIGINT NOT NULL); INSERT INTO bench_demo (objects) VALUES ({objects})"
        ))
        .await
        .expect("notes the object count");
    if store.backend() == Backend::Sqlite {
        store
            .execute_script("PRAGMA wal_checkpoint(TRUNCATE)")
            .await
            .expect("checkpoints the WAL");
    }
    store.close().await;
    saved.save_from(fresh).await;
    println!("  demo saved in {:.1} s", started.elapsed().as_secs_f64());
    Store::open(&fresh.url).await.expect("reopens")
}
