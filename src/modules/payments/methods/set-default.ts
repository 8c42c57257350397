import type { Executor } from '../../../db/schema.js';
import { notFound } from '../../../kernel/errors.js';
import type { PaymentsContext } from '../context.js';
import { paymentTables } from '../tables.js';
import { methodOf, type PaymentMethod, withProviders } from './queries.js';

export async function setDefaultMethod(
  ctx: PaymentsContext,
  customerRef: string,
  methodId: string,
  trx: Executor,
): Promise<PaymentMethod> {
  const db = paymentTables(trx);
  const customer = await ctx.customers.get(customerRef, trx);
  const method = await methodOf(db, customer.id, methodId);
  if (!method) throw notFound('payment method', methodId);
  await db
    .updateTable('payment_methods')
    .set({ is_default: false })
    .where('customer_id', '=', customer.id)
    .where('is_default', '=', true)
    .execute();
  await db.updateTable('payment_methods').set({ is_default: true }).where('id', '=', methodId).execute();
  const [updated] = await withProviders(db, [{ ...method, is_default: true }]);
  return updated!;
}
