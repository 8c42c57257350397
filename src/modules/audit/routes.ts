import type { FastifyInstance } from 'fastify';
import type { ZodTypeProvider } from 'fastify-type-provider-zod';
import { z } from 'zod';
import { decodeCursor, listOf, pageQuery, toPage } from '../../http/pagination.js';
import { timestamp } from '../../http/schemas.js';
import { isoSeconds } from '../../kernel/clock.js';
import type { AuditEntry, AuditService } from './service.js';

export const auditEntryDto = z
  .object({
    id: z.string(),
    apiKey: z.string(),
    action: z.string(),
    resourceType: z.string(),
    resource: z.string().nullable(),
    requestId: z.string().nullable(),
    status: z.number().int(),
    at: timestamp,
  })
  .meta({ id: 'AuditEntry' });
export const toAuditEntryDto = (e: AuditEntry): z.infer<typeof auditEntryDto> => ({
  ...e,
  at: isoSeconds(e.at),
});

export function auditRoutes(app: FastifyInstance, deps: { audit: AuditService }) {
  app.withTypeProvider<ZodTypeProvider>().get(
    '/v1/audit-log',
    {
      schema: {
        tags: ['Audit log'],
        summary: 'Every mutating call: who (API key), what, on which resource, when, through which request',
        querystring: pageQuery.extend({
          resource: z.string().max(64).optional(),
          apiKey: z.string().max(64).optional(),
          action: z.string().max(100).optional(),
        }),
        response: { 200: listOf(auditEntryDto) },
      },
      config: { scope: 'admin' },
    },
    async (req) =>
      toPage(
        await deps.audit.list({
          limit: req.query.limit + 1,
          after: decodeCursor(req.query.cursor),
          resource: req.query.resource,
          apiKey: req.query.apiKey,
          action: req.query.action,
        }),
        req.query.limit,
        toAuditEntryDto,
      ),
  );
}
