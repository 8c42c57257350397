import type { Executor } from '../../db/schema.js';
import { assert } from '../../kernel/assert.js';
import { DomainError, invalid, notFound } from '../../kernel/errors.js';
import { type BillingContext, JOBS, lockSubscription, mustExist, scheduleOf, stateOf } from './context.js';
import { applyEvent } from './domain/lifecycle.js';
import { pauseCredit, resumeCharge } from './domain/pause.js';
import { billingTables, type InvoicesTable, type SubscriptionsTable } from './tables.js';

/**
 * Pause and resume (ADR 0014, "Cancel, pause, members"). A pause at p gives back the unused part
 * [p, e) of the current period on an invoice of its own (`subscription_pause`), whose negative
 * total becomes account credit, tax included; the subscription is `paused` (its last period kept,
 * for reference), entitles nobody, and its cycle job finds it paused and does nothing. A resume at r
 * bills [r, next boundary of the same grid) on a `subscription_resume` invoice that spends the
 * account credit first: nothing due → active at once; else the invoice is charged by the
 * pay-invoice workflow (no transaction open while the provider answers) and `settleInvoice` moves
 * the subscription: paid → active (`resumePaid`), declined → past_due on that invoice (dunning).
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
  /** The resume invoice to charge (pay-invoice workflow), or null: nothing to charge. */
  invoice: string | null;
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
  if (pending) return { subscription: sub.id, invoice: pending.id };
  const { now, at } = await instant(ctx, trx, sub, atInput);
  if (at.getTime() > now.getTime()) {
    applyEvent(stateOf(sub), { type: 'resume', at, period: { start: at, end: new Date(at.getTime() + 1) } });
    await schedule(ctx, trx, PAUSE_JOBS.resume, sub, at);
    return { subscription: sub.id, invoice: null };
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
    // Account credit paid it all: active at once.
    const fresh = await lockSubscription(billingTables(trx), sub.id).then(mustExist);
    await resumePaid(ctx, trx, fresh, invoice, at, customer.testClockId);
    return { subscription: sub.id, invoice: null };
  }
  return { subscription: sub.id, invoice: invoice.id };
}

/**
 * The resume invoice is paid (at finalisation, or its charge captured; `settleInvoice` calls this for
 * a paused subscription's `subscription_resume` invoice): active with the period [r, next boundary)
 * and the next cycle scheduled, `subscription.resumed`.
 */
export async function resumePaid(
  ctx: BillingContext,
  trx: Executor,
  sub: SubscriptionsTable,
  invoice: InvoicesTable,
  now: Date,
  testClockId: string | null,
): Promise<SubscriptionsTable> {
  const period = { start: invoice.period_start, end: invoice.period_end };
  const state = applyEvent(stateOf(sub), { type: 'resume', at: invoice.period_start, period });
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
  await ctx.scheduleCycle(trx, resumed, period.end, testClockId);
  return resumed;
}

/**
 * The scheduled resume's job: the resume invoice finalised; what is due is charged by the charge
 * job at the same instant (the pay-invoice workflow, no transaction held while it charges).
 */
export async function resumeDue(ctx: BillingContext, trx: Executor, job: PauseJob): Promise<void> {
  const sub = await lockSubscription(billingTables(trx), job.subscription);
  if (sub?.status !== 'paused') return;
  const at = new Date(job.at);
  if (sub.paused_at && at.getTime() < sub.paused_at.getTime()) return;
  const pending = await openResumeInvoice(trx, sub);
  const opened = pending ? { invoice: pending.id } : await resumeAt(ctx, trx, sub, at);
  if (!opened.invoice) return;
  const { testClockId } = await ctx.customers.account(sub.customer_id, trx);
  await ctx.jobs.schedule(trx, {
    kind: JOBS.chargeInvoice,
    runAt: at,
    customerId: sub.customer_id,
    testClockId,
    payload: { invoice: opened.invoice },
    dedupeKey: `${JOBS.chargeInvoice}:${opened.invoice}`,
  });
}
