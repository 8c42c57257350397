-- The admin dashboard's 30-day series (ADR 0022): failed payments and refunds by when they were
-- made, read through these instead of a scan of every payment and refund ever made. Failed
-- payments are a small share of all payments: the index holds only them.
CREATE INDEX payments_failed_created ON payments (created_at) WHERE status = 'failed';
CREATE INDEX refunds_created ON refunds (created_at);
