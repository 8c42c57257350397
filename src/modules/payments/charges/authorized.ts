import type { Executor } from '../../../db/schema.js';
import { assert } from '../../../kernel/assert.js';
import { DomainError, invalidState } from '../../../kernel/errors.js';
import { type ChargeResult, type PaymentProvider, ProviderError } from '../../../providers/port.js';
import { getPayment, type Payment, type PaymentsContext } from '../context.js';
import { paymentTables } from '../tables.js';
import { applyCapture } from './apply-capture.js';

/**
 * Runs a provider call on an authorized payment: refused (409) in any other state, 503 when the
 * provider did not confirm (retry: the call's idempotency key makes that safe).
 */
async function onAuthorized<T>(
  ctx: PaymentsContext,
  paymentId: string,
  verb: string,
  call: (p: PaymentProvider, payment: Payment) => Promise<T>,
): Promise<T> {
  const payment = await getPayment(ctx, paymentId);
  if (payment.status !== 'authorized')
    throw invalidState(
      `Payment ${payment.id} is ${payment.status}: only an authorized payment can be ${verb}.`,
    );
  assert(payment.provider_payment_id, `authorized payment ${payment.id} has no provider payment id`);
  try {
    return await ctx.router.call(payment.provider, (p) => call(p, payment));
  } catch (error) {
    if (!(error instanceof ProviderError)) throw error;
    if (error.kind === 'rejected') throw invalidState(`${payment.provider} refused: ${error.message}`);
    throw new DomainError(
      'provider_unavailable',
      `Not confirmed by ${payment.provider}: ${error.message}; retry.`,
    );
  }
}

/** Captures an authorized payment at its provider (manual capture). Idempotent by payment id. */
export function capturePayment(ctx: PaymentsContext, paymentId: string): Promise<ChargeResult> {
  return onAuthorized(ctx, paymentId, 'captured', (p, payment) =>
    p.capture(payment.provider_payment_id!, `${payment.id}:capture`),
  );
}

export async function finishCapture(
  ctx: PaymentsContext,
  trx: Executor,
  paymentId: string,
  result: ChargeResult,
): Promise<Payment> {
  const payment = await getPayment(ctx, paymentId, trx);
  if (result.status === 'succeeded') {
    await applyCapture(ctx, trx, paymentId, {
      provider: payment.provider,
      providerPaymentId: result.providerPaymentId,
      captured: true,
      feeMinor: result.feeMinor,
    });
  }
  return getPayment(ctx, paymentId, trx);
}

/** Voids an authorized payment at its provider: the hold is released, no money moved. */
export async function voidPayment(ctx: PaymentsContext, paymentId: string): Promise<void> {
  if ((await getPayment(ctx, paymentId)).status === 'voided') return;
  await onAuthorized(ctx, paymentId, 'voided', (p, payment) =>
    p.void(payment.provider_payment_id!, `${payment.id}:void`),
  );
}

export async function finishVoid(ctx: PaymentsContext, trx: Executor, paymentId: string): Promise<Payment> {
  await paymentTables(trx)
    .updateTable('payments')
    .set({ status: 'voided', updated_at: ctx.clock.now() })
    .where('id', '=', paymentId)
    .where('status', '=', 'authorized')
    .execute();
  return getPayment(ctx, paymentId, trx);
}
