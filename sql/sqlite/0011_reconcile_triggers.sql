-- Incremental nightly reconcile (issue 13 §2): every write that can change a count
-- marks its account in `reconcile_marks`, whoever writes it (ingestion, the API, or
-- hand-written SQL), so the nightly run recounts only marked accounts and rolls their
-- differences up the tree. What a mark cannot express asks for a full recount instead.
-- The PostgreSQL flavour in sql/postgres/ has the same table, triggers and meanings.

-- Reasons the next incremental run must recount everything: the account tree changed
-- (an account added, removed, moved, deleted or undeleted: cascades and the closure
-- change shape), an inventory table was truncated, a run stopped between its batches,
-- or this migration itself (writes made before the triggers existed were not marked).
-- A full run deletes exactly the (reason, token) pairs it saw, as with marks.
CREATE TABLE reconcile_full_requests (
    reason       TEXT PRIMARY KEY,
    requested_at INTEGER NOT NULL,      -- Gregorian seconds of the latest request
    token        TEXT NOT NULL
);
INSERT INTO reconcile_full_requests (reason, requested_at, token)
VALUES ('inventory triggers installed', CAST(strftime('%s', 'now') AS INTEGER) + 62167219200, lower(hex(randomblob(16))));

-- Row-level triggers (SQLite has no other kind): one upsert of the account's mark per
-- written row, with a fresh token.
CREATE TRIGGER users_mark_inserted AFTER INSERT ON users BEGIN
    INSERT INTO reconcile_marks (account_id, marked_at, token) VALUES (NEW.account_id, CAST(strftime('%s', 'now') AS INTEGER) + 62167219200, lower(hex(randomblob(16))))
        ON CONFLICT (account_id) DO UPDATE SET marked_at = excluded.marked_at, token = excluded.token;
END;
CREATE TRIGGER users_mark_updated AFTER UPDATE ON users BEGIN
    INSERT INTO reconcile_marks (account_id, marked_at, token) VALUES (NEW.account_id, CAST(strftime('%s', 'now') AS INTEGER) + 62167219200, lower(hex(randomblob(16))))
        ON CONFLICT (account_id) DO UPDATE SET marked_at = excluded.marked_at, token = excluded.token;
    INSERT INTO reconcile_marks (account_id, marked_at, token)
        SELECT OLD.account_id, CAST(strftime('%s', 'now') AS INTEGER) + 62167219200, lower(hex(randomblob(16))) WHERE OLD.account_id IS NOT NEW.account_id
        ON CONFLICT (account_id) DO UPDATE SET marked_at = excluded.marked_at, token = excluded.token;
END;
CREATE TRIGGER users_mark_deleted AFTER DELETE ON users BEGIN
    INSERT INTO reconcile_marks (account_id, marked_at, token) VALUES (OLD.account_id, CAST(strftime('%s', 'now') AS INTEGER) + 62167219200, lower(hex(randomblob(16))))
        ON CONFLICT (account_id) DO UPDATE SET marked_at = excluded.marked_at, token = excluded.token;
END;
CREATE TRIGGER devices_mark_inserted AFTER INSERT ON devices BEGIN
    INSERT INTO reconcile_marks (account_id, marked_at, token) VALUES (NEW.account_id, CAST(strftime('%s', 'now') AS INTEGER) + 62167219200, lower(hex(randomblob(16))))
        ON CONFLICT (account_id) DO UPDATE SET marked_at = excluded.marked_at, token = excluded.token;
END;
CREATE TRIGGER devices_mark_updated AFTER UPDATE ON devices BEGIN
    INSERT INTO reconcile_marks (account_id, marked_at, token) VALUES (NEW.account_id, CAST(strftime('%s', 'now') AS INTEGER) + 62167219200, lower(hex(randomblob(16))))
        ON CONFLICT (account_id) DO UPDATE SET marked_at = excluded.marked_at, token = excluded.token;
    INSERT INTO reconcile_marks (account_id, marked_at, token)
        SELECT OLD.account_id, CAST(strftime('%s', 'now') AS INTEGER) + 62167219200, lower(hex(randomblob(16))) WHERE OLD.account_id IS NOT NEW.account_id
        ON CONFLICT (account_id) DO UPDATE SET marked_at = excluded.marked_at, token = excluded.token;
END;
CREATE TRIGGER devices_mark_deleted AFTER DELETE ON devices BEGIN
    INSERT INTO reconcile_marks (account_id, marked_at, token) VALUES (OLD.account_id, CAST(strftime('%s', 'now') AS INTEGER) + 62167219200, lower(hex(randomblob(16))))
        ON CONFLICT (account_id) DO UPDATE SET marked_at = excluded.marked_at, token = excluded.token;
END;
CREATE TRIGGER phone_numbers_mark_inserted AFTER INSERT ON phone_numbers BEGIN
    INSERT INTO reconcile_marks (account_id, marked_at, token) VALUES (NEW.account_id, CAST(strftime('%s', 'now') AS INTEGER) + 62167219200, lower(hex(randomblob(16))))
        ON CONFLICT (account_id) DO UPDATE SET marked_at = excluded.marked_at, token = excluded.token;
END;
CREATE TRIGGER phone_numbers_mark_updated AFTER UPDATE ON phone_numbers BEGIN
    INSERT INTO reconcile_marks (account_id, marked_at, token) VALUES (NEW.account_id, CAST(strftime('%s', 'now') AS INTEGER) + 62167219200, lower(hex(randomblob(16))))
        ON CONFLICT (account_id) DO UPDATE SET marked_at = excluded.marked_at, token = excluded.token;
    INSERT INTO reconcile_marks (account_id, marked_at, token)
        SELECT OLD.account_id, CAST(strftime('%s', 'now') AS INTEGER) + 62167219200, lower(hex(randomblob(16))) WHERE OLD.account_id IS NOT NEW.account_id
        ON CONFLICT (account_id) DO UPDATE SET marked_at = excluded.marked_at, token = excluded.token;
END;
CREATE TRIGGER phone_numbers_mark_deleted AFTER DELETE ON phone_numbers BEGIN
    INSERT INTO reconcile_marks (account_id, marked_at, token) VALUES (OLD.account_id, CAST(strftime('%s', 'now') AS INTEGER) + 62167219200, lower(hex(randomblob(16))))
        ON CONFLICT (account_id) DO UPDATE SET marked_at = excluded.marked_at, token = excluded.token;
END;
CREATE TRIGGER trunk_limits_mark_inserted AFTER INSERT ON trunk_limits BEGIN
    INSERT INTO reconcile_marks (account_id, marked_at, token) VALUES (NEW.account_id, CAST(strftime('%s', 'now') AS INTEGER) + 62167219200, lower(hex(randomblob(16))))
        ON CONFLICT (account_id) DO UPDATE SET marked_at = excluded.marked_at, token = excluded.token;
END;
CREATE TRIGGER trunk_limits_mark_updated AFTER UPDATE ON trunk_limits BEGIN
    INSERT INTO reconcile_marks (account_id, marked_at, token) VALUES (NEW.account_id, CAST(strftime('%s', 'now') AS INTEGER) + 62167219200, lower(hex(randomblob(16))))
        ON CONFLICT (account_id) DO UPDATE SET marked_at = excluded.marked_at, token = excluded.token;
    INSERT INTO reconcile_marks (account_id, marked_at, token)
        SELECT OLD.account_id, CAST(strftime('%s', 'now') AS INTEGER) + 62167219200, lower(hex(randomblob(16))) WHERE OLD.account_id IS NOT NEW.account_id
        ON CONFLICT (account_id) DO UPDATE SET marked_at = excluded.marked_at, token = excluded.token;
END;
CREATE TRIGGER trunk_limits_mark_deleted AFTER DELETE ON trunk_limits BEGIN
    INSERT INTO reconcile_marks (account_id, marked_at, token) VALUES (OLD.account_id, CAST(strftime('%s', 'now') AS INTEGER) + 62167219200, lower(hex(randomblob(16))))
        ON CONFLICT (account_id) DO UPDATE SET marked_at = excluded.marked_at, token = excluded.token;
END;
CREATE TRIGGER whitelabels_mark_inserted AFTER INSERT ON whitelabels BEGIN
    INSERT INTO reconcile_marks (account_id, marked_at, token) VALUES (NEW.account_id, CAST(strftime('%s', 'now') AS INTEGER) + 62167219200, lower(hex(randomblob(16))))
        ON CONFLICT (account_id) DO UPDATE SET marked_at = excluded.marked_at, token = excluded.token;
END;
CREATE TRIGGER whitelabels_mark_updated AFTER UPDATE ON whitelabels BEGIN
    INSERT INTO reconcile_marks (account_id, marked_at, token) VALUES (NEW.account_id, CAST(strftime('%s', 'now') AS INTEGER) + 62167219200, lower(hex(randomblob(16))))
        ON CONFLICT (account_id) DO UPDATE SET marked_at = excluded.marked_at, token = excluded.token;
    INSERT INTO reconcile_marks (account_id, marked_at, token)
        SELECT OLD.account_id, CAST(strftime('%s', 'now') AS INTEGER) + 62167219200, lower(hex(randomblob(16))) WHERE OLD.account_id IS NOT NEW.account_id
        ON CONFLICT (account_id) DO UPDATE SET marked_at = excluded.marked_at, token = excluded.token;
END;
CREATE TRIGGER whitelabels_mark_deleted AFTER DELETE ON whitelabels BEGIN
    INSERT INTO reconcile_marks (account_id, marked_at, token) VALUES (OLD.account_id, CAST(strftime('%s', 'now') AS INTEGER) + 62167219200, lower(hex(randomblob(16))))
        ON CONFLICT (account_id) DO UPDATE SET marked_at = excluded.marked_at, token = excluded.token;
END;
CREATE TRIGGER dedicated_ips_mark_inserted AFTER INSERT ON dedicated_ips BEGIN
    INSERT INTO reconcile_marks (account_id, marked_at, token) VALUES (NEW.account_id, CAST(strftime('%s', 'now') AS INTEGER) + 62167219200, lower(hex(randomblob(16))))
        ON CONFLICT (account_id) DO UPDATE SET marked_at = excluded.marked_at, token = excluded.token;
END;
CREATE TRIGGER dedicated_ips_mark_updated AFTER UPDATE ON dedicated_ips BEGIN
    INSERT INTO reconcile_marks (account_id, marked_at, token) VALUES (NEW.account_id, CAST(strftime('%s', 'now') AS INTEGER) + 62167219200, lower(hex(randomblob(16))))
        ON CONFLICT (account_id) DO UPDATE SET marked_at = excluded.marked_at, token = excluded.token;
    INSERT INTO reconcile_marks (account_id, marked_at, token)
        SELECT OLD.account_id, CAST(strftime('%s', 'now') AS INTEGER) + 62167219200, lower(hex(randomblob(16))) WHERE OLD.account_id IS NOT NEW.account_id
        ON CONFLICT (account_id) DO UPDATE SET marked_at = excluded.marked_at, token = excluded.token;
END;
CREATE TRIGGER dedicated_ips_mark_deleted AFTER DELETE ON dedicated_ips BEGIN
    INSERT INTO reconcile_marks (account_id, marked_at, token) VALUES (OLD.account_id, CAST(strftime('%s', 'now') AS INTEGER) + 62167219200, lower(hex(randomblob(16))))
        ON CONFLICT (account_id) DO UPDATE SET marked_at = excluded.marked_at, token = excluded.token;
END;
CREATE TRIGGER app_stores_mark_inserted AFTER INSERT ON app_stores BEGIN
    INSERT INTO reconcile_marks (account_id, marked_at, token) VALUES (NEW.account_id, CAST(strftime('%s', 'now') AS INTEGER) + 62167219200, lower(hex(randomblob(16))))
        ON CONFLICT (account_id) DO UPDATE SET marked_at = excluded.marked_at, token = excluded.token;
END;
CREATE TRIGGER app_stores_mark_updated AFTER UPDATE ON app_stores BEGIN
    INSERT INTO reconcile_marks (account_id, marked_at, token) VALUES (NEW.account_id, CAST(strftime('%s', 'now') AS INTEGER) + 62167219200, lower(hex(randomblob(16))))
        ON CONFLICT (account_id) DO UPDATE SET marked_at = excluded.marked_at, token = excluded.token;
    INSERT INTO reconcile_marks (account_id, marked_at, token)
        SELECT OLD.account_id, CAST(strftime('%s', 'now') AS INTEGER) + 62167219200, lower(hex(randomblob(16))) WHERE OLD.account_id IS NOT NEW.account_id
        ON CONFLICT (account_id) DO UPDATE SET marked_at = excluded.marked_at, token = excluded.token;
END;
CREATE TRIGGER app_stores_mark_deleted AFTER DELETE ON app_stores BEGIN
    INSERT INTO reconcile_marks (account_id, marked_at, token) VALUES (OLD.account_id, CAST(strftime('%s', 'now') AS INTEGER) + 62167219200, lower(hex(randomblob(16))))
        ON CONFLICT (account_id) DO UPDATE SET marked_at = excluded.marked_at, token = excluded.token;
END;
CREATE TRIGGER app_store_apps_mark_inserted AFTER INSERT ON app_store_apps BEGIN
    INSERT INTO reconcile_marks (account_id, marked_at, token) VALUES (NEW.account_id, CAST(strftime('%s', 'now') AS INTEGER) + 62167219200, lower(hex(randomblob(16))))
        ON CONFLICT (account_id) DO UPDATE SET marked_at = excluded.marked_at, token = excluded.token;
END;
CREATE TRIGGER app_store_apps_mark_updated AFTER UPDATE ON app_store_apps BEGIN
    INSERT INTO reconcile_marks (account_id, marked_at, token) VALUES (NEW.account_id, CAST(strftime('%s', 'now') AS INTEGER) + 62167219200, lower(hex(randomblob(16))))
        ON CONFLICT (account_id) DO UPDATE SET marked_at = excluded.marked_at, token = excluded.token;
    INSERT INTO reconcile_marks (account_id, marked_at, token)
        SELECT OLD.account_id, CAST(strftime('%s', 'now') AS INTEGER) + 62167219200, lower(hex(randomblob(16))) WHERE OLD.account_id IS NOT NEW.account_id
        ON CONFLICT (account_id) DO UPDATE SET marked_at = excluded.marked_at, token = excluded.token;
END;
CREATE TRIGGER app_store_apps_mark_deleted AFTER DELETE ON app_store_apps BEGIN
    INSERT INTO reconcile_marks (account_id, marked_at, token) VALUES (OLD.account_id, CAST(strftime('%s', 'now') AS INTEGER) + 62167219200, lower(hex(randomblob(16))))
        ON CONFLICT (account_id) DO UPDATE SET marked_at = excluded.marked_at, token = excluded.token;
END;
CREATE TRIGGER vmboxes_mark_inserted AFTER INSERT ON vmboxes BEGIN
    INSERT INTO reconcile_marks (account_id, marked_at, token) VALUES (NEW.account_id, CAST(strftime('%s', 'now') AS INTEGER) + 62167219200, lower(hex(randomblob(16))))
        ON CONFLICT (account_id) DO UPDATE SET marked_at = excluded.marked_at, token = excluded.token;
END;
CREATE TRIGGER vmboxes_mark_updated AFTER UPDATE ON vmboxes BEGIN
    INSERT INTO reconcile_marks (account_id, marked_at, token) VALUES (NEW.account_id, CAST(strftime('%s', 'now') AS INTEGER) + 62167219200, lower(hex(randomblob(16))))
        ON CONFLICT (account_id) DO UPDATE SET marked_at = excluded.marked_at, token = excluded.token;
    INSERT INTO reconcile_marks (account_id, marked_at, token)
        SELECT OLD.account_id, CAST(strftime('%s', 'now') AS INTEGER) + 62167219200, lower(hex(randomblob(16))) WHERE OLD.account_id IS NOT NEW.account_id
        ON CONFLICT (account_id) DO UPDATE SET marked_at = excluded.marked_at, token = excluded.token;
END;
CREATE TRIGGER vmboxes_mark_deleted AFTER DELETE ON vmboxes BEGIN
    INSERT INTO reconcile_marks (account_id, marked_at, token) VALUES (OLD.account_id, CAST(strftime('%s', 'now') AS INTEGER) + 62167219200, lower(hex(randomblob(16))))
        ON CONFLICT (account_id) DO UPDATE SET marked_at = excluded.marked_at, token = excluded.token;
END;
CREATE TRIGGER faxboxes_mark_inserted AFTER INSERT ON faxboxes BEGIN
    INSERT INTO reconcile_marks (account_id, marked_at, token) VALUES (NEW.account_id, CAST(strftime('%s', 'now') AS INTEGER) + 62167219200, lower(hex(randomblob(16))))
        ON CONFLICT (account_id) DO UPDATE SET marked_at = excluded.marked_at, token = excluded.token;
END;
CREATE TRIGGER faxboxes_mark_updated AFTER UPDATE ON faxboxes BEGIN
    INSERT INTO reconcile_marks (account_id, marked_at, token) VALUES (NEW.account_id, CAST(strftime('%s', 'now') AS INTEGER) + 62167219200, lower(hex(randomblob(16))))
        ON CONFLICT (account_id) DO UPDATE SET marked_at = excluded.marked_at, token = excluded.token;
    INSERT INTO reconcile_marks (account_id, marked_at, token)
        SELECT OLD.account_id, CAST(strftime('%s', 'now') AS INTEGER) + 62167219200, lower(hex(randomblob(16))) WHERE OLD.account_id IS NOT NEW.account_id
        ON CONFLICT (account_id) DO UPDATE SET marked_at = excluded.marked_at, token = excluded.token;
END;
CREATE TRIGGER faxboxes_mark_deleted AFTER DELETE ON faxboxes BEGIN
    INSERT INTO reconcile_marks (account_id, marked_at, token) VALUES (OLD.account_id, CAST(strftime('%s', 'now') AS INTEGER) + 62167219200, lower(hex(randomblob(16))))
        ON CONFLICT (account_id) DO UPDATE SET marked_at = excluded.marked_at, token = excluded.token;
END;
CREATE TRIGGER conferences_mark_inserted AFTER INSERT ON conferences BEGIN
    INSERT INTO reconcile_marks (account_id, marked_at, token) VALUES (NEW.account_id, CAST(strftime('%s', 'now') AS INTEGER) + 62167219200, lower(hex(randomblob(16))))
        ON CONFLICT (account_id) DO UPDATE SET marked_at = excluded.marked_at, token = excluded.token;
END;
CREATE TRIGGER conferences_mark_updated AFTER UPDATE ON conferences BEGIN
    INSERT INTO reconcile_marks (account_id, marked_at, token) VALUES (NEW.account_id, CAST(strftime('%s', 'now') AS INTEGER) + 62167219200, lower(hex(randomblob(16))))
        ON CONFLICT (account_id) DO UPDATE SET marked_at = excluded.marked_at, token = excluded.token;
    INSERT INTO reconcile_marks (account_id, marked_at, token)
        SELECT OLD.account_id, CAST(strftime('%s', 'now') AS INTEGER) + 62167219200, lower(hex(randomblob(16))) WHERE OLD.account_id IS NOT NEW.account_id
        ON CONFLICT (account_id) DO UPDATE SET marked_at = excluded.marked_at, token = excluded.token;
END;
CREATE TRIGGER conferences_mark_deleted AFTER DELETE ON conferences BEGIN
    INSERT INTO reconcile_marks (account_id, marked_at, token) VALUES (OLD.account_id, CAST(strftime('%s', 'now') AS INTEGER) + 62167219200, lower(hex(randomblob(16))))
        ON CONFLICT (account_id) DO UPDATE SET marked_at = excluded.marked_at, token = excluded.token;
END;
CREATE TRIGGER qubicle_queues_mark_inserted AFTER INSERT ON qubicle_queues BEGIN
    INSERT INTO reconcile_marks (account_id, marked_at, token) VALUES (NEW.account_id, CAST(strftime('%s', 'now') AS INTEGER) + 62167219200, lower(hex(randomblob(16))))
        ON CONFLICT (account_id) DO UPDATE SET marked_at = excluded.marked_at, token = excluded.token;
END;
CREATE TRIGGER qubicle_queues_mark_updated AFTER UPDATE ON qubicle_queues BEGIN
    INSERT INTO reconcile_marks (account_id, marked_at, token) VALUES (NEW.account_id, CAST(strftime('%s', 'now') AS INTEGER) + 62167219200, lower(hex(randomblob(16))))
        ON CONFLICT (account_id) DO UPDATE SET marked_at = excluded.marked_at, token = excluded.token;
    INSERT INTO reconcile_marks (account_id, marked_at, token)
        SELECT OLD.account_id, CAST(strftime('%s', 'now') AS INTEGER) + 62167219200, lower(hex(randomblob(16))) WHERE OLD.account_id IS NOT NEW.account_id
        ON CONFLICT (account_id) DO UPDATE SET marked_at = excluded.marked_at, token = excluded.token;
END;
CREATE TRIGGER qubicle_queues_mark_deleted AFTER DELETE ON qubicle_queues BEGIN
    INSERT INTO reconcile_marks (account_id, marked_at, token) VALUES (OLD.account_id, CAST(strftime('%s', 'now') AS INTEGER) + 62167219200, lower(hex(randomblob(16))))
        ON CONFLICT (account_id) DO UPDATE SET marked_at = excluded.marked_at, token = excluded.token;
END;
CREATE TRIGGER port_requests_mark_inserted AFTER INSERT ON port_requests BEGIN
    INSERT INTO reconcile_marks (account_id, marked_at, token) VALUES (NEW.account_id, CAST(strftime('%s', 'now') AS INTEGER) + 62167219200, lower(hex(randomblob(16))))
        ON CONFLICT (account_id) DO UPDATE SET marked_at = excluded.marked_at, token = excluded.token;
END;
CREATE TRIGGER port_requests_mark_updated AFTER UPDATE ON port_requests BEGIN
    INSERT INTO reconcile_marks (account_id, marked_at, token) VALUES (NEW.account_id, CAST(strftime('%s', 'now') AS INTEGER) + 62167219200, lower(hex(randomblob(16))))
        ON CONFLICT (account_id) DO UPDATE SET marked_at = excluded.marked_at, token = excluded.token;
    INSERT INTO reconcile_marks (account_id, marked_at, token)
        SELECT OLD.account_id, CAST(strftime('%s', 'now') AS INTEGER) + 62167219200, lower(hex(randomblob(16))) WHERE OLD.account_id IS NOT NEW.account_id
        ON CONFLICT (account_id) DO UPDATE SET marked_at = excluded.marked_at, token = excluded.token;
END;
CREATE TRIGGER port_requests_mark_deleted AFTER DELETE ON port_requests BEGIN
    INSERT INTO reconcile_marks (account_id, marked_at, token) VALUES (OLD.account_id, CAST(strftime('%s', 'now') AS INTEGER) + 62167219200, lower(hex(randomblob(16))))
        ON CONFLICT (account_id) DO UPDATE SET marked_at = excluded.marked_at, token = excluded.token;
END;
CREATE TRIGGER phone_number_features_mark_inserted AFTER INSERT ON phone_number_features BEGIN
    INSERT INTO reconcile_marks (account_id, marked_at, token)
        SELECT account_id, CAST(strftime('%s', 'now') AS INTEGER) + 62167219200, lower(hex(randomblob(16))) FROM phone_numbers WHERE id = NEW.number_id
        ON CONFLICT (account_id) DO UPDATE SET marked_at = excluded.marked_at, token = excluded.token;
END;
CREATE TRIGGER phone_number_features_mark_updated AFTER UPDATE ON phone_number_features BEGIN
    INSERT INTO reconcile_marks (account_id, marked_at, token)
        SELECT account_id, CAST(strftime('%s', 'now') AS INTEGER) + 62167219200, lower(hex(randomblob(16))) FROM phone_numbers WHERE id = NEW.number_id
        ON CONFLICT (account_id) DO UPDATE SET marked_at = excluded.marked_at, token = excluded.token;
    INSERT INTO reconcile_marks (account_id, marked_at, token)
        SELECT account_id, CAST(strftime('%s', 'now') AS INTEGER) + 62167219200, lower(hex(randomblob(16))) FROM phone_numbers WHERE id = OLD.number_id
        ON CONFLICT (account_id) DO UPDATE SET marked_at = excluded.marked_at, token = excluded.token;
END;
CREATE TRIGGER phone_number_features_mark_deleted AFTER DELETE ON phone_number_features BEGIN
    INSERT INTO reconcile_marks (account_id, marked_at, token)
        SELECT account_id, CAST(strftime('%s', 'now') AS INTEGER) + 62167219200, lower(hex(randomblob(16))) FROM phone_numbers WHERE id = OLD.number_id
        ON CONFLICT (account_id) DO UPDATE SET marked_at = excluded.marked_at, token = excluded.token;
END;
CREATE TRIGGER port_request_transitions_mark_inserted AFTER INSERT ON port_request_transitions BEGIN
    INSERT INTO reconcile_marks (account_id, marked_at, token)
        SELECT account_id, CAST(strftime('%s', 'now') AS INTEGER) + 62167219200, lower(hex(randomblob(16))) FROM port_requests WHERE id = NEW.port_request_id
        ON CONFLICT (account_id) DO UPDATE SET marked_at = excluded.marked_at, token = excluded.token;
END;
CREATE TRIGGER port_request_transitions_mark_updated AFTER UPDATE ON port_request_transitions BEGIN
    INSERT INTO reconcile_marks (account_id, marked_at, token)
        SELECT account_id, CAST(strftime('%s', 'now') AS INTEGER) + 62167219200, lower(hex(randomblob(16))) FROM port_requests WHERE id = NEW.port_request_id
        ON CONFLICT (account_id) DO UPDATE SET marked_at = excluded.marked_at, token = excluded.token;
    INSERT INTO reconcile_marks (account_id, marked_at, token)
        SELECT account_id, CAST(strftime('%s', 'now') AS INTEGER) + 62167219200, lower(hex(randomblob(16))) FROM port_requests WHERE id = OLD.port_request_id
        ON CONFLICT (account_id) DO UPDATE SET marked_at = excluded.marked_at, token = excluded.token;
END;
CREATE TRIGGER port_request_transitions_mark_deleted AFTER DELETE ON port_request_transitions BEGIN
    INSERT INTO reconcile_marks (account_id, marked_at, token)
        SELECT account_id, CAST(strftime('%s', 'now') AS INTEGER) + 62167219200, lower(hex(randomblob(16))) FROM port_requests WHERE id = OLD.port_request_id
        ON CONFLICT (account_id) DO UPDATE SET marked_at = excluded.marked_at, token = excluded.token;
END;

-- accounts: a change of shape (added, removed, moved, deleted flag) asks for a full
-- recount; any other column but the derived `tree` marks the account (`accounts.sql`
-- counts `enabled`; an operator's counting query may read others).
CREATE TRIGGER accounts_request_full_on_insert AFTER INSERT ON accounts BEGIN
    INSERT INTO reconcile_full_requests (reason, requested_at, token) VALUES ('account tree', CAST(strftime('%s', 'now') AS INTEGER) + 62167219200, lower(hex(randomblob(16))))
        ON CONFLICT (reason) DO UPDATE SET requested_at = excluded.requested_at, token = excluded.token;
END;
CREATE TRIGGER accounts_request_full_on_delete AFTER DELETE ON accounts BEGIN
    INSERT INTO reconcile_full_requests (reason, requested_at, token) VALUES ('account tree', CAST(strftime('%s', 'now') AS INTEGER) + 62167219200, lower(hex(randomblob(16))))
        ON CONFLICT (reason) DO UPDATE SET requested_at = excluded.requested_at, token = excluded.token;
END;
CREATE TRIGGER accounts_request_full_on_move AFTER UPDATE ON accounts
WHEN OLD.id IS NOT NEW.id OR OLD.parent_id IS NOT NEW.parent_id OR OLD.deleted IS NOT NEW.deleted BEGIN
    INSERT INTO reconcile_full_requests (reason, requested_at, token) VALUES ('account tree', CAST(strftime('%s', 'now') AS INTEGER) + 62167219200, lower(hex(randomblob(16))))
        ON CONFLICT (reason) DO UPDATE SET requested_at = excluded.requested_at, token = excluded.token;
END;
CREATE TRIGGER accounts_mark_updated AFTER UPDATE ON accounts
WHEN OLD.id IS NOT NEW.id OR OLD.parent_id IS NOT NEW.parent_id OR OLD.name IS NOT NEW.name OR OLD.enabled IS NOT NEW.enabled OR OLD.is_reseller IS NOT NEW.is_reseller OR OLD.reseller_id IS NOT NEW.reseller_id OR OLD.billing_id IS NOT NEW.billing_id OR OLD.deleted IS NOT NEW.deleted OR OLD.topup_amount IS NOT NEW.topup_amount OR OLD.topup_threshold IS NOT NEW.topup_threshold OR OLD.api_key IS NOT NEW.api_key BEGIN
    INSERT INTO reconcile_marks (account_id, marked_at, token) VALUES (NEW.id, CAST(strftime('%s', 'now') AS INTEGER) + 62167219200, lower(hex(randomblob(16))))
        ON CONFLICT (account_id) DO UPDATE SET marked_at = excluded.marked_at, token = excluded.token;
END;
