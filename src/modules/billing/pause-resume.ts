import type { Executor } from '../../db/schema.js';
import { transact } from '../../db/transaction.js';
import { assert } from '../../kernel/assert.js';
import { DomainError, invalid, notFound } from '../../kernel/errors.js';
import type { ChargeResult } from '../../providers/port.js';
import type { Payment, PaymentInput } from '../payments/service.js';
import {
  type BillingContext,
  lockInvoice,
  lockSubscription,
  mustExist,
  scheduleOf,
  stateOf,
} from './context.js';
import { invoicePaymentKey, paidEntry } from './domain/entries.js';
import { applyEvent } from './domain/lifecycle.js';
import { pauseCredit, resumeCharge } from './domain/pause.js';
import { billingTables, type InvoicesTable, type SubscriptionsTable } from './tables.js';

/**
 * Pause and resume (ADR 0014, "Cancel, pause, members"). A pause at p gives back the unused part
 * [p, e) of the current period on an invoice of its own (`subscription_pause`), whose negative
 * total becomes account credit, tax included; the subscription is `paused` (its last period kept,
 * for reference), entitles nobody, and its cycle job finds it paused and does nothing. A resume at r
 * bills [r, next boundary of the same grid) on a `subscription_resume` invoice that spends the
 * account credit first: nothing due → active at once; else the invoice is charged (no transaction
 * open while the provider answers), paid → active, declined → past_due on that invoice.
 * A future `at` schedules the pause or resume with a job on the customer's clock.
 */

export const PAUSE_JOBS = {
  pause: 'billing.pause_due',
  /** External: a resume may charge. */
  resume: 'billing.resume_due',
} as const;

export interface PauseJob {
  subscription: string;
  at: string;
}

/** `at` absent: now; else not before now (400 naming `at`). Returns the instant and whether it is now. */
async function instant(
  ctx: BillingContext,
  trx: Executor,
  sub: SubscriptionsTable,
  at: string | null | undefined,
): Promise<{ now: Date; at: Date }> {
  const now = await ctx.customers.now(sub.customer_id, trx);
  if (at === null || at === undefined) return { now, at: now };
  const when = new Date(at);
  if (Number.isNaN(when.getTime())) throw invalid('at', 'must be an ISO-8601 timestamp');
  // Second precision, as every instant of the API.
  when.setUTCMilliseconds(0);
  if (when.getTime() < Math.floor(now.getTime() / 1000) * 1000) {
    throw invalid('at', `must not be before the customer's current time ${now.toISOString()}`);
  }
  return { now, at: when.getTime() < now.getTime() ? now : when };
}

async function locked(trx: Executor, id: string): Promise<SubscriptionsTable> {
  const sub = await lockSubscription(billingTables(trx), id);
  if (!sub) throw notFound('subscription', id);
  return sub;
}

async function schedule(
  ctx: BillingContext,
  trx: Executor,
  kind: string,
  sub: SubscriptionsTable,
  at: Date,
): Promise<void> {
  const { testClockId } = await ctx.customers.account(sub.customer_id, trx);
  const payload: PauseJob = { subscription: sub.id, at: at.toISOString() };
  await ctx.jobs.schedule(trx, {
    kind,
    runAt: at,
    customerId: sub.customer_id,
    testClockId,
    payload: { ...payload },
    dedupeKey: `${kind}:${sub.id}:${at.getTime()}`,
  });
}

/**
 * `POST /pause`: pauses now, or checks the pause would be allowed at `at` and schedules it (the
 * job checks again then). Returns the subscription as it is after the request.
 */
export async function requestPause(
  ctx: BillingContext,
  trx: Executor,
  id: string,
  atInput: string | null | undefined,
): Promise<SubscriptionsTable> {
  const sub = await locked(trx, id);
  const { now, at } = await instant(ctx, trx, sub, atInput);
  if (at.getTime() > now.getTime()) {
    applyEvent(stateOf(sub), { type: 'pause', at });
    await schedule(ctx, trx, PAUSE_JOBS.pause, sub, at);
    return sub;
  }
  return pauseAt(ctx, trx, sub, now);
}

/** The scheduled pause's job: pauses if it still may (nothing otherwise: the state moved on). */
export async function pauseDue(ctx: BillingContext, trx: Executor, job: PauseJob): Promise<void> {
  const sub = await lockSubscription(billingTables(trx), job.subscription);
  if (!sub) return;
  const at = new Date(job.at);
  try {
    applyEvent(stateOf(sub), { type: 'pause', at });
  } catch (e) {
    if (e instanceof DomainError) return;
    throw e;
  }
  await pauseAt(ctx, trx, sub, at);
}

async function pauseAt(
  ctx: BillingContext,
  trx: Executor,
  sub: SubscriptionsTable,
  at: Date,
): Promise<SubscriptionsTable> {
  const state = applyEvent(stateOf(sub), { type: 'pause', at });
  const [plan, customer] = await Promise.all([
    ctx.catalog.getPlan(sub.plan_id, trx),
    ctx.customers.account(sub.customer_id, trx),
  ]);
  const market = await ctx.catalog.getMarket(customer.marketId, trx);
  // The unused time at the price the subscriber paid for this period.
  const credit = pauseCredit({
    schedule: scheduleOf(sub),
    plan: { name: plan.name, priceMinor: sub.price_minor },
    at,
    unit: 'day',
  });
  await ctx.finalize(trx, {
    sub,
    lines: [credit.line],
    tax: { rateBps: market.taxRateBps, inclusive: market.taxInclusive },
    marketCode: market.code,
    testClock: customer.testClockId !== null,
    at,
    reason: 'subscription_pause',
  });
  return ctx.saveSubscription(
    trx,
    sub,
    { status: state.status, paused_at: state.pausedAt },
    at,
    'subscription.paused',
  );
}

/** What a resume left to do: nothing (done, or scheduled), or charging its invoice. */
export interface OpenedResume {
  subscription: string;
  /** The resume invoice to charge, or null. */
  invoice: string | null;
  charge: PaymentInput | null;
}

/**
 * `POST /resume` (first step): resumes now on a resume invoice (active at once when account credit
 * pays it all), or checks and schedules a future resume. An open resume invoice of a paused
 * subscription is a resume under way (a retry after a crash): it is charged again, by its key.
 */
export async function openResume(
  ctx: BillingContext,
  trx: Executor,
  id: string,
  atInput: string | null | undefined,
): Promise<OpenedResume> {
  const sub = await locked(trx, id);
  const pending = await openResumeInvoice(trx, sub);
  if (pending) return { subscription: sub.id, invoice: pending.id, charge: ctx.chargeOf(pending, undefined) };
  const { now, at } = await instant(ctx, trx, sub, atInput);
  if (at.getTime() > now.getTime()) {
    applyEvent(stateOf(sub), { type: 'resume', at, period: { start: at, end: new Date(at.getTime() + 1) } });
    await schedule(ctx, trx, PAUSE_JOBS.resume, sub, at);
    return { subscription: sub.id, invoice: null, charge: null };
  }
  return resumeAt(ctx, trx, sub, now);
}

async function openResumeInvoice(trx: Executor, sub: SubscriptionsTable): Promise<InvoicesTable | undefined> {
  if (sub.status !== 'paused') return undefined;
  return billingTables(trx)
    .selectFrom('invoices')
    .selectAll()
    .where('subscription_id', '=', sub.id)
    .where('reason', '=', 'subscription_resume')
    .where('status', '=', 'open')
    .executeTakeFirst();
}

async function resumeAt(
  ctx: BillingContext,
  trx: Executor,
  sub: SubscriptionsTable,
  at: Date,
): Promise<OpenedResume> {
  // Only a paused subscription resumes, not before its pause (409 / 400 naming `at`).
  applyEvent(stateOf(sub), { type: 'resume', at, period: { start: at, end: new Date(at.getTime() + 1) } });
  assert(sub.paused_at, `paused subscription ${sub.id} has no paused_at`);
  const customer = await ctx.customers.account(sub.customer_id, trx);
  const plan = await ctx.catalog.getPlan(sub.plan_id, trx);
  // The price in force for this subscriber at the resume (grandfathering, as a renewal).
  const price = await ctx.catalog.priceFor(
    sub.plan_id,
    { market: customer.marketId, at, subscribedAt: sub.created_at },
    trx,
  );
  const charge = resumeCharge({
    schedule: scheduleOf(sub),
    plan: { name: plan.name, priceMinor: price.amountMinor },
    pausedAt: sub.paused_at,
    at,
    unit: 'day',
  });
  const invoice = await ctx.finalize(trx, {
    sub,
    lines: [charge.line],
    tax: { rateBps: price.market.taxRateBps, inclusive: price.market.taxInclusive },
    marketCode: price.market.code,
    testClock: customer.testClockId !== null,
    at,
    reason: 'subscription_resume',
  });
  if (price.priceVersionId !== sub.price_version_id || price.amountMinor !== sub.price_minor) {
    await billingTables(trx)
      .updateTable('subscriptions')
      .set({ price_version_id: price.priceVersionId, price_minor: price.amountMinor })
      .where('id', '=', sub.id)
      .execute();
  }
  if (invoice.status === 'paid') {
    await settleResume(ctx, trx, invoice.id, null, null);
    return { subscription: sub.id, invoice: null, charge: null };
  }
  return { subscription: sub.id, invoice: invoice.id, charge: ctx.chargeOf(invoice, undefined) };
}

/**
 * The resume invoice was paid (by `payment`, or at finalisation: both null) or its charge failed
 * (`payment` failed, or `refused` naming why no charge could be made): active with the period
 * [r, next boundary) and the next cycle scheduled, or past_due on that invoice (dunning retries
 * it). Returns the decline code when it failed. Runs in the settling transaction.
 */
export async function settleResume(
  ctx: BillingContext,
  trx: Executor,
  invoiceId: string,
  payment: Payment | null,
  refused: string | null,
): Promise<string | null> {
  const db = billingTables(trx);
  const { subscription_id } = await db
    .selectFrom('invoices')
    .select('subscription_id')
    .where('id', '=', invoiceId)
    .executeTakeFirstOrThrow();
  const sub = await lockSubscription(db, subscription_id).then(mustExist);
  const invoice = await lockInvoice(db, invoiceId);
  assert(invoice.reason === 'subscription_resume', `invoice ${invoice.id} is not a resume`);
  if (sub.status !== 'paused') return null;
  const at = invoice.period_start;
  const now = await ctx.customers.now(sub.customer_id, trx);
  const period = { start: invoice.period_start, end: invoice.period_end };
  const paid = invoice.status === 'paid' || (payment?.captured ?? false);
  if (paid) {
    if (invoice.status === 'open' && payment) {
      await ctx.saveInvoice(
        trx,
        invoice,
        { status: 'paid', payment_id: payment.id, paid_at: now },
        now,
        'invoice.paid',
      );
      await ctx.ledger.post(
        trx,
        paidEntry(
          { id: invoice.id, customerId: sub.customer_id, currency: invoice.currency },
          { id: payment.id, amountMinor: payment.amount_minor, taxMinor: payment.tax_minor },
          now,
        ),
      );
    }
    const state = applyEvent(stateOf(sub), { type: 'resume', at, period });
    const resumed = await ctx.saveSubscription(
      trx,
      sub,
      {
        status: state.status,
        paused_at: state.pausedAt,
        current_period_start: state.currentPeriodStart,
        current_period_end: state.currentPeriodEnd,
      },
      now,
      'subscription.resumed',
    );
    const { testClockId } = await ctx.customers.account(sub.customer_id, trx);
    await ctx.scheduleCycle(trx, resumed, period.end, testClockId);
    return null;
  }
  if (invoice.status !== 'open') return null;
  if (payment) {
    await db
      .updateTable('invoices')
      .set({ payment_id: payment.id, updated_at: now })
      .where('id', '=', invoice.id)
      .execute();
  }
  // Declined: the resumed period is owed; no access until it is paid (dunning retries it).
  await ctx.saveSubscription(
    trx,
    sub,
    {
      status: 'past_due',
      paused_at: null,
      past_due_since: now,
      current_period_start: period.start,
      current_period_end: period.end,
    },
    now,
    'subscription.past_due',
  );
  return payment?.decline_code ?? refused ?? 'card_declined';
}

/**
 * Charges an opened resume's invoice (start → provider, no transaction open) and answers the
 * payment and the provider's result; a usable-method problem is a refusal, as for renewals.
 */
export async function chargeResume(
  ctx: BillingContext,
  opened: OpenedResume,
): Promise<{ payment: Payment | null; result: ChargeResult | null; refused: string | null }> {
  if (!opened.charge || !opened.invoice) return { payment: null, result: null, refused: null };
  try {
    const started = await ctx.payments.start(opened.charge, invoicePaymentKey(opened.invoice));
    return { ...(await ctx.payments.charge(started.payment, started.lease)), refused: null };
  } catch (e) {
    if (!(e instanceof DomainError) || (e.code !== 'validation_failed' && e.code !== 'invalid_state'))
      throw e;
    return { payment: null, result: null, refused: e.code };
  }
}

/** The charged resume, settled in `trx`: the payment finished, then the subscription moved. */
export async function finishResume(
  ctx: BillingContext,
  trx: Executor,
  opened: OpenedResume,
  charged: { payment: Payment | null; result: ChargeResult | null; refused: string | null },
): Promise<string | null> {
  if (!opened.invoice) return null;
  let settled: Payment | null = null;
  if (charged.payment) {
    settled = charged.result
      ? await ctx.payments.finish(trx, charged.payment, charged.result)
      : await ctx.payments.get(charged.payment.id, trx);
    if (!settled.captured && settled.status !== 'failed') {
      throw new Error(`resume invoice ${opened.invoice}: payment ${settled.id} is ${settled.status}`);
    }
  }
  return settleResume(ctx, trx, opened.invoice, settled, charged.refused);
}

/** The scheduled resume's job (external): opens, charges outside any transaction, settles. */
export async function resumeDue(ctx: BillingContext, job: PauseJob): Promise<void> {
  const opened = await transact(ctx.db, async (trx) => {
    const sub = await lockSubscription(billingTables(trx), job.subscription);
    if (sub?.status !== 'paused') return null;
    const pending = await openResumeInvoice(trx, sub);
    if (pending)
      return { subscription: sub.id, invoice: pending.id, charge: ctx.chargeOf(pending, undefined) };
    const at = new Date(job.at);
    if (sub.paused_at && at.getTime() < sub.paused_at.getTime()) return null;
    return resumeAt(ctx, trx, sub, at);
  });
  if (!opened?.invoice) return;
  const charged = await chargeResume(ctx, opened);
  if (charged.payment && !charged.result && charged.payment.status === 'processing') {
    throw new Error(`resume invoice ${opened.invoice}: payment ${charged.payment.id} is still in flight`);
  }
  await transact(ctx.db, (trx) => finishResume(ctx, trx, opened, charged));
}
