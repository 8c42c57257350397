import { assert } from '../kernel/assert.js';
import { invoicePaymentKey } from '../modules/billing/domain/entries.js';
import type {
  BillingService,
  CheckoutInput,
  CheckoutOutcome,
  OpenedCheckout,
} from '../modules/billing/service.js';
import type { ChargeLease, Payment, PaymentService } from '../modules/payments/service.js';
import type { ChargeResult } from '../providers/port.js';
import type { Commit } from './commit.js';
import type { Settled } from './payments.js';
import { Workflow } from './runner.js';

/**
 * Checkout (`POST /v1/subscriptions`): open the subscription and its finalised first invoice (own
 * transaction) → start the invoice's payment → charge it at the provider (no transaction open) →
 * in one unit of work record the payment and settle the checkout (invoice paid, subscription
 * active, ledger, events; or declined, left incomplete). A crash anywhere is resumed by the
 * client's retry with the same Idempotency-Key: the subscription is found by its request key, the
 * payment by a key derived from the invoice, so no second subscription or charge is made; a
 * charge the provider never answered is settled by the payments reconciliation job.
 */
export interface CheckoutContext {
  billing: BillingService;
  payments: PaymentService;
  /** `<api key id>:<Idempotency-Key>` of the request, or null. */
  requestKey: string | null;
  commit: Commit<CheckoutOutcome>;
}

interface Started extends OpenedCheckout {
  payment: Payment | null;
  lease: ChargeLease | null;
}
interface Charged extends OpenedCheckout {
  payment: Payment | null;
  result: ChargeResult | null;
}

export { invoicePaymentKey };

export const checkoutWorkflow = Workflow.of<CheckoutInput, CheckoutContext>('checkout')
  .step<OpenedCheckout>({
    name: 'open-checkout',
    invoke: (input, ctx) => ctx.billing.openCheckout(input, ctx.requestKey),
    // No compensation: an unpaid incomplete subscription is the documented outcome of a failed
    // first charge, and it expires after 23 hours.
  })
  .step<Started>({
    name: 'start-payment',
    invoke: async (opened, ctx) => {
      if (!opened.charge) return { ...opened, payment: null, lease: null };
      const { payment, lease } = await ctx.payments.start(opened.charge, invoicePaymentKey(opened.invoiceId));
      // Priced by the payments module's rule for the market, it must come to the invoice's amount due.
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
      const charged = await ctx.payments.charge(payment, lease);
      return { ...opened, ...charged };
    },
  })
  .step<Settled<CheckoutOutcome>>({
    name: 'settle-checkout',
    invoke: async ({ subscriptionId, invoiceId, payment, result }, ctx) => {
      if (payment && !result && payment.status === 'processing') {
        // The provider has not answered yet: nothing is committed for the client (202).
        return { value: await ctx.billing.checkoutState(subscriptionId, invoiceId, payment), settled: false };
      }
      const value = await ctx.commit(async (trx) => {
        let settled: Payment | null = null;
        if (payment) {
          settled = result
            ? await ctx.payments.finish(trx, payment, result)
            : await ctx.payments.get(payment.id, trx);
        }
        return ctx.billing.completeCheckout(trx, subscriptionId, invoiceId, settled);
      });
      return { value, settled: true };
    },
  });
