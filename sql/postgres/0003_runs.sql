-- The run ledger (issue 5): one row per run of a job, scheduled by `tally schedule`
-- or one-shot by `tally run`, listed by `tally runs`. The rows also arbitrate between
-- scheduler instances: the unique key on (job, scheduled_for) lets exactly one
-- instance claim an occurrence, and the partial unique index on running rows keeps
-- a job from running twice at once, on any host. The database enforces both; the
-- code only reacts to the conflicts (src/store/runs.rs).
--
-- Times are Gregorian seconds (seconds since 0001-01-01T00:00:00Z, BIGINT), as
-- everywhere else in this schema; unix seconds = value - 62167219200.
CREATE TABLE runs (
    id            BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    job           TEXT NOT NULL,     -- the job's name (its file in the jobs directory)
    -- What the job does (reconcile, sync, ...); NULL while the claim does not say.
    kind          TEXT,
    scheduled_for BIGINT NOT NULL,   -- the fire time this run is for (one-shot: when asked)
    started_at    BIGINT NOT NULL,   -- when its current holder claimed it
    ended_at      BIGINT,            -- NULL while running
    status        TEXT NOT NULL CHECK (status IN
                      ('running', 'succeeded', 'data-errors', 'temporary-failure', 'failed', 'interrupted')),
    figures       TEXT NOT NULL DEFAULT '{}', -- {"accounts": n, "changes": n, "failures": n} (JSON)
    message       TEXT,              -- why a run did not succeed, in one line
    host          TEXT NOT NULL,     -- the machine of the current holder
    instance_id   TEXT NOT NULL,     -- the process holding the lease (host:pid:start)
    lease_until   BIGINT NOT NULL,   -- the holder must renew before then, or lose the run
    takeovers     BIGINT NOT NULL DEFAULT 0, -- times the run was taken over from a dead holder
    UNIQUE (job, scheduled_for)
);
-- At most one running run per job, whatever its scheduled time.
CREATE UNIQUE INDEX runs_one_running_per_job ON runs (job) WHERE status = 'running';
-- `tally runs`: newest first.
CREATE INDEX runs_by_start ON runs (started_at, id);
