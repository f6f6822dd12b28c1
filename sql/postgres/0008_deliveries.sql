-- The delivery queue's honest state (issue 11).

-- Why the last attempt of a delivery was not taken, as a stable code
-- (bookkeepers::DeliveryError::code). `not_configured` marks a delivery that waits
-- for its bookkeeper to be configured: it spends no attempts and has no backoff.
ALTER TABLE deliveries ADD COLUMN last_error_code TEXT;

-- Pending deliveries are counted and listed by due time after every run.
CREATE INDEX deliveries_pending ON deliveries (next_attempt_at) WHERE status = 'in_flight';

-- services.dirty is also true while the account has audit rows its bookkeeper has not
-- taken yet (sync-and-bookkeepers.md §2.3). Such a hold is not a repricing mark: it is
-- recorded here as the dirty_since it was set with, and a later mark (a new
-- dirty_since) needs repricing again. Cleared when the last pending row is answered.
ALTER TABLE services ADD COLUMN dirty_held_since BIGINT;

-- Accounts already waiting for a delivery.
UPDATE services SET dirty = TRUE, dirty_since = COALESCE(dirty_since, 0), dirty_held_since = COALESCE(dirty_since, 0)
WHERE NOT dirty AND EXISTS (SELECT 1 FROM audit_logs l WHERE l.account_id = services.account_id AND l.status = 'pending');
