import { type Executor, ownTables } from '../../db/schema.js';

export type PaymentStatus =
  | 'processing'
  | 'authorized'
  | 'succeeded'
  | 'failed'
  | 'partially_refunded'
  | 'refunded'
  | 'voided'
  | 'disputed'
  | 'dispute_won'
  | 'dispute_lost';

export interface PaymentMethodsTable {
  id: string;
  customer_id: string;
  provider_kind: string;
  brand: string;
  last4: string;
  is_default: boolean;
  request_key: string | null;
  request_hash: string | null;
  created_at: Date;
}

export interface PaymentMethodTokensTable {
  payment_method_id: string;
  provider: string;
  provider_method_id: string;
}

export interface PaymentsTable {
  id: string;
  customer_id: string;
  payment_method_id: string;
  amount_minor: number;
  currency: string;
  tax_minor: number;
  fee_minor: number;
  amount_refunded_minor: number;
  tax_refunded_minor: number;
  status: PaymentStatus;
  captured: boolean;
  capture_method: 'automatic' | 'manual';
  provider: string;
  provider_payment_id: string | null;
  decline_code: string | null;
  description: string;
  reference: string | null;
  routing: unknown;
  request_key: string | null;
  request_hash: string | null;
  /** The charge lease (see migration 0011): whose call may be in flight, and until when. */
  charge_token: string | null;
  charge_deadline_at: Date | null;
  /** The version of the payment's last event (payment.succeeded / failed / refunded); 0 before any. */
  version: number;
  created_at: Date;
  updated_at: Date;
}

export interface RefundsTable {
  id: string;
  payment_id: string;
  amount_minor: number;
  status: 'pending' | 'succeeded' | 'failed';
  provider_refund_id: string | null;
  failure_reason: string | null;
  request_key: string | null;
  request_hash: string | null;
  reason: 'late_capture' | null;
  created_at: Date;
  updated_at: Date;
}

export interface DisputesTable {
  id: string;
  payment_id: string;
  provider_dispute_id: string;
  status: 'open' | 'won' | 'lost';
  amount_minor: number;
  fee_minor: number;
  created_at: Date;
  closed_at: Date | null;
}

export interface ProviderEventsTable {
  provider: string;
  event_id: string;
  type: string;
  payment_id: string | null;
  received_at: Date;
}

/** The payments module's tables: only these can be queried through `paymentTables(executor)`. */
export interface PaymentTables {
  payment_methods: PaymentMethodsTable;
  payment_method_tokens: PaymentMethodTokensTable;
  payments: PaymentsTable;
  refunds: RefundsTable;
  disputes: DisputesTable;
  provider_events: ProviderEventsTable;
}

export const paymentTables = (executor: Executor) => ownTables<PaymentTables>(executor);
