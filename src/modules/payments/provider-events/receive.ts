import type { Executor } from '../../../db/schema.js';
import type { ProviderEvent } from '../../../providers/port.js';
import type { PaymentsContext } from '../context.js';
import { paymentTables } from '../tables.js';
import { applySnapshot, findBySnapshot } from './apply-snapshot.js';

/**
 * A verified provider webhook: stored once by event id (duplicates are answered and ignored),
 * then the payment converges on the provider's snapshot. Events may arrive in any order.
 */
export async function receiveEvent(
  ctx: PaymentsContext,
  trx: Executor,
  provider: string,
  event: ProviderEvent,
): Promise<{ duplicate: boolean; payment: string | null }> {
  const db = paymentTables(trx);
  const payment = await findBySnapshot(db, provider, event.payment);
  const inserted = await db
    .insertInto('provider_events')
    .values({
      provider,
      event_id: event.id,
      type: event.type,
      payment_id: payment?.id ?? null,
      received_at: ctx.clock.now(),
    })
    .onConflict((oc) => oc.columns(['provider', 'event_id']).doNothing())
    .returning('event_id')
    .executeTakeFirst();
  if (!inserted) return { duplicate: true, payment: payment?.id ?? null };
  if (payment) await applySnapshot(ctx, trx, provider, event.payment);
  return { duplicate: false, payment: payment?.id ?? null };
}
