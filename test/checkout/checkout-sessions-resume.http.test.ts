import { sql } from 'kysely';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ManualClock } from '../../src/kernel/clock.js';
import { startTestApp, type TestApp } from '../support/app.js';
import { ENGINE } from '../support/database.js';

const T0 = '2027-03-01T10:00:00Z';
const HOUR = 3_600_000;

/**
 * Hosted checkout over time and through failures: expiry after 24 hours on the app's clock, the
 * 30-day prune, a confirm whose node died (its claim lapses, the same token resumes it), a
 * provider that does not answer (202, then the same token completes with one card and one charge),
 * and a subscription made before the session could record it (found by its request key).
 */
describe(`checkout sessions over time and failures (${ENGINE})`, () => {
  let t: TestApp;
  const clock = new ManualClock(T0);
  let n = 0;

  beforeAll(async () => {
    t = await startTestApp(
      { providerTimeoutMs: 300, authFailuresPerMinute: 100_000, publicUrl: 'https://pay.example.com' },
      clock,
    );
    await t.markets('SE');
    const ok = async (url: string, body: unknown) => {
      const res = await t.call('POST', url, body);
      if (res.statusCode !== 201) throw new Error(`${url}: ${res.body}`);
    };
    await ok('/v1/products', { code: 'music', name: 'Music', features: ['ad-free'], seats: 1 });
    await ok('/v1/plans', {
      code: 'music-monthly',
      product: 'music',
      billingPeriod: 'month',
      trialDays: 0,
      prices: [{ currency: 'SEK', amount: 10900 }],
    });
  });
  afterAll(() => t.close());

  const newSession = async (body: Record<string, unknown> = {}) => {
    const res = await t.call('POST', '/v1/checkout-sessions', {
      plan: 'music-monthly',
      externalId: `resume-shopper-${++n}`,
      market: 'SE',
      ...body,
    });
    expect(res.statusCode, res.body).toBe(201);
    const s = res.json();
    return { ...s, secret: String(s.url).split('#')[1]! } as { id: string; secret: string; url: string };
  };
  const page = (id: string, secret: string) =>
    t.call('GET', `/v1/checkout-sessions/${id}/page`, undefined, { key: secret });
  const confirm = (id: string, secret: string, token: string) =>
    t.call('POST', `/v1/checkout-sessions/${id}/confirm`, { token }, { key: secret });
  const row = async (id: string) =>
    (
      await sql<{ status: string; attempts: number }>`
        SELECT status, attempts FROM checkout_sessions WHERE id = ${id}`.execute(t.app.database.db)
    ).rows[0];

  it('builds its URL on REPRISE_PUBLIC_URL and allows redirects there only', async () => {
    const s = await newSession({ successUrl: 'https://pay.example.com/done' });
    expect(s.url).toMatch(new RegExp(`^https://pay\\.example\\.com/checkout/${s.id}#cs_secret_`));
    const refused = await t.call('POST', '/v1/checkout-sessions', {
      plan: 'music-monthly',
      externalId: 'resume-redirect-1',
      market: 'SE',
      cancelUrl: 'http://127.0.0.1/back',
    });
    expect(refused.statusCode).toBe(400);
    expect(refused.json().errors[0].path).toBe('cancelUrl');
    // The card frame may be embedded by that origin only.
    const sim = t.app.services.providers.embedded[0]!;
    expect([...sim.state.allowedPageOrigins()]).toEqual(['https://pay.example.com']);
    const framed = await sim.app.inject({
      method: 'GET',
      url: `/elements/card?parentOrigin=${encodeURIComponent('https://pay.example.com')}`,
    });
    expect(framed.statusCode).toBe(200);
    expect(framed.headers['content-security-policy']).toContain('frame-ancestors https://pay.example.com');
    const other = await sim.app.inject({
      method: 'GET',
      url: `/elements/card?parentOrigin=${encodeURIComponent('http://127.0.0.1')}`,
    });
    expect(other.statusCode).toBe(400);
  });

  it('expires 24 hours after creation on the clock: the page and confirm 401, reads say expired; pruned 30 days later', async () => {
    clock.set(T0);
    const s = await newSession();
    const fresh = await newSession();
    clock.advanceMs(24 * HOUR - 1_000);
    expect((await page(s.id, s.secret)).statusCode).toBe(200);
    clock.advanceMs(2_000);
    expect((await t.call('GET', `/v1/checkout-sessions/${s.id}`)).json().status).toBe('expired');
    expect((await page(s.id, s.secret)).statusCode).toBe(401);
    // The read that found it past its time made it expired.
    expect((await row(s.id))?.status).toBe('expired');
    const confirmed = await confirm(s.id, s.secret, 'tok_visa');
    expect(confirmed.statusCode).toBe(401);
    expect((await row(s.id))?.attempts).toBe(0);
    expect((await t.call('POST', `/v1/checkout-sessions/${s.id}/expire`)).json().status).toBe('expired');

    clock.advanceMs(29 * 24 * HOUR);
    expect(await t.app.services.checkout.prune()).toBe(0);
    clock.advanceMs(24 * HOUR);
    expect(await t.app.services.checkout.prune()).toBeGreaterThanOrEqual(2);
    expect((await t.call('GET', `/v1/checkout-sessions/${s.id}`)).statusCode).toBe(404);
    expect((await t.call('GET', `/v1/checkout-sessions/${fresh.id}`)).statusCode).toBe(404);
    const kept = await newSession();
    expect(await t.app.services.checkout.prune()).toBe(0);
    expect((await t.call('GET', `/v1/checkout-sessions/${kept.id}`)).statusCode).toBe(200);
  });

  it('a confirm whose node died holds the session until its claim lapses; the same token resumes its attempt', async () => {
    const s = await newSession();
    // What a confirm that crashed right after claiming leaves behind.
    await t.app.services.checkout.claim(s.id, 'tok_visa');
    const busy = await confirm(s.id, s.secret, 'tok_visa');
    expect(busy.statusCode).toBe(409);
    expect(busy.json().detail).toContain('in progress');
    clock.advanceMs(5 * 60_000 + 1_000);
    const ok = await confirm(s.id, s.secret, 'tok_visa');
    expect(ok.statusCode, ok.body).toBe(200);
    expect((await row(s.id))?.attempts).toBe(1);
  });

  it('a provider that does not answer: 202, the page polls, the same token completes with one card and one charge', async () => {
    const s = await newSession();
    const sims = t.app.services.providers.embedded;
    const heldAt = async (count: number) => {
      const deadline = Date.now() + 10_000;
      while (sims.reduce((sum, sim) => sum + sim.state.held.length, 0) < count) {
        if (Date.now() > deadline) throw new Error('no request was held');
        await new Promise((r) => setTimeout(r, 5));
      }
    };
    const releaseHeld = () => {
      for (const sim of sims) for (const resolve of sim.state.held.splice(0)) resolve();
    };
    for (const sim of sims) sim.state.faults.hold = true;
    const first = confirm(s.id, s.secret, 'tok_visa');
    // The card is attached at each simulator; then the charge is parked, and its retries: no answer.
    await heldAt(1);
    releaseHeld();
    await heldAt(1);
    releaseHeld();
    const res = await first;
    expect(res.statusCode, res.body).toBe(202);
    expect(res.json()).toEqual({ status: 'open', processing: true });
    for (const sim of sims) sim.state.faults.hold = false;
    releaseHeld();

    const shown = (await page(s.id, s.secret)).json();
    expect(shown.status).toBe('open');
    expect(shown.subscription).toMatch(/^sub_/);
    const again = await confirm(s.id, s.secret, 'tok_visa');
    expect(again.statusCode, again.body).toBe(200);
    expect(again.json().subscription).toBe(shown.subscription);
    const customer = again.json().customer as string;
    const methods = (await t.call('GET', `/v1/customers/${customer}/payment-methods`)).json().data;
    expect(methods).toHaveLength(1);
    const payments = (await t.call('GET', `/v1/payments?customer=${customer}`)).json().data as Array<{
      id: string;
      status: string;
    }>;
    expect(payments).toEqual([expect.objectContaining({ status: 'succeeded' })]);
    const charges = sims
      .flatMap((sim) => [...sim.state.charges.values()])
      .filter((c) => c.idempotencyKey === payments[0]!.id);
    expect(charges.filter((c) => c.captured)).toHaveLength(1);
    expect((await row(s.id))?.attempts).toBe(1);
  });

  it('a subscription made before the session recorded it (a crash) is found by its request key: one subscription', async () => {
    const c = (await t.call('POST', '/v1/customers', { externalId: 'resume-crash-1', market: 'SE' })).json();
    expect(
      (
        await t.call('POST', `/v1/customers/${c.id}/payment-methods`, {
          provider: 'simulator',
          token: 'tok_visa',
        })
      ).statusCode,
    ).toBe(201);
    const s = await newSession({ externalId: undefined, market: undefined, customer: c.id });
    // A confirm that died after the checkout workflow opened the subscription, before anything else.
    const opened = await t.app.services.billing.openCheckout(
      { customer: c.id, plan: 'music-monthly' },
      `checkout:${s.id}:subscribe`,
    );
    const ok = await confirm(s.id, s.secret, 'tok_mastercard');
    expect(ok.statusCode, ok.body).toBe(200);
    expect(ok.json().subscription).toBe(opened.subscriptionId);
    const subs = (await t.call('GET', `/v1/subscriptions?customer=${c.id}`)).json().data;
    expect(subs).toEqual([expect.objectContaining({ id: opened.subscriptionId, status: 'active' })]);
  });
});
