-- Incremental nightly reconcile (issue 13 §2): every write that can change a count
-- marks its account in `reconcile_marks`, whoever writes it (ingestion, the API, or
-- hand-written SQL), so the nightly run recounts only marked accounts and rolls their
-- differences up the tree. What a mark cannot express asks for a full recount instead.
-- The SQLite flavour in sql/sqlite/ has the same table, triggers and meanings.

-- Reasons the next incremental run must recount everything: the account tree changed
-- (an account added, removed, moved, deleted or undeleted: cascades and the closure
-- change shape), an inventory table was truncated, a run stopped between its batches,
-- or this migration itself (writes made before the triggers existed were not marked).
-- A full run deletes exactly the (reason, token) pairs it saw, as with marks.
CREATE TABLE reconcile_full_requests (
    reason       TEXT PRIMARY KEY,
    requested_at BIGINT NOT NULL,      -- Gregorian seconds of the latest request
    token        TEXT NOT NULL
);
INSERT INTO reconcile_full_requests (reason, requested_at, token)
VALUES ('inventory triggers installed', (EXTRACT(EPOCH FROM clock_timestamp()))::BIGINT + 62167219200,
        md5(random()::text || clock_timestamp()::text));

-- Statement-level triggers with transition tables: one upsert of the distinct accounts
-- per statement, whatever the number of rows (ingestion writes thousands per statement).
CREATE FUNCTION tally_now_gregorian() RETURNS BIGINT LANGUAGE sql VOLATILE AS
$$ SELECT (EXTRACT(EPOCH FROM clock_timestamp()))::BIGINT + 62167219200 $$;

CREATE FUNCTION tally_new_token() RETURNS TEXT LANGUAGE sql VOLATILE AS
$$ SELECT md5(random()::text || clock_timestamp()::text) $$;

CREATE FUNCTION tally_request_full_recount(why TEXT) RETURNS VOID LANGUAGE sql VOLATILE AS
$$ INSERT INTO reconcile_full_requests (reason, requested_at, token)
   VALUES (why, tally_now_gregorian(), tally_new_token())
   ON CONFLICT (reason) DO UPDATE SET requested_at = excluded.requested_at, token = excluded.token $$;
-- Tables with account_id.
CREATE FUNCTION tally_mark_inserted() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    v_stamp BIGINT := tally_now_gregorian();
    v_token TEXT := tally_new_token();
BEGIN
    -- In account order, so two writers lock marks in the same order.
    INSERT INTO reconcile_marks (account_id, marked_at, token)
    SELECT account_id, v_stamp, v_token FROM (SELECT DISTINCT account_id FROM new_rows) changed ORDER BY account_id
    ON CONFLICT (account_id) DO UPDATE SET marked_at = excluded.marked_at, token = excluded.token;
    RETURN NULL;
END $$;
CREATE FUNCTION tally_mark_deleted() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    v_stamp BIGINT := tally_now_gregorian();
    v_token TEXT := tally_new_token();
BEGIN
    -- In account order, so two writers lock marks in the same order.
    INSERT INTO reconcile_marks (account_id, marked_at, token)
    SELECT account_id, v_stamp, v_token FROM (SELECT DISTINCT account_id FROM old_rows) changed ORDER BY account_id
    ON CONFLICT (account_id) DO UPDATE SET marked_at = excluded.marked_at, token = excluded.token;
    RETURN NULL;
END $$;
CREATE FUNCTION tally_mark_updated() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    v_stamp BIGINT := tally_now_gregorian();
    v_token TEXT := tally_new_token();
BEGIN
    -- In account order, so two writers lock marks in the same order.
    INSERT INTO reconcile_marks (account_id, marked_at, token)
    SELECT account_id, v_stamp, v_token FROM (SELECT account_id FROM new_rows UNION SELECT account_id FROM old_rows) changed ORDER BY account_id
    ON CONFLICT (account_id) DO UPDATE SET marked_at = excluded.marked_at, token = excluded.token;
    RETURN NULL;
END $$;
-- phone_number_features: the account of its phone_numbers row.
CREATE FUNCTION tally_mark_phone_number_features_inserted() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    v_stamp BIGINT := tally_now_gregorian();
    v_token TEXT := tally_new_token();
BEGIN
    -- In account order, so two writers lock marks in the same order.
    INSERT INTO reconcile_marks (account_id, marked_at, token)
    SELECT account_id, v_stamp, v_token FROM (SELECT DISTINCT p.account_id FROM new_rows c JOIN phone_numbers p ON p.id = c.number_id) changed ORDER BY account_id
    ON CONFLICT (account_id) DO UPDATE SET marked_at = excluded.marked_at, token = excluded.token;
    RETURN NULL;
END $$;
CREATE FUNCTION tally_mark_phone_number_features_deleted() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    v_stamp BIGINT := tally_now_gregorian();
    v_token TEXT := tally_new_token();
BEGIN
    -- In account order, so two writers lock marks in the same order.
    INSERT INTO reconcile_marks (account_id, marked_at, token)
    SELECT account_id, v_stamp, v_token FROM (SELECT DISTINCT p.account_id FROM old_rows c JOIN phone_numbers p ON p.id = c.number_id) changed ORDER BY account_id
    ON CONFLICT (account_id) DO UPDATE SET marked_at = excluded.marked_at, token = excluded.token;
    RETURN NULL;
END $$;
CREATE FUNCTION tally_mark_phone_number_features_updated() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    v_stamp BIGINT := tally_now_gregorian();
    v_token TEXT := tally_new_token();
BEGIN
    -- In account order, so two writers lock marks in the same order.
    INSERT INTO reconcile_marks (account_id, marked_at, token)
    SELECT account_id, v_stamp, v_token FROM (SELECT p.account_id FROM new_rows c JOIN phone_numbers p ON p.id = c.number_id UNION SELECT p.account_id FROM old_rows c JOIN phone_numbers p ON p.id = c.number_id) changed ORDER BY account_id
    ON CONFLICT (account_id) DO UPDATE SET marked_at = excluded.marked_at, token = excluded.token;
    RETURN NULL;
END $$;
-- port_request_transitions: the account of its port_requests row.
CREATE FUNCTION tally_mark_port_request_transitions_inserted() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    v_stamp BIGINT := tally_now_gregorian();
    v_token TEXT := tally_new_token();
BEGIN
    -- In account order, so two writers lock marks in the same order.
    INSERT INTO reconcile_marks (account_id, marked_at, token)
    SELECT account_id, v_stamp, v_token FROM (SELECT DISTINCT p.account_id FROM new_rows c JOIN port_requests p ON p.id = c.port_request_id) changed ORDER BY account_id
    ON CONFLICT (account_id) DO UPDATE SET marked_at = excluded.marked_at, token = excluded.token;
    RETURN NULL;
END $$;
CREATE FUNCTION tally_mark_port_request_transitions_deleted() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    v_stamp BIGINT := tally_now_gregorian();
    v_token TEXT := tally_new_token();
BEGIN
    -- In account order, so two writers lock marks in the same order.
    INSERT INTO reconcile_marks (account_id, marked_at, token)
    SELECT account_id, v_stamp, v_token FROM (SELECT DISTINCT p.account_id FROM old_rows c JOIN port_requests p ON p.id = c.port_request_id) changed ORDER BY account_id
    ON CONFLICT (account_id) DO UPDATE SET marked_at = excluded.marked_at, token = excluded.token;
    RETURN NULL;
END $$;
CREATE FUNCTION tally_mark_port_request_transitions_updated() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    v_stamp BIGINT := tally_now_gregorian();
    v_token TEXT := tally_new_token();
BEGIN
    -- In account order, so two writers lock marks in the same order.
    INSERT INTO reconcile_marks (account_id, marked_at, token)
    SELECT account_id, v_stamp, v_token FROM (SELECT p.account_id FROM new_rows c JOIN port_requests p ON p.id = c.port_request_id UNION SELECT p.account_id FROM old_rows c JOIN port_requests p ON p.id = c.port_request_id) changed ORDER BY account_id
    ON CONFLICT (account_id) DO UPDATE SET marked_at = excluded.marked_at, token = excluded.token;
    RETURN NULL;
END $$;
CREATE FUNCTION tally_request_full_on_truncate() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM tally_request_full_recount('inventory truncated');
    RETURN NULL;
END $$;

CREATE TRIGGER users_mark_inserted AFTER INSERT ON users
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION tally_mark_inserted();
CREATE TRIGGER users_mark_updated AFTER UPDATE ON users
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION tally_mark_updated();
CREATE TRIGGER users_mark_deleted AFTER DELETE ON users
    REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION tally_mark_deleted();
CREATE TRIGGER users_request_full_on_truncate AFTER TRUNCATE ON users
    FOR EACH STATEMENT EXECUTE FUNCTION tally_request_full_on_truncate();
CREATE TRIGGER devices_mark_inserted AFTER INSERT ON devices
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION tally_mark_inserted();
CREATE TRIGGER devices_mark_updated AFTER UPDATE ON devices
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION tally_mark_updated();
CREATE TRIGGER devices_mark_deleted AFTER DELETE ON devices
    REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION tally_mark_deleted();
CREATE TRIGGER devices_request_full_on_truncate AFTER TRUNCATE ON devices
    FOR EACH STATEMENT EXECUTE FUNCTION tally_request_full_on_truncate();
CREATE TRIGGER phone_numbers_mark_inserted AFTER INSERT ON phone_numbers
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION tally_mark_inserted();
CREATE TRIGGER phone_numbers_mark_updated AFTER UPDATE ON phone_numbers
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION tally_mark_updated();
CREATE TRIGGER phone_numbers_mark_deleted AFTER DELETE ON phone_numbers
    REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION tally_mark_deleted();
CREATE TRIGGER phone_numbers_request_full_on_truncate AFTER TRUNCATE ON phone_numbers
    FOR EACH STATEMENT EXECUTE FUNCTION tally_request_full_on_truncate();
CREATE TRIGGER trunk_limits_mark_inserted AFTER INSERT ON trunk_limits
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION tally_mark_inserted();
CREATE TRIGGER trunk_limits_mark_updated AFTER UPDATE ON trunk_limits
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION tally_mark_updated();
CREATE TRIGGER trunk_limits_mark_deleted AFTER DELETE ON trunk_limits
    REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION tally_mark_deleted();
CREATE TRIGGER trunk_limits_request_full_on_truncate AFTER TRUNCATE ON trunk_limits
    FOR EACH STATEMENT EXECUTE FUNCTION tally_request_full_on_truncate();
CREATE TRIGGER whitelabels_mark_inserted AFTER INSERT ON whitelabels
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION tally_mark_inserted();
CREATE TRIGGER whitelabels_mark_updated AFTER UPDATE ON whitelabels
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION tally_mark_updated();
CREATE TRIGGER whitelabels_mark_deleted AFTER DELETE ON whitelabels
    REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION tally_mark_deleted();
CREATE TRIGGER whitelabels_request_full_on_truncate AFTER TRUNCATE ON whitelabels
    FOR EACH STATEMENT EXECUTE FUNCTION tally_request_full_on_truncate();
CREATE TRIGGER dedicated_ips_mark_inserted AFTER INSERT ON dedicated_ips
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION tally_mark_inserted();
CREATE TRIGGER dedicated_ips_mark_updated AFTER UPDATE ON dedicated_ips
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION tally_mark_updated();
CREATE TRIGGER dedicated_ips_mark_deleted AFTER DELETE ON dedicated_ips
    REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION tally_mark_deleted();
CREATE TRIGGER dedicated_ips_request_full_on_truncate AFTER TRUNCATE ON dedicated_ips
    FOR EACH STATEMENT EXECUTE FUNCTION tally_request_full_on_truncate();
CREATE TRIGGER app_stores_mark_inserted AFTER INSERT ON app_stores
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION tally_mark_inserted();
CREATE TRIGGER app_stores_mark_updated AFTER UPDATE ON app_stores
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION tally_mark_updated();
CREATE TRIGGER app_stores_mark_deleted AFTER DELETE ON app_stores
    REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION tally_mark_deleted();
CREATE TRIGGER app_stores_request_full_on_truncate AFTER TRUNCATE ON app_stores
    FOR EACH STATEMENT EXECUTE FUNCTION tally_request_full_on_truncate();
CREATE TRIGGER app_store_apps_mark_inserted AFTER INSERT ON app_store_apps
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION tally_mark_inserted();
CREATE TRIGGER app_store_apps_mark_updated AFTER UPDATE ON app_store_apps
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION tally_mark_updated();
CREATE TRIGGER app_store_apps_mark_deleted AFTER DELETE ON app_store_apps
    REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION tally_mark_deleted();
CREATE TRIGGER app_store_apps_request_full_on_truncate AFTER TRUNCATE ON app_store_apps
    FOR EACH STATEMENT EXECUTE FUNCTION tally_request_full_on_truncate();
CREATE TRIGGER vmboxes_mark_inserted AFTER INSERT ON vmboxes
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION tally_mark_inserted();
CREATE TRIGGER vmboxes_mark_updated AFTER UPDATE ON vmboxes
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION tally_mark_updated();
CREATE TRIGGER vmboxes_mark_deleted AFTER DELETE ON vmboxes
    REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION tally_mark_deleted();
CREATE TRIGGER vmboxes_request_full_on_truncate AFTER TRUNCATE ON vmboxes
    FOR EACH STATEMENT EXECUTE FUNCTION tally_request_full_on_truncate();
CREATE TRIGGER faxboxes_mark_inserted AFTER INSERT ON faxboxes
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION tally_mark_inserted();
CREATE TRIGGER faxboxes_mark_updated AFTER UPDATE ON faxboxes
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION tally_mark_updated();
CREATE TRIGGER faxboxes_mark_deleted AFTER DELETE ON faxboxes
    REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION tally_mark_deleted();
CREATE TRIGGER faxboxes_request_full_on_truncate AFTER TRUNCATE ON faxboxes
    FOR EACH STATEMENT EXECUTE FUNCTION tally_request_full_on_truncate();
CREATE TRIGGER conferences_mark_inserted AFTER INSERT ON conferences
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION tally_mark_inserted();
CREATE TRIGGER conferences_mark_updated AFTER UPDATE ON conferences
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION tally_mark_updated();
CREATE TRIGGER conferences_mark_deleted AFTER DELETE ON conferences
    REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION tally_mark_deleted();
CREATE TRIGGER conferences_request_full_on_truncate AFTER TRUNCATE ON conferences
    FOR EACH STATEMENT EXECUTE FUNCTION tally_request_full_on_truncate();
CREATE TRIGGER qubicle_queues_mark_inserted AFTER INSERT ON qubicle_queues
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION tally_mark_inserted();
CREATE TRIGGER qubicle_queues_mark_updated AFTER UPDATE ON qubicle_queues
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION tally_mark_updated();
CREATE TRIGGER qubicle_queues_mark_deleted AFTER DELETE ON qubicle_queues
    REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION tally_mark_deleted();
CREATE TRIGGER qubicle_queues_request_full_on_truncate AFTER TRUNCATE ON qubicle_queues
    FOR EACH STATEMENT EXECUTE FUNCTION tally_request_full_on_truncate();
CREATE TRIGGER port_requests_mark_inserted AFTER INSERT ON port_requests
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION tally_mark_inserted();
CREATE TRIGGER port_requests_mark_updated AFTER UPDATE ON port_requests
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION tally_mark_updated();
CREATE TRIGGER port_requests_mark_deleted AFTER DELETE ON port_requests
    REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION tally_mark_deleted();
CREATE TRIGGER port_requests_request_full_on_truncate AFTER TRUNCATE ON port_requests
    FOR EACH STATEMENT EXECUTE FUNCTION tally_request_full_on_truncate();
CREATE TRIGGER phone_number_features_mark_inserted AFTER INSERT ON phone_number_features
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION tally_mark_phone_number_features_inserted();
CREATE TRIGGER phone_number_features_mark_updated AFTER UPDATE ON phone_number_features
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION tally_mark_phone_number_features_updated();
CREATE TRIGGER phone_number_features_mark_deleted AFTER DELETE ON phone_number_features
    REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION tally_mark_phone_number_features_deleted();
CREATE TRIGGER phone_number_features_request_full_on_truncate AFTER TRUNCATE ON phone_number_features
    FOR EACH STATEMENT EXECUTE FUNCTION tally_request_full_on_truncate();
CREATE TRIGGER port_request_transitions_mark_inserted AFTER INSERT ON port_request_transitions
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION tally_mark_port_request_transitions_inserted();
CREATE TRIGGER port_request_transitions_mark_updated AFTER UPDATE ON port_request_transitions
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION tally_mark_port_request_transitions_updated();
CREATE TRIGGER port_request_transitions_mark_deleted AFTER DELETE ON port_request_transitions
    REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION tally_mark_port_request_transitions_deleted();
CREATE TRIGGER port_request_transitions_request_full_on_truncate AFTER TRUNCATE ON port_request_transitions
    FOR EACH STATEMENT EXECUTE FUNCTION tally_request_full_on_truncate();

-- accounts: a change of shape (added, removed, moved, deleted flag) asks for a full
-- recount; any other column but the derived `tree` marks the account (`accounts.sql`
-- counts `enabled`; an operator's counting query may read others).
CREATE FUNCTION tally_accounts_inserted() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF EXISTS (SELECT 1 FROM new_rows) THEN
        PERFORM tally_request_full_recount('account tree');
    END IF;
    RETURN NULL;
END $$;

CREATE FUNCTION tally_accounts_deleted() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF EXISTS (SELECT 1 FROM old_rows) THEN
        PERFORM tally_request_full_recount('account tree');
    END IF;
    RETURN NULL;
END $$;

CREATE FUNCTION tally_accounts_updated() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    v_stamp BIGINT := tally_now_gregorian();
    v_token TEXT := tally_new_token();
BEGIN
    -- Old and new rows are grouped by id, never joined: transition tables have no
    -- statistics or indexes, and a join planned as a nested loop is quadratic (28 s for
    -- reconcile's update of 10,000 accounts' `tree`).
    IF EXISTS (SELECT 1
               FROM (SELECT id, jsonb_build_array(parent_id, deleted) AS shape FROM old_rows
                     UNION ALL
                     SELECT id, jsonb_build_array(parent_id, deleted) FROM new_rows) AS r
               GROUP BY id
               HAVING COUNT(*) <> 2 OR COUNT(DISTINCT shape) > 1) THEN
        PERFORM tally_request_full_recount('account tree');
    END IF;
    INSERT INTO reconcile_marks (account_id, marked_at, token)
    SELECT id, v_stamp, v_token
    FROM (SELECT o.id, to_jsonb(o) - 'tree' AS doc FROM old_rows o
          UNION ALL
          SELECT n.id, to_jsonb(n) - 'tree' FROM new_rows n) AS r
    GROUP BY id
    HAVING COUNT(*) = 2 AND COUNT(DISTINCT doc) = 2
    ORDER BY id
    ON CONFLICT (account_id) DO UPDATE SET marked_at = excluded.marked_at, token = excluded.token;
    RETURN NULL;
END $$;

CREATE TRIGGER accounts_request_full_on_insert AFTER INSERT ON accounts
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION tally_accounts_inserted();
CREATE TRIGGER accounts_mark_updated AFTER UPDATE ON accounts
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION tally_accounts_updated();
CREATE TRIGGER accounts_request_full_on_delete AFTER DELETE ON accounts
    REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION tally_accounts_deleted();
CREATE TRIGGER accounts_request_full_on_truncate AFTER TRUNCATE ON accounts
    FOR EACH STATEMENT EXECUTE FUNCTION tally_request_full_on_truncate();
