import type { FastifyReply, FastifyRequest } from 'fastify';
import type { Executor } from '../../db/schema.js';
import { PROBLEM_CONTENT_TYPE, problem } from '../../http/problem.js';
import { type Outcome, requestKeyOf, type UnitOfWork } from '../../http/unit-of-work.js';
import { cancelWorkflow } from '../../workflows/cancel.js';
import { type Commit, commitThroughUnitOfWork } from '../../workflows/commit.js';
import { payInvoiceWorkflow } from '../../workflows/pay-invoice.js';
import { type ResumeOutcome, resumeWorkflow } from '../../workflows/resume.js';
import type { PaymentService } from '../payments/service.js';
import type { CancelInput } from './cancel.js';
import type { ChangeInput } from './changes.js';
import type { InvoicePaymentOutcome } from './invoice-payments.js';
import type { BillingService, Subscription } from './service.js';

/**
 * How a request answers a subscription after acting on it: the API's subscription DTO, or the
 * customer portal's view. Called inside the request's unit of work (`executor` is its
 * transaction), or after it for a 202 whose outcome is not known yet (no executor).
 */
export type PresentSubscription = (sub: Subscription, executor?: Executor) => unknown;

/**
 * What a subscription's lifecycle requests do, shared by `POST /v1/subscriptions/{id}/…` and the
 * customer portal's routes so both behave alike (same workflows, same 402 and 202 answers): only
 * how the subscription is presented differs. Each answers the request itself (`reply`).
 */
export class SubscriptionActions {
  readonly #billing: BillingService;
  readonly #payments: PaymentService;
  readonly #uow: UnitOfWork;

  constructor(deps: { billing: BillingService; payments: PaymentService; uow: UnitOfWork }) {
    this.#billing = deps.billing;
    this.#payments = deps.payments;
    this.#uow = deps.uow;
  }

  #respond(status: number, present: PresentSubscription) {
    return async (sub: Subscription, trx: Executor): Promise<Outcome> => ({
      status,
      body: await present(sub, trx),
      resourceId: sub.id,
    });
  }

  /**
   * A plan change: it commits on its own (a retry with the same Idempotency-Key finds it by its
   * request key); its invoice's amount due is then charged with no transaction open and settled in
   * this request's unit of work, with the answer stored for replay. 200, 402 when the charge was
   * declined (the change stays), 202 while the provider has not answered.
   */
  async change(
    req: FastifyRequest,
    reply: FastifyReply,
    id: string,
    input: ChangeInput,
    present: PresentSubscription,
  ): Promise<void> {
    const billing = this.#billing;
    const opened = await billing.openChange(id, input, requestKeyOf(req));
    const commit: Commit<InvoicePaymentOutcome | null> = async (work) => {
      let value: InvoicePaymentOutcome | null = null;
      await this.#uow.run(req, reply, async (trx) => {
        value = await work(trx);
        const sub = await billing.getSubscription(opened.subscriptionId, trx);
        if (value && value.declineCode !== null) return changeDeclined(sub, value);
        return { status: 200, body: await present(sub, trx), resourceId: sub.id };
      });
      return value;
    };
    if (!opened.charge || !opened.invoiceId) {
      await commit(async () => null);
      return;
    }
    const out = await payInvoiceWorkflow.run(
      { invoice: opened.invoiceId, cause: { retry: null } },
      { billing, payments: this.#payments, commit: commit as Commit<InvoicePaymentOutcome> },
    );
    if (!out.settled) {
      const sub = await billing.getSubscription(opened.subscriptionId);
      return this.#uow.unsettled(req, reply, 202, await present(sub));
    }
  }

  /** Cancel now or at the term end; an immediate one with `refund: "prorated"` refunds through the cancel workflow. */
  async cancel(
    req: FastifyRequest,
    reply: FastifyReply,
    id: string,
    input: CancelInput,
    present: PresentSubscription,
  ): Promise<void> {
    const billing = this.#billing;
    const respond = this.#respond(200, present);
    if (input.refund === 'prorated') {
      await cancelWorkflow.run(
        { id, input },
        { billing, commit: commitThroughUnitOfWork(this.#uow, req, reply, respond) },
      );
      return;
    }
    await this.#uow.run(req, reply, async (trx) => {
      const { subscription } = await billing.cancel(trx, id, input);
      return respond(await billing.getSubscription(subscription.id, trx), trx);
    });
  }

  /** Undoes a scheduled cancel (409 once it took effect). */
  reactivate(req: FastifyRequest, reply: FastifyReply, id: string, present: PresentSubscription) {
    const respond = this.#respond(200, present);
    return this.#uow.run(req, reply, async (trx) => {
      const sub = await this.#billing.reactivate(trx, id);
      return respond(await this.#billing.getSubscription(sub.id, trx), trx);
    });
  }

  /** 201 with the member added (409 naming the seats when full). */
  addMember(
    req: FastifyRequest,
    reply: FastifyReply,
    id: string,
    externalId: string,
    present: PresentSubscription,
  ) {
    const respond = this.#respond(201, present);
    return this.#uow.run(req, reply, async (trx) => {
      await this.#billing.addMember(trx, id, externalId);
      return respond(await this.#billing.getSubscription(id, trx), trx);
    });
  }

  removeMember(
    req: FastifyRequest,
    reply: FastifyReply,
    id: string,
    externalId: string,
    present: PresentSubscription,
  ) {
    const respond = this.#respond(200, present);
    return this.#uow.run(req, reply, async (trx) => {
      await this.#billing.removeMember(trx, id, externalId);
      return respond(await this.#billing.getSubscription(id, trx), trx);
    });
  }

  pause(
    req: FastifyRequest,
    reply: FastifyReply,
    id: string,
    at: string | null | undefined,
    present: PresentSubscription,
  ) {
    const respond = this.#respond(200, present);
    return this.#uow.run(req, reply, async (trx) => {
      const sub = await this.#billing.pause(trx, id, at);
      return respond(await this.#billing.getSubscription(sub.id, trx), trx);
    });
  }

  /** Resume: its invoice charged by the pay-invoice workflow; 402 on a decline, 202 while unknown. */
  async resume(
    req: FastifyRequest,
    reply: FastifyReply,
    id: string,
    at: string | null | undefined,
    present: PresentSubscription,
  ): Promise<void> {
    const respond = this.#respond(200, present);
    const out = await resumeWorkflow.run(
      { id, at },
      {
        billing: this.#billing,
        payments: this.#payments,
        commitSubscription: commitThroughUnitOfWork(this.#uow, req, reply, respond),
        commitPayment: commitThroughUnitOfWork(this.#uow, req, reply, (o: ResumeOutcome, trx) =>
          o.declineCode !== null ? resumeDeclined(o) : respond(o.subscription, trx),
        ),
      },
    );
    if (!out.settled) return this.#uow.unsettled(req, reply, 202, await present(out.value));
  }
}

/** 402: the plan was changed but its invoice's charge declined (the subscription is past_due). */
function changeDeclined(sub: Subscription, paid: InvoicePaymentOutcome): Outcome {
  return {
    status: 402,
    body: problem(
      'payment_declined',
      `The plan was changed, but its invoice's payment was declined (${paid.declineCode}); the subscription is past_due until it is paid.`,
      [],
      {
        declineCode: paid.declineCode,
        subscription: sub.id,
        invoice: paid.invoice.id,
        payment: paid.payment,
      },
    ),
    resourceId: sub.id,
    contentType: PROBLEM_CONTENT_TYPE,
  };
}

function resumeDeclined(out: ResumeOutcome): Outcome {
  return {
    status: 402,
    body: problem('payment_declined', `The resume charge was declined (${out.declineCode}).`, [], {
      declineCode: out.declineCode,
      subscription: out.subscription.id,
      invoice: out.invoice.id,
      payment: out.payment,
    }),
    resourceId: out.subscription.id,
    contentType: PROBLEM_CONTENT_TYPE,
  };
}
