import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';

/** How long a checkout session can be used after it was created (Stripe's default). */
export const SESSION_TTL_MS = 24 * 3_600_000;
/** Sessions are kept this long after they expired (GET still answers), then pruned. */
export const SESSION_RETENTION_MS = 30 * 24 * 3_600_000;
/**
 * How long one confirm holds its session: every provider call it makes (attaching at each
 * instance, the charge and its retries) fits in it. A confirm whose node died is taken over after.
 */
export const CONFIRM_CLAIM_MS = 5 * 60_000;

/**
 * Cards one session may try: enough for a customer's typos and a second card, not for testing a
 * list of stolen cards through one link. Beyond it the session refuses new attempts (429
 * `too_many_attempts`, as the portal's card attaches: kernel/errors.ts `tooManyAttempts`).
 */
export const ATTEMPTS_MAX = 20;

export const CLIENT_SECRET_PREFIX = 'cs_secret_';

export type SessionStatus = 'open' | 'complete' | 'expired';

/** A new client secret: 32 random bytes, base64url, behind `cs_secret_`. Shown once, stored hashed. */
export function newClientSecret(): string {
  return `${CLIENT_SECRET_PREFIX}${randomBytes(32).toString('base64url')}`;
}

export function sha256(text: string): Buffer {
  return createHash('sha256').update(text, 'utf8').digest();
}

/** Whether `secret` hashes to `hash`, compared in constant time. */
export function secretMatches(secret: string, hash: Uint8Array): boolean {
  const presented = sha256(secret);
  return hash.length === presented.length && timingSafeEqual(presented, hash);
}

/** The status a session has at `now`: an open one past its expiry is expired (made so lazily). */
export function statusAt(session: { status: SessionStatus; expires_at: Date }, now: Date): SessionStatus {
  if (session.status === 'open' && session.expires_at.getTime() <= now.getTime()) return 'expired';
  return session.status;
}

/** The human message a checkout page shows for a provider's decline code (Stripe's wording). */
export function declineMessage(code: string): string {
  switch (code) {
    case 'insufficient_funds':
      return 'Your card has insufficient funds.';
    case 'expired_card':
      return 'Your card has expired.';
    case 'incorrect_cvc':
      return "Your card's security code is incorrect.";
    case 'processing_error':
      return 'An error occurred while processing your card. Try again in a little bit.';
    default:
      return 'Your card was declined.';
  }
}

/** Stripe's placeholder in a success URL, replaced by the session id (also in its encoded form). */
const SESSION_ID_PLACEHOLDERS = ['{CHECKOUT_SESSION_ID}', '%7BCHECKOUT_SESSION_ID%7D'];

/** Where a completed checkout sends the customer: its success URL, else the platform's thank-you page. */
export function redirectUrlOf(
  session: { id: string; success_url: string | null },
  publicOrigin: string,
): string {
  if (session.success_url === null) return `${publicOrigin}/checkout/${session.id}/complete`;
  let url = session.success_url;
  for (const p of SESSION_ID_PLACEHOLDERS) url = url.split(p).join(session.id);
  return url;
}

/** Locales of the markets the demo catalog has, until markets carry their own. */
const DEFAULT_LOCALES: Readonly<Record<string, string>> = {
  SE: 'sv-SE',
  US: 'en-US',
  DE: 'de-DE',
  GB: 'en-GB',
};

/**
 * The locale a market's page formats prices in: the market's own `locale` when it has one, else
 * one for its code (SE → sv-SE, US → en-US, DE → de-DE, GB → en-GB), else `en`.
 */
export function marketLocale(market: { code: string; locale?: string | null | undefined }): string {
  if (typeof market.locale === 'string' && market.locale !== '') return market.locale;
  return DEFAULT_LOCALES[market.code] ?? 'en';
}
