-- Time-triggered work (trial ends, renewals, retries...). Jobs of customers on a test clock carry
-- its id and run only when that clock is advanced past run_at; the others run on the wall clock.
CREATE TABLE scheduled_jobs (
  id text PRIMARY KEY,
  kind text NOT NULL,
  run_at timestamptz NOT NULL,
  test_clock_id text,
  customer_id text,
  payload jsonb NOT NULL,
  state text NOT NULL CHECK (state IN ('pending', 'done', 'failed')),
  attempts integer NOT NULL DEFAULT 0,
  last_error text,
  dedupe_key text UNIQUE,
  created_at timestamptz NOT NULL,
  done_at timestamptz
);
CREATE INDEX scheduled_jobs_due ON scheduled_jobs (run_at, id) WHERE state = 'pending' AND test_clock_id IS NULL;
CREATE INDEX scheduled_jobs_clock_due ON scheduled_jobs (test_clock_id, run_at, id) WHERE state = 'pending';
