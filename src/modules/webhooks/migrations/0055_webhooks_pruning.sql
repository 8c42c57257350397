-- Pruning of finished webhook work (WebhookService.prune): finished deliveries by their last
-- attempt, event bodies by age; both found by index whatever the tables' sizes.
CREATE INDEX webhook_deliveries_finished ON webhook_deliveries (last_attempt_at) WHERE status <> 'pending';
CREATE INDEX webhook_payloads_created ON webhook_payloads (created_at);
