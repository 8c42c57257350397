import type { Executor } from '../../../db/schema.js';
import type { ChargeResult } from '../../../providers/port.js';
import { asJson, getPayment, type Payment, type PaymentsContext } from '../context.js';
import { paymentEvent } from '../events.js';
import { paymentTables } from '../tables.js';
import { applyCapture } from './apply-capture.js';

/**
 * Records the provider's answer inside the caller's transaction, with its ledger entries. The
 * route taken is recorded whoever got there first; the outcome is conditional on the payment's
 * state, so a webhook that won the race makes this a no-op, and a capture that arrives after
 * the payment was closed is booked and refunded.
 */
export async function finishPayment(
  ctx: PaymentsContext,
  trx: Executor,
  payment: Payment,
  result: ChargeResult,
): Promise<Payment> {
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
