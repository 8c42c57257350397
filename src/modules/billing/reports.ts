import { type Kysely, sql } from 'kysely';
import { type Before, newestFirst, olderThan } from '../../db/keyset.js';
import type { Executor } from '../../db/schema.js';
import type { RetrySchedule } from './domain/dunning.js';
import type { BillingPeriod } from './domain/periods.js';
import { type BillingTables, billingTables, type InvoicesTable, type SubscriptionsTable } from './tables.js';

/**
 * The billing module's part of the admin dashboard (reports module): set-based reads of its own
 * tables, each one statement whatever the number of subscriptions, answers bounded by the catalog
 * (groups) or a limit (the dunning queue).
 *
 * Live versus simulated: customers on a test clock number their invoices in `TEST-` series
 * (docs/API.md), so a subscription is live when its first invoice (`subscription_create`,
 * finalised with it in one transaction) is in a legal series; that series also names the market
 * it was sold in (`SE-2027`), the customer's market. Billing thus answers without reading customers.
 */

/** Statuses counted as active subscriptions on the dashboard (trialing and past_due kept apart). */
export const COUNTED_STATUSES = ['trialing', 'active', 'past_due'] as const;
export type CountedStatus = (typeof COUNTED_STATUSES)[number];

export interface SubscriptionGroup {
  planId: string;
  productId: string;
  /** The market code of the first invoice's series. */
  market: string;
  status: CountedStatus;
  currency: string;
  billingPeriod: BillingPeriod;
  /** The recurring price the subscribers of this group pay now (minor units, as the catalog states it). */
  priceMinor: number;
  count: number;
}

export interface DayCount {
  /** `YYYY-MM-DD` (UTC). */
  day: string;
  count: number;
}

export interface DunningEntry {
  invoice: string;
  customer: string;
  subscription: string;
  amountDueMinor: number;
  currency: string;
  attempts: number;
  /** When the dunning schedule charges it next, or null when no retry is left. */
  nextAttemptAt: Date | null;
}

/** The live subscription's first invoice: its series says live or simulated, and the market. */
function withFirstInvoice(db: Kysely<BillingTables>) {
  return db
    .selectFrom('subscriptions as s')
    .innerJoin('invoices as i', (join) =>
      join.onRef('i.subscription_id', '=', 's.id').on('i.reason', '=', 'subscription_create'),
    )
    .where('i.series', 'not like', 'TEST-%');
}

/** Live subscriptions that are trialing, active or past_due, grouped by plan, market, status and price. */
export async function subscriptionGroups(trx: Executor): Promise<SubscriptionGroup[]> {
  const rows = await withFirstInvoice(billingTables(trx))
    .where('s.status', 'in', [...COUNTED_STATUSES])
    .select([
      's.plan_id',
      's.product_id',
      sql<string>`substring(i.series from '([A-Z]{2})-[0-9]{4}$')`.as('market'),
      's.status',
      's.currency',
      's.billing_period',
      's.price_minor',
      sql<number>`count(*)::int`.as('count'),
    ])
    .groupBy([
      's.plan_id',
      's.product_id',
      'market',
      's.status',
      's.currency',
      's.billing_period',
      's.price_minor',
    ])
    .execute();
  return rows.map((r) => ({
    planId: r.plan_id,
    productId: r.product_id,
    market: r.market,
    status: r.status as CountedStatus,
    currency: r.currency,
    billingPeriod: r.billing_period,
    priceMinor: r.price_minor,
    count: r.count,
  }));
}

const utcDay = (column: string) =>
  sql<string>`to_char((${sql.ref(column)} AT TIME ZONE 'UTC')::date, 'YYYY-MM-DD')`;

/**
 * Live subscriptions started per UTC day in [from, to): created and not left incomplete or expired
 * (a sign-up whose first payment never succeeded is no new subscription); trials count.
 */
export async function startedPerDay(trx: Executor, from: Date, to: Date): Promise<DayCount[]> {
  return withFirstInvoice(billingTables(trx))
    .where('s.created_at', '>=', from)
    .where('s.created_at', '<', to)
    .where('s.status', 'not in', ['incomplete', 'expired'])
    .select([utcDay('s.created_at').as('day'), sql<number>`count(*)::int`.as('count')])
    .groupBy('day')
    .execute();
}

/** Live subscriptions canceled per UTC day of their end in [from, to). */
export async function churnedPerDay(trx: Executor, from: Date, to: Date): Promise<DayCount[]> {
  return withFirstInvoice(billingTables(trx))
    .where('s.status', '=', 'canceled')
    .where('s.ended_at', '>=', from)
    .where('s.ended_at', '<', to)
    .select([utcDay('s.ended_at').as('day'), sql<number>`count(*)::int`.as('count')])
    .groupBy('day')
    .execute();
}

/**
 * The dunning queue: open invoices of live past_due subscriptions, the first `limit` by their next
 * retry (the dunning schedule's day after the first failure; those without a retry left last),
 * and how many there are in all.
 */
export async function dunningQueue(
  trx: Executor,
  schedule: RetrySchedule,
  limit: number,
): Promise<{ count: number; invoices: DunningEntry[] }> {
  const days = [...schedule.retryDays];
  // The next retry is number max(scheduled_attempts, 1): the charge job records the step it made
  // (1 the first charge, r + 1 retry r), so after retry r failed, retry r + 1 is next.
  const next = sql<Date | null>`s.past_due_since + make_interval(days => (${days}::int[])[greatest(i.scheduled_attempts, 1)])`;
  const rows = await billingTables(trx)
    .selectFrom('invoices as i')
    .innerJoin('subscriptions as s', 's.id', 'i.subscription_id')
    .where('s.status', '=', 'past_due')
    .where('i.status', '=', 'open')
    .where('i.series', 'not like', 'TEST-%')
    .select([
      'i.id',
      'i.customer_id',
      'i.subscription_id',
      'i.amount_due_minor',
      'i.currency',
      'i.attempts',
      next.as('next_attempt_at'),
      sql<number>`(count(*) OVER ())::int`.as('total'),
    ])
    .orderBy(sql`${next} ASC NULLS LAST`)
    .orderBy('i.id')
    .limit(limit)
    .execute();
  return {
    count: rows[0]?.total ?? 0,
    invoices: rows.map((r) => ({
      invoice: r.id,
      customer: r.customer_id,
      subscription: r.subscription_id,
      amountDueMinor: r.amount_due_minor,
      currency: r.currency,
      attempts: r.attempts,
      nextAttemptAt: r.next_attempt_at === null ? null : new Date(r.next_attempt_at),
    })),
  };
}

/** A customer's subscriptions, newest first (by creation, then id), `limit` of them after `before`. */
export function subscriptionsPage(
  trx: Executor,
  customerId: string,
  before: Before | undefined,
  limit: number,
): Promise<SubscriptionsTable[]> {
  return billingTables(trx)
    .selectFrom('subscriptions')
    .selectAll()
    .where('customer_id', '=', customerId)
    .where(olderThan('created_at', 'id', before))
    .orderBy(newestFirst('created_at'))
    .orderBy('id', 'desc')
    .limit(limit)
    .execute();
}

/** A customer's invoices, newest first (by creation, then id), `limit` of them after `before`. */
export function invoicesPage(
  trx: Executor,
  customerId: string,
  before: Before | undefined,
  limit: number,
): Promise<InvoicesTable[]> {
  return billingTables(trx)
    .selectFrom('invoices')
    .selectAll()
    .where('customer_id', '=', customerId)
    .where(olderThan('created_at', 'id', before))
    .orderBy(newestFirst('created_at'))
    .orderBy('id', 'desc')
    .limit(limit)
    .execute();
}

/**
 * The ids of a customer's subscriptions and invoices, newest first, at most `max` of each: what
 * other modules' timeline parts (events, ledger, audit) are filed under.
 */
export async function customerRefs(
  trx: Executor,
  customerId: string,
  max: number,
): Promise<{ subscriptions: string[]; invoices: string[] }> {
  const db = billingTables(trx);
  const [subscriptions, invoices] = await Promise.all([
    db
      .selectFrom('subscriptions')
      .select('id')
      .where('customer_id', '=', customerId)
      .orderBy('id', 'desc')
      .limit(max)
      .execute(),
    db
      .selectFrom('invoices')
      .select('id')
      .where('customer_id', '=', customerId)
      .orderBy('id', 'desc')
      .limit(max)
      .execute(),
  ]);
  return { subscriptions: subscriptions.map((r) => r.id), invoices: invoices.map((r) => r.id) };
}
