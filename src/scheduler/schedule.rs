//! When a job fires: a [`Schedule`] value parsed once from its text, and the pure
//! functions [`next_fire`] and [`missed_fires`] that the daemon asks.
//!
//! This module (with the rest of `scheduler/`) is the only user of the `cron` crate.
//! It reads no clock and sleeps on nothing: every instant is an argument, so the
//! whole calendar logic is tested with fixed dates.
//!
//! # Two forms, two weekday numberings
//! - The standard five-field crontab form `min hour dom month dow`, plus the macros
//!   `@hourly @daily @midnight @weekly @monthly @yearly @annually`. In crontab the
//!   day of week runs 0-7 where 0 **and** 7 are Sunday and 1 is Monday.
//! - The `cron` crate's own six- or seven-field form `sec min hour dom month dow
//!   [year]`, where the day of week runs 1-7 with **1 = Sunday** and 7 = Saturday.
//!
//! The five-field form is translated into the crate's form explicitly: its day-of-week
//! field is expanded to the set of days it names (ranges, steps, lists, names) and
//! written back as day names, which both numberings agree on.
//!
//! Crontab also has a rule the crate does not: when both day-of-month and day-of-week
//! are restricted (neither starts with `*`), a time matches when **either** matches
//! (`0 0 1 * MON` fires on the 1st and on every Monday). The crate requires both. A
//! five-field schedule of that shape is kept as two crate schedules whose fire times
//! are merged. The six/seven-field form keeps the crate's "both must match" meaning.
//!
//! Times are computed in the job's time zone. A local time that does not exist (the
//! hour skipped when daylight saving starts) is skipped; a local time that happens
//! twice (when it ends) fires at both instants, so a per-minute schedule keeps firing
//! every real minute through the repeated hour; a nightly job placed in that hour runs
//! twice that night, which is harmless because every job is idempotent (and the
//! shipped jobs use UTC, which has no such hour).

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Duration, Offset, TimeZone, Utc};
use chrono_tz::Tz;

/// A parsed cron expression in either form. Cheap to clone; parse once at start.
#[derive(Debug, Clone)]
pub struct Schedule {
    /// The text as the operator wrote it, for messages and `Display`.
    source: String,
    /// One crate schedule, or two whose union is the crontab "dom OR dow" rule.
    parts: Vec<cron::Schedule>,
}

/// Why a cron expression was refused. The message names the field at fault.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScheduleError {
    #[error("empty cron expression")]
    Empty,
    #[error("unknown macro `{0}` (known: @hourly @daily @midnight @weekly @monthly @yearly @annually)")]
    UnknownMacro(String),
    #[error("a cron expression has 5 fields (min hour dom month dow) or 6-7 fields (sec min hour dom month dow [year]); `{text}` has {count}")]
    FieldCount { text: String, count: usize },
    #[error("day-of-week field `{field}`: {reason}")]
    DayOfWeek { field: String, reason: String },
    #[error("{0}")]
    Cron(String),
}

impl Schedule {
    /// Parses either form; see the module documentation.
    pub fn parse(text: &str) -> Result<Self, ScheduleError> {
        let trimmed = text.trim();
        if trimmed.is_empty() {
            return Err(ScheduleError::Empty);
        }
        let parts = if let Some(name) = trimmed.strip_prefix('@') {
            vec![crate_schedule(macro_expansion(name)?)?]
        } else {
            let fields: Vec<&str> = trimmed.split_whitespace().collect();
            match fields.len() {
                5 => crontab_parts(&fields)?,
                6 | 7 => vec![crate_schedule(&fields.join(" "))?],
                count => {
                    return Err(ScheduleError::FieldCount {
                        text: trimmed.to_owned(),
                        count,
                    })
                }
            }
        };
        Ok(Self {
            source: trimmed.to_owned(),
            parts,
        })
    }

    /// The expression as written.
    pub fn as_str(&self) -> &str {
        &self.source
    }
}

impl FromStr for Schedule {
    type Err = ScheduleError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Self::parse(text)
    }
}

impl fmt::Display for Schedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.source)
    }
}

/// Two schedules are equal when they fire at the same times, however written.
impl PartialEq for Schedule {
    fn eq(&self, other: &Self) -> bool {
        self.parts.len() == other.parts.len()
            && self
                .parts
                .iter()
                .zip(&other.parts)
                .all(|(left, right)| left.timeunitspec_eq(right))
    }
}

fn crate_schedule(expression: &str) -> Result<cron::Schedule, ScheduleError> {
    cron::Schedule::from_str(expression).map_err(|error| ScheduleError::Cron(format!("`{expression}`: {error}")))
}

/// The macros in the crate's seconds form. The crate knows only some of them and
/// not `@midnight`/`@annually`, so all are expanded here, to one definition.
fn macro_expansion(name: &str) -> Result<&'static str, ScheduleError> {
    match name.to_ascii_lowercase().as_str() {
        "hourly" => Ok("0 0 * * * *"),
        "daily" | "midnight" => Ok("0 0 0 * * *"),
        "weekly" => Ok("0 0 0 * * SUN"),
        "monthly" => Ok("0 0 0 1 * *"),
        "yearly" | "annually" => Ok("0 0 0 1 1 *"),
        _ => Err(ScheduleError::UnknownMacro(format!("@{name}"))),
    }
}

/// Translates a five-field crontab expression into one or two crate schedules.
fn crontab_parts(fields: &[&str]) -> Result<Vec<cron::Schedule>, ScheduleError> {
    let [minute, hour, day_of_month, month, day_of_week] = [fields[0], fields[1], fields[2], fields[3], fields[4]];
    let weekdays = crontab_weekdays(day_of_week)?;
    // Crontab's rule: both restricted means either may match.
    // `?` (the crate's "any") counts as unrestricted, like `*`.
    let unrestricted = |field: &str| field.starts_with('*') || field == "?";
    let both_restricted = !unrestricted(day_of_month) && !unrestricted(day_of_week);
    if both_restricted {
        let by_day_of_month = format!("0 {minute} {hour} {day_of_month} {month} *");
        let by_day_of_week = format!("0 {minute} {hour} * {month} {weekdays}");
        return Ok(vec![
            crate_schedule(&by_day_of_month)?,
            crate_schedule(&by_day_of_week)?,
        ]);
    }
    let expression = format!("0 {minute} {hour} {day_of_month} {month} {weekdays}");
    Ok(vec![crate_schedule(&expression)?])
}

/// Day names indexed by crontab number (0 = Sunday). The crate accepts the same names.
const WEEKDAY_NAMES: [&str; 7] = ["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"];

/// Expands a crontab day-of-week field into a list of day names for the crate.
///
/// Each comma-separated item is `*`, `N`, `N-M` or a name, optionally followed by
/// `/STEP`. Numbers run 0-7 (0 and 7 are Sunday); `*` means 0-7 when stepped, so
/// `*/2` is Sunday, Tuesday, Thursday, Saturday as in cronie.
fn crontab_weekdays(field: &str) -> Result<String, ScheduleError> {
    let refuse = |reason: String| ScheduleError::DayOfWeek {
        field: field.to_owned(),
        reason,
    };
    if field == "*" || field == "?" {
        return Ok("*".to_owned());
    }
    let mut days = [false; 7];
    for item in field.split(',') {
        let (range_text, step) = match item.split_once('/') {
            Some((range_text, step_text)) => {
                let step: u32 = step_text
                    .parse()
                    .map_err(|_| refuse(format!("step `{step_text}` is not a number")))?;
                if step == 0 {
                    return Err(refuse("a step must be at least 1".to_owned()));
                }
                (range_text, Some(step))
            }
            None => (item, None),
        };
        let (first, last) = match range_text {
            "*" => (0, 7),
            _ => match range_text.split_once('-') {
                Some((from, to)) => (weekday_number(from, &refuse)?, weekday_number(to, &refuse)?),
                // `N/STEP` means "from N to the end", as in cronie.
                None => {
                    let day = weekday_number(range_text, &refuse)?;
                    match step {
                        Some(_) => (day, 7),
                        None => (day, day),
                    }
                }
            },
        };
        if first > last {
            return Err(refuse(format!("range `{range_text}` runs backwards")));
        }
        let step = step.unwrap_or(1) as usize;
        for day in (first..=last).step_by(step) {
            days[(day % 7) as usize] = true;
        }
    }
    let names: Vec<&str> = WEEKDAY_NAMES
        .iter()
        .zip(days)
        .filter_map(|(name, chosen)| chosen.then_some(*name))
        .collect();
    Ok(names.join(","))
}

fn weekday_number(text: &str, refuse: &impl Fn(String) -> ScheduleError) -> Result<u32, ScheduleError> {
    if let Ok(number) = text.parse::<u32>() {
        if number > 7 {
            return Err(refuse(format!("`{number}` is out of range (0-7, 0 and 7 are Sunday)")));
        }
        return Ok(number);
    }
    let upper = text.to_ascii_uppercase();
    let prefix = upper.get(..3).unwrap_or(&upper);
    match WEEKDAY_NAMES.iter().position(|name| *name == prefix) {
        Some(index) if upper.len() == 3 => Ok(index as u32),
        _ => Err(refuse(format!("`{text}` is not a day (0-7 or SUN..SAT)"))),
    }
}

/// The first fire time strictly after `after`, or `None` when the schedule has no
/// more (a seven-field expression whose years are over).
pub fn next_fire(schedule: &Schedule, timezone: Tz, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
    schedule
        .parts
        .iter()
        .filter_map(|part| next_fire_of_part(part, timezone, after))
        .min()
}

/// How far ahead a change of UTC offset is looked for. Real zones change by at most
/// two hours at once.
const OFFSET_CHANGE_HORIZON: Duration = Duration::hours(3);

fn next_fire_of_part(part: &cron::Schedule, timezone: Tz, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
    let first_later = |start: DateTime<Tz>, limit: usize| {
        part.after(&start)
            .take(limit)
            .map(|local| local.with_timezone(&Utc))
            .find(|fire| *fire > after)
    };
    let local_after = timezone.from_utc_datetime(&after.naive_utc());
    // Around a repeated hour the crate answers in wall time and may name the first
    // instant of a time that is before `after`; the next items include the second.
    let from_here = first_later(local_after, 8);
    let offset_now = timezone.offset_from_utc_datetime(&after.naive_utc()).fix();
    let offset_soon = timezone
        .offset_from_utc_datetime(&(after + OFFSET_CHANGE_HORIZON).naive_utc())
        .fix();
    if offset_now == offset_soon {
        return from_here;
    }
    // The clocks go back soon: wall times after `after` repeat, and the crate, walking
    // wall time forward from `after`, would jump over their second pass. Walk again
    // from the wall time `after` has under the coming offset, which re-enters the
    // repeated stretch; enough steps to cross it even for a per-second schedule.
    let wall_under_coming_offset = after.naive_utc() + offset_soon;
    let from_second_pass = timezone
        .from_local_datetime(&wall_under_coming_offset)
        .earliest()
        .and_then(|start| first_later(start, 4 * 3600 + 8));
    [from_here, from_second_pass].into_iter().flatten().min()
}

/// The last fire time at or before `at`, if any: the occurrence a run started by a
/// timer or cron at `at` stands for.
pub fn latest_fire_at_or_before(schedule: &Schedule, timezone: Tz, at: DateTime<Utc>) -> Option<DateTime<Utc>> {
    // The crate's reverse iterator starts strictly before its argument, so start one
    // second later and drop whatever lands after `at`.
    let local_start = timezone.from_utc_datetime(&(at + Duration::seconds(1)).naive_utc());
    schedule
        .parts
        .iter()
        .filter_map(|part| {
            part.after(&local_start)
                .rev()
                .take(8)
                .map(|local| local.with_timezone(&Utc))
                .find(|fire| *fire <= at)
        })
        .max()
}

/// What to do about fire times that passed while nothing ran the job.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MissedPolicy {
    /// Run once, now, for the latest missed time; that run covers all of them.
    CatchUp,
    /// Forget them and wait for the next time.
    Skip,
}

/// At most this many missed times are counted, so that a per-second schedule after
/// a month of downtime costs little; the count is then reported as "at least".
pub const MISSED_COUNT_LIMIT: u32 = 10_000;

/// The decision [`missed_fires`] takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MissedDecision {
    /// Nothing was missed.
    NoneMissed,
    /// Run once now, recorded under `scheduled_for`, the latest missed time.
    RunOnce { scheduled_for: DateTime<Utc>, missed: u32 },
    /// Times were missed and are dropped by policy.
    Skipped { missed: u32 },
}

/// Decides about the fire times in `(last_run, now]`: the times after the last
/// recorded run up to now. A job that never ran (`last_run` is `None`) has missed
/// nothing: a new job does not fire for the past.
pub fn missed_fires(
    schedule: &Schedule,
    timezone: Tz,
    last_run: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
    policy: MissedPolicy,
) -> MissedDecision {
    let Some(last_run) = last_run else {
        return MissedDecision::NoneMissed;
    };
    let Some(latest) = latest_fire_at_or_before(schedule, timezone, now) else {
        return MissedDecision::NoneMissed;
    };
    if latest <= last_run {
        return MissedDecision::NoneMissed;
    }
    let mut missed = 0;
    let mut cursor = last_run;
    while let Some(fire) = next_fire(schedule, timezone, cursor) {
        if fire > now || missed == MISSED_COUNT_LIMIT {
            break;
        }
        missed += 1;
        cursor = fire;
    }
    match policy {
        MissedPolicy::CatchUp => MissedDecision::RunOnce {
            scheduled_for: latest,
            missed,
        },
        MissedPolicy::Skip => MissedDecision::Skipped { missed },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{Datelike, Weekday};

    fn utc(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text)
            .expect("test instants are RFC 3339")
            .with_timezone(&Utc)
    }

    fn fires(expression: &str, timezone: Tz, after: &str, count: usize) -> Vec<DateTime<Utc>> {
        let schedule = Schedule::parse(expression).expect("test expressions parse");
        let mut cursor = utc(after);
        let mut out = Vec::new();
        for _ in 0..count {
            let Some(fire) = next_fire(&schedule, timezone, cursor) else {
                break;
            };
            out.push(fire);
            cursor = fire;
        }
        out
    }

    /// One table row: an expression, a start, and the next fire times expected.
    fn check(expression: &str, after: &str, expected: &[&str]) {
        let got = fires(expression, Tz::UTC, after, expected.len());
        let expected: Vec<DateTime<Utc>> = expected.iter().map(|text| utc(text)).collect();
        assert_eq!(got, expected, "expression `{expression}` after {after}");
    }

    fn weekdays_of(expression: &str) -> Vec<Weekday> {
        // 2026-11-23 is a Monday; two weeks of daily candidates cover every weekday.
        fires(expression, Tz::UTC, "2026-11-22T23:59:59Z", 14)
            .into_iter()
            .map(|fire| fire.weekday())
            .take_while({
                let mut seen = std::collections::BTreeSet::new();
                move |day| seen.insert(day.num_days_from_monday())
            })
            .collect()
    }

    #[test]
    fn five_and_six_field_forms_fire_at_the_expected_times() {
        let table: &[(&str, &str, &[&str])] = &[
            (
                "* * * * *",
                "2026-11-23T10:00:30Z",
                &["2026-11-23T10:01:00Z", "2026-11-23T10:02:00Z"],
            ),
            (
                "*/15 * * * *",
                "2026-11-23T10:00:00Z",
                &["2026-11-23T10:15:00Z", "2026-11-23T10:30:00Z"],
            ),
            ("30 2 * * *", "2026-11-23T02:30:00Z", &["2026-11-24T02:30:00Z"]),
            (
                "0 9-17/4 * * *",
                "2026-11-23T00:00:00Z",
                &[
                    "2026-11-23T09:00:00Z",
                    "2026-11-23T13:00:00Z",
                    "2026-11-23T17:00:00Z",
                    "2026-11-24T09:00:00Z",
                ],
            ),
            (
                "0 0 1 JAN,jul *",
                "2026-11-23T00:00:00Z",
                &["2027-01-01T00:00:00Z", "2027-07-01T00:00:00Z"],
            ),
            (
                "* * * * * *",
                "2026-11-23T10:00:00Z",
                &["2026-11-23T10:00:01Z", "2026-11-23T10:00:02Z"],
            ),
            ("*/10 * * * * *", "2026-11-23T10:00:05Z", &["2026-11-23T10:00:10Z"]),
            ("0 30 2 * * * 2027", "2026-11-23T00:00:00Z", &["2027-01-01T02:30:00Z"]),
            ("@hourly", "2026-11-23T10:00:00Z", &["2026-11-23T11:00:00Z"]),
            ("@daily", "2026-11-23T10:00:00Z", &["2026-11-24T00:00:00Z"]),
            ("@midnight", "2026-11-23T10:00:00Z", &["2026-11-24T00:00:00Z"]),
            ("@weekly", "2026-11-23T10:00:00Z", &["2026-11-29T00:00:00Z"]),
            ("@monthly", "2026-11-23T10:00:00Z", &["2026-12-01T00:00:00Z"]),
            ("@yearly", "2026-11-23T10:00:00Z", &["2027-01-01T00:00:00Z"]),
            ("@annually", "2026-11-23T10:00:00Z", &["2027-01-01T00:00:00Z"]),
            // Sub-second start: the next fire is still the next whole second.
            ("* * * * * *", "2026-11-23T10:00:00.500Z", &["2026-11-23T10:00:01Z"]),
        ];
        for (expression, after, expected) in table {
            check(expression, after, expected);
        }
    }

    #[test]
    fn crontab_weekday_numbers_start_at_sunday_zero() {
        use Weekday::*;
        let table: &[(&str, &[Weekday])] = &[
            ("0 2 * * 1-5", &[Mon, Tue, Wed, Thu, Fri]),
            ("0 0 * * 0", &[Sun]),
            ("0 0 * * 7", &[Sun]),
            ("0 0 * * 1", &[Mon]),
            ("0 0 * * 6", &[Sat]),
            ("0 0 * * 5-7", &[Fri, Sat, Sun]),
            ("0 0 * * 0,6", &[Sat, Sun]),
            ("0 0 * * */2", &[Tue, Thu, Sat, Sun]),
            ("0 0 * * 1-7/2", &[Mon, Wed, Fri, Sun]),
            ("0 0 * * 1/3", &[Mon, Thu, Sun]),
            ("0 0 * * MON-FRI", &[Mon, Tue, Wed, Thu, Fri]),
            ("0 0 * * sun", &[Sun]),
            ("0 0 * * *", &[Mon, Tue, Wed, Thu, Fri, Sat, Sun]),
        ];
        for (expression, expected) in table {
            let mut got = weekdays_of(expression);
            let mut expected = expected.to_vec();
            got.sort_by_key(|day| day.num_days_from_monday());
            expected.sort_by_key(|day| day.num_days_from_monday());
            assert_eq!(got, expected, "expression `{expression}`");
        }
    }

    #[test]
    fn six_field_form_keeps_the_cron_crate_numbering_where_one_is_sunday() {
        assert_eq!(weekdays_of("0 0 0 * * 1"), vec![Weekday::Sun]);
        assert_eq!(weekdays_of("0 0 0 * * 2"), vec![Weekday::Mon]);
    }

    #[test]
    fn both_forms_written_for_the_same_times_are_equal_as_documented() {
        let table = [
            ("0 2 * * 1-5", "0 0 2 * * 2-6"),
            ("0 2 * * 1-5", "0 0 2 * * MON-FRI"),
            ("0 0 * * 0", "0 0 0 * * 1"),
            ("0 0 * * 7", "0 0 0 * * SUN"),
            ("30 2 * * *", "0 30 2 * * *"),
            ("@weekly", "0 0 * * 0"),
            ("@midnight", "@daily"),
            ("@annually", "0 0 1 1 *"),
        ];
        for (left, right) in table {
            assert_eq!(Schedule::parse(left), Schedule::parse(right), "{left} vs {right}");
        }
        assert_ne!(Schedule::parse("0 0 * * 1"), Schedule::parse("0 0 0 * * 1"));
    }

    #[test]
    fn crontab_with_both_days_restricted_fires_when_either_matches() {
        // 2026-12-01 is a Tuesday; the Mondays around it are 11-30 and 12-07.
        check(
            "0 0 1 * MON",
            "2026-11-24T00:00:00Z",
            &["2026-11-30T00:00:00Z", "2026-12-01T00:00:00Z", "2026-12-07T00:00:00Z"],
        );
        // A starred day of month keeps "both must match".
        check("0 0 */2 * 1", "2026-11-24T00:00:00Z", &["2026-12-07T00:00:00Z"]);
        // `?` is "any", not a restriction: Mondays only.
        check(
            "0 0 ? * MON",
            "2026-11-24T00:00:00Z",
            &["2026-11-30T00:00:00Z", "2026-12-07T00:00:00Z"],
        );
    }

    #[test]
    fn times_are_computed_in_the_job_time_zone() {
        let paris: Tz = "Europe/Paris".parse().expect("a known zone");
        let got = fires("30 2 * * *", paris, "2026-11-23T12:00:00Z", 1);
        assert_eq!(got, vec![utc("2026-11-24T01:30:00Z")]);
        // Summer time: UTC+2.
        let got = fires("30 2 * * *", paris, "2026-07-01T12:00:00Z", 1);
        assert_eq!(got, vec![utc("2026-07-02T00:30:00Z")]);
    }

    #[test]
    fn a_local_time_skipped_by_daylight_saving_does_not_fire_that_day() {
        let new_york: Tz = "America/New_York".parse().expect("a known zone");
        // 2026-03-08 02:30 does not exist in New York.
        let got = fires("30 2 * * *", new_york, "2026-03-07T12:00:00Z", 2);
        assert_eq!(got, vec![utc("2026-03-09T06:30:00Z"), utc("2026-03-10T06:30:00Z")]);
    }

    #[test]
    fn a_local_time_repeated_by_daylight_saving_fires_at_both_instants_in_order() {
        let new_york: Tz = "America/New_York".parse().expect("a known zone");
        // 2026-11-01 01:30 happens at 05:30Z (EDT) and 06:30Z (EST).
        let got = fires("30 1 * * *", new_york, "2026-10-31T12:00:00Z", 3);
        assert_eq!(
            got,
            vec![
                utc("2026-11-01T05:30:00Z"),
                utc("2026-11-01T06:30:00Z"),
                utc("2026-11-02T06:30:00Z")
            ]
        );
        // Every real minute of the repeated hour still fires, in order.
        let got = fires("* * * * *", new_york, "2026-11-01T05:58:00Z", 4);
        assert_eq!(
            got,
            vec![
                utc("2026-11-01T05:59:00Z"),
                utc("2026-11-01T06:00:00Z"),
                utc("2026-11-01T06:01:00Z"),
                utc("2026-11-01T06:02:00Z")
            ]
        );
    }

    #[test]
    fn bad_expressions_are_refused_with_the_reason() {
        let table: &[(&str, &str)] = &[
            ("", "empty"),
            ("* * * *", "has 4"),
            ("* * * * * * * *", "has 8"),
            ("@fortnightly", "unknown macro"),
            ("0 0 * * 8", "out of range"),
            ("0 0 * * 5-1", "backwards"),
            ("0 0 * * */0", "at least 1"),
            ("0 0 * * FUNDAY", "not a day"),
            ("61 * * * *", "61"),
            ("0 25 * * *", "25"),
        ];
        for (expression, fragment) in table {
            let error = Schedule::parse(expression).expect_err(expression).to_string();
            assert!(
                error.contains(fragment),
                "`{expression}`: error `{error}` should mention `{fragment}`"
            );
        }
    }

    #[test]
    fn a_seven_field_schedule_whose_years_are_over_has_no_next_fire() {
        assert!(fires("0 0 0 1 1 * 2020", Tz::UTC, "2026-01-01T00:00:00Z", 1).is_empty());
    }

    #[test]
    fn missed_fires_follow_the_policy() {
        let every_minute = Schedule::parse("* * * * *").expect("valid");
        let nightly = Schedule::parse("30 2 * * *").expect("valid");
        let now = utc("2026-11-23T10:00:30Z");
        let table: &[(&Schedule, Option<&str>, MissedPolicy, MissedDecision)] = &[
            (&every_minute, None, MissedPolicy::CatchUp, MissedDecision::NoneMissed),
            (
                &every_minute,
                Some("2026-11-23T10:00:00Z"),
                MissedPolicy::CatchUp,
                MissedDecision::NoneMissed,
            ),
            (
                &every_minute,
                Some("2026-11-23T09:57:00Z"),
                MissedPolicy::CatchUp,
                MissedDecision::RunOnce {
                    scheduled_for: utc("2026-11-23T10:00:00Z"),
                    missed: 3,
                },
            ),
            (
                &every_minute,
                Some("2026-11-23T09:57:00Z"),
                MissedPolicy::Skip,
                MissedDecision::Skipped { missed: 3 },
            ),
            (
                &nightly,
                Some("2026-11-20T02:30:00Z"),
                MissedPolicy::CatchUp,
                MissedDecision::RunOnce {
                    scheduled_for: utc("2026-11-23T02:30:00Z"),
                    missed: 3,
                },
            ),
            (
                &nightly,
                Some("2026-11-23T02:30:00Z"),
                MissedPolicy::CatchUp,
                MissedDecision::NoneMissed,
            ),
        ];
        for (schedule, last_run, policy, expected) in table {
            let got = missed_fires(schedule, Tz::UTC, last_run.map(utc), now, *policy);
            assert_eq!(got, *expected, "{schedule} last run {last_run:?} {policy:?}");
        }
    }

    #[test]
    fn a_fire_exactly_now_counts_as_missed_and_the_count_is_capped() {
        let every_second = Schedule::parse("* * * * * *").expect("valid");
        let now = utc("2026-11-23T10:00:00Z");
        assert_eq!(
            missed_fires(
                &every_second,
                Tz::UTC,
                Some(utc("2026-11-23T09:59:59Z")),
                now,
                MissedPolicy::CatchUp
            ),
            MissedDecision::RunOnce {
                scheduled_for: now,
                missed: 1
            }
        );
        assert_eq!(
            missed_fires(
                &every_second,
                Tz::UTC,
                Some(utc("2026-10-01T00:00:00Z")),
                now,
                MissedPolicy::Skip
            ),
            MissedDecision::Skipped {
                missed: MISSED_COUNT_LIMIT
            }
        );
    }
}
