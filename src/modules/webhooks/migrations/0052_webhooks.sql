-- Webhooks (ADR 0019): endpoints, the event bodies they are sent, and one delivery per
-- (endpoint, event).

CREATE TABLE webhook_endpoints (
  id text PRIMARY KEY,
  url text NOT NULL CHECK (length(url) <= 2048),
  -- Event types, groups (`invoice.*`) or `*`.
  event_types text[] NOT NULL CHECK (cardinality(event_types) BETWEEN 1 AND 50),
  description text CHECK (length(description) <= 500),
  status text NOT NULL CHECK (status IN ('enabled', 'disabled', 'deleted')),
  -- Why it is disabled: by the API, or after failing for 3 days.
  disabled_reason text CHECK (disabled_reason IN ('requested', 'failing')),
  -- Sealed (AES-256-GCM, a key derived from the master key); cleared on delete.
  secret_cipher bytea,
  previous_secret_cipher bytea,
  previous_secret_expires_at timestamptz,
  -- When the first failed attempt with no success since happened (null: not failing).
  failing_since timestamptz,
  -- The aggregate version of its events (webhook_endpoint.disabled).
  version integer NOT NULL,
  created_at timestamptz NOT NULL,
  updated_at timestamptz NOT NULL
);

-- The body of each event sent, exactly as signed: one copy per event whatever the endpoints.
CREATE TABLE webhook_payloads (
  event_id text PRIMARY KEY,
  body text NOT NULL,
  created_at timestamptz NOT NULL
);

CREATE TABLE webhook_deliveries (
  id text PRIMARY KEY,
  endpoint_id text NOT NULL REFERENCES webhook_endpoints (id),
  event_id text NOT NULL,
  event_type text NOT NULL,
  status text NOT NULL CHECK (status IN ('pending', 'succeeded', 'failed')),
  attempts integer NOT NULL,
  response_code integer,
  last_error text,
  -- Start of the retry window (3 days); reset by a redelivery.
  first_attempt_at timestamptz,
  last_attempt_at timestamptz,
  -- When a pending delivery is due; null once it succeeded or failed.
  next_attempt_at timestamptz,
  -- The dispatcher's claim: taken over by another node once leased_until has passed.
  lease_token text,
  leased_until timestamptz,
  created_at timestamptz NOT NULL,
  CONSTRAINT webhook_deliveries_once UNIQUE (endpoint_id, event_id),
  CHECK ((status = 'pending') = (next_attempt_at IS NOT NULL))
);

-- The dispatcher's claim: each enabled endpoint's due deliveries, oldest due first.
CREATE INDEX webhook_deliveries_due ON webhook_deliveries (endpoint_id, next_attempt_at)
  WHERE status = 'pending';
-- GET /v1/webhook-endpoints/{id}/deliveries, newest first.
CREATE INDEX webhook_deliveries_by_endpoint ON webhook_deliveries (endpoint_id, id);
-- POST /v1/events/{id}/redeliver.
CREATE INDEX webhook_deliveries_by_event ON webhook_deliveries (event_id);
