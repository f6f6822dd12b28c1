//! Logs: the only place that builds and installs a tracing subscriber.
//!
//! On a terminal the logs are readable lines; anywhere else (journald, a file, a pipe)
//! they are JSON lines, one event per line, which journald and log shippers keep whole.
//! Filtering follows `RUST_LOG` (`EnvFilter` syntax, e.g. `info,tally::scheduler=debug`),
//! `info` by default. The subscriber takes its writer as an argument so tests capture
//! or discard the output instead of printing it.
//!
//! # Span convention
//! Code that works on a run or an account opens a span carrying its id, and every
//! event inside inherits it, so each log line says which run and which account:
//! - `job` span: fields `job` (the job name) and `kind`; opened by the scheduler.
//! - `run` span: field `run_id` (the run record's id) and `scheduled_for`; opened by
//!   the scheduler or by `tally run` around one run.
//! - `account` span: field `account_id`; opened by the jobs around the work on one
//!   account, inside the `run` span.
//!
//! In JSON, `spans` lists the open spans outermost first with their fields (so
//! `spans[*].run_id` and `spans[*].account_id`), `span` is the innermost one, and the
//! event's own fields are at the top level. Log fields, not sentences: write
//! `tracing::warn!(%error, account_id = %id, "bookkeeper refused")`.

use std::io::IsTerminal;

use tracing::Subscriber;
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::EnvFilter;

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// Human-readable lines, colored when `ansi` is true.
    Readable { ansi: bool },
    /// One JSON object per line.
    Json,
}

impl LogFormat {
    /// Readable and colored when stderr is a terminal, JSON otherwise.
    pub fn for_stderr() -> Self {
        if std::io::stderr().is_terminal() {
            LogFormat::Readable { ansi: true }
        } else {
            LogFormat::Json
        }
    }
}

/// Why logging could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    /// `RUST_LOG` is not a valid filter: a configuration error.
    #[error("RUST_LOG `{value}` is not a valid log filter: {reason}")]
    BadFilter { value: String, reason: String },
    #[error("a tracing subscriber is already installed")]
    AlreadyInstalled,
}

/// The filter from `RUST_LOG`, or `default` when it is unset or empty.
pub fn filter_from_env(default: &str) -> Result<EnvFilter, TelemetryError> {
    filter_from(std::env::var("RUST_LOG").ok().as_deref(), default)
}

/// The filter from a `RUST_LOG`-style value, or `default` when it is `None` or empty.
pub fn filter_from(value: Option<&str>, default: &str) -> Result<EnvFilter, TelemetryError> {
    let text = match value {
        Some(value) if !value.trim().is_empty() => value,
        _ => default,
    };
    EnvFilter::try_new(text).map_err(|error| TelemetryError::BadFilter {
        value: text.to_owned(),
        reason: error.to_string(),
    })
}

/// Builds the subscriber without installing it (tests use it with
/// `tracing::subscriber::with_default`).
pub fn subscriber<W>(filter: EnvFilter, format: LogFormat, writer: W) -> Box<dyn Subscriber + Send + Sync>
where
    W: for<'writer> MakeWriter<'writer> + Send + Sync + 'static,
{
    let registry = tracing_subscriber::registry().with(filter);
    match format {
        LogFormat::Readable { ansi } => Box::new(
            registry.with(
                tracing_subscriber::fmt::layer()
                    .with_writer(writer)
                    .with_ansi(ansi)
                    .with_target(true),
            ),
        ),
        LogFormat::Json => Box::new(
            registry.with(
                tracing_subscriber::fmt::layer()
                    .json()
                    .with_writer(writer)
                    .with_current_span(true)
                    .with_span_list(true)
                    .flatten_event(true),
            ),
        ),
    }
}

/// Installs `subscriber` as the process-wide default; call once, from `main`.
pub fn install(subscriber: Box<dyn Subscriber + Send + Sync>) -> Result<(), TelemetryError> {
    tracing::subscriber::set_global_default(subscriber).map_err(|_| TelemetryError::AlreadyInstalled)
}

/// The usual set-up of `main`: `RUST_LOG` (default `info`), stderr, format by terminal.
pub fn install_for_stderr() -> Result<(), TelemetryError> {
    let filter = filter_from_env("info")?;
    install(subscriber(filter, LogFormat::for_stderr(), std::io::stderr))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::sync::{Arc, Mutex};

    /// A writer that keeps what is written, shared with the test.
    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl Captured {
        fn text(&self) -> String {
            String::from_utf8(self.0.lock().expect("not poisoned").clone()).expect("UTF-8 logs")
        }
    }

    impl Write for Captured {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().expect("not poisoned").extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl<'writer> MakeWriter<'writer> for Captured {
        type Writer = Captured;
        fn make_writer(&'writer self) -> Self::Writer {
            self.clone()
        }
    }

    fn log_a_priced_account(format: LogFormat, filter: &str) -> String {
        let captured = Captured::default();
        let filter = filter_from(Some(filter), "info").expect("valid filter");
        let subscriber = subscriber(filter, format, captured.clone());
        tracing::subscriber::with_default(subscriber, || {
            let run = tracing::info_span!("run", run_id = 7);
            let _run = run.enter();
            let account = tracing::info_span!("account", account_id = "4a6f2b");
            let _account = account.enter();
            tracing::info!(changes = 2, "priced");
            tracing::debug!("details");
        });
        captured.text()
    }

    #[test]
    fn json_lines_carry_the_run_and_account_ids() {
        let text = log_a_priced_account(LogFormat::Json, "info");
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 1, "debug is filtered out: {text}");
        let line: serde_json::Value = serde_json::from_str(lines[0]).expect("one JSON object");
        assert_eq!(line["message"], "priced");
        assert_eq!(line["changes"].to_string(), "2");
        assert_eq!(line["level"], "INFO");
        assert_eq!(line["spans"][0]["run_id"].to_string(), "7");
        assert_eq!(line["spans"][1]["account_id"], "4a6f2b");
        assert_eq!(line["span"]["name"], "account");
    }

    #[test]
    fn readable_lines_show_the_span_fields() {
        let text = log_a_priced_account(LogFormat::Readable { ansi: false }, "info");
        assert!(text.contains("run{run_id=7}"), "{text}");
        assert!(text.contains("account{account_id=\"4a6f2b\"}"), "{text}");
        assert!(text.contains("priced changes=2"), "{text}");
        assert!(!text.contains("details"), "{text}");
    }

    #[test]
    fn the_filter_selects_levels_per_target() {
        let text = log_a_priced_account(LogFormat::Readable { ansi: false }, "warn");
        assert!(text.is_empty(), "{text}");
        let text = log_a_priced_account(LogFormat::Readable { ansi: false }, "tally=debug");
        assert!(text.contains("details"), "{text}");
    }

    #[test]
    fn an_unset_or_empty_filter_falls_back_to_the_default_and_a_bad_one_is_refused() {
        assert_eq!(filter_from(None, "info").expect("valid").to_string(), "info");
        assert_eq!(filter_from(Some("  "), "warn").expect("valid").to_string(), "warn");
        let error = filter_from(Some("tally=loud"), "info").expect_err("not a level");
        assert!(error.to_string().contains("tally=loud"), "{error}");
    }
}
