-- Payment methods are provider tokens only (never card numbers): one token per provider instance
-- the method was tokenized at, so a payment can fail over to another provider.
CREATE TABLE payment_methods (
  id text PRIMARY KEY,
  customer_id text NOT NULL,
  provider_kind text NOT NULL,
  brand text NOT NULL,
  last4 text NOT NULL CHECK (last4 ~ '^[0-9]{4}$'),
  is_default boolean NOT NULL,
  -- `<api key id>:<Idempotency-Key>` of the attaching request: a retry after a crash finds it.
  request_key text UNIQUE,
  created_at timestamptz NOT NULL
);
CREATE INDEX payment_methods_customer ON payment_methods (customer_id, id);
CREATE UNIQUE INDEX payment_methods_one_default ON payment_methods (customer_id) WHERE is_default;

CREATE TABLE payment_method_tokens (
  payment_method_id text NOT NULL REFERENCES payment_methods (id),
  provider text NOT NULL,
  provider_method_id text NOT NULL,
  PRIMARY KEY (payment_method_id, provider)
);

CREATE TABLE payments (
  id text PRIMARY KEY,
  customer_id text NOT NULL,
  payment_method_id text NOT NULL REFERENCES payment_methods (id),
  amount_minor bigint NOT NULL CHECK (amount_minor > 0),
  currency char(3) NOT NULL,
  tax_minor bigint NOT NULL CHECK (tax_minor >= 0 AND tax_minor <= amount_minor),
  fee_minor bigint NOT NULL DEFAULT 0 CHECK (fee_minor >= 0),
  amount_refunded_minor bigint NOT NULL DEFAULT 0 CHECK (amount_refunded_minor >= 0 AND amount_refunded_minor <= amount_minor),
  tax_refunded_minor bigint NOT NULL DEFAULT 0 CHECK (tax_refunded_minor >= 0 AND tax_refunded_minor <= tax_minor),
  status text NOT NULL CHECK (status IN ('processing', 'authorized', 'succeeded', 'failed', 'partially_refunded',
    'refunded', 'voided', 'disputed', 'dispute_won', 'dispute_lost')),
  captured boolean NOT NULL DEFAULT false,
  -- automatic: charged at once; manual: authorized now, captured or voided later.
  capture_method text NOT NULL CHECK (capture_method IN ('automatic', 'manual')),
  provider text NOT NULL,
  provider_payment_id text,
  decline_code text,
  description text NOT NULL,
  reference text,
  routing jsonb NOT NULL,
  -- `<api key id>:<Idempotency-Key>` of the request that created it: a retry after a crash
  -- resumes this payment instead of creating another.
  request_key text UNIQUE,
  created_at timestamptz NOT NULL,
  updated_at timestamptz NOT NULL
);
CREATE UNIQUE INDEX payments_provider_payment ON payments (provider, provider_payment_id) WHERE provider_payment_id IS NOT NULL;
CREATE INDEX payments_customer ON payments (customer_id, id);
CREATE INDEX payments_processing ON payments (created_at) WHERE status = 'processing';

CREATE TABLE refunds (
  id text PRIMARY KEY,
  payment_id text NOT NULL REFERENCES payments (id),
  amount_minor bigint NOT NULL CHECK (amount_minor > 0),
  status text NOT NULL CHECK (status IN ('pending', 'succeeded', 'failed')),
  provider_refund_id text,
  failure_reason text,
  request_key text UNIQUE,
  created_at timestamptz NOT NULL,
  updated_at timestamptz NOT NULL
);
CREATE INDEX refunds_payment ON refunds (payment_id);
CREATE UNIQUE INDEX refunds_provider_refund ON refunds (provider_refund_id) WHERE provider_refund_id IS NOT NULL;

CREATE TABLE disputes (
  id text PRIMARY KEY,
  payment_id text NOT NULL REFERENCES payments (id),
  provider_dispute_id text NOT NULL UNIQUE,
  status text NOT NULL CHECK (status IN ('open', 'won', 'lost')),
  amount_minor bigint NOT NULL CHECK (amount_minor >= 0),
  fee_minor bigint NOT NULL CHECK (fee_minor >= 0),
  created_at timestamptz NOT NULL,
  closed_at timestamptz
);
CREATE INDEX disputes_payment ON disputes (payment_id);

-- Inbound provider webhooks seen, by the provider's event id: the dedupe of at-least-once delivery.
CREATE TABLE provider_events (
  provider text NOT NULL,
  event_id text NOT NULL,
  type text NOT NULL,
  payment_id text,
  received_at timestamptz NOT NULL,
  PRIMARY KEY (provider, event_id)
);
