//! The run ledger on SQLite and PostgreSQL (issue 5): the store's `RunLedger` keeps
//! the contract the scheduler's `MemoryLedger` keeps, the database itself refuses
//! duplicate runs, and two schedulers sharing one database run each job exactly once
//! per scheduled time.

use crate::helpers::{on_both_backends, postgres_store, POSTGRES_ADMIN_URL};
use chrono::{DateTime, Utc};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tally::config::DatabaseUrl;
use tally::runs::{
    Claim, ClaimRequest, InstanceId, JobKind, JobName, JobRunner, JobSpec, Lease, LedgerError, RunEnd, RunFigures,
    RunId, RunLedger, RunOutcome, RunSettings, RunStatus, SystemClock,
};
use tally::scheduler::daemon::{self, DaemonSettings};
use tally::scheduler::{JobDefinition, MissedPolicy, Schedule};
use tally::store::Store;
use tokio_util::sync::CancellationToken;

fn at(text: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(text)
        .expect("test instants are RFC 3339")
        .with_timezone(&Utc)
}

fn job_name(name: &str) -> JobName {
    JobName::parse(name).expect("valid job name")
}

/// A claim of `job` for `scheduled_for` by `instance` (on host `host-<instance>`) at
/// `now`, holding the lease until `lease_until`.
fn request(job: &str, scheduled_for: &str, instance: &str, now: &str, lease_until: &str) -> ClaimRequest {
    ClaimRequest {
        job: job_name(job),
        scheduled_for: at(scheduled_for),
        instance: InstanceId::new(instance),
        host: format!("host-{instance}"),
        now: at(now),
        lease_until: at(lease_until),
    }
}

async fn won(store: &Store, request: &ClaimRequest) -> RunId {
    match store.claim(request).await {
        Ok(Claim::Won(id)) => id,
        other => panic!("expected the claim to be won, got {other:?}"),
    }
}

fn succeeded() -> RunOutcome {
    RunOutcome::succeeded(RunFigures {
        accounts: 3,
        changes: 2,
        failures: 0,
    })
}

const SUCCEEDED: RunStatus = RunStatus::Ended(RunEnd::Succeeded);

on_both_backends!(
    a_time_is_claimed_once_and_a_finished_run_is_never_claimed_again,
    another_time_of_a_running_job_is_busy_until_the_run_ends,
    an_expired_lease_is_taken_over_and_its_old_holder_can_neither_renew_nor_finish,
    a_renewed_lease_keeps_the_run_from_being_taken_over,
    abandoned_names_a_running_run_only_once_its_lease_expired,
    last_scheduled_is_the_latest_recorded_time_whatever_its_status,
    recent_lists_runs_newest_first_with_their_figures_and_message,
    renewing_or_finishing_a_run_that_does_not_exist_is_an_error,
    the_database_itself_refuses_a_second_record_per_time_and_a_second_running_run,
    concurrent_claims_of_one_time_grant_it_to_exactly_one_claimant,
    a_scheduler_takes_over_the_run_of_a_dead_holder_and_runs_it_once,
    an_unreadable_run_row_is_reported_with_its_id_and_column,
    a_dead_holders_run_no_longer_blocks_a_one_shot_claim_for_another_time,
    claimants_of_a_job_whose_holder_died_are_granted_it_exactly_once,
);

async fn a_time_is_claimed_once_and_a_finished_run_is_never_claimed_again(store: &Store) {
    let first = request(
        "sync",
        "2026-11-23T10:00:00Z",
        "a",
        "2026-11-23T10:00:00Z",
        "2026-11-23T10:01:00Z",
    );
    let id = won(store, &first).await;
    let second = request(
        "sync",
        "2026-11-23T10:00:00Z",
        "b",
        "2026-11-23T10:00:01Z",
        "2026-11-23T10:01:01Z",
    );
    assert_eq!(store.claim(&second).await, Ok(Claim::AlreadyClaimed));
    // Another job is not affected by this one.
    let other_job = request(
        "billing",
        "2026-11-23T10:00:00Z",
        "b",
        "2026-11-23T10:00:01Z",
        "2026-11-23T10:01:01Z",
    );
    assert!(matches!(store.claim(&other_job).await, Ok(Claim::Won(other)) if other != id));

    let ended = at("2026-11-23T10:00:05Z");
    assert_eq!(
        store.finish(id, &first.instance, ended, &succeeded()).await,
        Ok(Lease::Held)
    );
    // A finished run is never taken over, however old its lease.
    let much_later = request(
        "sync",
        "2026-11-23T10:00:00Z",
        "c",
        "2026-11-24T00:00:00Z",
        "2026-11-24T00:01:00Z",
    );
    assert_eq!(store.claim(&much_later).await, Ok(Claim::AlreadyClaimed));
    // Nor finished twice.
    assert_eq!(
        store.finish(id, &first.instance, ended, &succeeded()).await,
        Ok(Lease::Lost)
    );

    let record = store
        .run_for(&job_name("sync"), at("2026-11-23T10:00:00Z"))
        .await
        .expect("readable")
        .expect("recorded");
    assert_eq!(record.id, id);
    assert_eq!(record.status, SUCCEEDED);
    assert_eq!(
        (record.started_at, record.ended_at),
        (at("2026-11-23T10:00:00Z"), Some(ended))
    );
    assert_eq!((record.host.as_str(), record.instance.as_str()), ("host-a", "a"));
    assert_eq!(record.figures, succeeded().figures);
    assert_eq!(record.takeovers, 0);
}

async fn another_time_of_a_running_job_is_busy_until_the_run_ends(store: &Store) {
    let first = request(
        "sync",
        "2026-11-23T10:00:00Z",
        "a",
        "2026-11-23T10:00:00Z",
        "2026-11-23T10:01:00Z",
    );
    let id = won(store, &first).await;
    let next = request(
        "sync",
        "2026-11-23T10:00:30Z",
        "b",
        "2026-11-23T10:00:30Z",
        "2026-11-23T10:01:30Z",
    );
    assert_eq!(
        store.claim(&next).await,
        Ok(Claim::Busy {
            scheduled_for: at("2026-11-23T10:00:00Z"),
            host: "host-a".to_owned(),
        })
    );
    // Busy left no record behind for the refused time.
    assert_eq!(
        store.run_for(&next.job, next.scheduled_for).await.expect("readable"),
        None
    );

    let ended = at("2026-11-23T10:00:40Z");
    assert_eq!(
        store.finish(id, &first.instance, ended, &succeeded()).await,
        Ok(Lease::Held)
    );
    let after = request(
        "sync",
        "2026-11-23T10:00:30Z",
        "b",
        "2026-11-23T10:00:41Z",
        "2026-11-23T10:01:41Z",
    );
    assert!(matches!(store.claim(&after).await, Ok(Claim::Won(_))));
}

async fn an_expired_lease_is_taken_over_and_its_old_holder_can_neither_renew_nor_finish(store: &Store) {
    let first = request(
        "sync",
        "2026-11-23T10:00:00Z",
        "a",
        "2026-11-23T10:00:00Z",
        "2026-11-23T10:01:00Z",
    );
    let id = won(store, &first).await;
    // At the lease's last second it is still held.
    let on_time = request(
        "sync",
        "2026-11-23T10:00:00Z",
        "b",
        "2026-11-23T10:01:00Z",
        "2026-11-23T10:02:00Z",
    );
    assert_eq!(store.claim(&on_time).await, Ok(Claim::AlreadyClaimed));
    let late = request(
        "sync",
        "2026-11-23T10:00:00Z",
        "b",
        "2026-11-23T10:01:01Z",
        "2026-11-23T10:02:01Z",
    );
    match store.claim(&late).await {
        Ok(Claim::TakenOver(dead)) => assert_eq!(
            (dead.run, dead.instance.as_str(), dead.host.as_str()),
            (id, "a", "host-a"),
            "the takeover names the dead holder"
        ),
        other => panic!("expected a takeover, got {other:?}"),
    }
    // A third instance arriving just after finds the new lease live.
    let third = request(
        "sync",
        "2026-11-23T10:00:00Z",
        "c",
        "2026-11-23T10:01:02Z",
        "2026-11-23T10:02:02Z",
    );
    assert_eq!(store.claim(&third).await, Ok(Claim::AlreadyClaimed));

    let (a, b) = (InstanceId::new("a"), InstanceId::new("b"));
    assert_eq!(store.renew(id, &a, at("2026-11-23T10:05:00Z")).await, Ok(Lease::Lost));
    assert_eq!(
        store.finish(id, &a, at("2026-11-23T10:01:03Z"), &succeeded()).await,
        Ok(Lease::Lost)
    );
    let record = store
        .run_for(&late.job, late.scheduled_for)
        .await
        .expect("readable")
        .expect("recorded");
    assert_eq!(
        record.status,
        RunStatus::Running,
        "the dead holder's finish wrote nothing"
    );
    assert_eq!((record.instance.as_str(), record.host.as_str()), ("b", "host-b"));
    assert_eq!((record.started_at, record.takeovers), (at("2026-11-23T10:01:01Z"), 1));

    let interrupted = RunOutcome::ended(RunEnd::Interrupted, RunFigures::default(), "stopped by SIGTERM");
    assert_eq!(
        store.finish(id, &b, at("2026-11-23T10:01:04Z"), &interrupted).await,
        Ok(Lease::Held)
    );
    let record = store
        .run_for(&late.job, late.scheduled_for)
        .await
        .expect("readable")
        .expect("recorded");
    assert_eq!(record.status, RunStatus::Ended(RunEnd::Interrupted));
    assert_eq!(record.message.as_deref(), Some("stopped by SIGTERM"));
}

async fn a_renewed_lease_keeps_the_run_from_being_taken_over(store: &Store) {
    let first = request(
        "sync",
        "2026-11-23T10:00:00Z",
        "a",
        "2026-11-23T10:00:00Z",
        "2026-11-23T10:01:00Z",
    );
    let id = won(store, &first).await;
    assert_eq!(
        store.renew(id, &first.instance, at("2026-11-23T10:02:00Z")).await,
        Ok(Lease::Held)
    );
    let past_first_lease = request(
        "sync",
        "2026-11-23T10:00:00Z",
        "b",
        "2026-11-23T10:01:30Z",
        "2026-11-23T10:02:30Z",
    );
    assert_eq!(store.claim(&past_first_lease).await, Ok(Claim::AlreadyClaimed));
    assert_eq!(store.abandoned(&first.job, at("2026-11-23T10:01:30Z")).await, Ok(None));
    let record = store
        .run_for(&first.job, first.scheduled_for)
        .await
        .expect("readable")
        .expect("recorded");
    assert_eq!(record.lease_until, at("2026-11-23T10:02:00Z"));
}

async fn abandoned_names_a_running_run_only_once_its_lease_expired(store: &Store) {
    let job = job_name("sync");
    assert_eq!(store.abandoned(&job, at("2026-11-23T10:00:00Z")).await, Ok(None));
    let first = request(
        "sync",
        "2026-11-23T10:00:00Z",
        "a",
        "2026-11-23T10:00:00Z",
        "2026-11-23T10:01:00Z",
    );
    let id = won(store, &first).await;
    assert_eq!(store.abandoned(&job, at("2026-11-23T10:01:00Z")).await, Ok(None));
    assert_eq!(
        store.abandoned(&job, at("2026-11-23T10:01:01Z")).await,
        Ok(Some(at("2026-11-23T10:00:00Z")))
    );
    assert_eq!(
        store.abandoned(&job_name("billing"), at("2026-11-23T11:00:00Z")).await,
        Ok(None)
    );
    assert_eq!(
        store
            .finish(id, &first.instance, at("2026-11-23T10:00:10Z"), &succeeded())
            .await,
        Ok(Lease::Held)
    );
    assert_eq!(store.abandoned(&job, at("2026-11-23T11:00:00Z")).await, Ok(None));
}

async fn last_scheduled_is_the_latest_recorded_time_whatever_its_status(store: &Store) {
    let job = job_name("sync");
    assert_eq!(store.last_scheduled(&job).await, Ok(None));
    let early = request(
        "sync",
        "2026-11-23T09:00:00Z",
        "a",
        "2026-11-23T09:00:00Z",
        "2026-11-23T09:01:00Z",
    );
    let early_id = won(store, &early).await;
    let failed = RunOutcome::ended(RunEnd::Failed, RunFigures::default(), "boom");
    assert_eq!(
        store.finish(early_id, &early.instance, early.now, &failed).await,
        Ok(Lease::Held)
    );
    let late = request(
        "sync",
        "2026-11-23T10:00:00Z",
        "a",
        "2026-11-23T10:00:00Z",
        "2026-11-23T10:01:00Z",
    );
    won(store, &late).await;
    // A one-shot run for an earlier time, claimed after: the latest time still wins.
    let other = request(
        "billing",
        "2026-11-23T11:00:00Z",
        "a",
        "2026-11-23T10:00:00Z",
        "2026-11-23T10:01:00Z",
    );
    won(store, &other).await;

    assert_eq!(store.last_scheduled(&job).await, Ok(Some(at("2026-11-23T10:00:00Z"))));
    assert_eq!(
        store.last_scheduled(&job_name("billing")).await,
        Ok(Some(at("2026-11-23T11:00:00Z")))
    );
}

async fn recent_lists_runs_newest_first_with_their_figures_and_message(store: &Store) {
    let mut expected = Vec::new();
    for (minute, job) in [(0, "sync"), (1, "billing"), (2, "sync"), (3, "reconcile")] {
        let time = format!("2026-11-23T10:0{minute}:00Z");
        let lease = format!("2026-11-23T10:0{minute}:30Z");
        let claim = request(job, &time, "a", &time, &lease);
        let id = won(store, &claim).await;
        let outcome = RunOutcome::ended(
            RunEnd::DataErrors,
            RunFigures {
                accounts: 10 + minute,
                changes: minute,
                failures: 1,
            },
            format!("account a{minute} has a bad plan"),
        );
        let ended = at(&time) + chrono::Duration::seconds(5);
        assert_eq!(
            store.finish(id, &claim.instance, ended, &outcome).await,
            Ok(Lease::Held)
        );
        expected.push((id, job, outcome));
    }
    expected.reverse();

    let recent = store.recent(3).await.expect("readable");
    let seen: Vec<(RunId, &str)> = recent.iter().map(|record| (record.id, record.job.as_str())).collect();
    let wanted: Vec<(RunId, &str)> = expected.iter().take(3).map(|(id, job, _)| (*id, *job)).collect();
    assert_eq!(seen, wanted);
    for (record, (_, _, outcome)) in recent.iter().zip(&expected) {
        assert_eq!(record.status, RunStatus::Ended(RunEnd::DataErrors));
        assert_eq!(record.figures, outcome.figures);
        assert_eq!(record.message, outcome.message);
    }
    assert_eq!(store.recent_runs(10).await.expect("readable").len(), 4);
}

async fn renewing_or_finishing_a_run_that_does_not_exist_is_an_error(store: &Store) {
    let nobody = InstanceId::new("a");
    assert!(matches!(
        store.renew(RunId(4242), &nobody, at("2026-11-23T10:00:00Z")).await,
        Err(LedgerError::Failed(_))
    ));
    assert!(matches!(
        store
            .finish(RunId(4242), &nobody, at("2026-11-23T10:00:00Z"), &succeeded())
            .await,
        Err(LedgerError::Failed(_))
    ));
}

async fn the_database_itself_refuses_a_second_record_per_time_and_a_second_running_run(store: &Store) {
    // Gregorian seconds of 2026-11-23T10:00:00Z and a minute later.
    let (ten, ten_one) = (63_962_647_200_i64, 63_962_647_260_i64);
    let insert = |scheduled_for: i64, status: &str| {
        format!(
            "INSERT INTO runs (job, scheduled_for, started_at, status, host, instance_id, lease_until) \
             VALUES ('sync', {scheduled_for}, {scheduled_for}, '{status}', 'h', 'i', {scheduled_for})"
        )
    };
    store
        .execute_script(&insert(ten, "running"))
        .await
        .expect("the first run inserts");
    assert!(
        store.execute_script(&insert(ten_one, "running")).await.is_err(),
        "a second running run of the job"
    );
    assert!(
        store.execute_script(&insert(ten, "succeeded")).await.is_err(),
        "a second record for the same time"
    );
    store
        .execute_script(&insert(ten_one, "succeeded"))
        .await
        .expect("an ended run of another time is fine");
    assert!(
        store.execute_script(&insert(ten_one + 60, "partial")).await.is_err(),
        "an unknown status"
    );
    assert_eq!(store.query_count("SELECT COUNT(*) FROM runs").await.expect("count"), 2);
    // The ledger reads back what it did not write itself.
    assert_eq!(
        store.last_scheduled(&job_name("sync")).await,
        Ok(Some(at("2026-11-23T10:01:00Z")))
    );
}

/// Issue 11: after `kill -9` of `tally run billing` its row stays `running`; once its
/// lease expired, the next one-shot run (another second, so another time) is not
/// refused: the dead run is closed as interrupted, naming its holder, and the new run
/// holds its own record.
async fn a_dead_holders_run_no_longer_blocks_a_one_shot_claim_for_another_time(store: &Store) {
    let killed = request(
        "billing",
        "2026-11-23T02:30:00Z",
        "killed",
        "2026-11-23T02:30:00Z",
        "2026-11-23T02:31:00Z",
    );
    let dead_run = won(store, &killed).await;
    // While the lease lasts, the job is busy: the holder may be alive.
    let too_soon = request(
        "billing",
        "2026-11-23T02:31:00Z",
        "cli",
        "2026-11-23T02:31:00Z",
        "2026-11-23T02:32:00Z",
    );
    assert_eq!(
        store.claim(&too_soon).await,
        Ok(Claim::Busy {
            scheduled_for: at("2026-11-23T02:30:00Z"),
            host: "host-killed".to_owned(),
        })
    );

    let after_expiry = request(
        "billing",
        "2026-11-23T02:31:01Z",
        "cli",
        "2026-11-23T02:31:01Z",
        "2026-11-23T02:32:01Z",
    );
    let (run, abandoned) = match store.claim(&after_expiry).await {
        Ok(Claim::Replaced { run, abandoned }) => (run, abandoned),
        other => panic!("expected the dead holder's run to be replaced, got {other:?}"),
    };
    assert_ne!(run, dead_run);
    assert_eq!(
        (
            abandoned.run,
            abandoned.instance.as_str(),
            abandoned.host.as_str(),
            abandoned.scheduled_for,
            abandoned.lease_until
        ),
        (
            dead_run,
            "killed",
            "host-killed",
            at("2026-11-23T02:30:00Z"),
            at("2026-11-23T02:31:00Z")
        )
    );
    let dead = store
        .run_for(&killed.job, killed.scheduled_for)
        .await
        .expect("readable")
        .expect("recorded");
    assert_eq!(dead.status, RunStatus::Ended(RunEnd::Interrupted));
    assert_eq!(dead.ended_at, Some(at("2026-11-23T02:31:01Z")));
    let message = dead.message.unwrap_or_default();
    assert!(
        message.contains("killed on host-killed") && message.contains("closed by cli on host-cli"),
        "{message}"
    );
    let mine = store
        .run_for(&after_expiry.job, after_expiry.scheduled_for)
        .await
        .expect("readable")
        .expect("recorded");
    assert_eq!(
        (mine.id, mine.status, mine.instance.as_str()),
        (run, RunStatus::Running, "cli")
    );
    // The dead holder can neither renew nor finish what it no longer holds.
    let dead_holder = InstanceId::new("killed");
    assert_eq!(
        store.renew(dead_run, &dead_holder, at("2026-11-23T02:35:00Z")).await,
        Ok(Lease::Lost)
    );
    assert_eq!(
        store
            .finish(dead_run, &dead_holder, at("2026-11-23T02:35:00Z"), &succeeded())
            .await,
        Ok(Lease::Lost)
    );
    // The new run's lease is live: a third claimant is refused, naming its host.
    let third = request(
        "billing",
        "2026-11-23T02:31:02Z",
        "other",
        "2026-11-23T02:31:02Z",
        "2026-11-23T02:32:02Z",
    );
    assert_eq!(
        store.claim(&third).await,
        Ok(Claim::Busy {
            scheduled_for: at("2026-11-23T02:31:01Z"),
            host: "host-cli".to_owned(),
        })
    );
}

async fn claimants_of_a_job_whose_holder_died_are_granted_it_exactly_once(store: &Store) {
    let killed = request(
        "billing",
        "2026-11-23T02:30:00Z",
        "killed",
        "2026-11-23T02:30:00Z",
        "2026-11-23T02:31:00Z",
    );
    won(store, &killed).await;
    let mut claims = tokio::task::JoinSet::new();
    for claimant in 0..8 {
        let store = store.clone();
        // Each at its own second, as one-shot runs started together would be; half
        // of them on the dead run's own time, as a scheduler taking it over would.
        let scheduled_for = match claimant % 2 {
            0 => "2026-11-23T02:30:00Z".to_owned(),
            _ => format!("2026-11-23T02:35:0{claimant}Z"),
        };
        let claim = request(
            "billing",
            &scheduled_for,
            &format!("i{claimant}"),
            "2026-11-23T02:35:00Z",
            "2026-11-23T02:36:00Z",
        );
        claims.spawn(async move { store.claim(&claim).await });
    }
    let mut winners = Vec::new();
    while let Some(joined) = claims.join_next().await {
        match joined.expect("claim task") {
            Ok(claim @ (Claim::Won(_) | Claim::TakenOver(_) | Claim::Replaced { .. })) => winners.push(claim),
            Ok(Claim::AlreadyClaimed | Claim::Busy { .. }) => {}
            // SQLite may report a write lock held by a concurrent claimant as busy;
            // the claimant retries later, as the run path does.
            Err(LedgerError::Unavailable(_)) => {}
            Err(other) => panic!("unexpected claim result {other:?}"),
        }
    }
    assert_eq!(winners.len(), 1, "{winners:?}");
    assert_eq!(
        store
            .query_count("SELECT COUNT(*) FROM runs WHERE status = 'running'")
            .await
            .expect("count"),
        1
    );
}

async fn concurrent_claims_of_one_time_grant_it_to_exactly_one_claimant(store: &Store) {
    let mut claims = tokio::task::JoinSet::new();
    for claimant in 0..8 {
        let store = store.clone();
        // Half claim 10:00, half 10:00:01: one winner in all, the others see the
        // record or the running run.
        let second = claimant % 2;
        let claim = request(
            "sync",
            &format!("2026-11-23T10:00:0{second}Z"),
            &format!("i{claimant}"),
            "2026-11-23T10:00:01Z",
            "2026-11-23T10:01:00Z",
        );
        claims.spawn(async move { store.claim(&claim).await });
    }
    let mut winners = 0;
    while let Some(joined) = claims.join_next().await {
        match joined.expect("claim task") {
            Ok(Claim::Won(_)) => winners += 1,
            Ok(Claim::AlreadyClaimed | Claim::Busy { .. }) => {}
            other => panic!("unexpected claim result {other:?}"),
        }
    }
    assert_eq!(winners, 1);
    assert_eq!(store.query_count("SELECT COUNT(*) FROM runs").await.expect("count"), 1);
}

async fn a_scheduler_takes_over_the_run_of_a_dead_holder_and_runs_it_once(store: &Store) {
    // A holder that claimed `tick` two minutes ago and stopped renewing a minute ago.
    let now = Utc::now();
    let dead_for = DateTime::<Utc>::from_timestamp(now.timestamp() - 120, 0).expect("in range");
    let dead = ClaimRequest {
        job: job_name("tick"),
        scheduled_for: dead_for,
        instance: InstanceId::new("dead"),
        host: "host-dead".to_owned(),
        now: dead_for,
        lease_until: dead_for + chrono::Duration::seconds(60),
    };
    let id = won(store, &dead).await;
    let calls = Arc::new(Mutex::new(Vec::new()));
    let runner = Arc::new(CountingRunner {
        instance: "b",
        calls: calls.clone(),
    });
    let mut tick = every_second("tick");
    // Skip, so that the only past time run is the abandoned one.
    tick.missed = MissedPolicy::Skip;
    let shutdown = CancellationToken::new();
    let stopper = shutdown.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(1_200)).await;
        stopper.cancel();
    });

    daemon::run(
        Arc::new(store.clone()),
        Arc::new(SystemClock),
        DaemonSettings::new(RunSettings::new(InstanceId::new("b"), "host-b")),
        runner,
        vec![tick],
        shutdown,
    )
    .await
    .expect("valid settings");

    let calls = calls.lock().expect("calls lock").clone();
    let of_dead_time: Vec<&Call> = calls.iter().filter(|call| call.scheduled_for == dead_for).collect();
    assert_eq!(of_dead_time.len(), 1, "{calls:?}");
    let record = store
        .run_for(&dead.job, dead_for)
        .await
        .expect("readable")
        .expect("recorded");
    assert_eq!(record.id, id);
    assert_eq!((record.status, record.takeovers), (SUCCEEDED, 1));
    assert_eq!((record.instance.as_str(), record.host.as_str()), ("b", "host-b"));
    // Nothing else of the past was run; the times since the start were, once each.
    assert!(calls
        .iter()
        .all(|call| call.scheduled_for == dead_for || call.scheduled_for > now));
    assert_eq!(store.recent_runs(100).await.expect("readable").len(), calls.len());
}

async fn an_unreadable_run_row_is_reported_with_its_id_and_column(store: &Store) {
    let claim = request(
        "sync",
        "2026-11-23T10:00:00Z",
        "a",
        "2026-11-23T10:00:00Z",
        "2026-11-23T10:01:00Z",
    );
    let id = won(store, &claim).await;
    store
        .execute_script(&format!("UPDATE runs SET figures = 'not json' WHERE id = {id}"))
        .await
        .expect("update");

    let error = store
        .recent_runs(10)
        .await
        .expect_err("bad figures are refused")
        .to_string();
    assert!(
        error.contains(&format!("run {id}")) && error.contains("figures"),
        "{error}"
    );
    assert!(matches!(store.recent(10).await, Err(LedgerError::Failed(_))));
}

/// Two handles on one database and what keeps it alive: two pools, as two scheduler
/// processes would have.
struct SharedDatabase {
    first: Store,
    second: Store,
    _sqlite_dir: Option<tempfile::TempDir>,
    _postgres: Option<crate::helpers::TestStore>,
}

async fn shared_sqlite() -> SharedDatabase {
    let directory = tempfile::tempdir().expect("temp dir");
    let url = DatabaseUrl::new(format!("sqlite://{}", directory.path().join("tally.db").display()));
    let first = Store::open(&url).await.expect("first handle opens");
    let second = Store::open(&url).await.expect("second handle opens");
    SharedDatabase {
        first,
        second,
        _sqlite_dir: Some(directory),
        _postgres: None,
    }
}

/// A second handle on the database of `postgres_store()` (which creates it and drops
/// it afterwards). The helper keeps the name to itself; the database's oid leads
/// back to it through the one-integer query the store offers.
async fn shared_postgres() -> Option<SharedDatabase> {
    use sqlx::Connection;
    let database = postgres_store().await?;
    let oid = database
        .store
        .query_count("SELECT oid::bigint FROM pg_database WHERE datname = current_database()")
        .await
        .expect("own database oid");
    let mut admin = sqlx::PgConnection::connect(POSTGRES_ADMIN_URL)
        .await
        .expect("admin connection");
    let name: String = sqlx::query_scalar("SELECT datname::text FROM pg_database WHERE oid::bigint = $1")
        .bind(oid)
        .fetch_one(&mut admin)
        .await
        .expect("database name");
    admin.close().await.expect("close admin connection");
    let url = DatabaseUrl::new(format!("postgres://postgres@127.0.0.1:5432/{name}"));
    let second = Store::open(&url).await.expect("second handle opens");
    Some(SharedDatabase {
        first: database.store.clone(),
        second,
        _sqlite_dir: None,
        _postgres: Some(database),
    })
}

/// One call of a job, as a runner saw it.
#[derive(Debug, Clone)]
struct Call {
    job: String,
    scheduled_for: DateTime<Utc>,
    instance: &'static str,
    started: Instant,
    ended: Instant,
}

/// Counts every call, and makes `slow` take longer than its period so that the two
/// schedulers meet a running job.
struct CountingRunner {
    instance: &'static str,
    calls: Arc<Mutex<Vec<Call>>>,
}

impl JobRunner for CountingRunner {
    async fn run(&self, job: &JobSpec, scheduled_for: DateTime<Utc>, _shutdown: CancellationToken) -> RunOutcome {
        let started = Instant::now();
        let work = if job.name.as_str() == "slow" {
            Duration::from_millis(1_300)
        } else {
            Duration::from_millis(50)
        };
        tokio::time::sleep(work).await;
        self.calls.lock().expect("calls lock").push(Call {
            job: job.name.to_string(),
            scheduled_for,
            instance: self.instance,
            started,
            ended: Instant::now(),
        });
        RunOutcome::succeeded(RunFigures {
            accounts: 1,
            changes: 0,
            failures: 0,
        })
    }
}

fn every_second(name: &str) -> JobDefinition {
    JobDefinition {
        spec: JobSpec {
            name: job_name(name),
            kind: JobKind::Sync,
            accounts: None,
            batch_size: None,
            time_limit: None,
            reconcile_changed: false,
        },
        schedule: Schedule::parse("* * * * * *").expect("valid schedule"),
        timezone: chrono_tz::Tz::UTC,
        missed: MissedPolicy::CatchUp,
        enabled: true,
        source: PathBuf::from(format!("jobs/{name}.toml")),
    }
}

/// Two daemons, one per handle, run `tick` (50 ms of work every second) and `slow`
/// (1.3 s of work every second) for about three seconds of real time.
async fn two_schedulers_run_each_job_once_per_scheduled_time(database: SharedDatabase) {
    let calls = Arc::new(Mutex::new(Vec::new()));
    let shutdown = CancellationToken::new();
    let mut daemons = tokio::task::JoinSet::new();
    for (instance, store) in [("a", database.first.clone()), ("b", database.second.clone())] {
        let settings = DaemonSettings::new(RunSettings::new(InstanceId::new(instance), format!("host-{instance}")));
        let runner = Arc::new(CountingRunner {
            instance,
            calls: calls.clone(),
        });
        daemons.spawn(daemon::run(
            Arc::new(store),
            Arc::new(SystemClock),
            settings,
            runner,
            vec![every_second("tick"), every_second("slow")],
            shutdown.clone(),
        ));
    }
    tokio::time::sleep(Duration::from_millis(3_200)).await;
    shutdown.cancel();
    while let Some(joined) = daemons.join_next().await {
        joined.expect("daemon task").expect("valid settings");
    }

    let calls = calls.lock().expect("calls lock").clone();
    let records = database.first.recent_runs(1_000).await.expect("runs readable");
    // Each (job, time) ran exactly once, across both schedulers.
    let mut per_time: BTreeMap<(String, DateTime<Utc>), Vec<&Call>> = BTreeMap::new();
    for call in &calls {
        per_time
            .entry((call.job.clone(), call.scheduled_for))
            .or_default()
            .push(call);
    }
    for ((job, time), runs) in &per_time {
        assert_eq!(runs.len(), 1, "{job} at {time} ran {} times: {runs:?}", runs.len());
    }
    let ticks = per_time.keys().filter(|(job, _)| job == "tick").count();
    assert!(ticks >= 2, "tick ran for {ticks} times in 3.2 s: {calls:?}");
    assert!(per_time.keys().any(|(job, _)| job == "slow"), "slow never ran");
    // One record per run, recorded by the instance that ran it, and ended.
    assert_eq!(records.len(), calls.len(), "records: {records:?}\ncalls: {calls:?}");
    for record in &records {
        let key = (record.job.to_string(), record.scheduled_for);
        let runs = per_time
            .get(&key)
            .unwrap_or_else(|| panic!("a record without a run: {record:?}"));
        assert_eq!(record.instance.as_str(), runs[0].instance, "{record:?}");
        assert_eq!(record.status, SUCCEEDED, "{record:?}");
    }
    let distinct = database
        .second
        .query_count("SELECT COUNT(*) FROM (SELECT DISTINCT job, scheduled_for FROM runs) AS d")
        .await
        .expect("count");
    assert_eq!(usize::try_from(distinct).expect("small"), records.len());
    // The slow job never ran twice at once, though both schedulers fired it every second.
    let mut slow: Vec<&Call> = calls.iter().filter(|call| call.job == "slow").collect();
    slow.sort_by_key(|call| call.started);
    for pair in slow.windows(2) {
        assert!(pair[0].ended <= pair[1].started, "overlapping slow runs: {pair:?}");
    }
}

#[tokio::test]
async fn two_schedulers_on_one_sqlite_file_run_each_job_once_per_scheduled_time() {
    two_schedulers_run_each_job_once_per_scheduled_time(shared_sqlite().await).await;
}

#[tokio::test]
async fn two_schedulers_on_the_same_postgresql_produce_exactly_one_run_per_job_and_time() {
    let Some(database) = shared_postgres().await else {
        return;
    };
    two_schedulers_run_each_job_once_per_scheduled_time(database).await;
}
