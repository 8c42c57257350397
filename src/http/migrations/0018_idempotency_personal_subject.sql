-- Erasing a customer also retires the stored requests that created or carried their personal
-- data (ADR 0012): found by the customer id in personal_ref.
CREATE INDEX idempotency_keys_personal_subject ON idempotency_keys ((personal_ref ->> 'customerId'))
  WHERE personal_ref IS NOT NULL;
