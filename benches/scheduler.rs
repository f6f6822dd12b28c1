//! How long the scheduler's calendar arithmetic takes: `next_fire` for typical
//! expressions and zones, and the worst case of `missed_fires` (a per-second job a
//! month behind, which stops counting at `MISSED_COUNT_LIMIT`).
//!
//! Run: `cargo bench --bench scheduler`.

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use criterion::{black_box, criterion_group, criterion_main, Criterion};
use tally::scheduler::{missed_fires, next_fire, MissedPolicy, Schedule};

fn instant(text: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(text)
        .expect("bench instants are RFC 3339")
        .with_timezone(&Utc)
}

fn bench_next_fire(c: &mut Criterion) {
    let after = instant("2026-11-23T10:00:30Z");
    let paris: Tz = "Europe/Paris".parse().expect("a known zone");
    let cases = [
        ("every minute, UTC", "* * * * *", Tz::UTC),
        ("nightly 02:30, UTC", "30 2 * * *", Tz::UTC),
        ("weekdays 02:00, Paris", "0 2 * * 1-5", paris),
        ("1st or Monday (two parts)", "0 0 1 * MON", Tz::UTC),
        ("every second, seconds form", "* * * * * *", Tz::UTC),
    ];
    for (name, expression, zone) in cases {
        let schedule = Schedule::parse(expression).expect("valid");
        c.bench_function(&format!("next_fire {name}"), |b| {
            b.iter(|| next_fire(black_box(&schedule), zone, black_box(after)))
        });
    }
    // Just before New York's clocks go back: the slow path that re-enters the hour.
    let new_york: Tz = "America/New_York".parse().expect("a known zone");
    let schedule = Schedule::parse("* * * * * *").expect("valid");
    let before_fold = instant("2026-11-01T05:59:59Z");
    c.bench_function("next_fire every second, before a DST fold", |b| {
        b.iter(|| next_fire(black_box(&schedule), new_york, black_box(before_fold)))
    });
}

fn bench_missed_fires(c: &mut Criterion) {
    let schedule = Schedule::parse("* * * * * *").expect("valid");
    let last_run = instant("2026-10-23T10:00:00Z");
    let now = instant("2026-11-23T10:00:00Z");
    c.bench_function("missed_fires every second, a month behind (capped)", |b| {
        b.iter(|| {
            missed_fires(
                black_box(&schedule),
                Tz::UTC,
                Some(last_run),
                now,
                MissedPolicy::CatchUp,
            )
        })
    });
    let nightly = Schedule::parse("30 2 * * *").expect("valid");
    c.bench_function("missed_fires nightly, a month behind", |b| {
        b.iter(|| missed_fires(black_box(&nightly), Tz::UTC, Some(last_run), now, MissedPolicy::CatchUp))
    });
}

criterion_group!(benches, bench_next_fire, bench_missed_fires);
criterion_main!(benches);
