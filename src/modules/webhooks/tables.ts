import { type Executor, ownTables } from '../../db/schema.js';

export interface WebhookEndpointsTable {
  id: string;
  url: string;
  event_types: string[];
  description: string | null;
  status: 'enabled' | 'disabled' | 'deleted';
  disabled_reason: 'requested' | 'failing' | null;
  secret_cipher: Uint8Array | null;
  previous_secret_cipher: Uint8Array | null;
  previous_secret_expires_at: Date | null;
  failing_since: Date | null;
  version: number;
  created_at: Date;
  updated_at: Date;
}

export interface WebhookPayloadsTable {
  event_id: string;
  body: string;
  created_at: Date;
}

export interface WebhookDeliveriesTable {
  id: string;
  endpoint_id: string;
  event_id: string;
  event_type: string;
  status: 'pending' | 'succeeded' | 'failed';
  attempts: number;
  response_code: number | null;
  last_error: string | null;
  first_attempt_at: Date | null;
  last_attempt_at: Date | null;
  next_attempt_at: Date | null;
  lease_token: string | null;
  leased_until: Date | null;
  created_at: Date;
}

/** The webhooks module's tables: only these can be queried through `webhookTables(executor)`. */
export interface WebhookTables {
  webhook_endpoints: WebhookEndpointsTable;
  webhook_payloads: WebhookPayloadsTable;
  webhook_deliveries: WebhookDeliveriesTable;
}

export const webhookTables = (executor: Executor) => ownTables<WebhookTables>(executor);
