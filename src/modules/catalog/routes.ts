import type { FastifyInstance, FastifyReply } from 'fastify';
import type { ZodTypeProvider } from 'fastify-type-provider-zod';
import { type ZodType, z } from 'zod';
import { decodeCursor, listOf, pageQuery, toPage } from '../../http/pagination.js';
import { RenderedCache } from '../../http/rendered-cache.js';
import { problemResponses, timestamp } from '../../http/schemas.js';
import type { UnitOfWork } from '../../http/unit-of-work.js';
import { isoSeconds } from '../../kernel/clock.js';
import { looksLikeId } from '../../kernel/ids.js';
import {
  canonicalLocale,
  LOCALE_MAX,
  SELLER_ADDRESS_LINE_MAX,
  SELLER_ADDRESS_LINES_MAX,
  SELLER_LEGAL_NAME_MAX,
  SELLER_TAX_ID_MAX,
} from './domain/market-profile.js';
import type { PriceVersion } from './domain/price-resolution.js';
import type { CatalogService, Market, Plan, Product } from './service.js';

const code = z
  .string()
  .min(1)
  .max(64)
  .regex(
    /^[a-z0-9][a-z0-9._-]*$/,
    'must be lowercase letters, digits, ".", "_" or "-", starting with a letter or digit',
  )
  .refine((v) => !looksLikeId(v), 'must not have the shape of an id (prefix_ and 26 characters)');
const currency = z.string().regex(/^[A-Z]{3}$/, 'must be an ISO 4217 code in capitals, e.g. "SEK"');
const timing = z.enum(['immediate', 'end_of_term']);

/** One line of text shown on an invoice: no control characters (no newlines), no outer blanks. */
const textLine = (max: number) =>
  z
    .string()
    .min(1)
    .max(max)
    .regex(/^[^\p{Cc}\u2028\u2029]*$/u, 'must be one line without control characters')
    .refine((v) => v.trim() === v, 'must not start or end with blanks');
const sellerBody = z
  .object({
    legalName: textLine(SELLER_LEGAL_NAME_MAX).describe('The registered name of the selling company'),
    address: z
      .array(textLine(SELLER_ADDRESS_LINE_MAX))
      .min(1)
      .max(SELLER_ADDRESS_LINES_MAX)
      .describe(`Address lines in display order, 1 to ${SELLER_ADDRESS_LINES_MAX}`),
    taxId: textLine(SELLER_TAX_ID_MAX)
      .nullable()
      .optional()
      .describe('VAT number or other tax id shown on invoices (e.g. SE556677889901)'),
  })
  .describe('The seller named on the invoices of this market');
const localeBody = z
  .string()
  .min(2)
  .max(LOCALE_MAX)
  // Checked here too (the service checks again for its other callers), so one answer names every bad field.
  .superRefine((tag, ctx) => {
    const checked = canonicalLocale(tag);
    if (!checked.ok) ctx.addIssue({ code: 'custom', message: checked.message });
  })
  .describe(
    'BCP 47 locale amounts and dates are formatted in (Intl), e.g. "sv-SE"; stored in canonical form. ' +
      'Default: the country\'s language ("sv-SE" for SE, "en-US" for US, else "en-<code>")',
  );
const marketBody = z.object({
  code: z.string().regex(/^[A-Z]{2}$/, 'must be an ISO 3166-1 alpha-2 code in capitals, e.g. "SE"'),
  name: z.string().min(1).max(200).optional(),
  currency,
  taxRateBps: z.number().int().min(0).max(10_000).describe('Tax rate in basis points: 2500 = 25 %'),
  taxInclusive: z.boolean().describe('Prices include tax (EU style) or tax is added on top'),
  locale: localeBody.optional(),
  seller: sellerBody.nullable().optional(),
});
const marketPatch = z.object({
  locale: localeBody.optional(),
  seller: sellerBody.nullable().optional().describe('null removes the seller'),
});
export const marketSellerDto = z
  .object({
    legalName: z.string(),
    address: z.array(z.string()),
    taxId: z.string().nullable(),
  })
  .meta({ id: 'MarketSeller', description: 'The seller named on the invoices of a market' });
export const marketDto = z
  .object({
    id: z.string(),
    code: z.string(),
    name: z.string().nullable(),
    currency: z.string(),
    taxRateBps: z.number().int(),
    taxInclusive: z.boolean(),
    locale: z.string().describe("BCP 47 locale to format this market's amounts and dates with (Intl)"),
    seller: marketSellerDto.nullable(),
    createdAt: timestamp,
  })
  .meta({ id: 'Market' });

const productBody = z.object({
  code,
  name: z.string().min(1).max(200).optional(),
  features: z
    .array(
      z
        .string()
        .min(1)
        .max(100)
        .regex(/^[a-z0-9][a-z0-9:._-]*$/, 'must be a lowercase feature key'),
    )
    .max(100),
  seats: z.number().int().min(1).max(100).default(1).describe('Seats > 1 make a family/duo product'),
});
const productDto = z.object({
  id: z.string(),
  code: z.string(),
  name: z.string(),
  features: z.array(z.string()),
  seats: z.number().int(),
  createdAt: timestamp,
});

/** Amounts are integers in minor units; the service names a fraction finer than the currency's unit. */
const priceBody = z.object({
  currency,
  amount: z
    .number()
    .nonnegative()
    .describe(
      'Integer amount in the currency minor unit (1199 USD = $11.99); at most 99,999,999 (12 digits for low-value currencies such as IDR)',
    ),
  market: z.string().min(1).max(64).optional().describe('Market code or id: a price for that market only'),
});
const priceDto = z.object({ currency: z.string(), amount: z.number().int(), market: z.string().nullable() });

const planBody = z.object({
  code,
  name: z.string().min(1).max(200).optional(),
  product: z.string().min(1).max(64).describe('Product id or code'),
  billingPeriod: z.enum(['week', 'month', 'year']),
  trialDays: z.number().int().min(0).max(730).default(0),
  prices: z.array(priceBody).min(1).max(500),
  changeTiming: timing.optional(),
  cancelTiming: timing.optional(),
});
const priceVersionDto = z.object({
  id: z.string(),
  plan: z.string(),
  version: z.number().int(),
  effectiveAt: timestamp.nullable(),
  existingSubscribersFrom: timestamp.nullable(),
  prices: z.array(priceDto),
});
const planDto = z.object({
  id: z.string(),
  code: z.string(),
  name: z.string(),
  product: z.string(),
  billingPeriod: z.enum(['week', 'month', 'year']),
  trialDays: z.number().int(),
  changeTiming: timing.nullable(),
  cancelTiming: timing.nullable(),
  prices: z.array(priceDto).describe('Prices in force now for new subscribers'),
  priceVersion: z.number().int().describe('The version those prices belong to'),
  createdAt: timestamp,
});
const priceVersionBody = z.object({
  prices: z.array(priceBody).min(1).max(500),
  effectiveAt: z.iso
    .datetime({ offset: true })
    .describe('New subscribers pay these prices from this instant'),
  existingSubscribersFrom: z.iso
    .datetime({ offset: true })
    .optional()
    .describe(
      'Existing subscribers move to these prices on their first period starting on or after this instant',
    ),
});
const quoteQuery = z.object({
  market: z.string().min(1).max(64).describe('Market code or id'),
  at: z.iso.datetime({ offset: true }).optional().describe('Instant to price at; default now'),
  subscribedAt: z.iso
    .datetime({ offset: true })
    .optional()
    .describe('For an existing subscriber: when they signed up'),
});
const quoteDto = z.object({
  plan: z.string(),
  market: z.string(),
  currency: z.string(),
  amount: z.number().int(),
  taxInclusive: z.boolean(),
  taxRateBps: z.number().int(),
  priceVersion: z.number().int(),
  source: z.enum(['market', 'currency']),
});

const refParams = z.object({ id: z.string().min(1).max(64).describe('Id or code') });

export function marketToDto(m: Market): z.infer<typeof marketDto> {
  return {
    id: m.id,
    code: m.code,
    name: m.name,
    currency: m.currency,
    taxRateBps: m.taxRateBps,
    taxInclusive: m.taxInclusive,
    locale: m.locale,
    seller: m.seller
      ? { legalName: m.seller.legalName, address: [...m.seller.address], taxId: m.seller.taxId }
      : null,
    createdAt: isoSeconds(m.createdAt),
  };
}
function productToDto(p: Product): z.infer<typeof productDto> {
  return { ...p, createdAt: isoSeconds(p.createdAt) };
}
function pricesToDto(v: PriceVersion | undefined, codes: Map<string, string>) {
  return (v?.prices ?? []).map((p) => ({
    currency: p.currency,
    amount: p.amountMinor,
    market: p.marketId ? (codes.get(p.marketId) ?? p.marketId) : null,
  }));
}
function versionToDto(
  planId: string,
  v: PriceVersion,
  codes: Map<string, string>,
): z.infer<typeof priceVersionDto> {
  return {
    id: v.id,
    plan: planId,
    version: v.version,
    effectiveAt: v.effectiveAt ? isoSeconds(v.effectiveAt) : null,
    existingSubscribersFrom: v.existingSubscribersFrom ? isoSeconds(v.existingSubscribersFrom) : null,
    prices: pricesToDto(v, codes),
  };
}
function currentVersion(plan: Plan, now: Date): PriceVersion | undefined {
  return plan.versions.filter((v) => !v.effectiveAt || v.effectiveAt.getTime() <= now.getTime()).at(-1);
}
function planToDto(plan: Plan, codes: Map<string, string>, now: Date): z.infer<typeof planDto> {
  const current = currentVersion(plan, now);
  return {
    id: plan.id,
    code: plan.code,
    name: plan.name,
    product: plan.productId,
    billingPeriod: plan.billingPeriod,
    trialDays: plan.trialDays,
    changeTiming: plan.changeTiming,
    cancelTiming: plan.cancelTiming,
    prices: pricesToDto(current, codes),
    priceVersion: current?.version ?? 0,
    createdAt: isoSeconds(plan.createdAt),
  };
}
/** The next instant a price version of these plans takes effect (their answer changes then). */
function nextPriceChange(plans: readonly Plan[], now: Date): number {
  let next = Number.POSITIVE_INFINITY;
  for (const plan of plans) {
    for (const v of plan.versions) {
      const at = v.effectiveAt?.getTime();
      if (at !== undefined && at > now.getTime() && at < next) next = at;
    }
  }
  return next;
}
const marketIdsOf = (plans: Plan[]) =>
  plans.flatMap((p) =>
    p.versions.flatMap((v) => v.prices.map((x) => x.marketId).filter((id): id is string => id !== null)),
  );

/**
 * A list's rendered-cache key, by what the query means: the cursor decoded (base64url decoding
 * skips characters outside its alphabet, so many spellings name one page; keyed raw, each would
 * render and take an LRU slot of its own), the parts JSON-encoded so none can run into the next.
 * An invalid cursor throws the 400 before anything is cached.
 */
export const listKey = (list: string, limit: number, cursor: string | undefined, product?: string): string =>
  JSON.stringify([list, limit, decodeCursor(cursor) ?? null, product ?? null]);

export function catalogRoutes(
  app: FastifyInstance,
  deps: { catalog: CatalogService; uow: UnitOfWork; now: () => Date },
) {
  const r = app.withTypeProvider<ZodTypeProvider>();
  const { catalog, uow } = deps;
  const tags = ['Catalog'];
  // Reads of the catalog snapshot answer stored bytes while the snapshot is the same (ADR 0018).
  const rendered = new RenderedCache();
  /** The answer under `key`, rendered at `now` from the snapshot served now, or the stored one. */
  const fromSnapshot = async (
    reply: FastifyReply,
    key: string,
    schema: ZodType,
    render: (now: Date) => Promise<{ value: unknown; until?: number }>,
  ) => {
    const now = deps.now();
    return rendered.send(reply, key, await catalog.servedVersion(), now.getTime(), schema, () => render(now));
  };

  r.post(
    '/v1/markets',
    {
      schema: {
        tags,
        summary: 'Create a market',
        body: marketBody,
        response: { 201: marketDto, ...problemResponses },
      },
      config: { scope: 'catalog:write', action: 'markets.create', resourceType: 'market' },
    },
    (req, reply) =>
      uow.run(req, reply, async (trx) => {
        const market = await catalog.createMarket(req.body, trx);
        return { status: 201, body: marketToDto(market), resourceId: market.id };
      }),
  );
  r.patch(
    '/v1/markets/:id',
    {
      schema: {
        tags,
        summary: "Change a market's locale or seller",
        description:
          'Fields left out stay as they are; `seller: null` removes the seller. Code, currency and tax of a ' +
          'market never change (every price and invoice carries them). Invoices show the seller as it is when ' +
          'their PDF is made.',
        params: refParams,
        body: marketPatch,
        response: { 200: marketDto, ...problemResponses },
      },
      config: { scope: 'catalog:write', action: 'markets.update', resourceType: 'market' },
    },
    (req, reply) =>
      uow.run(req, reply, async (trx) => {
        const market = await catalog.updateMarket(req.params.id, req.body, trx);
        return { status: 200, body: marketToDto(market), resourceId: market.id };
      }),
  );
  r.get(
    '/v1/markets',
    {
      schema: { tags, summary: 'List markets', querystring: pageQuery, response: { 200: listOf(marketDto) } },
      config: { scope: 'catalog:read' },
    },
    async (req, reply) =>
      fromSnapshot(
        reply,
        listKey('markets', req.query.limit, req.query.cursor),
        listOf(marketDto),
        async () => ({
          value: toPage(
            await catalog.listMarkets({ limit: req.query.limit, after: decodeCursor(req.query.cursor) }),
            req.query.limit,
            marketToDto,
          ),
        }),
      ),
  );
  r.get(
    '/v1/markets/:id',
    {
      schema: {
        tags,
        summary: 'Get a market by id or code',
        params: refParams,
        response: { 200: marketDto, ...problemResponses },
      },
      config: { scope: 'catalog:read' },
    },
    async (req, reply) =>
      fromSnapshot(reply, `market\u0000${req.params.id}`, marketDto, async () => ({
        value: marketToDto(await catalog.getMarket(req.params.id)),
      })),
  );

  r.post(
    '/v1/products',
    {
      schema: {
        tags,
        summary: 'Create a product',
        body: productBody,
        response: { 201: productDto, ...problemResponses },
      },
      config: { scope: 'catalog:write', action: 'products.create', resourceType: 'product' },
    },
    (req, reply) =>
      uow.run(req, reply, async (trx) => {
        const product = await catalog.createProduct(req.body, trx);
        return { status: 201, body: productToDto(product), resourceId: product.id };
      }),
  );
  r.get(
    '/v1/products',
    {
      schema: {
        tags,
        summary: 'List products',
        querystring: pageQuery,
        response: { 200: listOf(productDto) },
      },
      config: { scope: 'catalog:read' },
    },
    async (req, reply) =>
      fromSnapshot(
        reply,
        listKey('products', req.query.limit, req.query.cursor),
        listOf(productDto),
        async () => ({
          value: toPage(
            await catalog.listProducts({ limit: req.query.limit, after: decodeCursor(req.query.cursor) }),
            req.query.limit,
            productToDto,
          ),
        }),
      ),
  );
  r.get(
    '/v1/products/:id',
    {
      schema: {
        tags,
        summary: 'Get a product by id or code',
        params: refParams,
        response: { 200: productDto, ...problemResponses },
      },
      config: { scope: 'catalog:read' },
    },
    async (req, reply) =>
      fromSnapshot(reply, `product\u0000${req.params.id}`, productDto, async () => ({
        value: productToDto(await catalog.getProduct(req.params.id)),
      })),
  );

  r.post(
    '/v1/plans',
    {
      schema: {
        tags,
        summary: 'Create a plan with its first prices',
        body: planBody,
        response: { 201: planDto, ...problemResponses },
      },
      config: { scope: 'catalog:write', action: 'plans.create', resourceType: 'plan' },
    },
    (req, reply) =>
      uow.run(req, reply, async (trx) => {
        const plan = await catalog.createPlan(req.body, trx);
        const codes = await catalog.marketCodes(marketIdsOf([plan]), trx);
        return { status: 201, body: planToDto(plan, codes, deps.now()), resourceId: plan.id };
      }),
  );
  r.get(
    '/v1/plans',
    {
      schema: {
        tags,
        summary: 'List plans with the prices in force now',
        querystring: pageQuery.extend({
          product: z.string().min(1).max(64).optional().describe('Product id or code'),
        }),
        response: { 200: listOf(planDto), ...problemResponses },
      },
      config: { scope: 'catalog:read' },
    },
    (req, reply) =>
      fromSnapshot(
        reply,
        listKey('plans', req.query.limit, req.query.cursor, req.query.product),
        listOf(planDto),
        async (now) => {
          const plans = await catalog.listPlans({
            limit: req.query.limit,
            after: decodeCursor(req.query.cursor),
            product: req.query.product,
          });
          const codes = await catalog.marketCodes(marketIdsOf(plans));
          return {
            value: toPage(plans, req.query.limit, (p) => planToDto(p, codes, now)),
            until: nextPriceChange(plans, now),
          };
        },
      ),
  );
  r.get(
    '/v1/plans/:id',
    {
      schema: {
        tags,
        summary: 'Get a plan by id or code',
        params: refParams,
        response: { 200: planDto, ...problemResponses },
      },
      config: { scope: 'catalog:read' },
    },
    (req, reply) =>
      fromSnapshot(reply, `plan\u0000${req.params.id}`, planDto, async (now) => {
        const plan = await catalog.getPlan(req.params.id);
        return {
          value: planToDto(plan, await catalog.marketCodes(marketIdsOf([plan])), now),
          until: nextPriceChange([plan], now),
        };
      }),
  );
  r.post(
    '/v1/plans/:id/price-versions',
    {
      schema: {
        tags,
        summary: 'Schedule new prices (grandfathering existing subscribers until existingSubscribersFrom)',
        params: refParams,
        body: priceVersionBody,
        response: { 201: priceVersionDto, ...problemResponses },
      },
      config: {
        scope: 'catalog:write',
        action: 'plans.price_versions.create',
        resourceType: 'price_version',
      },
    },
    (req, reply) =>
      uow.run(req, reply, async (trx) => {
        const version = await catalog.addPriceVersion(
          req.params.id,
          {
            prices: req.body.prices,
            effectiveAt: new Date(req.body.effectiveAt),
            existingSubscribersFrom: req.body.existingSubscribersFrom
              ? new Date(req.body.existingSubscribersFrom)
              : undefined,
          },
          trx,
        );
        const plan = await catalog.getPlan(req.params.id, trx);
        const codes = await catalog.marketCodes(marketIdsOf([plan]), trx);
        return { status: 201, body: versionToDto(plan.id, version, codes), resourceId: version.id };
      }),
  );
  r.get(
    '/v1/plans/:id/price-versions',
    {
      schema: {
        tags,
        summary: 'Price versions of a plan, oldest first',
        params: refParams,
        querystring: pageQuery,
        response: { 200: listOf(priceVersionDto), ...problemResponses },
      },
      config: { scope: 'catalog:read' },
    },
    async (req) => {
      const { planId, versions } = await catalog.listPriceVersions(req.params.id, {
        limit: req.query.limit,
        after: decodeCursor(req.query.cursor),
      });
      const codes = await catalog.marketCodes(
        versions.flatMap((v) => v.prices.flatMap((x) => (x.marketId ? [x.marketId] : []))),
      );
      return toPage(versions, req.query.limit, (v) => versionToDto(planId, v, codes));
    },
  );
  r.get(
    '/v1/plans/:id/price',
    {
      schema: {
        tags,
        summary: 'The price of this plan in a market at an instant, for a new or an existing subscriber',
        params: refParams,
        querystring: quoteQuery,
        response: { 200: quoteDto, ...problemResponses },
      },
      config: { scope: 'catalog:read' },
    },
    async (req) => {
      const price = await catalog.priceFor(req.params.id, {
        market: req.query.market,
        at: req.query.at ? new Date(req.query.at) : deps.now(),
        subscribedAt: req.query.subscribedAt ? new Date(req.query.subscribedAt) : null,
      });
      return {
        plan: price.planId,
        market: price.market.code,
        currency: price.currency,
        amount: price.amountMinor,
        taxInclusive: price.market.taxInclusive,
        taxRateBps: price.market.taxRateBps,
        priceVersion: price.version,
        source: price.source,
      };
    },
  );
}
