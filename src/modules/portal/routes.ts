import type { FastifyInstance, FastifyRequest } from 'fastify';
import type { ZodTypeProvider } from 'fastify-type-provider-zod';
import { z } from 'zod';
import { decodeCursor, listOf, pageQuery, toPage } from '../../http/pagination.js';
import type { PublicOrigin } from '../../http/public-origin.js';
import { problemDto, problemResponses, timestamp } from '../../http/schemas.js';
import { requestKeyOf, type UnitOfWork } from '../../http/unit-of-work.js';
import { assert } from '../../kernel/assert.js';
import { isoSeconds } from '../../kernel/clock.js';
import { DomainError, notFound } from '../../kernel/errors.js';
import type { ProviderRouter } from '../../providers/router.js';
import { SimulatorProvider } from '../../providers/simulator/client.js';
import { grants } from '../api-keys/scopes.js';
import { type PresentSubscription, SubscriptionActions } from '../billing/actions.js';
import { previewDto } from '../billing/change-routes.js';
import { invoicePdf, sendInvoicePdf } from '../billing/pdf.js';
import type { BillingService, Invoice, Subscription } from '../billing/service.js';
import type { CatalogService } from '../catalog/service.js';
import type { CustomerService } from '../customers/service.js';
import type { PaymentService } from '../payments/service.js';
import { portalSubscriptionDto, presentSubscription } from './present.js';
import { CARD_ATTACHES_MAX, type PortalService, type PortalSession } from './service.js';

const tags = ['Customer portal'];
/** Subscriptions the overview lists at most (newest first). */
export const OVERVIEW_SUBSCRIPTIONS_MAX = 50;
/** Plans the change list offers at most, and catalog plans it looks through to find them. */
export const PLAN_CHOICES_MAX = 100;
const PLANS_SCANNED_MAX = 1_000;
/** The provider kind the portal's card frame tokenizes with. */
const CARD_PROVIDER_KIND = 'simulator';

export const portalSessionDto = z.object({
  id: z.string().describe('ps_…'),
  object: z.literal('portal_session'),
  url: z
    .string()
    .nullable()
    .describe(
      'The link to send the customer to: `<public origin>/portal/<id>#<secret>`. Shown in this answer only: an idempotent replay answers null (the secret is never stored)',
    ),
  customer: z.string().describe('cus_…'),
  returnUrl: z.string().nullable(),
  expiresAt: timestamp.describe('One hour after creation'),
  createdAt: timestamp,
});

export const portalOverviewDto = z.object({
  session: z.object({ id: z.string(), expiresAt: timestamp, returnUrl: z.string().nullable() }),
  customer: z.object({
    id: z.string(),
    externalId: z.string(),
    name: z.string().nullable(),
    email: z.string().nullable(),
  }),
  market: z.object({
    code: z.string(),
    currency: z.string(),
    locale: z.string().describe('BCP 47, for formatting prices and dates'),
    taxRateBps: z.number().int(),
    taxInclusive: z.boolean(),
  }),
  paymentMethod: z
    .object({ id: z.string(), brand: z.string(), last4: z.string() })
    .nullable()
    .describe('The default payment method: renewals are charged to it'),
  provider: z.object({
    kind: z.literal('simulator'),
    elementsUrl: z.string().describe('The card frame to load in an iframe'),
    origin: z.string().describe("The frame's origin: accept its messages only from there"),
  }),
  subscriptions: z
    .array(portalSubscriptionDto)
    .describe(
      `Subscriptions not ended (trialing, active, past_due, paused; a scheduled cancel still running), newest first, at most ${OVERVIEW_SUBSCRIPTIONS_MAX}`,
    ),
});

export const portalPlanDto = z.object({
  id: z.string(),
  code: z.string(),
  name: z.string(),
  billingPeriod: z.enum(['month', 'year', 'week']),
  product: z.object({ code: z.string(), name: z.string(), seats: z.number().int() }),
  price: z
    .object({ amount: z.number().int(), currency: z.string() })
    .describe("A new subscriber's price in the customer's market now (minor units per period)"),
});
export const portalPlansDto = z.object({ data: z.array(portalPlanDto) });

export const portalPaymentMethodDto = z.object({ id: z.string(), brand: z.string(), last4: z.string() });

export const portalInvoiceDto = z.object({
  id: z.string(),
  number: z.string().nullable(),
  status: z.enum(['draft', 'open', 'paid', 'void', 'uncollectible']),
  total: z.number().int(),
  amountPaid: z
    .number()
    .int()
    .describe('What was charged for it (0 until paid; account credit is not counted)'),
  currency: z.string(),
  createdAt: timestamp,
  periodStart: timestamp,
  periodEnd: timestamp,
  billingReason: z.enum([
    'subscription_create',
    'subscription_cycle',
    'subscription_update',
    'subscription_pause',
    'subscription_resume',
  ]),
});

const toPortalInvoice = (i: Invoice): z.infer<typeof portalInvoiceDto> => ({
  id: i.id,
  number: i.number,
  status: i.status,
  total: i.total_minor,
  amountPaid: i.status === 'paid' ? i.amount_due_minor : 0,
  currency: i.currency,
  createdAt: isoSeconds(i.created_at),
  periodStart: isoSeconds(i.period_start),
  periodEnd: isoSeconds(i.period_end),
  billingReason: i.reason,
});

/** Stripe's words for a card refused when it is attached: what the page shows the customer. */
const DECLINE_DETAIL: Record<string, string> = {
  card_declined: 'Your card was declined.',
  insufficient_funds: 'Your card has insufficient funds.',
  expired_card: 'Your card has expired.',
  incorrect_cvc: "Your card's security code is incorrect.",
  processing_error: 'An error occurred while processing your card. Try again in a little bit.',
};

export interface PortalRouteDeps {
  portal: PortalService;
  billing: BillingService;
  payments: PaymentService;
  customers: CustomerService;
  catalog: CatalogService;
  router: ProviderRouter;
  publicOrigin: PublicOrigin;
  uow: UnitOfWork;
}

/**
 * `POST /v1/portal-sessions` (API key) and the portal page's API under
 * `/v1/portal-sessions/{id}/…`, authenticated by the session's secret and acting only for its
 * customer: another customer's subscription or invoice is 404, as if it did not exist. Changes go
 * through the same billing actions and payment functions as the API's own routes (ADR 0024).
 */
export function portalRoutes(app: FastifyInstance, deps: PortalRouteDeps) {
  const r = app.withTypeProvider<ZodTypeProvider>();
  const { portal, billing, payments, customers, catalog, uow } = deps;
  const actions = new SubscriptionActions(deps);
  const present: PresentSubscription = (sub, executor) => presentSubscription(deps, sub, executor);
  const page = (action: string, resourceType = 'subscription') =>
    ({ pageSession: 'portal', action: `portal.${action}`, resourceType }) as const;
  const sessionParams = z.object({ id: z.string().min(1).max(64).describe('ps_…') });
  const subParams = sessionParams.extend({ sub: z.string().min(1).max(64).describe('sub_…') });
  // Routes that take no input declare no body (the page may send none); any field sent is still
  // refused by name (input guards).
  const emptyBody = z.object({}).nullish();
  const subscriptionAnswers = {
    200: portalSubscriptionDto,
    ...problemResponses,
  };
  const auth =
    'Authorization: Bearer <the session secret> (the fragment of its url); 401 once the session expired or ended. ';

  /** The session of a portal page's request (its principal, set by the verifier). */
  const sessionOf = (req: FastifyRequest): { id: string; customerId: string } => {
    const s = req.principal?.pageSession;
    assert(s?.kind === 'portal' && s.customerId, 'a portal route without its session principal');
    return { id: s.id, customerId: s.customerId };
  };
  /** The session customer's subscription; another customer's is not found (never forbidden). */
  const ownSubscription = async (req: FastifyRequest, id: string): Promise<Subscription> => {
    const sub = await billing.getSubscription(id);
    if (sub.customer_id !== sessionOf(req).customerId) throw notFound('subscription', id);
    return sub;
  };

  r.post(
    '/v1/portal-sessions',
    {
      schema: {
        tags,
        summary: 'Create a customer portal session (a link for one customer)',
        description:
          'A link, valid for one hour, where the customer sees their subscriptions, changes plan (with a ' +
          'preview of the proration), cancels at the end of the term or undoes it, pauses and resumes, manages ' +
          'family members, replaces their card and downloads invoices: no API key is ever in the page. `url` ' +
          'carries the secret in its fragment: it is shown in this answer (and its idempotent replay) only. ' +
          '`returnUrl` must be on an origin of REPRISE_ALLOWED_REDIRECT_ORIGINS (else 400 naming it). 404 for ' +
          'an unknown customer, 409 for an erased one. A customer keeps at most 50 live sessions: one more ' +
          'ends the oldest.',
        body: z.object({
          customer: z.string().min(1).max(255).describe('Customer id or externalId'),
          returnUrl: z
            .string()
            .min(1)
            .max(2048)
            .optional()
            .describe('Where the portal\'s "back" link leads (http/https, an allowed origin)'),
        }),
        response: { 201: portalSessionDto, ...problemResponses },
      },
      config: {
        scope: 'subscriptions:write',
        action: 'portal_sessions.create',
        resourceType: 'portal_session',
      },
    },
    async (req, reply) => {
      // The link acts for the customer as the portal does: it reads them and replaces their card.
      for (const scope of ['customers:read', 'payments:write'] as const) {
        if (!grants(req.principal?.scopes ?? [], scope)) {
          throw new DomainError('forbidden', `This API key lacks the '${scope}' scope.`, {
            extra: { requiredScope: scope },
          });
        }
      }
      const returnUrl =
        req.body.returnUrl === undefined
          ? null
          : deps.publicOrigin.checkRedirect(req.body.returnUrl, 'returnUrl');
      return uow.run(req, reply, async (trx) => {
        const { session, secret } = await portal.create(trx, { customer: req.body.customer, returnUrl });
        return {
          status: 201,
          body: {
            id: session.id,
            object: 'portal_session',
            url: `${deps.publicOrigin.origin}/portal/${session.id}#${secret}`,
            customer: session.customerId,
            returnUrl: session.returnUrl,
            expiresAt: isoSeconds(session.expiresAt),
            createdAt: isoSeconds(session.createdAt),
          } satisfies z.infer<typeof portalSessionDto>,
          resourceId: session.id,
          // The secret is shown once: the stored replay of this request keeps no link.
          redact: ['url'],
        };
      });
    },
  );

  r.get(
    '/v1/portal-sessions/:id/overview',
    {
      schema: {
        tags,
        summary: 'The portal page: the customer, their market, card and current subscriptions',
        description: auth,
        params: sessionParams,
        response: { 200: portalOverviewDto, ...problemResponses },
      },
      config: { pageSession: 'portal' },
    },
    async (req) => {
      const { id, customerId } = sessionOf(req);
      const session = await portal.get(id);
      const customer = await customers.get(customerId);
      const method = await payments.defaultMethod(customerId);
      const subs = await billing.currentSubscriptions(customerId, OVERVIEW_SUBSCRIPTIONS_MAX);
      const market = await catalog.getMarket(customer.marketId);
      const frame = cardFrame(deps.router);
      // One after the other: a page view holds at most one pool connection.
      const views = [];
      for (const s of subs) views.push(await presentSubscription(deps, s));
      return {
        session: sessionView(session),
        customer: {
          id: customer.id,
          externalId: customer.externalId,
          name: customer.name,
          email: customer.email,
        },
        market: {
          code: market.code,
          currency: market.currency,
          locale: market.locale,
          taxRateBps: market.taxRateBps,
          taxInclusive: market.taxInclusive,
        },
        paymentMethod: method ? { id: method.id, brand: method.brand, last4: method.last4 } : null,
        provider: {
          kind: CARD_PROVIDER_KIND,
          elementsUrl: `${frame}/elements/card`,
          origin: new URL(frame).origin,
        },
        subscriptions: views,
      } satisfies z.infer<typeof portalOverviewDto>;
    },
  );

  r.get(
    '/v1/portal-sessions/:id/plans',
    {
      schema: {
        tags,
        summary: 'The plans a subscription may change to',
        description:
          auth +
          "Plans priced now in the customer's market, in the subscription's currency, with seats for its " +
          `members, its current plan excluded; at most ${PLAN_CHOICES_MAX}, in catalog order.`,
        params: sessionParams,
        querystring: z.object({ subscription: z.string().min(1).max(64).describe('sub_…') }),
        response: { 200: portalPlansDto, ...problemResponses },
      },
      config: { pageSession: 'portal' },
    },
    async (req) => {
      const sub = await ownSubscription(req, req.query.subscription);
      const [account, now] = await Promise.all([
        customers.account(sub.customer_id),
        customers.now(sub.customer_id),
      ]);
      const data: Array<z.infer<typeof portalPlanDto>> = [];
      let after: string | undefined;
      for (let scanned = 0; scanned < PLANS_SCANNED_MAX && data.length < PLAN_CHOICES_MAX; ) {
        const plans = await catalog.listPlans({ limit: 100, after });
        for (const plan of plans.slice(0, 100)) {
          if (data.length >= PLAN_CHOICES_MAX) break;
          if (plan.id === sub.plan_id) continue;
          const product = await catalog.getProduct(plan.productId);
          if (product.seats < 1 + sub.members.length) continue;
          const price = await catalog
            .priceFor(plan.id, { market: account.marketId, at: now })
            .catch((e: unknown) => {
              if (e instanceof DomainError && e.code === 'price_not_found') return null;
              throw e;
            });
          if (!price || price.currency !== sub.currency) continue;
          data.push({
            id: plan.id,
            code: plan.code,
            name: plan.name,
            billingPeriod: plan.billingPeriod,
            product: { code: product.code, name: product.name, seats: product.seats },
            price: { amount: price.amountMinor, currency: price.currency },
          });
        }
        scanned += Math.min(plans.length, 100);
        if (plans.length <= 100) break;
        after = plans[99]!.id;
      }
      return { data };
    },
  );

  const planBody = z.object({ plan: z.string().min(1).max(255).describe('Plan code or id (from …/plans)') });

  r.post(
    '/v1/portal-sessions/:id/subscriptions/:sub/change/preview',
    {
      schema: {
        tags,
        summary: 'Preview a plan change (the proration the change would bill now)',
        description: `${auth}Exactly \`POST /v1/subscriptions/{id}/change/preview\` with \`{ plan }\`: same function, nothing written.`,
        params: subParams,
        body: planBody,
        response: { 200: previewDto, ...problemResponses },
      },
      config: { pageSession: 'portal' },
    },
    async (req) => {
      await ownSubscription(req, req.params.sub);
      return billing.previewChange(req.params.sub, { plan: req.body.plan });
    },
  );

  r.post(
    '/v1/portal-sessions/:id/subscriptions/:sub/change',
    {
      schema: {
        tags,
        summary: 'Change plan',
        description:
          auth +
          "As `POST /v1/subscriptions/{id}/change` with `{ plan }` (timing by the plan's rules: immediate " +
          'for an upgrade, end of term for a downgrade): 402 payment_declined when the charge is declined ' +
          '(the change stays, the subscription is past_due); 202 while the provider has not answered (retry ' +
          'with the same Idempotency-Key).',
        params: subParams,
        body: planBody,
        response: {
          ...subscriptionAnswers,
          202: portalSubscriptionDto,
          402: problemDto.describe('payment_declined, with declineCode, subscription and invoice'),
        },
      },
      config: page('subscriptions.change'),
    },
    async (req, reply) => {
      await ownSubscription(req, req.params.sub);
      return actions.change(req, reply, req.params.sub, { plan: req.body.plan }, present);
    },
  );

  r.post(
    '/v1/portal-sessions/:id/subscriptions/:sub/cancel',
    {
      schema: {
        tags,
        summary: 'Cancel at the end of the term',
        description:
          auth +
          'Always at the end of the term from the portal: `cancelAt` says when access ends, `reactivate` undoes ' +
          'it until then. A past_due or paused subscription ends now (as the API does).',
        params: subParams,
        body: emptyBody,
        response: subscriptionAnswers,
      },
      config: page('subscriptions.cancel'),
    },
    async (req, reply) => {
      await ownSubscription(req, req.params.sub);
      return actions.cancel(req, reply, req.params.sub, { timing: 'end_of_term' }, present);
    },
  );

  r.post(
    '/v1/portal-sessions/:id/subscriptions/:sub/reactivate',
    {
      schema: {
        tags,
        summary: 'Undo a scheduled cancel',
        description: `${auth}409 invalid_state when no cancel is scheduled or its date has passed.`,
        params: subParams,
        response: subscriptionAnswers,
      },
      config: page('subscriptions.reactivate'),
    },
    async (req, reply) => {
      await ownSubscription(req, req.params.sub);
      return actions.reactivate(req, reply, req.params.sub, present);
    },
  );

  r.post(
    '/v1/portal-sessions/:id/subscriptions/:sub/pause',
    {
      schema: {
        tags,
        summary: 'Pause now',
        description: `${auth}As \`POST /v1/subscriptions/{id}/pause\`: the unused time becomes account credit; only an active subscription without a scheduled cancel (else 409).`,
        params: subParams,
        response: subscriptionAnswers,
      },
      config: page('subscriptions.pause'),
    },
    async (req, reply) => {
      await ownSubscription(req, req.params.sub);
      return actions.pause(req, reply, req.params.sub, undefined, present);
    },
  );

  r.post(
    '/v1/portal-sessions/:id/subscriptions/:sub/resume',
    {
      schema: {
        tags,
        summary: 'Resume now',
        description: `${auth}As \`POST /v1/subscriptions/{id}/resume\`: the account credit pays first, the card the rest; 402 payment_declined on a decline, 202 while the provider has not answered.`,
        params: subParams,
        response: {
          ...subscriptionAnswers,
          202: portalSubscriptionDto,
          402: problemDto.describe('payment_declined, with declineCode and subscription'),
        },
      },
      config: page('subscriptions.resume'),
    },
    async (req, reply) => {
      await ownSubscription(req, req.params.sub);
      return actions.resume(req, reply, req.params.sub, undefined, present);
    },
  );

  r.post(
    '/v1/portal-sessions/:id/subscriptions/:sub/members',
    {
      schema: {
        tags,
        summary: 'Add a family member',
        description: `${auth}201 with the subscription; 409 invalid_state naming the seats when full, 409 already_exists for a member already there.`,
        params: subParams,
        body: z.object({ externalId: z.string().min(1).max(255).describe("The member's user id") }),
        response: { 201: portalSubscriptionDto, ...problemResponses },
      },
      config: page('subscriptions.members.add'),
    },
    async (req, reply) => {
      await ownSubscription(req, req.params.sub);
      return actions.addMember(req, reply, req.params.sub, req.body.externalId, present);
    },
  );

  r.delete(
    '/v1/portal-sessions/:id/subscriptions/:sub/members/:externalId',
    {
      schema: {
        tags,
        summary: 'Remove a family member (their access ends at once)',
        description: `${auth}404 when the external id is not a member.`,
        params: subParams.extend({ externalId: z.string().min(1).max(255) }),
        response: subscriptionAnswers,
      },
      config: page('subscriptions.members.remove'),
    },
    async (req, reply) => {
      await ownSubscription(req, req.params.sub);
      return actions.removeMember(req, reply, req.params.sub, req.params.externalId, present);
    },
  );

  r.post(
    '/v1/portal-sessions/:id/payment-methods',
    {
      schema: {
        tags,
        summary: 'Replace the card: attach a token from the card frame and make it the default',
        description:
          auth +
          'Renewals and retries are charged to it from now on. 402 payment_declined with `declineCode` and a ' +
          '`detail` to show the customer (e.g. "Your card was declined."); 400 naming `token` for a token the ' +
          `provider does not know. A session may ask for ${CARD_ATTACHES_MAX} cards, declined ones included: ` +
          'beyond, 429 too_many_attempts (open a new portal link to try more).',
        params: sessionParams,
        body: z.object({
          token: z.string().min(1).max(200).describe("The card frame's token, e.g. tok_visa"),
        }),
        response: {
          201: portalPaymentMethodDto,
          ...problemResponses,
          402: problemDto.describe('payment_declined, with declineCode and a detail for the customer'),
          429: problemDto.describe(
            `too_many_attempts (the session asked for ${CARD_ATTACHES_MAX} cards already), or rate_limited`,
          ),
        },
      },
      config: page('payment_methods.attach', 'payment_method'),
    },
    async (req, reply) => {
      const { id, customerId } = sessionOf(req);
      // Counted before the provider sees the token, declines included; over the cap, 429.
      await portal.countCardAttach(id);
      // Keyed by the session and the Idempotency-Key: a retry after a crash tokenizes once.
      const method = await payments
        .attachMethod(customerId, { provider: CARD_PROVIDER_KIND, token: req.body.token }, requestKeyOf(req))
        .catch((e: unknown) => {
          if (e instanceof DomainError && e.code === 'payment_declined') {
            const code = String(e.extra.declineCode ?? 'card_declined');
            throw new DomainError('payment_declined', DECLINE_DETAIL[code] ?? DECLINE_DETAIL.card_declined!, {
              extra: { declineCode: code },
            });
          }
          throw e;
        });
      return uow.run(req, reply, async (trx) => {
        const made = await payments.setDefault(customerId, method.id, trx);
        return {
          status: 201,
          body: { id: made.id, brand: made.brand, last4: made.last4 },
          resourceId: made.id,
        };
      });
    },
  );

  r.get(
    '/v1/portal-sessions/:id/invoices',
    {
      schema: {
        tags,
        summary: "The customer's invoices, newest first",
        description: `${auth}Paged with \`limit\` and \`cursor\`, newest first (unlike the API's lists).`,
        params: sessionParams,
        querystring: pageQuery,
        response: { 200: listOf(portalInvoiceDto), ...problemResponses },
      },
      config: { pageSession: 'portal' },
    },
    async (req) => {
      const { customerId } = sessionOf(req);
      return toPage(
        await billing.listInvoices({
          customer: customerId,
          limit: req.query.limit,
          after: decodeCursor(req.query.cursor),
          newestFirst: true,
        }),
        req.query.limit,
        toPortalInvoice,
      );
    },
  );

  r.get(
    '/v1/portal-sessions/:id/invoices/:invoice/pdf',
    {
      schema: {
        tags,
        summary: "One of the customer's invoices as a PDF",
        description: `${auth}The same document as \`GET /v1/invoices/{id}/pdf\`; another customer's invoice is 404.`,
        params: sessionParams.extend({ invoice: z.string().min(1).max(64).describe('in_…') }),
        response: {
          200: {
            description:
              'The PDF (application/pdf), Content-Disposition: attachment; filename="<number>.pdf"',
            content: { 'application/pdf': { schema: z.string().meta({ format: 'binary' }) } },
          },
          ...problemResponses,
          409: problemDto.describe('invoice_not_finalized: a draft has no number, so no PDF yet'),
        },
      },
      config: { pageSession: 'portal' },
    },
    async (req, reply) => {
      const { customerId } = sessionOf(req);
      const invoice = await billing.getInvoice(req.params.invoice);
      if (invoice.customer_id !== customerId) throw notFound('invoice', req.params.invoice);
      return sendInvoicePdf(reply, await invoicePdf(billing, invoice.id));
    },
  );

  r.post(
    '/v1/portal-sessions/:id/end',
    {
      schema: {
        tags,
        summary: 'Sign out: end the session',
        description: `${auth}204; every later call with its secret is 401.`,
        params: sessionParams,
        response: { 204: z.null().describe('Ended'), ...problemResponses },
      },
      config: page('sessions.end', 'portal_session'),
    },
    (req, reply) =>
      uow.run(req, reply, async (trx) => {
        const { id } = sessionOf(req);
        await portal.end(trx, id);
        return { status: 204, body: null, resourceId: id };
      }),
  );
}

function sessionView(s: PortalSession) {
  return { id: s.id, expiresAt: isoSeconds(s.expiresAt), returnUrl: s.returnUrl };
}

/** The card frame's base: the first instance of the card provider kind. */
function cardFrame(router: ProviderRouter): string {
  const instance = router.instancesOf(CARD_PROVIDER_KIND).find((p) => p instanceof SimulatorProvider);
  assert(instance instanceof SimulatorProvider, `no ${CARD_PROVIDER_KIND} provider for the card frame`);
  return instance.baseUrl;
}
