//! What every bench binary needs: which backends to run (`TALLY_BENCH_BACKENDS`), a
//! fresh database per measurement (a PostgreSQL database created through
//! `TALLY_BENCH_POSTGRES`, or a SQLite file in a temporary directory), and this
//! process's peak memory. Included by each bench with `mod support;`; a bench uses
//! what it needs, hence the `dead_code` allowance.
#![allow(dead_code)]

pub mod floor;
pub mod saved_demo;

use sqlx::Connection;
use tally::config::DatabaseUrl;

/// The backends to run, in order: `TALLY_BENCH_BACKENDS` (comma-separated), else
/// `default`.
pub fn backends(default: &str) -> Vec<String> {
    std::env::var("TALLY_BENCH_BACKENDS")
        .unwrap_or_else(|_| default.to_owned())
        .split(',')
        .map(|backend| backend.trim().to_owned())
        .filter(|backend| !backend.is_empty())
        .collect()
}

/// The platform sizes to run: `TALLY_BENCH_ACCOUNTS` (comma-separated numbers of
/// accounts), else `default`.
pub fn sizes(default: &str) -> Vec<u64> {
    std::env::var("TALLY_BENCH_ACCOUNTS")
        .unwrap_or_else(|_| default.to_owned())
        .split(',')
        .map(|size| {
            size.trim()
                .parse()
                .expect("TALLY_BENCH_ACCOUNTS: numbers separated by commas")
        })
        .collect()
}

/// The PostgreSQL server's maintenance database, where bench databases are created.
pub fn admin_url() -> String {
    std::env::var("TALLY_BENCH_POSTGRES").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned())
}

/// A database made for one measurement; [`BenchDatabase::remove`] drops it (a
/// PostgreSQL one is kept when `TALLY_BENCH_KEEP=1`, to `EXPLAIN` its queries).
pub struct BenchDatabase {
    pub url: DatabaseUrl,
    postgres_name: Option<String>,
    _directory: Option<tempfile::TempDir>,
}

impl BenchDatabase {
    /// A new, empty database on `backend` (`postgres` or `sqlite`); `label` makes the
    /// PostgreSQL name unique within the run. `None` for an unknown backend.
    pub async fn create(backend: &str, label: &str) -> Option<BenchDatabase> {
        match backend {
            "postgres" => Some(BenchDatabase::create_postgres(label, None).await),
            "sqlite" => {
                let directory = tempfile::tempdir().expect("a temporary directory");
                // The file's name is also `sqlite_path`'s.
                let url = DatabaseUrl::new(format!("sqlite://{}", directory.path().join("bench.db").display()));
                Some(BenchDatabase {
                    url,
                    postgres_name: None,
                    _directory: Some(directory),
                })
            }
            other => {
                eprintln!("unknown backend {other:?}: use postgres and/or sqlite");
                None
            }
        }
    }

    /// A new PostgreSQL database, empty or a copy of `template`.
    pub async fn create_postgres(label: &str, template: Option<&str>) -> BenchDatabase {
        let name = format!("tally_bench_{label}_{}", std::process::id());
        let admin_url = admin_url();
        let mut admin = sqlx::PgConnection::connect(&admin_url)
            .await
            .expect("PostgreSQL reachable");
        match template {
            Some(template) => create_from_template(&mut admin, &name, template).await,
            None => {
                sqlx::query(&format!("CREATE DATABASE {name}"))
                    .execute(&mut admin)
                    .await
                    .expect("create the bench database");
            }
        }
        let _ = admin.close().await;
        let (base, _) = admin_url.rsplit_once('/').expect("the URL names a database");
        BenchDatabase {
            url: DatabaseUrl::new(format!("{base}/{name}")),
            postgres_name: Some(name),
            _directory: None,
        }
    }

    /// The PostgreSQL database's name.
    pub fn postgres_name(&self) -> Option<&str> {
        self.postgres_name.as_deref()
    }

    /// The SQLite database's file.
    pub fn sqlite_path(&self) -> Option<std::path::PathBuf> {
        self._directory
            .as_ref()
            .map(|directory| directory.path().join("bench.db"))
    }

    /// Drops the database (its SQLite directory goes with `self`).
    pub async fn remove(self) {
        let Some(name) = &self.postgres_name else {
            return;
        };
        if std::env::var("TALLY_BENCH_KEEP").is_ok_and(|keep| keep == "1") {
            println!("  kept the PostgreSQL database {name} (TALLY_BENCH_KEEP=1)");
            return;
        }
        let mut admin = sqlx::PgConnection::connect(&admin_url())
            .await
            .expect("PostgreSQL reachable");
        sqlx::query(&format!("DROP DATABASE {name} WITH (FORCE)"))
            .execute(&mut admin)
            .await
            .expect("drop the bench database");
        let _ = admin.close().await;
    }
}

/// This process's peak resident size (VmHWM) in KiB; `None` where /proc has none.
pub fn peak_memory_kib() -> Option<u64> {
    status_kib("VmHWM:")
}

/// This process's resident size now (VmRSS) in KiB.
pub fn resident_memory_kib() -> Option<u64> {
    status_kib("VmRSS:")
}

fn status_kib(field: &str) -> Option<u64> {
    std::fs::read_to_string("/proc/self/status").ok().and_then(|status| {
        status
            .lines()
            .find(|line| line.starts_with(field))
            .and_then(|line| line.split_whitespace().nth(1))
            .and_then(|value| value.parse().ok())
    })
}

/// Gives the allocator's free memory back to the system (glibc's `malloc_trim`), so a
/// stage's peak starts from what is live, not from what an earlier stage or a closed
/// connection (the floor's SQLite caches) left free in the heap.
pub fn release_free_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        extern "C" {
            fn malloc_trim(pad: usize) -> std::os::raw::c_int;
        }
        // SAFETY: glibc's malloc_trim only hands free heap pages back to the kernel;
        // it is safe to call at any time from any thread.
        unsafe {
            malloc_trim(0);
        }
    }
}

/// Resets VmHWM to the current resident size (Linux ≥ 4.0); false when refused.
pub fn reset_peak_memory() -> bool {
    std::fs::write("/proc/self/clear_refs", "5").is_ok()
}

/// `CREATE DATABASE name TEMPLATE template`. PostgreSQL copies only a database nobody is
/// connected to, and after a large load autovacuum connects to it within seconds: the
/// bench's own databases' other sessions are ended and the copy is tried again.
pub async fn create_from_template(admin: &mut sqlx::PgConnection, name: &str, template: &str) {
    for attempt in 1.. {
        sqlx::query("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1")
            .bind(template)
            .execute(&mut *admin)
            .await
            .expect("ends the sessions on the template");
        match sqlx::query(&format!("CREATE DATABASE {name} TEMPLATE {template}"))
            .execute(&mut *admin)
            .await
        {
            Ok(_) => return,
            // 55006: object in use (a session reconnected between the two statements).
            Err(sqlx::Error::Database(error)) if error.code().as_deref() == Some("55006") && attempt < 20 => {
                tokio::time::sleep(std::time::Duration::from_millis(250)).await;
            }
            Err(error) => panic!("copies {template} into {name}: {error}"),
        }
    }
}
