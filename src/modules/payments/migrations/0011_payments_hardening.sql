-- Issue 6: the input behind each request key, the charge lease, late-capture refunds, event pruning.

-- sha256 of the canonical input of the request that created the row: a resume by request key
-- with other input is refused (422 idempotency_key_reused), even after idempotency_keys is pruned.
ALTER TABLE payments ADD COLUMN request_hash text;
ALTER TABLE refunds ADD COLUMN request_hash text;
ALTER TABLE payment_methods ADD COLUMN request_hash text;

-- The charge lease: a call to `provider` may be in flight until charge_deadline_at (every attempt
-- of the adapter, plus a margin). Only the holder of charge_token may move the payment to another
-- provider, and a lookup that finds nothing fails the payment only once the deadline has passed.
ALTER TABLE payments ADD COLUMN charge_token text;
ALTER TABLE payments ADD COLUMN charge_deadline_at timestamptz;
UPDATE payments SET charge_deadline_at = updated_at + interval '10 minutes' WHERE status = 'processing';

-- Why a refund was made by Reprise itself (`late_capture`: the provider captured a payment we had
-- already closed, ADR 0010); null for refunds clients asked for or made at the provider.
ALTER TABLE refunds ADD COLUMN reason text CHECK (reason IN ('late_capture'));

-- provider_events is the webhook dedupe window: pruned by age in bounded batches.
CREATE INDEX provider_events_received ON provider_events (received_at);
