import { assert } from '../kernel/assert.js';
import type { ChangeInput, OpenedChange } from '../modules/billing/changes.js';
import { invoicePaymentKey } from '../modules/billing/domain/entries.js';
import type { BillingService, Invoice, Subscription } from '../modules/billing/service.js';
import type { ChargeLease, Payment, PaymentService } from '../modules/payments/service.js';
import type { ChargeResult } from '../providers/port.js';
import type { Commit } from './commit.js';
import type { Settled } from './payments.js';
import { Workflow } from './runner.js';

/**
 * A plan change (`POST /v1/subscriptions/{id}/change`): apply it (own transaction: subscription,
 * finalised invoice, event, cycle job, the request key) → start the invoice's payment → charge it
 * at the provider (no transaction open) → in the request's unit of work record the payment and
 * settle the invoice (paid, or declined: the subscription `past_due` on it). A retry with the same
 * Idempotency-Key after a crash finds the change by its request key and the payment by the
 * invoice's key: one change, one charge.
 */
export interface ChangePlanContext {
  billing: BillingService;
  payments: PaymentService;
  requestKey: string | null;
  commit: Commit<ChangeOutcome>;
}

export interface ChangePlanInput extends ChangeInput {
  subscription: string;
}

export interface ChangeOutcome {
  subscription: Subscription;
  invoice: Invoice | null;
  declineCode: string | null;
  payment: string | null;
}

interface Started extends OpenedChange {
  payment: Payment | null;
  lease: ChargeLease | null;
}
interface Charged extends OpenedChange {
  payment: Payment | null;
  result: ChargeResult | null;
}

export const changePlanWorkflow = Workflow.of<ChangePlanInput, ChangePlanContext>('change-plan')
  .step<OpenedChange>({
    name: 'apply-change',
    invoke: ({ subscription, ...input }, ctx) => ctx.billing.openChange(subscription, input, ctx.requestKey),
    // No compensation: a declined charge leaves the change applied and the subscription past_due
    // (Stripe's default); dunning collects the invoice.
  })
  .step<Started>({
    name: 'start-payment',
    invoke: async (opened, ctx) => {
      if (!opened.charge || !opened.invoiceId) return { ...opened, payment: null, lease: null };
      const { payment, lease } = await ctx.payments.start(opened.charge, invoicePaymentKey(opened.invoiceId));
      assert(
        payment.amount_minor === opened.amountDueMinor,
        `payment ${payment.id} of ${payment.amount_minor} does not match invoice ${opened.invoiceId}`,
      );
      return { ...opened, payment, lease };
    },
    compensate: async ({ payment, lease }, ctx) => {
      if (payment && lease && lease.callsMade === 0) await ctx.payments.releaseLease(payment.id, lease);
    },
  })
  .step<Charged>({
    name: 'charge-payment',
    invoke: async ({ payment, lease, ...opened }, ctx) => {
      if (!payment || !lease) return { ...opened, payment, result: null };
      return { ...opened, ...(await ctx.payments.charge(payment, lease)) };
    },
  })
  .step<Settled<ChangeOutcome>>({
    name: 'settle-change',
    invoke: async ({ subscriptionId, invoiceId, payment, result }, ctx) => {
      const read = async (declineCode: string | null, trx?: Parameters<BillingService['getInvoice']>[1]) => ({
        subscription: await ctx.billing.getSubscription(subscriptionId, trx),
        invoice: invoiceId ? await ctx.billing.getInvoice(invoiceId, trx) : null,
        declineCode,
        payment: payment?.id ?? null,
      });
      if (payment && !result && payment.status === 'processing') {
        // The provider has not answered yet: nothing is committed for the client (202).
        return { value: await read(null), settled: false };
      }
      const value = await ctx.commit(async (trx) => {
        let settled: Payment | null = null;
        if (payment) {
          settled = result
            ? await ctx.payments.finish(trx, payment, result)
            : await ctx.payments.get(payment.id, trx);
        }
        const { declineCode } = invoiceId
          ? await ctx.billing.settleChange(trx, subscriptionId, invoiceId, settled)
          : { declineCode: null };
        return read(declineCode, trx);
      });
      return { value, settled: true };
    },
  });
