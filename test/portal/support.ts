import type { LightMyRequestResponse } from 'fastify';
import { expect } from 'vitest';
import type { TestApp } from '../support/app.js';

export interface PortalSession {
  id: string;
  secret: string;
  url: string;
  body: Record<string, unknown>;
}

/** Creates a portal session for `customer` (id or externalId) and splits its url into id and secret. */
export async function openPortal(
  t: TestApp,
  customer: string,
  extra: Record<string, unknown> = {},
): Promise<PortalSession> {
  const res = await t.call('POST', '/v1/portal-sessions', { customer, ...extra });
  expect(res.statusCode, res.body).toBe(201);
  const body = res.json() as { id: string; url: string };
  const secret = new URL(body.url).hash.slice(1);
  return { id: body.id, secret, url: body.url, body };
}

let keys = 0;

/**
 * Calls the portal page's API of `session` as the page does: its secret as the bearer, an
 * Idempotency-Key on every POST (a fresh one unless given).
 */
export function pageCall(
  t: TestApp,
  session: { id: string; secret: string },
  method: 'GET' | 'POST' | 'DELETE',
  path: string,
  body?: unknown,
  opts: { idempotencyKey?: string; secret?: string | null } = {},
): Promise<LightMyRequestResponse> {
  const headers: Record<string, string> = {};
  if (method === 'POST') headers['idempotency-key'] = opts.idempotencyKey ?? `page-${process.pid}-${++keys}`;
  const secret = opts.secret === undefined ? session.secret : opts.secret;
  return t.call(method, `/v1/portal-sessions/${session.id}${path}`, method === 'POST' ? (body ?? {}) : body, {
    key: secret,
    headers,
  });
}
