import type { InvoicePaymentOutcome } from '../modules/billing/invoice-payments.js';
import type { BillingService, Subscription } from '../modules/billing/service.js';
import type { PaymentService } from '../modules/payments/service.js';
import type { Commit } from './commit.js';
import { payInvoiceWorkflow } from './pay-invoice.js';
import type { Settled } from './payments.js';
import { Workflow } from './runner.js';

/**
 * Resume (`POST /v1/subscriptions/{id}/resume`): open the resume (own transaction: its invoice
 * finalised with the account credit applied first, active at once when nothing is due; or a future
 * resume scheduled) → what is due is charged by the pay-invoice workflow (no transaction open while
 * the provider answers; settled in the request's unit of work: paid → active, declined → past_due
 * and 402). A retry after a crash finds the open resume invoice of the paused subscription and
 * charges it again under the invoice's attempt key: one charge.
 */

/** The charge's outcome, with the subscription as the API shows it (members included). */
export type ResumeOutcome = Omit<InvoicePaymentOutcome, 'subscription'> & { subscription: Subscription };

export interface ResumeContext {
  billing: BillingService;
  payments: PaymentService;
  /** Commits when nothing is charged: answers the subscription. */
  commitSubscription: Commit<Subscription>;
  /** Commits the charge's settlement. */
  commitPayment: Commit<ResumeOutcome>;
}

export const resumeWorkflow = Workflow.of<{ id: string; at: string | null | undefined }, ResumeContext>(
  'resume',
)
  .step<{ subscription: string; invoice: string | null }>({
    name: 'open-resume',
    invoke: ({ id, at }, ctx) => ctx.billing.openResume(id, at),
  })
  .step<Settled<Subscription>>({
    name: 'charge-and-settle',
    invoke: async ({ subscription, invoice }, ctx) => {
      if (!invoice) {
        const value = await ctx.commitSubscription((trx) => ctx.billing.getSubscription(subscription, trx));
        return { value, settled: true };
      }
      const out = await payInvoiceWorkflow.run(
        { invoice, cause: { retry: null } },
        {
          billing: ctx.billing,
          payments: ctx.payments,
          commit: (work) =>
            ctx.commitPayment(async (trx) => {
              const settled = await work(trx);
              return { ...settled, subscription: await ctx.billing.getSubscription(subscription, trx) };
            }),
        },
      );
      return { value: await ctx.billing.getSubscription(out.value.subscription.id), settled: out.settled };
    },
  });
