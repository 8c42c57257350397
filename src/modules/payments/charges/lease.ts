import { randomBytes } from 'node:crypto';
import { sql } from 'kysely';
import type { RoutingDecision } from '../../../providers/router.js';
import { CHARGE_DEADLINE_MARGIN_MS, type PaymentsContext } from '../context.js';

/**
 * A worker's claim to charge a payment (see migration 0011). `exclusive`: no other worker's call
 * can be in flight, so this one may move the payment to another provider. `shared`: another
 * worker's call may still be in flight at the same provider; charging there again is safe (same
 * provider idempotency key) but moving elsewhere is not, until the deadline has passed.
 */
export interface ChargeLease {
  token: string;
  /** Set by start when it stored the payment: the insert itself took the lease. */
  heldSinceInsert: boolean;
  /** Provider calls this worker started: with none, giving the lease back is safe. */
  callsMade: number;
  /** provider → the provider's method id, when the worker already read them (start does). */
  tokens?: ReadonlyMap<string, string>;
}

export function newLease(heldSinceInsert = false): ChargeLease {
  return { token: randomBytes(16).toString('hex'), heldSinceInsert, callsMade: 0 };
}

/** When a call to `provider` started now can no longer be processed. */
export function chargeDeadline(ctx: PaymentsContext, provider: string): Date {
  return new Date(
    ctx.clock.now().getTime() + ctx.router.provider(provider).callBudgetMs + CHARGE_DEADLINE_MARGIN_MS,
  );
}

/**
 * Takes the lease to call `target`, conditional on the payment being `processing` at `expected`
 * (compare-and-set): a worker whose view is stale gets null and must not charge. A move
 * (`target !== expected`) needs the lease exclusively.
 */
export async function acquireLease(
  ctx: PaymentsContext,
  paymentId: string,
  expected: string,
  target: string,
  lease: ChargeLease,
  routing: RoutingDecision,
): Promise<'exclusive' | 'shared' | null> {
  const now = ctx.clock.now();
  const deadline = chargeDeadline(ctx, target);
  const exclusive = await ctx.tables
    .updateTable('payments')
    .set({
      provider: target,
      routing: JSON.stringify(routing),
      charge_token: lease.token,
      charge_deadline_at: deadline,
      updated_at: now,
    })
    .where('id', '=', paymentId)
    .where('status', '=', 'processing')
    .where('provider', '=', expected)
    .where((eb) =>
      eb.or([
        eb('charge_token', '=', lease.token),
        eb('charge_deadline_at', 'is', null),
        eb('charge_deadline_at', '<=', now),
      ]),
    )
    .executeTakeFirst();
  if (exclusive.numUpdatedRows === 1n) return 'exclusive';
  if (target !== expected) return null;
  // Nobody holds this token: the previous holder loses the right to move the payment too.
  const shared = await ctx.tables
    .updateTable('payments')
    .set({
      charge_token: `shared:${lease.token}`,
      charge_deadline_at: sql<Date>`greatest(charge_deadline_at, ${deadline}::timestamptz)`,
      updated_at: now,
    })
    .where('id', '=', paymentId)
    .where('status', '=', 'processing')
    .where('provider', '=', expected)
    .executeTakeFirst();
  return shared.numUpdatedRows === 1n ? 'shared' : null;
}

/** Gives the lease back when none of this worker's calls can be in flight (all certainly refused). */
export async function releaseLease(
  ctx: PaymentsContext,
  paymentId: string,
  lease: ChargeLease,
): Promise<void> {
  await ctx.tables
    .updateTable('payments')
    .set({ charge_deadline_at: ctx.clock.now() })
    .where('id', '=', paymentId)
    .where('status', '=', 'processing')
    .where('charge_token', '=', lease.token)
    .execute();
}
