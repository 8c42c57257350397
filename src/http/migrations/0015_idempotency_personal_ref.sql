-- Stored responses keep no personal data (ADR 0012): a response that carried some is stored with
-- those fields null, and personal_ref says whose they were so a replay rebuilds them from the
-- customer (null once erased).
ALTER TABLE idempotency_keys ADD COLUMN personal_ref jsonb;
-- Customers created before this version (POST /v1/customers, 201) left email and name here in
-- plaintext: clear them, as the new code stores them.
UPDATE idempotency_keys
SET response_body = (response_body::jsonb || '{"email": null, "name": null}'::jsonb)::text,
    personal_ref = jsonb_build_object(
      'customerId', response_body::jsonb ->> 'id',
      'fields', '["email", "name"]'::jsonb)
WHERE state = 'completed' AND method = 'POST' AND response_status = 201
  AND CASE WHEN left(response_body, 1) = '{'
        THEN (response_body::jsonb ->> 'id') LIKE 'cus\_%' AND (response_body::jsonb -> 'email') IS NOT NULL
        ELSE false END;
