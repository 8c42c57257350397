import type { FastifyInstance } from 'fastify';
import type { ZodTypeProvider } from 'fastify-type-provider-zod';
import { z } from 'zod';
import { decodeCursor, encodeCursor, listOf, pageQuery } from '../http/pagination.js';
import { problemResponses, timestamp } from '../http/schemas.js';
import { isoSeconds } from '../kernel/clock.js';
import { type EventEnvelope, type EventsOutbox, formatPosition } from './outbox.js';
import { EVENT_TYPES } from './types.js';

const tags = ['Events'];

export const eventDto = z
  .object({
    id: z.string().describe('evt_…: the dedupe key of every delivery'),
    type: z.string().describe('One of the event types listed under GET /v1/events'),
    createdAt: timestamp,
    data: z
      .looseObject({ object: z.record(z.string(), z.unknown()) })
      .describe('The object the event is about (ids and amounts, never names or emails)'),
    aggregate: z
      .object({ type: z.string(), id: z.string(), version: z.number().int() })
      .describe('What changed and its version: events of one aggregate come in version order'),
  })
  .meta({ id: 'Event' });

/** An event as the API shows it: also the body of every webhook delivery. */
export const eventToDto = (e: EventEnvelope): z.infer<typeof eventDto> => ({
  id: e.id,
  type: e.type,
  createdAt: isoSeconds(e.createdAt),
  data: e.data,
  aggregate: e.aggregate,
});

export function eventRoutes(server: FastifyInstance, deps: { events: EventsOutbox }) {
  const r = server.withTypeProvider<ZodTypeProvider>();
  r.get(
    '/v1/events',
    {
      schema: {
        tags,
        summary: 'Events, oldest first',
        description:
          'Ordered as they committed: an event written by a transaction still running is listed ' +
          'once it ends, never behind a page already read, so polling with `after` (or following ' +
          '`nextCursor`) misses nothing. `type` is one event type or a group ending in `.*` ' +
          `(e.g. \`subscription.*\`); types: ${EVENT_TYPES.join(', ')}. \`after\` is an event id ` +
          '(exclusive); an unknown or pruned one is a 400. `cursor` wins over `after`.',
        querystring: pageQuery.extend({
          type: z
            .string()
            .min(1)
            .max(64)
            .optional()
            .describe('An event type, or a group such as `subscription.*`'),
          after: z.string().min(1).max(64).optional().describe('List events after this event id'),
        }),
        response: { 200: listOf(eventDto), ...problemResponses },
      },
      config: { scope: 'events:read' },
    },
    async (req) => {
      const page = await deps.events.list({
        type: req.query.type,
        after: req.query.after,
        limit: req.query.limit,
        cursor: decodeCursor(req.query.cursor),
      });
      return {
        data: page.events.map(eventToDto),
        nextCursor: page.next ? encodeCursor(formatPosition(page.next)) : null,
      };
    },
  );
  r.get(
    '/v1/events/:id',
    {
      schema: {
        tags,
        summary: 'An event',
        params: z.object({ id: z.string().min(1).max(64) }),
        response: { 200: eventDto, ...problemResponses },
      },
      config: { scope: 'events:read' },
    },
    async (req) => eventToDto(await deps.events.get(req.params.id)),
  );
}
