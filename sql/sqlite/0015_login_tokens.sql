-- Kazoo's login (issue 12): `PUT /v2/api_auth` and `PUT /v2/user_auth` issue tokens that
-- expire, `tally tokens list|revoke` manage them. The SQLite flavour has the same columns.
ALTER TABLE auth_tokens ADD COLUMN expires_at INTEGER;                     -- Gregorian seconds; NULL never expires
ALTER TABLE auth_tokens ADD COLUMN origin TEXT NOT NULL DEFAULT 'cli';     -- cli, api_auth or user_auth
ALTER TABLE auth_tokens ADD COLUMN owner_id TEXT;                          -- the user of a user_auth token
-- Logins prune the tokens that have expired.
CREATE INDEX auth_tokens_by_expiry ON auth_tokens (expires_at);
-- `user_auth` finds a user by the md5 of "username:password", as Kazoo's credentials view does.
CREATE INDEX users_by_md5_auth ON users (md5_auth);
-- `api_auth` finds an account by its api key.
CREATE INDEX accounts_by_api_key ON accounts (api_key);
