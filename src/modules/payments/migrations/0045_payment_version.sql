-- The version of a payment's events (ADR 0015): payment.succeeded, payment.failed and
-- payment.refunded take the next one, in the transaction that records the fact, under the row lock.
ALTER TABLE payments ADD COLUMN version integer NOT NULL DEFAULT 0;
