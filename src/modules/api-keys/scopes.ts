/**
 * Scopes an API key can carry. `X:write` implies `X:read`; `admin` implies everything.
 * Least privilege: a product team's service gets only what it calls.
 */
export const SCOPES = [
  'admin',
  'catalog:read',
  'catalog:write',
  'customers:read',
  'customers:write',
  'test-clocks:read',
  'test-clocks:write',
  'subscriptions:read',
  'subscriptions:write',
  'payments:read',
  'payments:write',
  'payments:refund',
  'entitlements:read',
  'ledger:read',
  'events:read',
  'webhooks:write',
  'reports:read',
] as const;

export type Scope = (typeof SCOPES)[number];

export function isScope(value: string): value is Scope {
  return (SCOPES as readonly string[]).includes(value);
}

export function grants(held: readonly string[], needed: Scope): boolean {
  if (held.includes('admin') || held.includes(needed)) return true;
  if (needed.endsWith(':read')) return held.includes(needed.replace(/:read$/, ':write'));
  return false;
}
