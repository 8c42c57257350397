import type { InjectOptions } from 'fastify';
import { sql } from 'kysely';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ManualClock } from '../../src/kernel/clock.js';
import { AdminSessionService, SESSIONS_PER_KEY_MAX } from '../../src/modules/api-keys/sessions.js';
import { BOOTSTRAP, startTestApp, type TestApp } from '../support/app.js';
import { ENGINE } from '../support/database.js';

const START = '2027-03-01T10:00:00.000Z';
const MIN = 60_000;
/** What light-my-request sends as Host (`localhost:80`), as a browser would serialise its origin. */
const OWN_ORIGIN = 'http://localhost';

describe(`admin console sessions (${ENGINE})`, () => {
  let t: TestApp;
  const clock = new ManualClock(START);
  beforeAll(async () => {
    t = await startTestApp({ authFailuresPerMinute: 5, trustProxy: '10.0.0.0/8' }, clock);
  });
  afterAll(() => t.close());

  // Each request from its own address: the cookies that stop working here are not guesses.
  let address = 0;
  /** A request as a browser with this cookie sends it (no Authorization header unless given). */
  const browser = (
    method: InjectOptions['method'],
    url: string,
    opts: { cookie?: string; origin?: string | null; body?: unknown; headers?: Record<string, string> } = {},
  ) =>
    t.app.server.inject({
      method,
      url,
      remoteAddress: `198.51.100.${(address++ % 250) + 1}`,
      headers: {
        ...(opts.cookie ? { cookie: opts.cookie } : {}),
        ...(opts.origin === null ? {} : { origin: opts.origin ?? OWN_ORIGIN }),
        ...(opts.headers ?? {}),
      },
      ...(opts.body === undefined ? {} : { payload: opts.body as object }),
    });

  const signIn = async (
    apiKey: string,
    extra: { remoteAddress?: string; headers?: Record<string, string> } = {},
  ) =>
    t.app.server.inject({
      method: 'POST',
      url: '/v1/admin/sessions',
      remoteAddress: extra.remoteAddress ?? '192.0.2.10',
      headers: { origin: OWN_ORIGIN, ...(extra.headers ?? {}) },
      payload: { apiKey },
    });

  /** `reprise_admin=<secret>` from a sign-in's Set-Cookie. */
  const cookieOf = (setCookie: unknown) => String(setCookie).split(';')[0]!;

  it('signs in with an API key: exact cookie flags, the key never stored, the cookie authenticates', async () => {
    const key = await t.keyWith('catalog:read', 'customers:read');
    const res = await signIn(key);
    expect(res.statusCode, res.body).toBe(201);
    const setCookie = res.headers['set-cookie'] as string;
    expect(setCookie).toMatch(/^reprise_admin=[A-Za-z0-9_-]{43}; HttpOnly; SameSite=Strict; Path=\/$/);
    const keyId = (await t.app.services.apiKeys.knownPrincipal(key))!.keyId;
    expect(res.json()).toEqual({
      keyId,
      scopes: ['catalog:read', 'customers:read'],
      expiresAt: '2027-03-01T10:30:00Z',
    });
    // Only the SHA-256 of the cookie's secret is stored, never the secret or the key.
    const secret = cookieOf(setCookie).slice('reprise_admin='.length);
    const rows = await sql<{ row: string }>`SELECT admin_sessions::text AS row FROM admin_sessions
      WHERE key_id = ${keyId}`.execute(t.app.services.db);
    expect(rows.rows).toHaveLength(1);
    expect(rows.rows[0]!.row).not.toContain(secret);
    expect(rows.rows[0]!.row).not.toContain(key);
    // The cookie is the key's principal: its scopes, no more.
    const cookie = cookieOf(setCookie);
    expect((await browser('GET', '/v1/plans', { cookie })).statusCode).toBe(200);
    expect((await browser('GET', '/v1/customers', { cookie })).statusCode).toBe(200);
    const denied = await browser('GET', '/v1/api-keys', { cookie });
    expect(denied.statusCode).toBe(403);
    expect(denied.json()).toMatchObject({ code: 'forbidden', requiredScope: 'admin' });
    const current = await browser('GET', '/v1/admin/sessions/current', { cookie });
    expect(current.statusCode).toBe(200);
    expect(current.json()).toEqual(res.json());
    // The sign-in is audited as the key's.
    const audit = await t.call('GET', `/v1/audit-log?apiKey=${keyId}&action=admin_sessions.create`);
    expect(audit.json().data).toEqual([
      expect.objectContaining({
        action: 'admin_sessions.create',
        resourceType: 'admin_session',
        status: 201,
      }),
    ]);
  });

  it('over https through a trusted proxy the cookie is Secure and __Host- named, not when an untrusted peer says so', async () => {
    const key = await t.keyWith('catalog:read');
    const https = {
      'x-forwarded-proto': 'https',
      host: 'billing.example.com',
      origin: 'https://billing.example.com',
    };
    const viaProxy = await signIn(key, { remoteAddress: '10.0.0.5', headers: https });
    expect(viaProxy.statusCode, viaProxy.body).toBe(201);
    expect(viaProxy.headers['set-cookie']).toMatch(
      /^__Host-reprise_admin=[A-Za-z0-9_-]{43}; HttpOnly; SameSite=Strict; Path=\/; Secure$/,
    );
    const secure = cookieOf(viaProxy.headers['set-cookie']);
    const secret = secure.slice('__Host-reprise_admin='.length);
    const overHttps = (cookie: string) =>
      t.app.server.inject({
        method: 'GET',
        url: '/v1/admin/sessions/current',
        remoteAddress: '10.0.0.5',
        headers: { cookie, ...https },
      });
    expect((await overHttps(secure)).statusCode).toBe(200);
    // Each mode reads its own name only: the plain name is not the Secure cookie, and back.
    expect((await overHttps(`reprise_admin=${secret}`)).statusCode).toBe(401);
    expect((await browser('GET', '/v1/admin/sessions/current', { cookie: secure })).statusCode).toBe(401);
    // Signing out over https clears the __Host- cookie.
    const out = await t.app.server.inject({
      method: 'DELETE',
      url: '/v1/admin/sessions/current',
      remoteAddress: '10.0.0.5',
      headers: { cookie: secure, ...https },
    });
    expect(out.statusCode, out.body).toBe(204);
    expect(out.headers['set-cookie']).toBe(
      '__Host-reprise_admin=; HttpOnly; SameSite=Strict; Path=/; Secure; Max-Age=0',
    );
    const spoofed = await signIn(key, {
      remoteAddress: '203.0.113.4',
      headers: { 'x-forwarded-proto': 'https' },
    });
    expect(spoofed.statusCode).toBe(201);
    expect(spoofed.headers['set-cookie']).toMatch(/^reprise_admin=/);
    expect(spoofed.headers['set-cookie']).not.toContain('Secure');
  });

  it('an unknown or revoked key is 401 with no cookie; failures count against the address', async () => {
    const unknown = await signIn('rpk_not-a-key', { remoteAddress: '192.0.2.99' });
    expect(unknown.statusCode).toBe(401);
    expect(unknown.json().code).toBe('unauthenticated');
    expect(unknown.headers['set-cookie']).toBeUndefined();
    const created = (await t.call('POST', '/v1/api-keys', { name: 'gone', scopes: ['catalog:read'] })).json();
    expect((await t.call('POST', `/v1/api-keys/${created.id}/revoke`)).statusCode).toBe(200);
    const revoked = await signIn(created.secret, { remoteAddress: '192.0.2.99' });
    expect(revoked.statusCode).toBe(401);
    expect(revoked.headers['set-cookie']).toBeUndefined();
    for (let i = 0; i < 3; i++) await signIn(`rpk_guess${i}`, { remoteAddress: '192.0.2.99' });
    const limited = await signIn('rpk_guess-more', { remoteAddress: '192.0.2.99' });
    expect(limited.statusCode).toBe(429);
    expect(Number(limited.headers['retry-after'])).toBeGreaterThan(0);
    // A real key still signs in from the limited address.
    const good = await t.keyWith('catalog:read');
    expect((await signIn(good, { remoteAddress: '192.0.2.99' })).statusCode).toBe(201);
    // The body is checked like any other: a missing key names the field, a cross-site form is refused.
    const bad = await t.app.server.inject({ method: 'POST', url: '/v1/admin/sessions', payload: {} });
    expect(bad.statusCode).toBe(400);
    expect(bad.json().errors[0].path).toBe('apiKey');
    const crossSite = await signIn(good, { headers: { origin: 'https://evil.example' } });
    expect(crossSite.statusCode).toBe(403);
    expect(crossSite.headers['set-cookie']).toBeUndefined();
  });

  it('sign-out ends the session on the server and clears the cookie', async () => {
    const key = await t.keyWith('catalog:read');
    const cookie = cookieOf((await signIn(key)).headers['set-cookie']);
    expect((await browser('GET', '/v1/plans', { cookie })).statusCode).toBe(200);
    const out = await browser('DELETE', '/v1/admin/sessions/current', { cookie });
    expect(out.statusCode, out.body).toBe(204);
    expect(out.body).toBe('');
    expect(out.headers['set-cookie']).toBe('reprise_admin=; HttpOnly; SameSite=Strict; Path=/; Max-Age=0');
    // Another node reads the same table: no cache keeps the session alive anywhere.
    const sessions = new AdminSessionService(t.app.services.db, clock, BOOTSTRAP);
    expect(await sessions.authenticate(cookie.slice('reprise_admin='.length))).toBeNull();
    const after = await browser('GET', '/v1/plans', { cookie });
    expect(after.statusCode).toBe(401);
    expect(after.json().code).toBe('unauthenticated');
    expect((await browser('GET', '/v1/admin/sessions/current', { cookie })).statusCode).toBe(401);
  });

  it('revoking the key ends its sessions at once', async () => {
    const created = (
      await t.call('POST', '/v1/api-keys', { name: 'console', scopes: ['catalog:read'] })
    ).json();
    const cookie = cookieOf((await signIn(created.secret)).headers['set-cookie']);
    expect((await browser('GET', '/v1/plans', { cookie })).statusCode).toBe(200);
    expect((await t.call('POST', `/v1/api-keys/${created.id}/revoke`)).statusCode).toBe(200);
    expect((await browser('GET', '/v1/plans', { cookie })).statusCode).toBe(401);
    const left = await sql<{ n: number }>`SELECT count(*)::int AS n FROM admin_sessions
      WHERE key_id = ${created.id}`.execute(t.app.services.db);
    expect(left.rows[0]!.n).toBe(0);
  });

  it('a cookie-authenticated write from another origin (or none) is refused and changes nothing', async () => {
    await t.markets('SE');
    const key = await t.keyWith('customers:write');
    const cookie = cookieOf((await signIn(key)).headers['set-cookie']);
    const body = { externalId: 'csrf-victim', market: 'SE' };
    for (const origin of ['https://evil.example', 'null', 'http://localhost.evil.example', null]) {
      const res = await browser('POST', '/v1/customers', { cookie, origin, body });
      expect(res.statusCode, `${origin}: ${res.body}`).toBe(403);
      expect(res.json()).toMatchObject({ code: 'forbidden', reason: 'cross_origin' });
    }
    expect((await t.call('GET', '/v1/customers?externalId=csrf-victim')).json().data).toEqual([]);
    // Sign-out is a write too.
    expect((await browser('DELETE', '/v1/admin/sessions/current', { cookie, origin: null })).statusCode).toBe(
      403,
    );
    // From its own origin the same write goes through.
    const ok = await browser('POST', '/v1/customers', { cookie, body });
    expect(ok.statusCode, ok.body).toBe(201);
    // Reads need no Origin.
    expect(
      (await browser('GET', '/v1/customers?externalId=csrf-victim', { cookie, origin: null })).statusCode,
    ).toBe(200);
  });

  it('a Bearer header always wins over the cookie; no cookie and no key is 401', async () => {
    const adminCookie = cookieOf((await signIn(BOOTSTRAP)).headers['set-cookie']);
    const narrow = await t.keyWith('catalog:read');
    const withBearer = await browser('GET', '/v1/api-keys', {
      cookie: adminCookie,
      headers: { authorization: `Bearer ${narrow}` },
    });
    expect(withBearer.statusCode).toBe(403);
    const badBearer = await browser('GET', '/v1/plans', {
      cookie: adminCookie,
      headers: { authorization: 'Bearer rpk_wrong' },
    });
    expect(badBearer.statusCode).toBe(401);
    // A Bearer request has no console session.
    const current = await browser('GET', '/v1/admin/sessions/current', {
      headers: { authorization: `Bearer ${narrow}` },
    });
    expect(current.statusCode).toBe(401);
    const nothing = await browser('GET', '/v1/plans', { origin: null });
    expect(nothing.statusCode).toBe(401);
    expect(nothing.json().code).toBe('unauthenticated');
    // A forged, malformed or doubled cookie authenticates nothing.
    for (const cookie of [
      'reprise_admin=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA',
      'reprise_admin=short',
      `${adminCookie}; ${adminCookie}`,
    ]) {
      expect((await browser('GET', '/v1/plans', { cookie, headers: {} })).statusCode, cookie).toBe(401);
    }
    // The bootstrap key's session has every scope.
    expect((await browser('GET', '/v1/api-keys', { cookie: `theme=dark; ${adminCookie}` })).statusCode).toBe(
      200,
    );
  });

  it('a Cookie header over 64 pairs is not read at all: planted cookies cannot push the real one out of view', async () => {
    // A sibling host plants its own session's cookie for a longer path (sent first) behind 63
    // others: reading only the first 64 pairs would see the attacker's cookie alone and sign the
    // victim's console in as the attacker. Past the bound nothing is read.
    const attacker = cookieOf((await signIn(await t.keyWith('catalog:read'))).headers['set-cookie']);
    const victim = cookieOf((await signIn(BOOTSTRAP)).headers['set-cookie']);
    const junk = Array.from({ length: 63 }, (_, i) => `c${i}=1`).join('; ');
    const flooded = `${junk}; ${attacker}; ${victim}`;
    const res = await browser('GET', '/v1/admin/sessions/current', { cookie: flooded });
    expect(res.statusCode, res.body).toBe(401);
    // Up to 64 pairs the doubled cookie is seen (and neither is used); a lone one is read.
    const doubled = `${Array.from({ length: 62 }, (_, i) => `c${i}=1`).join('; ')}; ${attacker}; ${victim}`;
    expect((await browser('GET', '/v1/admin/sessions/current', { cookie: doubled })).statusCode).toBe(401);
    const lone = `${Array.from({ length: 63 }, (_, i) => `c${i}=1`).join('; ')}; ${victim}`;
    expect((await browser('GET', '/v1/admin/sessions/current', { cookie: lone })).json()).toMatchObject({
      keyId: 'key_bootstrap',
    });
    // Over 8 KiB is not read either (over 16 KiB of headers, Node answers 431 before Fastify).
    const big = `pad=${'x'.repeat(8_200)}; ${victim}`;
    expect((await browser('GET', '/v1/admin/sessions/current', { cookie: big })).statusCode).toBe(401);
  });

  it('expires after 30 idle minutes (sliding) and after 12 hours at most', async () => {
    const key = await t.keyWith('catalog:read');
    clock.set(START);
    const idle = cookieOf((await signIn(key)).headers['set-cookie']);
    clock.advanceMs(29 * MIN);
    const kept = await browser('GET', '/v1/admin/sessions/current', { cookie: idle });
    expect(kept.statusCode).toBe(200);
    // Used at 29 min: it now ends 30 min after that.
    expect(kept.json().expiresAt).toBe('2027-03-01T10:59:00Z');
    clock.advanceMs(30 * MIN);
    expect((await browser('GET', '/v1/plans', { cookie: idle })).statusCode).toBe(401);

    clock.set(START);
    const busy = cookieOf((await signIn(key)).headers['set-cookie']);
    for (let m = 20; m < 12 * 60; m += 20) {
      clock.set(new Date(Date.parse(START) + m * MIN));
      expect((await browser('GET', '/v1/plans', { cookie: busy })).statusCode, `at ${m} min`).toBe(200);
    }
    clock.set(new Date(Date.parse(START) + 11 * 60 * MIN + 50 * MIN));
    // Near the absolute end the idle end is capped by it.
    expect((await browser('GET', '/v1/admin/sessions/current', { cookie: busy })).json().expiresAt).toBe(
      '2027-03-01T22:00:00Z',
    );
    clock.set(new Date(Date.parse(START) + 12 * 60 * MIN));
    expect((await browser('GET', '/v1/plans', { cookie: busy })).statusCode).toBe(401);
    clock.set(START);
  });

  it(`a key keeps at most ${SESSIONS_PER_KEY_MAX} sessions (the oldest dropped); expired ones are pruned`, async () => {
    const key = await t.keyWith('catalog:read');
    const keyId = (await t.app.services.apiKeys.knownPrincipal(key))!.keyId;
    const cookies: string[] = [];
    for (let i = 0; i <= SESSIONS_PER_KEY_MAX; i++) {
      clock.advanceMs(1_000);
      cookies.push(cookieOf((await signIn(key)).headers['set-cookie']));
    }
    const count = async () =>
      (
        await sql<{
          n: number;
        }>`SELECT count(*)::int AS n FROM admin_sessions WHERE key_id = ${keyId}`.execute(t.app.services.db)
      ).rows[0]!.n;
    expect(await count()).toBe(SESSIONS_PER_KEY_MAX);
    expect((await browser('GET', '/v1/plans', { cookie: cookies[0]! })).statusCode).toBe(401);
    expect((await browser('GET', '/v1/plans', { cookie: cookies.at(-1)! })).statusCode).toBe(200);
    clock.advanceMs(31 * MIN);
    const pruned = await t.app.services.adminSessions.prune();
    expect(pruned).toBeGreaterThanOrEqual(SESSIONS_PER_KEY_MAX);
    expect(await count()).toBe(0);
    clock.set(START);
  });

  it('a session opened with the bootstrap key ends when the bootstrap key changes', async () => {
    const cookie = cookieOf((await signIn(BOOTSTRAP)).headers['set-cookie']);
    const secret = cookie.slice('reprise_admin='.length);
    const same = new AdminSessionService(t.app.services.db, clock, BOOTSTRAP);
    expect(await same.authenticate(secret)).toMatchObject({ keyId: 'key_bootstrap', scopes: ['admin'] });
    const rotated = new AdminSessionService(t.app.services.db, clock, 'another-bootstrap-key-entirely');
    expect(await rotated.authenticate(secret)).toBeNull();
    expect(
      await new AdminSessionService(t.app.services.db, clock, undefined).authenticate(secret),
    ).toBeNull();
  });

  it('the routes are in the OpenAPI document with a named schema', async () => {
    const doc = (await t.call('GET', '/openapi.json', undefined, { key: null })).json();
    expect(doc.components.schemas.AdminSession).toMatchObject({
      type: 'object',
      required: ['keyId', 'scopes', 'expiresAt'],
    });
    const post = doc.paths['/v1/admin/sessions'].post;
    expect(post.responses['201'].content['application/json'].schema).toEqual({
      $ref: '#/components/schemas/AdminSession',
    });
    expect(post.security).toEqual([]);
    expect(doc.paths['/v1/admin/sessions/current'].delete.responses['204']).toBeDefined();
    expect(doc.components.securitySchemes.adminSession).toMatchObject({
      in: 'cookie',
      name: 'reprise_admin',
    });
  });
});

describe(`admin console sessions behind REPRISE_PUBLIC_URL=https://admin.example (${ENGINE})`, () => {
  const PUBLIC = 'https://admin.example';
  let t: TestApp;
  beforeAll(async () => {
    t = await startTestApp({ publicUrl: PUBLIC, authFailuresPerMinute: 1_000 });
    await t.markets('SE');
  });
  afterAll(() => t.close());

  // Plain http as the server sees it (a TLS proxy it was not told to trust): the browser is on https.
  const request = (
    method: InjectOptions['method'],
    url: string,
    headers: Record<string, string>,
    body?: unknown,
  ) =>
    t.app.server.inject({
      method,
      url,
      remoteAddress: '192.0.2.50',
      headers: { host: 'admin.example', ...headers },
      ...(body === undefined ? {} : { payload: body as object }),
    });
  const signIn = async (apiKey = BOOTSTRAP) => {
    const res = await request('POST', '/v1/admin/sessions', { origin: PUBLIC }, { apiKey });
    expect(res.statusCode, res.body).toBe(201);
    return String(res.headers['set-cookie']);
  };

  it('sets a Secure __Host- cookie though the request came over http, and reads only that name', async () => {
    const setCookie = await signIn();
    expect(setCookie).toMatch(
      /^__Host-reprise_admin=[A-Za-z0-9_-]{43}; HttpOnly; SameSite=Strict; Path=\/; Secure$/,
    );
    expect(setCookie).not.toMatch(/Domain=/i);
    const cookie = setCookie.split(';')[0]!;
    const secret = cookie.slice('__Host-reprise_admin='.length);
    expect((await request('GET', '/v1/admin/sessions/current', { cookie })).statusCode).toBe(200);
    // The plain name (which a sibling subdomain or an http page could plant) authenticates nothing.
    const plain = await request('GET', '/v1/admin/sessions/current', { cookie: `reprise_admin=${secret}` });
    expect(plain.statusCode).toBe(401);
    // A planted plain cookie beside the real one does not disturb it.
    const both = `reprise_admin=${'A'.repeat(43)}; ${cookie}`;
    expect((await request('GET', '/v1/admin/sessions/current', { cookie: both })).statusCode).toBe(200);
    const out = await request('DELETE', '/v1/admin/sessions/current', { cookie, origin: PUBLIC });
    expect(out.statusCode, out.body).toBe(204);
    expect(out.headers['set-cookie']).toBe(
      '__Host-reprise_admin=; HttpOnly; SameSite=Strict; Path=/; Secure; Max-Age=0',
    );
  });

  it('checks a cookie write’s Origin against the configured origin, not the Host header', async () => {
    const cookie = (await signIn()).split(';')[0]!;
    const write = (origin: string, host: string, externalId: string) =>
      request('POST', '/v1/customers', { cookie, origin, host }, { externalId, market: 'SE' });
    for (const [origin, host] of [
      ['http://evil', 'admin.example'],
      // DNS rebinding: the attacker's name resolves to us, so Host and Origin agree with each other.
      ['http://evil', 'evil'],
      ['http://admin.example', 'admin.example'],
      ['https://admin.example.evil', 'admin.example.evil'],
    ] as const) {
      const res = await write(origin, host, 'csrf-public-url');
      expect(res.statusCode, `${origin} / ${host}: ${res.body}`).toBe(403);
      expect(res.json()).toMatchObject({ code: 'forbidden', reason: 'cross_origin' });
    }
    expect((await t.call('GET', '/v1/customers?externalId=csrf-public-url')).json().data).toEqual([]);
    const ok = await write(PUBLIC, 'admin.example', 'csrf-public-url');
    expect(ok.statusCode, ok.body).toBe(201);
    // The configured origin decides whatever Host the proxy forwards.
    const internal = await write(PUBLIC, '10.1.2.3:8080', 'csrf-public-url-2');
    expect(internal.statusCode, internal.body).toBe(201);
  });

  it('the OpenAPI document names the __Host- cookie', async () => {
    const doc = (await t.call('GET', '/openapi.json', undefined, { key: null })).json();
    expect(doc.components.securitySchemes.adminSession).toMatchObject({
      in: 'cookie',
      name: '__Host-reprise_admin',
    });
  });

  it('refuses a sign-in posted from another origin, even when Host agrees with it', async () => {
    const res = await request(
      'POST',
      '/v1/admin/sessions',
      { origin: 'http://evil', host: 'evil' },
      { apiKey: BOOTSTRAP },
    );
    expect(res.statusCode).toBe(403);
    expect(res.json()).toMatchObject({ code: 'forbidden', reason: 'cross_origin' });
    expect(res.headers['set-cookie']).toBeUndefined();
  });
});
