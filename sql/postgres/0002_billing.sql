-- Billing state of the sync and bookkeeper-sync jobs (pricing.md §9,
-- sync-and-bookkeepers.md §2.3 and §5, audit-and-summaries.md §2-§3).
-- Invoices are stored as the JSON of src/wire/invoice.rs (exact number text); the
-- amounts copied next to them for reports are integer Kazoo units (1 unit =
-- 0.0001), which every line total is a whole number of (pricing.md §12).

-- When the sync job first priced the account (Gregorian seconds); NULL = never. An
-- account priced for the first time gets a silent baseline (pricing.md §9).
ALTER TABLE services ADD COLUMN priced_at BIGINT;

-- The last computed invoices (kind 'computed', pricing.md §9 last_computed) and the
-- invoices each bookkeeper last acknowledged (kind 'acknowledged', §5.4), one row per
-- account, kind and bookkeeper (type, vendor, id).
CREATE TABLE invoice_snapshots (
    account_id           TEXT NOT NULL,
    kind                 TEXT NOT NULL CHECK (kind IN ('computed', 'acknowledged')),
    bookkeeper_type      TEXT NOT NULL,
    bookkeeper_vendor_id TEXT NOT NULL,
    bookkeeper_id        TEXT NOT NULL,
    invoice              TEXT NOT NULL,   -- the un-annotated invoice (JSON)
    recurring_units      BIGINT NOT NULL, -- summary.recurring in units of 0.0001
    updated_at           BIGINT NOT NULL,
    PRIMARY KEY (account_id, kind, bookkeeper_type, bookkeeper_vendor_id, bookkeeper_id)
);

-- One row per changed invoice (audit-and-summaries.md §2): written by the sync job,
-- `pending` until its bookkeeper answers, directly `completed` for the `default`
-- bookkeeper, which needs no call.
CREATE TABLE audit_logs (
    id                   TEXT PRIMARY KEY,   -- YYYYMM- + 32 hex (UTC month of created_at)
    account_id           TEXT NOT NULL,
    created_at           BIGINT NOT NULL,
    modified_at          BIGINT NOT NULL,
    status               TEXT NOT NULL CHECK (status IN ('pending', 'completed', 'failed')),
    reason               TEXT,
    message              TEXT,
    bookkeeper_type      TEXT NOT NULL,
    bookkeeper_vendor_id TEXT NOT NULL,
    bookkeeper_id        TEXT NOT NULL,
    bookkeeper_results   TEXT NOT NULL DEFAULT '[]', -- the bookkeeper's details (JSON array)
    invoice              TEXT NOT NULL,   -- the annotated invoice with plan and bookkeeper (JSON)
    audit                TEXT NOT NULL,   -- who or what caused it (JSON, audit-and-summaries.md §2)
    today_units          BIGINT NOT NULL, -- summary.today (activation charges) in units
    recurring_units      BIGINT NOT NULL, -- summary.recurring in units
    -- Master-account rows are kept to drive delivery but hidden from listings
    -- unless should_save_master_audit_logs.
    hidden               BOOLEAN NOT NULL DEFAULT FALSE,
    delivery_id          TEXT,            -- the delivery that carries it to its bookkeeper
    attempts             BIGINT NOT NULL DEFAULT 0,
    last_error           TEXT,
    last_response_code   BIGINT
);
CREATE INDEX audit_logs_by_account ON audit_logs (account_id, created_at);
CREATE INDEX audit_logs_pending ON audit_logs (account_id, bookkeeper_type, bookkeeper_vendor_id, bookkeeper_id)
    WHERE status = 'pending';

-- One delivery of one account's invoice to one bookkeeper. Its body and idempotency
-- key are frozen when it is created and resent verbatim on every retry, so a retry
-- after a lost response is the same request and cannot charge twice; changes made
-- meanwhile wait for the next delivery.
CREATE TABLE deliveries (
    id                   TEXT PRIMARY KEY,  -- the sync id (X-Sync-ID)
    account_id           TEXT NOT NULL,
    bookkeeper_type      TEXT NOT NULL,
    bookkeeper_vendor_id TEXT NOT NULL,
    bookkeeper_id        TEXT NOT NULL,
    idempotency_key      TEXT NOT NULL,
    body                 TEXT NOT NULL,     -- the exact request body
    acknowledged_invoice TEXT NOT NULL,     -- becomes the 'acknowledged' snapshot once answered
    status               TEXT NOT NULL CHECK (status IN ('in_flight', 'acknowledged', 'refused')),
    attempts             BIGINT NOT NULL DEFAULT 0,
    next_attempt_at      BIGINT NOT NULL,   -- Gregorian seconds
    lease_until          BIGINT NOT NULL DEFAULT 0, -- a worker owns it until then
    last_error           TEXT,
    last_response_code   BIGINT,
    created_at           BIGINT NOT NULL,
    updated_at           BIGINT NOT NULL
);
-- At most one delivery in flight per account and bookkeeper.
CREATE UNIQUE INDEX deliveries_in_flight
    ON deliveries (account_id, bookkeeper_type, bookkeeper_vendor_id, bookkeeper_id)
    WHERE status = 'in_flight';
