-- Where each outbox relay has published up to (ADR 0018): the outbox position (xact_id, seq) of
-- the last event the bus accepted. A relay resumes from here after a crash or a broker outage;
-- the position only moves forward (a stale leader cannot move it back).
CREATE TABLE relay_positions (
  name text PRIMARY KEY CHECK (name ~ '^[a-z][a-z0-9_-]{0,39}$'),
  xact_id bigint NOT NULL DEFAULT 0 CHECK (xact_id >= 0),
  seq bigint NOT NULL DEFAULT 0 CHECK (seq >= 0),
  published bigint NOT NULL DEFAULT 0 CHECK (published >= 0),
  updated_at timestamptz NOT NULL
);
