import type { FastifyInstance, FastifyRequest } from 'fastify';
import { LRUCache } from 'lru-cache';
import { DomainError } from '../kernel/errors.js';
import { grants } from '../modules/api-keys/scopes.js';
import type { ApiKeyService, Principal } from '../modules/api-keys/service.js';
import type { AdminSessionService } from '../modules/api-keys/sessions.js';
import { AdminCookie } from './admin-cookie.js';
import './context.js';

const FAILURE_WINDOW_MS = 60_000;
/** Client addresses tracked at once; the oldest are forgotten first (bounded memory under a flood). */
const ADDRESSES_TRACKED_MAX = 100_000;
const BEARER = /^Bearer[ \t]+([\x21-\x7e]{1,512})$/i;
const MUTATING = new Set(['POST', 'PUT', 'PATCH', 'DELETE']);

/**
 * Failed authentications per client address in a fixed one-minute window. Over the budget, the
 * address only gets through with a key this node holds as active (anything else is refused without
 * a database lookup): guessing is slowed, authenticated traffic behind the same address is not.
 */
export class FailedAuthLimiter {
  readonly #budget: number;
  readonly #windows = new LRUCache<string, { count: number; startMs: number }>({
    max: ADDRESSES_TRACKED_MAX,
  });
  readonly #nowMs: () => number;

  constructor(failuresPerMinuteMax: number, nowMs: () => number = () => performance.now()) {
    this.#budget = failuresPerMinuteMax;
    this.#nowMs = nowMs;
  }

  #window(address: string) {
    const now = this.#nowMs();
    const w = this.#windows.get(address);
    if (w && now - w.startMs < FAILURE_WINDOW_MS) return w;
    return undefined;
  }

  /** Seconds until the address may try unknown keys again, or 0 when it is within its budget. */
  retryAfterSeconds(address: string): number {
    const w = this.#window(address);
    if (!w || w.count < this.#budget) return 0;
    return Math.max(1, Math.ceil((w.startMs + FAILURE_WINDOW_MS - this.#nowMs()) / 1000));
  }

  fail(address: string): void {
    const w = this.#window(address);
    if (w) w.count += 1;
    else this.#windows.set(address, { count: 1, startMs: this.#nowMs() });
  }
}

export type PageSessionKind = 'checkout' | 'portal';
/**
 * Checks a hosted page's session secret for the matched route's request (its `:id` parameter names
 * the session): the session's principal, or null when the secret is unknown, expired, ended or of
 * another session.
 */
export type PageSessionVerifier = (secret: string, request: FastifyRequest) => Promise<Principal | null>;

/** Verifiers of hosted pages' sessions, registered by the modules that own them. */
export class PageSessionAuth {
  readonly #verifiers = new Map<PageSessionKind, PageSessionVerifier>();

  register(kind: PageSessionKind, verify: PageSessionVerifier): void {
    this.#verifiers.set(kind, verify);
  }

  verifier(kind: PageSessionKind): PageSessionVerifier | undefined {
    return this.#verifiers.get(kind);
  }
}

/**
 * Authentication and scopes, decided on the matched route and never on the raw URL: every route
 * needs an API key unless it is declared `config.public` (health, metrics, docs, provider
 * webhooks that verify their own signature). Requests that match no route need a key too, so an
 * unauthenticated caller learns nothing about which paths exist.
 */
export function installAuth(
  app: FastifyInstance,
  apiKeys: ApiKeyService,
  limiter: FailedAuthLimiter,
  pageSessions: PageSessionAuth = new PageSessionAuth(),
  sessions?: AdminSessionService,
  cookies: AdminCookie = new AdminCookie(),
): void {
  app.addHook('onRequest', async (request, reply) => {
    reply.header('Request-Id', request.id);
    if (request.routeOptions.config?.public === true) return;
    // Answers for a principal are nobody else's: no cache may keep them. A shared cache must not
    // store an answer to a request with Authorization (RFC 9111 §3.5), but nothing stops it for
    // the console's cookie (a customer's name and email in their timeline); a route may say more.
    reply.header('Cache-Control', 'no-store');
    const secret = bearerOf(request);
    const address = request.ip;
    let principal: Principal | null;
    const retryAfter = limiter.retryAfterSeconds(address);
    const pageSession = request.routeOptions.config?.pageSession;
    if (pageSession !== undefined) {
      // A hosted page's route: only its session's secret, never an API key.
      // A valid secret always gets through: guessing from an address over its budget is refused,
      // the customers behind the same address (a proxy, a carrier NAT) are not locked out.
      const verify = pageSessions.verifier(pageSession);
      principal = secret && verify ? await verify(secret, request) : null;
      if (!principal) {
        if (retryAfter > 0) {
          reply.header('Retry-After', String(retryAfter));
          throw new DomainError(
            'rate_limited',
            `Too many failed authentications from this address; retry in ${retryAfter} s.`,
          );
        }
        limiter.fail(address);
        throw new DomainError('unauthenticated', 'This page session is unknown, expired or ended.');
      }
      request.principal = principal;
      return;
    }
    // The admin console's cookie (ADR 0022), only when no Authorization header is sent at all:
    // a Bearer key always wins. Writes must come from our own origin (CSRF, behind SameSite).
    const cookie = sessions && request.headers.authorization === undefined ? cookies.read(request) : null;
    if (sessions && cookie) {
      if (MUTATING.has(request.method) && !cookies.isSameOrigin(request)) {
        throw new DomainError(
          'forbidden',
          "A cookie-authenticated write must come from this server's origin.",
          {
            extra: { reason: 'cross_origin' },
          },
        );
      }
      const session = await sessions.authenticate(cookie);
      if (!session) {
        if (retryAfter > 0) {
          reply.header('Retry-After', String(retryAfter));
          throw new DomainError(
            'rate_limited',
            `Too many failed authentications from this address; retry in ${retryAfter} s.`,
          );
        }
        limiter.fail(address);
        throw new DomainError('unauthenticated', 'The console session ended; sign in again.');
      }
      principal = { keyId: session.keyId, scopes: session.scopes };
      request.adminSession = session;
    } else if (retryAfter > 0) {
      principal = secret ? await apiKeys.knownPrincipal(secret) : null;
      if (!principal) {
        reply.header('Retry-After', String(retryAfter));
        throw new DomainError(
          'rate_limited',
          `Too many failed authentications from this address; retry in ${retryAfter} s.`,
        );
      }
    } else {
      principal = secret ? await apiKeys.authenticate(secret) : null;
      if (!principal) {
        limiter.fail(address);
        throw new DomainError(
          'unauthenticated',
          secret ? 'The API key is unknown or revoked.' : 'Send an API key as `Authorization: Bearer <key>`.',
        );
      }
    }
    request.principal = principal;
    const needed = request.routeOptions.config?.scope;
    if (needed && !grants(principal.scopes, needed)) {
      throw new DomainError('forbidden', `This API key lacks the '${needed}' scope.`, {
        extra: { requiredScope: needed },
      });
    }
  });

  // Routes registered by plugins after this point (the API reference) are public by declaration.
  app.addHook('onRoute', (route) => {
    if (route.url === '/docs' || route.url.startsWith('/docs/')) {
      route.config = { ...(route.config ?? {}), public: true };
    }
  });
}

function bearerOf(request: FastifyRequest): string | null {
  const header = request.headers.authorization;
  if (typeof header !== 'string') return null;
  return BEARER.exec(header)?.[1] ?? null;
}
