//! The run ledger: every run of a job, scheduled or one-shot, recorded in the `runs`
//! table (`sql/*/0003_runs.sql`), and the store's implementation of the
//! [`RunLedger`] of `runs` on both backends.
//!
//! Arbitration between scheduler instances rests on the database, not on timing: the
//! unique key on (job, scheduled_for) lets one instance create an occurrence's record
//! (`INSERT ... ON CONFLICT DO NOTHING`), the partial unique index on running rows
//! refuses a second running run of a job, and every change of hands is a conditional
//! `UPDATE` whose row count says who won: taking over a record whose lease expired,
//! or closing as interrupted another running record of the job whose lease expired
//! (its holder died) so that the claim's own record can be inserted. No statement here holds a transaction
//! open across round trips: each is atomic on its own, so SQLite never has to upgrade
//! a read lock (which fails at once with `SQLITE_BUSY` instead of waiting) and
//! PostgreSQL never holds row locks while the code thinks.
//!
//! Times are stored as Gregorian seconds like every other time in the schema, so they
//! are read back truncated to the second. Fire times are whole seconds; a lease read
//! back a fraction early only delays a takeover by under a second.
//!
//! Must not: decide when a job runs, run it, or read the clock (`now` is passed in).

use super::{on_conn, step, Store, StoreError};
use crate::domain::summary::GregorianSeconds;
use crate::runs::{
    Abandoned, Claim, ClaimRequest, InstanceId, JobError, JobName, Lease, LedgerError, RunEnd, RunFigures, RunId,
    RunLedger, RunOutcome, RunRecord, RunStatus,
};
use chrono::{DateTime, Utc};

/// How many times a claim re-reads the job's runs when they changed between its
/// statements (a run ended or was claimed meanwhile). Each retry follows a real change
/// of state by another instance, so a few are plenty; past them the claim reports the
/// ledger unavailable and the daemon tries again after its pause.
const CLAIM_ATTEMPTS: usize = 5;

const RUN_COLUMNS: &str = "id, job, scheduled_for, started_at, ended_at, status, figures, message, host, \
                           instance_id, lease_until, takeovers";

fn seconds(time: DateTime<Utc>) -> i64 {
    GregorianSeconds::from_utc(time).0
}

/// A stored time read back; `what` names the column and row for the error.
fn instant(gregorian: i64, what: impl FnOnce() -> String) -> Result<DateTime<Utc>, StoreError> {
    DateTime::<Utc>::from_timestamp(GregorianSeconds(gregorian).unix(), 0)
        .ok_or_else(|| StoreError::InvalidRow(format!("{}: {gregorian} is out of range", what())))
}

/// The `figures` column: a JSON object, so that `tally runs --json` and an operator's
/// SQL can read it without knowing the struct.
#[derive(serde::Serialize, serde::Deserialize)]
struct FiguresJson {
    #[serde(default)]
    accounts: u64,
    #[serde(default)]
    changes: u64,
    #[serde(default)]
    failures: u64,
}

fn figures_text(figures: &RunFigures) -> String {
    let json = FiguresJson {
        accounts: figures.accounts,
        changes: figures.changes,
        failures: figures.failures,
    };
    serde_json::to_string(&json).expect("three integers always serialise")
}

/// Who holds a run record: what a claim reads before it changes hands.
#[derive(sqlx::FromRow)]
struct HolderRow {
    id: i64,
    scheduled_for: i64,
    status: String,
    host: String,
    instance_id: String,
    lease_until: i64,
}

impl HolderRow {
    fn abandoned(&self, job: &str) -> Result<Abandoned, StoreError> {
        let what = |column: &str| format!("run {} of job {job}: {column}", self.id);
        Ok(Abandoned {
            run: RunId(self.id),
            scheduled_for: instant(self.scheduled_for, || what("scheduled_for"))?,
            host: self.host.clone(),
            instance: InstanceId::new(self.instance_id.clone()),
            lease_until: instant(self.lease_until, || what("lease_until"))?,
        })
    }
}

#[derive(sqlx::FromRow)]
struct RunRow {
    id: i64,
    job: String,
    scheduled_for: i64,
    started_at: i64,
    ended_at: Option<i64>,
    status: String,
    figures: String,
    message: Option<String>,
    host: String,
    instance_id: String,
    lease_until: i64,
    takeovers: i64,
}

impl RunRow {
    fn parse(self) -> Result<RunRecord, StoreError> {
        let id = self.id;
        let invalid = |problem: String| StoreError::InvalidRow(format!("run {id}: {problem}"));
        let job = JobName::parse(self.job).map_err(invalid)?;
        let status =
            RunStatus::parse(&self.status).ok_or_else(|| invalid(format!("unknown status {:?}", self.status)))?;
        let figures: FiguresJson =
            serde_json::from_str(&self.figures).map_err(|error| invalid(format!("figures: {error}")))?;
        let takeovers = u32::try_from(self.takeovers).map_err(|_| invalid(format!("takeovers {}", self.takeovers)))?;
        Ok(RunRecord {
            id: RunId(id),
            job,
            scheduled_for: instant(self.scheduled_for, || format!("run {id} scheduled_for"))?,
            started_at: instant(self.started_at, || format!("run {id} started_at"))?,
            ended_at: self
                .ended_at
                .map(|ended_at| instant(ended_at, || format!("run {id} ended_at")))
                .transpose()?,
            status,
            figures: RunFigures {
                accounts: figures.accounts,
                changes: figures.changes,
                failures: figures.failures,
            },
            message: self.message,
            host: self.host,
            instance: InstanceId::new(self.instance_id),
            lease_until: instant(self.lease_until, || format!("run {id} lease_until"))?,
            takeovers,
        })
    }
}

impl Store {
    /// The most recent runs, newest first (by start, then id): what `tally runs` lists.
    pub async fn recent_runs(&self, limit: usize) -> Result<Vec<RunRecord>, StoreError> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let sql = format!("SELECT {RUN_COLUMNS} FROM runs ORDER BY started_at DESC, id DESC LIMIT $1");
        let mut conn = self.acquire().await?;
        let rows: Vec<RunRow> = on_conn!(&mut conn, |c| {
            sqlx::query_as(&sql)
                .bind(limit)
                .fetch_all(&mut **c)
                .await
                .map_err(step("listing runs"))?
        });
        rows.into_iter().map(RunRow::parse).collect()
    }

    /// The recorded runs of one job for one scheduled time (at most one, by the
    /// unique key), for callers that follow a single run.
    pub async fn run_for(&self, job: &JobName, scheduled_for: DateTime<Utc>) -> Result<Option<RunRecord>, StoreError> {
        let sql = format!("SELECT {RUN_COLUMNS} FROM runs WHERE job = $1 AND scheduled_for = $2");
        let mut conn = self.acquire().await?;
        let row: Option<RunRow> = on_conn!(&mut conn, |c| {
            sqlx::query_as(&sql)
                .bind(job.as_str())
                .bind(seconds(scheduled_for))
                .fetch_optional(&mut **c)
                .await
                .map_err(step("reading a run"))?
        });
        row.map(RunRow::parse).transpose()
    }

    /// One pass of [`RunLedger::claim`]; `None` when the job's runs changed between
    /// its statements and the pass must be repeated. A dead holder's run closed by
    /// this pass is put in `closed`, so that the claim that follows names it.
    async fn claim_pass(
        &self,
        request: &ClaimRequest,
        closed: &mut Option<Abandoned>,
    ) -> Result<Option<Claim>, StoreError> {
        let job = request.job.as_str();
        let scheduled_for = seconds(request.scheduled_for);
        let now = seconds(request.now);
        let lease_until = seconds(request.lease_until);
        let mut conn = self.acquire().await?;
        // Refused without a word by either unique index: this occurrence's record
        // exists, or another run of the job is running.
        let inserted: Option<i64> = on_conn!(&mut conn, |c| {
            sqlx::query_scalar(
                "INSERT INTO runs (job, scheduled_for, started_at, status, host, instance_id, lease_until) \
                 VALUES ($1, $2, $3, 'running', $4, $5, $6) ON CONFLICT DO NOTHING RETURNING id",
            )
            .bind(job)
            .bind(scheduled_for)
            .bind(now)
            .bind(&request.host)
            .bind(request.instance.as_str())
            .bind(lease_until)
            .fetch_optional(&mut **c)
            .await
            .map_err(step("claiming a run"))?
        });
        if let Some(id) = inserted {
            return Ok(Some(match closed.take() {
                Some(abandoned) => Claim::Replaced {
                    run: RunId(id),
                    abandoned,
                },
                None => Claim::Won(RunId(id)),
            }));
        }
        let existing: Option<HolderRow> = on_conn!(&mut conn, |c| {
            sqlx::query_as(
                "SELECT id, scheduled_for, status, host, instance_id, lease_until FROM runs \
                 WHERE job = $1 AND scheduled_for = $2",
            )
            .bind(job)
            .bind(scheduled_for)
            .fetch_optional(&mut **c)
            .await
            .map_err(step("reading a claimed run"))?
        });
        if let Some(holder) = existing {
            // A finished run is never run again for the same time, however old; a
            // running one only once its holder stopped renewing.
            if holder.status != "running" || holder.lease_until >= now {
                return Ok(Some(Claim::AlreadyClaimed));
            }
            // Conditional on the same holder's lease still being expired: of two
            // instances taking over at once, the second matches no row.
            let taken = on_conn!(&mut conn, |c| {
                sqlx::query(
                    "UPDATE runs SET instance_id = $1, host = $2, started_at = $3, lease_until = $4, \
                     takeovers = takeovers + 1 \
                     WHERE id = $5 AND instance_id = $6 AND status = 'running' AND lease_until < $3",
                )
                .bind(request.instance.as_str())
                .bind(&request.host)
                .bind(now)
                .bind(lease_until)
                .bind(holder.id)
                .bind(&holder.instance_id)
                .execute(&mut **c)
                .await
                .map_err(step("taking over a run"))?
                .rows_affected()
            });
            return Ok(Some(if taken == 1 {
                Claim::TakenOver(holder.abandoned(job)?)
            } else {
                Claim::AlreadyClaimed
            }));
        }
        let running: Option<HolderRow> = on_conn!(&mut conn, |c| {
            sqlx::query_as(
                "SELECT id, scheduled_for, status, host, instance_id, lease_until FROM runs \
                 WHERE job = $1 AND status = 'running'",
            )
            .bind(job)
            .fetch_optional(&mut **c)
            .await
            .map_err(step("reading the running run"))?
        });
        let Some(holder) = running else {
            // The run that blocked the insert ended since: claim again.
            return Ok(None);
        };
        if holder.lease_until >= now {
            return Ok(Some(Claim::Busy {
                scheduled_for: instant(holder.scheduled_for, || format!("the running run of job {job}"))?,
                host: holder.host,
            }));
        }
        // Its holder died: close its run as interrupted, naming it, then claim again.
        // Conditional like a takeover, so that only one claimant closes it.
        let abandoned = holder.abandoned(job)?;
        let closed_now = on_conn!(&mut conn, |c| {
            sqlx::query(
                "UPDATE runs SET status = $1, ended_at = $2, message = $3 \
                 WHERE id = $4 AND instance_id = $5 AND status = 'running' AND lease_until < $2",
            )
            .bind(RunStatus::Ended(RunEnd::Interrupted).as_str())
            .bind(now)
            .bind(abandoned.closing_message(request))
            .bind(holder.id)
            .bind(&holder.instance_id)
            .execute(&mut **c)
            .await
            .map_err(step("closing an abandoned run"))?
            .rows_affected()
        });
        if closed_now == 1 {
            *closed = Some(abandoned);
        }
        Ok(None)
    }

    /// Whether run `id` exists: tells a lost lease from a run that never was.
    async fn run_exists(&self, run: RunId) -> Result<bool, StoreError> {
        let mut conn = self.acquire().await?;
        let count: i64 = on_conn!(&mut conn, |c| {
            sqlx::query_scalar("SELECT COUNT(*) FROM runs WHERE id = $1")
                .bind(run.0)
                .fetch_one(&mut **c)
                .await
                .map_err(step("reading a run"))?
        });
        Ok(count > 0)
    }

    /// `Held` when the conditional update matched the run; otherwise `Lost`, or an
    /// error when there is no such run at all (a bug in the caller).
    async fn lease_after_update(&self, run: RunId, updated: u64) -> Result<Lease, LedgerError> {
        if updated == 1 {
            return Ok(Lease::Held);
        }
        match self.run_exists(run).await {
            Ok(true) => Ok(Lease::Lost),
            Ok(false) => Err(LedgerError::Failed(format!("no run {run}"))),
            Err(error) => Err(ledger_error(error)),
        }
    }

    async fn renew_lease(
        &self,
        run: RunId,
        instance: &InstanceId,
        lease_until: DateTime<Utc>,
    ) -> Result<u64, StoreError> {
        let mut conn = self.acquire().await?;
        Ok(on_conn!(&mut conn, |c| {
            sqlx::query("UPDATE runs SET lease_until = $1 WHERE id = $2 AND instance_id = $3 AND status = 'running'")
                .bind(seconds(lease_until))
                .bind(run.0)
                .bind(instance.as_str())
                .execute(&mut **c)
                .await
                .map_err(step("renewing a run's lease"))?
                .rows_affected()
        }))
    }

    async fn finish_run(
        &self,
        run: RunId,
        instance: &InstanceId,
        ended_at: DateTime<Utc>,
        outcome: &RunOutcome,
    ) -> Result<u64, StoreError> {
        let mut conn = self.acquire().await?;
        Ok(on_conn!(&mut conn, |c| {
            sqlx::query(
                "UPDATE runs SET status = $1, ended_at = $2, figures = $3, message = $4 \
                 WHERE id = $5 AND instance_id = $6 AND status = 'running'",
            )
            .bind(RunStatus::Ended(outcome.end).as_str())
            .bind(seconds(ended_at))
            .bind(figures_text(&outcome.figures))
            .bind(outcome.message.as_deref())
            .bind(run.0)
            .bind(instance.as_str())
            .execute(&mut **c)
            .await
            .map_err(step("recording the end of a run"))?
            .rows_affected()
        }))
    }

    /// One time of `job` from an aggregate `sql` (`$1` the job, `$2` `now` when
    /// given); `None` when the job has no such run.
    async fn job_time(
        &self,
        step_name: &'static str,
        sql: &str,
        job: &JobName,
        now: Option<DateTime<Utc>>,
    ) -> Result<Option<DateTime<Utc>>, StoreError> {
        let mut conn = self.acquire().await?;
        let found: Option<i64> = on_conn!(&mut conn, |c| {
            let query = sqlx::query_scalar(sql).bind(job.as_str());
            let query = match now {
                Some(now) => query.bind(seconds(now)),
                None => query,
            };
            query.fetch_one(&mut **c).await.map_err(step(step_name))?
        });
        found
            .map(|time| instant(time, || format!("a run of job {job}")))
            .transpose()
    }
}

/// A store failure as a run's outcome sees it: a temporary failure (exit 75) when
/// retrying as is may succeed ([`StoreError::is_temporary`], the one classifier).
impl JobError for StoreError {
    fn is_temporary(&self) -> bool {
        StoreError::is_temporary(self)
    }
}

/// A store failure as the run path sees it: retry later, or not.
fn ledger_error(error: StoreError) -> LedgerError {
    if error.is_temporary() {
        LedgerError::Unavailable(error.to_string())
    } else {
        LedgerError::Failed(error.to_string())
    }
}

impl RunLedger for Store {
    async fn last_scheduled(&self, job: &JobName) -> Result<Option<DateTime<Utc>>, LedgerError> {
        self.job_time(
            "reading the last run",
            "SELECT MAX(scheduled_for) FROM runs WHERE job = $1",
            job,
            None,
        )
        .await
        .map_err(ledger_error)
    }

    async fn claim(&self, request: &ClaimRequest) -> Result<Claim, LedgerError> {
        let mut closed = None;
        for _ in 0..CLAIM_ATTEMPTS {
            match self.claim_pass(request, &mut closed).await {
                Ok(Some(claim)) => return Ok(claim),
                Ok(None) => continue,
                Err(error) => return Err(ledger_error(error)),
            }
        }
        Err(LedgerError::Unavailable(format!(
            "the runs of job {} kept changing during {CLAIM_ATTEMPTS} claims",
            request.job
        )))
    }

    async fn renew(&self, run: RunId, instance: &InstanceId, lease_until: DateTime<Utc>) -> Result<Lease, LedgerError> {
        let updated = self
            .renew_lease(run, instance, lease_until)
            .await
            .map_err(ledger_error)?;
        self.lease_after_update(run, updated).await
    }

    async fn finish(
        &self,
        run: RunId,
        instance: &InstanceId,
        ended_at: DateTime<Utc>,
        outcome: &RunOutcome,
    ) -> Result<Lease, LedgerError> {
        let updated = self
            .finish_run(run, instance, ended_at, outcome)
            .await
            .map_err(ledger_error)?;
        self.lease_after_update(run, updated).await
    }

    async fn abandoned(&self, job: &JobName, now: DateTime<Utc>) -> Result<Option<DateTime<Utc>>, LedgerError> {
        self.job_time(
            "looking for abandoned runs",
            "SELECT MIN(scheduled_for) FROM runs WHERE job = $1 AND status = 'running' AND lease_until < $2",
            job,
            Some(now),
        )
        .await
        .map_err(ledger_error)
    }

    async fn recent(&self, limit: usize) -> Result<Vec<RunRecord>, LedgerError> {
        self.recent_runs(limit).await.map_err(ledger_error)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failing_pool_is_worth_retrying_and_a_missing_row_or_a_refusal_is_not() {
        let refused = StoreError::Refused("no".to_owned());
        assert!(matches!(ledger_error(refused), LedgerError::Failed(_)));
        let timed_out = StoreError::Query {
            step: "claiming a run",
            source: sqlx::Error::PoolTimedOut,
        };
        assert!(matches!(ledger_error(timed_out), LedgerError::Unavailable(_)));
    }
}
