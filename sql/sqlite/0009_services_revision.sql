-- Counts the writes of an account's pricing inputs and repricings: a repricing is
-- written only when the revision it read is still the stored one (store/locked.rs).
ALTER TABLE services ADD COLUMN revision INTEGER NOT NULL DEFAULT 0;
