//! Job files: one TOML file per scheduled job in the jobs directory, parsed at start
//! into [`JobDefinition`] values.
//!
//! Parse, don't validate: after [`load_jobs_dir`] returns, every schedule, time zone,
//! account id and option is a typed value and nothing checks them again. A bad file is
//! refused with its path, line, column and reason (`jobs/sync.toml:3:11: ...`), for
//! syntax errors, unknown keys and meaning errors (unknown job, bad cron expression,
//! unknown time zone, a job name used twice) alike. Every bad file is reported at once,
//! so an operator fixes them in one pass.
//!
//! This module reads files and nothing else: no clock, no store. The keys are
//! documented for operators in `jobs/README.md`.

use std::collections::BTreeMap;

use std::num::NonZeroU32;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono_tz::Tz;
use serde::Deserialize;
use toml::Spanned;

use super::schedule::{MissedPolicy, Schedule};
use crate::domain::AccountId;
use crate::runs::{JobKind, JobName, JobSpec};

/// One scheduled job, as its file describes it: what each run does (its
/// [`JobSpec`], handed to the job runner) and when it runs.
#[derive(Debug, Clone, PartialEq)]
pub struct JobDefinition {
    /// Name, job, accounts, batch size, time limit: the same for every run.
    pub spec: JobSpec,
    /// When to run it, in `timezone`.
    pub schedule: Schedule,
    /// The zone the schedule's wall times are read in; UTC unless the file says.
    pub timezone: Tz,
    /// What to do about fire times missed while nothing ran.
    pub missed: MissedPolicy,
    /// A disabled job is loaded (so a typo in it is still caught) but never fired.
    pub enabled: bool,
    /// The file it came from, for messages.
    pub source: PathBuf,
}

/// A 1-based line and column in a job file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Location {
    pub line: usize,
    pub column: usize,
}

impl Location {
    /// Converts a byte offset into `text` to a line and a column counted in characters.
    pub fn of_offset(text: &str, offset: usize) -> Self {
        let offset = offset.min(text.len());
        let before = text.get(..offset).unwrap_or(text);
        let line = before.matches('\n').count() + 1;
        let line_start = before.rfind('\n').map_or(0, |index| index + 1);
        let column = before.get(line_start..).map_or(0, |rest| rest.chars().count()) + 1;
        Self { line, column }
    }
}

/// Why one job file was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", self.describe())]
pub struct JobFileError {
    pub path: PathBuf,
    /// Where in the file, when the fault has a place (a missing key has none).
    pub location: Option<Location>,
    pub reason: String,
}

impl JobFileError {
    fn describe(&self) -> String {
        match self.location {
            Some(Location { line, column }) => {
                format!("{}:{line}:{column}: {}", self.path.display(), self.reason)
            }
            None => format!("{}: {}", self.path.display(), self.reason),
        }
    }
}

/// Why the jobs directory could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum LoadJobsError {
    #[error("cannot read the jobs directory {}: {source}", path.display())]
    Unreadable { path: PathBuf, source: std::io::Error },
    #[error("{}", render_all(.0))]
    Invalid(Vec<JobFileError>),
}

fn render_all(errors: &[JobFileError]) -> String {
    let lines: Vec<String> = errors.iter().map(ToString::to_string).collect();
    lines.join("\n")
}

/// The file's shape, with the span of every value so that meaning errors can point at
/// their line too.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawJobFile {
    name: Spanned<String>,
    job: Spanned<String>,
    schedule: Spanned<String>,
    timezone: Option<Spanned<String>>,
    accounts: Option<Spanned<Vec<Spanned<String>>>>,
    batch_size: Option<Spanned<i64>>,
    time_limit: Option<Spanned<toml::Value>>,
    missed: Option<Spanned<String>>,
    enabled: Option<bool>,
    reconcile_changed: Option<Spanned<bool>>,
}

/// Parses one job file's text. `path` is only used in messages.
pub fn parse_job_file(path: &Path, text: &str) -> Result<JobDefinition, JobFileError> {
    let refuse = |span: Option<Range<usize>>, reason: String| JobFileError {
        path: path.to_owned(),
        location: span.map(|span| Location::of_offset(text, span.start)),
        reason,
    };
    let raw: RawJobFile = toml::from_str(text).map_err(|error| refuse(error.span(), error.message().to_owned()))?;
    let at = |spanned_span: Range<usize>, reason: String| refuse(Some(spanned_span), reason);

    let name =
        JobName::parse(raw.name.get_ref().as_str()).map_err(|reason| at(raw.name.span(), format!("name: {reason}")))?;
    let kind = JobKind::parse(raw.job.get_ref()).map_err(|reason| at(raw.job.span(), format!("job: {reason}")))?;
    let schedule = Schedule::parse(raw.schedule.get_ref())
        .map_err(|error| at(raw.schedule.span(), format!("schedule: {error}")))?;
    let timezone = match &raw.timezone {
        None => Tz::UTC,
        Some(zone) => zone.get_ref().parse::<Tz>().map_err(|_| {
            at(
                zone.span(),
                format!(
                    "timezone: unknown time zone `{}` (use an IANA name such as `UTC` or `Europe/Paris`)",
                    zone.get_ref()
                ),
            )
        })?,
    };
    let accounts = match &raw.accounts {
        None => None,
        Some(list) if kind == JobKind::Prune => {
            return Err(at(
                list.span(),
                "accounts: a `prune` job covers the whole database".to_owned(),
            ))
        }
        Some(list) => Some(parse_accounts(list, &at)?),
    };
    let batch_size = match &raw.batch_size {
        None => None,
        Some(size) => Some(
            u32::try_from(*size.get_ref())
                .ok()
                .and_then(NonZeroU32::new)
                .ok_or_else(|| {
                    at(
                        size.span(),
                        format!("batch_size: {} is not a count from 1 to {}", size.get_ref(), u32::MAX),
                    )
                })?,
        ),
    };
    let time_limit = match &raw.time_limit {
        None => None,
        Some(limit) => Some(
            parse_time_limit(limit.get_ref()).map_err(|reason| at(limit.span(), format!("time_limit: {reason}")))?,
        ),
    };
    let missed = match &raw.missed {
        None => MissedPolicy::CatchUp,
        Some(policy) => match policy.get_ref().as_str() {
            "catch-up" => MissedPolicy::CatchUp,
            "skip" => MissedPolicy::Skip,
            other => {
                return Err(at(
                    policy.span(),
                    format!("missed: `{other}` is neither `catch-up` nor `skip`"),
                ))
            }
        },
    };
    let reconcile_changed = match &raw.reconcile_changed {
        None => false,
        Some(flag) if kind == JobKind::Ingest => *flag.get_ref(),
        Some(flag) => {
            return Err(at(
                flag.span(),
                format!("reconcile_changed: only an `ingest` job takes it, not `{kind}`"),
            ))
        }
    };
    Ok(JobDefinition {
        spec: JobSpec {
            name,
            kind,
            accounts,
            batch_size,
            time_limit,
            reconcile_changed,
        },
        schedule,
        timezone,
        missed,
        enabled: raw.enabled.unwrap_or(true),
        source: path.to_owned(),
    })
}

fn parse_accounts(
    list: &Spanned<Vec<Spanned<String>>>,
    at: &impl Fn(Range<usize>, String) -> JobFileError,
) -> Result<Vec<AccountId>, JobFileError> {
    if list.get_ref().is_empty() {
        return Err(at(
            list.span(),
            "accounts: an empty list selects nothing; leave the key out for all accounts".to_owned(),
        ));
    }
    let mut accounts: Vec<AccountId> = Vec::with_capacity(list.get_ref().len());
    for entry in list.get_ref() {
        let account = AccountId::parse(entry.get_ref().as_str())
            .map_err(|error| at(entry.span(), format!("accounts: {error}")))?;
        if accounts.contains(&account) {
            return Err(at(entry.span(), format!("accounts: `{account}` is listed twice")));
        }
        accounts.push(account);
    }
    Ok(accounts)
}

/// A time limit is a whole number of seconds (`600`) or a humane duration: numbers
/// with units `s`, `m`, `h`, `d`, as in `"90s"`, `"10m"`, `"1h30m"`, `"2h 15m"`.
/// It must be more than zero.
pub fn parse_time_limit(value: &toml::Value) -> Result<Duration, String> {
    let seconds = match value {
        toml::Value::Integer(seconds) => u64::try_from(*seconds).map_err(|_| format!("{seconds} is negative"))?,
        toml::Value::String(text) => parse_humane_duration(text)?,
        other => {
            return Err(format!(
                "expected seconds or a text such as \"10m\", found a {}",
                other.type_str()
            ))
        }
    };
    if seconds == 0 {
        return Err("must be more than zero".to_owned());
    }
    Ok(Duration::from_secs(seconds))
}

fn parse_humane_duration(text: &str) -> Result<u64, String> {
    let refuse = || format!("`{text}` is not a duration such as \"90s\", \"10m\" or \"1h30m\"");
    let compact: String = text.chars().filter(|c| !c.is_whitespace()).collect();
    if compact.is_empty() {
        return Err(refuse());
    }
    let mut total: u64 = 0;
    let mut number = String::new();
    for c in compact.chars() {
        if c.is_ascii_digit() {
            number.push(c);
            continue;
        }
        let unit: u64 = match c {
            's' => 1,
            'm' => 60,
            'h' => 3600,
            'd' => 86_400,
            _ => return Err(refuse()),
        };
        let value: u64 = number.parse().map_err(|_| refuse())?;
        total = value
            .checked_mul(unit)
            .and_then(|part| total.checked_add(part))
            .ok_or_else(|| format!("`{text}` is too long a duration"))?;
        number.clear();
    }
    // A bare number without a unit is seconds, but only alone: "1h30" is ambiguous.
    if !number.is_empty() {
        if total != 0 {
            return Err(refuse());
        }
        total = number.parse().map_err(|_| refuse())?;
    }
    Ok(total)
}

/// Loads every `*.toml` file of `dir` (other files, such as `README.md`, are ignored),
/// in name order, and checks that job names are unique. Every bad file is reported.
pub fn load_jobs_dir(dir: &Path) -> Result<Vec<JobDefinition>, LoadJobsError> {
    let unreadable = |source| LoadJobsError::Unreadable {
        path: dir.to_owned(),
        source,
    };
    let mut paths = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(unreadable)? {
        let path = entry.map_err(unreadable)?.path();
        if path.extension().is_some_and(|extension| extension == "toml") && path.is_file() {
            paths.push(path);
        }
    }
    paths.sort();

    let mut jobs = Vec::new();
    let mut errors = Vec::new();
    let mut first_file_of_name: BTreeMap<JobName, PathBuf> = BTreeMap::new();
    for path in paths {
        let text = match std::fs::read_to_string(&path) {
            Ok(text) => text,
            Err(error) => {
                errors.push(JobFileError {
                    path,
                    location: None,
                    reason: format!("cannot read: {error}"),
                });
                continue;
            }
        };
        match parse_job_file(&path, &text) {
            Ok(job) => match first_file_of_name.get(&job.spec.name) {
                Some(first) => errors.push(JobFileError {
                    location: name_location(&text),
                    reason: format!(
                        "name: job `{}` is already defined in {}",
                        job.spec.name,
                        first.display()
                    ),
                    path,
                }),
                None => {
                    first_file_of_name.insert(job.spec.name.clone(), path);
                    jobs.push(job);
                }
            },
            Err(error) => errors.push(error),
        }
    }
    if errors.is_empty() {
        Ok(jobs)
    } else {
        Err(LoadJobsError::Invalid(errors))
    }
}

/// Where the `name` value is in a file that already parsed once.
fn name_location(text: &str) -> Option<Location> {
    #[derive(Deserialize)]
    struct NameOnly {
        name: Spanned<String>,
    }
    let parsed: NameOnly = toml::from_str(text).ok()?;
    Some(Location::of_offset(text, parsed.name.span().start))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<JobDefinition, JobFileError> {
        parse_job_file(Path::new("jobs/test.toml"), text)
    }

    /// One table row: a file, and the `line:column: reason` fragment of its error.
    fn check_refused(text: &str, expected_line: usize, reason_fragment: &str) {
        let error = parse(text).expect_err("the file is bad");
        let location = error.location.expect("the error has a place");
        assert_eq!(location.line, expected_line, "line of `{error}` for\n{text}");
        assert!(
            error.reason.contains(reason_fragment),
            "`{error}` should mention `{reason_fragment}`"
        );
        assert!(error
            .to_string()
            .starts_with(&format!("jobs/test.toml:{expected_line}:")));
    }

    const MINIMAL: &str = "name = \"sync\"\njob = \"sync\"\nschedule = \"* * * * *\"\n";

    #[test]
    fn a_minimal_file_takes_the_documented_defaults() {
        let job = parse(MINIMAL).expect("valid");
        assert_eq!(job.spec.name.as_str(), "sync");
        assert_eq!(job.spec.kind, JobKind::Sync);
        assert_eq!(job.timezone, Tz::UTC);
        assert_eq!(job.spec.accounts, None);
        assert_eq!(job.spec.batch_size, None);
        assert_eq!(job.spec.time_limit, None);
        assert_eq!(job.missed, MissedPolicy::CatchUp);
        assert!(job.enabled);
        assert_eq!(job.source, Path::new("jobs/test.toml"));
    }

    #[test]
    fn a_full_file_is_parsed_into_typed_values() {
        let text = r#"
name = "billing-eu"
job = "billing"
schedule = "0 30 2 * * *"
timezone = "Europe/Paris"
accounts = ["a1", "b2"]
batch_size = 200
time_limit = "1h30m"
missed = "skip"
enabled = false
"#;
        let job = parse(text).expect("valid");
        assert_eq!(job.spec.kind, JobKind::Billing);
        assert_eq!(job.timezone, chrono_tz::Europe::Paris);
        let accounts: Vec<&str> = job.spec.accounts.iter().flatten().map(AccountId::as_str).collect();
        assert_eq!(accounts, vec!["a1", "b2"]);
        assert_eq!(job.spec.batch_size, NonZeroU32::new(200));
        assert_eq!(job.spec.time_limit, Some(Duration::from_secs(5400)));
        assert_eq!(job.missed, MissedPolicy::Skip);
        assert!(!job.enabled);
        assert_eq!(job.schedule, Schedule::parse("0 30 2 * * *").expect("valid"));
    }

    #[test]
    fn every_job_kind_is_spelled_as_documented() {
        for kind in JobKind::ALL {
            assert_eq!(JobKind::parse(kind.as_str()), Ok(kind));
        }
        assert_eq!(JobKind::parse("bookkeeper-sync"), Ok(JobKind::BookkeeperSync));
    }

    #[test]
    fn bad_files_are_refused_with_the_line_of_the_fault() {
        let table: &[(&str, usize, &str)] = &[
            (
                "name = \"x\"\njob = \"synk\"\nschedule = \"* * * * *\"\n",
                2,
                "unknown job `synk`",
            ),
            ("name = \"x\"\njob = \"sync\"\nschedule = \"* * * *\"\n", 3, "schedule"),
            (
                "name = \"x\"\njob = \"sync\"\nschedule = \"0 0 * * 9\"\n",
                3,
                "out of range",
            ),
            (
                "name = \"x\"\njob = \"sync\"\nschedule = \"* * * * *\"\ntimezone = \"Mars/Olympus\"\n",
                4,
                "unknown time zone",
            ),
            (
                "name = \"x\"\njob = \"sync\"\nschedule = \"* * * * *\"\n\nbatchsize = 5\n",
                5,
                "unknown field `batchsize`",
            ),
            (
                "name = \"x\"\njob = \"sync\"\nschedule = \"* * * * *\"\nbatch_size = 0\n",
                4,
                "batch_size",
            ),
            (
                "name = \"x\"\njob = \"sync\"\nschedule = \"* * * * *\"\nbatch_size = -3\n",
                4,
                "batch_size",
            ),
            (
                "name = \"x\"\njob = \"sync\"\nschedule = \"* * * * *\"\ntime_limit = \"10 minutes\"\n",
                4,
                "time_limit",
            ),
            (
                "name = \"x\"\njob = \"sync\"\nschedule = \"* * * * *\"\ntime_limit = 0\n",
                4,
                "more than zero",
            ),
            (
                "name = \"x\"\njob = \"sync\"\nschedule = \"* * * * *\"\nmissed = \"later\"\n",
                4,
                "catch-up",
            ),
            (
                "name = \"x\"\njob = \"sync\"\nschedule = \"* * * * *\"\naccounts = []\n",
                4,
                "empty list",
            ),
            (
                "name = \"x\"\njob = \"sync\"\nschedule = \"* * * * *\"\naccounts = [\n  \"a\",\n  \"a\",\n]\n",
                6,
                "listed twice",
            ),
            (
                "name = \"x\"\njob = \"sync\"\nschedule = \"* * * * *\"\naccounts = [\"\"]\n",
                4,
                "must not be empty",
            ),
            (
                "name = \"x y\"\njob = \"sync\"\nschedule = \"* * * * *\"\n",
                1,
                "contains ` `",
            ),
            (
                "name = \"x\"\njob = \"sync\"\nschedule = \"* * * * *\"\nenabled = \"yes\"\n",
                4,
                "bool",
            ),
            ("name = \"x\"\njob = \"sync\"\nschedule = * * * * *\n", 3, "invalid"),
            (
                "name = \"x\"\njob = \"sync\"\nschedule = \"* * * * *\"\nreconcile_changed = true\n",
                4,
                "only an `ingest` job",
            ),
        ];
        for (text, line, fragment) in table {
            check_refused(text, *line, fragment);
        }
    }

    #[test]
    fn an_ingest_job_may_recount_what_it_changed() {
        let job = parse("name = \"i\"\njob = \"ingest\"\nschedule = \"* * * * *\"\nreconcile_changed = true\n")
            .expect("an ingest job parses");
        assert_eq!(job.spec.kind, JobKind::Ingest);
        assert!(job.spec.reconcile_changed);
        let quiet = parse("name = \"i\"\njob = \"ingest\"\nschedule = \"* * * * *\"\n").expect("parses");
        assert!(!quiet.spec.reconcile_changed);
    }

    #[test]
    fn a_missing_key_is_refused_by_name() {
        let error = parse("name = \"x\"\njob = \"sync\"\n").expect_err("no schedule");
        assert!(error.to_string().contains("missing field `schedule`"), "{error}");
        assert!(error.to_string().starts_with("jobs/test.toml"));
    }

    #[test]
    fn columns_are_counted_in_characters_from_one() {
        let text = "a = 1\nnäme = 2\n";
        let offset = text.find('2').expect("present");
        assert_eq!(Location::of_offset(text, offset), Location { line: 2, column: 8 });
        assert_eq!(Location::of_offset(text, 0), Location { line: 1, column: 1 });
    }

    #[test]
    fn humane_durations_and_seconds_are_accepted() {
        let table: &[(toml::Value, Result<u64, &str>)] = &[
            (toml::Value::Integer(600), Ok(600)),
            (toml::Value::String("90s".into()), Ok(90)),
            (toml::Value::String("10m".into()), Ok(600)),
            (toml::Value::String("1h30m".into()), Ok(5400)),
            (toml::Value::String("2h 15m".into()), Ok(8100)),
            (toml::Value::String("1d".into()), Ok(86_400)),
            (toml::Value::String("45".into()), Ok(45)),
            (toml::Value::String("1h30".into()), Err("not a duration")),
            (toml::Value::String("".into()), Err("not a duration")),
            (toml::Value::String("m".into()), Err("not a duration")),
            (
                toml::Value::String("99999999999999999999d".into()),
                Err("not a duration"),
            ),
            (toml::Value::String("999999999999999d".into()), Err("too long")),
            (toml::Value::Integer(-1), Err("negative")),
            (toml::Value::Float(1.5), Err("found a float")),
        ];
        for (value, expected) in table {
            match (parse_time_limit(value), expected) {
                (Ok(got), Ok(seconds)) => assert_eq!(got, Duration::from_secs(*seconds), "{value}"),
                (Err(error), Err(fragment)) => {
                    assert!(error.contains(fragment), "{value}: `{error}` lacks `{fragment}`")
                }
                (got, expected) => panic!("{value}: got {got:?}, expected {expected:?}"),
            }
        }
    }

    fn write(dir: &Path, file: &str, text: &str) {
        std::fs::write(dir.join(file), text).expect("temp dir is writable");
    }

    #[test]
    fn a_directory_loads_its_toml_files_in_name_order_and_ignores_the_rest() {
        let dir = tempfile::tempdir().expect("temp dir");
        write(
            dir.path(),
            "b.toml",
            "name = \"b\"\njob = \"billing\"\nschedule = \"@daily\"\n",
        );
        write(
            dir.path(),
            "a.toml",
            "name = \"a\"\njob = \"sync\"\nschedule = \"* * * * *\"\n",
        );
        write(dir.path(), "README.md", "not a job");
        let jobs = load_jobs_dir(dir.path()).expect("valid");
        let names: Vec<&str> = jobs.iter().map(|job| job.spec.name.as_str()).collect();
        assert_eq!(names, vec!["a", "b"]);
    }

    #[test]
    fn a_name_used_twice_is_refused_at_the_second_file_naming_the_first() {
        let dir = tempfile::tempdir().expect("temp dir");
        write(
            dir.path(),
            "a.toml",
            "name = \"sync\"\njob = \"sync\"\nschedule = \"* * * * *\"\n",
        );
        write(
            dir.path(),
            "b.toml",
            "# copy\n\nname = \"sync\"\njob = \"sync\"\nschedule = \"@hourly\"\n",
        );
        let Err(LoadJobsError::Invalid(errors)) = load_jobs_dir(dir.path()) else {
            panic!("duplicate names must be refused");
        };
        assert_eq!(errors.len(), 1);
        assert_eq!(errors[0].path, dir.path().join("b.toml"));
        assert_eq!(errors[0].location.map(|at| at.line), Some(3));
        assert!(errors[0].reason.contains("a.toml"), "{}", errors[0]);
    }

    #[test]
    fn every_bad_file_of_a_directory_is_reported_at_once() {
        let dir = tempfile::tempdir().expect("temp dir");
        write(
            dir.path(),
            "a.toml",
            "name = \"a\"\njob = \"nope\"\nschedule = \"* * * * *\"\n",
        );
        write(
            dir.path(),
            "b.toml",
            "name = \"b\"\njob = \"sync\"\nschedule = \"* * * * *\"\ncolour = 1\n",
        );
        let error = load_jobs_dir(dir.path()).expect_err("two bad files");
        let text = error.to_string();
        assert!(text.contains("a.toml:2:"), "{text}");
        assert!(text.contains("b.toml:4:"), "{text}");
    }

    #[test]
    fn a_missing_directory_is_refused_with_its_path() {
        let dir = tempfile::tempdir().expect("temp dir");
        let missing = dir.path().join("nowhere");
        let error = load_jobs_dir(&missing).expect_err("missing");
        assert!(error.to_string().contains("nowhere"), "{error}");
    }

    #[test]
    fn the_examples_in_the_jobs_readme_parse() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("jobs/README.md");
        let readme = std::fs::read_to_string(&path).expect("jobs/README.md is shipped");
        let examples: Vec<&str> = readme
            .split("```toml\n")
            .skip(1)
            .filter_map(|block| block.split("```").next())
            .collect();
        assert_eq!(examples.len(), 2, "the README shows two job files");
        for example in examples {
            parse_job_file(&path, example).unwrap_or_else(|error| panic!("{error}\n{example}"));
        }
    }

    #[test]
    fn a_prune_job_refuses_an_account_list() {
        let text = "name = \"prune\"\njob = \"prune\"\nschedule = \"0 4 * * *\"\naccounts = [\"0123456789abcdef0123456789abcdef\"]\n";
        let error = parse_job_file(Path::new("jobs/prune.toml"), text).expect_err("refused");
        assert_eq!(
            error.to_string(),
            "jobs/prune.toml:4:12: accounts: a `prune` job covers the whole database"
        );
    }

    #[test]
    fn the_shipped_jobs_directory_parses() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("jobs");
        let jobs = load_jobs_dir(&dir).unwrap_or_else(|error| panic!("{error}"));
        let mut kinds: Vec<(&str, JobKind)> = jobs.iter().map(|job| (job.spec.name.as_str(), job.spec.kind)).collect();
        kinds.sort_by_key(|(name, _)| *name);
        assert_eq!(
            kinds,
            vec![
                ("billing", JobKind::Billing),
                ("bookkeeper-sync", JobKind::BookkeeperSync),
                ("ingest", JobKind::Ingest),
                ("prune", JobKind::Prune),
                ("sync", JobKind::Sync),
                ("topup", JobKind::Topup),
            ]
        );
        assert!(jobs.iter().all(|job| job.timezone == Tz::UTC));
        // Ingestion waits for a CouchDB to be configured and pruning for retention
        // settings; the rest runs as shipped.
        assert!(jobs
            .iter()
            .all(|job| job.enabled == !matches!(job.spec.kind, JobKind::Ingest | JobKind::Prune)));
    }
}
