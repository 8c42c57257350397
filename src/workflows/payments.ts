import type {
  ChargeLease,
  Payment,
  PaymentInput,
  PaymentService,
  Refund,
  RefundInput,
  RefundOutcome,
} from '../modules/payments/service.js';
import type { ChargeResult } from '../providers/port.js';
import type { Commit } from './commit.js';
import { type Step, Workflow } from './runner.js';

/**
 * The money workflows of the payments module. Provider steps run outside any transaction; the
 * last step writes through `commit`. A step that may have moved money at a provider has no blind
 * compensation: what the provider did is converged on by the jobs the first step scheduled in its
 * own transaction (reconciliation, refund retry) and by webhooks (ADR 0009, ADR 0010).
 */
export interface PaymentsWorkflowContext<T> {
  payments: PaymentService;
  /** `<api key id>:<Idempotency-Key>` of the request, or null. */
  requestKey: string | null;
  commit: Commit<T>;
}

/** `settled: false`: the outcome is unknown yet (202); nothing was committed for the client. */
export interface Settled<T> {
  value: T;
  settled: boolean;
}

// ---- payment: start → charge → finish --------------------------------------------------------

type PaymentCtx = PaymentsWorkflowContext<Payment>;

export const startPaymentStep: Step<PaymentInput, { payment: Payment; lease: ChargeLease }, PaymentCtx> = {
  name: 'start-payment',
  invoke: (input, ctx) => ctx.payments.start(input, ctx.requestKey),
  // Before any provider call, giving the lease back lets a retry charge anywhere at once; after
  // one, the reconciliation job scheduled with the payment settles it.
  compensate: async ({ payment, lease }, ctx) => {
    if (lease.callsMade === 0) await ctx.payments.releaseLease(payment.id, lease);
  },
};

export const chargePaymentStep: Step<
  { payment: Payment; lease: ChargeLease },
  { payment: Payment; result: ChargeResult | null },
  PaymentCtx
> = {
  name: 'charge-payment',
  invoke: ({ payment, lease }, ctx) => ctx.payments.charge(payment, lease),
};

export const finishPaymentStep: Step<
  { payment: Payment; result: ChargeResult | null },
  Settled<Payment>,
  PaymentCtx
> = {
  name: 'finish-payment',
  invoke: async ({ payment, result }, ctx) => {
    if (result)
      return { value: await ctx.commit((trx) => ctx.payments.finish(trx, payment, result)), settled: true };
    if (payment.status === 'processing') return { value: payment, settled: false };
    // Settled by someone else (a webhook, the job, a twin request): answer what it is.
    return { value: await ctx.commit(async () => payment), settled: true };
  },
};

export const paymentWorkflow = Workflow.of<PaymentInput, PaymentCtx>('payment')
  .step(startPaymentStep)
  .step(chargePaymentStep)
  .step(finishPaymentStep);

// ---- refund: start → call provider → finish --------------------------------------------------

type RefundCtx = PaymentsWorkflowContext<Refund>;

export const refundWorkflow = Workflow.of<RefundInput, RefundCtx>('refund')
  .step<{ refund: Refund; payment: Payment }>({
    name: 'start-refund',
    invoke: (input, ctx) => ctx.payments.startRefund(input, ctx.requestKey),
  })
  .step<{ refund: Refund; outcome: RefundOutcome | null }>({
    name: 'refund-at-provider',
    invoke: async ({ refund, payment }, ctx) => ({
      refund,
      outcome: await ctx.payments.callRefund(refund, payment),
    }),
  })
  .step<Settled<Refund>>({
    name: 'finish-refund',
    invoke: async ({ refund, outcome }, ctx) => {
      if (outcome)
        return {
          value: await ctx.commit((trx) => ctx.payments.finishRefund(trx, refund.id, outcome)),
          settled: true,
        };
      const current = await ctx.payments.getRefund(refund.id);
      if (current.status === 'pending') return { value: current, settled: false };
      return { value: await ctx.commit(async () => current), settled: true };
    },
  });

// ---- capture and void of an authorized payment ------------------------------------------------

export const captureWorkflow = Workflow.of<{ payment: string }, PaymentCtx>('capture')
  .step<{ payment: string; result: ChargeResult }>({
    name: 'capture-at-provider',
    invoke: async (input, ctx) => ({
      payment: input.payment,
      result: await ctx.payments.capture(input.payment),
    }),
  })
  .step<Payment>({
    name: 'record-capture',
    invoke: ({ payment, result }, ctx) =>
      ctx.commit((trx) => ctx.payments.finishCapture(trx, payment, result)),
  });

export const voidWorkflow = Workflow.of<{ payment: string }, PaymentCtx>('void')
  .step<{ payment: string }>({
    name: 'void-at-provider',
    invoke: async (input, ctx) => {
      await ctx.payments.voidPayment(input.payment);
      return input;
    },
  })
  .step<Payment>({
    name: 'record-void',
    invoke: ({ payment }, ctx) => ctx.commit((trx) => ctx.payments.finishVoid(trx, payment)),
  });
