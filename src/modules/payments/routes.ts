import type { FastifyInstance } from 'fastify';
import type { ZodTypeProvider } from 'fastify-type-provider-zod';
import { z } from 'zod';
import { decodeCursor, listOf, pageQuery, toPage } from '../../http/pagination.js';
import { PROBLEM_CONTENT_TYPE, problem } from '../../http/problem.js';
import { problemResponses, timestamp } from '../../http/schemas.js';
import { requestKeyOf, type UnitOfWork } from '../../http/unit-of-work.js';
import { isoSeconds } from '../../kernel/clock.js';
import { DomainError } from '../../kernel/errors.js';
import type { Payment, PaymentMethod, PaymentService, Refund } from './service.js';

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
const paymentDto = z.object({
  id: z.string(),
  customer: z.string(),
  status: z.string(),
  amount: z.number().int(),
  amountRefunded: z.number().int(),
  currency: z.string(),
  tax: z.number().int().describe('Tax contained in the amount'),
  fee: z.number().int().describe("The provider's fee"),
  provider: z.string(),
  paymentMethod: z.string(),
  declineCode: z.string().nullable(),
  description: z.string(),
  reference: z.string().nullable(),
  routing: z.unknown().describe('Rule matched, candidates, skipped providers (circuit open), attempts'),
  createdAt: timestamp,
});
const refundDto = z.object({
  id: z.string(),
  payment: z.string(),
  amount: z.number().int(),
  status: z.string(),
  failureReason: z.string().nullable(),
  createdAt: timestamp,
});

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
const toRefundDto = (r: Refund): z.infer<typeof refundDto> => ({
  id: r.id,
  payment: r.payment_id,
  amount: r.amount_minor,
  status: r.status,
  failureReason: r.failure_reason,
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
        params: z.object({ id: z.string().min(1).max(255) }),
        body: z.object({ provider: z.string().min(1).max(50), token: z.string().min(1).max(200) }),
        response: { 201: methodDto, ...problemResponses },
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
        summary: "A customer's payment methods",
        params: z.object({ id: z.string().min(1).max(255) }),
        response: { 200: listOf(methodDto), ...problemResponses },
      },
      config: { scope: 'payments:read' },
    },
    async (req) => ({ data: (await payments.listMethods(req.params.id)).map(toMethodDto), nextCursor: null }),
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
          '201 succeeded; 402 payment_declined with declineCode and the failed payment id; 202 processing when the provider ' +
          'did not answer in time (retry with the same Idempotency-Key, or follow the payment).',
        body: z.object({
          customer: z.string().min(1).max(255).describe('Customer id or externalId'),
          amount: z.number().int().positive().describe('Minor units'),
          currency: z.string().regex(/^[A-Z]{3}$/),
          paymentMethod: z.string().min(1).max(64).optional(),
          description: z.string().min(1).max(500),
          reference: z.string().min(1).max(200).optional(),
          capture: z.boolean().default(true).describe('false: authorize only, then capture or void'),
        }),
        response: { 201: paymentDto, 202: paymentDto, ...problemResponses },
      },
      config: { scope: 'payments:write', action: 'payments.create', resourceType: 'payment' },
    },
    async (req, reply) => {
      const payment = await payments.start(req.body, requestKeyOf(req));
      const result = await payments.charge(payment);
      if (!result) {
        const current = await payments.get(payment.id);
        if (current.status === 'processing') return uow.unsettled(req, reply, 202, toPaymentDto(current));
        return uow.run(req, reply, async () => outcomeOf(current));
      }
      return uow.run(req, reply, async (trx) => outcomeOf(await payments.finish(trx, payment, result)));
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
      const result = await payments.capture(req.params.id);
      return uow.run(req, reply, async (trx) => {
        const p = await payments.finishCapture(trx, req.params.id, result);
        return { status: 200, body: toPaymentDto(p), resourceId: p.id };
      });
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
      await payments.voidPayment(req.params.id);
      return uow.run(req, reply, async (trx) => {
        const p = await payments.finishVoid(trx, req.params.id);
        return { status: 200, body: toPaymentDto(p), resourceId: p.id };
      });
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
        body: z.object({
          payment: z.string().min(1).max(64),
          amount: z.number().int().positive().optional().describe('Default: what is left'),
        }),
        response: { 201: refundDto, 202: refundDto, ...problemResponses },
      },
      config: { scope: 'payments:refund', action: 'refunds.create', resourceType: 'refund' },
    },
    async (req, reply) => {
      const { refund, payment } = await payments.startRefund(req.body, requestKeyOf(req));
      const outcome = await payments.callRefund(refund, payment);
      if (!outcome) {
        const current = await payments.getRefund(refund.id);
        if (current.status === 'pending') return uow.unsettled(req, reply, 202, toRefundDto(current));
        return uow.run(req, reply, async () => ({
          status: 201,
          body: toRefundDto(current),
          resourceId: current.id,
        }));
      }
      return uow.run(req, reply, async (trx) => {
        const done = await payments.finishRefund(trx, refund.id, outcome);
        return {
          status: done.status === 'failed' ? 409 : 201,
          body:
            done.status === 'failed'
              ? problem('invalid_state', `The provider refused the refund: ${done.failure_reason}`, [], {
                  refund: done.id,
                })
              : toRefundDto(done),
          resourceId: done.id,
          ...(done.status === 'failed' ? { contentType: PROBLEM_CONTENT_TYPE } : {}),
        };
      });
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
          throw new DomainError('validation_failed', `Webhook rejected: ${(error as Error).message}.`, {
            errors: [{ path: 'signature', message: (error as Error).message }],
          });
        }
        // The verified signature authenticates the provider: it is this change's principal.
        req.principal = { keyId: `provider:${provider.id}`, scopes: [] };
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

function outcomeOf(p: Payment) {
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
