import type { ChargeCause, ChargeClaim, InvoicePaymentOutcome } from '../modules/billing/invoice-payments.js';
import type { BillingService } from '../modules/billing/service.js';
import type { ChargeLease, Payment, PaymentService } from '../modules/payments/service.js';
import type { ChargeResult } from '../providers/port.js';
import type { Commit } from './commit.js';
import type { Settled } from './payments.js';
import { Workflow } from './runner.js';

/**
 * Paying an open invoice: `POST /v1/invoices/{id}/pay`, a renewal's first charge, each dunning
 * retry, a plan change's or a resume's charge. Claim the attempt (own transaction: its payment key
 * derives from the invoice and the attempt number) → start the payment → charge it at the provider
 * (no transaction open) → in one transaction record the payment and settle the invoice (paid, or
 * dunning). A crash anywhere is resumed by running it again: the claim finds the attempt's payment
 * (settling one that was captured, waiting for one in flight), the payments module finds the payment
 * by its key and never charges it twice.
 */
export interface PayInvoiceInput {
  invoice: string;
  paymentMethod?: string | undefined;
  /** `scheduled`: run by the charge job (first charge or dunning retry), not by a request. */
  cause: ChargeCause & { scheduled?: boolean };
}

export interface PayInvoiceContext {
  billing: BillingService;
  payments: PaymentService;
  commit: Commit<InvoicePaymentOutcome>;
}

interface Started {
  claim: ChargeClaim;
  payment: Payment | null;
  lease: ChargeLease | null;
  cause: ChargeCause;
}
interface Charged {
  invoiceId: string;
  payment: Payment | null;
  result: ChargeResult | null;
  cause: ChargeCause;
}

export const payInvoiceWorkflow = Workflow.of<PayInvoiceInput, PayInvoiceContext>('pay-invoice')
  .step<Started>({
    name: 'claim-and-start',
    invoke: async (input, ctx) => {
      const claim = await ctx.billing.claimCharge(input.invoice, input.paymentMethod, input.cause);
      if (claim.kind === 'in_flight' && claim.payment.status === 'processing') {
        // Its worker died (a crash, a kill mid-charge): charge it again under the payments module's
        // lease; the provider knows the payment id and answers with the charge it made, if any.
        const { payment, lease } = await ctx.payments.resume(claim.payment.id);
        return { claim, payment, lease, cause: input.cause };
      }
      if (claim.kind !== 'charge') return { claim, payment: claim.payment, lease: null, cause: input.cause };
      const { payment, lease } = await ctx.payments.start(claim.input, claim.key);
      return { claim, payment, lease, cause: input.cause };
    },
    compensate: async ({ payment, lease }, ctx) => {
      if (payment && lease && lease.callsMade === 0) await ctx.payments.releaseLease(payment.id, lease);
    },
  })
  .step<Charged>({
    name: 'charge-payment',
    invoke: async ({ claim, payment, lease, cause }, ctx) => {
      if (!payment || !lease || claim.kind === 'settle') {
        return { invoiceId: claim.invoiceId, payment, result: null, cause };
      }
      const charged = await ctx.payments.charge(payment, lease);
      return { invoiceId: claim.invoiceId, ...charged, cause };
    },
  })
  .step<Settled<InvoicePaymentOutcome>>({
    name: 'settle-invoice',
    invoke: async ({ invoiceId, payment, result, cause }, ctx) => {
      if (payment && !result && (payment.status === 'processing' || payment.status === 'authorized')) {
        // The provider has not answered yet: the payments reconciliation settles the payment, and
        // the next run of this workflow (a retry of the request, the charge job) settles the invoice.
        return { value: await ctx.billing.invoicePaymentState(invoiceId, payment), settled: false };
      }
      const value = await ctx.commit(async (trx) => {
        let settled: Payment | null = null;
        if (payment) {
          settled = result
            ? await ctx.payments.finish(trx, payment, result)
            : await ctx.payments.get(payment.id, trx);
        }
        return ctx.billing.settleInvoice(trx, invoiceId, settled, cause);
      });
      return { value, settled: true };
    },
  });
