//! `tally backup PATH`: a consistent copy of the database while tally may be running.
//!
//! SQLite: the store copies the database with `VACUUM INTO` (one read transaction,
//! consistent under WAL while others write) into a temporary file beside `PATH`, the
//! copy must pass `PRAGMA integrity_check`, then it is renamed to `PATH`: a failed
//! backup never leaves a half file nor destroys the previous one. `PATH` is replaced
//! only with `--force`, and never when it is the live database.
//!
//! PostgreSQL: tally does not copy. It prints the `pg_dump` command for the configured
//! database (no password on it: `pg_dump` reads `~/.pgpass` or `PGPASSWORD`) and
//! compares the local `pg_dump`'s major version with the server's: an older `pg_dump`
//! refuses to dump a newer server.

use crate::store::{sqlite_integrity, PostgresTarget, Store, StoreError};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// What a backup did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BackupReport {
    /// SQLite: the copy is at `path`, checked.
    Copied {
        path: PathBuf,
        bytes: u64,
        duration: Duration,
    },
    /// PostgreSQL: nothing copied; the command to run, and whether it can run here.
    PgDump(PgDumpAdvice),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PgDumpAdvice {
    pub command: String,
    /// The server's major version (15 for 15.20).
    pub server_major: u32,
    /// The local `pg_dump`'s major version; `None` when it is not on the PATH.
    pub pg_dump_major: Option<u32>,
}

impl PgDumpAdvice {
    /// Why the printed command cannot work on this machine, if it cannot.
    pub fn problem(&self) -> Option<String> {
        let server = self.server_major;
        match self.pg_dump_major {
            None => Some(format!(
                "pg_dump is not on the PATH: install the PostgreSQL {server} client (postgresql-client-{server})"
            )),
            Some(local) if local < server => Some(format!(
                "pg_dump {local} is older than the server ({server}) and refuses to dump it: \
                 install the PostgreSQL {server} client (postgresql-client-{server})"
            )),
            Some(_) => None,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    #[error("{} exists; pass --force to replace it", .0.display())]
    Exists(PathBuf),
    #[error("{} is the live database; back up to another file", .0.display())]
    LiveDatabase(PathBuf),
    #[error("the copy failed its integrity check, nothing was written to {}: {problems}", path.display())]
    Corrupt { path: PathBuf, problems: String },
    #[error("cannot write {}: {source}", path.display())]
    Io { path: PathBuf, source: std::io::Error },
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Backs the store's database up to `path` (SQLite), or says how (PostgreSQL).
pub async fn backup(store: &Store, path: &Path, replace: bool) -> Result<BackupReport, BackupError> {
    if let Some((server_version, target)) = store.postgres_server().await? {
        return Ok(BackupReport::PgDump(PgDumpAdvice {
            command: pg_dump_command(&target, path),
            server_major: server_version / 10_000,
            pg_dump_major: local_pg_dump_major(),
        }));
    }
    copy_sqlite(store, path, replace).await
}

async fn copy_sqlite(store: &Store, path: &Path, replace: bool) -> Result<BackupReport, BackupError> {
    let started = Instant::now();
    let io = |source| BackupError::Io {
        path: path.to_owned(),
        source,
    };
    if path.exists() {
        let live = store.sqlite_file().and_then(|file| std::fs::canonicalize(file).ok());
        if live.is_some() && live == std::fs::canonicalize(path).ok() {
            return Err(BackupError::LiveDatabase(path.to_owned()));
        }
        if !replace {
            return Err(BackupError::Exists(path.to_owned()));
        }
    }
    let directory = match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent.to_owned(),
        _ => PathBuf::from("."),
    };
    let file_name = path.file_name().ok_or_else(|| {
        io(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "the path names no file",
        ))
    })?;
    let temporary = directory.join(format!(".{}.tmp-{}", file_name.to_string_lossy(), std::process::id()));
    // A temporary file left by a crashed backup of this process id would make
    // VACUUM INTO refuse.
    match std::fs::remove_file(&temporary) {
        Err(error) if error.kind() != std::io::ErrorKind::NotFound => return Err(io(error)),
        _ => {}
    }
    let copied = async {
        store.sqlite_copy_into(&temporary).await?;
        let answers = sqlite_integrity(&temporary).await?;
        if answers != ["ok"] {
            return Err(BackupError::Corrupt {
                path: path.to_owned(),
                problems: answers.join("; "),
            });
        }
        std::fs::rename(&temporary, path).map_err(io)?;
        // Make the rename itself durable.
        std::fs::File::open(&directory)
            .and_then(|dir| dir.sync_all())
            .map_err(io)?;
        std::fs::metadata(path).map(|metadata| metadata.len()).map_err(io)
    }
    .await;
    match copied {
        Ok(bytes) => Ok(BackupReport::Copied {
            path: path.to_owned(),
            bytes,
            duration: started.elapsed(),
        }),
        Err(error) => {
            let _ = std::fs::remove_file(&temporary);
            Err(error)
        }
    }
}

/// The `pg_dump` command line for `target`, writing the custom format to `path`.
pub fn pg_dump_command(target: &PostgresTarget, path: &Path) -> String {
    let mut words = vec![
        "pg_dump".to_owned(),
        format!("--host={}", shell_quote(&target.host)),
        format!("--port={}", target.port),
        format!("--username={}", shell_quote(&target.user)),
    ];
    if let Some(database) = &target.database {
        words.push(format!("--dbname={}", shell_quote(database)));
    }
    words.push("--format=custom".to_owned());
    words.push(format!("--file={}", shell_quote(&path.to_string_lossy())));
    words.join(" ")
}

/// A word as a POSIX shell reads it back: as is when it is plain, else single-quoted.
fn shell_quote(word: &str) -> String {
    let plain = !word.is_empty()
        && word
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | '/' | ':' | '@' | '+' | ','));
    if plain {
        return word.to_owned();
    }
    format!("'{}'", word.replace('\'', r"'\''"))
}

/// The major version in `pg_dump --version`'s answer: 15 for
/// `pg_dump (PostgreSQL) 15.20 (Debian 15.20-0+deb12u1)`.
pub fn pg_dump_major(answer: &str) -> Option<u32> {
    let version = answer.split(')').nth(1)?.split_whitespace().next()?;
    version.split('.').next()?.parse().ok()
}

fn local_pg_dump_major() -> Option<u32> {
    let output = std::process::Command::new("pg_dump").arg("--version").output().ok()?;
    if !output.status.success() {
        return None;
    }
    pg_dump_major(&String::from_utf8_lossy(&output.stdout))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pg_dump_versions_are_read_from_its_answer() {
        let table = [
            ("pg_dump (PostgreSQL) 15.20 (Debian 15.20-0+deb12u1)\n", Some(15)),
            ("pg_dump (PostgreSQL) 17.2\n", Some(17)),
            ("pg_dump (PostgreSQL) 10beta1\n", None),
            ("something else", None),
        ];
        for (answer, expected) in table {
            assert_eq!(pg_dump_major(answer), expected, "{answer}");
        }
    }

    #[test]
    fn the_command_has_no_password_and_quotes_what_a_shell_would_split() {
        let target = PostgresTarget {
            host: "db.example.net".to_owned(),
            port: 5432,
            user: "tally".to_owned(),
            database: Some("tally prod".to_owned()),
        };
        assert_eq!(
            pg_dump_command(&target, Path::new("/backups/it's.dump")),
            "pg_dump --host=db.example.net --port=5432 --username=tally --dbname='tally prod' \
             --format=custom --file='/backups/it'\\''s.dump'"
        );
    }

    #[test]
    fn an_older_or_missing_pg_dump_is_a_problem_and_a_newer_one_is_not() {
        let advice = |local| PgDumpAdvice {
            command: String::new(),
            server_major: 15,
            pg_dump_major: local,
        };
        assert!(advice(None)
            .problem()
            .is_some_and(|problem| problem.contains("postgresql-client-15")));
        assert!(advice(Some(14))
            .problem()
            .is_some_and(|problem| problem.contains("pg_dump 14 is older")));
        assert_eq!(advice(Some(15)).problem(), None);
        assert_eq!(advice(Some(17)).problem(), None);
    }
}
