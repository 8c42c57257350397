import type { Executor } from '../../db/schema.js';
import { DomainError } from '../../kernel/errors.js';
import { type BillingContext, type Subscription, scheduleOf } from './context.js';
import { assembleInvoice } from './domain/invoice.js';
import { changeBillingCycleDay, periodFrom } from './domain/plan-change.js';
import { recurringLine } from './domain/proration.js';

/** The renewal a subscription is heading for, as `invoiceCycle` will bill it if nothing changes. */
export interface UpcomingRenewal {
  /** When it is billed: the current period's end (the trial end while trialing). */
  at: Date;
  currency: string;
  /** The renewal invoice's total, tax included. */
  totalMinor: number;
  /** What will be charged: the total less the customer's account credit as it stands now. */
  amountDueMinor: number;
}

/**
 * What the next renewal of `sub` will bill, computed with `invoiceCycle`'s own rules (a pending
 * end-of-term change applied first, the period from the current end on the schedule, the price in
 * force for this subscriber then, the market's tax), writing nothing. Null when no renewal is
 * coming: a cancel is scheduled, or the subscription is not trialing or active (past_due waits for
 * its open invoice, paused for its resume, the others have ended or never started).
 */
export async function upcomingRenewal(
  ctx: BillingContext,
  sub: Subscription,
  trx: Executor = ctx.db,
): Promise<UpcomingRenewal | null> {
  if ((sub.status !== 'trialing' && sub.status !== 'active') || sub.cancel_at || !sub.current_period_end)
    return null;
  const end = sub.current_period_end;
  const customer = await ctx.customers.account(sub.customer_id, trx);
  // As applyPendingChange does at the period end, before the renewal is billed.
  let renewing = sub;
  if (sub.pending_plan_id && sub.pending_change_at && sub.pending_change_at.getTime() <= end.getTime()) {
    const target = await ctx.catalog.getPlan(sub.pending_plan_id, trx);
    const billingCycleDay = changeBillingCycleDay(
      { period: sub.billing_period, billingCycleDay: sub.billing_cycle_day },
      customer.billingCycleDay,
    );
    renewing = {
      ...sub,
      plan_id: target.id,
      product_id: target.productId,
      billing_period: target.billingPeriod,
      billing_cycle_day: target.billingPeriod === 'week' ? null : billingCycleDay,
      plan_started_at: sub.pending_change_at,
    };
  }
  const period = periodFrom(scheduleOf(renewing), end);
  const plan = await ctx.catalog.getPlan(renewing.plan_id, trx);
  const price = await ctx.catalog
    .priceFor(
      plan.id,
      {
        market: customer.marketId,
        at: period.start,
        subscribedAt: renewing.plan_started_at ?? renewing.created_at,
      },
      trx,
    )
    .catch((e: unknown) => {
      if (e instanceof DomainError && e.code === 'price_not_found') return null;
      throw e;
    });
  // The renewal would be refused (no price then, or the market changed currency): nothing to promise.
  if (!price || price.currency !== sub.currency) return null;
  const invoice = assembleInvoice({
    currency: sub.currency,
    tax: { rateBps: price.market.taxRateBps, inclusive: price.market.taxInclusive },
    lines: [recurringLine({ name: plan.name, priceMinor: price.amountMinor }, period)],
    accountCreditMinor: await ctx.accountCredit(trx, sub.customer_id, sub.currency),
  });
  return {
    at: end,
    currency: sub.currency,
    totalMinor: invoice.totalMinor,
    amountDueMinor: invoice.amountDueMinor,
  };
}
