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
  if (payment) await applySnapshot(ctx, trx, provider, event.payment, payment);
  return { duplicate: false, payment: payment?.id ?? null };
}

/** What `knownSettled` reads of a payment. */
const SETTLED_COLUMNS = [
  'id',
  'status',
  'captured',
  'provider_payment_id',
  'provider',
  'charge_token',
  'charge_deadline_at',
] as const;

/**
 * Whether a verified event only repeats what the payment already records (the usual webhook:
 * the capture or decline our own call already settled), read outside any transaction. Facts only
 * grow, so an event reflected now stays reflected: its acknowledgement needs no transaction,
 * only the dedupe row (`recordEventQuery`). Returns the payment's id, or null when the event may
 * change something (then `receiveEvent` applies it in a transaction).
 */
export async function knownSettled(
  ctx: PaymentsContext,
  provider: string,
  event: ProviderEvent,
): Promise<string | null> {
  const s = event.payment;
  if (s.refunds.length > 0 || s.dispute) return null;
  if (s.status !== 'succeeded' && s.status !== 'failed') return null;
  // findBySnapshot's two lookups in one: by the provider's id, or by our id (the charge's key).
  const rows = await ctx.tables
    .selectFrom('payments')
    .select(SETTLED_COLUMNS)
    .where('provider', '=', provider)
    .where((eb) =>
      eb.or([eb('provider_payment_id', '=', s.providerPaymentId), eb('id', '=', s.idempotencyKey)]),
    )
    .limit(2)
    .execute();
  let [p] = rows;
  if (!p || rows.length > 1) return null;
  // Still processing under a live charge lease at this provider: the worker that charged it holds
  // the same answer and records it (a renewal batch settles its charges together, after this
  // webhook arrives); should it die, the reconciliation job at the lease's deadline looks the
  // payment up at the provider (ADR 0017). Facts only grow: acknowledging this one loses nothing.
  const leased = (row: NonNullable<typeof p>) =>
    row.status === 'processing' &&
    row.provider === provider &&
    row.charge_token !== null &&
    row.charge_deadline_at !== null &&
    row.charge_deadline_at.getTime() > ctx.clock.now().getTime();
  if (leased(p)) return p.id;
  if (p.status === 'processing') {
    // The call that charged may be recording this very answer now (the provider sends the
    // webhook as it answers): wait for that transaction's row lock, without one of our own, and
    // look again at what it committed.
    p = await ctx.tables
      .selectFrom('payments')
      .select(SETTLED_COLUMNS)
      .where('id', '=', p.id)
      .forShare()
      .executeTakeFirst();
    if (!p) return null;
  }
  // applySnapshot would do nothing: a capture already booked, or a failure of a payment closed.
  if (s.status === 'succeeded' && p.captured && p.provider_payment_id === s.providerPaymentId) return p.id;
  if (s.status === 'failed' && p.status !== 'processing') return p.id;
  return null;
}

/** The dedupe row of an event (returns its id when new, nothing for a duplicate), unexecuted. */
export function recordEventQuery(
  ctx: PaymentsContext,
  provider: string,
  event: ProviderEvent,
  paymentId: string | null,
) {
  return ctx.tables
    .insertInto('provider_events')
    .values({
      provider,
      event_id: event.id,
      type: event.type,
      payment_id: paymentId,
      received_at: ctx.clock.now(),
    })
    .onConflict((oc) => oc.columns(['provider', 'event_id']).doNothing())
    .returning('event_id');
}
