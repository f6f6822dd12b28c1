-- Retention (issue 14): `tally run prune` deletes finished records older than the
-- `[retention]` settings, a batch at a time, oldest first. These indexes let each
-- batch read only the rows it deletes instead of scanning the table.

-- Finished runs by end time (running ones are never pruned).
CREATE INDEX runs_finished_by_end ON runs (ended_at) WHERE status <> 'running';
-- Acknowledged deliveries by the time of their answer.
CREATE INDEX deliveries_acknowledged_by_update ON deliveries (updated_at) WHERE status = 'acknowledged';
-- Quantity-change records by creation time (the existing index leads with the account).
CREATE INDEX quantity_change_records_by_created ON quantity_change_records (created_at);
-- Answered audit rows by creation time (pending ones are never pruned).
CREATE INDEX audit_logs_answered_by_created ON audit_logs (created_at) WHERE status <> 'pending';
