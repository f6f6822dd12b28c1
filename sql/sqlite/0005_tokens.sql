-- API tokens (issue 6): `tally tokens create` makes one, `tally serve` checks the
-- X-Auth-Token header against it. Only the SHA-256 of a token is stored (lowercase
-- hex), so a copy of the database does not give access to the API.
CREATE TABLE auth_tokens (
    token_hash  TEXT PRIMARY KEY,                 -- sha256 hex of the token
    account_id  TEXT NOT NULL,                    -- the account the token acts as
    super_admin BOOLEAN NOT NULL DEFAULT FALSE,   -- acts on every account, super-admin operations
    created_at  INTEGER NOT NULL,                 -- Gregorian seconds
    description TEXT                              -- what the token is for, for operators
);
CREATE INDEX auth_tokens_by_account ON auth_tokens (account_id);
