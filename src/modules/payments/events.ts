import type { Executor } from '../../db/schema.js';
import type { JsonObject } from '../../events/types.js';
import { isIdOf } from '../../kernel/ids.js';
import type { Payment, PaymentsContext } from './context.js';
import { paymentTables } from './tables.js';

export type PaymentEventType = 'payment.succeeded' | 'payment.failed' | 'payment.refunded';

/**
 * Appends a payment event (ADR 0015) in the transaction that records its fact: the payment's
 * `version` is bumped under the row lock (the update takes it) and the event carries it, so
 * versions of one payment increase in commit order. Ids and amounts only, no personal data.
 */
export async function paymentEvent(
  ctx: PaymentsContext,
  trx: Executor,
  type: PaymentEventType,
  paymentId: string,
): Promise<void> {
  const row = await paymentTables(trx)
    .updateTable('payments')
    .set((eb) => ({ version: eb('version', '+', 1) }))
    .where('id', '=', paymentId)
    .returningAll()
    .executeTakeFirstOrThrow();
  await appendPaymentEvent(ctx, trx, type, row);
}

/**
 * Appends the event of a payment row whose `version` the caller's update has just bumped (that
 * update holds the row lock, so versions of one payment increase in commit order).
 */
export async function appendPaymentEvent(
  ctx: PaymentsContext,
  trx: Executor,
  type: PaymentEventType,
  row: Payment,
): Promise<void> {
  await ctx.events.append(trx, {
    type,
    aggregate: { type: 'payment', id: row.id, version: row.version },
    customerId: row.customer_id,
    data: { object: paymentObject(row) },
  });
}

/** `invoice` is present when the payment pays an invoice (its reference is an invoice id). */
export function paymentObject(p: Payment): JsonObject {
  return {
    id: p.id,
    status: p.status,
    amount: p.amount_minor,
    amountRefunded: p.amount_refunded_minor,
    currency: p.currency,
    customer: p.customer_id,
    ...(p.reference !== null && isIdOf('invoice', p.reference) ? { invoice: p.reference } : {}),
  };
}
