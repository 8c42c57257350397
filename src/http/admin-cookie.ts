import type { FastifyReply, FastifyRequest } from 'fastify';

/**
 * The admin console's session cookie (ADR 0022), parsed here rather than with @fastify/cookie:
 * one cookie of one fixed shape is all we read, and a small bounded parser is easier to audit than
 * a plugin that parses (and signs, and decorates) every cookie of every request.
 */
export const ADMIN_COOKIE = 'reprise_admin';
/** The secret: 32 random bytes, base64url. Anything else is not our cookie. */
const SECRET_SHAPE = /^[A-Za-z0-9_-]{43}$/;
/** A Cookie header longer than this, or with more pairs, is not read (bounded work). */
const COOKIE_HEADER_MAX = 8_192;
const COOKIE_PAIRS_MAX = 64;

/**
 * The session secret of the request's Cookie header, or null. Exactly one well-formed
 * `reprise_admin` must be present: two (one tossed in by a sibling host for a narrower path)
 * are ambiguous, and neither is used.
 */
export function adminCookieOf(request: FastifyRequest): string | null {
  const header = request.headers.cookie;
  if (typeof header !== 'string' || header.length > COOKIE_HEADER_MAX) return null;
  let found: string | null = null;
  let count = 0;
  const pairs = header.split(';', COOKIE_PAIRS_MAX);
  for (const pair of pairs) {
    const eq = pair.indexOf('=');
    if (eq < 0 || pair.slice(0, eq).trim() !== ADMIN_COOKIE) continue;
    count += 1;
    found = pair.slice(eq + 1).trim();
  }
  return count === 1 && found !== null && SECRET_SHAPE.test(found) ? found : null;
}

/** Secure when the request came over https, as the server sees it (its trust-proxy setting). */
function attributes(request: FastifyRequest): string {
  return `HttpOnly; SameSite=Strict; Path=/${request.protocol === 'https' ? '; Secure' : ''}`;
}

/** A browser-session cookie (no Max-Age): the server ends it after 30 idle minutes or 12 hours. */
export function setAdminCookie(request: FastifyRequest, reply: FastifyReply, secret: string): void {
  reply.header('Set-Cookie', `${ADMIN_COOKIE}=${secret}; ${attributes(request)}`);
}

export function clearAdminCookie(request: FastifyRequest, reply: FastifyReply): void {
  reply.header('Set-Cookie', `${ADMIN_COOKIE}=; ${attributes(request)}; Max-Age=0`);
}

/**
 * Whether the request's `Origin` is the server's own origin (scheme from the connection or a
 * trusted proxy, host from the Host header): the CSRF check of cookie-authenticated writes,
 * behind SameSite=Strict. A missing, `null` or malformed Origin is not ours.
 */
export function isSameOrigin(request: FastifyRequest): boolean {
  const origin = request.headers.origin;
  if (typeof origin !== 'string' || origin.length > 2_048) return false;
  try {
    const own = new URL(`${request.protocol}://${request.host}`).origin;
    // Browsers send the serialised origin (lowercase, no default port, no path): compare it exactly.
    return new URL(origin).origin === origin && origin === own;
  } catch {
    return false;
  }
}
