import type { FastifyInstance } from 'fastify';
import type { ZodTypeProvider } from 'fastify-type-provider-zod';
import { z } from 'zod';
import { decodeCursor, listOf, pageQuery, toPage } from '../../http/pagination.js';
import { problemResponses, timestamp } from '../../http/schemas.js';
import type { UnitOfWork } from '../../http/unit-of-work.js';
import { isoSeconds } from '../../kernel/clock.js';
import { SCOPES } from './scopes.js';
import type { ApiKey, ApiKeyService } from './service.js';

const keyDto = z.object({
  id: z.string(),
  name: z.string(),
  scopes: z.array(z.string()),
  secretHint: z.string().describe('First and last characters of the secret, to recognise it'),
  createdAt: timestamp,
  revokedAt: timestamp.nullable(),
});
const createdDto = keyDto.extend({ secret: z.string().describe('Shown once; store it now') });
const toDto = (k: ApiKey): z.infer<typeof keyDto> => ({
  id: k.id,
  name: k.name,
  scopes: k.scopes,
  secretHint: k.secretHint,
  createdAt: isoSeconds(k.createdAt),
  revokedAt: k.revokedAt ? isoSeconds(k.revokedAt) : null,
});

export function apiKeyRoutes(app: FastifyInstance, deps: { apiKeys: ApiKeyService; uow: UnitOfWork }) {
  const r = app.withTypeProvider<ZodTypeProvider>();
  const { apiKeys, uow } = deps;
  const tags = ['API keys'];

  r.post(
    '/v1/api-keys',
    {
      schema: {
        tags,
        summary: 'Create an API key (the secret is returned once)',
        body: z.object({
          name: z.string().min(1).max(200),
          scopes: z.array(z.enum(SCOPES)).min(1).max(SCOPES.length),
        }),
        response: { 201: createdDto, ...problemResponses },
      },
      config: { scope: 'admin', action: 'api_keys.create', resourceType: 'api_key' },
    },
    (req, reply) =>
      uow.run(req, reply, async (trx) => {
        const { key, secret } = await apiKeys.create(req.body, trx);
        return { status: 201, body: { ...toDto(key), secret }, resourceId: key.id };
      }),
  );
  r.get(
    '/v1/api-keys',
    {
      schema: {
        tags,
        summary: 'List API keys (never their secrets)',
        querystring: pageQuery,
        response: { 200: listOf(keyDto) },
      },
      config: { scope: 'admin' },
    },
    async (req) =>
      toPage(
        await apiKeys.list({ limit: req.query.limit + 1, after: decodeCursor(req.query.cursor) }),
        req.query.limit,
        toDto,
      ),
  );
  r.post(
    '/v1/api-keys/:id/revoke',
    {
      schema: {
        tags,
        summary: 'Revoke an API key',
        params: z.object({ id: z.string().min(1).max(64) }),
        response: { 200: keyDto, ...problemResponses },
      },
      config: { scope: 'admin', action: 'api_keys.revoke', resourceType: 'api_key' },
    },
    (req, reply) =>
      uow.run(req, reply, async (trx) => {
        const key = await apiKeys.revoke(req.params.id, trx);
        return { status: 200, body: toDto(key), resourceId: key.id };
      }),
  );
}
