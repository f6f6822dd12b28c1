//! Logs: the only place that builds and installs a tracing subscriber.
//!
//! On a terminal the logs are readable lines (colored unless `NO_COLOR` is set to a
//! non-empty value, <https://no-color.org>); anywhere else (journald, a file, a pipe)
//! every line on standard error is one JSON object, which journald, `jq` and log
//! shippers keep whole: the log events, and the operator's messages of
//! [`operator_message`] (errors, the final "tally: …" line) alike.
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
//! In JSON the fields of every open span are top-level fields of the line (`run_id`,
//! `job`, `account_id`: `jq 'select(.run_id == 7)'` works), an inner span's field
//! winning over an outer one's and the event's own fields over both; `span` names the
//! innermost span. Log fields, not sentences: write
//! `tracing::warn!(%error, account_id = %id, "bookkeeper refused")`.

use std::fmt;
use std::io::{IsTerminal, Write};
use std::sync::OnceLock;

use serde_json::{Map, Value};
use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::fmt::format::{JsonFields, Writer};
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields, FormattedFields, MakeWriter};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::registry::LookupSpan;
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
    /// Readable when stderr is a terminal (colored unless `NO_COLOR`), JSON otherwise.
    pub fn for_stderr() -> Self {
        LogFormat::choose(
            std::io::stderr().is_terminal(),
            std::env::var("NO_COLOR").ok().as_deref(),
        )
    }

    /// The format for a terminal or not, and the value of `NO_COLOR`: any non-empty
    /// value turns colors off (an empty one does not, as no-color.org says).
    pub fn choose(terminal: bool, no_color: Option<&str>) -> Self {
        match terminal {
            true => LogFormat::Readable {
                ansi: no_color.is_none_or(str::is_empty),
            },
            false => LogFormat::Json,
        }
    }
}

/// The format chosen by [`install`], which [`operator_message`] follows.
static INSTALLED_FORMAT: OnceLock<LogFormat> = OnceLock::new();

/// Tells the operator something on standard error, outside the log filter (an error
/// that ends the command must show even when `RUST_LOG=off`): `tally: MESSAGE` on a
/// terminal, one JSON object with `level`, `target` and `message` otherwise, so a
/// pipe of standard error stays JSON lines.
pub fn operator_message(level: Level, message: &str) {
    let format = *INSTALLED_FORMAT.get_or_init(LogFormat::for_stderr);
    let line = operator_line(format, level, message);
    // Standard error gone: there is nobody left to tell.
    let _ = std::io::stderr().lock().write_all(line.as_bytes());
}

/// The line [`operator_message`] writes, newline included.
pub fn operator_line(format: LogFormat, level: Level, message: &str) -> String {
    match format {
        LogFormat::Readable { .. } => format!("tally: {message}\n"),
        LogFormat::Json => {
            let mut line = line_start(&level, "tally");
            line.insert("message".to_owned(), Value::from(message));
            format!("{}\n", Value::Object(line))
        }
    }
}

/// The fields every JSON line starts with.
fn line_start(level: &Level, target: &str) -> Map<String, Value> {
    let mut line = Map::new();
    let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
    line.insert("timestamp".to_owned(), Value::from(now));
    line.insert("level".to_owned(), Value::from(level.as_str()));
    line.insert("target".to_owned(), Value::from(target));
    line
}

/// Formats an event as one flat JSON object: the open spans' fields (stored as JSON
/// by [`JsonFields`]) and the event's fields, all at the top level.
struct FlatJson;

impl<S, N> FormatEvent<S, N> for FlatJson
where
    S: Subscriber + for<'lookup> LookupSpan<'lookup>,
    N: for<'writer> FormatFields<'writer> + 'static,
{
    fn format_event(&self, context: &FmtContext<'_, S, N>, mut writer: Writer<'_>, event: &Event<'_>) -> fmt::Result {
        let metadata = event.metadata();
        let mut line = line_start(metadata.level(), metadata.target());
        if let Some(scope) = context.event_scope() {
            let mut innermost = None;
            for span in scope.from_root() {
                if let Some(fields) = span.extensions().get::<FormattedFields<N>>() {
                    if let Ok(Value::Object(fields)) = serde_json::from_str::<Value>(&fields.fields) {
                        line.extend(fields);
                    }
                }
                innermost = Some(span.name());
            }
            if let Some(name) = innermost {
                line.insert("span".to_owned(), Value::from(name));
            }
        }
        event.record(&mut JsonFieldVisitor(&mut line));
        writeln!(writer, "{}", Value::Object(line))
    }
}

/// Records an event's fields into a JSON object, numbers and booleans as such.
struct JsonFieldVisitor<'line>(&'line mut Map<String, Value>);

impl Visit for JsonFieldVisitor<'_> {
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.0.insert(field.name().to_owned(), Value::from(value));
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.0.insert(field.name().to_owned(), Value::from(value));
    }
    fn record_f64(&mut self, field: &Field, value: f64) {
        // A log figure (a duration), never money; NaN and infinities have no JSON number.
        let number = serde_json::Number::from_f64(value).map_or_else(|| Value::from(value.to_string()), Value::Number);
        self.0.insert(field.name().to_owned(), number);
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.0.insert(field.name().to_owned(), Value::from(value));
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name().to_owned(), Value::from(value));
    }
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.0
            .insert(field.name().to_owned(), Value::from(format!("{value:?}")));
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
                    .fmt_fields(JsonFields::new())
                    .event_format(FlatJson)
                    .with_writer(writer),
            ),
        ),
    }
}

/// Installs the process-wide subscriber of `main`: `RUST_LOG` (default: `default`),
/// standard error, the format by terminal; [`operator_message`] follows that format.
pub fn install_for_stderr(default: &str) -> Result<(), TelemetryError> {
    let filter = filter_from_env(default)?;
    let format = *INSTALLED_FORMAT.get_or_init(LogFormat::for_stderr);
    tracing::subscriber::set_global_default(subscriber(filter, format, std::io::stderr))
        .map_err(|_| TelemetryError::AlreadyInstalled)
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
        assert_eq!(
            line["run_id"].to_string(),
            "7",
            "the run span's field is top-level: {text}"
        );
        assert_eq!(line["account_id"], "4a6f2b", "{text}");
        assert_eq!(line["span"], "account");
        assert!(line["timestamp"].is_string(), "{text}");
    }

    #[test]
    fn json_lines_flatten_the_job_span_and_an_inner_field_wins() {
        let captured = Captured::default();
        let filter = filter_from(Some("info"), "info").expect("valid filter");
        tracing::subscriber::with_default(subscriber(filter, LogFormat::Json, captured.clone()), || {
            let job = tracing::info_span!("job", job = "nightly", kind = "billing", run_id = 1);
            let _job = job.enter();
            let run = tracing::info_span!("run", run_id = 2);
            let _run = run.enter();
            tracing::warn!(account_id = "abc", duration_ms = 1.5, "skipped");
        });
        let text = captured.text();
        let line: serde_json::Value = serde_json::from_str(text.trim()).expect("one JSON object");
        assert_eq!(line["job"], "nightly", "{text}");
        assert_eq!(line["kind"], "billing", "{text}");
        assert_eq!(line["run_id"].to_string(), "2", "the inner span wins: {text}");
        assert_eq!(line["account_id"], "abc", "{text}");
        assert_eq!(line["level"], "WARN", "{text}");
        assert!(line["duration_ms"].is_number(), "a float stays a number: {text}");
    }

    #[test]
    fn operator_messages_are_json_off_a_terminal_and_plain_on_one() {
        let line = operator_line(LogFormat::Json, Level::ERROR, "the database \"x\" is gone");
        let value: serde_json::Value = serde_json::from_str(&line).expect("one JSON object");
        assert_eq!(value["message"], "the database \"x\" is gone");
        assert_eq!(value["level"], "ERROR");
        assert_eq!(line.matches('\n').count(), 1, "one line: {line:?}");
        let plain = operator_line(LogFormat::Readable { ansi: false }, Level::ERROR, "gone");
        assert_eq!(plain, "tally: gone\n");
    }

    #[test]
    fn no_color_turns_colors_off_on_a_terminal_only_when_not_empty() {
        assert_eq!(LogFormat::choose(true, None), LogFormat::Readable { ansi: true });
        assert_eq!(LogFormat::choose(true, Some("")), LogFormat::Readable { ansi: true });
        assert_eq!(LogFormat::choose(true, Some("1")), LogFormat::Readable { ansi: false });
        assert_eq!(LogFormat::choose(false, Some("1")), LogFormat::Json);
        assert_eq!(LogFormat::choose(false, None), LogFormat::Json);
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
