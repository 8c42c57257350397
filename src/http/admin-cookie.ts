import type { FastifyReply, FastifyRequest } from 'fastify';
import type { PublicOrigin } from './public-origin.js';

/**
 * The admin console's session cookie (ADR 0022), parsed here rather than with @fastify/cookie:
 * one cookie of one fixed shape is all we read, and a small bounded parser is easier to audit than
 * a plugin that parses (and signs, and decorates) every cookie of every request.
 */
export const ADMIN_COOKIE = 'reprise_admin';
/**
 * Its name when it is Secure. A browser stores a `__Host-` cookie only when it is Secure, has
 * `Path=/` and no `Domain`, set by this very host over https: a sibling subdomain (or a page on
 * plain http) can neither plant nor overwrite it.
 */
export const SECURE_ADMIN_COOKIE = `__Host-${ADMIN_COOKIE}`;
/** The secret: 32 random bytes, base64url. Anything else is not our cookie. */
const SECRET_SHAPE = /^[A-Za-z0-9_-]{43}$/;
/** A Cookie header longer than this, or with more pairs, is not read at all (bounded work). */
const COOKIE_HEADER_MAX = 8_192;
const COOKIE_PAIRS_MAX = 64;
const ORIGIN_MAX = 2_048;

/**
 * How this server names, sets, reads and guards the console cookie. Secure (and then named
 * `__Host-reprise_admin`) when the request came over https as the server sees it (its
 * trust-proxy setting) or when `REPRISE_PUBLIC_URL` is https (the browser's view, whatever
 * the hop to us); else `reprise_admin`, the embedded default's http. A request reads only the
 * name of its own mode: a plain `reprise_admin` tossed in beside a Secure session is ignored.
 */
export class AdminCookie {
  /** `REPRISE_PUBLIC_URL`'s origin, when configured (never the listening fallback). */
  readonly #configured: string | undefined;

  constructor(publicOrigin?: PublicOrigin) {
    this.#configured = publicOrigin?.configured;
  }

  /** The name as configuration alone decides it (the OpenAPI document's security scheme). */
  get configuredName(): string {
    return this.#configured?.startsWith('https:') ? SECURE_ADMIN_COOKIE : ADMIN_COOKIE;
  }

  /** Whether this request's cookie is Secure, hence `__Host-` named. */
  secure(request: FastifyRequest): boolean {
    return request.protocol === 'https' || this.#configured?.startsWith('https:') === true;
  }

  /** The cookie's name for this request's mode. */
  name(request: FastifyRequest): string {
    return this.secure(request) ? SECURE_ADMIN_COOKIE : ADMIN_COOKIE;
  }

  /**
   * The session secret of the request's Cookie header, or null. Exactly one well-formed cookie of
   * this mode's name must be present: two (one tossed in by a sibling host for a narrower path) are
   * ambiguous, and neither is used. A header over the bounds is not read at all, so a flood of
   * planted cookies cannot push the real one out of view.
   */
  read(request: FastifyRequest): string | null {
    const header = request.headers.cookie;
    if (typeof header !== 'string' || header.length > COOKIE_HEADER_MAX) return null;
    const pairs = header.split(';', COOKIE_PAIRS_MAX + 1);
    if (pairs.length > COOKIE_PAIRS_MAX) return null;
    const name = this.name(request);
    let found: string | null = null;
    let count = 0;
    for (const pair of pairs) {
      const eq = pair.indexOf('=');
      if (eq < 0 || pair.slice(0, eq).trim() !== name) continue;
      count += 1;
      found = pair.slice(eq + 1).trim();
    }
    return count === 1 && found !== null && SECRET_SHAPE.test(found) ? found : null;
  }

  /** A browser-session cookie (no Max-Age): the server ends it after 30 idle minutes or 12 hours. */
  set(request: FastifyRequest, reply: FastifyReply, secret: string): void {
    reply.header('Set-Cookie', `${this.name(request)}=${secret}; ${this.#attributes(request)}`);
  }

  clear(request: FastifyRequest, reply: FastifyReply): void {
    reply.header('Set-Cookie', `${this.name(request)}=; ${this.#attributes(request)}; Max-Age=0`);
  }

  /** Path=/ and no Domain always: what `__Host-` requires, and host-only in http mode too. */
  #attributes(request: FastifyRequest): string {
    return `HttpOnly; SameSite=Strict; Path=/${this.secure(request) ? '; Secure' : ''}`;
  }

  /**
   * Whether the request's `Origin` is the server's own: the CSRF check of cookie-authenticated
   * writes and of the sign-in, behind SameSite=Strict. With `REPRISE_PUBLIC_URL` that origin is the
   * configured one (the Host header is the client's to choose); without it, the scheme as the
   * server sees it and the host from the Host header. A missing, `null` or malformed Origin is
   * not ours.
   */
  isSameOrigin(request: FastifyRequest): boolean {
    const origin = request.headers.origin;
    if (typeof origin !== 'string' || origin.length > ORIGIN_MAX) return false;
    try {
      const own = this.#configured ?? new URL(`${request.protocol}://${request.host}`).origin;
      // Browsers send the serialised origin (lowercase, no default port, no path): compare it exactly.
      return new URL(origin).origin === origin && origin === own;
    } catch {
      return false;
    }
  }
}
