import { transact } from '../../../db/transaction.js';
import { getPayment, type PaymentsContext } from '../context.js';
import { paymentEvent } from '../events.js';
import { applySnapshot } from '../provider-events/apply-snapshot.js';
import { paymentTables } from '../tables.js';
import { reconcileJob } from './start.js';

/**
 * What the provider knows about a `processing` payment, applied (the reconciliation job). The
 * lookup happens outside any database transaction; the outcome is applied in one. A lookup that
 * finds nothing fails the payment only once its charge deadline has passed (no attempt can still
 * be processed); before that, the job comes back at the deadline.
 */
export async function reconcilePayment(ctx: PaymentsContext, paymentId: string): Promise<void> {
  const payment = await getPayment(ctx, paymentId);
  if (payment.status !== 'processing') return;
  const snapshot = await ctx.router.call(payment.provider, (p) => p.lookup(payment.id));
  await transact(ctx.db, async (trx) => {
    if (snapshot) {
      await applySnapshot(ctx, trx, payment.provider, snapshot);
      return;
    }
    const now = ctx.clock.now();
    // Conditional on the deadline and the provider: a worker that took the lease meanwhile wins.
    const failed = await paymentTables(trx)
      .updateTable('payments')
      .set({ status: 'failed', decline_code: 'provider_unreachable', updated_at: now })
      .where('id', '=', paymentId)
      .where('status', '=', 'processing')
      .where('provider', '=', payment.provider)
      .where((eb) => eb.or([eb('charge_deadline_at', 'is', null), eb('charge_deadline_at', '<=', now)]))
      .executeTakeFirst();
    if (failed.numUpdatedRows === 1n) {
      await paymentEvent(ctx, trx, 'payment.failed', paymentId);
      return;
    }
    const current = await getPayment(ctx, paymentId, trx);
    if (current.status === 'processing' && current.charge_deadline_at)
      await ctx.jobs.schedule(trx, reconcileJob(current, current.charge_deadline_at));
  });
}
