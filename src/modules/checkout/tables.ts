import { type Executor, ownTables } from '../../db/schema.js';

export interface CheckoutSessionsTable {
  id: string;
  secret_hash: Uint8Array;
  plan_id: string;
  market_id: string;
  customer_id: string | null;
  external_id: string;
  success_url: string | null;
  cancel_url: string | null;
  status: 'open' | 'complete' | 'expired';
  expires_at: Date;
  subscription_id: string | null;
  attempts: number;
  payment_method_id: string | null;
  attempt_token_hash: Uint8Array | null;
  busy_until: Date | null;
  created_at: Date;
  completed_at: Date | null;
  updated_at: Date;
}

/** The checkout module's tables: only these can be queried through `checkoutTables(executor)`. */
export interface CheckoutTables {
  checkout_sessions: CheckoutSessionsTable;
}

export const checkoutTables = (executor: Executor) => ownTables<CheckoutTables>(executor);
