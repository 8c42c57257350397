-- Customer portal sessions (ADR 0024): a short-lived link that lets one customer manage their own
-- subscriptions, payment method and invoices without an API key. Only the SHA-256 of the secret
-- is kept (the secret is in the link's fragment, shown once). Rows are pruned a day after expiry.
CREATE TABLE portal_sessions (
  id text PRIMARY KEY,
  secret_hash text NOT NULL CHECK (length(secret_hash) = 64),
  customer_id text NOT NULL,
  return_url text CHECK (length(return_url) <= 2048),
  created_at timestamptz NOT NULL,
  expires_at timestamptz NOT NULL CHECK (expires_at > created_at),
  ended_at timestamptz
);
-- A customer's live sessions (the cap ends the oldest), and the prune by expiry.
CREATE INDEX portal_sessions_customer_live ON portal_sessions (customer_id, id) WHERE ended_at IS NULL;
CREATE INDEX portal_sessions_expires ON portal_sessions (expires_at);
