import type { FastifyInstance } from 'fastify';
import type { ZodTypeProvider } from 'fastify-type-provider-zod';
import { z } from 'zod';
import type { EventsOutbox } from '../../events/outbox.js';
import { decodeCursor, listOf, pageQuery, toPage } from '../../http/pagination.js';
import { problemResponses, timestamp } from '../../http/schemas.js';
import type { UnitOfWork } from '../../http/unit-of-work.js';
import { isoSeconds } from '../../kernel/clock.js';
import { EVENT_TYPES_MAX } from './domain/event-types.js';
import { URL_LENGTH_MAX } from './domain/ssrf.js';
import {
  DESCRIPTION_MAX,
  type WebhookDelivery,
  type WebhookEndpoint,
  type WebhookService,
} from './service.js';

const tags = ['Webhooks'];
const scope = 'webhooks:write' as const;

const endpointDto = z.object({
  id: z.string().describe('we_…'),
  url: z.string(),
  eventTypes: z.array(z.string()).describe('Event types, groups such as `invoice.*`, or `*`'),
  description: z.string().nullable(),
  status: z.enum(['enabled', 'disabled']),
  disabledReason: z
    .enum(['requested', 'failing'])
    .nullable()
    .describe('`failing`: disabled after 3 days without a successful delivery'),
  createdAt: timestamp,
  updatedAt: timestamp,
});
const createdDto = endpointDto.extend({
  secret: z
    .string()
    .nullable()
    .describe(
      'whsec_…: shown once. An idempotent replay answers null (rotate the secret if the answer was lost)',
    ),
});
const rotatedDto = z.object({
  id: z.string(),
  secret: z.string().nullable().describe('The new secret, shown once (null in an idempotent replay)'),
  previousSecretExpiresAt: timestamp.describe('Until then the previous secret signs too'),
});
const deliveryDto = z.object({
  id: z.string().describe('wd_…'),
  endpoint: z.string().describe('we_…'),
  event: z.string().describe('evt_…'),
  eventType: z.string(),
  status: z.enum(['pending', 'succeeded', 'failed']),
  attempts: z.number().int(),
  responseCode: z.number().int().nullable().describe("The endpoint's last HTTP status (null: no answer)"),
  lastError: z.string().nullable(),
  lastAttemptAt: timestamp.nullable(),
  nextAttemptAt: timestamp.nullable().describe('When a pending delivery is tried next'),
  createdAt: timestamp,
});

const toEndpointDto = (e: WebhookEndpoint): z.infer<typeof endpointDto> => ({
  id: e.id,
  url: e.url,
  eventTypes: e.eventTypes,
  description: e.description,
  status: e.status,
  disabledReason: e.disabledReason,
  createdAt: isoSeconds(e.createdAt),
  updatedAt: isoSeconds(e.updatedAt),
});
const toDeliveryDto = (d: WebhookDelivery): z.infer<typeof deliveryDto> => ({
  id: d.id,
  endpoint: d.endpointId,
  event: d.eventId,
  eventType: d.eventType,
  status: d.status,
  attempts: d.attempts,
  responseCode: d.responseCode,
  lastError: d.lastError,
  lastAttemptAt: d.lastAttemptAt ? isoSeconds(d.lastAttemptAt) : null,
  nextAttemptAt: d.nextAttemptAt ? isoSeconds(d.nextAttemptAt) : null,
  createdAt: isoSeconds(d.createdAt),
});

const idParams = z.object({ id: z.string().min(1).max(64) });
/** Secrets are never stored for replay (ADR 0019). */
const SECRET_FIELDS = ['secret'];

export function webhookRoutes(
  server: FastifyInstance,
  deps: { webhooks: WebhookService; events: EventsOutbox; uow: UnitOfWork },
) {
  const r = server.withTypeProvider<ZodTypeProvider>();
  const { webhooks, uow } = deps;

  r.post(
    '/v1/webhook-endpoints',
    {
      schema: {
        tags,
        summary: 'Create a webhook endpoint (its secret is returned once)',
        description:
          'Events whose type matches `eventTypes` and that are created after the endpoint are POSTed to `url`, ' +
          'signed in `Reprise-Signature` (`t=<unix seconds>,v1=<hex HMAC-SHA256 of "t.body">`, the scheme ' +
          "Stripe's SDKs verify). The URL must be http(s) and resolve only to public addresses (private, " +
          'loopback and CGNAT ones only within REPRISE_WEBHOOK_ALLOW_CIDRS; link-local, metadata and ' +
          'multicast never). At most 100 endpoints.',
        body: z.object({
          url: z.string().min(1).max(URL_LENGTH_MAX),
          eventTypes: z.array(z.string().min(1).max(64)).min(1).max(EVENT_TYPES_MAX),
          description: z.string().max(DESCRIPTION_MAX).nullable().optional(),
        }),
        response: { 201: createdDto, ...problemResponses },
      },
      config: { scope, action: 'webhook_endpoints.create', resourceType: 'webhook_endpoint' },
    },
    async (req, reply) => {
      webhooks.validate(req.body);
      // Resolution is a network call: before the transaction.
      await webhooks.checkUrl(req.body.url);
      await uow.run(req, reply, async (trx) => {
        const { endpoint, secret } = await webhooks.create(req.body, trx);
        return {
          status: 201,
          body: { ...toEndpointDto(endpoint), secret },
          resourceId: endpoint.id,
          redact: SECRET_FIELDS,
        };
      });
    },
  );
  r.get(
    '/v1/webhook-endpoints',
    {
      schema: {
        tags,
        summary: 'List webhook endpoints (never their secrets)',
        querystring: pageQuery,
        response: { 200: listOf(endpointDto), ...problemResponses },
      },
      config: { scope },
    },
    async (req) =>
      toPage(
        await webhooks.list({ limit: req.query.limit + 1, after: decodeCursor(req.query.cursor) }),
        req.query.limit,
        toEndpointDto,
      ),
  );
  r.get(
    '/v1/webhook-endpoints/:id',
    {
      schema: {
        tags,
        summary: 'A webhook endpoint (never its secret)',
        params: idParams,
        response: { 200: endpointDto, ...problemResponses },
      },
      config: { scope },
    },
    async (req) => toEndpointDto(await webhooks.get(req.params.id)),
  );
  for (const [action, enabled] of [
    ['disable', false],
    ['enable', true],
  ] as const) {
    r.post(
      `/v1/webhook-endpoints/:id/${action}`,
      {
        schema: {
          tags,
          summary: enabled
            ? 'Enable a webhook endpoint (what waited is sent; failures count afresh)'
            : 'Disable a webhook endpoint (nothing is sent to it; pending deliveries wait)',
          params: idParams,
          response: { 200: endpointDto, ...problemResponses },
        },
        config: { scope, action: `webhook_endpoints.${action}`, resourceType: 'webhook_endpoint' },
      },
      (req, reply) =>
        uow.run(req, reply, async (trx) => {
          const endpoint = await webhooks.setEnabled(req.params.id, enabled, trx);
          return { status: 200, body: toEndpointDto(endpoint), resourceId: endpoint.id };
        }),
    );
  }
  r.delete(
    '/v1/webhook-endpoints/:id',
    {
      schema: {
        tags,
        summary: 'Delete a webhook endpoint (its secrets are erased; nothing more is sent)',
        params: idParams,
        response: { 200: z.object({ id: z.string(), deleted: z.literal(true) }), ...problemResponses },
      },
      config: { scope, action: 'webhook_endpoints.delete', resourceType: 'webhook_endpoint' },
    },
    (req, reply) =>
      uow.run(req, reply, async (trx) => {
        const { id } = await webhooks.remove(req.params.id, trx);
        return { status: 200, body: { id, deleted: true }, resourceId: id };
      }),
  );
  r.post(
    '/v1/webhook-endpoints/:id/rotate-secret',
    {
      schema: {
        tags,
        summary: 'A new secret; the previous one keeps signing for 24 hours',
        params: idParams,
        response: { 200: rotatedDto, ...problemResponses },
      },
      config: { scope, action: 'webhook_endpoints.rotate_secret', resourceType: 'webhook_endpoint' },
    },
    (req, reply) =>
      uow.run(req, reply, async (trx) => {
        const rotated = await webhooks.rotateSecret(req.params.id, trx);
        return {
          status: 200,
          body: {
            id: rotated.id,
            secret: rotated.secret,
            previousSecretExpiresAt: isoSeconds(rotated.previousSecretExpiresAt),
          },
          resourceId: rotated.id,
          redact: SECRET_FIELDS,
        };
      }),
  );
  r.get(
    '/v1/webhook-endpoints/:id/deliveries',
    {
      schema: {
        tags,
        summary: "An endpoint's deliveries, newest first",
        params: idParams,
        querystring: pageQuery,
        response: { 200: listOf(deliveryDto), ...problemResponses },
      },
      config: { scope },
    },
    async (req) =>
      toPage(
        await webhooks.deliveries(req.params.id, {
          limit: req.query.limit + 1,
          after: decodeCursor(req.query.cursor),
        }),
        req.query.limit,
        toDeliveryDto,
      ),
  );
  r.post(
    '/v1/events/:id/redeliver',
    {
      schema: {
        tags,
        summary: 'Send an event again now',
        description:
          'To `endpoint`, or to every enabled endpoint that matches the event and existed when it was ' +
          'created; even where it was delivered before. Answers the deliveries made due.',
        params: idParams,
        body: z.object({ endpoint: z.string().min(1).max(64).optional() }).nullish(),
        response: { 202: z.object({ data: z.array(deliveryDto) }), ...problemResponses },
      },
      config: { scope, action: 'events.redeliver', resourceType: 'event' },
    },
    async (req, reply) => {
      const event = await deps.events.get(req.params.id);
      await uow.run(req, reply, async (trx) => {
        const deliveries = await webhooks.redeliver(event, req.body?.endpoint, trx);
        return { status: 202, body: { data: deliveries.map(toDeliveryDto) }, resourceId: event.id };
      });
    },
  );
}
