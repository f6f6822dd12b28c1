-- Retention (issue 14): `tally run prune` deletes finished records older than the
-- `[retention]` settings, a batch at a time, oldest first (ordered by age, then key).
-- These indexes hold that order, so each batch reads only the rows it deletes instead
-- of sorting every candidate again.

-- Finished runs by end time (running ones are never pruned).
CREATE INDEX runs_finished_by_end ON runs (ended_at, id) WHERE status <> 'running';
-- Acknowledged deliveries by the time of their answer.
CREATE INDEX deliveries_acknowledged_by_update ON deliveries (updated_at, id) WHERE status = 'acknowledged';
-- Quantity-change records by creation time (the existing index leads with the account).
CREATE INDEX quantity_change_records_by_created ON quantity_change_records (created_at, id);
-- Answered audit rows by creation time (pending ones are never pruned).
CREATE INDEX audit_logs_answered_by_created ON audit_logs (created_at, id) WHERE status <> 'pending';
