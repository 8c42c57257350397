import type { Canceled, CancelInput } from '../modules/billing/cancel.js';
import type { BillingService, Subscription } from '../modules/billing/service.js';
import type { Commit } from './commit.js';
import { Workflow } from './runner.js';

/**
 * An immediate cancel with `refund: "prorated"` (`POST /v1/subscriptions/{id}/cancel`): cancel in a
 * transaction of its own (subscription ended, event, open invoices voided, and the refund's job
 * scheduled with them) → refund the unused part at the provider (no transaction open) → answer the
 * subscription through the request's unit of work. The refund step never fails the request: the
 * cancel has happened, and the job scheduled with it converges on the refund (the payments
 * module's reconciliation too); both are keyed by the subscription, so there is one refund.
 */
export interface CancelContext {
  billing: BillingService;
  commit: Commit<Subscription>;
}

export const cancelWorkflow = Workflow.of<{ id: string; input: CancelInput }, CancelContext>(
  'cancel-subscription',
)
  .step<Canceled>({
    name: 'cancel',
    invoke: ({ id, input }, ctx) => ctx.billing.cancelNow(id, input),
  })
  .step<Canceled>({
    name: 'refund',
    invoke: async (canceled, ctx) => {
      if (canceled.refund) {
        try {
          await ctx.billing.refundCancel(canceled.refund);
        } catch {
          // Left to the refund job scheduled with the cancel (retried, visible in /metrics if it gives up).
        }
      }
      return canceled;
    },
  })
  .step<Subscription>({
    name: 'answer',
    invoke: (canceled, ctx) =>
      ctx.commit((trx) => ctx.billing.getSubscription(canceled.subscription.id, trx)),
  });
