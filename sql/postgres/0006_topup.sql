-- Top-up (sync-and-bookkeepers.md §10): per-account settings, the ledger that holds an
-- account's prepaid balance, and the sale transactions asked of bookkeepers. Amounts
-- are integer Kazoo units (1 dollar = 10 000 units); a balance is SUM(amount_units).

-- The account document's topup.amount and topup.threshold, in dollars, as exact
-- decimal text (NULL = unset). Written by provisioning or by an operator.
ALTER TABLE accounts ADD COLUMN topup_amount TEXT;
ALTER TABLE accounts ADD COLUMN topup_threshold TEXT;

-- Credits (positive) and debits (negative) of an account's balance.
CREATE TABLE ledgers (
    id             TEXT PRIMARY KEY,      -- YYYYMM- + 32 hex (UTC month of created_at)
    account_id     TEXT NOT NULL,
    amount_units   BIGINT NOT NULL,       -- signed: credits positive, debits negative
    source_service TEXT NOT NULL,         -- 'payments' for top-ups; e.g. 'per-minute-voip' for debits
    source_id      TEXT NOT NULL,
    description    TEXT NOT NULL DEFAULT '',
    trigger        TEXT,                  -- top-ups: 'manual' | 'automatic'
    transaction_id TEXT,                  -- the sale it results from; NULL = credited directly
    created_at     BIGINT  NOT NULL,       -- Gregorian seconds
    metadata       TEXT NOT NULL DEFAULT '{}', -- JSON object
    audit          TEXT                   -- who asked (the caller's audit object, JSON); NULL = a job
);
CREATE INDEX ledgers_by_account ON ledgers (account_id, created_at);
CREATE INDEX ledgers_by_source ON ledgers (account_id, source_service, trigger, created_at);

-- Sales asked of a bookkeeper. A row is written `incomplete` before the bookkeeper is
-- called (its id is the Idempotency-Key), then settled with its ledger in one
-- transaction: a crash in between leaves an `incomplete` row, never a lost sale.
CREATE TABLE transactions (
    id              TEXT PRIMARY KEY,     -- YYYYMM- + 32 hex
    account_id      TEXT NOT NULL,
    amount_units    BIGINT  NOT NULL,
    description     TEXT NOT NULL DEFAULT '',
    trigger         TEXT NOT NULL CHECK (trigger IN ('manual', 'automatic')),
    status          TEXT NOT NULL CHECK (status IN ('completed', 'incomplete', 'failed')),
    bookkeeper_type TEXT NOT NULL,
    reason          TEXT,                 -- why it is not completed (no_payment_token, bookkeeper_fault, ...)
    message         TEXT,
    created_at      BIGINT  NOT NULL,
    metadata        TEXT NOT NULL DEFAULT '{}', -- JSON object
    audit           TEXT                  -- who asked (JSON); NULL = a job
);
CREATE INDEX transactions_by_account ON transactions (account_id, trigger, created_at);
