import type { Kysely } from 'kysely';
import type { PaymentsContext } from '../context.js';
import type { PaymentMethodsTable, PaymentTables } from '../tables.js';

export interface PaymentMethod {
  id: string;
  customerId: string;
  provider: string;
  brand: string;
  last4: string;
  isDefault: boolean;
  providers: string[];
  createdAt: Date;
}

/** A customer's method by id, or its default one when no id is given. */
export function methodOf(
  db: Kysely<PaymentTables>,
  customerId: string,
  methodId: string | undefined,
): Promise<PaymentMethodsTable | undefined> {
  const q = db.selectFrom('payment_methods').selectAll().where('customer_id', '=', customerId);
  return (methodId ? q.where('id', '=', methodId) : q.where('is_default', '=', true)).executeTakeFirst();
}

/**
 * `methodOf` with its tokens (provider instance → the provider's method id) in one query:
 * what a charge needs.
 */
export async function methodWithTokens(
  ctx: PaymentsContext,
  customerId: string,
  methodId: string | undefined,
): Promise<{ method: PaymentMethodsTable; tokens: Map<string, string> } | undefined> {
  const q = ctx.tables
    .selectFrom('payment_methods as m')
    .leftJoin('payment_method_tokens as t', 't.payment_method_id', 'm.id')
    .selectAll('m')
    .select(['t.provider as token_provider', 't.provider_method_id as token_method_id'])
    .where('m.customer_id', '=', customerId)
    .orderBy('t.provider');
  const rows = await (methodId
    ? q.where('m.id', '=', methodId)
    : q.where('m.is_default', '=', true)
  ).execute();
  const first = rows[0];
  if (!first) return undefined;
  const { token_provider: _p, token_method_id: _m, ...method } = first;
  const tokens = new Map<string, string>();
  for (const r of rows)
    if (r.id === method.id && r.token_provider && r.token_method_id)
      tokens.set(r.token_provider, r.token_method_id);
  return { method, tokens };
}

/** The methods with the provider instances holding a token for each (one query for all). */
export async function withProviders(
  db: Kysely<PaymentTables>,
  rows: PaymentMethodsTable[],
): Promise<PaymentMethod[]> {
  if (rows.length === 0) return [];
  const tokens = await db
    .selectFrom('payment_method_tokens')
    .select(['payment_method_id', 'provider'])
    .where(
      'payment_method_id',
      'in',
      rows.map((r) => r.id),
    )
    .execute();
  return rows.map((r) =>
    toMethod(
      r,
      tokens.filter((t) => t.payment_method_id === r.id).map((t) => t.provider),
    ),
  );
}

export function toMethod(r: PaymentMethodsTable, providers: string[]): PaymentMethod {
  return {
    id: r.id,
    customerId: r.customer_id,
    provider: r.provider_kind,
    brand: r.brand,
    last4: r.last4,
    isDefault: r.is_default,
    providers,
    createdAt: r.created_at,
  };
}

/** One page of a customer's methods, oldest first: `limit + 1` rows (the extra one says "more"). */
export async function listMethods(
  ctx: PaymentsContext,
  customerRef: string,
  page: { limit: number; after?: string | undefined },
): Promise<PaymentMethod[]> {
  const customer = await ctx.customers.get(customerRef);
  let q = ctx.tables
    .selectFrom('payment_methods')
    .selectAll()
    .where('customer_id', '=', customer.id)
    .orderBy('id')
    .limit(page.limit + 1);
  if (page.after) q = q.where('id', '>', page.after);
  return withProviders(ctx.tables, await q.execute());
}
