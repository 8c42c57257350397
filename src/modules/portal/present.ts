import { z } from 'zod';
import type { Executor } from '../../db/schema.js';
import { timestamp } from '../../http/schemas.js';
import { isoSeconds } from '../../kernel/clock.js';
import type { BillingService, Subscription } from '../billing/service.js';
import type { CatalogService } from '../catalog/service.js';

const iso = (d: Date | null): string | null => (d ? isoSeconds(d) : null);

/** A subscription as the customer portal shows it. */
export const portalSubscriptionDto = z.object({
  id: z.string(),
  status: z.enum(['trialing', 'active', 'past_due', 'paused', 'canceled', 'incomplete', 'expired']),
  plan: z.object({
    id: z.string(),
    code: z.string(),
    name: z.string(),
    billingPeriod: z.enum(['month', 'year', 'week']),
  }),
  product: z.object({ code: z.string(), name: z.string(), seats: z.number().int() }),
  price: z
    .object({ amount: z.number().int(), currency: z.string() })
    .describe('The recurring price this subscriber pays per billing period (minor units)'),
  currentPeriodStart: timestamp.nullable(),
  currentPeriodEnd: timestamp.nullable(),
  trialEnd: timestamp.nullable(),
  cancelAt: timestamp
    .nullable()
    .describe('A scheduled cancel: access ends then (the period end); reactivate undoes it until then'),
  pausedAt: timestamp.nullable().describe('When a paused subscription was paused'),
  pendingChange: z
    .object({
      plan: z.string().describe('Plan id'),
      planCode: z.string(),
      planName: z.string(),
      effectiveAt: timestamp,
    })
    .nullable()
    .describe('A plan change waiting for the term end'),
  members: z.array(z.string()).describe('External ids of the members (family and duo plans)'),
  seatsLeft: z.number().int().describe('Members that may still be added: seats − 1 (the owner) − members'),
  nextRenewal: z
    .object({
      at: timestamp,
      amount: z.number().int().describe('The renewal invoice total, tax included'),
      amountDue: z.number().int().describe('What will be charged: the total less the account credit now'),
      currency: z.string(),
    })
    .nullable()
    .describe('Null when no renewal is coming (a cancel is scheduled, paused, past_due)'),
  createdAt: timestamp,
});
export type PortalSubscription = z.infer<typeof portalSubscriptionDto>;

/**
 * The portal's view of a subscription: its plan and product from the catalog, seats left, and its
 * next renewal as billing will bill it. Reads through `executor` (the request's transaction when
 * there is one: an open PGlite transaction holds the only session).
 */
export async function presentSubscription(
  deps: { billing: BillingService; catalog: CatalogService },
  sub: Subscription,
  executor?: Executor,
): Promise<PortalSubscription> {
  const { billing, catalog } = deps;
  const [plan, product, pending, renewal] = await Promise.all([
    catalog.getPlan(sub.plan_id, executor),
    catalog.getProduct(sub.product_id, executor),
    sub.pending_plan_id ? catalog.getPlan(sub.pending_plan_id, executor) : null,
    billing.upcomingRenewal(sub, executor),
  ]);
  return {
    id: sub.id,
    status: sub.status,
    plan: { id: plan.id, code: plan.code, name: plan.name, billingPeriod: sub.billing_period },
    product: { code: product.code, name: product.name, seats: product.seats },
    price: { amount: sub.price_minor, currency: sub.currency },
    currentPeriodStart: iso(sub.current_period_start),
    currentPeriodEnd: iso(sub.current_period_end),
    trialEnd: iso(sub.trial_end),
    cancelAt: iso(sub.cancel_at),
    pausedAt: sub.status === 'paused' ? iso(sub.paused_at) : null,
    pendingChange:
      pending && sub.pending_change_at
        ? {
            plan: pending.id,
            planCode: pending.code,
            planName: pending.name,
            effectiveAt: isoSeconds(sub.pending_change_at),
          }
        : null,
    members: sub.members,
    seatsLeft: Math.max(0, product.seats - 1 - sub.members.length),
    nextRenewal: renewal
      ? {
          at: isoSeconds(renewal.at),
          amount: renewal.totalMinor,
          amountDue: renewal.amountDueMinor,
          currency: renewal.currency,
        }
      : null,
    createdAt: isoSeconds(sub.created_at),
  };
}
