import type { FastifyInstance } from 'fastify';
import type { ZodTypeProvider } from 'fastify-type-provider-zod';
import { z } from 'zod';
import { decodeCursor, listOf, pageQuery, toPage } from '../../http/pagination.js';
import { PROBLEM_CONTENT_TYPE, problem } from '../../http/problem.js';
import { problemDto, problemResponses, timestamp } from '../../http/schemas.js';
import { type Outcome, requestKeyOf, type UnitOfWork } from '../../http/unit-of-work.js';
import { isoSeconds } from '../../kernel/clock.js';
import { checkoutWorkflow } from '../../workflows/checkout.js';
import { commitThroughUnitOfWork } from '../../workflows/commit.js';
import { payInvoiceWorkflow } from '../../workflows/pay-invoice.js';
import type { PaymentService } from '../payments/service.js';
import { changeRoutes } from './change-routes.js';
import type { InvoicePaymentOutcome } from './invoice-payments.js';
import { lifecycleRoutes } from './lifecycle-routes.js';
import { invoicePdf, sendInvoicePdf } from './pdf.js';
import type { BillingService, CheckoutOutcome, Invoice, Subscription } from './service.js';

const STATUSES = ['trialing', 'active', 'past_due', 'paused', 'canceled', 'incomplete', 'expired'] as const;

export const subscriptionDto = z
  .object({
    id: z.string(),
    customer: z.string(),
    status: z.enum(STATUSES),
    plan: z.string(),
    currency: z.string(),
    price: z.number().int().describe('The recurring price this subscriber pays (minor units)'),
    billingPeriod: z.enum(['month', 'year', 'week']),
    billingAnchor: timestamp,
    billingCycleDay: z.number().int().nullable(),
    currentPeriodStart: timestamp.nullable(),
    currentPeriodEnd: timestamp.nullable(),
    trialEnd: timestamp.nullable(),
    cancelAt: timestamp.nullable(),
    endedAt: timestamp.nullable(),
    members: z.array(z.string()).describe('External ids of the members (family and duo plans)'),
    createdAt: timestamp,
    pendingChange: z
      .object({ plan: z.string(), effectiveAt: timestamp })
      .nullable()
      .describe('A plan change waiting for the term end (applied and billed at effectiveAt)'),
  })
  .meta({ id: 'Subscription' });
const lineDto = z.object({
  kind: z.enum([
    'recurring',
    'fixed',
    'proration_credit',
    'proration_charge',
    'credit_applied',
    'discount',
    'tax',
  ]),
  description: z.string(),
  periodStart: timestamp,
  periodEnd: timestamp,
  amount: z.number().int(),
});
export const invoiceDto = z
  .object({
    id: z.string(),
    number: z
      .string()
      .nullable()
      .describe('Gapless per market and year, e.g. SE-2026-000042; TEST-… on a test clock'),
    customer: z.string(),
    subscription: z.string(),
    status: z.enum(['draft', 'open', 'paid', 'void', 'uncollectible']),
    currency: z.string(),
    taxRateBps: z.number().int(),
    taxInclusive: z.boolean(),
    subtotal: z.number().int(),
    tax: z.number().int(),
    total: z.number().int(),
    amountDue: z.number().int(),
    periodStart: timestamp,
    periodEnd: timestamp,
    payment: z.string().nullable(),
    billingReason: z
      .enum([
        'subscription_create',
        'subscription_cycle',
        'subscription_update',
        'subscription_pause',
        'subscription_resume',
      ])
      .describe('Why it was raised: sign-up, renewal, plan change, pause credit, resume'),
    createdAt: timestamp,
    lines: z.array(lineDto),
    creditNotes: z
      .array(
        z.object({
          id: z.string(),
          amount: z.number().int(),
          tax: z.number().int().describe('The tax part returned, in proportion of the invoice total'),
          reason: z.string(),
          createdAt: timestamp,
        }),
      )
      .describe("Refunds of the invoice's payment, oldest first"),
  })
  .meta({ id: 'Invoice' });

const iso = (d: Date | null): string | null => (d ? isoSeconds(d) : null);

export const toSubscriptionDto = (s: Subscription): z.infer<typeof subscriptionDto> => ({
  id: s.id,
  customer: s.customer_id,
  status: s.status,
  plan: s.plan_id,
  currency: s.currency,
  price: s.price_minor,
  billingPeriod: s.billing_period,
  billingAnchor: isoSeconds(s.billing_anchor),
  billingCycleDay: s.billing_cycle_day,
  currentPeriodStart: iso(s.current_period_start),
  currentPeriodEnd: iso(s.current_period_end),
  trialEnd: iso(s.trial_end),
  cancelAt: iso(s.cancel_at),
  endedAt: iso(s.ended_at),
  members: s.members,
  createdAt: isoSeconds(s.created_at),
  pendingChange:
    s.pending_plan_id && s.pending_change_at
      ? { plan: s.pending_plan_id, effectiveAt: isoSeconds(s.pending_change_at) }
      : null,
});

export const toInvoiceDto = (i: Invoice): z.infer<typeof invoiceDto> => ({
  id: i.id,
  number: i.number,
  customer: i.customer_id,
  subscription: i.subscription_id,
  status: i.status,
  currency: i.currency,
  taxRateBps: i.tax_rate_bps,
  taxInclusive: i.tax_inclusive,
  subtotal: i.subtotal_minor,
  tax: i.tax_minor,
  total: i.total_minor,
  amountDue: i.amount_due_minor,
  periodStart: isoSeconds(i.period_start),
  periodEnd: isoSeconds(i.period_end),
  payment: i.payment_id,
  billingReason: i.reason,
  createdAt: isoSeconds(i.created_at),
  lines: i.lines.map((l) => ({
    kind: l.kind,
    description: l.description,
    periodStart: isoSeconds(l.period_start),
    periodEnd: isoSeconds(l.period_end),
    amount: l.amount_minor,
  })),
  creditNotes: (i.creditNotes ?? []).map((c) => ({
    id: c.id,
    amount: c.amount_minor,
    tax: c.tax_minor,
    reason: c.reason,
    createdAt: isoSeconds(c.created_at),
  })),
});

function checkoutOutcome(out: CheckoutOutcome): Outcome {
  if (out.declineCode !== null) {
    return {
      status: 402,
      body: problem('payment_declined', `The first payment was declined (${out.declineCode}).`, [], {
        declineCode: out.declineCode,
        subscription: out.subscription.id,
        invoice: out.invoice.id,
        payment: out.payment,
      }),
      resourceId: out.subscription.id,
      contentType: PROBLEM_CONTENT_TYPE,
    };
  }
  return { status: 201, body: toSubscriptionDto(out.subscription), resourceId: out.subscription.id };
}

function invoicePaymentOutcome(invoice: Invoice) {
  return (out: InvoicePaymentOutcome): Outcome => {
    if (out.declineCode !== null) {
      return {
        status: 402,
        body: problem('payment_declined', `The payment was declined (${out.declineCode}).`, [], {
          declineCode: out.declineCode,
          invoice: out.invoice.id,
          subscription: out.subscription.id,
          payment: out.payment,
        }),
        resourceId: out.invoice.id,
        contentType: PROBLEM_CONTENT_TYPE,
      };
    }
    return {
      status: 200,
      body: toInvoiceDto({ ...out.invoice, lines: invoice.lines }),
      resourceId: out.invoice.id,
    };
  };
}

export function billingRoutes(
  app: FastifyInstance,
  deps: { billing: BillingService; payments: PaymentService; uow: UnitOfWork },
) {
  const r = app.withTypeProvider<ZodTypeProvider>();
  const { billing, payments, uow } = deps;

  r.post(
    '/v1/subscriptions',
    {
      schema: {
        tags: ['Subscriptions'],
        summary: 'Subscribe a customer to a plan (checkout)',
        description:
          "Prices the plan for the customer's market (the price version in force), opens and finalises the " +
          'first invoice and charges it with the given or default payment method. 201 `active` when paid; ' +
          '201 `trialing` on a 0 invoice when the plan has a trial the customer never had for this product (one ' +
          'trial per customer and product); 402 payment_declined with `declineCode` and `subscription` (left ' +
          '`incomplete`, nothing entitled); 202 when the provider did not answer in time (retry with the same ' +
          'Idempotency-Key and body). `offer` and `coupon` are not supported yet and are refused.',
        body: z.object({
          customer: z.string().min(1).max(255).describe('Customer id or externalId'),
          plan: z.string().min(1).max(255).describe('Plan id or code'),
          paymentMethod: z
            .string()
            .min(1)
            .max(64)
            .optional()
            .describe('Default: the customer default method'),
        }),
        response: {
          201: subscriptionDto,
          202: subscriptionDto,
          ...problemResponses,
          402: problemDto.describe('payment_declined, with declineCode and subscription'),
        },
      },
      config: { scope: 'subscriptions:write', action: 'subscriptions.create', resourceType: 'subscription' },
    },
    async (req, reply) => {
      const out = await checkoutWorkflow.run(req.body, {
        billing,
        payments,
        requestKey: requestKeyOf(req),
        commit: commitThroughUnitOfWork(uow, req, reply, checkoutOutcome),
      });
      if (!out.settled) return uow.unsettled(req, reply, 202, toSubscriptionDto(out.value.subscription));
    },
  );
  r.get(
    '/v1/subscriptions/:id',
    {
      schema: {
        tags: ['Subscriptions'],
        summary: 'A subscription',
        params: z.object({ id: z.string().min(1).max(64) }),
        response: { 200: subscriptionDto, ...problemResponses },
      },
      config: { scope: 'subscriptions:read' },
    },
    async (req) => toSubscriptionDto(await billing.getSubscription(req.params.id)),
  );
  r.get(
    '/v1/subscriptions',
    {
      schema: {
        tags: ['Subscriptions'],
        summary: 'Subscriptions, oldest first',
        querystring: pageQuery.extend({
          customer: z.string().min(1).max(255).optional().describe('Customer id or externalId'),
          status: z.enum(STATUSES).optional(),
        }),
        response: { 200: listOf(subscriptionDto), ...problemResponses },
      },
      config: { scope: 'subscriptions:read' },
    },
    async (req) =>
      toPage(
        await billing.listSubscriptions({
          customer: req.query.customer,
          status: req.query.status,
          limit: req.query.limit,
          after: decodeCursor(req.query.cursor),
        }),
        req.query.limit,
        toSubscriptionDto,
      ),
  );
  r.get(
    '/v1/invoices/:id',
    {
      schema: {
        tags: ['Invoices'],
        summary: 'An invoice with its lines',
        params: z.object({ id: z.string().min(1).max(64) }),
        response: { 200: invoiceDto, ...problemResponses },
      },
      config: { scope: 'subscriptions:read' },
    },
    async (req) => toInvoiceDto(await billing.getInvoice(req.params.id)),
  );
  r.get(
    '/v1/invoices/:id/pdf',
    {
      schema: {
        tags: ['Invoices'],
        summary: 'An invoice as a PDF',
        description:
          "The invoice for the customer: the market's seller (legal name, address, tax id), the customer, " +
          'number, issue date, period, status, lines, tax rate and tax, subtotal, total, amount paid and due, ' +
          "credit notes; amounts and dates formatted in the market's locale. Invoices of test-clock customers " +
          '(TEST-… numbers) carry a "Test mode" banner. Sent as an attachment named `<number>.pdf`. A draft ' +
          'has no number yet: 409 invoice_not_finalized.',
        params: z.object({ id: z.string().min(1).max(64) }),
        response: {
          200: {
            description:
              'The PDF (application/pdf), Content-Disposition: attachment; filename="<number>.pdf"',
            content: {
              'application/pdf': { schema: z.string().meta({ format: 'binary' }) },
            },
          },
          ...problemResponses,
          409: problemDto.describe('invoice_not_finalized: a draft has no number, so no PDF yet'),
        },
      },
      config: { scope: 'subscriptions:read' },
    },
    async (req, reply) => {
      return sendInvoicePdf(reply, await invoicePdf(billing, req.params.id));
    },
  );
  r.get(
    '/v1/invoices',
    {
      schema: {
        tags: ['Invoices'],
        summary: 'Invoices, oldest first',
        querystring: pageQuery.extend({
          customer: z.string().min(1).max(255).optional().describe('Customer id or externalId'),
          subscription: z.string().min(1).max(64).optional(),
        }),
        response: { 200: listOf(invoiceDto), ...problemResponses },
      },
      config: { scope: 'subscriptions:read' },
    },
    async (req) =>
      toPage(
        await billing.listInvoices({
          customer: req.query.customer,
          subscription: req.query.subscription,
          limit: req.query.limit,
          after: decodeCursor(req.query.cursor),
        }),
        req.query.limit,
        toInvoiceDto,
      ),
  );
  r.post(
    '/v1/invoices/:id/pay',
    {
      schema: {
        tags: ['Invoices'],
        summary: 'Charge an open invoice now',
        description:
          'Charges the amount due of an open invoice with the given or the default payment method (e.g. after the ' +
          'customer updated a card during dunning). 200 with the invoice `paid` (a past_due subscription whose last ' +
          'unpaid invoice this was is active again, its period unchanged; an incomplete sign-up is activated); 402 ' +
          'payment_declined with `declineCode` (the dunning schedule goes on); 409 invalid_state when the invoice is ' +
          'not open; 202 when the provider did not answer in time (retry with the same Idempotency-Key).',
        params: z.object({ id: z.string().min(1).max(64) }),
        body: z
          .object({
            paymentMethod: z
              .string()
              .min(1)
              .max(64)
              .optional()
              .describe("Default: the customer's default method"),
          })
          .optional(),
        response: {
          200: invoiceDto,
          202: invoiceDto,
          ...problemResponses,
          402: problemDto.describe('payment_declined, with declineCode, invoice and subscription'),
        },
      },
      config: { scope: 'subscriptions:write', action: 'invoices.pay', resourceType: 'invoice' },
    },
    async (req, reply) => {
      const invoice = await billing.getInvoice(req.params.id);
      const out = await payInvoiceWorkflow.run(
        { invoice: invoice.id, paymentMethod: req.body?.paymentMethod, cause: { retry: null } },
        {
          billing,
          payments,
          commit: commitThroughUnitOfWork(uow, req, reply, invoicePaymentOutcome(invoice)),
        },
      );
      if (!out.settled) {
        return uow.unsettled(req, reply, 202, toInvoiceDto({ ...out.value.invoice, lines: invoice.lines }));
      }
    },
  );
  changeRoutes(app, deps);
  lifecycleRoutes(app, { billing, payments, uow });
}
