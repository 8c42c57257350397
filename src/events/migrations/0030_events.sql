-- The events outbox: written in the transaction of the change it describes (ADR 0015).
-- Readers page by position (xact_id, seq): xact_id is the writing transaction's id, seq a global
-- counter. A reader takes only rows whose transaction is below the oldest one still in flight
-- (pg_snapshot_xmin), so a row that commits late always lands after every position already read.
CREATE TABLE events (
  seq bigint GENERATED ALWAYS AS IDENTITY,
  xact_id bigint NOT NULL DEFAULT (pg_current_xact_id()::text::bigint),
  id text NOT NULL UNIQUE,
  type text NOT NULL CHECK (type ~ '^[a-z_]+\.[a-z_]+$'),
  aggregate_type text NOT NULL,
  aggregate_id text NOT NULL,
  aggregate_version integer NOT NULL CHECK (aggregate_version > 0),
  -- The distribution key (partitions of the relay and the broker); null for platform events.
  customer_id text,
  data jsonb NOT NULL,
  created_at timestamptz NOT NULL,
  PRIMARY KEY (xact_id, seq),
  -- One event per version of an aggregate: versions strictly increase, a duplicate is a bug.
  CONSTRAINT events_aggregate_version UNIQUE (aggregate_type, aggregate_id, aggregate_version)
);
-- `type=subscription.renewed`, and `type=subscription.*` (the part before the dot), both in order.
CREATE INDEX events_type ON events (type, xact_id, seq);
CREATE INDEX events_type_group ON events ((split_part(type, '.', 1)), xact_id, seq);
