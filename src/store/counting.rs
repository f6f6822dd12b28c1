//! The counting queries: SQL files that turn inventory into quantity rows.
//!
//! The built-in set is `sql/counting/*.sql`, compiled into the binary; an operator
//! replaces it with a directory of their own files (`reconcile.counting_dir`). The
//! contract every file follows is in `sql/counting/README.md`. Loading only reads and
//! checks text; the queries run inside a reconcile session.

use std::path::{Path, PathBuf};

/// One counting query: a single `SELECT account_id, category, item, quantity`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CountingQuery {
    /// The file name, for error messages.
    pub name: String,
    pub sql: String,
}

/// The ordered set of counting queries a reconcile runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CountingQueries {
    queries: Vec<CountingQuery>,
}

#[derive(Debug, thiserror::Error)]
pub enum CountingError {
    #[error("cannot read the counting directory {path}: {source}")]
    Directory { path: PathBuf, source: std::io::Error },
    #[error("cannot read counting query {path}: {source}")]
    File { path: PathBuf, source: std::io::Error },
    #[error("counting directory {path} holds no .sql file")]
    Empty { path: PathBuf },
    #[error("counting query {path} must be one SELECT without a trailing statement")]
    NotOneSelect { path: PathBuf },
}

const BUILTIN: &[(&str, &str)] = &[
    ("accounts.sql", include_str!("../../sql/counting/accounts.sql")),
    ("apps.sql", include_str!("../../sql/counting/apps.sql")),
    ("boxes.sql", include_str!("../../sql/counting/boxes.sql")),
    ("devices.sql", include_str!("../../sql/counting/devices.sql")),
    (
        "limits_branding_ips.sql",
        include_str!("../../sql/counting/limits_branding_ips.sql"),
    ),
    (
        "phone_numbers.sql",
        include_str!("../../sql/counting/phone_numbers.sql"),
    ),
    (
        "port_requests.sql",
        include_str!("../../sql/counting/port_requests.sql"),
    ),
    ("users.sql", include_str!("../../sql/counting/users.sql")),
];

impl CountingQueries {
    /// The queries shipped in `sql/counting/`.
    pub fn builtin() -> Self {
        CountingQueries {
            queries: BUILTIN
                .iter()
                .map(|(name, sql)| CountingQuery {
                    name: (*name).to_string(),
                    sql: clean(sql),
                })
                .collect(),
        }
    }

    /// Every `*.sql` file of `directory`, in file-name order.
    pub fn from_dir(directory: &Path) -> Result<Self, CountingError> {
        let entries = std::fs::read_dir(directory).map_err(|source| CountingError::Directory {
            path: directory.to_path_buf(),
            source,
        })?;
        let mut paths: Vec<PathBuf> = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|source| CountingError::Directory {
                path: directory.to_path_buf(),
                source,
            })?;
            let path = entry.path();
            if path.extension().is_some_and(|extension| extension == "sql") {
                paths.push(path);
            }
        }
        paths.sort();
        if paths.is_empty() {
            return Err(CountingError::Empty {
                path: directory.to_path_buf(),
            });
        }
        let mut queries = Vec::with_capacity(paths.len());
        for path in paths {
            let text = std::fs::read_to_string(&path).map_err(|source| CountingError::File {
                path: path.clone(),
                source,
            })?;
            let sql = clean(&text);
            // A second statement would run outside the INSERT reconcile wraps around it.
            if sql.contains(';') {
                return Err(CountingError::NotOneSelect { path });
            }
            let name = path
                .file_name()
                .map(|name| name.to_string_lossy().into_owned())
                .unwrap_or_default();
            queries.push(CountingQuery { name, sql });
        }
        Ok(CountingQueries { queries })
    }

    pub fn iter(&self) -> impl Iterator<Item = &CountingQuery> {
        self.queries.iter()
    }

    /// A digest of every file's name and text, in order: stored quantities counted
    /// with another set must be recounted in full (an incremental run compares it).
    pub fn fingerprint(&self) -> String {
        use md5::Digest;
        let mut digest = md5::Md5::new();
        for query in &self.queries {
            for part in [query.name.as_str(), query.sql.as_str()] {
                digest.update(part.len().to_le_bytes());
                digest.update(part.as_bytes());
            }
        }
        hex::encode(digest.finalize())
    }
}

/// Drops `--` comment lines and a trailing semicolon, so the text can be embedded.
fn clean(text: &str) -> String {
    let body: Vec<&str> = text
        .lines()
        .filter(|line| !line.trim_start().starts_with("--"))
        .collect();
    body.join("\n").trim().trim_end_matches(';').trim().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_queries_are_single_selects() {
        for query in CountingQueries::builtin().iter() {
            assert!(
                query.sql.starts_with("SELECT"),
                "{} starts with {:?}",
                query.name,
                &query.sql[..10]
            );
            assert!(!query.sql.contains(';'), "{}", query.name);
        }
    }

    #[test]
    fn an_operator_directory_replaces_the_builtin_set_in_name_order() {
        let directory = tempfile::tempdir().expect("temp dir");
        std::fs::write(directory.path().join("b.sql"), "-- second\nSELECT 2;\n").expect("write");
        std::fs::write(directory.path().join("a.sql"), "SELECT 1").expect("write");
        std::fs::write(directory.path().join("notes.txt"), "ignored").expect("write");
        let queries = CountingQueries::from_dir(directory.path()).expect("loads");
        let names: Vec<(&str, &str)> = queries.iter().map(|q| (q.name.as_str(), q.sql.as_str())).collect();
        assert_eq!(names, vec![("a.sql", "SELECT 1"), ("b.sql", "SELECT 2")]);
    }

    #[test]
    fn the_fingerprint_follows_names_and_text() {
        let directory = tempfile::tempdir().expect("temp dir");
        std::fs::write(directory.path().join("a.sql"), "SELECT 1").expect("write");
        let first = CountingQueries::from_dir(directory.path())
            .expect("loads")
            .fingerprint();
        std::fs::write(directory.path().join("a.sql"), "-- a comment only\nSELECT 1;").expect("write");
        assert_eq!(
            CountingQueries::from_dir(directory.path())
                .expect("loads")
                .fingerprint(),
            first,
            "comments are not counted"
        );
        std::fs::write(directory.path().join("a.sql"), "SELECT 2").expect("write");
        let changed = CountingQueries::from_dir(directory.path())
            .expect("loads")
            .fingerprint();
        assert_ne!(changed, first);
        std::fs::rename(directory.path().join("a.sql"), directory.path().join("b.sql")).expect("rename");
        assert_ne!(
            CountingQueries::from_dir(directory.path())
                .expect("loads")
                .fingerprint(),
            changed
        );
        assert_ne!(CountingQueries::builtin().fingerprint(), first);
    }

    #[test]
    fn two_statements_in_one_file_are_refused() {
        let directory = tempfile::tempdir().expect("temp dir");
        std::fs::write(directory.path().join("a.sql"), "SELECT 1; DELETE FROM accounts").expect("write");
        assert!(matches!(
            CountingQueries::from_dir(directory.path()),
            Err(CountingError::NotOneSelect { .. })
        ));
    }
}
