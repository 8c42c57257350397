import { createHash } from 'node:crypto';
import { sql } from 'kysely';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { startTestApp, type TestApp } from '../support/app.js';
import { ENGINE } from '../support/database.js';

/**
 * Hosted checkout through HTTP as the merchant's server (API key) and as the hosted page (the
 * session's client secret) call it; the card frame's part (typing a number, getting a token) is
 * the simulator's `POST /v1/tokens`, as the frame calls it.
 */
describe(`checkout sessions (${ENGINE})`, () => {
  let t: TestApp;
  let n = 0;
  const nextYear = new Date().getUTCFullYear() + 3;

  beforeAll(async () => {
    // Many 401s come from one address here: keep the failed-authentication budget out of the way.
    t = await startTestApp({ providerTimeoutMs: 1_000, authFailuresPerMinute: 100_000 });
    await t.markets('SE', 'US', 'DE');
    const ok = async (url: string, body: unknown) => {
      const res = await t.call('POST', url, body);
      if (res.statusCode !== 201) throw new Error(`${url}: ${res.body}`);
    };
    await ok('/v1/products', { code: 'music', name: 'Music', features: ['ad-free', 'offline'], seats: 1 });
    await ok('/v1/products', { code: 'books', name: 'Books', features: ['audiobooks'], seats: 1 });
    await ok('/v1/plans', {
      code: 'music-monthly',
      name: 'Music Monthly',
      product: 'music',
      billingPeriod: 'month',
      trialDays: 0,
      prices: [
        { currency: 'SEK', amount: 10900 },
        { currency: 'EUR', amount: 1099 },
      ],
    });
    await ok('/v1/plans', {
      code: 'books-trial',
      name: 'Books with a trial',
      product: 'books',
      billingPeriod: 'month',
      trialDays: 7,
      prices: [{ currency: 'SEK', amount: 16900 }],
    });
  });
  afterAll(() => t.close());

  const simulator = () => t.app.services.providers.embedded[0]!;
  /** What the card frame does with a typed card: the provider's token for it. */
  const tokenFor = async (number: string) => {
    const res = await simulator().app.inject({
      method: 'POST',
      url: '/v1/tokens',
      payload: {
        card: { number, expMonth: 12, expYear: nextYear, cvc: number.startsWith('37') ? '1234' : '123' },
      },
    });
    expect(res.statusCode, res.body).toBe(200);
    return res.json().id as string;
  };
  const create = (body: Record<string, unknown>, headers: Record<string, string> = {}) =>
    t.call('POST', '/v1/checkout-sessions', body, { headers });
  const newSession = async (body: Record<string, unknown> = {}) => {
    const res = await create({ plan: 'music-monthly', externalId: `shopper-${++n}`, market: 'SE', ...body });
    expect(res.statusCode, res.body).toBe(201);
    const session = res.json();
    return { ...session, secret: String(session.url).split('#')[1]! } as {
      id: string;
      secret: string;
      externalId: string;
      [k: string]: unknown;
    };
  };
  const page = (id: string, secret: string | null) =>
    t.call('GET', `/v1/checkout-sessions/${id}/page`, undefined, { key: secret });
  const confirm = (id: string, secret: string, body: Record<string, unknown>) =>
    t.call('POST', `/v1/checkout-sessions/${id}/confirm`, body, { key: secret });
  const subscriptionsOf = async (customer: string) =>
    (await t.call('GET', `/v1/subscriptions?customer=${encodeURIComponent(customer)}`)).json().data as Array<{
      id: string;
      status: string;
    }>;
  const sessionCount = async () =>
    Number(
      (await sql<{ n: number }>`SELECT count(*)::int AS n FROM checkout_sessions`.execute(t.app.database.db))
        .rows[0]!.n,
    );

  describe('create', () => {
    it('answers the session with its URL: the page on the public origin, the client secret in the fragment', async () => {
      const res = await create({ plan: 'music-monthly', externalId: 'create-shape-1', market: 'SE' });
      expect(res.statusCode, res.body).toBe(201);
      const s = res.json();
      expect(s).toMatchObject({
        object: 'checkout_session',
        status: 'open',
        customer: null,
        externalId: 'create-shape-1',
        market: 'SE',
        successUrl: null,
        cancelUrl: null,
        subscription: null,
        completedAt: null,
      });
      expect(s.id).toMatch(/^cs_[0-9A-HJKMNP-TV-Z]{26}$/);
      expect(s.url).toMatch(
        new RegExp(`^http://127\\.0\\.0\\.1/checkout/${s.id}#cs_secret_[A-Za-z0-9_-]{43}$`),
      );
      expect(Date.parse(s.expiresAt) - Date.parse(s.createdAt)).toBe(24 * 3_600_000);
      const plan = (await t.call('GET', '/v1/plans/music-monthly')).json();
      expect(s.plan).toBe(plan.id);
    });

    it('shows the secret once: reads, lists and an idempotent replay answer url null; only its hash is stored', async () => {
      const headers = { 'idempotency-key': 'create-once-1' };
      const body = { plan: 'music-monthly', externalId: 'create-once-1', market: 'SE' };
      const first = await create(body, headers);
      expect(first.statusCode).toBe(201);
      const { id, url } = first.json();
      const secret = String(url).split('#')[1]!;
      const replay = await create(body, headers);
      expect(replay.statusCode).toBe(201);
      expect(replay.headers['idempotent-replayed']).toBe('true');
      expect(replay.json()).toEqual({ ...first.json(), url: null });
      expect((await t.call('GET', `/v1/checkout-sessions/${id}`)).json().url).toBeNull();
      const listed = (await t.call('GET', '/v1/checkout-sessions?limit=100')).json().data as Array<{
        id: string;
        url: unknown;
      }>;
      expect(listed.find((s) => s.id === id)?.url).toBeNull();
      const db = t.app.database.db;
      const row = (
        await sql<{
          secret_hash: Uint8Array;
        }>`SELECT secret_hash FROM checkout_sessions WHERE id = ${id}`.execute(db)
      ).rows[0]!;
      expect(Buffer.from(row.secret_hash).toString('hex')).toBe(
        createHash('sha256').update(secret).digest('hex'),
      );
      const leaks = await sql<{ n: number }>`
        SELECT (SELECT count(*) FROM idempotency_keys WHERE response_body LIKE ${`%${secret}%`})
             + (SELECT count(*) FROM audit_log WHERE action LIKE ${`%${secret}%`} OR resource_id LIKE ${`%${secret}%`})
             + (SELECT count(*) FROM events WHERE data::text LIKE ${`%${secret}%`}) AS n`.execute(db);
      expect(Number(leaks.rows[0]!.n)).toBe(0);
      // The secret opens the page.
      expect((await page(id, secret)).statusCode).toBe(200);
    });

    it('refuses bad input naming the field, and changes nothing', async () => {
      await t.call('POST', '/v1/customers', { externalId: 'create-existing-us', market: 'US' });
      const before = await sessionCount();
      const cases: Array<[Record<string, unknown>, number, string[]]> = [
        [{ plan: 'music-monthly', market: 'SE' }, 400, ['externalId', 'customer']],
        [{ plan: 'music-monthly', externalId: 'x-1', customer: 'x-2', market: 'SE' }, 400, ['customer']],
        [{ plan: 'music-monthly', externalId: 'no-market-1' }, 400, ['market']],
        [{ plan: 'music-monthly', externalId: 'bad-market-1', market: 'XX' }, 400, ['market']],
        [{ plan: 'no-such-plan', externalId: 'bad-plan-1', market: 'SE' }, 400, ['plan']],
        [{ plan: 'music-monthly', customer: 'nobody-at-all' }, 400, ['customer']],
        [{ plan: 'music-monthly', customer: 'create-existing-us', market: 'SE' }, 400, ['market']],
        [{ plan: 'music-monthly', externalId: ' padded', market: 'SE' }, 400, ['externalId']],
        [
          { plan: 'music-monthly', externalId: 'cus_01JD0000000000000000000000', market: 'SE' },
          400,
          ['externalId'],
        ],
        [
          { plan: 'music-monthly', externalId: 'url-1', market: 'SE', successUrl: 'https://evil.example/x' },
          400,
          ['successUrl'],
        ],
        [
          { plan: 'music-monthly', externalId: 'url-2', market: 'SE', cancelUrl: 'javascript:alert(1)' },
          400,
          ['cancelUrl'],
        ],
        [
          { plan: 'music-monthly', externalId: 'url-3', market: 'SE', successUrl: '/relative' },
          400,
          ['successUrl'],
        ],
        [{ plan: 'music-monthly', externalId: 'extra-1', market: 'SE', mode: 'payment' }, 400, ['mode']],
        // The customer's market (US, USD) has no price for the plan.
        [{ plan: 'music-monthly', customer: 'create-existing-us' }, 422, []],
        [{ plan: 'books-trial', externalId: 'no-price-1', market: 'DE' }, 422, []],
      ];
      for (const [body, status, fields] of cases) {
        const res = await create(body);
        expect(res.statusCode, JSON.stringify(body)).toBe(status);
        expect(res.headers['content-type']).toContain('application/problem+json');
        const problem = res.json();
        if (status === 422) expect(problem.code).toBe('price_not_found');
        else
          expect((problem.errors as Array<{ path: string }>).map((e) => e.path).sort()).toEqual(
            [...fields].sort(),
          );
      }
      expect(await sessionCount()).toBe(before);
    });

    it('takes an existing customer by id or externalId, in its market; redirect URLs on the allowed origin', async () => {
      const c = (
        await t.call('POST', '/v1/customers', { externalId: 'create-existing-se', market: 'SE' })
      ).json();
      for (const ref of [c.id, 'create-existing-se']) {
        const res = await create({
          plan: 'music-monthly',
          customer: ref,
          successUrl: 'http://127.0.0.1/thanks?session={CHECKOUT_SESSION_ID}',
          cancelUrl: 'http://127.0.0.1/pricing',
        });
        expect(res.statusCode, res.body).toBe(201);
        expect(res.json()).toMatchObject({
          customer: c.id,
          externalId: 'create-existing-se',
          market: 'SE',
          successUrl: 'http://127.0.0.1/thanks?session={CHECKOUT_SESSION_ID}',
          cancelUrl: 'http://127.0.0.1/pricing',
        });
      }
      // An externalId naming an existing customer is that customer.
      const byExternal = await create({ plan: 'music-monthly', externalId: 'create-existing-se' });
      expect(byExternal.statusCode, byExternal.body).toBe(201);
      expect(byExternal.json().customer).toBe(c.id);
    });

    it('needs subscriptions:write to create and subscriptions:read to read', async () => {
      const reader = await t.keyWith('subscriptions:read');
      const res = await t.call(
        'POST',
        '/v1/checkout-sessions',
        { plan: 'music-monthly', externalId: 'scope-1', market: 'SE' },
        { key: reader },
      );
      expect(res.statusCode).toBe(403);
      expect(res.json().requiredScope).toBe('subscriptions:write');
      expect((await t.call('GET', '/v1/checkout-sessions', undefined, { key: reader })).statusCode).toBe(200);
      const other = await t.keyWith('customers:read');
      expect((await t.call('GET', '/v1/checkout-sessions', undefined, { key: other })).statusCode).toBe(403);
    });

    it('lists sessions oldest first with cursors', async () => {
      const ids = [(await newSession()).id, (await newSession()).id, (await newSession()).id];
      const seen: string[] = [];
      let cursor: string | null = null;
      do {
        const res = await t.call('GET', `/v1/checkout-sessions?limit=2${cursor ? `&cursor=${cursor}` : ''}`);
        expect(res.statusCode).toBe(200);
        const body = res.json() as { data: Array<{ id: string }>; nextCursor: string | null };
        expect(body.data.length).toBeLessThanOrEqual(2);
        seen.push(...body.data.map((s) => s.id));
        cursor = body.nextCursor;
      } while (cursor);
      expect(seen).toEqual([...seen].sort());
      expect(seen.slice(-3)).toEqual(ids);
    });
  });

  describe('the page (client secret)', () => {
    it('answers what the page shows: product, plan, price in the market, trial, tax, the card frame', async () => {
      const s = await newSession({ successUrl: 'http://127.0.0.1/welcome' });
      const res = await page(s.id, s.secret);
      expect(res.statusCode, res.body).toBe(200);
      const sim = simulator();
      expect(res.json()).toEqual({
        id: s.id,
        status: 'open',
        expiresAt: s.expiresAt,
        product: { code: 'music', name: 'Music', features: ['ad-free', 'offline'] },
        plan: { code: 'music-monthly', name: 'Music Monthly', billingPeriod: 'month', trialDays: 0 },
        price: { amount: 10900, currency: 'SEK' },
        trialDays: 0,
        market: { code: 'SE', currency: 'SEK', locale: 'sv-SE', taxRateBps: 2500, taxInclusive: true },
        customer: { externalId: s.externalId },
        successUrl: 'http://127.0.0.1/welcome',
        cancelUrl: null,
        provider: { kind: 'simulator', elementsUrl: `${sim.url}/elements/card`, origin: sim.url },
        subscription: null,
      });
      const de = await newSession({ market: 'DE' });
      expect((await page(de.id, de.secret)).json()).toMatchObject({
        price: { amount: 1099, currency: 'EUR' },
        market: { code: 'DE', locale: 'de-DE', taxRateBps: 1900, taxInclusive: true },
      });
    });

    it('401 without the secret, with a wrong one, with another session’s, or with an API key', async () => {
      const a = await newSession();
      const b = await newSession();
      for (const key of [
        null,
        'cs_secret_wrong',
        `${a.secret}x`,
        b.secret,
        'test-bootstrap-key-with-every-scope',
      ]) {
        const res = await page(a.id, key);
        expect(res.statusCode, String(key)).toBe(401);
        expect(res.json().code).toBe('unauthenticated');
        expect((await confirm(a.id, key ?? '', { token: 'tok_visa' })).statusCode).toBe(401);
      }
      // The secret is no API key: the merchant's routes refuse it.
      expect(
        (await t.call('GET', `/v1/checkout-sessions/${a.id}`, undefined, { key: a.secret })).statusCode,
      ).toBe(401);
      expect((await t.call('GET', '/v1/customers', undefined, { key: a.secret })).statusCode).toBe(401);
      // Nothing was attempted on a.
      expect((await page(a.id, a.secret)).json().status).toBe('open');
      expect((await t.call('GET', `/v1/checkout-sessions/${a.id}`)).json().customer).toBeNull();
    });

    it('shows trialDays 0 to a customer who already had this product’s trial', async () => {
      const c = (await t.call('POST', '/v1/customers', { externalId: 'had-trial-1', market: 'SE' })).json();
      const sub = await t.call('POST', '/v1/subscriptions', { customer: c.id, plan: 'books-trial' });
      expect(sub.statusCode, sub.body).toBe(201);
      expect(sub.json().status).toBe('trialing');
      const had = await newSession({
        plan: 'books-trial',
        externalId: undefined,
        market: undefined,
        customer: c.id,
      });
      expect((await page(had.id, had.secret)).json()).toMatchObject({ plan: { trialDays: 7 }, trialDays: 0 });
      const fresh = await newSession({ plan: 'books-trial' });
      expect((await page(fresh.id, fresh.secret)).json()).toMatchObject({
        plan: { trialDays: 7 },
        trialDays: 7,
      });
    });
  });

  describe('confirm', () => {
    it('a declined card (0002) is a 402 the page shows; another card (4242) completes the same session', async () => {
      const s = await newSession({ successUrl: 'http://127.0.0.1/thanks?session={CHECKOUT_SESSION_ID}' });
      const declined = await confirm(s.id, s.secret, { token: await tokenFor('4000 0000 0000 0002') });
      expect(declined.statusCode, declined.body).toBe(402);
      expect(declined.headers['content-type']).toContain('application/problem+json');
      expect(declined.json()).toMatchObject({
        code: 'payment_declined',
        declineCode: 'card_declined',
        detail: 'Your card was declined.',
      });
      expect((await page(s.id, s.secret)).json().status).toBe('open');

      const ok = await confirm(s.id, s.secret, { token: await tokenFor('4242 4242 4242 4242') });
      expect(ok.statusCode, ok.body).toBe(200);
      const body = ok.json();
      expect(body).toEqual({
        status: 'complete',
        customer: expect.stringMatching(/^cus_/),
        subscription: expect.stringMatching(/^sub_/),
        redirectUrl: `http://127.0.0.1/thanks?session=${s.id}`,
      });
      const customer = (await t.call('GET', `/v1/customers/${body.customer}`)).json();
      expect(customer).toMatchObject({ externalId: s.externalId, market: 'SE' });
      const subs = await subscriptionsOf(body.customer);
      expect(subs).toEqual([expect.objectContaining({ id: body.subscription, status: 'active' })]);
      const entitlement = (await t.call('GET', `/v1/entitlements/${s.externalId}`)).json();
      expect(entitlement.active).toBe(true);
      expect(entitlement.features).toEqual(expect.arrayContaining(['ad-free', 'offline']));
      expect((await t.call('GET', `/v1/checkout-sessions/${s.id}`)).json()).toMatchObject({
        status: 'complete',
        customer: body.customer,
        subscription: body.subscription,
        completedAt: expect.any(String),
      });
      // The page still opens (it shows the outcome); a second confirm is refused: single use.
      expect((await page(s.id, s.secret)).json()).toMatchObject({
        status: 'complete',
        subscription: body.subscription,
      });
      const again = await confirm(s.id, s.secret, { token: await tokenFor('4242 4242 4242 4242') });
      expect(again.statusCode).toBe(409);
      expect(again.json().code).toBe('invalid_state');
      expect(await subscriptionsOf(body.customer)).toHaveLength(1);

      // The card that paid is the default one; the event says the session completed.
      const methods = (await t.call('GET', `/v1/customers/${body.customer}/payment-methods`)).json()
        .data as Array<{
        last4: string;
        isDefault: boolean;
      }>;
      expect(methods.find((m) => m.isDefault)?.last4).toBe('4242');
      // Events are listed in commit-safe order: on PostgreSQL once every older transaction ended.
      await vi.waitFor(
        async () => {
          const events = (await t.call('GET', '/v1/events?type=checkout_session.completed&limit=100')).json()
            .data as Array<{ aggregate: { id: string }; data: { object: Record<string, unknown> } }>;
          expect(events.find((e) => e.aggregate.id === s.id)?.data.object).toMatchObject({
            id: s.id,
            status: 'complete',
            customer: body.customer,
            subscription: body.subscription,
          });
        },
        { timeout: 20_000, interval: 50 },
      );

      // What the session did is audited under its own name.
      const audit = (await t.call('GET', `/v1/audit-log?apiKey=checkout_session:${s.id}&limit=100`)).json()
        .data as Array<{
        action: string;
        status: number;
      }>;
      expect(audit.map((a) => `${a.action} ${a.status}`)).toEqual(
        expect.arrayContaining([
          'checkout_sessions.confirm 402',
          'customers.create 201',
          'payment_methods.attach 201',
          'checkout_sessions.confirm 200',
          'checkout_sessions.confirm 409',
        ]),
      );
    });

    it('insufficient funds (9995) is a 402 with its own message', async () => {
      const s = await newSession();
      const res = await confirm(s.id, s.secret, { token: await tokenFor('4000000000009995') });
      expect(res.statusCode).toBe(402);
      expect(res.json()).toMatchObject({
        declineCode: 'insufficient_funds',
        detail: 'Your card has insufficient funds.',
      });
    });

    it('a card that attaches but fails every charge (0341): the next card pays the same invoice, one subscription', async () => {
      const s = await newSession();
      const failed = await confirm(s.id, s.secret, { token: await tokenFor('4000000000000341') });
      expect(failed.statusCode, failed.body).toBe(402);
      expect(failed.json()).toMatchObject({
        declineCode: 'card_declined',
        detail: 'Your card was declined.',
      });
      const session = (await t.call('GET', `/v1/checkout-sessions/${s.id}`)).json();
      expect(session.status).toBe('open');
      expect(session.customer).toMatch(/^cus_/);
      expect(session.subscription).toMatch(/^sub_/);
      expect(await subscriptionsOf(session.customer)).toEqual([
        expect.objectContaining({ id: session.subscription, status: 'incomplete' }),
      ]);
      expect((await page(s.id, s.secret)).json().subscription).toBe(session.subscription);

      const ok = await confirm(s.id, s.secret, { token: await tokenFor('5555 5555 5555 4444') });
      expect(ok.statusCode, ok.body).toBe(200);
      expect(ok.json()).toMatchObject({ customer: session.customer, subscription: session.subscription });
      expect(ok.json().redirectUrl).toBe(`http://127.0.0.1/checkout/${s.id}/complete`);
      expect(await subscriptionsOf(session.customer)).toEqual([
        expect.objectContaining({ id: session.subscription, status: 'active' }),
      ]);
      const invoices = (await t.call('GET', `/v1/invoices?subscription=${session.subscription}`)).json().data;
      expect(invoices).toHaveLength(1);
      expect(invoices[0]).toMatchObject({ status: 'paid', total: 10900 });
      const payments = (await t.call('GET', `/v1/payments?customer=${session.customer}`)).json()
        .data as Array<{
        status: string;
        amount: number;
      }>;
      expect(payments.map((p) => p.status).sort()).toEqual(['failed', 'succeeded']);
      const methods = (await t.call('GET', `/v1/customers/${session.customer}/payment-methods`)).json()
        .data as Array<{
        last4: string;
        isDefault: boolean;
      }>;
      expect(methods.map((m) => m.last4).sort()).toEqual(['0341', '4444']);
      expect(methods.find((m) => m.isDefault)?.last4).toBe('4444');
    });

    it('two confirms at once: one runs, the other is a 409; one subscription', async () => {
      const s = await newSession();
      const token = await tokenFor('4242424242424242');
      const sims = t.app.services.providers.embedded;
      // Park the simulators' payment API so the first confirm is held inside its provider calls.
      for (const sim of sims) sim.state.faults.hold = true;
      const first = confirm(s.id, s.secret, { token });
      const deadline = Date.now() + 5_000;
      while (sims.every((sim) => sim.state.held.length === 0) && Date.now() < deadline) {
        await new Promise((r) => setTimeout(r, 10));
      }
      const second = await confirm(s.id, s.secret, { token });
      expect(second.statusCode, second.body).toBe(409);
      expect(second.json().code).toBe('invalid_state');
      expect(second.json().detail).toContain('in progress');
      // Held until released: let the parked calls (and any later ones) through.
      const release = setInterval(() => {
        for (const sim of sims) {
          sim.state.faults.hold = false;
          for (const resolve of sim.state.held.splice(0)) resolve();
        }
      }, 5);
      try {
        const res = await first;
        expect(res.statusCode, res.body).toBe(200);
        expect(await subscriptionsOf(res.json().customer)).toHaveLength(1);
      } finally {
        clearInterval(release);
      }
    });

    it('a trial plan completes trialing with the card on file for the renewal', async () => {
      const s = await newSession({ plan: 'books-trial' });
      const res = await confirm(s.id, s.secret, { token: await tokenFor('4242424242424242') });
      expect(res.statusCode, res.body).toBe(200);
      expect(await subscriptionsOf(res.json().customer)).toEqual([
        expect.objectContaining({ id: res.json().subscription, status: 'trialing' }),
      ]);
      const methods = (await t.call('GET', `/v1/customers/${res.json().customer}/payment-methods`)).json()
        .data;
      expect(methods).toEqual([expect.objectContaining({ last4: '4242', isDefault: true })]);
    });

    it('an existing customer checks out as itself', async () => {
      const c = (
        await t.call('POST', '/v1/customers', { externalId: 'confirm-existing-1', market: 'SE' })
      ).json();
      const s = await newSession({
        externalId: undefined,
        market: undefined,
        customer: 'confirm-existing-1',
      });
      const res = await confirm(s.id, s.secret, { token: await tokenFor('4242424242424242') });
      expect(res.statusCode, res.body).toBe(200);
      expect(res.json().customer).toBe(c.id);
    });

    it('refuses new cards after 20 attempts on one session (no card testing through one link)', async () => {
      const s = await newSession();
      const declining = ['tok_chargeDeclined', 'tok_chargeDeclinedInsufficientFunds'];
      for (let i = 0; i < 20; i++) {
        const res = await confirm(s.id, s.secret, { token: declining[i % 2]! });
        expect(res.statusCode, res.body).toBe(402);
      }
      const refused = await confirm(s.id, s.secret, { token: 'tok_visa' });
      expect(refused.statusCode).toBe(429);
      expect(refused.json()).toMatchObject({ code: 'too_many_attempts', attemptsMax: 20 });
      expect(refused.json().detail).toContain('20 payment attempts');
      const customer = (await t.call('GET', `/v1/checkout-sessions/${s.id}`)).json().customer as string;
      expect(await subscriptionsOf(customer)).toHaveLength(0);
    });

    it('takes only a token: a card number in the body is refused (400 naming it), nothing is attempted', async () => {
      const s = await newSession();
      for (const body of [
        { token: 'tok_visa', number: '4242424242424242' },
        { number: '4242424242424242', expMonth: 12, expYear: nextYear, cvc: '123' },
        { token: '4242 4242 4242 4242' },
        { token: 'x'.repeat(256) },
      ]) {
        const res = await confirm(s.id, s.secret, body);
        expect(res.statusCode, JSON.stringify(body)).toBe(400);
        const paths = (res.json().errors as Array<{ path: string }>).map((e) => e.path);
        // A number beside a token is an unknown field; without a token, the token is missing.
        expect(paths).toContain('token' in body && 'number' in body ? 'number' : 'token');
      }
      const session = (await t.call('GET', `/v1/checkout-sessions/${s.id}`)).json();
      expect(session).toMatchObject({ status: 'open', customer: null, subscription: null });
      const attempts = await sql<{
        attempts: number;
      }>`SELECT attempts FROM checkout_sessions WHERE id = ${s.id}`.execute(t.app.database.db);
      expect(attempts.rows[0]!.attempts).toBe(0);
      // A token the provider does not know is refused naming it, and the session stays usable.
      const unknown = await confirm(s.id, s.secret, { token: 'tok_unknown' });
      expect(unknown.statusCode, unknown.body).toBe(400);
      expect(unknown.json().errors[0].path).toBe('token');
      const ok = await confirm(s.id, s.secret, { token: 'tok_visa' });
      expect(ok.statusCode, ok.body).toBe(200);
    });

    it('expire: an open session is expired at once (its page 401s); a complete one is a 409', async () => {
      const s = await newSession();
      const res = await t.call('POST', `/v1/checkout-sessions/${s.id}/expire`);
      expect(res.statusCode, res.body).toBe(200);
      expect(res.json().status).toBe('expired');
      expect((await page(s.id, s.secret)).statusCode).toBe(401);
      expect((await confirm(s.id, s.secret, { token: 'tok_visa' })).statusCode).toBe(401);
      expect((await t.call('POST', `/v1/checkout-sessions/${s.id}/expire`)).json().status).toBe('expired');

      const done = await newSession();
      expect((await confirm(done.id, done.secret, { token: 'tok_visa' })).statusCode).toBe(200);
      const refused = await t.call('POST', `/v1/checkout-sessions/${done.id}/expire`);
      expect(refused.statusCode).toBe(409);
      expect(refused.json().code).toBe('invalid_state');
      expect((await t.call('GET', '/v1/checkout-sessions/cs_nope/expire')).statusCode).toBe(404);
      expect(
        (await t.call('POST', '/v1/checkout-sessions/cs_01JD0000000000000000000000/expire')).statusCode,
      ).toBe(404);
    });
  });

  // Last: it moves the app's public origin.
  it('the URL and the card frame follow the public origin once the server listens', async () => {
    t.app.services.publicOrigin.listening('0.0.0.0', 4321);
    const s = await newSession();
    expect(s.url).toMatch(new RegExp(`^http://localhost:4321/checkout/${s.id}#cs_secret_`));
    const frameFor = (origin: string) =>
      simulator().app.inject({
        method: 'GET',
        url: `/elements/card?parentOrigin=${encodeURIComponent(origin)}`,
      });
    const framed = await frameFor('http://localhost:4321');
    expect(framed.statusCode).toBe(200);
    expect(framed.headers['content-security-policy']).toContain('frame-ancestors http://localhost:4321');
    expect((await frameFor('http://127.0.0.1')).statusCode).toBe(400);
  });
});
