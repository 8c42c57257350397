-- Plan changes (ADR 0014, "Plan changes").
-- A change that waits for the term end is stored on the subscription until its period end, where
-- the cycle job applies it and bills the new plan. `plan_started_at` is when the subscriber moved
-- to its current plan (null: at creation): grandfathering restarts with a new plan.
ALTER TABLE subscriptions
  ADD COLUMN pending_plan_id text,
  ADD COLUMN pending_change_at timestamptz,
  ADD COLUMN plan_started_at timestamptz,
  ADD CONSTRAINT subscriptions_pending_change CHECK ((pending_plan_id IS NULL) = (pending_change_at IS NULL));

-- One row per accepted change request: what was asked and what it produced. A retry with the same
-- Idempotency-Key (after a crash between the change and its charge) finds it by `request_key` and
-- resumes the charge of its invoice instead of changing again; another input is refused by hash.
CREATE TABLE subscription_changes (
  id text PRIMARY KEY,
  subscription_id text NOT NULL REFERENCES subscriptions (id),
  request_key text UNIQUE,
  request_hash text,
  from_plan_id text NOT NULL,
  to_plan_id text NOT NULL,
  timing text NOT NULL CHECK (timing IN ('immediate', 'end_of_term')),
  effective_at timestamptz NOT NULL,
  invoice_id text REFERENCES invoices (id),
  created_at timestamptz NOT NULL
);
CREATE INDEX subscription_changes_subscription ON subscription_changes (subscription_id, created_at);
