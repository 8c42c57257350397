import type { Executor } from '../../../db/schema.js';
import { transact } from '../../../db/transaction.js';
import { assert } from '../../../kernel/assert.js';
import { notFound } from '../../../kernel/errors.js';
import { ProviderError } from '../../../providers/port.js';
import {
  disputeState,
  factsOf,
  getPayment,
  lockPayment,
  type Payment,
  type PaymentsContext,
  type Refund,
  type RefundFact,
  statusOf,
} from '../context.js';
import { refundEntry, refundTaxPart } from '../domain/entries.js';
import { paymentEvent } from '../events.js';
import { paymentTables } from '../tables.js';

export type RefundOutcome = { providerRefundId: string } | { failed: string };

/** The provider refunds (idempotency key: the refund id). Null when the outcome is unknown. */
export async function callRefund(
  ctx: PaymentsContext,
  refund: Refund,
  payment: Payment,
): Promise<RefundOutcome | null> {
  if (refund.status !== 'pending') return null;
  assert(payment.provider_payment_id, `captured payment ${payment.id} has no provider payment id`);
  try {
    const r = await ctx.router.call(payment.provider, (p) =>
      p.refund(payment.provider_payment_id!, refund.amount_minor, refund.id),
    );
    return { providerRefundId: r.providerRefundId };
  } catch (error) {
    if (error instanceof ProviderError && error.kind === 'rejected') return { failed: error.message };
    if (error instanceof ProviderError) return null;
    throw error;
  }
}

/** The refund succeeded (or failed), with its ledger entry. Idempotent. */
export async function finishRefund(
  ctx: PaymentsContext,
  trx: Executor,
  refundId: string,
  outcome: RefundOutcome,
): Promise<Refund> {
  const db = paymentTables(trx);
  const refund = await db
    .selectFrom('refunds')
    .selectAll()
    .where('id', '=', refundId)
    .forUpdate()
    .executeTakeFirstOrThrow();
  if (refund.status !== 'pending') return refund;
  const now = ctx.clock.now();
  if ('failed' in outcome) {
    await db
      .updateTable('refunds')
      .set({ status: 'failed', failure_reason: outcome.failed, updated_at: now })
      .where('id', '=', refundId)
      .execute();
  } else {
    await db
      .updateTable('refunds')
      .set({ status: 'succeeded', provider_refund_id: outcome.providerRefundId, updated_at: now })
      .where('id', '=', refundId)
      .execute();
    await bookRefund(ctx, trx, refund.payment_id, refund.id, refund.amount_minor);
  }
  return db.selectFrom('refunds').selectAll().where('id', '=', refundId).executeTakeFirstOrThrow();
}

/** The refund's effect on the payment (amount and tax given back) and its ledger entry. */
export async function bookRefund(
  ctx: PaymentsContext,
  trx: Executor,
  paymentId: string,
  refundId: string,
  amountMinor: number,
): Promise<void> {
  const db = paymentTables(trx);
  const payment = await lockPayment(db, paymentId);
  const facts = factsOf(payment);
  const taxPart = refundTaxPart(
    facts,
    payment.amount_refunded_minor,
    payment.tax_refunded_minor,
    amountMinor,
  );
  const updated = {
    ...payment,
    amount_refunded_minor: payment.amount_refunded_minor + amountMinor,
    tax_refunded_minor: payment.tax_refunded_minor + taxPart,
  };
  await db
    .updateTable('payments')
    .set({
      amount_refunded_minor: updated.amount_refunded_minor,
      tax_refunded_minor: updated.tax_refunded_minor,
      status: statusOf(updated, await disputeState(db, paymentId)),
      updated_at: ctx.clock.now(),
    })
    .where('id', '=', paymentId)
    .execute();
  await ctx.ledger.post(trx, refundEntry(facts, refundId, amountMinor, taxPart, ctx.clock.now()));
  await paymentEvent(ctx, trx, 'payment.refunded', paymentId);
  const fact: RefundFact = {
    refundId,
    paymentId,
    customerId: payment.customer_id,
    reference: payment.reference,
    currency: payment.currency,
    amountMinor,
    taxMinor: taxPart,
    paymentAmountMinor: payment.amount_minor,
  };
  for (const listener of ctx.refundListeners) await listener(trx, fact);
}

/** The refunds job: a pending refund whose answer was lost, or a late-capture refund, sent again. */
export async function retryRefund(ctx: PaymentsContext, refundId: string): Promise<void> {
  const refund = await getRefund(ctx, refundId);
  if (refund.status !== 'pending') return;
  const payment = await getPayment(ctx, refund.payment_id);
  const outcome = await callRefund(ctx, refund, payment);
  if (!outcome) throw new Error(`refund ${refundId}: provider still unavailable`);
  await transact(ctx.db, (trx) => finishRefund(ctx, trx, refundId, outcome));
}

export async function getRefund(ctx: PaymentsContext, id: string, trx: Executor = ctx.db): Promise<Refund> {
  const row = await paymentTables(trx)
    .selectFrom('refunds')
    .selectAll()
    .where('id', '=', id)
    .executeTakeFirst();
  if (!row) throw notFound('refund', id);
  return row;
}
