import type { InjectOptions } from 'fastify';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ManualClock } from '../../src/kernel/clock.js';
import { openPortal, pageCall } from '../portal/support.js';
import { BOOTSTRAP, startTestApp, type TestApp } from '../support/app.js';
import { payingCustomer, smallCatalog } from '../support/billing.js';
import { ENGINE } from '../support/database.js';

const OWN = 'http://localhost';

// The attack pass on the web sessions (issue 10 hardening): the console's cookie sessions and the
// hosted pages' secrets, reached through odd spellings, the wrong credential, or a replayed key.
// The holes it found: a Cookie header over 64 pairs hid the real cookie, the CSRF check trusted
// Host, a sibling host could plant the cookie, portal card attaches were unbounded (tested with
// their fixes in test/http/admin-sessions.test.ts and test/portal/page.http.test.ts), and answers
// to the console's cookie carried no Cache-Control (below). What held is pinned here too.
describe(`web sessions under attack (${ENGINE})`, () => {
  let t: TestApp;
  const clock = new ManualClock('2027-03-01T10:00:00Z');
  beforeAll(async () => {
    // Every refusal here is on purpose: the per-address budget must not cut in.
    t = await startTestApp({ authFailuresPerMinute: 10_000 }, clock);
    await smallCatalog(t);
  });
  afterAll(() => t.close());

  const inject = (
    method: InjectOptions['method'],
    url: string,
    headers: Record<string, string> = {},
    payload?: unknown,
  ) =>
    t.app.server.inject({
      method,
      url,
      headers,
      ...(payload === undefined ? {} : { payload: payload as object }),
    });
  const signIn = async (apiKey = BOOTSTRAP) => {
    const res = await inject('POST', '/v1/admin/sessions', { origin: OWN }, { apiKey });
    expect(res.statusCode, res.body).toBe(201);
    return String(res.headers['set-cookie']).split(';')[0]!;
  };

  it('the sign-in is its own spelling only: encoded slashes, another case, doubled or trailing slashes are no route', async () => {
    for (const url of [
      '/v1/admin%2Fsessions',
      '/v1/admin%2fsessions',
      '/V1/admin/sessions',
      '/v1/Admin/Sessions',
      '//v1/admin/sessions',
      '/v1//admin/sessions',
      '/v1/admin/sessions/',
      '/v1/admin/sessions;x',
      '/v1/admin/sessions%00',
    ]) {
      const res = await inject('POST', url, { origin: OWN }, { apiKey: BOOTSTRAP });
      // Not the public sign-in: a path that matches no route needs a key like any other.
      expect(res.statusCode, url).toBe(401);
      expect(res.headers['set-cookie'], url).toBeUndefined();
    }
    // A percent-encoded letter is the route itself, with its checks: another origin is refused.
    const encoded = await inject(
      'POST',
      '/v1/admin/%73essions',
      { origin: 'https://evil.example' },
      {
        apiKey: BOOTSTRAP,
      },
    );
    expect(encoded.statusCode).toBe(403);
    expect(encoded.headers['set-cookie']).toBeUndefined();
  });

  it('a cookie write through an encoded or unmatched path checks the Origin before anything', async () => {
    const cookie = await signIn();
    for (const url of ['/v1/admin/sessions/%63urrent', '/v1/admin%2Fsessions/current', '/V1/customers']) {
      const res = await inject(url.endsWith('customers') ? 'POST' : 'DELETE', url, {
        cookie,
        origin: 'https://evil.example',
      });
      expect(res.statusCode, url).toBe(403);
      expect(res.json()).toMatchObject({ reason: 'cross_origin' });
    }
    // The session is still there: nothing ran.
    expect((await inject('GET', '/v1/admin/sessions/current', { cookie })).statusCode).toBe(200);
  });

  it('each credential opens its own kind of route only, HEAD included', async () => {
    const c = await payingCustomer(t, 'attack-web-1');
    const portal = await openPortal(t, c.id);
    const created = await t.call('POST', '/v1/checkout-sessions', {
      plan: 'music-monthly',
      externalId: 'attack-web-new',
      market: 'SE',
    });
    expect(created.statusCode, created.body).toBe(201);
    const checkout = { id: created.json().id as string, secret: new URL(created.json().url).hash.slice(1) };
    const cookie = await signIn();
    const bearer = (secret: string) => ({ authorization: `Bearer ${secret}` });
    const portalPage = `/v1/portal-sessions/${portal.id}/overview`;
    const checkoutPage = `/v1/checkout-sessions/${checkout.id}/page`;
    for (const [what, method, url, headers] of [
      ['a checkout secret on the portal', 'GET', portalPage, bearer(checkout.secret)],
      ['a portal secret on the checkout', 'GET', checkoutPage, bearer(portal.secret)],
      ['the admin key on the portal', 'GET', portalPage, bearer(BOOTSTRAP)],
      ['the admin key on the checkout', 'HEAD', checkoutPage, bearer(BOOTSTRAP)],
      ['a console cookie on the portal', 'GET', portalPage, { cookie }],
      ['a console cookie on the checkout', 'HEAD', checkoutPage, { cookie }],
      ['a portal secret on the API', 'GET', '/v1/customers', bearer(portal.secret)],
      ['a checkout secret on the API', 'HEAD', '/v1/customers', bearer(checkout.secret)],
      ['a portal secret on the console session', 'GET', '/v1/admin/sessions/current', bearer(portal.secret)],
    ] as const) {
      const res = await inject(method, url, headers);
      expect(res.statusCode, what).toBe(401);
    }
    // Nor do page secrets sign in to the console.
    for (const apiKey of [portal.secret, checkout.secret]) {
      const res = await inject('POST', '/v1/admin/sessions', { origin: OWN }, { apiKey });
      expect(res.statusCode).toBe(401);
      expect(res.headers['set-cookie']).toBeUndefined();
    }
    // Each on its own route works (the probes above were refused for the credential, not the route).
    expect((await inject('HEAD', portalPage, bearer(portal.secret))).statusCode).toBe(200);
    expect((await inject('GET', checkoutPage, bearer(checkout.secret))).statusCode).toBe(200);
  });

  it("an Idempotency-Key replays to its own principal only: another key's cookie, another portal session run afresh", async () => {
    const writer = (
      await t.call('POST', '/v1/api-keys', { name: 'writer', scopes: ['customers:write'] })
    ).json().secret as string;
    const other = (
      await t.call('POST', '/v1/api-keys', { name: 'other', scopes: ['customers:write'] })
    ).json().secret as string;
    const a = await signIn(writer);
    const b = await signIn(other);
    const post = (cookie: string, externalId: string) =>
      inject(
        'POST',
        '/v1/customers',
        { cookie, origin: OWN, 'idempotency-key': 'shared-key' },
        {
          externalId,
          market: 'SE',
        },
      );
    const first = await post(a, 'idem-a');
    expect(first.statusCode, first.body).toBe(201);
    const again = await post(a, 'idem-a');
    expect(again.headers['idempotent-replayed']).toBe('true');
    // Another key's session with the same key and body: its own request, not the first's answer.
    const byB = await post(b, 'idem-a');
    expect(byB.headers['idempotent-replayed']).toBeUndefined();
    expect(byB.statusCode).toBe(409);
    expect(byB.json().code).toBe('already_exists');

    const c1 = await payingCustomer(t, 'attack-web-2');
    const c2 = await payingCustomer(t, 'attack-web-3');
    const s1 = await openPortal(t, c1.id);
    const s2 = await openPortal(t, c2.id);
    const one = await pageCall(
      t,
      s1,
      'POST',
      '/payment-methods',
      { token: 'tok_mastercard' },
      {
        idempotencyKey: 'page-shared',
      },
    );
    expect(one.statusCode, one.body).toBe(201);
    const two = await pageCall(
      t,
      s2,
      'POST',
      '/payment-methods',
      { token: 'tok_mastercard' },
      {
        idempotencyKey: 'page-shared',
      },
    );
    expect(two.statusCode, two.body).toBe(201);
    expect(two.headers['idempotent-replayed']).toBeUndefined();
    expect(two.json().id).not.toBe(one.json().id);
    expect((await pageCall(t, s2, 'GET', '/overview')).json().paymentMethod.id).toBe(two.json().id);
  });

  it('no cache may keep an answer given to a cookie, a page secret or a key (a shared cache could keep a cookie’s)', async () => {
    const c = await payingCustomer(t, 'attack-web-cache');
    const portal = await openPortal(t, c.id);
    const cookie = await signIn();
    for (const [what, res] of [
      ['cookie', await inject('GET', `/v1/customers/${c.id}/timeline`, { cookie })],
      ['cookie, refused', await inject('GET', '/v1/customers/cus_nope', { cookie })],
      ['portal page', await pageCall(t, portal, 'GET', '/overview')],
      ['API key', await t.call('GET', `/v1/customers/${c.id}`)],
      ['no credential', await inject('GET', `/v1/customers/${c.id}`)],
    ] as const) {
      expect(res.headers['cache-control'], what).toBe('no-store');
    }
    const timeline = await inject('GET', `/v1/customers/${c.id}/timeline`, { cookie });
    expect(timeline.statusCode, timeline.body).toBe(200);
    // Public routes say nothing of it.
    expect((await inject('GET', '/health')).headers['cache-control']).toBeUndefined();
  });

  it('a replayed key needs a live session: an expired cookie or an ended portal link gets 401, not the stored answer', async () => {
    const key = (await t.call('POST', '/v1/api-keys', { name: 'w', scopes: ['customers:write'] })).json()
      .secret as string;
    clock.set('2027-03-01T10:00:00Z');
    const cookie = await signIn(key);
    const headers = { cookie, origin: OWN, 'idempotency-key': 'before-expiry' };
    const body = { externalId: 'idem-expiry', market: 'SE' };
    expect((await inject('POST', '/v1/customers', headers, body)).statusCode).toBe(201);
    clock.set('2027-03-01T10:31:00Z');
    const late = await inject('POST', '/v1/customers', headers, body);
    expect(late.statusCode).toBe(401);
    expect(late.headers['idempotent-replayed']).toBeUndefined();
    clock.set('2027-03-01T10:00:00Z');

    const c = await payingCustomer(t, 'attack-web-4');
    const s = await openPortal(t, c.id);
    const first = await pageCall(
      t,
      s,
      'POST',
      '/payment-methods',
      { token: 'tok_visa' },
      {
        idempotencyKey: 'before-end',
      },
    );
    expect(first.statusCode).toBe(201);
    expect((await pageCall(t, s, 'POST', '/end')).statusCode).toBe(204);
    const replay = await pageCall(
      t,
      s,
      'POST',
      '/payment-methods',
      { token: 'tok_visa' },
      {
        idempotencyKey: 'before-end',
      },
    );
    expect(replay.statusCode).toBe(401);
    expect(replay.headers['idempotent-replayed']).toBeUndefined();
  });
});
