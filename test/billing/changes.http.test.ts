import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { billingTables } from '../../src/modules/billing/tables.js';
import { startTestApp, type TestApp } from '../support/app.js';
import { ENGINE } from '../support/database.js';

/** Plan changes and their preview through HTTP, on test clocks: every line, amount and period exact. */
describe(`billing: plan changes (${ENGINE})`, () => {
  let t: TestApp;
  let n = 0;
  const planIds: Record<string, string> = {};

  beforeAll(async () => {
    t = await startTestApp({ providerTimeoutMs: 1_000 });
    await t.markets('SE');
    const ok = async (url: string, body: Record<string, unknown>) => {
      const res = await t.call('POST', url, body);
      if (res.statusCode !== 201) throw new Error(`${url}: ${res.body}`);
      if (url === '/v1/plans') planIds[body.code as string] = res.json().id;
    };
    await ok('/v1/products', { code: 'music', name: 'Music', features: ['ad-free'], seats: 1 });
    await ok('/v1/products', { code: 'duo', name: 'Duo', features: ['ad-free', 'shared'], seats: 2 });
    await ok('/v1/products', { code: 'films', name: 'Films', features: ['hd'], seats: 1 });
    const plan = (code: string, product: string, billingPeriod: string, amount: number, extra = {}) =>
      ok('/v1/plans', {
        code,
        product,
        billingPeriod,
        trialDays: 0,
        prices: [{ currency: 'SEK', amount }],
        ...extra,
      });
    await plan('basic', 'music', 'month', 10900);
    await plan('premium', 'music', 'month', 16900);
    await plan('lite', 'music', 'month', 7900);
    await plan('yearly', 'music', 'year', 109000);
    await plan('basic-trial', 'music', 'month', 10900, { trialDays: 14 });
    await plan('duo', 'duo', 'month', 14900);
    await plan('films', 'films', 'month', 10000);
  });
  afterAll(() => t.close());

  const customer = async (at: string, token = 'tok_visa') => {
    const clock = (await t.call('POST', '/v1/test-clocks', { frozenTime: at })).json();
    const res = await t.call('POST', '/v1/customers', {
      externalId: `change-user-${++n}`,
      market: 'SE',
      testClock: clock.id,
    });
    expect(res.statusCode).toBe(201);
    const id = res.json().id as string;
    const pm = await t.call('POST', `/v1/customers/${id}/payment-methods`, { provider: 'simulator', token });
    expect(pm.statusCode).toBe(201);
    return { id, clock: clock.id as string, externalId: res.json().externalId as string };
  };
  const advance = async (clock: string, frozenTime: string) => {
    const res = await t.call('POST', `/v1/test-clocks/${clock}/advance`, { frozenTime });
    expect(res.statusCode).toBe(200);
  };
  const subscribe = async (customerId: string, plan: string) => {
    const res = await t.call('POST', '/v1/subscriptions', { customer: customerId, plan });
    expect(res.statusCode).toBe(201);
    return res.json() as { id: string; status: string };
  };
  const change = (id: string, body: Record<string, unknown>) =>
    t.call('POST', `/v1/subscriptions/${id}/change`, body);
  const preview = (id: string, body: Record<string, unknown>) =>
    t.call('POST', `/v1/subscriptions/${id}/change/preview`, body);
  const getSub = async (id: string) => (await t.call('GET', `/v1/subscriptions/${id}`)).json();
  type InvoiceJson = Record<string, unknown> & {
    id: string;
    payment: string | null;
    lines: Array<Record<string, unknown>>;
  };
  const invoicesOf = async (subscription: string) =>
    (await t.call('GET', `/v1/invoices?subscription=${subscription}`)).json().data as InvoiceJson[];
  const eventsOf = async (id: string) =>
    (
      (await t.call('GET', '/v1/events?type=subscription.*&limit=100')).json().data as Array<{
        type: string;
        data: { object: { id: string }; previousAttributes?: Record<string, unknown> };
      }>
    ).filter((e) => e.data.object.id === id);
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
  const line = (kind: string, amount: number, periodStart: string, periodEnd: string) => ({
    kind,
    amount,
    periodStart,
    periodEnd,
  });
  /** Invoice lines without their descriptions. */
  const bare = (lines: Array<Record<string, unknown>>) =>
    lines.map(({ kind, amount, periodStart, periodEnd }) => ({ kind, amount, periodStart, periodEnd }));

  it('SE upgrade 10900 → 16900 on day 10 of a 31-day period: credit −7735, charge 11994, tax 852, charged and paid; the preview is exactly what it bills', async () => {
    const c = await customer('2027-01-01T00:00:00Z');
    const sub = await subscribe(c.id, 'basic');
    await advance(c.clock, '2027-01-10T12:00:00Z');

    // 22 of 31 days left: 10900 × 22/31 = 7735.48, 16900 × 22/31 = 11993.55.
    const expectedLines = [
      line('proration_credit', -7735, '2027-01-10T12:00:00Z', '2027-02-01T00:00:00Z'),
      line('proration_charge', 11994, '2027-01-10T12:00:00Z', '2027-02-01T00:00:00Z'),
      line('tax', 852, '2027-01-10T12:00:00Z', '2027-02-01T00:00:00Z'),
    ];
    const p = await preview(sub.id, { plan: 'premium' });
    expect(p.statusCode).toBe(200);
    const shown = p.json();
    expect(shown).toMatchObject({
      subscription: sub.id,
      plan: planIds.premium,
      timing: 'immediate',
      effectiveAt: '2027-01-10T12:00:00Z',
      nextRenewal: '2027-02-01T00:00:00Z',
      invoice: { currency: 'SEK', subtotal: 4259, tax: 852, total: 4259, amountDue: 4259 },
    });
    expect(bare(shown.invoice.lines)).toEqual(expectedLines);
    // The preview wrote nothing.
    expect(await invoicesOf(sub.id)).toHaveLength(1);
    expect((await getSub(sub.id)).plan).toBe(planIds.basic);

    const key = { headers: { 'idempotency-key': `upgrade-${sub.id}` } };
    const res = await t.call('POST', `/v1/subscriptions/${sub.id}/change`, { plan: 'premium' }, key);
    expect(res.statusCode).toBe(200);
    // A retry with the same key replays the answer: one change, one charge.
    const replay = await t.call('POST', `/v1/subscriptions/${sub.id}/change`, { plan: 'premium' }, key);
    expect(replay.statusCode).toBe(200);
    expect(replay.headers['idempotent-replayed']).toBe('true');
    expect(replay.json()).toEqual(res.json());
    expect(res.json()).toMatchObject({
      status: 'active',
      plan: planIds.premium,
      price: 16900,
      billingPeriod: 'month',
      currentPeriodStart: '2027-01-01T00:00:00Z',
      currentPeriodEnd: '2027-02-01T00:00:00Z',
      pendingChange: null,
    });
    const [, update, ...more] = await invoicesOf(sub.id);
    expect(more).toEqual([]);
    expect(update).toMatchObject({
      status: 'paid',
      currency: 'SEK',
      subtotal: 4259,
      tax: 852,
      total: 4259,
      amountDue: 4259,
      periodStart: '2027-01-10T12:00:00Z',
      periodEnd: '2027-02-01T00:00:00Z',
    });
    // What the preview showed, line for line (descriptions included).
    expect(update?.lines).toEqual(shown.invoice.lines);
    const payment = (await t.call('GET', `/v1/payments/${update?.payment}`)).json();
    expect(payment).toMatchObject({ status: 'succeeded', amount: 4259, tax: 852, reference: update?.id });
    await expectEvents(sub.id, ['subscription.created', 'subscription.activated', 'subscription.changed']);
    const changed = (await eventsOf(sub.id)).at(-1);
    expect(changed?.data.previousAttributes).toMatchObject({ plan: planIds.basic, price: 10900 });

    // The next renewal bills the new plan in full.
    await advance(c.clock, '2027-02-01T00:00:00Z');
    const renewal = (await invoicesOf(sub.id))[2];
    expect(renewal).toMatchObject({
      status: 'paid',
      total: 16900,
      periodStart: '2027-02-01T00:00:00Z',
      periodEnd: '2027-03-01T00:00:00Z',
    });
    expect(await trialBalanced()).toBe(true);
  });

  it('a downgrade waits for the term end (pendingChange); a second change replaces it, going back clears it; the renewal bills the new plan in full', async () => {
    const c = await customer('2027-01-01T00:00:00Z');
    const sub = await subscribe(c.id, 'premium');
    await advance(c.clock, '2027-01-10T12:00:00Z');

    const p = (await preview(sub.id, { plan: 'lite' })).json();
    expect(p).toMatchObject({
      timing: 'end_of_term',
      effectiveAt: '2027-02-01T00:00:00Z',
      nextRenewal: '2027-02-01T00:00:00Z',
      invoice: { subtotal: 7900, tax: 1580, total: 7900, amountDue: 7900 },
    });
    expect(bare(p.invoice.lines)).toEqual([
      line('recurring', 7900, '2027-02-01T00:00:00Z', '2027-03-01T00:00:00Z'),
      line('tax', 1580, '2027-02-01T00:00:00Z', '2027-03-01T00:00:00Z'),
    ]);

    const first = await change(sub.id, { plan: 'lite' });
    expect(first.statusCode).toBe(200);
    expect(first.json()).toMatchObject({
      plan: planIds.premium,
      price: 16900,
      pendingChange: { plan: planIds.lite, effectiveAt: '2027-02-01T00:00:00Z' },
    });
    const second = await change(sub.id, { plan: 'basic' });
    expect(second.json().pendingChange).toEqual({ plan: planIds.basic, effectiveAt: '2027-02-01T00:00:00Z' });
    const back = await change(sub.id, { plan: 'premium' });
    expect(back.statusCode).toBe(200);
    expect(back.json()).toMatchObject({ plan: planIds.premium, pendingChange: null });
    // The current plan with nothing pending is no change.
    const same = await change(sub.id, { plan: 'premium' });
    expect(same.statusCode).toBe(400);
    expect(same.json()).toMatchObject({ code: 'validation_failed', errors: [{ path: 'plan' }] });

    expect((await change(sub.id, { plan: 'basic' })).statusCode).toBe(200);
    expect(await invoicesOf(sub.id)).toHaveLength(1);

    await advance(c.clock, '2027-01-31T23:59:59Z');
    expect((await getSub(sub.id)).plan).toBe(planIds.premium);
    await advance(c.clock, '2027-02-01T00:00:00Z');
    expect(await getSub(sub.id)).toMatchObject({
      status: 'active',
      plan: planIds.basic,
      price: 10900,
      currentPeriodStart: '2027-02-01T00:00:00Z',
      currentPeriodEnd: '2027-03-01T00:00:00Z',
      pendingChange: null,
    });
    const [, renewal, ...more] = await invoicesOf(sub.id);
    expect(more).toEqual([]);
    expect(renewal).toMatchObject({
      status: 'paid',
      subtotal: 10900,
      tax: 2180,
      total: 10900,
      amountDue: 10900,
    });
    expect(bare(renewal?.lines ?? [])).toEqual([
      line('recurring', 10900, '2027-02-01T00:00:00Z', '2027-03-01T00:00:00Z'),
      line('tax', 2180, '2027-02-01T00:00:00Z', '2027-03-01T00:00:00Z'),
    ]);
    await expectEvents(sub.id, [
      'subscription.created',
      'subscription.activated',
      'subscription.changed',
      'subscription.changed',
      'subscription.changed',
      'subscription.changed',
      'subscription.changed',
      'subscription.renewed',
    ]);
    expect(await trialBalanced()).toBe(true);
  });

  it('month → year at Mar 5 12:00 is immediate: credit 10 of 28 days, the year [2027-01-15, 2028-01-15) containing c charged 316/365', async () => {
    const c = await customer('2027-01-15T00:00:00Z');
    const sub = await subscribe(c.id, 'basic');
    await advance(c.clock, '2027-03-05T12:00:00Z');
    const p = (await preview(sub.id, { plan: 'yearly' })).json();
    const res = await change(sub.id, { plan: 'yearly' });
    expect(res.statusCode).toBe(200);
    expect(res.json()).toMatchObject({
      plan: planIds.yearly,
      price: 109000,
      billingPeriod: 'year',
      currentPeriodStart: '2027-01-15T00:00:00Z',
      currentPeriodEnd: '2028-01-15T00:00:00Z',
    });
    // After the sign-up and the Feb 15 renewal.
    const update = (await invoicesOf(sub.id))[2];
    // 10900 × 10/28 = 3892.86; 109000 × 316/365 = 94367.12; tax 90474 / 5 = 18094.8.
    expect(update).toMatchObject({
      status: 'paid',
      subtotal: 90474,
      tax: 18095,
      total: 90474,
      amountDue: 90474,
    });
    expect(bare(update?.lines ?? [])).toEqual([
      line('proration_credit', -3893, '2027-03-05T12:00:00Z', '2027-03-15T00:00:00Z'),
      line('proration_charge', 94367, '2027-03-05T12:00:00Z', '2028-01-15T00:00:00Z'),
      line('tax', 18095, '2027-03-05T12:00:00Z', '2028-01-15T00:00:00Z'),
    ]);
    expect(p).toMatchObject({ timing: 'immediate', nextRenewal: '2028-01-15T00:00:00Z' });
    expect(p.invoice.lines).toEqual(update?.lines);

    // The old cycle job at Mar 15 finds the period moved and bills nothing.
    await advance(c.clock, '2027-03-15T00:00:00Z');
    expect(await invoicesOf(sub.id)).toHaveLength(3);
    expect((await getSub(sub.id)).currentPeriodEnd).toBe('2028-01-15T00:00:00Z');
    await advance(c.clock, '2028-01-15T00:00:00Z');
    const renewal = (await invoicesOf(sub.id))[3];
    expect(renewal).toMatchObject({
      status: 'paid',
      total: 109000,
      periodStart: '2028-01-15T00:00:00Z',
      periodEnd: '2029-01-15T00:00:00Z',
    });
  });

  it('a downgrade forced immediate: total −2143 becomes account credit, applied as credit_applied on the next renewal (87.57 due)', async () => {
    const c = await customer('2027-01-15T00:00:00Z');
    const sub = await subscribe(c.id, 'premium');
    await advance(c.clock, '2027-03-05T12:00:00Z');
    const p = (await preview(sub.id, { plan: 'basic', timing: 'immediate' })).json();
    expect(p.invoice).toMatchObject({ subtotal: -2143, tax: -429, total: -2143, amountDue: 0 });
    const res = await change(sub.id, { plan: 'basic', timing: 'immediate' });
    expect(res.statusCode).toBe(200);
    expect(res.json()).toMatchObject({
      plan: planIds.basic,
      price: 10900,
      currentPeriodEnd: '2027-03-15T00:00:00Z',
    });
    const update = (await invoicesOf(sub.id))[2];
    expect(update).toMatchObject({
      status: 'paid',
      subtotal: -2143,
      tax: -429,
      total: -2143,
      amountDue: 0,
      payment: null,
    });
    expect(bare(update?.lines ?? [])).toEqual([
      line('proration_credit', -6036, '2027-03-05T12:00:00Z', '2027-03-15T00:00:00Z'),
      line('proration_charge', 3893, '2027-03-05T12:00:00Z', '2027-03-15T00:00:00Z'),
      line('tax', -429, '2027-03-05T12:00:00Z', '2027-03-15T00:00:00Z'),
    ]);
    expect(update?.lines).toEqual(p.invoice.lines);

    await advance(c.clock, '2027-03-15T00:00:00Z');
    const renewal = (await invoicesOf(sub.id))[3];
    expect(renewal).toMatchObject({
      status: 'paid',
      subtotal: 10900,
      tax: 2180,
      total: 10900,
      amountDue: 8757,
    });
    expect(bare(renewal?.lines ?? [])).toEqual([
      line('recurring', 10900, '2027-03-15T00:00:00Z', '2027-04-15T00:00:00Z'),
      line('tax', 2180, '2027-03-15T00:00:00Z', '2027-04-15T00:00:00Z'),
      line('credit_applied', -2143, '2027-03-15T00:00:00Z', '2027-04-15T00:00:00Z'),
    ]);
    const payment = (await t.call('GET', `/v1/payments/${renewal?.payment}`)).json();
    expect(payment).toMatchObject({ status: 'succeeded', amount: 8757 });
    expect(await trialBalanced()).toBe(true);
  });

  it('prorationUnit second: 820,800 of 2,419,200 s → credit −3698, charge 5734', async () => {
    const c = await customer('2027-01-15T00:00:00Z');
    const sub = await subscribe(c.id, 'basic');
    await advance(c.clock, '2027-03-05T12:00:00Z');
    const res = await change(sub.id, { plan: 'premium', prorationUnit: 'second' });
    expect(res.statusCode).toBe(200);
    const update = (await invoicesOf(sub.id))[2];
    // 10900 × 19/56 = 3698.21; 16900 × 19/56 = 5733.93; tax 2036 / 5 = 407.2.
    expect(update).toMatchObject({ status: 'paid', subtotal: 2036, tax: 407, total: 2036, amountDue: 2036 });
    expect(bare(update?.lines ?? [])).toEqual([
      line('proration_credit', -3698, '2027-03-05T12:00:00Z', '2027-03-15T00:00:00Z'),
      line('proration_charge', 5734, '2027-03-05T12:00:00Z', '2027-03-15T00:00:00Z'),
      line('tax', 407, '2027-03-05T12:00:00Z', '2027-03-15T00:00:00Z'),
    ]);
  });

  it('during a trial a change is immediate and free: no invoice, the trial end unchanged; the trial end bills the new plan', async () => {
    const c = await customer('2027-01-15T00:00:00Z');
    const sub = await subscribe(c.id, 'basic-trial');
    expect(sub.status).toBe('trialing');
    await advance(c.clock, '2027-01-20T08:00:00Z');
    const p = (await preview(sub.id, { plan: 'premium', timing: 'end_of_term' })).json();
    expect(p).toEqual({
      subscription: sub.id,
      plan: planIds.premium,
      timing: 'immediate',
      effectiveAt: '2027-01-20T08:00:00Z',
      invoice: null,
      nextRenewal: '2027-01-29T00:00:00Z',
    });
    const res = await change(sub.id, { plan: 'premium', timing: 'end_of_term' });
    expect(res.statusCode).toBe(200);
    expect(res.json()).toMatchObject({
      status: 'trialing',
      plan: planIds.premium,
      price: 16900,
      trialEnd: '2027-01-29T00:00:00Z',
      currentPeriodEnd: '2027-01-29T00:00:00Z',
      pendingChange: null,
    });
    expect(await invoicesOf(sub.id)).toHaveLength(1);
    await advance(c.clock, '2027-01-29T00:00:00Z');
    const first = (await invoicesOf(sub.id))[1];
    expect(first).toMatchObject({
      status: 'paid',
      total: 16900,
      periodStart: '2027-01-29T00:00:00Z',
      periodEnd: '2027-02-28T00:00:00Z',
    });
    expect((await getSub(sub.id)).status).toBe('active');
  });

  it('a declined upgrade answers 402 with declineCode, subscription and invoice; the change stays applied and the subscription is past_due; past_due refuses a change (409)', async () => {
    const c = await customer('2027-01-01T00:00:00Z');
    const sub = await subscribe(c.id, 'basic');
    const failing = await t.call('POST', `/v1/customers/${c.id}/payment-methods`, {
      provider: 'simulator',
      token: 'tok_chargeCustomerFail',
    });
    expect(failing.statusCode).toBe(201);
    const def = await t.call(
      'POST',
      `/v1/customers/${c.id}/payment-methods/${failing.json().id}/default`,
      {},
    );
    expect(def.statusCode).toBe(200);
    await advance(c.clock, '2027-01-10T12:00:00Z');

    const res = await change(sub.id, { plan: 'premium' });
    expect(res.statusCode).toBe(402);
    const update = (await invoicesOf(sub.id))[1];
    expect(res.json()).toMatchObject({
      code: 'payment_declined',
      subscription: sub.id,
      invoice: update?.id,
    });
    expect(typeof res.json().declineCode).toBe('string');
    expect(update).toMatchObject({ status: 'open', total: 4259, amountDue: 4259 });
    expect(await getSub(sub.id)).toMatchObject({ status: 'past_due', plan: planIds.premium, price: 16900 });
    await expectEvents(sub.id, [
      'subscription.created',
      'subscription.activated',
      'subscription.changed',
      'subscription.past_due',
    ]);

    const refused = await change(sub.id, { plan: 'basic' });
    expect(refused.statusCode).toBe(409);
    expect(refused.json()).toMatchObject({
      code: 'invalid_state',
      status: 409,
      subscriptionStatus: 'past_due',
    });
    expect(refused.json().detail).toMatch(/past_due/);
    expect((await preview(sub.id, { plan: 'basic' })).statusCode).toBe(409);
    expect(await trialBalanced()).toBe(true);
  });

  it('a plan whose product has fewer seats than the owner and the members is refused (409 naming the seats); another product is allowed and the product follows', async () => {
    const c = await customer('2027-01-01T00:00:00Z');
    const sub = await subscribe(c.id, 'duo');
    await billingTables(t.app.database.db)
      .insertInto('subscription_members')
      .values({ subscription_id: sub.id, external_id: `${c.externalId}-partner`, created_at: new Date() })
      .execute();
    await advance(c.clock, '2027-01-10T12:00:00Z');
    const res = await change(sub.id, { plan: 'basic', timing: 'immediate' });
    expect(res.statusCode).toBe(409);
    expect(res.json()).toMatchObject({ code: 'invalid_state', seats: 1, members: 1 });
    expect(res.json().detail).toMatch(/1 seat/);
    expect((await preview(sub.id, { plan: 'basic' })).statusCode).toBe(409);
    expect(await invoicesOf(sub.id)).toHaveLength(1);

    // A single-seat customer may move to another product: the entitlements follow.
    const d = await customer('2027-01-01T00:00:00Z');
    const other = await subscribe(d.id, 'basic');
    await advance(d.clock, '2027-01-10T12:00:00Z');
    const moved = await change(other.id, { plan: 'films', timing: 'immediate' });
    expect(moved.statusCode).toBe(200);
    expect(moved.json().plan).toBe(planIds.films);
    const ent = (await t.call('GET', `/v1/entitlements/${d.externalId}`)).json();
    expect(ent).toMatchObject({ active: true, features: ['hd'] });
  });
});
