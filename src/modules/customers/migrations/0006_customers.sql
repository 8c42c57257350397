-- email and name are AES-256-GCM ciphertexts under the customer's own data key, which is stored
-- wrapped by the master key. Erasure deletes the wrapped key: the ciphertexts become noise.
CREATE TABLE customers (
  id text PRIMARY KEY,
  external_id text NOT NULL UNIQUE CHECK (length(external_id) BETWEEN 1 AND 255),
  market_id text NOT NULL,
  billing_cycle_day integer CHECK (billing_cycle_day BETWEEN 1 AND 31),
  test_clock_id text,
  wrapped_data_key bytea,
  master_key_id text,
  email_cipher bytea,
  name_cipher bytea,
  erased_at timestamptz,
  created_at timestamptz NOT NULL,
  CHECK (erased_at IS NULL OR wrapped_data_key IS NULL)
);
CREATE INDEX customers_test_clock ON customers (test_clock_id) WHERE test_clock_id IS NOT NULL;
