import type { IncomingMessage, ServerResponse } from 'node:http';
import rateLimit from '@fastify/rate-limit';
import swagger from '@fastify/swagger';
import swaggerUi from '@fastify/swagger-ui';
import Fastify, { type FastifyInstance, type FastifyServerOptions } from 'fastify';
import {
  jsonSchemaTransform,
  jsonSchemaTransformObject,
  serializerCompiler,
  validatorCompiler,
} from 'fastify-type-provider-zod';
import type { Registry } from 'prom-client';
import type { PoolStats } from '../db/engine.js';
import type { Db } from '../db/schema.js';
import { DomainError } from '../kernel/errors.js';
import { newId } from '../kernel/ids.js';
import type { ApiKeyService } from '../modules/api-keys/service.js';
import type { AdminSessionService } from '../modules/api-keys/sessions.js';
import type { AuditService } from '../modules/audit/service.js';
import { AdminCookie } from './admin-cookie.js';
import { FailedAuthLimiter, installAuth, type PageSessionAuth } from './auth.js';
import type { IdempotencyStore } from './idempotency.js';
import { installInputGuards } from './input-guards.js';
import { installMetrics } from './metrics.js';
import { clientErrorResponse, PROBLEM_CONTENT_TYPE, problem, sendProblem, toProblem } from './problem.js';
import './context.js';

export interface ServerDeps {
  db: Db;
  apiKeys: ApiKeyService;
  /** Admin console sessions: without them, no cookie authenticates (ADR 0022). */
  adminSessions?: AdminSessionService;
  idempotency: IdempotencyStore;
  audit: AuditService;
  poolStats: () => PoolStats;
  engine: string;
  isReady: () => boolean;
  /** Adds module metrics (e.g. payment routing) to the server's registry. */
  registerMetrics?: (registry: Registry) => void;
  /** Verifiers of hosted pages' session secrets (checkout, portal). */
  pageSessions?: PageSessionAuth;
  /** The console cookie's name, flags and CSRF origin (REPRISE_PUBLIC_URL when configured). */
  adminCookie?: AdminCookie;
}

export interface ServerOptions {
  logger: FastifyServerOptions['logger'];
  bodyLimitBytes: number;
  rateLimitPerMinute: number;
  /** Failed authentications one client address may make per minute before unknown keys are refused unseen. */
  authFailuresPerMinute: number;
  /** Whole request (headers and body) must arrive within this; a slow client is cut off (slowloris). */
  requestTimeoutMs: number;
  /** Fastify's `trustProxy`: false, true, a hop count, or addresses/CIDRs of trusted proxies. */
  trustProxy: boolean | number | string;
}

const MUTATING = new Set(['POST', 'PUT', 'PATCH', 'DELETE']);
/** Methods that take an `Idempotency-Key` (as the IETF Idempotency-Key draft has it: POST and PATCH). */
const KEYED = new Set(['POST', 'PATCH']);
const REQUEST_ID_SHAPE = /^[A-Za-z0-9._:-]{1,128}$/;
/** Encoded path parameters may be long (an externalId is up to 255 characters, each up to 12 encoded). */
const PARAM_LENGTH_MAX = 4096;

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
    genReqId: requestIdOf,
    return503OnClosing: true,
    forceCloseConnections: 'idle',
    // A hop count is accepted at runtime (proxy-addr) though Fastify's types omit it.
    trustProxy: options.trustProxy as boolean | string,
    routerOptions: { maxParamLength: PARAM_LENGTH_MAX },
    // Node checks these deadlines on an interval: check often enough that they hold.
    requestTimeout: options.requestTimeoutMs,
    connectionTimeout: options.requestTimeoutMs * 2,
    http: {
      headersTimeout: Math.min(options.requestTimeoutMs, 20_000),
      connectionsCheckingInterval: Math.min(1_000, options.requestTimeoutMs),
    },
    // Errors the router raises before any route matches (bad percent-encoding) are problems too.
    frameworkErrors: (error, request, reply) => sendProblem(reply, toProblem(error, request)),
    clientErrorHandler: (err: NodeJS.ErrnoException, socket) => {
      if (err.code === 'ECONNRESET' || socket.destroyed) return;
      if (socket.writable) socket.write(clientErrorResponse(err));
      socket.destroy(err);
    },
  });
  // An Expect other than 100-continue never reaches Fastify: Node would answer a bare 417.
  app.server.on('checkExpectation', (req: IncomingMessage, res: ServerResponse) => {
    const p = problem('validation_failed', 'Only Expect: 100-continue is supported.', [
      { path: 'Expect', in: 'header', message: 'must be 100-continue or absent' },
    ]);
    const requestId = requestIdOf(req);
    const body = JSON.stringify({ ...p, status: 417, requestId });
    res.writeHead(417, {
      'content-type': PROBLEM_CONTENT_TYPE,
      'content-length': Buffer.byteLength(body),
      'request-id': requestId,
      // The body the client may still send is not read: the connection is not reused.
      connection: 'close',
    });
    res.end(body);
  });
  // Only JSON bodies: a text/plain body is 415, not a string that fails validation.
  app.removeContentTypeParser('text/plain');
  app.setValidatorCompiler(validatorCompiler);
  app.setSerializerCompiler(serializerCompiler);

  app.setErrorHandler((error, request, reply) => sendProblem(reply, toProblem(error, request)));
  app.setNotFoundHandler((request, reply) =>
    sendProblem(
      reply,
      problem('not_found', `No route ${request.method} ${request.url.split('?')[0]!.slice(0, 200)}.`),
    ),
  );

  const failedAuth = new FailedAuthLimiter(options.authFailuresPerMinute);
  app.decorate('failedAuth', failedAuth);
  const adminCookie = deps.adminCookie ?? new AdminCookie();
  installAuth(app, deps.apiKeys, failedAuth, deps.pageSessions, deps.adminSessions, adminCookie);
  installInputGuards(app);

  await app.register(rateLimit, {
    global: true,
    max: options.rateLimitPerMinute,
    timeWindow: 60_000,
    hook: 'onRequest',
    keyGenerator: (request) => request.principal?.keyId ?? `ip:${request.ip}`,
    allowList: (request) => request.routeOptions.config?.public === true,
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
    if (!KEYED.has(request.method) || key === undefined || !request.principal) return;
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
      // A handler's `idempotency_key_reused` (the first request's effect keeps this key, e.g. a
      // payment after a 202) is not this key's answer either: stored, it would refuse the first
      // request's own retry forever. (begin()'s own 422 comes before any claim.)
      if (reply.statusCode >= 500 || isKeyReused(reply.statusCode, payload)) {
        await deps.idempotency.release(request.principal.keyId, claim);
      } else if (typeof payload === 'string') {
        await deps.idempotency.complete(deps.db, request.principal.keyId, claim, reply.statusCode, payload);
      }
    } catch (error) {
      request.log.warn({ err: error }, 'could not store the idempotent response');
    }
    return payload;
  });

  // Every mutating call is audited: successes in their own transaction (unit of work), refusals here.
  app.addHook('onResponse', async (request, reply) => {
    if (request.audited || !MUTATING.has(request.method) || !request.principal) return;
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
        securitySchemes: {
          apiKey: { type: 'http', scheme: 'bearer', description: 'Reprise API key' },
          adminSession: {
            type: 'apiKey',
            in: 'cookie',
            name: adminCookie.configuredName,
            description:
              'Admin console session (POST /v1/admin/sessions): `reprise_admin` on http, `__Host-reprise_admin` ' +
              '(Secure) when REPRISE_PUBLIC_URL is https or the request came over https; writes must send ' +
              "the server's own Origin (REPRISE_PUBLIC_URL when set)",
          },
        },
      },
      security: [{ apiKey: [] }, { adminSession: [] }],
    },
    // Schemas registered with an id (`.meta({ id })`) become components/schemas, referenced by name.
    transformObject: jsonSchemaTransformObject,
    // Every POST and PATCH documents the Idempotency-Key header it accepts (public routes have no key to scope it).
    transform: (input) => {
      const out = jsonSchemaTransform(input);
      const method = input.route.method;
      const isPublic = (input.route.config as { public?: boolean } | undefined)?.public === true;
      if (typeof method === 'string' && KEYED.has(method) && input.url.startsWith('/v1/') && !isPublic) {
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

  const open = { public: true } as const;
  app.get('/openapi.json', { schema: { hide: true }, config: open }, async () => app.swagger());
  app.get('/health', { schema: { hide: true }, config: open }, async (_request, reply) => {
    if (!deps.isReady()) return sendProblem(reply, problem('service_unavailable', 'Not ready.'));
    return { status: 'ok' };
  });
  app.get('/metrics', { schema: { hide: true }, config: open }, async (_request, reply) => {
    reply.type(registry.contentType);
    return registry.metrics();
  });
  return app;
}

/** The caller's `X-Request-Id` when it is well-formed, else a new id. */
function requestIdOf(req: IncomingMessage): string {
  const given = req.headers['x-request-id'];
  return typeof given === 'string' && REQUEST_ID_SHAPE.test(given) ? given : newId('request');
}

function isKeyReused(status: number, payload: unknown): boolean {
  if (status !== 422 || typeof payload !== 'string') return false;
  try {
    return (JSON.parse(payload) as { code?: unknown }).code === 'idempotency_key_reused';
  } catch {
    return false;
  }
}
