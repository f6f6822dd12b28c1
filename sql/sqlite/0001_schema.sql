-- tally schema, SQLite flavour (the PostgreSQL flavour in sql/postgres/ has the same
-- tables, columns and meanings). Times are Gregorian seconds (INTEGER). JSON documents
-- are kept as TEXT so that key order (significant for plans) and number text (money)
-- survive exactly. Booleans follow Kazoo's exclusion rules: an importer maps an
-- `enabled` member that is false, "false", null, 0 or "" to enabled = FALSE.

-- The account tree. parent_id is the truth; tree is derived from it.
CREATE TABLE accounts (
    id          TEXT PRIMARY KEY,            -- 32 lowercase hex in Kazoo
    -- No foreign key on purpose: a dangling parent is a data error that reconcile
    -- reports by account id, it must not make provisioning fail.
    parent_id   TEXT,                        -- NULL for the master (root)
    -- The ancestor path, root first, excluding the account itself, as a JSON array
    -- (Kazoo's pvt_tree). Refreshed by `tally run reconcile` from parent_id.
    tree        TEXT NOT NULL DEFAULT '[]',
    name        TEXT NOT NULL DEFAULT '',
    enabled     BOOLEAN NOT NULL DEFAULT TRUE,
    is_reseller BOOLEAN NOT NULL DEFAULT FALSE,   -- pvt_reseller
    reseller_id TEXT,                             -- pvt_reseller_id: nearest reseller ancestor, or the master
    billing_id  TEXT,                             -- legacy billing redirection (sync-and-bookkeepers §8)
    deleted     BOOLEAN NOT NULL DEFAULT FALSE    -- pvt_deleted: reads as zero, excluded from cascade sums
);
CREATE INDEX accounts_by_parent ON accounts (parent_id);

-- ---------------------------------------------------------------------------
-- Inventory: the billable objects quantities are counted from (quantities.md §1).
-- Every object table has account_id (the account whose database holds it), enabled
-- and deleted. Counting queries live in sql/counting/.
-- ---------------------------------------------------------------------------

-- users.<priv_level>; qubicle.<offering>_recipient.
CREATE TABLE users (
    id               TEXT PRIMARY KEY,
    account_id       TEXT NOT NULL,
    priv_level       TEXT NOT NULL DEFAULT 'user',  -- a user without priv_level counts as `user`
    qubicle_enabled  BOOLEAN NOT NULL DEFAULT FALSE,
    qubicle_offering TEXT,                           -- NULL = basic
    enabled          BOOLEAN NOT NULL DEFAULT TRUE,
    deleted          BOOLEAN NOT NULL DEFAULT FALSE
);
CREATE INDEX users_by_account ON users (account_id);

-- devices.<device_type>.
CREATE TABLE devices (
    id          TEXT PRIMARY KEY,
    account_id  TEXT NOT NULL,
    device_type TEXT,                 -- NULL = sip_device
    enabled     BOOLEAN NOT NULL DEFAULT TRUE,
    deleted     BOOLEAN NOT NULL DEFAULT FALSE
);
CREATE INDEX devices_by_account ON devices (account_id);

-- phone_numbers.<classification>, number_carriers.<module>, number_services.<feature>.
CREATE TABLE phone_numbers (
    id             TEXT PRIMARY KEY,  -- the E.164 number (the number document _id)
    account_id     TEXT NOT NULL,     -- the assigned account
    carrier_module TEXT NOT NULL,     -- pvt_module_name, e.g. knm_local
    -- The first number_manager classifier matching the number (quantities.md §2),
    -- written by whoever stores the number; NULL when none matches.
    classification TEXT,
    enabled        BOOLEAN NOT NULL DEFAULT TRUE,
    deleted        BOOLEAN NOT NULL DEFAULT FALSE
);
CREATE INDEX phone_numbers_by_account ON phone_numbers (account_id);

-- The keys of a number's pvt_features. A number with the feature `local` gets no
-- phone_numbers classification.
CREATE TABLE phone_number_features (
    number_id TEXT NOT NULL,
    feature   TEXT NOT NULL,
    PRIMARY KEY (number_id, feature)
);

-- limits.<kind>_trunks: the account's limits document (one per account).
CREATE TABLE trunk_limits (
    account_id      TEXT PRIMARY KEY,
    twoway_trunks   INTEGER NOT NULL DEFAULT 0,  -- counted only when > 0
    inbound_trunks  INTEGER NOT NULL DEFAULT 0,
    outbound_trunks INTEGER NOT NULL DEFAULT 0,
    enabled         BOOLEAN NOT NULL DEFAULT TRUE,
    deleted         BOOLEAN NOT NULL DEFAULT FALSE
);

-- branding.whitelabel: the account's whitelabel document.
CREATE TABLE whitelabels (
    account_id TEXT PRIMARY KEY,
    domain     TEXT,
    enabled    BOOLEAN NOT NULL DEFAULT TRUE,
    deleted    BOOLEAN NOT NULL DEFAULT FALSE
);

-- ips.dedicated.
CREATE TABLE dedicated_ips (
    id         TEXT PRIMARY KEY,
    account_id TEXT NOT NULL,
    ip         TEXT NOT NULL,
    enabled    BOOLEAN NOT NULL DEFAULT TRUE,
    deleted    BOOLEAN NOT NULL DEFAULT FALSE
);
CREATE INDEX dedicated_ips_by_account ON dedicated_ips (account_id);

-- The app store document of an account (one per account); its apps below.
CREATE TABLE app_stores (
    account_id TEXT PRIMARY KEY,
    enabled    BOOLEAN NOT NULL DEFAULT TRUE,
    deleted    BOOLEAN NOT NULL DEFAULT FALSE
);

-- account_apps.<name> and user_apps.<name>: one row per entry of the store's apps map.
CREATE TABLE app_store_apps (
    account_id     TEXT NOT NULL,
    app_id         TEXT NOT NULL,
    name           TEXT NOT NULL,
    blacklisted    BOOLEAN NOT NULL DEFAULT FALSE,  -- the app id is in the store's blacklist
    allowed_users  TEXT NOT NULL,                    -- all | admins | specific | anything else (counts nothing)
    specific_users INTEGER NOT NULL DEFAULT 0,        -- length of the app's users array (for `specific`)
    PRIMARY KEY (account_id, app_id)
);

-- voicemails.mailbox and voicemails.transcription.
CREATE TABLE vmboxes (
    id         TEXT PRIMARY KEY,
    account_id TEXT NOT NULL,
    transcribe BOOLEAN NOT NULL DEFAULT FALSE,
    enabled    BOOLEAN NOT NULL DEFAULT TRUE,
    deleted    BOOLEAN NOT NULL DEFAULT FALSE
);
CREATE INDEX vmboxes_by_account ON vmboxes (account_id);

-- faxes.mailbox.
CREATE TABLE faxboxes (
    id         TEXT PRIMARY KEY,
    account_id TEXT NOT NULL,
    enabled    BOOLEAN NOT NULL DEFAULT TRUE,
    deleted    BOOLEAN NOT NULL DEFAULT FALSE
);
CREATE INDEX faxboxes_by_account ON faxboxes (account_id);

-- conferences.conference.
CREATE TABLE conferences (
    id         TEXT PRIMARY KEY,
    account_id TEXT NOT NULL,
    enabled    BOOLEAN NOT NULL DEFAULT TRUE,
    deleted    BOOLEAN NOT NULL DEFAULT FALSE
);
CREATE INDEX conferences_by_account ON conferences (account_id);

-- qubicle.<offering>_queue.
CREATE TABLE qubicle_queues (
    id         TEXT PRIMARY KEY,
    account_id TEXT NOT NULL,
    offering   TEXT,                  -- NULL = basic
    enabled    BOOLEAN NOT NULL DEFAULT TRUE,
    deleted    BOOLEAN NOT NULL DEFAULT FALSE
);
CREATE INDEX qubicle_queues_by_account ON qubicle_queues (account_id);

-- port_request.<state> and port_request.first_<state>.
CREATE TABLE port_requests (
    id           TEXT PRIMARY KEY,
    account_id   TEXT NOT NULL,        -- pvt_account_id
    port_state   TEXT,                 -- NULL = unconfirmed
    number_count INTEGER NOT NULL,      -- number of keys in `numbers`
    enabled      BOOLEAN NOT NULL DEFAULT TRUE,
    deleted      BOOLEAN NOT NULL DEFAULT FALSE
);
CREATE INDEX port_requests_by_account ON port_requests (account_id);

-- pvt_transitions of a port request; new_state NULL = unconfirmed.
CREATE TABLE port_request_transitions (
    port_request_id TEXT NOT NULL,
    position        INTEGER NOT NULL,
    new_state       TEXT,
    PRIMARY KEY (port_request_id, position)
);

-- ---------------------------------------------------------------------------
-- Services state (plans.md §4, sync-and-bookkeepers.md §2.3).
-- ---------------------------------------------------------------------------

-- One row per account that has services state; created on first need.
CREATE TABLE services (
    account_id         TEXT PRIMARY KEY,
    overrides          TEXT NOT NULL DEFAULT '{}', -- account-wide overrides, a partial plan document (JSON)
    bookkeeper         TEXT,                       -- services-level bookkeeper {id,type,vendor_id} (JSON) or NULL
    -- Needs repricing and delivery by the sync job; set by reconcile when stored
    -- quantities change, cleared by sync.
    dirty              BOOLEAN NOT NULL DEFAULT FALSE,
    dirty_since        INTEGER,                     -- Gregorian seconds of the last change that set dirty
    status             TEXT NOT NULL DEFAULT 'good_standing', -- good_standing | delinquent | error reason
    status_reason      TEXT,
    status_reason_code TEXT
);
CREATE INDEX services_dirty ON services (dirty_since) WHERE dirty;

-- The stored quantities, one row per (account, bucket, category, item).
CREATE TABLE service_quantities (
    account_id TEXT NOT NULL,
    -- account: counted from the account's own objects (reconcile overwrites);
    -- cascade: sum of non-deleted descendants' account rows >= 1 (reconcile overwrites);
    -- manual:  typed in by an operator (reconcile never touches it).
    bucket     TEXT NOT NULL CHECK (bucket IN ('account', 'cascade', 'manual')),
    category   TEXT NOT NULL,
    item       TEXT NOT NULL,
    quantity   INTEGER NOT NULL,
    PRIMARY KEY (account_id, bucket, category, item)
);

-- The service plan catalog: plans owned by a vendor (normally a reseller).
CREATE TABLE service_plans (
    vendor_id   TEXT NOT NULL,
    plan_id     TEXT NOT NULL,
    name        TEXT NOT NULL DEFAULT '',
    description TEXT NOT NULL DEFAULT '',
    category    TEXT,                  -- listing label, unrelated to billing categories
    document    TEXT NOT NULL,         -- the whole plan document (JSON text, exact)
    PRIMARY KEY (vendor_id, plan_id)
);

-- Plans assigned to an account (the services document's `plans` object).
CREATE TABLE service_plan_assignments (
    account_id TEXT NOT NULL,
    plan_id    TEXT NOT NULL,
    vendor_id  TEXT NOT NULL,
    position   INTEGER NOT NULL,            -- key order of the plans object (merge tie-break)
    overrides  TEXT NOT NULL DEFAULT '{}', -- per-plan overrides (JSON)
    contract   TEXT,                       -- opaque contract object (JSON) or NULL
    PRIMARY KEY (account_id, plan_id)
);

-- ---------------------------------------------------------------------------
-- Quantity-change records and day summaries (audit-and-summaries.md §4.2, §5.6).
-- Kept for every account, not only resellers.
-- ---------------------------------------------------------------------------

CREATE TABLE quantity_change_records (
    id         TEXT PRIMARY KEY,       -- YYYY- + 32 hex (UTC year of created_at)
    account_id TEXT NOT NULL,
    run_id     TEXT NOT NULL,          -- the reconcile run that wrote it
    created_at INTEGER NOT NULL,        -- Gregorian seconds (pvt_created)
    -- One record per account per run: a retried batch can never write a duplicate.
    UNIQUE (account_id, run_id)
);
CREATE INDEX quantity_change_records_by_account ON quantity_change_records (account_id, created_at);

CREATE TABLE quantity_change_entries (
    record_id TEXT NOT NULL,
    position  INTEGER NOT NULL,         -- order of §4.2.4: account, manual, cascade; category; item
    bucket    TEXT NOT NULL,
    category  TEXT NOT NULL,
    source    TEXT NOT NULL,           -- the item name
    quantity  INTEGER NOT NULL,         -- new - old
    billable  INTEGER NOT NULL,         -- new
    PRIMARY KEY (record_id, position)
);

-- Materialised summary rows per (account, UTC day, source), maintained with the
-- combination rule of §5.2 as each record is written.
CREATE TABLE quantity_day_summaries (
    account_id     TEXT NOT NULL,
    day            TEXT NOT NULL,      -- YYYY-MM-DD (UTC)
    source         TEXT NOT NULL,
    addition       INTEGER NOT NULL,
    removal        INTEGER NOT NULL,
    quantity       INTEGER NOT NULL,    -- billable of the latest entry of the day
    last_timestamp INTEGER NOT NULL,
    sum_quantity   BOOLEAN NOT NULL DEFAULT FALSE,
    PRIMARY KEY (account_id, day, source)
);
