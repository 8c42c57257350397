import type { Executor } from '../../db/schema.js';
import { transact } from '../../db/transaction.js';
import { isoSeconds } from '../../kernel/clock.js';
import { DomainError, notFound } from '../../kernel/errors.js';
import type { Refund } from '../payments/service.js';
import { type BillingContext, lockSubscription, stateOf } from './context.js';
import { proratedRefund } from './domain/credit-note.js';
import { voidEntry } from './domain/entries.js';
import { applyEvent, type CancelTiming, cancelTiming, type RefundPolicy } from './domain/lifecycle.js';
import { reverseInvoiceRecognition } from './recognition.js';
import { billingTables, type InvoicesTable, type SubscriptionsTable } from './tables.js';

/**
 * Cancel and reactivate (ADR 0014, "Cancel, pause, members"). A cancel is one transaction: the
 * subscription (scheduled or ended), its event, the void of its open invoices and, for an immediate
 * cancel with `refund: "prorated"`, the job that refunds the unused part of the paid period. The
 * refund itself calls the provider, so it runs after that transaction (the cancel workflow runs it
 * at once; the job is the net when the request dies, and is a no-op once it is done).
 */

/** The job kinds of cancels (registered by `BillingService`). */
export const CANCEL_JOBS = {
  /** A scheduled (end_of_term) cancel takes effect. */
  due: 'billing.cancel_due',
  /** The prorated refund of an immediate cancel (external: calls the provider). */
  refund: 'billing.cancel_refund',
} as const;

export interface CancelInput {
  timing?: CancelTiming | undefined;
  refund?: RefundPolicy | undefined;
}

/** The refund an immediate cancel owes: `amount` of `payment`, the one that paid the current period. */
export interface CancelRefund {
  subscription: string;
  payment: string;
  amount: number;
}

export interface Canceled {
  subscription: SubscriptionsTable;
  refund: CancelRefund | null;
}

/** The refund of a cancel is keyed by its subscription: a subscription is canceled once. */
export const cancelRefundKey = (subscriptionId: string): string =>
  `subscription:${subscriptionId}:cancel_refund`;

const iso = (d: Date | null): string | null => (d ? isoSeconds(d) : null);

/**
 * Cancels the subscription now or schedules its cancel at the term end (the request's timing, else
 * the plan's `cancelTiming`, else end_of_term). An incomplete subscription is refused (it expires by
 * itself); past_due and paused ones end now whatever the timing, and their open invoices are voided.
 */
export async function cancelSubscription(
  ctx: BillingContext,
  trx: Executor,
  id: string,
  input: CancelInput,
): Promise<Canceled> {
  const db = billingTables(trx);
  const sub = await lockSubscription(db, id);
  if (!sub) throw notFound('subscription', id);
  if (sub.status === 'incomplete') {
    throw new DomainError(
      'invalid_state',
      'An incomplete subscription is not canceled: it expires 23 hours after sign-up unless its first payment succeeds.',
      { extra: { subscriptionStatus: sub.status, operation: 'cancel' } },
    );
  }
  const now = await ctx.customers.now(sub.customer_id, trx);
  const plan = await ctx.catalog.getPlan(sub.plan_id, trx);
  const timing = cancelTiming(input.timing ?? null, plan.cancelTiming);
  const refundPolicy = input.refund ?? 'none';
  const state = applyEvent(stateOf(sub), { type: 'cancel', at: now, timing, refund: refundPolicy });
  const { testClockId } = await ctx.customers.account(sub.customer_id, trx);

  if (state.status !== 'canceled') {
    // Scheduled at the term end: the same schedule again changes nothing.
    if (sub.cancel_at && state.cancelAt && sub.cancel_at.getTime() === state.cancelAt.getTime()) {
      return { subscription: sub, refund: null };
    }
    const saved = await ctx.saveSubscription(
      trx,
      sub,
      { cancel_at: state.cancelAt },
      now,
      'subscription.changed',
      { previousAttributes: { cancelAt: iso(sub.cancel_at) } },
    );
    const at = state.cancelAt as Date;
    await ctx.jobs.schedule(trx, {
      kind: CANCEL_JOBS.due,
      runAt: at,
      customerId: sub.customer_id,
      testClockId,
      payload: { subscription: sub.id },
      dedupeKey: `${CANCEL_JOBS.due}:${sub.id}:${at.getTime()}`,
    });
    return { subscription: saved, refund: null };
  }

  // Only an active subscription has a paid period left to refund: a trial was free, a past_due
  // period unpaid, and a paused one's unused time is already account credit.
  const refund =
    refundPolicy === 'prorated' && sub.status === 'active' ? await refundOwed(ctx, trx, sub, now) : null;
  await voidOpenInvoices(ctx, trx, sub.id, now);
  const saved = await ctx.saveSubscription(
    trx,
    sub,
    {
      status: state.status,
      ended_at: state.endedAt,
      cancel_at: state.cancelAt,
      paused_at: state.pausedAt,
      past_due_since: state.pastDueSince,
    },
    now,
    'subscription.canceled',
  );
  if (refund) {
    await ctx.jobs.schedule(trx, {
      kind: CANCEL_JOBS.refund,
      runAt: now,
      customerId: sub.customer_id,
      testClockId,
      payload: { ...refund },
      dedupeKey: `${CANCEL_JOBS.refund}:${sub.id}`,
    });
  }
  return { subscription: saved, refund };
}

/**
 * The unused part [now, end) of the paid period, in proportion of what its payment captured (the
 * latest paid invoice whose period holds `now`), less what was refunded of it already. Null when
 * nothing is owed.
 */
async function refundOwed(
  ctx: BillingContext,
  trx: Executor,
  sub: SubscriptionsTable,
  now: Date,
): Promise<CancelRefund | null> {
  const invoice = await billingTables(trx)
    .selectFrom('invoices')
    .selectAll()
    .where('subscription_id', '=', sub.id)
    .where('status', '=', 'paid')
    .where('payment_id', 'is not', null)
    .where('period_start', '<=', now)
    .where('period_end', '>', now)
    .orderBy('period_start', 'desc')
    .orderBy('id', 'desc')
    .executeTakeFirst();
  if (!invoice?.payment_id) return null;
  const payment = await ctx.payments.get(invoice.payment_id, trx);
  if (!payment.captured) return null;
  const amount = proratedRefund({
    paidMinor: payment.amount_minor,
    refundedBeforeMinor: payment.amount_refunded_minor,
    period: { start: invoice.period_start, end: invoice.period_end },
    at: now,
    unit: 'day',
  });
  return amount > 0 ? { subscription: sub.id, payment: payment.id, amount } : null;
}

/**
 * The open invoices of an ending subscription are voided (Stripe's rule): the finalisation is
 * undone, and account credit they used is given back to the customer.
 */
async function voidOpenInvoices(ctx: BillingContext, trx: Executor, subscriptionId: string, now: Date) {
  const open = await billingTables(trx)
    .selectFrom('invoices')
    .selectAll()
    .where('subscription_id', '=', subscriptionId)
    .where('status', '=', 'open')
    .orderBy('id')
    .forUpdate()
    .execute();
  for (const invoice of open) await voidInvoice(ctx, trx, invoice, now);
}

async function voidInvoice(ctx: BillingContext, trx: Executor, invoice: InvoicesTable, now: Date) {
  await ctx.saveInvoice(trx, invoice, { status: 'void' }, now, 'invoice.voided');
  const entry = voidEntry(
    {
      id: invoice.id,
      customerId: invoice.customer_id,
      currency: invoice.currency,
      totalMinor: invoice.total_minor,
      taxMinor: invoice.tax_minor,
      netMinor: invoice.net_minor,
    },
    now,
  );
  if (entry) await ctx.ledger.post(trx, entry);
  // Revenue already recognised from it goes back, and its later days are never recognised.
  await reverseInvoiceRecognition(ctx, trx, invoice, now);
  const credit = invoice.credit_applied_minor;
  if (credit > 0) {
    // What the credit settled of the receivable, given back as credit.
    await ctx.ledger.post(trx, {
      idempotencyKey: `invoice:${invoice.id}:credit_restored`,
      reference: invoice.id,
      description: `account credit applied to invoice ${invoice.id} given back (voided)`,
      effectiveAt: now,
      postings: [
        {
          account: { type: 'customer_receivable', owner: invoice.customer_id, currency: invoice.currency },
          debit: credit,
        },
        {
          account: { type: 'customer_credit', owner: invoice.customer_id, currency: invoice.currency },
          credit,
        },
      ],
    });
    await ctx.addAccountCredit(trx, invoice.customer_id, invoice.currency, credit, now);
  }
}

/**
 * Refunds what an immediate cancel owes through the payments module (start → provider → finish),
 * keyed by the subscription so the request and its job make one refund. Returns the refund, or null
 * when its outcome is not known yet (the payments module's reconciliation and this job retry it).
 */
export async function refundCancel(ctx: BillingContext, r: CancelRefund): Promise<Refund | null> {
  const { refund, payment } = await ctx.payments.startRefund(
    { payment: r.payment, amount: r.amount },
    cancelRefundKey(r.subscription),
  );
  if (refund.status !== 'pending') return refund;
  const outcome = await ctx.payments.callRefund(refund, payment);
  if (!outcome) return null;
  return transact(ctx.db, (trx) => ctx.payments.finishRefund(trx, refund.id, outcome));
}

/** The refund job: done once the refund is settled; retried while the provider has not answered. */
export async function refundCancelJob(ctx: BillingContext, r: CancelRefund): Promise<void> {
  try {
    const refund = await refundCancel(ctx, r);
    if (!refund) throw new Error(`cancel refund of ${r.subscription}: the provider has not answered`);
  } catch (e) {
    // Nothing left to refund (refunded meanwhile, e.g. by hand): nothing to do.
    if (e instanceof DomainError && e.status < 500) return;
    throw e;
  }
}

/** A scheduled cancel's instant: the subscription ends (nothing when it was reactivated or rescheduled). */
export async function cancelDue(ctx: BillingContext, trx: Executor, id: string, now: Date): Promise<void> {
  const sub = await lockSubscription(billingTables(trx), id);
  if (!sub?.cancel_at || (sub.status !== 'active' && sub.status !== 'trialing')) return;
  if (now.getTime() < sub.cancel_at.getTime()) return;
  const state = applyEvent(stateOf(sub), { type: 'cancel_due', at: now });
  await ctx.saveSubscription(
    trx,
    sub,
    { status: state.status, ended_at: state.endedAt, cancel_at: state.cancelAt },
    now,
    'subscription.canceled',
  );
}

/**
 * Undoes a scheduled cancel before it takes effect; the period end's cycle job is scheduled again
 * (its dedupe key makes it one job when the first one is still there).
 */
export async function reactivateSubscription(
  ctx: BillingContext,
  trx: Executor,
  id: string,
): Promise<SubscriptionsTable> {
  const sub = await lockSubscription(billingTables(trx), id);
  if (!sub) throw notFound('subscription', id);
  const now = await ctx.customers.now(sub.customer_id, trx);
  const state = applyEvent(stateOf(sub), { type: 'reactivate', at: now });
  const saved = await ctx.saveSubscription(
    trx,
    sub,
    { cancel_at: state.cancelAt },
    now,
    'subscription.changed',
    { previousAttributes: { cancelAt: iso(sub.cancel_at) } },
  );
  if (saved.current_period_end) {
    const { testClockId } = await ctx.customers.account(sub.customer_id, trx);
    await ctx.scheduleCycle(trx, saved, saved.current_period_end, testClockId);
  }
  return saved;
}
