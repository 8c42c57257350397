-- One row per (API key, Idempotency-Key). A request claims the row (in_flight) before it runs;
-- its unit of work completes the row in the same transaction as its effects, so a crash leaves
-- either nothing done and a stale claim, or everything done and a stored response.
CREATE TABLE idempotency_keys (
  api_key_id text NOT NULL,
  key text NOT NULL CHECK (length(key) BETWEEN 1 AND 255),
  request_hash text NOT NULL,
  method text NOT NULL,
  path text NOT NULL,
  state text NOT NULL CHECK (state IN ('in_flight', 'completed')),
  lock_token text,
  locked_until timestamptz,
  response_status integer,
  response_body text,
  created_at timestamptz NOT NULL,
  completed_at timestamptz,
  PRIMARY KEY (api_key_id, key),
  CHECK (state = 'in_flight' OR (response_status IS NOT NULL AND response_body IS NOT NULL))
);
CREATE INDEX idempotency_keys_created_at ON idempotency_keys (created_at);
