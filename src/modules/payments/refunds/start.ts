import { transact } from '../../../db/transaction.js';
import { invalid, invalidState, notFound } from '../../../kernel/errors.js';
import { newId } from '../../../kernel/ids.js';
import { amountProblem } from '../../../kernel/money.js';
import {
  assertSameInput,
  getPayment,
  inputHash,
  type Payment,
  type PaymentsContext,
  type Refund,
} from '../context.js';
import { paymentTables, type RefundsTable } from '../tables.js';

/** How long after its start a refund the provider did not confirm is retried by the job. */
const REFUND_RECONCILE_AFTER_MS = 30_000;

export interface RefundInput {
  payment: string;
  /** Default: what is left to refund. */
  amount?: number | undefined;
}

/**
 * Checks the refund against what is left under a row lock and stores it as pending (or finds the
 * one this request key already created, same input only).
 */
export async function startRefund(
  ctx: PaymentsContext,
  input: RefundInput,
  requestKey: string | null,
): Promise<{ refund: Refund; payment: Payment }> {
  const hash = inputHash(input);
  if (requestKey) {
    const existing = await ctx.tables
      .selectFrom('refunds')
      .selectAll()
      .where('request_key', '=', requestKey)
      .executeTakeFirst();
    if (existing) {
      assertSameInput(existing, hash, `refund ${existing.id}`);
      return { refund: existing, payment: await getPayment(ctx, existing.payment_id) };
    }
  }
  return transact(ctx.db, async (trx) => {
    const db = paymentTables(trx);
    const payment = await db
      .selectFrom('payments')
      .selectAll()
      .where('id', '=', input.payment)
      .forUpdate()
      .executeTakeFirst();
    if (!payment) throw notFound('payment', input.payment);
    if (!payment.captured || !['succeeded', 'partially_refunded', 'dispute_won'].includes(payment.status)) {
      throw invalidState(
        `Payment ${payment.id} is ${payment.status}: only captured payments can be refunded.`,
      );
    }
    if (input.amount !== undefined) {
      const issue = amountProblem(input.amount, payment.currency);
      if (issue) throw invalid('amount', issue);
    }
    const pending = await db
      .selectFrom('refunds')
      .select((eb) => eb.fn.sum<number>('amount_minor').as('total'))
      .where('payment_id', '=', payment.id)
      .where('status', '=', 'pending')
      .executeTakeFirst();
    const left = payment.amount_minor - payment.amount_refunded_minor - Number(pending?.total ?? 0);
    if (left <= 0) {
      throw invalidState(`Payment ${payment.id} has nothing left to refund (refunded or refunds pending).`);
    }
    const amount = input.amount ?? left;
    if (amount > left) {
      throw invalid('amount', `must be between 1 and ${left}, what is left to refund of this payment`);
    }
    const now = ctx.clock.now();
    const refund: RefundsTable = {
      id: newId('refund'),
      payment_id: payment.id,
      amount_minor: amount,
      status: 'pending',
      provider_refund_id: null,
      failure_reason: null,
      request_key: requestKey,
      request_hash: requestKey ? hash : null,
      reason: null,
      created_at: now,
      updated_at: now,
    };
    const inserted = await db
      .insertInto('refunds')
      .values(refund)
      .onConflict((oc) => oc.column('request_key').doNothing())
      .returningAll()
      .executeTakeFirst();
    if (!inserted) {
      // A concurrent twin of this request created it first.
      const twin = await db
        .selectFrom('refunds')
        .selectAll()
        .where('request_key', '=', requestKey)
        .executeTakeFirstOrThrow();
      assertSameInput(twin, hash, `refund ${twin.id}`);
      return { refund: twin, payment };
    }
    await ctx.jobs.schedule(trx, {
      kind: 'refunds.reconcile',
      runAt: new Date(now.getTime() + REFUND_RECONCILE_AFTER_MS),
      payload: { refund: refund.id },
      dedupeKey: `refunds.reconcile:${refund.id}`,
    });
    return { refund: inserted, payment };
  });
}
