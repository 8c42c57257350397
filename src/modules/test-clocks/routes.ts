import type { FastifyInstance } from 'fastify';
import type { ZodTypeProvider } from 'fastify-type-provider-zod';
import { z } from 'zod';
import { decodeCursor, listOf, pageQuery, toPage } from '../../http/pagination.js';
import { problemResponses, timestamp } from '../../http/schemas.js';
import type { UnitOfWork } from '../../http/unit-of-work.js';
import { isoSeconds } from '../../kernel/clock.js';
import type { TestClock, TestClockService } from './service.js';

const clockDto = z.object({
  id: z.string(),
  name: z.string().nullable(),
  frozenTime: timestamp,
  status: z.enum(['ready', 'advancing']),
  createdAt: timestamp,
});
const advanceDto = clockDto.extend({ jobsRun: z.number().int().describe('Jobs this advance ran') });
const idParams = z.object({ id: z.string().min(1).max(64) });
const toDto = (c: TestClock): z.infer<typeof clockDto> => ({
  id: c.id,
  name: c.name,
  frozenTime: isoSeconds(c.frozenTime),
  status: c.status,
  createdAt: isoSeconds(c.createdAt),
});

export function testClockRoutes(
  app: FastifyInstance,
  deps: { testClocks: TestClockService; uow: UnitOfWork },
) {
  const r = app.withTypeProvider<ZodTypeProvider>();
  const { testClocks, uow } = deps;
  const tags = ['Test clocks'];

  r.post(
    '/v1/test-clocks',
    {
      schema: {
        tags,
        summary: 'Create a test clock',
        body: z.object({
          frozenTime: z.iso.datetime({ offset: true }),
          name: z.string().min(1).max(200).optional(),
        }),
        response: { 201: clockDto, ...problemResponses },
      },
      config: { scope: 'test-clocks:write', action: 'test_clocks.create', resourceType: 'test_clock' },
    },
    (req, reply) =>
      uow.run(req, reply, async (trx) => {
        const clock = await testClocks.create(
          { frozenTime: new Date(req.body.frozenTime), name: req.body.name },
          trx,
        );
        return { status: 201, body: toDto(clock), resourceId: clock.id };
      }),
  );
  r.get(
    '/v1/test-clocks',
    {
      schema: {
        tags,
        summary: 'List test clocks',
        querystring: pageQuery,
        response: { 200: listOf(clockDto) },
      },
      config: { scope: 'test-clocks:read' },
    },
    async (req) =>
      toPage(
        await testClocks.list({ limit: req.query.limit, after: decodeCursor(req.query.cursor) }),
        req.query.limit,
        toDto,
      ),
  );
  r.get(
    '/v1/test-clocks/:id',
    {
      schema: {
        tags,
        summary: 'Get a test clock',
        params: idParams,
        response: { 200: clockDto, ...problemResponses },
      },
      config: { scope: 'test-clocks:read' },
    },
    async (req) => toDto(await testClocks.get(req.params.id)),
  );
  r.post(
    '/v1/test-clocks/:id/advance',
    {
      schema: {
        tags,
        summary: 'Move the clock forward, running every due job of its customers in time order',
        params: idParams,
        body: z.object({ frozenTime: z.iso.datetime({ offset: true }) }),
        response: { 200: advanceDto, ...problemResponses },
      },
      config: { scope: 'test-clocks:write', action: 'test_clocks.advance', resourceType: 'test_clock' },
    },
    async (req, reply) => {
      // Not one transaction: each due job commits on its own, as the real scheduler would.
      const { clock, jobsRun } = await testClocks.advance(req.params.id, new Date(req.body.frozenTime));
      return uow.run(req, reply, async () => ({
        status: 200,
        body: { ...toDto(clock), jobsRun },
        resourceId: clock.id,
      }));
    },
  );
}
