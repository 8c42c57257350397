import { transact } from '../../../db/transaction.js';
import { isCurrency } from '../../../kernel/currency.js';
import { DomainError, invalid, invalidState } from '../../../kernel/errors.js';
import { newId } from '../../../kernel/ids.js';
import { amountProblem } from '../../../kernel/money.js';
import { assertSameInput, inputHash, type Payment, type PaymentsContext } from '../context.js';
import { taxOfOneOff } from '../domain/tax.js';
import { methodWithTokens } from '../methods/queries.js';
import { type PaymentsTable, paymentTables } from '../tables.js';
import { type ChargeLease, chargeDeadline, newLease } from './lease.js';

export interface PaymentInput {
  customer: string;
  /** Priced like a catalog price of the customer's market: tax included or excluded as it says. */
  amount: number;
  currency: string;
  paymentMethod?: string | undefined;
  description: string;
  reference?: string | undefined;
  /** false: authorize only; capture or void later. */
  capture?: boolean | undefined;
  /**
   * Internal callers only (never from HTTP): `amount` is the amount charged, tax included, and
   * this is its tax part (an invoice's amount due after account credit: the invoice decided its tax).
   */
  taxMinor?: number | undefined;
}

/** The reconciliation job of a payment, due when its current charge deadline has passed. */
export function reconcileJob(payment: { id: string }, deadline: Date) {
  return {
    kind: 'payments.reconcile',
    runAt: deadline,
    payload: { payment: payment.id },
    dedupeKey: `payments.reconcile:${payment.id}:${deadline.getTime()}`,
  };
}

/**
 * Validates, prices (tax), routes and stores the payment as `processing` holding the charge lease,
 * with its reconciliation job, or finds the one this request key already created (same input
 * only). Returns the payment to charge.
 */
export async function startPayment(
  ctx: PaymentsContext,
  input: PaymentInput,
  requestKey: string | null,
): Promise<{ payment: Payment; lease: ChargeLease }> {
  const hash = inputHash({ ...input, capture: input.capture ?? true });
  if (requestKey) {
    const existing = await ctx.tables
      .selectFrom('payments')
      .selectAll()
      .where('request_key', '=', requestKey)
      .executeTakeFirst();
    if (existing) {
      assertSameInput(existing, hash, `payment ${existing.id}`);
      return { payment: existing, lease: newLease() };
    }
  }
  if (!isCurrency(input.currency))
    throw invalid('currency', `'${input.currency}' is not an ISO 4217 currency`);
  const amountIssue = amountProblem(input.amount, input.currency);
  if (amountIssue) throw invalid('amount', amountIssue);
  const customer = await ctx.customers.get(input.customer);
  if (customer.erasedAt) throw invalidState(`Customer ${customer.id} was erased.`);
  const market = await ctx.catalog.getMarket(customer.marketId);
  if (market.currency !== input.currency) {
    throw invalid(
      'currency',
      `the customer's market ${market.code} sells in ${market.currency}; charge in ${market.currency}`,
    );
  }
  const priced =
    input.taxMinor === undefined
      ? taxOfOneOff(input.amount, market)
      : {
          chargedMinor: input.amount,
          taxMinor: input.taxMinor,
          subtotalMinor: input.amount - input.taxMinor,
        };
  if (priced.taxMinor < 0 || priced.taxMinor > priced.chargedMinor || !Number.isSafeInteger(priced.taxMinor))
    throw invalid('amount', `tax ${priced.taxMinor} must lie within the amount ${priced.chargedMinor}`);
  const chargedIssue = amountProblem(priced.chargedMinor, input.currency);
  if (chargedIssue) throw invalid('amount', `with ${priced.taxMinor} tax added, the total ${chargedIssue}`);
  // The method and its tokens in one query; the tokens ride on the lease to the charge.
  const found = await methodWithTokens(ctx, customer.id, input.paymentMethod);
  const method = found?.method;
  if (!found || !method) {
    throw input.paymentMethod
      ? invalid('paymentMethod', `no payment method '${input.paymentMethod}' for this customer`)
      : invalid('paymentMethod', 'the customer has no default payment method; attach one or name one');
  }
  const providers = [...found.tokens.keys()];
  const decision = ctx.router.plan(market.code, method.brand, new Set(providers));
  const first = decision.candidates[0];
  if (!first) {
    throw new DomainError(
      'provider_unavailable',
      'No payment provider is available for this payment method right now.',
      {
        extra: { routing: decision },
      },
    );
  }
  decision.chosen = first;
  const now = ctx.clock.now();
  const lease: ChargeLease = { ...newLease(true), tokens: found.tokens };
  const deadline = chargeDeadline(ctx, first);
  const row: PaymentsTable = {
    id: newId('payment'),
    customer_id: customer.id,
    payment_method_id: method.id,
    amount_minor: priced.chargedMinor,
    currency: input.currency,
    tax_minor: priced.taxMinor,
    fee_minor: 0,
    amount_refunded_minor: 0,
    tax_refunded_minor: 0,
    status: 'processing',
    captured: false,
    capture_method: input.capture === false ? 'manual' : 'automatic',
    provider: first,
    provider_payment_id: null,
    decline_code: null,
    description: input.description,
    reference: input.reference ?? null,
    routing: JSON.stringify(decision),
    request_key: requestKey,
    request_hash: requestKey ? hash : null,
    charge_token: lease.token,
    charge_deadline_at: deadline,
    version: 0,
    created_at: now,
    updated_at: now,
  };
  return transact(ctx.db, async (trx) => {
    const db = paymentTables(trx);
    const inserted = await db
      .insertInto('payments')
      .values(row)
      .onConflict((oc) => oc.column('request_key').doNothing())
      .returningAll()
      .executeTakeFirst();
    if (!inserted) {
      // A concurrent twin of this request created it first.
      const twin = await db
        .selectFrom('payments')
        .selectAll()
        .where('request_key', '=', requestKey)
        .executeTakeFirstOrThrow();
      assertSameInput(twin, hash, `payment ${twin.id}`);
      return { payment: twin, lease: newLease() };
    }
    await ctx.jobs.schedule(trx, reconcileJob(inserted, deadline));
    return { payment: inserted, lease };
  });
}
