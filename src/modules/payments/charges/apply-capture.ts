import type { Executor } from '../../../db/schema.js';
import { newId } from '../../../kernel/ids.js';
import { disputeState, factsOf, lockPayment, type PaymentsContext, statusOf } from '../context.js';
import { captureEntry, feeEntry } from '../domain/entries.js';
import { baseOf } from '../domain/status.js';
import { paymentEvent } from '../events.js';
import { paymentTables, type RefundsTable } from '../tables.js';

export interface CaptureFact {
  provider: string;
  providerPaymentId: string;
  /** false: authorized only. */
  captured: boolean;
  feeMinor: number;
}

/**
 * Records what the provider did with a payment's charge (the synchronous answer, a webhook or a
 * lookup), posting the ledger once per fact. A capture of a payment we had already closed
 * (`failed` after its deadline, or `voided`) is money taken: it is booked, then refunded in full
 * (ADR 0010) by a `late_capture` refund the refunds job sends to the provider.
 */
export async function applyCapture(
  ctx: PaymentsContext,
  trx: Executor,
  paymentId: string,
  fact: CaptureFact,
) {
  const db = paymentTables(trx);
  const now = ctx.clock.now();
  const current = await lockPayment(db, paymentId);
  const base = baseOf(current.status, current.captured);
  if (fact.captured && !current.captured) {
    const late = base === 'failed' || base === 'voided';
    const updated = {
      ...current,
      captured: true,
      fee_minor: fact.feeMinor,
      provider: fact.provider,
      provider_payment_id: fact.providerPaymentId,
    };
    await db
      .updateTable('payments')
      .set({
        captured: true,
        fee_minor: fact.feeMinor,
        provider: fact.provider,
        provider_payment_id: fact.providerPaymentId,
        // A closed payment stays closed to clients until its refund is booked (then `refunded`).
        status: late ? current.status : statusOf(updated, await disputeState(db, paymentId)),
        updated_at: now,
      })
      .where('id', '=', paymentId)
      .execute();
    const facts = factsOf(updated);
    await ctx.ledger.post(trx, captureEntry(facts, now));
    const fee = feeEntry(facts, fact.feeMinor, now);
    if (fee) await ctx.ledger.post(trx, fee);
    // A late capture is money taken for a closed payment, not a success: it is refunded.
    if (late) await refundLateCapture(ctx, trx, updated);
    else await paymentEvent(ctx, trx, 'payment.succeeded', paymentId);
  } else if (!fact.captured && base === 'processing') {
    await db
      .updateTable('payments')
      .set({
        status: 'authorized',
        provider: fact.provider,
        provider_payment_id: fact.providerPaymentId,
        updated_at: now,
      })
      .where('id', '=', paymentId)
      .execute();
  }
}

/** Gives back money the provider took for a payment we had closed: a full refund, sent by the job. */
async function refundLateCapture(
  ctx: PaymentsContext,
  trx: Executor,
  payment: { id: string; amount_minor: number; amount_refunded_minor: number },
) {
  const now = ctx.clock.now();
  const refund: RefundsTable = {
    id: newId('refund'),
    payment_id: payment.id,
    amount_minor: payment.amount_minor - payment.amount_refunded_minor,
    status: 'pending',
    provider_refund_id: null,
    failure_reason: null,
    request_key: null,
    request_hash: null,
    reason: 'late_capture',
    created_at: now,
    updated_at: now,
  };
  await paymentTables(trx).insertInto('refunds').values(refund).execute();
  await ctx.jobs.schedule(trx, {
    kind: 'refunds.reconcile',
    runAt: now,
    payload: { refund: refund.id },
    dedupeKey: `refunds.reconcile:${refund.id}`,
  });
}
