import type { FastifyInstance } from 'fastify';
import type { ZodTypeProvider } from 'fastify-type-provider-zod';
import { z } from 'zod';
import { decodeCursor, listOf, pageQuery, toPage } from '../../http/pagination.js';
import { PROBLEM_CONTENT_TYPE, problem } from '../../http/problem.js';
import { problemDto, problemResponses, timestamp } from '../../http/schemas.js';
import { type Outcome, requestKeyOf, type UnitOfWork } from '../../http/unit-of-work.js';
import { isoSeconds } from '../../kernel/clock.js';
import { DomainError } from '../../kernel/errors.js';
import { PAYMENT_AMOUNT_MINOR_MAX_HIGH_DENOMINATION } from '../../kernel/money.js';
import { TEST_CARDS } from '../../providers/simulator/cards.js';
import { commitThroughUnitOfWork } from '../../workflows/commit.js';
import { captureWorkflow, paymentWorkflow, refundWorkflow, voidWorkflow } from '../../workflows/payments.js';
import type { Payment, PaymentMethod, PaymentService, Refund } from './service.js';

/** The simulator's test tokens, listed in the OpenAPI descriptions so /docs shows them. */
const TEST_TOKENS = Object.entries(TEST_CARDS)
  .map(([token, card]) => {
    const what = card.attachDecline
      ? `refused when attached (402 ${card.attachDecline})`
      : card.chargeDecline
        ? `attaches; every charge declined (402 ${card.chargeDecline})`
        : card.flaky
          ? 'charged, but the first answer is lost (the retry with the same key succeeds once)'
          : 'charges succeed';
    return `\`${token}\` (${card.brand} ${card.last4}): ${what}`;
  })
  .join('; ');

const declined = {
  402: problemDto.describe('payment_declined, with declineCode (and the failed payment id)'),
};

const methodDto = z.object({
  id: z.string(),
  customer: z.string(),
  provider: z.string(),
  brand: z.string(),
  last4: z.string(),
  isDefault: z.boolean(),
  providers: z
    .array(z.string())
    .describe('Provider instances holding a token for this method (failover targets)'),
  createdAt: timestamp,
});
export const paymentDto = z
  .object({
    id: z.string(),
    customer: z.string(),
    status: z.string(),
    amount: z.number().int().describe('What the customer is charged, tax included (minor units)'),
    amountRefunded: z.number().int(),
    currency: z.string(),
    subtotal: z.number().int().describe('The amount without its tax: amount − tax'),
    tax: z.number().int().describe('Tax contained in the amount'),
    fee: z.number().int().describe("The provider's fee"),
    provider: z.string(),
    paymentMethod: z.string(),
    declineCode: z.string().nullable(),
    description: z.string(),
    reference: z.string().nullable(),
    routing: z.unknown().describe('Rule matched, candidates, skipped providers (circuit open), attempts'),
    createdAt: timestamp,
  })
  .meta({ id: 'Payment' });
export const refundDto = z
  .object({
    id: z.string(),
    payment: z.string(),
    amount: z.number().int(),
    status: z.string(),
    failureReason: z.string().nullable(),
    reason: z
      .string()
      .nullable()
      .describe('late_capture: Reprise refunded a capture the provider made after the payment had failed'),
    createdAt: timestamp,
  })
  .meta({ id: 'Refund' });

const toMethodDto = (m: PaymentMethod): z.infer<typeof methodDto> => ({
  id: m.id,
  customer: m.customerId,
  provider: m.provider,
  brand: m.brand,
  last4: m.last4,
  isDefault: m.isDefault,
  providers: m.providers,
  createdAt: isoSeconds(m.createdAt),
});
export const toPaymentDto = (p: Payment): z.infer<typeof paymentDto> => ({
  id: p.id,
  customer: p.customer_id,
  status: p.status,
  amount: p.amount_minor,
  amountRefunded: p.amount_refunded_minor,
  currency: p.currency,
  subtotal: p.amount_minor - p.tax_minor,
  tax: p.tax_minor,
  fee: p.fee_minor,
  provider: p.provider,
  paymentMethod: p.payment_method_id,
  declineCode: p.decline_code,
  description: p.description,
  reference: p.reference,
  routing: typeof p.routing === 'string' ? JSON.parse(p.routing) : p.routing,
  createdAt: isoSeconds(p.created_at),
});
export const toRefundDto = (r: Refund): z.infer<typeof refundDto> => ({
  id: r.id,
  payment: r.payment_id,
  amount: r.amount_minor,
  status: r.status,
  failureReason: r.failure_reason,
  reason: r.reason,
  createdAt: isoSeconds(r.created_at),
});

export function paymentRoutes(app: FastifyInstance, deps: { payments: PaymentService; uow: UnitOfWork }) {
  const r = app.withTypeProvider<ZodTypeProvider>();
  const { payments, uow } = deps;
  const tags = ['Payments'];

  r.post(
    '/v1/customers/:id/payment-methods',
    {
      schema: {
        tags,
        summary: 'Attach a payment method (a provider token, never a card number)',
        description:
          '`provider` is the provider kind: `simulator` (the method is tokenized at each of its instances, ' +
          '`simulator-a` and `simulator-b`, so payments can fail over; an instance id is refused). ' +
          `Test tokens: ${TEST_TOKENS}. An erased customer takes no new method (409 invalid_state).`,
        params: z.object({ id: z.string().min(1).max(255) }),
        body: z.object({
          provider: z.string().min(1).max(50).describe('Provider kind: simulator'),
          token: z.string().min(1).max(200).describe('A provider token, e.g. tok_visa'),
        }),
        response: { 201: methodDto, ...problemResponses, ...declined },
      },
      config: { scope: 'payments:write', action: 'payment_methods.attach', resourceType: 'payment_method' },
    },
    async (req, reply) => {
      const method = await payments.attachMethod(req.params.id, req.body, requestKeyOf(req));
      return uow.run(req, reply, async () => ({
        status: 201,
        body: toMethodDto(method),
        resourceId: method.id,
      }));
    },
  );
  r.get(
    '/v1/customers/:id/payment-methods',
    {
      schema: {
        tags,
        summary: "A customer's payment methods, oldest first",
        params: z.object({ id: z.string().min(1).max(255) }),
        querystring: pageQuery,
        response: { 200: listOf(methodDto), ...problemResponses },
      },
      config: { scope: 'payments:read' },
    },
    async (req) =>
      toPage(
        await payments.listMethods(req.params.id, {
          limit: req.query.limit,
          after: decodeCursor(req.query.cursor),
        }),
        req.query.limit,
        toMethodDto,
      ),
  );
  r.post(
    '/v1/customers/:id/payment-methods/:method/default',
    {
      schema: {
        tags,
        summary: 'Make a payment method the default',
        params: z.object({ id: z.string().min(1).max(255), method: z.string().min(1).max(64) }),
        response: { 200: methodDto, ...problemResponses },
      },
      config: {
        scope: 'payments:write',
        action: 'payment_methods.set_default',
        resourceType: 'payment_method',
      },
    },
    (req, reply) =>
      uow.run(req, reply, async (trx) => {
        const method = await payments.setDefault(req.params.id, req.params.method, trx);
        return { status: 200, body: toMethodDto(method), resourceId: method.id };
      }),
  );

  r.post(
    '/v1/payments',
    {
      schema: {
        tags,
        summary: 'Charge a one-off purchase',
        description:
          "`amount` is priced like a catalog price of the customer's market, in its currency (another " +
          'currency is refused, 400 naming `currency`). Tax-inclusive market: `amount` includes tax; the ' +
          'customer is charged `amount`, `tax = round_half_up(amount × r / (1 + r))`. Tax-exclusive market: ' +
          "`tax = round_half_up(amount × r)` and the customer is charged `amount + tax`. The payment's " +
          '`amount` is always what is charged, `subtotal` = amount − tax. The charged total is at most ' +
          '99,999,999 minor units (999,999,999,999 for currencies of very small units such as IDR, VND). ' +
          '201 succeeded (or authorized, with capture: false); 402 payment_declined with declineCode and ' +
          'the failed payment id; 202 processing when the provider did not answer in time (retry with the ' +
          'same Idempotency-Key and the same body, or follow the payment; another body is 422). ' +
          `Simulator test tokens: ${TEST_TOKENS}.`,
        body: z.object({
          customer: z.string().min(1).max(255).describe('Customer id or externalId'),
          amount: z
            .number()
            .int()
            .positive()
            .max(PAYMENT_AMOUNT_MINOR_MAX_HIGH_DENOMINATION)
            .describe(
              "Minor units, priced as the customer's market prices; at most 99,999,999 (12 digits for IDR, VND, COP and other low-value currencies)",
            ),
          currency: z
            .string()
            .regex(/^[A-Z]{3}$/)
            .describe("The customer's market currency"),
          paymentMethod: z.string().min(1).max(64).optional(),
          description: z.string().min(1).max(500),
          reference: z.string().min(1).max(200).optional(),
          capture: z.boolean().default(true).describe('false: authorize only, then capture or void'),
        }),
        response: { 201: paymentDto, 202: paymentDto, ...problemResponses, ...declined },
      },
      config: { scope: 'payments:write', action: 'payments.create', resourceType: 'payment' },
    },
    async (req, reply) => {
      const out = await paymentWorkflow.run(req.body, {
        payments,
        requestKey: requestKeyOf(req),
        commit: commitThroughUnitOfWork(uow, req, reply, outcomeOf),
      });
      if (!out.settled) return uow.unsettled(req, reply, 202, toPaymentDto(out.value));
    },
  );
  r.post(
    '/v1/payments/:id/capture',
    {
      schema: {
        tags,
        summary: 'Capture an authorized payment',
        params: z.object({ id: z.string().min(1).max(64) }),
        response: { 200: paymentDto, ...problemResponses },
      },
      config: { scope: 'payments:write', action: 'payments.capture', resourceType: 'payment' },
    },
    async (req, reply) => {
      await captureWorkflow.run(
        { payment: req.params.id },
        {
          payments,
          requestKey: requestKeyOf(req),
          commit: commitThroughUnitOfWork(uow, req, reply, paymentOk),
        },
      );
    },
  );
  r.post(
    '/v1/payments/:id/void',
    {
      schema: {
        tags,
        summary: 'Void an authorized payment (release the hold)',
        params: z.object({ id: z.string().min(1).max(64) }),
        response: { 200: paymentDto, ...problemResponses },
      },
      config: { scope: 'payments:write', action: 'payments.void', resourceType: 'payment' },
    },
    async (req, reply) => {
      await voidWorkflow.run(
        { payment: req.params.id },
        {
          payments,
          requestKey: requestKeyOf(req),
          commit: commitThroughUnitOfWork(uow, req, reply, paymentOk),
        },
      );
    },
  );
  r.get(
    '/v1/payments',
    {
      schema: {
        tags,
        summary: 'Payments, oldest first',
        querystring: pageQuery.extend({ customer: z.string().min(1).max(255).optional() }),
        response: { 200: listOf(paymentDto), ...problemResponses },
      },
      config: { scope: 'payments:read' },
    },
    async (req) =>
      toPage(
        await payments.list({
          customer: req.query.customer,
          limit: req.query.limit,
          after: decodeCursor(req.query.cursor),
        }),
        req.query.limit,
        toPaymentDto,
      ),
  );
  r.get(
    '/v1/payments/:id',
    {
      schema: {
        tags,
        summary: 'A payment',
        params: z.object({ id: z.string().min(1).max(64) }),
        response: { 200: paymentDto, ...problemResponses },
      },
      config: { scope: 'payments:read' },
    },
    async (req) => toPaymentDto(await payments.get(req.params.id)),
  );

  r.post(
    '/v1/refunds',
    {
      schema: {
        tags,
        summary: 'Refund a payment, fully or partly (never more than captured)',
        description:
          '201 succeeded; 202 pending when the provider did not answer in time (retry with the same ' +
          'Idempotency-Key and body); 409 invalid_state when nothing is left to refund or the provider ' +
          "refused. The amount is bounded by what is left and by the payment currency's maximum. The " +
          "refund's ledger transaction is filed under the refund id (`?reference=re_…`).",
        body: z.object({
          payment: z.string().min(1).max(64),
          amount: z
            .number()
            .int()
            .positive()
            .max(PAYMENT_AMOUNT_MINOR_MAX_HIGH_DENOMINATION)
            .optional()
            .describe('Default: what is left'),
        }),
        response: { 201: refundDto, 202: refundDto, ...problemResponses },
      },
      config: { scope: 'payments:refund', action: 'refunds.create', resourceType: 'refund' },
    },
    async (req, reply) => {
      const out = await refundWorkflow.run(req.body, {
        payments,
        requestKey: requestKeyOf(req),
        commit: commitThroughUnitOfWork(uow, req, reply, refundOutcomeOf),
      });
      if (!out.settled) return uow.unsettled(req, reply, 202, toRefundDto(out.value));
    },
  );
  r.get(
    '/v1/refunds/:id',
    {
      schema: {
        tags,
        summary: 'A refund',
        params: z.object({ id: z.string().min(1).max(64) }),
        response: { 200: refundDto, ...problemResponses },
      },
      config: { scope: 'payments:read' },
    },
    async (req) => toRefundDto(await payments.getRefund(req.params.id)),
  );

  // Provider webhooks: no API key; the provider's signature over the raw body authenticates them.
  app.register(async (scope) => {
    scope.addContentTypeParser('application/json', { parseAs: 'string' }, (_req, body, done) =>
      done(null, body),
    );
    scope.withTypeProvider<ZodTypeProvider>().post(
      '/v1/providers/:provider/webhooks',
      {
        schema: {
          tags,
          summary: 'Inbound provider webhooks (signature-verified, deduplicated, order-independent)',
          params: z.object({ provider: z.string().min(1).max(50) }),
        },
        config: { public: true, action: 'provider_webhooks.receive', resourceType: 'payment' },
      },
      async (req, reply) => {
        let provider: ReturnType<PaymentService['router']['provider']>;
        try {
          provider = payments.router.provider(req.params.provider);
        } catch {
          throw new DomainError('not_found', `No provider '${req.params.provider}'.`);
        }
        let event: ReturnType<typeof provider.parseWebhook>;
        try {
          event = provider.parseWebhook(String(req.body ?? ''), req.headers);
        } catch (error) {
          const message = (error as Error).message;
          // Past the signature, what is wrong is the event itself.
          const inBody = error instanceof SyntaxError || message.startsWith('event is malformed');
          throw new DomainError('validation_failed', `Webhook rejected: ${message}.`, {
            errors: [
              inBody ? { path: 'body', in: 'body', message } : { path: 'signature', in: 'header', message },
            ],
          });
        }
        // The signature authenticated the provider: its unit of work runs under that principal.
        req.principal = { keyId: `provider:${provider.id}`, scopes: [] };
        // The usual webhook repeats what our own call already settled: its dedupe row and audit
        // entry in one statement, no transaction (ADR 0016).
        const known = await payments.knownSettled(provider.id, event);
        if (known && !req.idempotency) {
          return uow.runStatement(
            req,
            reply,
            { status: 200, resourceId: known },
            payments.recordEventQuery(provider.id, event, known),
            (rows) => ({ received: true, duplicate: rows.length === 0 }),
          );
        }
        return uow.run(req, reply, async (trx) => {
          const result = await payments.receiveEvent(trx, provider.id, event);
          return {
            status: 200,
            body: { received: true, duplicate: result.duplicate },
            resourceId: result.payment,
          };
        });
      },
    );
  });
}

function paymentOk(p: Payment): Outcome {
  return { status: 200, body: toPaymentDto(p), resourceId: p.id };
}

function outcomeOf(p: Payment): Outcome {
  if (p.status === 'failed') {
    return {
      status: 402,
      body: problem('payment_declined', `The payment was declined (${p.decline_code ?? 'unknown'}).`, [], {
        declineCode: p.decline_code,
        payment: p.id,
      }),
      resourceId: p.id,
      contentType: PROBLEM_CONTENT_TYPE,
    };
  }
  return { status: 201, body: toPaymentDto(p), resourceId: p.id };
}

function refundOutcomeOf(done: Refund): Outcome {
  if (done.status === 'failed') {
    return {
      status: 409,
      body: problem('invalid_state', `The provider refused the refund: ${done.failure_reason}`, [], {
        refund: done.id,
      }),
      resourceId: done.id,
      contentType: PROBLEM_CONTENT_TYPE,
    };
  }
  return { status: 201, body: toRefundDto(done), resourceId: done.id };
}
