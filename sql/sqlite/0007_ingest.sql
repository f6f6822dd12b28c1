-- Ingestion (issue 10): Kazoo documents become inventory rows (store/inventory.rs).
-- The PostgreSQL flavour in sql/postgres/ has the same tables, columns and meanings.

-- Credentials the API's Kazoo-compatible authentication reads (secrets: never printed).
ALTER TABLE accounts ADD COLUMN api_key TEXT;          -- pvt_api_key
ALTER TABLE users ADD COLUMN username TEXT;
ALTER TABLE users ADD COLUMN md5_auth TEXT;            -- pvt_md5_auth

-- The document a per-account singleton came from, so that a tombstone of document X
-- in account A's database removes it. NULL for rows written by other means.
ALTER TABLE trunk_limits ADD COLUMN doc_id TEXT;
ALTER TABLE whitelabels ADD COLUMN doc_id TEXT;
ALTER TABLE app_stores ADD COLUMN doc_id TEXT;

-- A digest of a parent's child rows (features, apps, transitions) as last ingested:
-- a change only in the children changes the parent row, so one comparison on the
-- parent tells whether the document changed. NULL (rows written by other means)
-- differs from every digest, so the first ingestion replaces those children.
ALTER TABLE phone_numbers ADD COLUMN children_digest TEXT;
ALTER TABLE app_stores ADD COLUMN children_digest TEXT;
ALTER TABLE port_requests ADD COLUMN children_digest TEXT;

-- Accounts whose inventory changed since their last recount. Ingestion sets a fresh
-- token per write; `tally run reconcile --changed` recounts them and deletes exactly
-- the (account, token) pairs it saw, so a mark set again during the run survives.
CREATE TABLE reconcile_marks (
    account_id TEXT PRIMARY KEY,
    marked_at  INTEGER NOT NULL,      -- Gregorian seconds of the latest change
    token      TEXT NOT NULL
);

-- How far each source's feed of each database has been applied (CouchDB last_seq),
-- written in the transaction of the documents it covers.
CREATE TABLE ingest_checkpoints (
    source     TEXT NOT NULL,         -- the server, never with credentials
    database   TEXT NOT NULL,         -- canonical database name
    last_seq   TEXT NOT NULL,         -- opaque
    updated_at INTEGER NOT NULL,      -- Gregorian seconds
    PRIMARY KEY (source, database)
);

-- The quarantine: documents that could not be used, kept whole so nothing is lost.
-- A later good version of the same document deletes its row.
CREATE TABLE ingest_rejections (
    database    TEXT NOT NULL,        -- canonical database name
    doc_id      TEXT NOT NULL,
    document    TEXT NOT NULL,        -- the JSON text as received
    problem     TEXT NOT NULL,
    waiting_for TEXT,                 -- an account it references that does not exist yet
    rejected_at INTEGER NOT NULL,     -- Gregorian seconds
    PRIMARY KEY (database, doc_id)
);
CREATE INDEX ingest_rejections_waiting ON ingest_rejections (waiting_for) WHERE waiting_for IS NOT NULL;

-- Small facts of the ingestion, e.g. `number_classifiers`: the fingerprint of the
-- classifier list stored classifications were computed with.
CREATE TABLE ingest_state (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);

-- Tombstones of account databases delete singletons by (account_id, doc_id); the
-- primary key on account_id already serves them.
