-- Admin console sessions (ADR 0022): an API key exchanged for an HttpOnly cookie. The cookie holds
-- a 256-bit random secret; only its SHA-256 is stored. A session lives 30 minutes after it was last
-- seen (sliding) and at most 12 hours (expires_at); a key keeps a bounded number of live sessions
-- (the oldest are dropped), its revocation deletes them, and the hourly prune deletes expired ones.
CREATE TABLE admin_sessions (
  id text PRIMARY KEY,
  secret_hash text NOT NULL UNIQUE CHECK (secret_hash ~ '^[0-9a-f]{64}$'),
  -- An api_keys id, or `key_bootstrap` (then bootstrap_hash is the SHA-256 of that bootstrap key,
  -- so a session does not outlive a change of REPRISE_BOOTSTRAP_KEY).
  key_id text NOT NULL,
  bootstrap_hash text CHECK (bootstrap_hash ~ '^[0-9a-f]{64}$'),
  created_at timestamptz NOT NULL,
  expires_at timestamptz NOT NULL,
  last_seen_at timestamptz NOT NULL,
  CHECK (expires_at > created_at),
  CHECK ((key_id = 'key_bootstrap') = (bootstrap_hash IS NOT NULL))
);
-- Small by construction (live sessions per key are bounded): the prune scans it.
CREATE INDEX admin_sessions_key ON admin_sessions (key_id, id);
