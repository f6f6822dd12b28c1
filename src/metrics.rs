//! A run's figures in the Prometheus text exposition format, for the node exporter's
//! textfile collector (`tally run JOB --metrics-file PATH`).
//!
//! [`format_metrics`] is pure; [`write_metrics_file`] writes atomically: to a temporary
//! file in the same directory (whose name does not end in `.prom`, so the collector
//! never reads it), flushed to disk, then renamed over the target, so a scrape never
//! reads half a file. The file is made mode 0644 whatever the process umask: the units
//! run with `UMask=0077`, and the node exporter reads the file as another user. The time of the last success survives a failed run: it is read
//! back from the previous file and written again.
//!
//! This module knows nothing about jobs beyond a name and five figures.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono::{DateTime, Utc};

/// The figures of one finished run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunMetrics {
    /// The job name, written as the `job` label.
    pub job: String,
    pub duration: Duration,
    pub accounts: u64,
    pub changes: u64,
    pub failures: u64,
    /// Whether the run did all its work.
    pub succeeded: bool,
    pub finished_at: DateTime<Utc>,
}

/// The file's mode: readable by the node exporter, which runs as another user. Set
/// explicitly, since a umask (systemd's `UMask=0077`) would otherwise make it 0600.
pub const METRICS_FILE_MODE: u32 = 0o644;

/// The metric that carries the last success over from one file to the next.
const LAST_SUCCESS: &str = "tally_run_last_success_timestamp_seconds";

/// Escapes a label value as the exposition format requires.
fn escape_label(value: &str) -> String {
    value.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

/// The file's text. `previous_last_success` (Unix seconds) is used when this run did
/// not succeed; a metric with no value (never succeeded) is left out, not written 0.
pub fn format_metrics(metrics: &RunMetrics, previous_last_success: Option<i64>) -> String {
    let label = format!("{{job=\"{}\"}}", escape_label(&metrics.job));
    let finished = metrics.finished_at.timestamp();
    let last_success = if metrics.succeeded {
        Some(finished)
    } else {
        previous_last_success
    };
    let mut rows: Vec<(&str, &str, String)> = vec![
        (
            "tally_run_duration_seconds",
            "How long the last run of the job took.",
            format!("{:.3}", metrics.duration.as_secs_f64()),
        ),
        (
            "tally_run_accounts",
            "Accounts the last run looked at.",
            metrics.accounts.to_string(),
        ),
        (
            "tally_run_changes",
            "Changes the last run made.",
            metrics.changes.to_string(),
        ),
        (
            "tally_run_failures",
            "Accounts or deliveries that failed in the last run.",
            metrics.failures.to_string(),
        ),
        (
            "tally_run_success",
            "1 if the last run did all its work, else 0.",
            u8::from(metrics.succeeded).to_string(),
        ),
        (
            "tally_run_last_run_timestamp_seconds",
            "When the last run ended, in Unix seconds.",
            finished.to_string(),
        ),
    ];
    if let Some(last_success) = last_success {
        rows.push((
            LAST_SUCCESS,
            "When the last successful run ended, in Unix seconds.",
            last_success.to_string(),
        ));
    }
    let mut text = String::new();
    for (name, help, value) in rows {
        text.push_str(&format!(
            "# HELP {name} {help}\n# TYPE {name} gauge\n{name}{label} {value}\n"
        ));
    }
    text
}

/// The last-success time for `job` in a previous file's text, if there is one.
pub fn last_success_in(text: &str, job: &str) -> Option<i64> {
    let prefix = format!("{LAST_SUCCESS}{{job=\"{}\"}} ", escape_label(job));
    text.lines()
        .find_map(|line| line.strip_prefix(&prefix))
        .and_then(|value| value.trim().parse::<f64>().ok())
        .filter(|value| value.is_finite())
        // Unix seconds fit in i64 by far; `as` saturates on anything absurd.
        .map(|value| value as i64)
}

/// Why the metrics file could not be written.
#[derive(Debug, thiserror::Error)]
#[error("cannot write the metrics file {}: {source}", path.display())]
pub struct MetricsError {
    pub path: PathBuf,
    pub source: std::io::Error,
}

/// Writes the run's metrics to `path` atomically, keeping the previous last success
/// when this run failed.
pub fn write_metrics_file(path: &Path, metrics: &RunMetrics) -> Result<(), MetricsError> {
    let failed = |source| MetricsError {
        path: path.to_owned(),
        source,
    };
    let previous = match std::fs::read_to_string(path) {
        Ok(text) => last_success_in(&text, &metrics.job),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => None,
        Err(error) => return Err(failed(error)),
    };
    let text = format_metrics(metrics, previous);
    write_atomically(path, text.as_bytes()).map_err(failed)
}

fn write_atomically(path: &Path, contents: &[u8]) -> std::io::Result<()> {
    let directory = match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent.to_owned(),
        _ => PathBuf::from("."),
    };
    let file_name = path
        .file_name()
        .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::InvalidInput, "the path names no file"))?;
    // A hidden name not ending in `.prom`, unique to this process.
    let temporary = directory.join(format!(".{}.tmp-{}", file_name.to_string_lossy(), std::process::id()));
    let written = (|| {
        let mut file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(&temporary)?;
        // fchmod is not subject to the umask, unlike the mode given at creation.
        file.set_permissions(std::fs::Permissions::from_mode(METRICS_FILE_MODE))?;
        file.write_all(contents)?;
        file.sync_all()?;
        std::fs::rename(&temporary, path)?;
        // Make the rename itself durable.
        File::open(&directory)?.sync_all()
    })();
    if written.is_err() {
        let _ = std::fs::remove_file(&temporary);
    }
    written
}

#[cfg(test)]
mod tests {
    use super::*;

    fn metrics(succeeded: bool, finished: &str) -> RunMetrics {
        RunMetrics {
            job: "billing".to_owned(),
            duration: Duration::from_millis(12_345),
            accounts: 120,
            changes: 7,
            failures: u64::from(!succeeded),
            succeeded,
            finished_at: DateTime::parse_from_rfc3339(finished)
                .expect("RFC 3339")
                .with_timezone(&Utc),
        }
    }

    #[test]
    fn a_successful_run_is_written_in_the_exposition_format() {
        let text = format_metrics(&metrics(true, "2026-11-23T02:31:00Z"), Some(1));
        let expected = "\
# HELP tally_run_duration_seconds How long the last run of the job took.
# TYPE tally_run_duration_seconds gauge
tally_run_duration_seconds{job=\"billing\"} 12.345
# HELP tally_run_accounts Accounts the last run looked at.
# TYPE tally_run_accounts gauge
tally_run_accounts{job=\"billing\"} 120
# HELP tally_run_changes Changes the last run made.
# TYPE tally_run_changes gauge
tally_run_changes{job=\"billing\"} 7
# HELP tally_run_failures Accounts or deliveries that failed in the last run.
# TYPE tally_run_failures gauge
tally_run_failures{job=\"billing\"} 0
# HELP tally_run_success 1 if the last run did all its work, else 0.
# TYPE tally_run_success gauge
tally_run_success{job=\"billing\"} 1
# HELP tally_run_last_run_timestamp_seconds When the last run ended, in Unix seconds.
# TYPE tally_run_last_run_timestamp_seconds gauge
tally_run_last_run_timestamp_seconds{job=\"billing\"} 1795401060
# HELP tally_run_last_success_timestamp_seconds When the last successful run ended, in Unix seconds.
# TYPE tally_run_last_success_timestamp_seconds gauge
tally_run_last_success_timestamp_seconds{job=\"billing\"} 1795401060
";
        assert_eq!(text, expected);
    }

    #[test]
    fn a_failed_run_keeps_the_previous_success_or_omits_it() {
        let failed = metrics(false, "2026-11-23T02:31:00Z");
        assert_eq!(
            last_success_in(&format_metrics(&failed, Some(1_700_000_000)), "billing"),
            Some(1_700_000_000)
        );
        let text = format_metrics(&failed, None);
        assert!(!text.contains(LAST_SUCCESS), "{text}");
        assert!(text.contains("tally_run_success{job=\"billing\"} 0\n"), "{text}");
    }

    #[test]
    fn label_values_are_escaped_and_read_back() {
        let mut odd = metrics(true, "2026-11-23T02:31:00Z");
        odd.job = "a\"b\\c\nd".to_owned();
        let text = format_metrics(&odd, None);
        assert!(text.contains("{job=\"a\\\"b\\\\c\\nd\"}"), "{text}");
        assert_eq!(last_success_in(&text, &odd.job), Some(1_795_401_060));
        assert_eq!(last_success_in(&text, "billing"), None);
    }

    #[test]
    fn the_file_is_replaced_whole_and_remembers_the_last_success() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("tally_billing.prom");

        write_metrics_file(&path, &metrics(true, "2026-11-22T02:31:00Z")).expect("written");
        write_metrics_file(&path, &metrics(false, "2026-11-23T02:31:00Z")).expect("written");

        let text = std::fs::read_to_string(&path).expect("readable");
        assert_eq!(last_success_in(&text, "billing"), Some(1_795_314_660));
        assert!(text.contains("tally_run_last_run_timestamp_seconds{job=\"billing\"} 1795401060\n"));
        let leftovers: Vec<_> = std::fs::read_dir(dir.path())
            .expect("listable")
            .map(|entry| entry.expect("entry").file_name())
            .collect();
        assert_eq!(leftovers, vec![std::ffi::OsString::from("tally_billing.prom")]);
    }

    #[test]
    fn an_unwritable_place_is_an_error_naming_the_path() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("missing-dir").join("tally.prom");
        let error = write_metrics_file(&path, &metrics(true, "2026-11-23T02:31:00Z")).expect_err("no such directory");
        assert!(error.to_string().contains("missing-dir"), "{error}");
    }
}
