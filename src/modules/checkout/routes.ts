import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import type { ZodTypeProvider } from 'fastify-type-provider-zod';
import { z } from 'zod';
import type { PageSessionAuth } from '../../http/auth.js';
import { decodeCursor, listOf, pageQuery, toPage } from '../../http/pagination.js';
import { PROBLEM_CONTENT_TYPE, problem } from '../../http/problem.js';
import { problemDto, problemResponses, timestamp } from '../../http/schemas.js';
import type { Outcome, UnitOfWork } from '../../http/unit-of-work.js';
import { assert } from '../../kernel/assert.js';
import { isoSeconds } from '../../kernel/clock.js';
import { DomainError, invalidState } from '../../kernel/errors.js';
import { checkoutWorkflow } from '../../workflows/checkout.js';
import type { Commit } from '../../workflows/commit.js';
import { payInvoiceWorkflow } from '../../workflows/pay-invoice.js';
import type { BillingService } from '../billing/service.js';
import { externalIdSchema } from '../customers/routes.js';
import type { PaymentMethod, PaymentService } from '../payments/service.js';
import { ATTEMPTS_MAX, declineMessage } from './domain/session.js';
import {
  type Actor,
  type CheckoutService,
  type CheckoutSession,
  type ConfirmClaim,
  cardKey,
  subscribeKey,
} from './service.js';

const tags = ['Checkout sessions'];
const STATUSES = ['open', 'complete', 'expired'] as const;
/** Subscriptions a completed checkout leaves: paid (active) or in a trial. */
const ENTITLED = new Set(['active', 'trialing']);

const sessionDto = z
  .object({
    id: z.string().describe('cs_…'),
    object: z.literal('checkout_session'),
    url: z
      .string()
      .nullable()
      .describe(
        'The hosted page, `<public origin>/checkout/<id>#<client secret>`: only in the create call’s answer; ' +
          'null everywhere else (reads, lists, and an idempotent replay of the create)',
      ),
    status: z.enum(STATUSES).describe('`expired` 24 hours after creation, or by POST …/expire'),
    expiresAt: timestamp,
    plan: z.string().describe('Plan id'),
    customer: z
      .string()
      .nullable()
      .describe('Customer id: known at creation, else once the checkout made it'),
    externalId: z.string().describe("The customer's externalId"),
    market: z.string().describe('Market code'),
    successUrl: z.string().nullable(),
    cancelUrl: z.string().nullable(),
    subscription: z.string().nullable().describe('The subscription, once the checkout made it'),
    createdAt: timestamp,
    completedAt: timestamp.nullable(),
  })
  .meta({ id: 'CheckoutSession' });

const pageDto = z
  .object({
    id: z.string(),
    status: z.enum(STATUSES),
    expiresAt: timestamp,
    product: z.object({ code: z.string(), name: z.string(), features: z.array(z.string()) }),
    plan: z.object({
      code: z.string(),
      name: z.string(),
      billingPeriod: z.enum(['month', 'year', 'week']),
      trialDays: z.number().int().describe("The plan's trial"),
    }),
    price: z
      .object({ amount: z.number().int(), currency: z.string() })
      .describe(
        'Per billing period, in minor units, as the market shows it (tax included when taxInclusive)',
      ),
    trialDays: z
      .number()
      .int()
      .describe('The trial this customer gets: 0 when they already had this product’s'),
    market: z.object({
      code: z.string(),
      currency: z.string(),
      locale: z.string().describe('BCP 47, for Intl number and currency formatting'),
      taxRateBps: z.number().int(),
      taxInclusive: z.boolean(),
    }),
    customer: z.object({ externalId: z.string() }),
    successUrl: z.string().nullable(),
    cancelUrl: z.string().nullable(),
    provider: z
      .object({
        kind: z.string().describe('The provider kind the frame’s tokens are attached with (`simulator`)'),
        elementsUrl: z
          .string()
          .describe(
            'The card frame, on the provider’s origin; add `?parentOrigin=<page origin>&locale=<bcp47>`',
          ),
        origin: z.string().describe('The frame’s origin: accept its messages from it only'),
      })
      .describe('The payment provider’s card frame (the reprise-card:* postMessage protocol)'),
    subscription: z.string().nullable(),
  })
  .meta({ id: 'CheckoutPage' });

const completedDto = z
  .object({
    status: z.literal('complete'),
    customer: z.string(),
    subscription: z.string(),
    redirectUrl: z.string().describe('successUrl, or the platform’s thank-you page'),
  })
  .meta({ id: 'CheckoutConfirmed' });
const processingDto = z
  .object({ status: z.literal('open'), processing: z.literal(true) })
  .meta({ id: 'CheckoutProcessing' });

const toDto = (s: CheckoutSession, url: string | null = null): z.infer<typeof sessionDto> => ({
  id: s.id,
  object: 'checkout_session',
  url,
  status: s.status,
  expiresAt: isoSeconds(s.expiresAt),
  plan: s.planId,
  customer: s.customerId,
  externalId: s.externalId,
  market: s.marketCode,
  successUrl: s.successUrl,
  cancelUrl: s.cancelUrl,
  subscription: s.subscriptionId,
  createdAt: isoSeconds(s.createdAt),
  completedAt: s.completedAt ? isoSeconds(s.completedAt) : null,
});

const idParams = z.object({ id: z.string().min(1).max(64).describe('cs_…') });
const ref = z.string().min(1).max(255);
const urlField = z.string().min(1).max(2048);

/** A 402 the page shows: the provider's decline code and Stripe's words for it. */
const declined = (code: string) =>
  new DomainError('payment_declined', declineMessage(code), { extra: { declineCode: code } });

export function checkoutRoutes(
  server: FastifyInstance,
  deps: {
    checkout: CheckoutService;
    billing: BillingService;
    payments: PaymentService;
    uow: UnitOfWork;
    pageSessions: PageSessionAuth;
  },
) {
  const r = server.withTypeProvider<ZodTypeProvider>();
  const { checkout, billing, payments, uow } = deps;
  deps.pageSessions.register('checkout', (secret, request) =>
    checkout.verify(secret, String((request.params as { id?: unknown } | undefined)?.id ?? '')),
  );

  // ---- the merchant's API (API keys) ---------------------------------------------------------

  r.post(
    '/v1/checkout-sessions',
    {
      schema: {
        tags,
        summary: 'Create a hosted checkout session (its URL, with the client secret, is returned once)',
        description:
          'A page where one customer subscribes to `plan`, paying with a card typed into the payment provider’s ' +
          'own frame. Name the customer by `customer` (id or externalId of an existing one: its market wins) or by ' +
          'a new `externalId` with its `market` (the customer is made when the checkout is paid). 422 ' +
          'price_not_found when the plan has no price there. `successUrl` and `cancelUrl` must be on an origin of ' +
          'REPRISE_ALLOWED_REDIRECT_ORIGINS; `{CHECKOUT_SESSION_ID}` in successUrl is replaced by the id. The ' +
          'session is single-use and expires after 24 hours.',
        body: z.object({
          plan: ref.describe('Plan id or code'),
          externalId: externalIdSchema.optional().describe('The customer’s externalId (new or existing)'),
          customer: ref.optional().describe('An existing customer’s id or externalId'),
          market: z
            .string()
            .min(1)
            .max(64)
            .optional()
            .describe('Market code or id: required for a new customer'),
          successUrl: urlField.optional().describe('Where a paid checkout goes (default: a thank-you page)'),
          cancelUrl: urlField.optional().describe('Where the page’s cancel link goes (default: none shown)'),
        }),
        response: { 201: sessionDto, ...problemResponses, 422: problemDto.describe('price_not_found') },
      },
      config: {
        scope: 'subscriptions:write',
        action: 'checkout_sessions.create',
        resourceType: 'checkout_session',
      },
    },
    async (req, reply) => {
      const prepared = await checkout.prepare(req.body);
      await uow.run(req, reply, async (trx) => {
        const { session, url } = await checkout.create(trx, prepared);
        // The URL holds the client secret: shown once, stored for replay as null (never in clear at rest).
        return { status: 201, body: toDto(session, url), resourceId: session.id, redact: ['url'] };
      });
    },
  );
  r.get(
    '/v1/checkout-sessions',
    {
      schema: {
        tags,
        summary: 'Checkout sessions, oldest first',
        querystring: pageQuery,
        response: { 200: listOf(sessionDto), ...problemResponses },
      },
      config: { scope: 'subscriptions:read' },
    },
    async (req) =>
      toPage(
        await checkout.list({ limit: req.query.limit + 1, after: decodeCursor(req.query.cursor) }),
        req.query.limit,
        (s) => toDto(s),
      ),
  );
  r.get(
    '/v1/checkout-sessions/:id',
    {
      schema: {
        tags,
        summary: 'A checkout session (`url` is null: the secret is shown only at creation)',
        params: idParams,
        response: { 200: sessionDto, ...problemResponses },
      },
      config: { scope: 'subscriptions:read' },
    },
    async (req) => toDto(await checkout.get(req.params.id)),
  );
  r.post(
    '/v1/checkout-sessions/:id/expire',
    {
      schema: {
        tags,
        summary: 'Expire an open checkout session now (its page stops working)',
        description:
          '409 invalid_state when it is complete or a payment of it is in progress; an expired one stays so.',
        params: idParams,
        response: { 200: sessionDto, ...problemResponses },
      },
      config: {
        scope: 'subscriptions:write',
        action: 'checkout_sessions.expire',
        resourceType: 'checkout_session',
      },
    },
    (req, reply) =>
      uow.run(req, reply, async (trx) => {
        const session = await checkout.expire(trx, req.params.id);
        return { status: 200, body: toDto(session), resourceId: session.id };
      }),
  );

  // ---- the hosted page's API (Bearer = the session's client secret) -------------------------

  r.get(
    '/v1/checkout-sessions/:id/page',
    {
      schema: {
        tags,
        summary: 'What the hosted checkout page shows (authenticated by the session’s client secret)',
        description:
          '`Authorization: Bearer <client secret>` (the URL fragment of the session’s `url`), not an API key. ' +
          '401 for another session’s secret, a wrong one, or an expired session.',
        params: idParams,
        response: { 200: pageDto, ...problemResponses },
      },
      config: { pageSession: 'checkout' },
    },
    async (req) => checkout.page(req.params.id),
  );
  r.post(
    '/v1/checkout-sessions/:id/confirm',
    {
      schema: {
        tags,
        summary: 'Pay the checkout with a card token from the provider’s frame (hosted page)',
        description:
          '`Authorization: Bearer <client secret>`. Takes only a token (`tok_…`): card numbers never reach Reprise. ' +
          '200 complete with the customer, the subscription and where to go; 402 payment_declined with ' +
          '`declineCode` and a `detail` to show (the session stays open: try another card); 202 while the provider ' +
          'has not answered (poll the page, then confirm again with the same token); 409 when the session is ' +
          'complete, expired, or another confirm of it is running; 429 too_many_attempts once it has had ' +
          `${ATTEMPTS_MAX} attempts (cards tried: start a new checkout).`,
        params: idParams,
        body: z.object({
          token: z
            .string()
            .min(1)
            .max(255)
            .regex(/^[A-Za-z0-9_]+$/, 'must be a card token from the payment provider’s frame (tok_…)'),
        }),
        response: {
          200: completedDto,
          202: processingDto,
          ...problemResponses,
          402: problemDto.describe('payment_declined, with declineCode; detail is the message to show'),
          429: problemDto.describe('too_many_attempts (the session tried its last card), or rate_limited'),
        },
      },
      config: {
        pageSession: 'checkout',
        action: 'checkout_sessions.confirm',
        resourceType: 'checkout_session',
      },
    },
    (req, reply) => confirm(req, reply, req.params.id, req.body.token),
  );

  /**
   * Confirm, step by step, each keyed by the session: claim (attempt n, one confirm at a time) →
   * the customer (made once, recorded on the session) → the card (attached once per attempt,
   * `checkout:<id>:<n>:card`) → the subscription (the checkout workflow, once per session:
   * `checkout:<id>:subscribe`) or, when an earlier attempt's charge was declined, its open invoice
   * paid with the new card (the pay-invoice workflow: one subscription, one charge per attempt)
   * → in the final unit of work, the session completed (or released after a decline).
   */
  async function confirm(req: FastifyRequest, reply: FastifyReply, id: string, token: string): Promise<void> {
    const principal = req.principal;
    assert(principal?.pageSession?.id === id, 'confirm without its page session');
    const actor: Actor = { keyId: principal.keyId, requestId: req.id };
    const provider = checkout.elementsKind();
    const claim = await checkout.claim(id, token);
    try {
      const customerId = await checkout.ensureCustomer(claim, actor);
      let method: PaymentMethod;
      try {
        method = await payments.attachMethod(customerId, { provider, token }, cardKey(id, claim.attempt));
      } catch (e) {
        if (e instanceof DomainError && (e.code === 'payment_declined' || e.code === 'validation_failed')) {
          // The card was refused (or is no token): this attempt is over, the next may use another card.
          await checkout.release(claim, { concluded: true });
          if (e.code === 'payment_declined') throw declined(String(e.extra.declineCode ?? 'card_declined'));
        }
        throw e;
      }
      await checkout.recordMethod(claim, method.id, actor);
      const done = { customerId, methodId: method.id };
      const commit = <T extends Settleable>() => commitConfirm<T>(req, reply, claim, done);

      const existing = await checkout.subscriptionOf(claim);
      if (existing === null) {
        const out = await checkoutWorkflow.run(
          { customer: customerId, plan: claim.session.plan_id, paymentMethod: method.id },
          { billing, payments, requestKey: subscribeKey(id), commit: commit() },
        );
        if (!out.settled) return pending(req, reply, claim, out.value.subscription.id);
        return;
      }
      const subscription = await billing.getSubscription(existing);
      if (ENTITLED.has(subscription.status)) {
        // Paid meanwhile (the checkout's settle job found the earlier attempt captured): complete.
        await uow.run(req, reply, (trx) =>
          settleConfirm(trx, claim, done, { subscription, declineCode: null }, checkout.redirectUrl(claim)),
        );
        return;
      }
      const invoice =
        subscription.status === 'incomplete'
          ? (await billing.listInvoices({ subscription: existing, limit: 10 })).find(
              (i) => i.reason === 'subscription_create' && i.status === 'open',
            )
          : undefined;
      if (!invoice) {
        await checkout.release(claim, { concluded: true, subscriptionId: existing });
        throw invalidState(
          `This checkout's subscription is ${subscription.status}; it can no longer be paid. Start a new checkout.`,
        );
      }
      const out = await payInvoiceWorkflow.run(
        { invoice: invoice.id, paymentMethod: method.id, cause: { retry: null } },
        { billing, payments, commit: commit() },
      );
      if (!out.settled) return pending(req, reply, claim, existing);
    } catch (e) {
      // Anything else: the session is free again; the same token resumes this attempt.
      await checkout.release(claim, { concluded: false }).catch(() => undefined);
      throw e;
    }
  }

  type Settleable = { subscription: { id: string; status: string }; declineCode: string | null };

  /** The workflow's final writes, in the confirm's unit of work with the session's own. */
  function commitConfirm<T extends Settleable>(
    req: FastifyRequest,
    reply: FastifyReply,
    claim: ConfirmClaim,
    done: { customerId: string; methodId: string },
  ): Commit<T> {
    return async (work) => {
      let value: T | undefined;
      await uow.run(req, reply, async (trx) => {
        value = await work(trx);
        return settleConfirm(trx, claim, done, value, checkout.redirectUrl(claim));
      });
      assert(value !== undefined, 'unit of work returned without running its work');
      return value;
    };
  }

  async function settleConfirm(
    trx: Parameters<CheckoutService['complete']>[0],
    claim: ConfirmClaim,
    done: { customerId: string; methodId: string },
    value: Settleable,
    redirectUrl: string,
  ): Promise<Outcome> {
    const subscription = value.subscription;
    const resourceId = claim.session.id;
    if (value.declineCode !== null) {
      await checkout.release(claim, { concluded: true, subscriptionId: subscription.id }, trx);
      return {
        status: 402,
        body: problem('payment_declined', declineMessage(value.declineCode), [], {
          declineCode: value.declineCode,
        }),
        resourceId,
        contentType: PROBLEM_CONTENT_TYPE,
      };
    }
    if (ENTITLED.has(subscription.status)) {
      await checkout.complete(trx, claim, { ...done, subscriptionId: subscription.id });
      return {
        status: 200,
        body: { status: 'complete', customer: done.customerId, subscription: subscription.id, redirectUrl },
        resourceId,
      };
    }
    // Neither paid nor declined (the invoice stopped being open meanwhile): free the session.
    await checkout.release(claim, { concluded: true, subscriptionId: subscription.id }, trx);
    return {
      status: 409,
      body: problem('invalid_state', `This checkout's subscription is ${subscription.status}; try again.`),
      resourceId,
      contentType: PROBLEM_CONTENT_TYPE,
    };
  }

  /** The provider has not answered: the session is free, the same token resumes the attempt. */
  async function pending(
    req: FastifyRequest,
    reply: FastifyReply,
    claim: ConfirmClaim,
    subscriptionId: string,
  ): Promise<void> {
    await checkout.release(claim, { concluded: false, subscriptionId });
    await uow.unsettled(req, reply, 202, { status: 'open', processing: true });
  }
}
