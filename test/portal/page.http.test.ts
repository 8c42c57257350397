import { sql } from 'kysely';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CARD_ATTACHES_MAX } from '../../src/modules/portal/service.js';
import { startTestApp, type TestApp } from '../support/app.js';
import { ENGINE } from '../support/database.js';
import { openPortal, pageCall } from './support.js';

/**
 * The portal page's API through HTTP, as the page calls it (the session secret as bearer, an
 * Idempotency-Key on every POST): what it shows and what it changes, only ever for the session's
 * customer, with the same outcomes as the API's own routes.
 */
describe(`customer portal page (${ENGINE})`, () => {
  let t: TestApp;
  let n = 0;
  const plans: Record<string, string> = {};

  beforeAll(async () => {
    t = await startTestApp({ providerTimeoutMs: 1_000 });
    await t.markets('SE', 'US', 'DE');
    const ok = async (url: string, body: Record<string, unknown>) => {
      const res = await t.call('POST', url, body);
      if (res.statusCode !== 201) throw new Error(`${url}: ${res.body}`);
      if (url === '/v1/plans') plans[body.code as string] = res.json().id;
    };
    await ok('/v1/products', { code: 'music', name: 'Music', features: ['ad-free'], seats: 1 });
    await ok('/v1/products', { code: 'duo', name: 'Duo', features: ['ad-free', 'shared'], seats: 2 });
    await ok('/v1/products', { code: 'family', name: 'Family', features: ['ad-free', 'kids'], seats: 3 });
    const plan = (code: string, name: string, product: string, prices: unknown[], extra = {}) =>
      ok('/v1/plans', { code, name, product, billingPeriod: 'month', trialDays: 0, prices, ...extra });
    await plan('basic', 'Basic', 'music', [
      { currency: 'SEK', amount: 10900 },
      { currency: 'USD', amount: 1199 },
    ]);
    await plan('premium', 'Premium', 'music', [{ currency: 'SEK', amount: 16900 }]);
    await plan('lite', 'Lite', 'music', [{ currency: 'SEK', amount: 7900 }]);
    await plan('duo', 'Duo', 'duo', [{ currency: 'SEK', amount: 14900 }]);
    await plan('family', 'Family', 'family', [{ currency: 'SEK', amount: 17900 }]);
    await plan('euro-only', 'Euro', 'music', [{ currency: 'EUR', amount: 999 }]);
    await plan('trial', 'Trial', 'duo', [{ currency: 'SEK', amount: 14900 }], { trialDays: 14 });
  });
  afterAll(() => t.close());

  /** A customer on a test clock at `at`, with a card. */
  const customer = async (
    at = '2027-01-01T00:00:00Z',
    opts: { market?: string; token?: string; name?: string; email?: string } = {},
  ) => {
    const clock = (await t.call('POST', '/v1/test-clocks', { frozenTime: at })).json();
    const res = await t.call('POST', '/v1/customers', {
      externalId: `page-user-${++n}`,
      market: opts.market ?? 'SE',
      testClock: clock.id,
      ...(opts.name ? { name: opts.name } : {}),
      ...(opts.email ? { email: opts.email } : {}),
    });
    expect(res.statusCode, res.body).toBe(201);
    const id = res.json().id as string;
    const pm = await t.call('POST', `/v1/customers/${id}/payment-methods`, {
      provider: 'simulator',
      token: opts.token ?? 'tok_visa',
    });
    expect(pm.statusCode, pm.body).toBe(201);
    return { id, clock: clock.id as string, externalId: res.json().externalId as string, method: pm.json() };
  };
  const subscribe = async (customerId: string, plan: string) => {
    const res = await t.call('POST', '/v1/subscriptions', { customer: customerId, plan });
    expect(res.statusCode, res.body).toBe(201);
    return res.json() as { id: string; currentPeriodEnd: string; currentPeriodStart: string };
  };
  const advance = async (clock: string, frozenTime: string) => {
    const res = await t.call('POST', `/v1/test-clocks/${clock}/advance`, { frozenTime });
    expect(res.statusCode, res.body).toBe(200);
  };
  const apiSub = async (id: string) => (await t.call('GET', `/v1/subscriptions/${id}`)).json();

  it('overview: the customer, market, card, frame and current subscriptions, newest first', async () => {
    const c = await customer('2027-01-01T00:00:00Z', { name: 'Ada Lovelace', email: 'ada@example.com' });
    const music = await subscribe(c.id, 'basic');
    const family = await subscribe(c.id, 'family');
    expect(
      (await t.call('POST', `/v1/subscriptions/${family.id}/members`, { externalId: 'kid-a' })).statusCode,
    ).toBe(201);
    // Ended now: not shown.
    const ended = await subscribe(c.id, 'duo');
    expect(
      (await t.call('POST', `/v1/subscriptions/${ended.id}/cancel`, { timing: 'immediate' })).statusCode,
    ).toBe(200);
    const session = await openPortal(t, c.externalId);
    const res = await pageCall(t, session, 'GET', '/overview');
    expect(res.statusCode, res.body).toBe(200);
    const simulator = t.app.services.providers.embedded[0]!.url;
    expect(res.json()).toEqual({
      session: { id: session.id, expiresAt: session.body.expiresAt, returnUrl: null },
      customer: { id: c.id, externalId: c.externalId, name: 'Ada Lovelace', email: 'ada@example.com' },
      market: { code: 'SE', currency: 'SEK', locale: 'sv-SE', taxRateBps: 2500, taxInclusive: true },
      paymentMethod: { id: c.method.id, brand: 'visa', last4: '4242' },
      provider: {
        kind: 'simulator',
        elementsUrl: `${simulator}/elements/card`,
        origin: new URL(simulator).origin,
      },
      subscriptions: [
        {
          id: family.id,
          status: 'active',
          plan: { id: plans.family, code: 'family', name: 'Family', billingPeriod: 'month' },
          product: { code: 'family', name: 'Family', seats: 3 },
          price: { amount: 17900, currency: 'SEK' },
          currentPeriodStart: '2027-01-01T00:00:00Z',
          currentPeriodEnd: '2027-02-01T00:00:00Z',
          trialEnd: null,
          cancelAt: null,
          pausedAt: null,
          pendingChange: null,
          members: ['kid-a'],
          seatsLeft: 1,
          nextRenewal: { at: '2027-02-01T00:00:00Z', amount: 17900, amountDue: 17900, currency: 'SEK' },
          createdAt: '2027-01-01T00:00:00Z',
        },
        expect.objectContaining({
          id: music.id,
          status: 'active',
          plan: { id: plans.basic, code: 'basic', name: 'Basic', billingPeriod: 'month' },
          product: { code: 'music', name: 'Music', seats: 1 },
          members: [],
          seatsLeft: 0,
          nextRenewal: { at: '2027-02-01T00:00:00Z', amount: 10900, amountDue: 10900, currency: 'SEK' },
        }),
      ],
    });
    // A US customer: its own market, locale and currency; tax added on top (0 % here).
    const us = await customer('2027-01-01T00:00:00Z', { market: 'US' });
    await subscribe(us.id, 'basic');
    const usView = (await pageCall(t, await openPortal(t, us.id), 'GET', '/overview')).json();
    expect(usView.market).toEqual({
      code: 'US',
      currency: 'USD',
      locale: 'en-US',
      taxRateBps: 0,
      taxInclusive: false,
    });
    expect(usView.subscriptions[0].nextRenewal).toEqual({
      at: '2027-02-01T00:00:00Z',
      amount: 1199,
      amountDue: 1199,
      currency: 'USD',
    });
    expect(usView.customer).toMatchObject({ name: null, email: null });
  });

  it('a trial shows its end, and the first invoice it will bill then', async () => {
    const c = await customer('2027-01-01T00:00:00Z');
    const sub = await subscribe(c.id, 'trial');
    const [view] = (await pageCall(t, await openPortal(t, c.id), 'GET', '/overview')).json().subscriptions;
    expect(view).toMatchObject({
      id: sub.id,
      status: 'trialing',
      trialEnd: '2027-01-15T00:00:00Z',
      currentPeriodEnd: '2027-01-15T00:00:00Z',
      price: { amount: 14900, currency: 'SEK' },
      nextRenewal: { at: '2027-01-15T00:00:00Z', amount: 14900, amountDue: 14900, currency: 'SEK' },
    });
  });

  it("another customer's subscription is 404 on every route, and nothing of it changes", async () => {
    const me = await customer();
    const other = await customer();
    const theirs = await subscribe(other.id, 'family');
    expect(
      (await t.call('POST', `/v1/subscriptions/${theirs.id}/members`, { externalId: 'their-kid' }))
        .statusCode,
    ).toBe(201);
    const before = await apiSub(theirs.id);
    const session = await openPortal(t, me.id);
    const calls: Array<[method: 'GET' | 'POST' | 'DELETE', path: string, body?: unknown]> = [
      ['GET', `/plans?subscription=${theirs.id}`],
      ['POST', `/subscriptions/${theirs.id}/change/preview`, { plan: 'premium' }],
      ['POST', `/subscriptions/${theirs.id}/change`, { plan: 'premium' }],
      ['POST', `/subscriptions/${theirs.id}/cancel`, {}],
      ['POST', `/subscriptions/${theirs.id}/reactivate`, {}],
      ['POST', `/subscriptions/${theirs.id}/pause`, {}],
      ['POST', `/subscriptions/${theirs.id}/resume`, {}],
      ['POST', `/subscriptions/${theirs.id}/members`, { externalId: 'intruder' }],
      ['DELETE', `/subscriptions/${theirs.id}/members/their-kid`],
      ['POST', '/subscriptions/sub_01JD0000000000000000000000/cancel', {}],
    ];
    for (const [method, path, body] of calls) {
      const res = await pageCall(t, session, method, path, body);
      expect(res.statusCode, `${method} ${path}: ${res.body}`).toBe(404);
      expect(res.json().code).toBe('not_found');
      expect(res.body).not.toContain('their-kid');
      expect(res.body).not.toContain(other.id);
    }
    expect(await apiSub(theirs.id)).toEqual(before);
    // Their invoices never show in mine.
    const mine = (await pageCall(t, session, 'GET', '/invoices')).json();
    expect(mine).toEqual({ data: [], nextCursor: null });
  });

  it('plans: what the subscription may change to, priced in the customer’s market, its own plan and too-small plans left out', async () => {
    const c = await customer();
    const sub = await subscribe(c.id, 'basic');
    const session = await openPortal(t, c.id);
    const res = await pageCall(t, session, 'GET', `/plans?subscription=${sub.id}`);
    expect(res.statusCode, res.body).toBe(200);
    expect(res.json()).toEqual({
      data: [
        {
          id: plans.premium,
          code: 'premium',
          name: 'Premium',
          billingPeriod: 'month',
          product: { code: 'music', name: 'Music', seats: 1 },
          price: { amount: 16900, currency: 'SEK' },
        },
        expect.objectContaining({ code: 'lite', price: { amount: 7900, currency: 'SEK' } }),
        expect.objectContaining({ code: 'duo', product: { code: 'duo', name: 'Duo', seats: 2 } }),
        expect.objectContaining({ code: 'family', price: { amount: 17900, currency: 'SEK' } }),
        expect.objectContaining({ code: 'trial', price: { amount: 14900, currency: 'SEK' } }),
      ],
    });
    // A family with two members fits only plans of three seats or more: none but its own.
    const fam = await subscribe(c.id, 'family');
    for (const kid of ['k1', 'k2'])
      await t.call('POST', `/v1/subscriptions/${fam.id}/members`, { externalId: kid });
    const famPlans = await pageCall(t, session, 'GET', `/plans?subscription=${fam.id}`);
    expect(famPlans.json()).toEqual({ data: [] });
    // A US customer sees only what is priced in USD.
    const us = await customer('2027-01-01T00:00:00Z', { market: 'US' });
    const usSub = await subscribe(us.id, 'basic');
    const usPlans = await pageCall(t, await openPortal(t, us.id), 'GET', `/plans?subscription=${usSub.id}`);
    expect(usPlans.json()).toEqual({ data: [] });
    const missing = await pageCall(t, session, 'GET', '/plans');
    expect(missing.statusCode).toBe(400);
    expect(missing.json().errors[0]).toMatchObject({ path: 'subscription', in: 'query' });
  });

  it('change: the preview is exactly the API’s; the upgrade applies at once and bills the proration', async () => {
    const c = await customer('2027-01-01T00:00:00Z');
    const sub = await subscribe(c.id, 'basic');
    await advance(c.clock, '2027-01-10T12:00:00Z');
    const session = await openPortal(t, c.id);
    const preview = await pageCall(t, session, 'POST', `/subscriptions/${sub.id}/change/preview`, {
      plan: 'premium',
    });
    expect(preview.statusCode, preview.body).toBe(200);
    const api = await t.call('POST', `/v1/subscriptions/${sub.id}/change/preview`, { plan: 'premium' });
    expect(preview.json()).toEqual(api.json());
    expect(preview.json()).toMatchObject({
      timing: 'immediate',
      invoice: {
        total: 11994 - 7735,
        lines: [
          expect.objectContaining({ kind: 'proration_credit', amount: -7735 }),
          expect.objectContaining({ kind: 'proration_charge', amount: 11994 }),
          expect.objectContaining({ kind: 'tax' }),
        ],
      },
    });
    // The portal takes only a plan: the API's timing and unit are not offered.
    const extra = await pageCall(t, session, 'POST', `/subscriptions/${sub.id}/change/preview`, {
      plan: 'premium',
      timing: 'end_of_term',
    });
    expect(extra.statusCode).toBe(400);
    expect(extra.json().errors[0].path).toBe('timing');

    const change = await pageCall(t, session, 'POST', `/subscriptions/${sub.id}/change`, { plan: 'premium' });
    expect(change.statusCode, change.body).toBe(200);
    expect(change.json()).toMatchObject({
      id: sub.id,
      status: 'active',
      plan: { code: 'premium', name: 'Premium' },
      price: { amount: 16900, currency: 'SEK' },
      pendingChange: null,
      nextRenewal: { at: '2027-02-01T00:00:00Z', amount: 16900, amountDue: 16900, currency: 'SEK' },
    });
    const invoices = (await pageCall(t, session, 'GET', '/invoices')).json().data;
    expect(invoices[0]).toMatchObject({
      billingReason: 'subscription_update',
      status: 'paid',
      total: preview.json().invoice.total,
      amountPaid: preview.json().invoice.amountDue,
    });
    expect(await apiSub(sub.id)).toMatchObject({ plan: plans.premium, price: 16900 });
  });

  it('change: a downgrade waits for the term end (pendingChange, next renewal at the new price)', async () => {
    const c = await customer('2027-01-01T00:00:00Z');
    const sub = await subscribe(c.id, 'premium');
    const session = await openPortal(t, c.id);
    const preview = (
      await pageCall(t, session, 'POST', `/subscriptions/${sub.id}/change/preview`, { plan: 'lite' })
    ).json();
    expect(preview).toMatchObject({ timing: 'end_of_term', effectiveAt: '2027-02-01T00:00:00Z' });
    const res = await pageCall(t, session, 'POST', `/subscriptions/${sub.id}/change`, { plan: 'lite' });
    expect(res.statusCode, res.body).toBe(200);
    expect(res.json()).toMatchObject({
      plan: { code: 'premium' },
      pendingChange: {
        plan: plans.lite,
        planCode: 'lite',
        planName: 'Lite',
        effectiveAt: '2027-02-01T00:00:00Z',
      },
      nextRenewal: { at: '2027-02-01T00:00:00Z', amount: 7900, amountDue: 7900, currency: 'SEK' },
    });
    expect(preview.invoice.total).toBe(7900);
  });

  it('change: a declined charge is 402 with the decline, the change applied and the subscription past_due (as the API)', async () => {
    const c = await customer('2027-01-01T00:00:00Z');
    const sub = await subscribe(c.id, 'basic');
    await advance(c.clock, '2027-01-15T00:00:00Z');
    const session = await openPortal(t, c.id);
    // The new card attaches but every charge of it is declined.
    const card = await pageCall(t, session, 'POST', '/payment-methods', { token: 'tok_chargeCustomerFail' });
    expect(card.statusCode, card.body).toBe(201);
    const res = await pageCall(t, session, 'POST', `/subscriptions/${sub.id}/change`, { plan: 'premium' });
    expect(res.statusCode, res.body).toBe(402);
    expect(res.headers['content-type']).toContain('application/problem+json');
    expect(res.json()).toMatchObject({
      code: 'payment_declined',
      declineCode: 'card_declined',
      subscription: sub.id,
      invoice: expect.stringMatching(/^in_/),
    });
    expect(await apiSub(sub.id)).toMatchObject({ status: 'past_due', plan: plans.premium });
  });

  it('cancel at the term end shows when access ends; reactivate undoes it until then, 409 after', async () => {
    const c = await customer('2027-01-01T00:00:00Z');
    const sub = await subscribe(c.id, 'basic');
    const session = await openPortal(t, c.id);
    const canceled = await pageCall(t, session, 'POST', `/subscriptions/${sub.id}/cancel`, {});
    expect(canceled.statusCode, canceled.body).toBe(200);
    expect(canceled.json()).toMatchObject({
      status: 'active',
      cancelAt: '2027-02-01T00:00:00Z',
      currentPeriodEnd: '2027-02-01T00:00:00Z',
      nextRenewal: null,
    });
    // Still listed while it runs.
    const listed = (await pageCall(t, session, 'GET', '/overview')).json().subscriptions;
    expect(listed.map((s: { id: string }) => s.id)).toEqual([sub.id]);
    const undone = await pageCall(t, session, 'POST', `/subscriptions/${sub.id}/reactivate`);
    expect(undone.statusCode, undone.body).toBe(200);
    expect(undone.json()).toMatchObject({
      cancelAt: null,
      nextRenewal: { at: '2027-02-01T00:00:00Z', amount: 10900 },
    });
    // The portal never cancels immediately, nor takes a refund.
    const refund = await pageCall(t, session, 'POST', `/subscriptions/${sub.id}/cancel`, {
      timing: 'immediate',
    });
    expect(refund.statusCode).toBe(400);
    expect(refund.json().errors[0].path).toBe('timing');
    expect((await pageCall(t, session, 'POST', `/subscriptions/${sub.id}/cancel`)).statusCode).toBe(200);
    await advance(c.clock, '2027-02-01T00:00:01Z');
    expect(await apiSub(sub.id)).toMatchObject({ status: 'canceled' });
    const late = await pageCall(t, session, 'POST', `/subscriptions/${sub.id}/reactivate`);
    expect(late.statusCode).toBe(409);
    expect(late.json().code).toBe('invalid_state');
    expect((await pageCall(t, session, 'GET', '/overview')).json().subscriptions).toEqual([]);
  });

  it('pause and resume', async () => {
    const c = await customer('2027-01-01T00:00:00Z');
    const sub = await subscribe(c.id, 'basic');
    await advance(c.clock, '2027-01-11T00:00:00Z');
    const session = await openPortal(t, c.id);
    const paused = await pageCall(t, session, 'POST', `/subscriptions/${sub.id}/pause`, {});
    expect(paused.statusCode, paused.body).toBe(200);
    expect(paused.json()).toMatchObject({
      status: 'paused',
      pausedAt: '2027-01-11T00:00:00Z',
      nextRenewal: null,
    });
    expect((await pageCall(t, session, 'POST', `/subscriptions/${sub.id}/pause`, {})).statusCode).toBe(409);
    await advance(c.clock, '2027-01-21T00:00:00Z');
    // As the page sends it: no body at all (nor a content type).
    const resumed = await t.call(
      'POST',
      `/v1/portal-sessions/${session.id}/subscriptions/${sub.id}/resume`,
      undefined,
      {
        key: session.secret,
        headers: { 'idempotency-key': `resume-${sub.id}` },
      },
    );
    expect(resumed.statusCode, resumed.body).toBe(200);
    expect(resumed.json()).toMatchObject({ status: 'active', pausedAt: null });
    expect(await apiSub(sub.id)).toMatchObject({ status: 'active' });
    const invoices = (await pageCall(t, session, 'GET', '/invoices')).json().data as Array<{
      billingReason: string;
      total: number;
      amountPaid: number;
    }>;
    expect(invoices.map((i) => i.billingReason)).toEqual([
      'subscription_resume',
      'subscription_pause',
      'subscription_create',
    ]);
    // The pause's credit paid the resume; what is left of it pays part of the next renewal.
    const [resume, pause] = invoices;
    expect(pause!.total).toBeLessThan(0);
    expect(resume!.amountPaid).toBe(0);
    const creditLeft = -pause!.total - resume!.total;
    expect(creditLeft).toBeGreaterThan(0);
    expect(resumed.json().nextRenewal).toEqual({
      at: '2027-02-01T00:00:00Z',
      amount: 10900,
      amountDue: 10900 - creditLeft,
      currency: 'SEK',
    });
    // A body field the portal does not take.
    const at = await pageCall(t, session, 'POST', `/subscriptions/${sub.id}/pause`, {
      at: '2027-01-25T00:00:00Z',
    });
    expect(at.statusCode).toBe(400);
    expect(at.json().errors[0].path).toBe('at');
  });

  it('members: add and remove, seats left counted, 409 naming the seats when full', async () => {
    const c = await customer();
    const sub = await subscribe(c.id, 'family');
    const session = await openPortal(t, c.id);
    const add = (externalId: string) =>
      pageCall(t, session, 'POST', `/subscriptions/${sub.id}/members`, { externalId });
    const first = await add('kid-1');
    expect(first.statusCode, first.body).toBe(201);
    expect(first.json()).toMatchObject({ members: ['kid-1'], seatsLeft: 1 });
    const second = await add('kid-2');
    expect(second.json()).toMatchObject({ members: ['kid-1', 'kid-2'], seatsLeft: 0 });
    const full = await add('kid-3');
    expect(full.statusCode).toBe(409);
    expect(full.json().code).toBe('invalid_state');
    expect(full.json().detail).toMatch(/3 seats/);
    const twice = await add('kid-1');
    expect(twice.statusCode).toBe(409);
    expect(twice.json().code).toBe('already_exists');
    const removed = await pageCall(t, session, 'DELETE', `/subscriptions/${sub.id}/members/kid-1`);
    expect(removed.statusCode, removed.body).toBe(200);
    expect(removed.json()).toMatchObject({ members: ['kid-2'], seatsLeft: 1 });
    const gone = await pageCall(t, session, 'DELETE', `/subscriptions/${sub.id}/members/kid-1`);
    expect(gone.statusCode).toBe(404);
    expect((await apiSub(sub.id)).members).toEqual(['kid-2']);
    // Entitled as a member through the API's own read.
    const ent = await t.call('GET', '/v1/entitlements/kid-2');
    expect(ent.json().active).toBe(true);
  });

  it('payment method: a new card becomes the default; a declined one is 402 with a detail for the customer and changes nothing', async () => {
    const c = await customer();
    const session = await openPortal(t, c.id);
    const added = await pageCall(t, session, 'POST', '/payment-methods', { token: 'tok_mastercard' });
    expect(added.statusCode, added.body).toBe(201);
    expect(added.json()).toEqual({ id: expect.stringMatching(/^pm_/), brand: 'mastercard', last4: '4444' });
    expect((await pageCall(t, session, 'GET', '/overview')).json().paymentMethod).toEqual(added.json());
    const methods = (await t.call('GET', `/v1/customers/${c.id}/payment-methods`)).json().data;
    expect(methods.map((m: { id: string; isDefault: boolean }) => [m.id, m.isDefault])).toEqual([
      [c.method.id, false],
      [added.json().id, true],
    ]);
    for (const [token, declineCode, detail] of [
      ['tok_chargeDeclined', 'card_declined', 'Your card was declined.'],
      ['tok_chargeDeclinedInsufficientFunds', 'insufficient_funds', 'Your card has insufficient funds.'],
      ['tok_chargeDeclinedExpiredCard', 'expired_card', 'Your card has expired.'],
    ]) {
      const res = await pageCall(t, session, 'POST', '/payment-methods', { token });
      expect(res.statusCode, res.body).toBe(402);
      expect(res.json()).toMatchObject({ code: 'payment_declined', declineCode, detail });
    }
    const unknown = await pageCall(t, session, 'POST', '/payment-methods', { token: 'tok_nope' });
    expect(unknown.statusCode).toBe(400);
    expect(unknown.json().errors[0].path).toBe('token');
    const missing = await pageCall(t, session, 'POST', '/payment-methods', {});
    expect(missing.statusCode).toBe(400);
    expect(missing.json().errors[0].path).toBe('token');
    expect((await t.call('GET', `/v1/customers/${c.id}/payment-methods`)).json().data).toHaveLength(2);
    expect((await pageCall(t, session, 'GET', '/overview')).json().paymentMethod).toEqual(added.json());
  });

  it(`a session attaches at most ${CARD_ATTACHES_MAX} cards, declined ones counted: then 429 too_many_attempts, nothing attached`, async () => {
    const c = await customer();
    const session = await openPortal(t, c.id);
    const cards = () => t.call('GET', `/v1/customers/${c.id}/payment-methods`).then((r) => r.json().data);
    const attachesOf = async (id: string) =>
      (
        await sql<{
          card_attaches: number;
        }>`SELECT card_attaches FROM portal_sessions WHERE id = ${id}`.execute(t.app.services.db)
      ).rows[0]!.card_attaches;
    // Declines, an unknown token and accepted cards all count; a body the schema refuses never
    // reaches the provider and does not.
    expect((await pageCall(t, session, 'POST', '/payment-methods', {})).statusCode).toBe(400);
    const first = await pageCall(
      t,
      session,
      'POST',
      '/payment-methods',
      { token: 'tok_visa' },
      {
        idempotencyKey: 'attach-first',
      },
    );
    expect(first.statusCode, first.body).toBe(201);
    expect((await pageCall(t, session, 'POST', '/payment-methods', { token: 'tok_nope' })).statusCode).toBe(
      400,
    );
    for (let i = 3; i <= CARD_ATTACHES_MAX; i++) {
      const token = i % 2 === 0 ? 'tok_chargeDeclined' : 'tok_chargeDeclinedInsufficientFunds';
      const res = await pageCall(t, session, 'POST', '/payment-methods', { token });
      expect(res.statusCode, res.body).toBe(402);
    }
    expect(await attachesOf(session.id)).toBe(CARD_ATTACHES_MAX);
    const before = await cards();
    const refused = await pageCall(t, session, 'POST', '/payment-methods', { token: 'tok_mastercard' });
    expect(refused.statusCode, refused.body).toBe(429);
    expect(refused.headers['content-type']).toContain('application/problem+json');
    expect(refused.json()).toMatchObject({
      status: 429,
      code: 'too_many_attempts',
      attemptsMax: CARD_ATTACHES_MAX,
    });
    expect(refused.json().detail).toContain(`${CARD_ATTACHES_MAX} cards`);
    // Refused before the provider: no card, no count past the cap, the default unchanged.
    expect(await cards()).toEqual(before);
    expect(await attachesOf(session.id)).toBe(CARD_ATTACHES_MAX);
    // The refusal is audited as the session's.
    const audit = await sql<{ status: number }>`SELECT status FROM audit_log
      WHERE api_key_id = ${`portal_session:${session.id}`} AND action = 'portal.payment_methods.attach'
      ORDER BY id DESC LIMIT 1`.execute(t.app.services.db);
    expect(audit.rows[0]?.status).toBe(429);
    // The first attach's replay still answers (a replay runs nothing, counts nothing).
    const replay = await pageCall(
      t,
      session,
      'POST',
      '/payment-methods',
      { token: 'tok_visa' },
      {
        idempotencyKey: 'attach-first',
      },
    );
    expect(replay.statusCode).toBe(201);
    expect(replay.headers['idempotent-replayed']).toBe('true');
    // The rest of the portal works; a new link starts afresh.
    expect((await pageCall(t, session, 'GET', '/overview')).statusCode).toBe(200);
    const next = await openPortal(t, c.id);
    const added = await pageCall(t, next, 'POST', '/payment-methods', { token: 'tok_mastercard' });
    expect(added.statusCode, added.body).toBe(201);
  });

  it('concurrent card attaches never get past the cap', async () => {
    const c = await customer();
    const session = await openPortal(t, c.id);
    const answers = await Promise.all(
      Array.from({ length: CARD_ATTACHES_MAX + 4 }, () =>
        pageCall(t, session, 'POST', '/payment-methods', { token: 'tok_chargeDeclined' }),
      ),
    );
    const statuses = answers.map((a) => a.statusCode);
    expect(statuses.filter((s) => s === 402)).toHaveLength(CARD_ATTACHES_MAX);
    expect(statuses.filter((s) => s === 429)).toHaveLength(4);
  });

  it('invoices: newest first, paged with a cursor', async () => {
    const c = await customer('2027-01-01T00:00:00Z');
    const sub = await subscribe(c.id, 'basic');
    await advance(c.clock, '2027-02-01T00:00:00Z');
    await advance(c.clock, '2027-03-01T00:00:00Z');
    await subscribe(c.id, 'duo');
    const api = (await t.call('GET', `/v1/invoices?customer=${c.id}`)).json().data as Array<{
      id: string;
      number: string;
      total: number;
      subscription: string;
    }>;
    expect(api).toHaveLength(4);
    const session = await openPortal(t, c.id);
    const seen: string[] = [];
    let cursor: string | null = null;
    let pages = 0;
    do {
      const query: string = `/invoices?limit=3${cursor ? `&cursor=${cursor}` : ''}`;
      const res = await pageCall(t, session, 'GET', query);
      expect(res.statusCode, res.body).toBe(200);
      const body = res.json() as { data: Array<{ id: string }>; nextCursor: string | null };
      seen.push(...body.data.map((i) => i.id));
      cursor = body.nextCursor;
      pages++;
    } while (cursor && pages < 10);
    expect(pages).toBe(2);
    expect(seen).toEqual(api.map((i) => i.id).reverse());
    const [newest] = (await pageCall(t, session, 'GET', '/invoices?limit=1')).json().data;
    const created = api.at(-1)!;
    expect(newest).toEqual({
      id: created.id,
      number: created.number,
      status: 'paid',
      total: 14900,
      amountPaid: 14900,
      currency: 'SEK',
      createdAt: '2027-03-01T00:00:00Z',
      periodStart: '2027-03-01T00:00:00Z',
      periodEnd: '2027-04-01T00:00:00Z',
      billingReason: 'subscription_create',
    });
    expect(api.filter((i) => i.subscription === sub.id)).toHaveLength(3);
    const bad = await pageCall(t, session, 'GET', '/invoices?limit=0');
    expect(bad.statusCode).toBe(400);
    expect(bad.json().errors[0]).toMatchObject({ path: 'limit', in: 'query' });
  });

  it("invoice PDFs: the customer's own as an attachment, another customer's and unknown ones 404", async () => {
    const me = await customer();
    const other = await customer();
    await subscribe(me.id, 'basic');
    await subscribe(other.id, 'basic');
    const [mine] = (await t.call('GET', `/v1/invoices?customer=${me.id}`)).json().data as Array<{
      id: string;
      number: string;
    }>;
    const [theirs] = (await t.call('GET', `/v1/invoices?customer=${other.id}`)).json().data as Array<{
      id: string;
    }>;
    const session = await openPortal(t, me.id);
    const res = await pageCall(t, session, 'GET', `/invoices/${mine!.id}/pdf`);
    expect(res.statusCode, res.body.slice(0, 200)).toBe(200);
    expect(res.headers['content-type']).toBe('application/pdf');
    expect(res.headers['content-disposition']).toBe(`attachment; filename="${mine!.number}.pdf"`);
    expect(res.rawPayload.subarray(0, 5).toString()).toBe('%PDF-');
    for (const id of [theirs!.id, 'in_01JD0000000000000000000000']) {
      const refused = await pageCall(t, session, 'GET', `/invoices/${id}/pdf`);
      expect(refused.statusCode, refused.body).toBe(404);
      expect(refused.body).not.toContain(other.id);
    }
  });

  it('an idempotent replay of a POST with the same Idempotency-Key answers the first answer, once', async () => {
    const c = await customer();
    const sub = await subscribe(c.id, 'family');
    const session = await openPortal(t, c.id);
    const key = `replay-${c.id}`;
    const body = { externalId: 'kid-replay' };
    const first = await pageCall(t, session, 'POST', `/subscriptions/${sub.id}/members`, body, {
      idempotencyKey: key,
    });
    const again = await pageCall(t, session, 'POST', `/subscriptions/${sub.id}/members`, body, {
      idempotencyKey: key,
    });
    expect(first.statusCode, first.body).toBe(201);
    expect(again.statusCode).toBe(201);
    expect(again.headers['idempotent-replayed']).toBe('true');
    expect(again.body).toBe(first.body);
    expect((await apiSub(sub.id)).members).toEqual(['kid-replay']);
    const other = await pageCall(
      t,
      session,
      'POST',
      `/subscriptions/${sub.id}/members`,
      { externalId: 'x' },
      {
        idempotencyKey: key,
      },
    );
    expect(other.statusCode).toBe(422);
    // A plan change replayed: one change.
    await advance(c.clock, '2027-01-05T00:00:00Z');
    const key2 = `replay-change-2-${c.id}`;
    const a = await pageCall(
      t,
      session,
      'POST',
      `/subscriptions/${sub.id}/change`,
      { plan: 'duo' },
      {
        idempotencyKey: key2,
      },
    );
    const b = await pageCall(
      t,
      session,
      'POST',
      `/subscriptions/${sub.id}/change`,
      { plan: 'duo' },
      {
        idempotencyKey: key2,
      },
    );
    expect(a.statusCode, a.body).toBe(200);
    expect(b.headers['idempotent-replayed']).toBe('true');
    expect(b.body).toBe(a.body);
    expect(a.json().pendingChange).toMatchObject({ planCode: 'duo' });
    // One change recorded (its request key is the session's Idempotency-Key).
    const changes = await sql<{ request_key: string | null }>`
      SELECT request_key FROM subscription_changes WHERE subscription_id = ${sub.id}`.execute(
      t.app.services.db,
    );
    expect(changes.rows).toEqual([{ request_key: `portal_session:${session.id}:${key2}` }]);
  });
});
