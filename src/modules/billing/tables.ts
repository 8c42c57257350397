import { type Executor, ownTables } from '../../db/schema.js';
import type { CreditNoteReason } from './domain/credit-note.js';
import type { LineKind } from './domain/invoice.js';
import type { SubscriptionStatus } from './domain/lifecycle.js';
import type { BillingPeriod } from './domain/periods.js';

export interface SubscriptionsTable {
  id: string;
  customer_id: string;
  plan_id: string;
  product_id: string;
  price_version_id: string;
  price_minor: number;
  currency: string;
  status: SubscriptionStatus;
  billing_period: BillingPeriod;
  billing_anchor: Date;
  billing_cycle_day: number | null;
  current_period_start: Date | null;
  current_period_end: Date | null;
  trial_end: Date | null;
  cancel_at: Date | null;
  ended_at: Date | null;
  paused_at: Date | null;
  past_due_since: Date | null;
  version: number;
  request_key: string | null;
  request_hash: string | null;
  created_at: Date;
  updated_at: Date;
  /** A change waiting for the term end (migration 0047): the plan, and when it takes effect. */
  pending_plan_id: string | null;
  pending_change_at: Date | null;
  /** When the subscriber moved to its current plan (null: at creation); grandfathering starts there. */
  plan_started_at: Date | null;
}

export interface SubscriptionMembersTable {
  subscription_id: string;
  external_id: string;
  created_at: Date;
}

export interface InvoiceNumberSeriesTable {
  series: string;
  last_number: number;
}

export interface InvoiceNumberPoolTable {
  series: string;
  number: number;
  owner: string;
  lease_until: Date;
}

export type InvoiceStatus = 'draft' | 'open' | 'paid' | 'void' | 'uncollectible';
export type InvoiceReason =
  | 'subscription_create'
  | 'subscription_cycle'
  | 'subscription_update'
  | 'subscription_pause'
  | 'subscription_resume';

export interface InvoicesTable {
  id: string;
  series: string | null;
  number: string | null;
  customer_id: string;
  subscription_id: string;
  reason: InvoiceReason;
  status: InvoiceStatus;
  currency: string;
  tax_rate_bps: number;
  tax_inclusive: boolean;
  subtotal_minor: number;
  tax_minor: number;
  total_minor: number;
  net_minor: number;
  credit_applied_minor: number;
  credit_created_minor: number;
  amount_due_minor: number;
  period_start: Date;
  period_end: Date;
  payment_id: string | null;
  /** Charge attempts started (dunning): attempt n's payment is keyed by `invoiceAttemptKey`. */
  attempts: number;
  /** The charge job's last step made: 1 the first charge, r + 1 dunning retry r (0: none). */
  scheduled_attempts: number;
  version: number;
  finalized_at: Date | null;
  paid_at: Date | null;
  created_at: Date;
  updated_at: Date;
}

export interface InvoiceLinesTable {
  invoice_id: string;
  position: number;
  kind: LineKind;
  description: string;
  period_start: Date;
  period_end: Date;
  amount_minor: number;
  /** Revenue net of tax (`lineNets`) for charge lines; 0 for `tax` and `credit_applied`. */
  net_minor: number;
}

export interface TrialUsageTable {
  customer_id: string;
  product_id: string;
  subscription_id: string;
  created_at: Date;
}

export interface AccountCreditsTable {
  customer_id: string;
  currency: string;
  balance_minor: number;
  updated_at: Date;
}

/** An accepted plan change request (migration 0047): resumed by its request key. */
export interface SubscriptionChangesTable {
  id: string;
  subscription_id: string;
  request_key: string | null;
  request_hash: string | null;
  from_plan_id: string;
  to_plan_id: string;
  timing: 'immediate' | 'end_of_term';
  effective_at: Date;
  invoice_id: string | null;
  created_at: Date;
}

/** A net recognised daily over [first_day, last_day] (UTC day numbers), see migration 0044. */
export interface RecognitionLinesTable {
  /** The invoice id (its charge lines), the credit note id, or `<invoice id>:void`. */
  source: string;
  position: number;
  invoice_id: string;
  /** `live` or the customer's test clock id. */
  scope: string;
  currency: string;
  first_day: number;
  last_day: number;
  net_minor: number;
}

export interface RecognitionCursorsTable {
  scope: string;
  /** The last UTC day number recognised. */
  recognised_through: number;
  updated_at: Date;
}

export interface RevenueRecognitionsTable {
  scope: string;
  currency: string;
  /** `YYYY-MM-DD` (a `date`: write it as this text, read it with `::text`). */
  day: string;
  amount_minor: number;
  created_at: Date;
}

export interface CreditNotesTable {
  id: string;
  invoice_id: string;
  refund_id: string;
  payment_id: string;
  currency: string;
  amount_minor: number;
  tax_minor: number;
  net_minor: number;
  from_deferred_minor: number;
  from_revenue_minor: number;
  reason: CreditNoteReason;
  created_at: Date;
}

/** The billing module's tables: only these can be queried through `billingTables(executor)`. */
export interface BillingTables {
  subscriptions: SubscriptionsTable;
  subscription_members: SubscriptionMembersTable;
  invoice_number_series: InvoiceNumberSeriesTable;
  invoice_number_pool: InvoiceNumberPoolTable;
  invoices: InvoicesTable;
  invoice_lines: InvoiceLinesTable;
  trial_usage: TrialUsageTable;
  account_credits: AccountCreditsTable;
  subscription_changes: SubscriptionChangesTable;
  recognition_lines: RecognitionLinesTable;
  recognition_cursors: RecognitionCursorsTable;
  revenue_recognitions: RevenueRecognitionsTable;
  credit_notes: CreditNotesTable;
}

export const billingTables = (executor: Executor) => ownTables<BillingTables>(executor);
