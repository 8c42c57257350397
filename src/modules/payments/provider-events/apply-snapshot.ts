import { type Kysely, sql } from 'kysely';
import type { Executor } from '../../../db/schema.js';
import { newId } from '../../../kernel/ids.js';
import type { ProviderPaymentSnapshot } from '../../../providers/port.js';
import { applyCapture } from '../charges/apply-capture.js';
import type { Payment, PaymentsContext } from '../context.js';
import { applyDispute } from '../disputes/apply.js';
import { paymentEvent } from '../events.js';
import { bookRefund, finishRefund } from '../refunds/finish.js';
import { type PaymentTables, paymentTables } from '../tables.js';

export async function findBySnapshot(
  db: Kysely<PaymentTables>,
  provider: string,
  s: ProviderPaymentSnapshot,
): Promise<Payment | undefined> {
  // By the provider's id first; else by our payment id, the charge's idempotency key: the link
  // when the charge's answer was lost. One query, the provider's id ranked first.
  return db
    .selectFrom('payments')
    .selectAll()
    .where('provider', '=', provider)
    .where((eb) =>
      eb.or([eb('provider_payment_id', '=', s.providerPaymentId), eb('id', '=', s.idempotencyKey)]),
    )
    .orderBy(sql`provider_payment_id IS NOT DISTINCT FROM ${s.providerPaymentId}`, 'desc')
    .limit(1)
    .executeTakeFirst();
}

/** Moves a payment toward what the provider reports; facts only grow, so order does not matter. */
export async function applySnapshot(
  ctx: PaymentsContext,
  trx: Executor,
  provider: string,
  s: ProviderPaymentSnapshot,
  /** The payment `findBySnapshot` gave in this transaction, when the caller looked already. */
  found?: Payment,
): Promise<void> {
  const db = paymentTables(trx);
  const payment = found ?? (await findBySnapshot(db, provider, s));
  if (!payment) return;
  const now = ctx.clock.now();
  if (s.status === 'failed' && payment.status === 'processing') {
    const failed = await db
      .updateTable('payments')
      .set({
        status: 'failed',
        decline_code: s.declineCode,
        provider_payment_id: s.providerPaymentId,
        updated_at: now,
      })
      .where('id', '=', payment.id)
      .where('status', '=', 'processing')
      .executeTakeFirst();
    if (failed.numUpdatedRows === 1n) await paymentEvent(ctx, trx, 'payment.failed', payment.id);
    return;
  }
  if (s.status === 'voided' && (payment.status === 'authorized' || payment.status === 'processing')) {
    await db
      .updateTable('payments')
      .set({ status: 'voided', provider_payment_id: s.providerPaymentId, updated_at: now })
      .where('id', '=', payment.id)
      .execute();
    return;
  }
  if (s.status === 'authorized' || s.status === 'succeeded') {
    await applyCapture(ctx, trx, payment.id, {
      provider,
      providerPaymentId: s.providerPaymentId,
      captured: s.status === 'succeeded',
      feeMinor: s.feeMinor,
    });
  }
  if (s.status !== 'succeeded') return;
  for (const r of s.refunds) {
    const known = await db
      .selectFrom('refunds')
      .selectAll()
      .where('provider_refund_id', '=', r.providerRefundId)
      .executeTakeFirst();
    if (known) continue;
    // A refund we started whose answer we lost: linked by the key we requested it with (our refund
    // id), never by its amount (two pending refunds of one amount are not interchangeable).
    const ours = r.idempotencyKey
      ? await db
          .selectFrom('refunds')
          .selectAll()
          .where('id', '=', r.idempotencyKey)
          .where('payment_id', '=', payment.id)
          .forUpdate()
          .executeTakeFirst()
      : undefined;
    if (ours) {
      if (ours.status === 'pending') {
        await finishRefund(ctx, trx, ours.id, { providerRefundId: r.providerRefundId });
      }
    } else {
      // Made at the provider directly (a dashboard refund): booked as it is.
      const id = newId('refund');
      await db
        .insertInto('refunds')
        .values({
          id,
          payment_id: payment.id,
          amount_minor: r.amountMinor,
          status: 'succeeded',
          provider_refund_id: r.providerRefundId,
          failure_reason: null,
          request_key: null,
          request_hash: null,
          reason: null,
          created_at: now,
          updated_at: now,
        })
        .execute();
      await bookRefund(ctx, trx, payment.id, id, r.amountMinor);
    }
  }
  if (s.dispute) await applyDispute(ctx, trx, payment.id, s.dispute);
}
