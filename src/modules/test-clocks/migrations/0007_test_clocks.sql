CREATE TABLE test_clocks (
  id text PRIMARY KEY,
  name text,
  frozen_time timestamptz NOT NULL,
  status text NOT NULL CHECK (status IN ('ready', 'advancing')),
  advancing_to timestamptz,
  -- A node advancing the clock holds it until then; a crashed advance can be resumed after.
  advance_lease_until timestamptz,
  created_at timestamptz NOT NULL
);
