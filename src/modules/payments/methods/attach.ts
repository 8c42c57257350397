import { transact } from '../../../db/transaction.js';
import { DomainError, invalid, invalidState } from '../../../kernel/errors.js';
import { newId } from '../../../kernel/ids.js';
import { ProviderError } from '../../../providers/port.js';
import { assertSameInput, inputHash, type PaymentsContext } from '../context.js';
import { type PaymentMethodsTable, paymentTables } from '../tables.js';
import { type PaymentMethod, toMethod, withProviders } from './queries.js';

export interface AttachInput {
  /** The provider kind (`simulator`), not an instance (`simulator-a`): every instance gets a token. */
  provider: string;
  token: string;
}

/**
 * Tokenizes at every instance of the provider kind (so payments can fail over). A decline at
 * any of them refuses the card and stores nothing. An erased customer takes no new method: erased
 * means closed for new personal data.
 */
export async function attachMethod(
  ctx: PaymentsContext,
  customerRef: string,
  input: AttachInput,
  requestKey: string | null = null,
): Promise<PaymentMethod> {
  const hash = inputHash({ customer: customerRef, provider: input.provider, token: input.token });
  const customer = await ctx.customers.get(customerRef);
  if (requestKey) {
    // The same request, retried after a crash that stored the method but lost the answer.
    const existing = await ctx.tables
      .selectFrom('payment_methods')
      .selectAll()
      .where('request_key', '=', requestKey)
      .execute();
    for (const row of existing) assertSameInput(row, hash, `payment method ${row.id}`);
    const [found] = await withProviders(ctx.tables, existing);
    if (found) return found;
  }
  if (customer.erasedAt)
    throw invalidState(`Customer ${customer.id} was erased: it takes no new payment method.`);
  const instances = ctx.router.instancesOf(input.provider);
  if (instances.length === 0) {
    const kind = ctx.router.kindOf(input.provider);
    throw invalid(
      'provider',
      kind
        ? `'${input.provider}' is a provider instance; name its kind '${kind}' (the method is tokenized at every instance)`
        : `unknown provider '${input.provider}'; known: ${ctx.router.kinds().join(', ')}`,
    );
  }
  const tokens: Array<{ provider: string; providerMethodId: string; brand: string; last4: string }> = [];
  // One key per attach (the method's future id), so a retried call tokenizes once.
  const methodId = newId('paymentMethod');
  let lastError: unknown;
  for (const instance of instances) {
    try {
      const result = await ctx.router.call(instance.id, (p) =>
        p.attach({ token: input.token, idempotencyKey: methodId }),
      );
      if (!result.ok) {
        throw new DomainError('payment_declined', `The card was declined (${result.declineCode}).`, {
          extra: { declineCode: result.declineCode },
        });
      }
      tokens.push({
        provider: instance.id,
        providerMethodId: result.providerMethodId,
        brand: result.brand,
        last4: result.last4,
      });
    } catch (error) {
      if (error instanceof DomainError) throw error;
      if (error instanceof ProviderError && error.kind === 'rejected') throw invalid('token', error.message);
      lastError = error;
    }
  }
  const first = tokens[0];
  if (!first) {
    throw new DomainError(
      'provider_unavailable',
      `No ${input.provider} instance could tokenize the card: ${(lastError as Error)?.message}`,
    );
  }
  return transact(ctx.db, async (trx) => {
    const db = paymentTables(trx);
    const hasDefault = await db
      .selectFrom('payment_methods')
      .select('id')
      .where('customer_id', '=', customer.id)
      .where('is_default', '=', true)
      .executeTakeFirst();
    const row: PaymentMethodsTable = {
      id: methodId,
      customer_id: customer.id,
      provider_kind: input.provider,
      brand: first.brand,
      last4: first.last4,
      is_default: !hasDefault,
      request_key: requestKey,
      request_hash: requestKey ? hash : null,
      created_at: ctx.clock.now(),
    };
    await db.insertInto('payment_methods').values(row).execute();
    await db
      .insertInto('payment_method_tokens')
      .values(
        tokens.map((t) => ({
          payment_method_id: row.id,
          provider: t.provider,
          provider_method_id: t.providerMethodId,
        })),
      )
      .execute();
    return toMethod(
      row,
      tokens.map((t) => t.provider),
    );
  });
}
