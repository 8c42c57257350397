import type { OpenedResume } from '../modules/billing/pause-resume.js';
import type { BillingService, Subscription } from '../modules/billing/service.js';
import type { Payment } from '../modules/payments/service.js';
import type { ChargeResult } from '../providers/port.js';
import type { Commit } from './commit.js';
import type { Settled } from './payments.js';
import { Workflow } from './runner.js';

/**
 * Resume (`POST /v1/subscriptions/{id}/resume`): open the resume (own transaction: its invoice
 * finalised with the account credit applied first, or a future resume scheduled) → charge what is
 * due at the provider (no transaction open; the payment is keyed by the invoice) → settle in the
 * request's unit of work: paid → active, declined → past_due (402). A retry after a crash finds the
 * open resume invoice and charges it by the same key: one charge.
 */
export interface ResumeOutcome {
  subscription: Subscription;
  invoice: string | null;
  payment: string | null;
  declineCode: string | null;
}

export interface ResumeContext {
  billing: BillingService;
  commit: Commit<ResumeOutcome>;
}

interface Charged {
  opened: OpenedResume;
  payment: Payment | null;
  result: ChargeResult | null;
  refused: string | null;
}

export const resumeWorkflow = Workflow.of<{ id: string; at: string | null | undefined }, ResumeContext>(
  'resume',
)
  .step<OpenedResume>({
    name: 'open-resume',
    invoke: ({ id, at }, ctx) => ctx.billing.openResume(id, at),
  })
  .step<Charged>({
    name: 'charge-resume',
    invoke: async (opened, ctx) => ({ opened, ...(await ctx.billing.chargeResume(opened)) }),
  })
  .step<Settled<ResumeOutcome>>({
    name: 'settle-resume',
    invoke: async ({ opened, payment, result, refused }, ctx) => {
      if (payment && !result && payment.status === 'processing') {
        // The provider has not answered: nothing is committed for the client (202).
        return {
          value: {
            subscription: await ctx.billing.getSubscription(opened.subscription),
            invoice: opened.invoice,
            payment: payment.id,
            declineCode: null,
          },
          settled: false,
        };
      }
      const value = await ctx.commit(async (trx) => {
        const declineCode = await ctx.billing.finishResume(trx, opened, { payment, result, refused });
        return {
          subscription: await ctx.billing.getSubscription(opened.subscription, trx),
          invoice: opened.invoice,
          payment: payment?.id ?? null,
          declineCode,
        };
      });
      return { value, settled: true };
    },
  });
