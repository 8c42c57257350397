import type { FastifyInstance } from 'fastify';
import type { ZodTypeProvider } from 'fastify-type-provider-zod';
import { z } from 'zod';
import type { AdminCookie } from '../../http/admin-cookie.js';
import { problemResponses, timestamp } from '../../http/schemas.js';
import type { UnitOfWork } from '../../http/unit-of-work.js';
import { isoSeconds } from '../../kernel/clock.js';
import { DomainError } from '../../kernel/errors.js';
import type { ApiKeyService, Principal } from './service.js';
import type { AdminSession, AdminSessionService } from './sessions.js';

export const adminSessionDto = z
  .object({
    keyId: z.string().describe('The API key the session acts as'),
    scopes: z.array(z.string()).describe("The key's scopes: what the console may do"),
    expiresAt: timestamp.describe('When the session ends unless used before (30 min idle, 12 h at most)'),
  })
  .meta({ id: 'AdminSession' });

const toDto = (s: AdminSession): z.infer<typeof adminSessionDto> => ({
  keyId: s.keyId,
  scopes: [...s.scopes],
  expiresAt: isoSeconds(s.expiresAt),
});

const noSession = () =>
  new DomainError('unauthenticated', 'No console session: sign in with POST /v1/admin/sessions.');

/**
 * Admin console sessions (ADR 0022): an API key exchanged for an HttpOnly, SameSite=Strict cookie,
 * so the console never keeps the key in browser storage. The sign-in route is public (it checks
 * the key itself, counted by the failed-authentication limiter like any key); the others act on
 * the session whose cookie authenticated the request.
 */
export function adminSessionRoutes(
  app: FastifyInstance,
  deps: { apiKeys: ApiKeyService; sessions: AdminSessionService; uow: UnitOfWork; cookie: AdminCookie },
) {
  const r = app.withTypeProvider<ZodTypeProvider>();
  const { apiKeys, sessions, uow, cookie } = deps;
  const tags = ['Admin console'];

  r.post(
    '/v1/admin/sessions',
    {
      schema: {
        tags,
        summary: 'Sign in to the admin console: exchange an API key for a session cookie',
        description:
          'Answers 201 with `Set-Cookie: reprise_admin=…; HttpOnly; SameSite=Strict; Path=/` on http; when the ' +
          'request came over https or REPRISE_PUBLIC_URL is https, the cookie is `__Host-reprise_admin=…; HttpOnly; ' +
          'SameSite=Strict; Path=/; Secure`: it then authenticates requests sent without an Authorization header. ' +
          'Only the name of the mode in force is read. The session ends ' +
          'after 30 idle minutes, after 12 hours, at sign-out, or when its key is revoked. An unknown or revoked ' +
          'key is 401 and sets no cookie; failures count against the address like any failed authentication ' +
          '(429 over the budget). A browser request from another origin is 403. No Idempotency-Key: a retry ' +
          'opens another session (a key keeps at most 10).',
        security: [],
        body: z.object({
          apiKey: z.string().min(1).max(512).describe('The API key (never stored by the console)'),
        }),
        response: { 201: adminSessionDto, ...problemResponses },
      },
      config: { public: true, action: 'admin_sessions.create', resourceType: 'admin_session' },
    },
    async (req, reply) => {
      // A browser sends Origin on every POST: a sign-in form posted from another site is refused.
      if (req.headers.origin !== undefined && !cookie.isSameOrigin(req)) {
        throw new DomainError('forbidden', "Sign in from this server's own origin.", {
          extra: { reason: 'cross_origin' },
        });
      }
      const limiter = app.failedAuth;
      const retryAfter = limiter.retryAfterSeconds(req.ip);
      let principal: Principal | null;
      if (retryAfter > 0) {
        // Over the budget only keys this node knows as active get through, as on every route.
        principal = await apiKeys.knownPrincipal(req.body.apiKey);
        if (!principal) {
          reply.header('Retry-After', String(retryAfter));
          throw new DomainError(
            'rate_limited',
            `Too many failed authentications from this address; retry in ${retryAfter} s.`,
          );
        }
      } else {
        principal = await apiKeys.authenticate(req.body.apiKey);
        if (!principal) {
          limiter.fail(req.ip);
          throw new DomainError('unauthenticated', 'The API key is unknown or revoked.');
        }
      }
      // The key is the principal of this write (and of its audit entry).
      req.principal = principal;
      const opener = principal;
      try {
        await uow.run(req, reply, async (trx) => {
          const { session, secret } = await sessions.open(opener, trx);
          cookie.set(req, reply, secret);
          return { status: 201, body: toDto(session), resourceId: session.id };
        });
      } catch (error) {
        // Nothing committed: no cookie either.
        reply.removeHeader('set-cookie');
        throw error;
      }
    },
  );

  r.get(
    '/v1/admin/sessions/current',
    {
      schema: {
        tags,
        summary: 'The console session of this request’s cookie',
        description: '401 when the request carries no live session cookie (a Bearer key has no session).',
        response: { 200: adminSessionDto, ...problemResponses },
      },
    },
    async (req) => {
      if (!req.adminSession) throw noSession();
      return toDto(req.adminSession);
    },
  );

  r.delete(
    '/v1/admin/sessions/current',
    {
      schema: {
        tags,
        summary: 'Sign out: end the session on the server and clear the cookie',
        description:
          'The session is deleted: its cookie stops working on every node at once. Like every cookie-' +
          'authenticated write, it must come from the server’s own origin (403 otherwise).',
        response: { 204: z.undefined().describe('Signed out'), ...problemResponses },
      },
      config: { action: 'admin_sessions.delete', resourceType: 'admin_session' },
    },
    async (req, reply) => {
      const session = req.adminSession;
      if (!session) throw noSession();
      await uow.run(req, reply, async (trx) => {
        await sessions.close(session.id, trx);
        cookie.clear(req, reply);
        return { status: 204, body: undefined, resourceId: session.id };
      });
    },
  );
}
