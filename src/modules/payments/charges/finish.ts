import { sql } from 'kysely';
import type { Executor } from '../../../db/schema.js';
import type { ChargeResult } from '../../../providers/port.js';
import { asJson, factsOf, getPayment, type Payment, type PaymentsContext } from '../context.js';
import { captureEntry, feeEntry } from '../domain/entries.js';
import { appendPaymentEvent, paymentEvent } from '../events.js';
import { paymentTables } from '../tables.js';
import { applyCapture } from './apply-capture.js';

/**
 * Records the provider's answer inside the caller's transaction, with its ledger entries. The
 * route taken is recorded whoever got there first; the outcome is conditional on the payment's
 * state, so a webhook that won the race makes this a no-op, and a capture that arrives after
 * the payment was closed is booked and refunded.
 *
 * The usual case, the answer to our own call for a payment still `processing`, is one statement:
 * route, outcome and the event's version in one conditional update that returns the row (ledger
 * and event follow). Anything else (someone settled it first, an authorization) takes the general
 * path through `applyCapture`.
 */
export async function finishPayment(
  ctx: PaymentsContext,
  trx: Executor,
  payment: Payment,
  result: ChargeResult,
): Promise<Payment> {
  const fast = await settleProcessing(ctx, trx, payment, result);
  if (fast) return fast;
  const db = paymentTables(trx);
  const now = ctx.clock.now();
  await db
    .updateTable('payments')
    .set({ routing: asJson(payment.routing), updated_at: now })
    .where('id', '=', payment.id)
    .execute();
  if (result.status === 'declined') {
    const failed = await db
      .updateTable('payments')
      .set({
        status: 'failed',
        decline_code: result.declineCode,
        provider: payment.provider,
        provider_payment_id: result.providerPaymentId,
        updated_at: now,
      })
      .where('id', '=', payment.id)
      .where('status', '=', 'processing')
      .executeTakeFirst();
    if (failed.numUpdatedRows === 1n) await paymentEvent(ctx, trx, 'payment.failed', payment.id);
  } else {
    await applyCapture(ctx, trx, payment.id, {
      provider: payment.provider,
      providerPaymentId: result.providerPaymentId,
      captured: result.status === 'succeeded',
      feeMinor: result.feeMinor,
    });
  }
  return getPayment(ctx, payment.id, trx);
}

/**
 * A decline or a capture of a payment still `processing` (not captured, nothing refunded, no
 * dispute: its status becomes exactly `failed` or `succeeded`), as one update returning the row
 * with its version bumped for the event. Null when the payment is in any other state: nothing
 * was written, the general path decides.
 */
async function settleProcessing(
  ctx: PaymentsContext,
  trx: Executor,
  payment: Payment,
  result: ChargeResult,
): Promise<Payment | null> {
  if (result.status === 'authorized') return null;
  const now = ctx.clock.now();
  const common = {
    routing: asJson(payment.routing),
    provider: payment.provider,
    provider_payment_id: result.providerPaymentId,
    updated_at: now,
    version: sql<number>`version + 1`,
  };
  const q = paymentTables(trx)
    .updateTable('payments')
    .where('id', '=', payment.id)
    .where('status', '=', 'processing')
    .where('captured', '=', false);
  if (result.status === 'declined') {
    const row = await q
      .set({ ...common, status: 'failed', decline_code: result.declineCode })
      .returningAll()
      .executeTakeFirst();
    if (!row) return null;
    await appendPaymentEvent(ctx, trx, 'payment.failed', row);
    return row;
  }
  const row = await q
    .set({ ...common, status: 'succeeded', captured: true, fee_minor: result.feeMinor })
    .where('amount_refunded_minor', '=', 0)
    .where(({ not, exists, selectFrom }) =>
      not(exists(selectFrom('disputes').select('id').where('payment_id', '=', payment.id))),
    )
    .returningAll()
    .executeTakeFirst();
  if (!row) return null;
  const facts = factsOf(row);
  const fee = feeEntry(facts, result.feeMinor, now);
  await ctx.ledger.postBatch(trx, fee ? [captureEntry(facts, now), fee] : [captureEntry(facts, now)]);
  await appendPaymentEvent(ctx, trx, 'payment.succeeded', row);
  return row;
}
