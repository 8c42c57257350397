import rateLimit from '@fastify/rate-limit';
import swagger from '@fastify/swagger';
import swaggerUi from '@fastify/swagger-ui';
import Fastify, { type FastifyInstance, type FastifyServerOptions } from 'fastify';
import { jsonSchemaTransform, serializerCompiler, validatorCompiler } from 'fastify-type-provider-zod';
import type { Registry } from 'prom-client';
import type { PoolStats } from '../db/engine.js';
import type { Db } from '../db/schema.js';
import { DomainError } from '../kernel/errors.js';
import { newId } from '../kernel/ids.js';
import { grants } from '../modules/api-keys/scopes.js';
import type { ApiKeyService } from '../modules/api-keys/service.js';
import type { AuditService } from '../modules/audit/service.js';
import type { IdempotencyStore } from './idempotency.js';
import { installMetrics } from './metrics.js';
import { problem, sendProblem, toProblem } from './problem.js';
import './context.js';

export interface ServerDeps {
  db: Db;
  apiKeys: ApiKeyService;
  idempotency: IdempotencyStore;
  audit: AuditService;
  poolStats: () => PoolStats;
  engine: string;
  isReady: () => boolean;
  /** Adds module metrics (e.g. payment routing) to the server's registry. */
  registerMetrics?: (registry: Registry) => void;
}

export interface ServerOptions {
  logger: FastifyServerOptions['logger'];
  bodyLimitBytes: number;
  rateLimitPerMinute: number;
}

const MUTATING = new Set(['POST', 'PUT', 'PATCH', 'DELETE']);
const REQUEST_ID_SHAPE = /^[A-Za-z0-9._:-]{1,128}$/;

/**
 * The HTTP shell shared by every module: request ids, JSON logs, auth and scopes, per-key rate
 * limits, idempotency, problem+json errors, OpenAPI, /health and /metrics. Modules add routes.
 * Hook order on a /v1 request: auth (onRequest) → rate limit → validation → idempotency claim
 * (preHandler) → handler (unit of work) → idempotency fallback (onSend) → audit fallback and
 * metrics (onResponse).
 */
export async function buildServer(deps: ServerDeps, options: ServerOptions): Promise<FastifyInstance> {
  const app = Fastify({
    logger: options.logger,
    bodyLimit: options.bodyLimitBytes,
    requestIdHeader: false,
    genReqId: (req) => {
      const given = req.headers['x-request-id'];
      return typeof given === 'string' && REQUEST_ID_SHAPE.test(given) ? given : newId('request');
    },
    return503OnClosing: true,
    forceCloseConnections: 'idle',
  });
  app.setValidatorCompiler(validatorCompiler);
  app.setSerializerCompiler(serializerCompiler);

  app.setErrorHandler((error, request, reply) => sendProblem(reply, toProblem(error, request)));
  app.setNotFoundHandler((request, reply) =>
    sendProblem(reply, problem('not_found', `No route ${request.method} ${request.url.split('?')[0]}.`)),
  );

  app.addHook('onRequest', async (request, reply) => {
    reply.header('Request-Id', request.id);
    if (!request.url.startsWith('/v1/') || request.routeOptions.config?.public) return;
    const header = request.headers.authorization;
    const match = typeof header === 'string' ? /^Bearer\s+(\S+)$/i.exec(header) : null;
    if (!match) {
      throw new DomainError('unauthenticated', 'Send an API key as `Authorization: Bearer <key>`.');
    }
    const principal = await deps.apiKeys.authenticate(match[1]!);
    if (!principal) throw new DomainError('unauthenticated', 'The API key is unknown or revoked.');
    request.principal = principal;
    const needed = request.routeOptions.config?.scope;
    if (needed && !grants(principal.scopes, needed)) {
      throw new DomainError('forbidden', `This API key lacks the '${needed}' scope.`, {
        extra: { requiredScope: needed },
      });
    }
  });

  await app.register(rateLimit, {
    global: true,
    max: options.rateLimitPerMinute,
    timeWindow: 60_000,
    hook: 'onRequest',
    keyGenerator: (request) => request.principal?.keyId ?? `ip:${request.ip}`,
    allowList: (request) => !request.url.startsWith('/v1/'),
    errorResponseBuilder: (_request, context) => {
      const err = new DomainError(
        'rate_limited',
        `Rate limit of ${context.max} requests per minute exceeded; retry in ${context.after}.`,
      );
      return Object.assign(err, { statusCode: 429 });
    },
  });

  app.addHook('preHandler', async (request, reply) => {
    const key = request.headers['idempotency-key'];
    if (request.method !== 'POST' || key === undefined || !request.principal) return;
    const keyText = Array.isArray(key) ? key.join(',') : key;
    const run = await deps.idempotency.begin(request, reply, request.principal.keyId, keyText);
    if (!run) return reply;
  });

  // Fallback for responses no unit of work stored: errors (4xx stored, 5xx released) and handlers
  // that answered without one.
  app.addHook('onSend', async (request, reply, payload) => {
    const claim = request.idempotency;
    if (!claim || claim.settled || !request.principal) return payload;
    try {
      if (reply.statusCode >= 500) await deps.idempotency.release(request.principal.keyId, claim);
      else if (typeof payload === 'string') {
        await deps.idempotency.complete(deps.db, request.principal.keyId, claim, reply.statusCode, payload);
      }
    } catch (error) {
      request.log.warn({ err: error }, 'could not store the idempotent response');
    }
    return payload;
  });

  // Every mutating call is audited: successes in their own transaction (unit of work), refusals here.
  app.addHook('onResponse', async (request, reply) => {
    if (
      request.audited ||
      !MUTATING.has(request.method) ||
      !request.principal ||
      !request.url.startsWith('/v1/')
    )
      return;
    if (reply.getHeader('Idempotent-Replayed') === 'true') return;
    const config = request.routeOptions.config ?? {};
    try {
      await deps.audit.record(deps.db, {
        apiKeyId: request.principal.keyId,
        action: config.action ?? `${request.method} ${request.routeOptions.url ?? 'unmatched'}`,
        resourceType: config.resourceType ?? 'unknown',
        resourceId: null,
        requestId: request.id,
        status: reply.statusCode,
      });
    } catch (error) {
      request.log.warn({ err: error }, 'could not write the audit entry');
    }
  });

  const registry = installMetrics(app, deps.poolStats, deps.engine);
  deps.registerMetrics?.(registry);

  await app.register(swagger, {
    openapi: {
      openapi: '3.1.0',
      info: {
        title: 'Reprise API',
        version: '1',
        description:
          'Commerce platform for subscription products. Amounts are integers in the currency minor unit; ' +
          'errors are RFC 9457 problem+json with a stable `code`; every POST accepts `Idempotency-Key`.',
      },
      components: {
        securitySchemes: { apiKey: { type: 'http', scheme: 'bearer', description: 'Reprise API key' } },
      },
      security: [{ apiKey: [] }],
    },
    // Every POST documents the Idempotency-Key header it accepts.
    transform: (input) => {
      const out = jsonSchemaTransform(input);
      if (input.route.method === 'POST' && input.url.startsWith('/v1/')) {
        const schema = out.schema as Record<string, unknown>;
        schema.headers = {
          type: 'object',
          properties: {
            'idempotency-key': {
              type: 'string',
              minLength: 1,
              maxLength: 255,
              description:
                'Retry-safe key: same key and body replay the first answer (Idempotent-Replayed: true)',
            },
          },
        };
      }
      return out;
    },
  });
  await app.register(swaggerUi, {
    routePrefix: '/docs',
    uiConfig: { docExpansion: 'list', deepLinking: true },
  });

  app.get('/openapi.json', { schema: { hide: true } }, async () => app.swagger());
  app.get('/health', { schema: { hide: true } }, async (_request, reply) => {
    if (!deps.isReady()) return sendProblem(reply, problem('service_unavailable', 'Not ready.'));
    return { status: 'ok' };
  });
  app.get('/metrics', { schema: { hide: true } }, async (_request, reply) => {
    reply.type(registry.contentType);
    return registry.metrics();
  });
  return app;
}
