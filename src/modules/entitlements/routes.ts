import type { FastifyInstance } from 'fastify';
import type { ZodTypeProvider } from 'fastify-type-provider-zod';
import { z } from 'zod';
import { problemResponses, timestamp } from '../../http/schemas.js';
import type { EntitlementProjection } from './projection.js';
import { ENTITLEMENT_BATCH_MAX } from './service.js';

const externalId = z.string().min(1).max(255);
const entitlementDto = z.object({
  externalId: z.string(),
  active: z.boolean(),
  features: z.array(z.string()),
  sources: z.array(
    z.object({ subscription: z.string(), role: z.enum(['owner', 'member']), validUntil: timestamp }),
  ),
});

const JSON_TYPE = 'application/json; charset=utf-8';
const OPEN = Buffer.from('{"data":[');
const COMMA = Buffer.from(',');
const CLOSE = Buffer.from(']}');

/**
 * The hot path: answers are the projection's precomputed bytes (ADR 0018), sent as they are; the
 * schemas below document them (OpenAPI) and `render` in projection.ts writes exactly that shape.
 */
export function entitlementRoutes(app: FastifyInstance, deps: { projection: EntitlementProjection }) {
  const r = app.withTypeProvider<ZodTypeProvider>();
  const { projection } = deps;
  const tags = ['Entitlements'];

  r.get(
    '/v1/entitlements/:externalId',
    {
      schema: {
        tags,
        summary: 'What a user (owner or member) may use now',
        description:
          'Active while a subscription of theirs is trialing, active or past_due within its grace, to its ' +
          '`validUntil` (the period end plus a 24 h renewal margin). An unknown id is `active: false`, not 404. ' +
          'Served from each node’s in-memory projection, fed by events (a change made on another node is ' +
          'seen within the event lag, well under a second), with the database as the fallback.',
        params: z.object({ externalId }),
        response: { 200: entitlementDto, ...problemResponses },
      },
      config: { scope: 'entitlements:read' },
    },
    async (req, reply) => {
      const body = projection.peek(req.params.externalId) ?? (await projection.load(req.params.externalId));
      return reply.type(JSON_TYPE).send(body as never);
    },
  );
  r.post(
    '/v1/entitlements/batch',
    {
      schema: {
        tags,
        summary: `Entitlements of up to ${ENTITLEMENT_BATCH_MAX} users, in the order asked`,
        body: z.object({ externalIds: z.array(externalId).min(1).max(ENTITLEMENT_BATCH_MAX) }),
        response: { 200: z.object({ data: z.array(entitlementDto) }), ...problemResponses },
      },
      config: { scope: 'entitlements:read' },
    },
    async (req, reply) => {
      const bodies = await projection.getMany(req.body.externalIds);
      const parts: Buffer[] = [OPEN];
      for (const [i, b] of bodies.entries()) {
        if (i > 0) parts.push(COMMA);
        parts.push(b);
      }
      parts.push(CLOSE);
      return reply.type(JSON_TYPE).send(Buffer.concat(parts) as never);
    },
  );
}
