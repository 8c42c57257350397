-- The billing module's tables (ADR 0014): subscriptions, their members, invoices and their lines,
-- the gapless invoice number series, and who has had which product's trial.
CREATE TABLE subscriptions (
  id text PRIMARY KEY,
  customer_id text NOT NULL,
  plan_id text NOT NULL,
  product_id text NOT NULL,
  -- The price the subscriber signed up on (grandfathering starts from it).
  price_version_id text NOT NULL,
  price_minor bigint NOT NULL CHECK (price_minor >= 0),
  currency char(3) NOT NULL,
  status text NOT NULL CHECK (status IN ('trialing', 'active', 'past_due', 'paused', 'canceled', 'incomplete', 'expired')),
  billing_period text NOT NULL CHECK (billing_period IN ('month', 'year', 'week')),
  -- Start of the first paid period (the trial end with a trial): every boundary derives from it.
  billing_anchor timestamptz NOT NULL,
  billing_cycle_day smallint CHECK (billing_cycle_day BETWEEN 1 AND 31),
  current_period_start timestamptz,
  current_period_end timestamptz,
  trial_end timestamptz,
  cancel_at timestamptz,
  ended_at timestamptz,
  paused_at timestamptz,
  past_due_since timestamptz,
  -- The aggregate version of its events: strictly increasing per subscription.
  version integer NOT NULL CHECK (version >= 1),
  -- `<api key id>:<Idempotency-Key>` of the checkout that created it, and a hash of its input.
  request_key text UNIQUE,
  request_hash text,
  created_at timestamptz NOT NULL,
  updated_at timestamptz NOT NULL,
  CHECK (current_period_start IS NULL OR current_period_end > current_period_start)
);
CREATE INDEX subscriptions_customer ON subscriptions (customer_id, id);

CREATE TABLE subscription_members (
  subscription_id text NOT NULL REFERENCES subscriptions (id),
  external_id text NOT NULL,
  created_at timestamptz NOT NULL,
  PRIMARY KEY (subscription_id, external_id)
);
CREATE INDEX subscription_members_external_id ON subscription_members (external_id);

-- Gapless numbers: the counter row is updated in the transaction that finalises, so a rollback
-- gives its number back. `SE-2026`, or `TEST-SE-2026` for customers on a test clock.
CREATE TABLE invoice_number_series (
  series text PRIMARY KEY CHECK (series ~ '^(TEST-)?[A-Z]{2}-[0-9]{4}$'),
  last_number bigint NOT NULL CHECK (last_number >= 1)
);

CREATE TABLE invoices (
  id text PRIMARY KEY,
  series text REFERENCES invoice_number_series (series),
  -- Assigned at finalisation; null while draft.
  number text UNIQUE,
  customer_id text NOT NULL,
  subscription_id text NOT NULL REFERENCES subscriptions (id),
  -- Why it was raised: with the period start, a period is never billed twice.
  reason text NOT NULL CHECK (reason IN ('subscription_create', 'subscription_cycle', 'subscription_update',
    'subscription_pause', 'subscription_resume')),
  status text NOT NULL CHECK (status IN ('draft', 'open', 'paid', 'void', 'uncollectible')),
  currency char(3) NOT NULL,
  tax_rate_bps integer NOT NULL CHECK (tax_rate_bps BETWEEN 0 AND 10000),
  tax_inclusive boolean NOT NULL,
  subtotal_minor bigint NOT NULL,
  tax_minor bigint NOT NULL,
  total_minor bigint NOT NULL,
  net_minor bigint NOT NULL,
  credit_applied_minor bigint NOT NULL CHECK (credit_applied_minor >= 0),
  credit_created_minor bigint NOT NULL CHECK (credit_created_minor >= 0),
  amount_due_minor bigint NOT NULL CHECK (amount_due_minor >= 0),
  period_start timestamptz NOT NULL,
  period_end timestamptz NOT NULL,
  payment_id text,
  -- The aggregate version of its events.
  version integer NOT NULL CHECK (version >= 1),
  finalized_at timestamptz,
  paid_at timestamptz,
  created_at timestamptz NOT NULL,
  updated_at timestamptz NOT NULL,
  UNIQUE (subscription_id, period_start, reason),
  CHECK ((status = 'draft') = (number IS NULL)),
  CHECK (period_end >= period_start)
);
CREATE INDEX invoices_customer ON invoices (customer_id, id);
CREATE INDEX invoices_subscription ON invoices (subscription_id, id);

CREATE TABLE invoice_lines (
  invoice_id text NOT NULL REFERENCES invoices (id),
  position smallint NOT NULL CHECK (position BETWEEN 0 AND 99),
  kind text NOT NULL CHECK (kind IN ('recurring', 'fixed', 'proration_credit', 'proration_charge',
    'credit_applied', 'discount', 'tax')),
  description text NOT NULL,
  period_start timestamptz NOT NULL,
  period_end timestamptz NOT NULL,
  amount_minor bigint NOT NULL,
  PRIMARY KEY (invoice_id, position)
);

-- One trial per customer and product, ever.
CREATE TABLE trial_usage (
  customer_id text NOT NULL,
  product_id text NOT NULL,
  subscription_id text NOT NULL REFERENCES subscriptions (id),
  created_at timestamptz NOT NULL,
  PRIMARY KEY (customer_id, product_id)
);
