CREATE TABLE markets (
  id text PRIMARY KEY,
  code text NOT NULL UNIQUE CHECK (code ~ '^[A-Z]{2}$'),
  name text,
  currency char(3) NOT NULL,
  tax_rate_bps integer NOT NULL CHECK (tax_rate_bps BETWEEN 0 AND 10000),
  tax_inclusive boolean NOT NULL,
  created_at timestamptz NOT NULL
);

CREATE TABLE products (
  id text PRIMARY KEY,
  code text NOT NULL UNIQUE,
  name text NOT NULL,
  features jsonb NOT NULL,
  seats integer NOT NULL CHECK (seats BETWEEN 1 AND 100),
  created_at timestamptz NOT NULL
);

CREATE TABLE plans (
  id text PRIMARY KEY,
  code text NOT NULL UNIQUE,
  product_id text NOT NULL REFERENCES products (id),
  name text NOT NULL,
  billing_period text NOT NULL CHECK (billing_period IN ('week', 'month', 'year')),
  trial_days integer NOT NULL CHECK (trial_days BETWEEN 0 AND 730),
  change_timing text CHECK (change_timing IN ('immediate', 'end_of_term')),
  cancel_timing text CHECK (cancel_timing IN ('immediate', 'end_of_term')),
  created_at timestamptz NOT NULL
);
CREATE INDEX plans_product ON plans (product_id);

-- Version 1 of every plan has no effective_at: it applies from the beginning of time.
CREATE TABLE price_versions (
  id text PRIMARY KEY,
  plan_id text NOT NULL REFERENCES plans (id),
  version integer NOT NULL CHECK (version >= 1),
  effective_at timestamptz,
  existing_subscribers_from timestamptz,
  created_at timestamptz NOT NULL,
  UNIQUE (plan_id, version),
  CHECK ((version = 1) = (effective_at IS NULL)),
  CHECK (existing_subscribers_from IS NULL OR existing_subscribers_from >= effective_at)
);

CREATE TABLE plan_prices (
  price_version_id text NOT NULL REFERENCES price_versions (id),
  currency char(3) NOT NULL,
  market_id text REFERENCES markets (id),
  amount_minor bigint NOT NULL CHECK (amount_minor >= 0)
);
CREATE UNIQUE INDEX plan_prices_unique ON plan_prices (price_version_id, currency, coalesce(market_id, ''));
