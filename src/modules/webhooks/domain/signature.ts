import { createHmac, randomBytes } from 'node:crypto';

/**
 * The `Reprise-Signature` header (ADR 0019): `t=<unix seconds>,v1=<hex HMAC-SHA256 of "t.body">`,
 * keyed with the secret string's UTF-8 bytes: the scheme Stripe's SDKs verify
 * (`stripe.webhooks.constructEvent`). While a rotated secret is still valid each secret signs, one
 * `v1=` entry each, the current one first.
 */
export const SIGNATURE_HEADER = 'Reprise-Signature';

export function signatureHeader(timestampSeconds: number, body: string, secrets: readonly string[]): string {
  const signed = `${timestampSeconds}.${body}`;
  const entries = secrets.map(
    (s) => `v1=${createHmac('sha256', Buffer.from(s, 'utf8')).update(signed, 'utf8').digest('hex')}`,
  );
  return [`t=${timestampSeconds}`, ...entries].join(',');
}

/** A new endpoint secret: `whsec_` + 32 random bytes, base64url. */
export function newSecret(): string {
  return `whsec_${randomBytes(32).toString('base64url')}`;
}
