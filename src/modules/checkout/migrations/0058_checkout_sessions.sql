-- Hosted checkout sessions (ADR 0023): a link a customer opens to subscribe to one plan, paying
-- with a card the payment provider's own frame tokenizes. Single-use, expires 24 hours after it
-- was created; pruned 30 days after that.

CREATE TABLE checkout_sessions (
  id text PRIMARY KEY,
  -- sha256 of the client secret (`cs_secret_…`), which only the create call's answer ever shows.
  secret_hash bytea NOT NULL CHECK (octet_length(secret_hash) = 32),
  plan_id text NOT NULL,
  market_id text NOT NULL,
  -- The customer, once known: at creation when it existed, else made by the first confirm.
  customer_id text,
  external_id text NOT NULL CHECK (length(external_id) BETWEEN 1 AND 255),
  success_url text CHECK (length(success_url) <= 2048),
  cancel_url text CHECK (length(cancel_url) <= 2048),
  status text NOT NULL CHECK (status IN ('open', 'complete', 'expired')),
  expires_at timestamptz NOT NULL,
  subscription_id text,
  -- Confirm attempts begun; the card attached by the latest one.
  attempts integer NOT NULL CHECK (attempts >= 0),
  payment_method_id text,
  -- sha256 of the latest attempt's card token while that attempt has not concluded (a crash, a
  -- provider that has not answered): a confirm again with the same token resumes that attempt.
  attempt_token_hash bytea,
  -- A confirm holds the session until then: a second confirm meanwhile is refused (409).
  busy_until timestamptz,
  created_at timestamptz NOT NULL,
  completed_at timestamptz,
  updated_at timestamptz NOT NULL
);

-- The prune (sessions expired for 30 days) finds its rows by index; lists page by id.
CREATE INDEX checkout_sessions_expires ON checkout_sessions (expires_at);
