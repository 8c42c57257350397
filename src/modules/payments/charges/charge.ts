import { transact } from '../../../db/transaction.js';
import { type ChargeResult, ProviderError, type ProviderPaymentSnapshot } from '../../../providers/port.js';
import type { RoutingDecision } from '../../../providers/router.js';
import { getPayment, type Payment, type PaymentsContext } from '../context.js';
import { applySnapshot } from '../provider-events/apply-snapshot.js';
import { acquireLease, type ChargeLease, releaseLease } from './lease.js';

export function routingOf(payment: Payment): RoutingDecision {
  return (
    typeof payment.routing === 'string' ? JSON.parse(payment.routing) : payment.routing
  ) as RoutingDecision;
}

/**
 * Charges at the payment's provider under the charge lease, failing over to the next candidate
 * only when the provider certainly did not process it and the lease is exclusive. Returns the
 * provider's answer, or `null` when the outcome is unknown or another worker has the payment
 * (it stays `processing` until a retry, a webhook or the reconciliation job settles it).
 */
export async function chargePayment(
  ctx: PaymentsContext,
  payment: Payment,
  lease: ChargeLease,
): Promise<{ payment: Payment; result: ChargeResult | null }> {
  if (payment.status !== 'processing') return { payment, result: null };
  const routing = routingOf(payment);
  const order = [
    payment.provider,
    ...routing.candidates.filter(
      (c) => c !== payment.provider && !routing.attempts.some((a) => a.provider === c),
    ),
  ];
  let current = payment.provider;
  // The insert's lease covers a call only while the whole call fits before its deadline: a batch
  // (renewals) charges its payments long after inserting them, by when the reconciliation may
  // have failed the payment at the deadline or another worker taken it. Then the lease is taken
  // again (compare-and-set), as for a payment this worker did not create.
  const insertLeaseLive =
    lease.heldSinceInsert &&
    payment.charge_deadline_at !== null &&
    payment.charge_deadline_at.getTime() - ctx.clock.now().getTime() >=
      ctx.router.provider(payment.provider).callBudgetMs;
  let mode: 'exclusive' | 'shared' | null = insertLeaseLive ? 'exclusive' : null;
  // A payment this worker did not create may have been charged at its provider by an earlier
  // attempt whose answer was lost (a timeout): that provider may hold the money.
  let mayHoldAtCurrent = !insertLeaseLive;
  for (const [i, candidate] of order.entries()) {
    if (candidate !== current) {
      // Another worker's call may be in flight at `current`: charging elsewhere could charge twice.
      if (mode !== 'exclusive') break;
      // The lease is exclusive, so no earlier call can still land; before moving, ask `current`
      // whether one did. Only its "no such charge" lets the payment go elsewhere.
      if (mayHoldAtCurrent && (await heldAt(ctx, payment, current)) !== 'nothing') {
        return { payment: await getPayment(ctx, payment.id), result: null };
      }
      mayHoldAtCurrent = false;
      routing.attempts.push({ provider: current, outcome: 'unavailable' });
    }
    if (!(i === 0 && insertLeaseLive)) {
      routing.chosen = candidate;
      // Compare-and-set on the provider we believe is current: a stale worker must not charge.
      mode = await acquireLease(ctx, payment.id, current, candidate, lease, routing);
      if (!mode) return { payment: await getPayment(ctx, payment.id), result: null };
      if (candidate !== current) ctx.router.count(candidate, 'failover');
    }
    current = candidate;
    // Start read the method's tokens with the method; a resumed payment reads its own.
    const token = lease.tokens
      ? (() => {
          const known = lease.tokens.get(current);
          return known ? { provider_method_id: known } : undefined;
        })()
      : await ctx.tables
          .selectFrom('payment_method_tokens')
          .select('provider_method_id')
          .where('payment_method_id', '=', payment.payment_method_id)
          .where('provider', '=', current)
          .executeTakeFirst();
    if (!token) continue;
    lease.callsMade++;
    try {
      const provider = current;
      const result = await ctx.router.call(provider, (p) =>
        p.charge({
          providerMethodId: token.provider_method_id,
          amountMinor: payment.amount_minor,
          currency: payment.currency,
          capture: payment.capture_method === 'automatic',
          idempotencyKey: payment.id,
          metadata: { payment: payment.id, customer: payment.customer_id },
        }),
      );
      if (i === 0) ctx.router.count(provider, 'primary');
      const settled: RoutingDecision = {
        ...routing,
        chosen: provider,
        attempts: [...routing.attempts, { provider, outcome: result.status }],
      };
      return { payment: { ...payment, provider, routing: JSON.stringify(settled) }, result };
    } catch (error) {
      if (!(error instanceof ProviderError)) throw error;
      ctx.router.count(current, error.kind);
      // The provider refused the request itself: nothing was charged, the payment fails.
      if (error.kind === 'rejected') {
        const settled = {
          ...routing,
          chosen: current,
          attempts: [...routing.attempts, { provider: current, outcome: 'rejected' }],
        };
        return {
          payment: { ...payment, provider: current, routing: JSON.stringify(settled) },
          result: { status: 'declined', declineCode: 'provider_rejected', providerPaymentId: null },
        };
      }
      // Ambiguous: the provider may hold the charge; the lease stays until its deadline.
      if (error.kind !== 'unavailable') return { payment: await getPayment(ctx, payment.id), result: null };
    }
  }
  // Every call was certainly refused: nothing is in flight, another worker may try at once.
  if (mode === 'exclusive') await releaseLease(ctx, payment.id, lease);
  return { payment: await getPayment(ctx, payment.id), result: null };
}

/**
 * Whether `provider` holds a charge of this payment: `found` (and the payment converged on it),
 * `nothing` (certainly none: the caller holds the exclusive lease, so no earlier call is still in
 * flight), or `unknown` (the provider cannot tell now: the payment must not move).
 */
async function heldAt(
  ctx: PaymentsContext,
  payment: Payment,
  provider: string,
): Promise<'found' | 'nothing' | 'unknown'> {
  let snapshot: ProviderPaymentSnapshot | null;
  try {
    snapshot = await ctx.router.call(provider, (p) => p.lookup(payment.id));
  } catch (error) {
    if (error instanceof ProviderError) return 'unknown';
    throw error;
  }
  if (!snapshot) return 'nothing';
  const found = snapshot;
  await transact(ctx.db, (trx) => applySnapshot(ctx, trx, provider, found));
  return 'found';
}
