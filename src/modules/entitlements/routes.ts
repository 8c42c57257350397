import type { FastifyInstance } from 'fastify';
import type { ZodTypeProvider } from 'fastify-type-provider-zod';
import { z } from 'zod';
import { problemResponses, timestamp } from '../../http/schemas.js';
import { ENTITLEMENT_BATCH_MAX, type EntitlementService } from './service.js';

const externalId = z.string().min(1).max(255);
const entitlementDto = z.object({
  externalId: z.string(),
  active: z.boolean(),
  features: z.array(z.string()),
  sources: z.array(
    z.object({ subscription: z.string(), role: z.enum(['owner', 'member']), validUntil: timestamp }),
  ),
});

export function entitlementRoutes(app: FastifyInstance, deps: { entitlements: EntitlementService }) {
  const r = app.withTypeProvider<ZodTypeProvider>();
  const { entitlements } = deps;
  const tags = ['Entitlements'];

  r.get(
    '/v1/entitlements/:externalId',
    {
      schema: {
        tags,
        summary: 'What a user (owner or member) may use now',
        description:
          'Active while a subscription of theirs is trialing, active or past_due within its grace, to its ' +
          '`validUntil` (the period end plus a 24 h renewal margin). An unknown id is `active: false`, not 404.',
        params: z.object({ externalId }),
        response: { 200: entitlementDto, ...problemResponses },
      },
      config: { scope: 'entitlements:read' },
    },
    (req) => entitlements.forExternalId(req.params.externalId),
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
    async (req) => ({ data: await entitlements.batch(req.body.externalIds) }),
  );
}
