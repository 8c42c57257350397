import { sql } from 'kysely';
import { type Before, newestFirst, olderThan } from '../../db/keyset.js';
import type { Executor } from '../../db/schema.js';
import type { Payment, Refund } from './context.js';
import { paymentTables } from './tables.js';

/**
 * The payments module's part of the admin dashboard and of the customer timeline (reports module):
 * reads of its own tables only. Which customers are simulated (on a test clock) is the customers
 * module's to say: the caller passes them in.
 */

/**
 * Failed payments per UTC day in [from, to), leaving out the customers listed (those on a test
 * clock): one statement, the exclusion a hashed anti-join whatever its length.
 */
export async function failedPerDay(
  trx: Executor,
  from: Date,
  to: Date,
  excludeCustomers: readonly string[],
): Promise<Array<{ day: string; count: number }>> {
  const { rows } = await sql<{ day: string; count: number }>`
    SELECT to_char((p.created_at AT TIME ZONE 'UTC')::date, 'YYYY-MM-DD') AS day, count(*)::int AS count
    FROM payments p
    WHERE p.status = 'failed' AND p.created_at >= ${from} AND p.created_at < ${to}
      AND NOT EXISTS (SELECT 1 FROM unnest(${[...excludeCustomers]}::text[]) AS x(id) WHERE x.id = p.customer_id)
    GROUP BY 1`.execute(trx);
  return rows;
}

/**
 * Succeeded refunds per UTC day and currency in [from, to) (by when the refund was asked), leaving
 * out the customers listed (those on a test clock): how many, and how much in minor units.
 */
export async function refundsPerDay(
  trx: Executor,
  from: Date,
  to: Date,
  excludeCustomers: readonly string[],
): Promise<Array<{ day: string; currency: string; count: number; amount: number }>> {
  const { rows } = await sql<{ day: string; currency: string; count: number; amount: string }>`
    SELECT to_char((r.created_at AT TIME ZONE 'UTC')::date, 'YYYY-MM-DD') AS day, p.currency,
           count(*)::int AS count, sum(r.amount_minor)::text AS amount
    FROM refunds r JOIN payments p ON p.id = r.payment_id
    WHERE r.status = 'succeeded' AND r.created_at >= ${from} AND r.created_at < ${to}
      AND NOT EXISTS (SELECT 1 FROM unnest(${[...excludeCustomers]}::text[]) AS x(id) WHERE x.id = p.customer_id)
    GROUP BY 1, 2`.execute(trx);
  return rows.map((r) => ({ day: r.day, currency: r.currency, count: r.count, amount: Number(r.amount) }));
}

/** A customer's payments, newest first (by creation, then id), `limit` of them after `before`. */
export function paymentsPage(
  trx: Executor,
  customerId: string,
  before: Before | undefined,
  limit: number,
): Promise<Payment[]> {
  return paymentTables(trx)
    .selectFrom('payments')
    .selectAll()
    .where('customer_id', '=', customerId)
    .where(olderThan('created_at', 'id', before))
    .orderBy(newestFirst('created_at'))
    .orderBy('id', 'desc')
    .limit(limit)
    .execute();
}

/**
 * Refunds of a customer's payments (with the payment's currency), newest first (by creation, then
 * id), `limit` of them after `before`.
 */
export function refundsPage(
  trx: Executor,
  customerId: string,
  before: Before | undefined,
  limit: number,
): Promise<Array<Refund & { currency: string }>> {
  return paymentTables(trx)
    .selectFrom('refunds as r')
    .innerJoin('payments as p', 'p.id', 'r.payment_id')
    .selectAll('r')
    .select('p.currency')
    .where('p.customer_id', '=', customerId)
    .where(olderThan('r.created_at', 'r.id', before))
    .orderBy(newestFirst('r.created_at'))
    .orderBy('r.id', 'desc')
    .limit(limit)
    .execute();
}

/**
 * Ids of a customer's payments, refunds and payment methods, newest first, at most `max` of each:
 * what ledger transactions and audit entries are filed under.
 */
export async function customerRefs(
  trx: Executor,
  customerId: string,
  max: number,
): Promise<{ payments: string[]; refunds: string[]; paymentMethods: string[] }> {
  const db = paymentTables(trx);
  const payments = await db
    .selectFrom('payments')
    .select('id')
    .where('customer_id', '=', customerId)
    .orderBy('id', 'desc')
    .limit(max)
    .execute();
  const refunds = await db
    .selectFrom('refunds as r')
    .innerJoin('payments as p', 'p.id', 'r.payment_id')
    .select('r.id')
    .where('p.customer_id', '=', customerId)
    .orderBy('r.id', 'desc')
    .limit(max)
    .execute();
  const methods = await db
    .selectFrom('payment_methods')
    .select('id')
    .where('customer_id', '=', customerId)
    .orderBy('id', 'desc')
    .limit(max)
    .execute();
  return {
    payments: payments.map((r) => r.id),
    refunds: refunds.map((r) => r.id),
    paymentMethods: methods.map((r) => r.id),
  };
}
