import type { FastifyInstance } from 'fastify';
import type { ZodTypeProvider } from 'fastify-type-provider-zod';
import { z } from 'zod';
import type { Executor } from '../../db/schema.js';
import type { IdempotencyStore } from '../../http/idempotency.js';
import { decodeCursor, listOf, pageQuery, toPage } from '../../http/pagination.js';
import { problemResponses, timestamp } from '../../http/schemas.js';
import type { UnitOfWork } from '../../http/unit-of-work.js';
import { isoSeconds } from '../../kernel/clock.js';
import { looksLikeId } from '../../kernel/ids.js';
import type { CatalogService } from '../catalog/service.js';
import { type Customer, type CustomerService, PERSONAL_FIELDS } from './service.js';

/**
 * Characters an externalId must not hold: Unicode categories C* (control, format such as U+200B,
 * surrogate, private use, unassigned) and the line/paragraph separators. Two ids that look the
 * same must be the same id. Ordinary spaces inside stay allowed.
 */
const INVISIBLE = /[\p{C}\p{Zl}\p{Zp}]/u;

/** A new customer's externalId: what every route that may create a customer accepts. */
export const externalIdSchema = z
  .string()
  .min(1)
  .max(255)
  .refine((v) => v.trim() === v && v !== '', 'must not be blank or start or end with whitespace')
  .refine(
    (v) => !INVISIBLE.test(v),
    'must not contain control, format, private-use or unassigned characters, or line/paragraph separators',
  )
  .refine((v) => !looksLikeId(v), 'must not have the shape of a Reprise id (e.g. cus_ and 26 characters)');

const customerBody = z.object({
  externalId: externalIdSchema.describe(
    "The identity system's user id; unique; never shaped like a Reprise id",
  ),
  market: z.string().min(1).max(64).describe('Market code or id'),
  email: z.email().max(320).optional(),
  name: z.string().min(1).max(200).optional(),
  billingCycleDay: z
    .number()
    .int()
    .min(1)
    .max(31)
    .optional()
    .describe('Day of month renewals fall on, clamped to month end'),
  testClock: z.string().min(1).max(64).optional().describe('Attach to a test clock (simulated time)'),
});
const customerDto = z.object({
  id: z.string(),
  externalId: z.string(),
  market: z.string().describe('Market code'),
  currency: z.string(),
  email: z.string().nullable(),
  name: z.string().nullable(),
  billingCycleDay: z.number().int().nullable(),
  testClock: z.string().nullable(),
  erased: z.boolean(),
  erasedAt: timestamp.nullable(),
  createdAt: timestamp,
});
const idParams = z.object({ id: z.string().min(1).max(255).describe('Customer id or externalId') });

export function customerRoutes(
  app: FastifyInstance,
  deps: {
    customers: CustomerService;
    catalog: CatalogService;
    uow: UnitOfWork;
    idempotency: IdempotencyStore;
  },
) {
  const r = app.withTypeProvider<ZodTypeProvider>();
  const { customers, catalog, uow, idempotency } = deps;
  const tags = ['Customers'];

  // Inside a unit of work, reads must use its transaction: on PGlite the one session is held by it.
  async function toDto(list: Customer[], trx?: Executor) {
    const markets = new Map<string, { code: string; currency: string }>();
    for (const id of new Set(list.map((c) => c.marketId))) {
      const m = await catalog.getMarket(id, trx);
      markets.set(id, { code: m.code, currency: m.currency });
    }
    return list.map(
      (c): z.infer<typeof customerDto> => ({
        id: c.id,
        externalId: c.externalId,
        market: markets.get(c.marketId)?.code ?? c.marketId,
        currency: markets.get(c.marketId)?.currency ?? '',
        email: c.email,
        name: c.name,
        billingCycleDay: c.billingCycleDay,
        testClock: c.testClockId,
        erased: c.erasedAt !== null,
        erasedAt: c.erasedAt ? isoSeconds(c.erasedAt) : null,
        createdAt: isoSeconds(c.createdAt),
      }),
    );
  }
  const one = async (c: Customer, trx?: Executor) => (await toDto([c], trx))[0]!;

  r.post(
    '/v1/customers',
    {
      schema: {
        tags,
        summary: 'Create a customer',
        body: customerBody,
        response: { 201: customerDto, ...problemResponses },
      },
      config: {
        scope: 'customers:write',
        action: 'customers.create',
        resourceType: 'customer',
        personalFields: PERSONAL_FIELDS,
      },
    },
    (req, reply) =>
      uow.run(req, reply, async (trx) => {
        const customer = await customers.create(req.body, trx);
        return {
          status: 201,
          body: await one(customer, trx),
          resourceId: customer.id,
          // Not stored for replay: a replay reads them from the customer (null once erased).
          personal: { customerId: customer.id, fields: [...PERSONAL_FIELDS] },
        };
      }),
  );
  r.get(
    '/v1/customers',
    {
      schema: {
        tags,
        summary: 'List customers, filtered by externalId or test clock',
        querystring: pageQuery.extend({
          externalId: z.string().min(1).max(255).optional(),
          testClock: z.string().min(1).max(64).optional(),
        }),
        response: { 200: listOf(customerDto), ...problemResponses },
      },
      config: { scope: 'customers:read' },
    },
    async (req) => {
      const rows = await customers.list(
        {
          limit: req.query.limit,
          after: decodeCursor(req.query.cursor),
          externalId: req.query.externalId,
          testClock: req.query.testClock,
        },
        // One inconsistent customer must not hide the others; the operator finds it here.
        (customerId) =>
          req.log.error(
            { customerId, code: 'data_key_missing' },
            'customer data key missing but not erased (interrupted erasure): erase it again',
          ),
      );
      const page = toPage(rows, req.query.limit, (c) => c);
      return { data: await toDto(page.data), nextCursor: page.nextCursor };
    },
  );
  r.get(
    '/v1/customers/:id',
    {
      schema: {
        tags,
        summary: 'Get a customer by id or externalId',
        params: idParams,
        response: { 200: customerDto, ...problemResponses },
      },
      config: { scope: 'customers:read' },
    },
    async (req) => one(await customers.get(req.params.id)),
  );
  r.post(
    '/v1/customers/:id/erase',
    {
      schema: {
        tags,
        summary: 'Erase personal data (GDPR): destroys the data key; ids and amounts remain',
        params: idParams,
        response: { 200: customerDto, ...problemResponses },
      },
      config: { scope: 'customers:write', action: 'customers.erase', resourceType: 'customer' },
    },
    (req, reply) =>
      uow.run(req, reply, async (trx) => {
        const customer = await customers.erase(req.params.id, trx);
        // Stored requests that carried the personal data are retired with it (no replay, no oracle).
        await idempotency.forgetSubject(trx, customer.id);
        return { status: 200, body: await one(customer, trx), resourceId: customer.id };
      }),
  );
}
