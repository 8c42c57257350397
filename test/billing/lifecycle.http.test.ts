import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { startTestApp, type TestApp } from '../support/app.js';
import { ENGINE } from '../support/database.js';

/** Cancel, reactivate, members, pause and resume through HTTP, on test clocks (exact periods and amounts). */
describe(`billing: cancel, reactivate, members, pause and resume (${ENGINE})`, () => {
  let t: TestApp;
  let n = 0;

  beforeAll(async () => {
    t = await startTestApp({ providerTimeoutMs: 1_000 });
    await t.markets('SE', 'US');
    const ok = async (url: string, body: unknown) => {
      const res = await t.call('POST', url, body);
      if (res.statusCode !== 201) throw new Error(`${url}: ${res.body}`);
    };
    await ok('/v1/products', { code: 'lc-music', name: 'Music', features: ['ad-free'], seats: 1 });
    await ok('/v1/products', { code: 'lc-books', name: 'Books', features: ['audiobooks'], seats: 1 });
    await ok('/v1/products', { code: 'lc-family', name: 'Family', features: ['family-hd'], seats: 3 });
    await ok('/v1/products', { code: 'lc-films', name: 'Films', features: ['films-hd'], seats: 1 });
    await ok('/v1/plans', {
      code: 'lc-music-monthly',
      product: 'lc-music',
      billingPeriod: 'month',
      trialDays: 0,
      prices: [
        { currency: 'SEK', amount: 10900 },
        { currency: 'USD', amount: 1199 },
      ],
    });
    await ok('/v1/plans', {
      code: 'lc-books-trial',
      product: 'lc-books',
      billingPeriod: 'month',
      trialDays: 14,
      prices: [{ currency: 'SEK', amount: 16900 }],
    });
    await ok('/v1/plans', {
      code: 'lc-family-monthly',
      product: 'lc-family',
      billingPeriod: 'month',
      trialDays: 0,
      prices: [{ currency: 'SEK', amount: 17900 }],
    });
    await ok('/v1/plans', {
      code: 'lc-films-immediate',
      product: 'lc-films',
      billingPeriod: 'month',
      trialDays: 0,
      prices: [{ currency: 'SEK', amount: 10000 }],
      cancelTiming: 'immediate',
    });
  });
  afterAll(() => t.close());

  const customer = async (market: 'SE' | 'US', at: string) => {
    const clock = (await t.call('POST', '/v1/test-clocks', { frozenTime: at })).json();
    const externalId = `lifecycle-user-${++n}`;
    const res = await t.call('POST', '/v1/customers', { externalId, market, testClock: clock.id });
    expect(res.statusCode).toBe(201);
    const id = res.json().id as string;
    await attach(id, 'tok_visa');
    return { id, externalId, clock: clock.id as string };
  };
  const attach = async (customerId: string, token: string) => {
    const pm = await t.call('POST', `/v1/customers/${customerId}/payment-methods`, {
      provider: 'simulator',
      token,
    });
    expect(pm.statusCode).toBe(201);
    return pm.json().id as string;
  };
  const advance = async (clock: string, frozenTime: string) => {
    const res = await t.call('POST', `/v1/test-clocks/${clock}/advance`, { frozenTime });
    expect(res.statusCode).toBe(200);
  };
  const subscribe = async (body: Record<string, unknown>) => {
    const res = await t.call('POST', '/v1/subscriptions', body);
    expect(res.statusCode).toBe(201);
    return res.json();
  };
  const post = (id: string, action: string, body?: unknown) =>
    t.call('POST', `/v1/subscriptions/${id}/${action}`, body);
  const getSub = async (id: string) => (await t.call('GET', `/v1/subscriptions/${id}`)).json();
  const invoicesOf = async (subscription: string) =>
    (await t.call('GET', `/v1/invoices?subscription=${subscription}`)).json().data as Array<
      Record<string, unknown> & { id: string; payment: string | null; lines: Array<Record<string, unknown>> }
    >;
  const paymentsOf = async (customerId: string) =>
    (await t.call('GET', `/v1/payments?customer=${customerId}&limit=100`)).json().data as Array<
      Record<string, unknown>
    >;
  const entitlement = async (externalId: string) =>
    (await t.call('GET', `/v1/entitlements/${encodeURIComponent(externalId)}`)).json();
  type Event = { type: string; data: { object: { id: string }; previousAttributes?: unknown } };
  const eventsOf = async (id: string) =>
    ((await t.call('GET', '/v1/events?type=subscription.*&limit=100')).json().data as Event[]).filter(
      (e) => e.data.object.id === id,
    );
  /** Events are readable once every older transaction ended (server-wide on PostgreSQL): wait for them. */
  const expectEvents = (id: string, types: string[]) =>
    vi.waitFor(async () => expect((await eventsOf(id)).map((e) => e.type)).toEqual(types), {
      timeout: 10_000,
      interval: 50,
    });
  const trialBalanced = async () => {
    const currencies = (await t.call('GET', '/v1/ledger/trial-balance?verify=true')).json()
      .currencies as Array<{ debits: number; credits: number; balanced: boolean }>;
    return currencies.every((c) => c.balanced && c.debits === c.credits);
  };

  it('cancel at the term end: access until the period end, then canceled by the clock with no renewal', async () => {
    const c = await customer('SE', '2027-01-15T00:00:00Z');
    const sub = await subscribe({ customer: c.id, plan: 'lc-music-monthly' });
    await advance(c.clock, '2027-01-20T10:00:00Z');

    const res = await post(sub.id, 'cancel', {});
    expect(res.statusCode).toBe(200);
    expect(res.json()).toMatchObject({
      status: 'active',
      cancelAt: '2027-02-15T00:00:00Z',
      endedAt: null,
      currentPeriodEnd: '2027-02-15T00:00:00Z',
    });
    await expectEvents(sub.id, ['subscription.created', 'subscription.activated', 'subscription.changed']);
    expect((await eventsOf(sub.id)).at(-1)?.data.previousAttributes).toEqual({ cancelAt: null });
    // No renewal margin: access ends exactly at the scheduled cancel.
    expect(await entitlement(c.externalId)).toMatchObject({
      active: true,
      sources: [{ subscription: sub.id, role: 'owner', validUntil: '2027-02-15T00:00:00Z' }],
    });
    // The same cancel again changes nothing (no second event).
    expect((await post(sub.id, 'cancel', { timing: 'end_of_term' })).json().cancelAt).toBe(
      '2027-02-15T00:00:00Z',
    );

    await advance(c.clock, '2027-02-14T23:59:59Z');
    expect((await getSub(sub.id)).status).toBe('active');
    expect((await entitlement(c.externalId)).active).toBe(true);

    await advance(c.clock, '2027-02-16T00:00:00Z');
    expect(await getSub(sub.id)).toMatchObject({
      status: 'canceled',
      endedAt: '2027-02-15T00:00:00Z',
      cancelAt: null,
      currentPeriodEnd: '2027-02-15T00:00:00Z',
    });
    expect(await invoicesOf(sub.id)).toHaveLength(1);
    expect(await paymentsOf(c.id)).toHaveLength(1);
    expect(await entitlement(c.externalId)).toMatchObject({ active: false, sources: [] });
    await expectEvents(sub.id, [
      'subscription.created',
      'subscription.activated',
      'subscription.changed',
      'subscription.canceled',
    ]);

    for (const action of ['cancel', 'reactivate']) {
      const refused = await post(sub.id, action, {});
      expect(refused.statusCode).toBe(409);
      expect(refused.json().code).toBe('invalid_state');
    }
    expect(await trialBalanced()).toBe(true);
  });

  it('reactivate before the term end: the cancel is undone and the subscription renews', async () => {
    const c = await customer('SE', '2027-01-15T00:00:00Z');
    const sub = await subscribe({ customer: c.id, plan: 'lc-music-monthly' });
    expect((await post(sub.id, 'reactivate')).statusCode).toBe(409);
    expect((await post(sub.id, 'cancel')).json().cancelAt).toBe('2027-02-15T00:00:00Z');
    await advance(c.clock, '2027-02-10T00:00:00Z');

    const res = await post(sub.id, 'reactivate', {});
    expect(res.statusCode).toBe(200);
    expect(res.json()).toMatchObject({ status: 'active', cancelAt: null });
    await expectEvents(sub.id, [
      'subscription.created',
      'subscription.activated',
      'subscription.changed',
      'subscription.changed',
    ]);
    expect((await eventsOf(sub.id)).at(-1)?.data.previousAttributes).toEqual({
      cancelAt: '2027-02-15T00:00:00Z',
    });

    await advance(c.clock, '2027-02-15T00:00:00Z');
    expect(await getSub(sub.id)).toMatchObject({
      status: 'active',
      cancelAt: null,
      endedAt: null,
      currentPeriodStart: '2027-02-15T00:00:00Z',
      currentPeriodEnd: '2027-03-15T00:00:00Z',
    });
    const invoices = await invoicesOf(sub.id);
    expect(invoices.map((i) => [i.status, i.total, i.periodStart])).toEqual([
      ['paid', 10900, '2027-01-15T00:00:00Z'],
      ['paid', 10900, '2027-02-15T00:00:00Z'],
    ]);
    await expectEvents(sub.id, [
      'subscription.created',
      'subscription.activated',
      'subscription.changed',
      'subscription.changed',
      'subscription.renewed',
    ]);
    expect((await post(sub.id, 'reactivate')).statusCode).toBe(409);
  });

  it('cancel during a trial: it ends at the trial end and is never charged; immediate ends it now', async () => {
    const c = await customer('SE', '2027-01-15T00:00:00Z');
    const sub = await subscribe({ customer: c.id, plan: 'lc-books-trial' });
    expect(sub).toMatchObject({ status: 'trialing', trialEnd: '2027-01-29T00:00:00Z' });
    const res = await post(sub.id, 'cancel');
    expect(res.statusCode).toBe(200);
    expect(res.json()).toMatchObject({ status: 'trialing', cancelAt: '2027-01-29T00:00:00Z' });
    expect((await entitlement(c.externalId)).sources).toEqual([
      { subscription: sub.id, role: 'owner', validUntil: '2027-01-29T00:00:00Z' },
    ]);

    await advance(c.clock, '2027-02-01T00:00:00Z');
    expect(await getSub(sub.id)).toMatchObject({ status: 'canceled', endedAt: '2027-01-29T00:00:00Z' });
    const invoices = await invoicesOf(sub.id);
    expect(invoices.map((i) => [i.status, i.total])).toEqual([['paid', 0]]);
    expect(await paymentsOf(c.id)).toEqual([]);
    expect((await entitlement(c.externalId)).active).toBe(false);
    // No trial_will_end for a trial canceled at its end, no activation.
    await expectEvents(sub.id, ['subscription.created', 'subscription.changed', 'subscription.canceled']);

    const d = await customer('SE', '2027-01-15T00:00:00Z');
    const other = await subscribe({ customer: d.id, plan: 'lc-books-trial' });
    await advance(d.clock, '2027-01-18T08:00:00Z');
    const now = await post(other.id, 'cancel', { timing: 'immediate' });
    expect(now.json()).toMatchObject({ status: 'canceled', endedAt: '2027-01-18T08:00:00Z', cancelAt: null });
    await advance(d.clock, '2027-02-01T00:00:00Z');
    expect(await invoicesOf(other.id)).toHaveLength(1);
    expect(await paymentsOf(d.id)).toEqual([]);
  });

  it('immediate cancel with a prorated refund (SE, 25 % inclusive): 14 of 31 days of 10900 = 4923 back', async () => {
    const c = await customer('SE', '2027-01-15T00:00:00Z');
    const sub = await subscribe({ customer: c.id, plan: 'lc-music-monthly' });
    await advance(c.clock, '2027-02-01T12:00:00Z');

    const wrong = await post(sub.id, 'cancel', { timing: 'end_of_term', refund: 'prorated' });
    expect(wrong.statusCode).toBe(400);
    expect(wrong.json().errors).toEqual([expect.objectContaining({ path: 'refund' })]);

    const res = await post(sub.id, 'cancel', { timing: 'immediate', refund: 'prorated' });
    expect(res.statusCode).toBe(200);
    expect(res.json()).toMatchObject({
      status: 'canceled',
      endedAt: '2027-02-01T12:00:00Z',
      cancelAt: null,
    });
    const [first] = await invoicesOf(sub.id);
    // [Feb 1, Feb 15) of [Jan 15, Feb 15): 10900 × 14 / 31 = 4922.58 → 4923.
    const payment = (await t.call('GET', `/v1/payments/${first?.payment}`)).json();
    expect(payment).toMatchObject({
      status: 'partially_refunded',
      amount: 10900,
      tax: 2180,
      amountRefunded: 4923,
    });
    const refunds = (await t.call('GET', `/v1/ledger/transactions?reference=${payment.id}`)).json();
    expect(refunds.data.length).toBeGreaterThan(0);
    expect((await entitlement(c.externalId)).active).toBe(false);
    await expectEvents(sub.id, ['subscription.created', 'subscription.activated', 'subscription.canceled']);

    // The refund's job (the net for a request that died) finds it done: nothing more is refunded.
    await advance(c.clock, '2027-02-02T00:00:00Z');
    expect((await t.call('GET', `/v1/payments/${first?.payment}`)).json().amountRefunded).toBe(4923);
    expect(await invoicesOf(sub.id)).toHaveLength(1);
    expect(await trialBalanced()).toBe(true);
  });

  it("an immediate cancel without refund; the plan's cancelTiming; past_due ends now and its open invoice is voided", async () => {
    const c = await customer('SE', '2027-01-15T00:00:00Z');
    const films = await subscribe({ customer: c.id, plan: 'lc-films-immediate' });
    await advance(c.clock, '2027-01-20T00:00:00Z');
    // The plan's cancelTiming (immediate) applies when the request names none; no refund by default.
    const res = await post(films.id, 'cancel');
    expect(res.json()).toMatchObject({ status: 'canceled', endedAt: '2027-01-20T00:00:00Z' });
    const [paid] = await invoicesOf(films.id);
    expect((await t.call('GET', `/v1/payments/${paid?.payment}`)).json()).toMatchObject({
      status: 'succeeded',
      amountRefunded: 0,
    });

    const d = await customer('SE', '2027-01-15T00:00:00Z');
    const sub = await subscribe({ customer: d.id, plan: 'lc-music-monthly' });
    const failing = await attach(d.id, 'tok_chargeCustomerFail');
    expect(
      (await t.call('POST', `/v1/customers/${d.id}/payment-methods/${failing}/default`)).statusCode,
    ).toBe(200);
    await advance(d.clock, '2027-02-16T00:00:00Z');
    expect((await getSub(sub.id)).status).toBe('past_due');
    // end_of_term has no term to run out while past_due: it ends now.
    const ended = await post(sub.id, 'cancel', { timing: 'end_of_term' });
    expect(ended.statusCode).toBe(200);
    expect(ended.json()).toMatchObject({
      status: 'canceled',
      endedAt: '2027-02-16T00:00:00Z',
      cancelAt: null,
    });
    const [, renewal] = await invoicesOf(sub.id);
    expect(renewal).toMatchObject({ status: 'void', total: 10900, periodStart: '2027-02-15T00:00:00Z' });
    const voided = (await t.call('GET', `/v1/ledger/transactions?reference=${renewal?.id}`)).json()
      .data as Array<{
      idempotencyKey: string;
    }>;
    expect(voided.map((e) => e.idempotencyKey)).toContain(`invoice:${renewal?.id}:void`);
    expect((await entitlement(d.externalId)).active).toBe(false);
    await vi.waitFor(
      async () => {
        const types = (
          (await t.call('GET', '/v1/events?type=invoice.voided&limit=100')).json().data as Array<{
            data: { object: { id: string } };
          }>
        ).map((e) => e.data.object.id);
        expect(types).toContain(renewal?.id);
      },
      { timeout: 10_000, interval: 50 },
    );
    expect(await trialBalanced()).toBe(true);
  });

  it('incomplete, expired and unknown subscriptions cannot be canceled', async () => {
    const c = await customer('SE', '2027-01-15T00:00:00Z');
    const failing = await attach(c.id, 'tok_chargeCustomerFail');
    const declined = await t.call('POST', '/v1/subscriptions', {
      customer: c.id,
      plan: 'lc-music-monthly',
      paymentMethod: failing,
    });
    expect(declined.statusCode).toBe(402);
    const id = declined.json().subscription as string;
    const refused = await post(id, 'cancel', { timing: 'immediate' });
    expect(refused.statusCode).toBe(409);
    expect(refused.json().code).toBe('invalid_state');
    await advance(c.clock, '2027-01-16T00:00:00Z');
    expect((await getSub(id)).status).toBe('expired');
    expect((await post(id, 'cancel')).statusCode).toBe(409);
    expect((await post('sub_00000000000000000000000000', 'cancel')).statusCode).toBe(404);
    const bad = await post(id, 'cancel', { timing: 'later' });
    expect(bad.statusCode).toBe(400);
    expect(bad.json().errors).toEqual([expect.objectContaining({ path: 'timing' })]);
  });

  it('members within the seats, one too many, the owner, twice, removal; members lose access when it ends', async () => {
    const c = await customer('SE', '2027-01-15T00:00:00Z');
    const sub = await subscribe({ customer: c.id, plan: 'lc-family-monthly' });
    const add = (externalId: string) => post(sub.id, 'members', { externalId });

    const first = await add('kid-a');
    expect(first.statusCode).toBe(201);
    expect(first.json()).toMatchObject({ id: sub.id, members: ['kid-a'] });
    expect((await add('kid-b')).json().members).toEqual(['kid-a', 'kid-b']);

    const over = await add('kid-c');
    expect(over.statusCode).toBe(409);
    expect(over.json()).toMatchObject({ code: 'invalid_state' });
    expect(over.json().detail).toContain('3 seats');
    const twice = await add('kid-a');
    expect(twice.statusCode).toBe(409);
    expect(twice.json().code).toBe('already_exists');
    const owner = await add(c.externalId);
    expect(owner.statusCode).toBe(400);
    expect(owner.json().errors).toEqual([expect.objectContaining({ path: 'externalId' })]);

    expect(await entitlement('kid-a')).toEqual({
      externalId: 'kid-a',
      active: true,
      features: ['family-hd'],
      sources: [{ subscription: sub.id, role: 'member', validUntil: '2027-02-16T00:00:00Z' }],
    });

    const removed = await t.call('DELETE', `/v1/subscriptions/${sub.id}/members/kid-a`);
    expect(removed.statusCode).toBe(200);
    expect(removed.json().members).toEqual(['kid-b']);
    expect(await entitlement('kid-a')).toMatchObject({ active: false, sources: [] });
    expect((await t.call('DELETE', `/v1/subscriptions/${sub.id}/members/kid-a`)).statusCode).toBe(404);
    // A seat is free again.
    expect((await add('kid-c')).json().members).toEqual(['kid-b', 'kid-c']);

    await expectEvents(sub.id, [
      'subscription.created',
      'subscription.activated',
      'subscription.changed',
      'subscription.changed',
      'subscription.changed',
      'subscription.changed',
    ]);
    expect((await eventsOf(sub.id)).slice(2).map((e) => e.data.previousAttributes)).toEqual([
      { members: [] },
      { members: ['kid-a'] },
      { members: ['kid-a', 'kid-b'] },
      { members: ['kid-b'] },
    ]);

    expect((await post(sub.id, 'cancel', { timing: 'immediate' })).statusCode).toBe(200);
    expect((await entitlement('kid-b')).active).toBe(false);
    expect((await entitlement('kid-c')).active).toBe(false);
    expect((await add('kid-d')).statusCode).toBe(409);
  });

  const lines = (invoice: { lines: Array<Record<string, unknown>> } | undefined) =>
    invoice?.lines.map((l) => [l.kind, l.amount, l.periodStart, l.periodEnd]);

  it('pause Jan 20 of [Jan 15, Feb 15), resume Mar 3 (SE, 10900 SEK): exact credit, resume invoice and next renewal', async () => {
    const c = await customer('SE', '2027-01-15T00:00:00Z');
    const sub = await subscribe({ customer: c.id, plan: 'lc-music-monthly' });
    await advance(c.clock, '2027-01-20T00:00:00Z');

    const paused = await post(sub.id, 'pause', {});
    expect(paused.statusCode).toBe(200);
    expect(paused.json()).toMatchObject({
      status: 'paused',
      currentPeriodStart: '2027-01-15T00:00:00Z',
      currentPeriodEnd: '2027-02-15T00:00:00Z',
    });
    expect((await entitlement(c.externalId)).active).toBe(false);
    const [, pause] = await invoicesOf(sub.id);
    // [Jan 20, Feb 15) of [Jan 15, Feb 15): 10900 × 26/31 = 9141.94 → 9142; tax 9142 / 5 = 1828.4 → 1828.
    expect(pause).toMatchObject({
      status: 'paid',
      subtotal: -9142,
      tax: -1828,
      total: -9142,
      amountDue: 0,
      periodStart: '2027-01-20T00:00:00Z',
      periodEnd: '2027-02-15T00:00:00Z',
    });
    expect(lines(pause)).toEqual([
      ['proration_credit', -9142, '2027-01-20T00:00:00Z', '2027-02-15T00:00:00Z'],
      ['tax', -1828, '2027-01-20T00:00:00Z', '2027-02-15T00:00:00Z'],
    ]);
    expect((await post(sub.id, 'pause')).statusCode).toBe(409);

    // No renewal while paused.
    await advance(c.clock, '2027-03-03T00:00:00Z');
    expect(await invoicesOf(sub.id)).toHaveLength(2);
    expect((await getSub(sub.id)).status).toBe('paused');

    const resumed = await post(sub.id, 'resume');
    expect(resumed.statusCode).toBe(200);
    expect(resumed.json()).toMatchObject({
      status: 'active',
      currentPeriodStart: '2027-03-03T00:00:00Z',
      currentPeriodEnd: '2027-03-15T00:00:00Z',
    });
    const [, , resume] = await invoicesOf(sub.id);
    // [Mar 3, Mar 15) of [Feb 15, Mar 15): 10900 × 12/28 = 4671.43 → 4671, paid from the 9142 of credit.
    expect(resume).toMatchObject({
      status: 'paid',
      subtotal: 4671,
      tax: 934,
      total: 4671,
      amountDue: 0,
      payment: null,
      periodStart: '2027-03-03T00:00:00Z',
      periodEnd: '2027-03-15T00:00:00Z',
    });
    expect(lines(resume)).toEqual(
      expect.arrayContaining([
        ['recurring', 4671, '2027-03-03T00:00:00Z', '2027-03-15T00:00:00Z'],
        ['credit_applied', -4671, '2027-03-03T00:00:00Z', '2027-03-15T00:00:00Z'],
        ['tax', 934, '2027-03-03T00:00:00Z', '2027-03-15T00:00:00Z'],
      ]),
    );
    expect(resume?.lines).toHaveLength(3);
    expect(await entitlement(c.externalId)).toMatchObject({
      active: true,
      sources: [{ subscription: sub.id, role: 'owner', validUntil: '2027-03-16T00:00:00Z' }],
    });

    // The next renewal is a full period on the same grid; the 4471 of credit left pays first.
    await advance(c.clock, '2027-03-15T00:00:00Z');
    const [, , , renewal] = await invoicesOf(sub.id);
    expect(renewal).toMatchObject({
      status: 'paid',
      total: 10900,
      amountDue: 6429,
      periodStart: '2027-03-15T00:00:00Z',
      periodEnd: '2027-04-15T00:00:00Z',
    });
    expect((await t.call('GET', `/v1/payments/${renewal?.payment}`)).json()).toMatchObject({
      status: 'succeeded',
      amount: 6429,
    });
    await expectEvents(sub.id, [
      'subscription.created',
      'subscription.activated',
      'subscription.paused',
      'subscription.resumed',
      'subscription.renewed',
    ]);
    expect(await trialBalanced()).toBe(true);
  });

  it('resume with something due is charged; declined → 402 and past_due on the resume invoice', async () => {
    const c = await customer('SE', '2027-01-15T00:00:00Z');
    const sub = await subscribe({ customer: c.id, plan: 'lc-music-monthly' });
    await advance(c.clock, '2027-02-10T00:00:00Z');
    // [Feb 10, Feb 15): 10900 × 5/31 = 1758.06 → 1758 of credit.
    expect((await post(sub.id, 'pause')).json().status).toBe('paused');
    await advance(c.clock, '2027-03-03T00:00:00Z');
    const res = await post(sub.id, 'resume', {});
    expect(res.statusCode).toBe(200);
    expect(res.json()).toMatchObject({ status: 'active', currentPeriodEnd: '2027-03-15T00:00:00Z' });
    const resume = (await invoicesOf(sub.id))[2];
    expect(resume).toMatchObject({ status: 'paid', total: 4671, amountDue: 2913 });
    expect((await t.call('GET', `/v1/payments/${resume?.payment}`)).json()).toMatchObject({
      status: 'succeeded',
      amount: 2913,
      reference: resume?.id,
    });

    const d = await customer('SE', '2027-01-15T00:00:00Z');
    const other = await subscribe({ customer: d.id, plan: 'lc-music-monthly' });
    await advance(d.clock, '2027-02-10T00:00:00Z');
    await post(other.id, 'pause');
    const failing = await attach(d.id, 'tok_chargeCustomerFail');
    expect(
      (await t.call('POST', `/v1/customers/${d.id}/payment-methods/${failing}/default`)).statusCode,
    ).toBe(200);
    await advance(d.clock, '2027-03-03T00:00:00Z');
    const declined = await post(other.id, 'resume');
    expect(declined.statusCode).toBe(402);
    const invoice = (await invoicesOf(other.id))[2];
    expect(declined.json()).toMatchObject({
      code: 'payment_declined',
      subscription: other.id,
      invoice: invoice?.id,
    });
    expect(invoice).toMatchObject({ status: 'open', amountDue: 2913 });
    expect(await getSub(other.id)).toMatchObject({
      status: 'past_due',
      currentPeriodStart: '2027-03-03T00:00:00Z',
      currentPeriodEnd: '2027-03-15T00:00:00Z',
    });
    await expectEvents(other.id, [
      'subscription.created',
      'subscription.activated',
      'subscription.paused',
      'subscription.past_due',
    ]);
    expect((await entitlement(d.externalId)).active).toBe(true);

    // Dunning retries the resume invoice a day later with the new default card: active, period kept.
    const visa = await attach(d.id, 'tok_visa');
    expect((await t.call('POST', `/v1/customers/${d.id}/payment-methods/${visa}/default`)).statusCode).toBe(
      200,
    );
    await advance(d.clock, '2027-03-04T00:00:01Z');
    expect(await getSub(other.id)).toMatchObject({
      status: 'active',
      currentPeriodStart: '2027-03-03T00:00:00Z',
      currentPeriodEnd: '2027-03-15T00:00:00Z',
    });
    expect((await invoicesOf(other.id))[2]).toMatchObject({ status: 'paid', amountDue: 2913 });
    expect(await trialBalanced()).toBe(true);
  });

  it('pause and resume: refused states, a scheduled pause and resume, `at` in the past', async () => {
    const b = await customer('SE', '2027-01-15T00:00:00Z');
    const trial = await subscribe({ customer: b.id, plan: 'lc-books-trial' });
    const tp = await post(trial.id, 'pause');
    expect(tp.statusCode).toBe(409);
    // Another customer: account credit is the customer's, and would pay the trial's first invoice.
    const c = await customer('SE', '2027-01-15T00:00:00Z');
    const sub = await subscribe({ customer: c.id, plan: 'lc-music-monthly' });
    expect((await post(sub.id, 'resume')).statusCode).toBe(409);

    const past = await post(sub.id, 'pause', { at: '2027-01-14T00:00:00Z' });
    expect(past.statusCode).toBe(400);
    expect(past.json().errors).toEqual([expect.objectContaining({ path: 'at' })]);

    const later = await post(sub.id, 'pause', { at: '2027-01-20T00:00:00Z' });
    expect(later.statusCode).toBe(200);
    expect(later.json().status).toBe('active');
    await advance(c.clock, '2027-01-19T23:59:59Z');
    expect((await getSub(sub.id)).status).toBe('active');
    await advance(c.clock, '2027-01-21T00:00:00Z');
    expect(await getSub(sub.id)).toMatchObject({ status: 'paused' });
    expect((await invoicesOf(sub.id))[1]).toMatchObject({
      total: -9142,
      periodStart: '2027-01-20T00:00:00Z',
    });

    expect((await post(sub.id, 'resume', { at: '2027-03-03T00:00:00Z' })).json().status).toBe('paused');
    await advance(c.clock, '2027-03-04T00:00:00Z');
    expect(await getSub(sub.id)).toMatchObject({
      status: 'active',
      currentPeriodStart: '2027-03-03T00:00:00Z',
      currentPeriodEnd: '2027-03-15T00:00:00Z',
    });
    expect((await invoicesOf(sub.id))[2]).toMatchObject({ status: 'paid', total: 4671, amountDue: 0 });
  });
});
