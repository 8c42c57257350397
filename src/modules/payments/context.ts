import type { Kysely } from 'kysely';
import type { Db, Executor } from '../../db/schema.js';
import type { EventsOutbox } from '../../events/outbox.js';
import type { JobScheduler } from '../../jobs/scheduler.js';
import { canonicalJson, sha256Hex } from '../../kernel/canonical-json.js';
import type { Clock } from '../../kernel/clock.js';
import { DomainError } from '../../kernel/errors.js';
import type { ProviderRouter } from '../../providers/router.js';
import type { CatalogService } from '../catalog/service.js';
import type { CustomerService } from '../customers/service.js';
import type { LedgerService } from '../ledger/service.js';
import { baseOf, deriveStatus } from './domain/status.js';
import { type PaymentsTable, type PaymentTables, paymentTables, type RefundsTable } from './tables.js';

/** What every payments use case works with: its tables, its clock, the modules it calls. */
export interface PaymentsContext {
  /** The shared database: only to open transactions (`transact`) and as the default executor. */
  db: Db;
  /** The shared database seen through this module's tables, for queries outside a transaction. */
  tables: Kysely<PaymentTables>;
  clock: Clock;
  customers: CustomerService;
  catalog: CatalogService;
  ledger: LedgerService;
  router: ProviderRouter;
  jobs: JobScheduler;
  events: EventsOutbox;
  /** Called in the transaction that books each succeeded refund (billing's credit notes). */
  refundListeners: RefundListener[];
}

/** A succeeded refund, as booked: what another module needs to follow it in the same transaction. */
export interface RefundFact {
  refundId: string;
  paymentId: string;
  customerId: string;
  /** The payment's reference (an invoice id for an invoice's payment). */
  reference: string | null;
  currency: string;
  amountMinor: number;
  /** The tax part the payments module booked for this refund (`refundTaxPart`). */
  taxMinor: number;
  paymentAmountMinor: number;
}

export type RefundListener = (trx: Executor, refund: RefundFact) => Promise<void>;

export type Payment = PaymentsTable;
export type Refund = RefundsTable;

/** Margin after an attempt's last possible answer during which a provider may still process it. */
export const CHARGE_DEADLINE_MARGIN_MS = 30_000;

/** The hash stored beside a request key: a resume with other input is another request. */
export function inputHash(input: unknown): string {
  return sha256Hex(canonicalJson(input));
}

/** Refuses to resume a stored row under a request key that came with other input. */
export function assertSameInput(stored: { request_hash: string | null }, hash: string, what: string): void {
  // Rows stored before the hash existed (null) are resumed as before.
  if (stored.request_hash !== null && stored.request_hash !== hash) {
    throw new DomainError(
      'idempotency_key_reused',
      `This Idempotency-Key created ${what} with a different request; use a new key for new input.`,
    );
  }
}

export function factsOf(p: Pick<Payment, 'id' | 'provider' | 'currency' | 'amount_minor' | 'tax_minor'>) {
  return {
    id: p.id,
    provider: p.provider,
    currency: p.currency,
    amountMinor: p.amount_minor,
    taxMinor: p.tax_minor,
  };
}

export function asJson(value: unknown): string {
  return typeof value === 'string' ? value : JSON.stringify(value);
}

export function statusOf(p: Payment, dispute: 'open' | 'won' | 'lost' | null) {
  return deriveStatus({
    base: baseOf(p.status, p.captured),
    amountMinor: p.amount_minor,
    amountRefundedMinor: p.amount_refunded_minor,
    dispute,
  });
}

export async function disputeState(
  db: Kysely<PaymentTables>,
  paymentId: string,
): Promise<'open' | 'won' | 'lost' | null> {
  const d = await db
    .selectFrom('disputes')
    .select('status')
    .where('payment_id', '=', paymentId)
    .orderBy('created_at', 'desc')
    .executeTakeFirst();
  return d?.status ?? null;
}

/** The payment row, locked for the rest of the caller's transaction (it must exist: a bug otherwise). */
export function lockPayment(db: Kysely<PaymentTables>, id: string): Promise<Payment> {
  return db.selectFrom('payments').selectAll().where('id', '=', id).forUpdate().executeTakeFirstOrThrow();
}

export async function getPayment(ctx: PaymentsContext, id: string, trx: Executor = ctx.db): Promise<Payment> {
  const row = await paymentTables(trx)
    .selectFrom('payments')
    .selectAll()
    .where('id', '=', id)
    .executeTakeFirst();
  if (!row)
    throw new DomainError('not_found', `No payment found for '${id}'.`, { extra: { resource: 'payment' } });
  return row;
}
