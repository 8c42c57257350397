import type { Payment, PaymentsContext } from '../context.js';

/** One page of payments, oldest first: `limit + 1` rows (the extra one says "more"). */
export async function listPayments(
  ctx: PaymentsContext,
  filter: { customer?: string | undefined; limit: number; after?: string | undefined },
): Promise<Payment[]> {
  let q = ctx.tables
    .selectFrom('payments')
    .selectAll()
    .orderBy('id')
    .limit(filter.limit + 1);
  if (filter.customer) q = q.where('customer_id', '=', (await ctx.customers.get(filter.customer)).id);
  if (filter.after) q = q.where('id', '>', filter.after);
  return q.execute();
}
