-- API keys are stored as a SHA-256 of the secret: the secret itself is shown once, at creation.
CREATE TABLE api_keys (
  id text PRIMARY KEY,
  name text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
  secret_hash text NOT NULL UNIQUE,
  secret_hint text NOT NULL,
  scopes text[] NOT NULL,
  created_at timestamptz NOT NULL,
  revoked_at timestamptz,
  last_used_at timestamptz
);
