import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { transact } from '../../src/db/transaction.js';
import { startTestApp, type TestApp } from '../support/app.js';
import { ENGINE } from '../support/database.js';

/** Trial end and renewals through HTTP, on test clocks so every period and amount is exact. */
describe(`billing: trial end and renewals (${ENGINE})`, () => {
  let t: TestApp;
  let n = 0;

  beforeAll(async () => {
    t = await startTestApp({ providerTimeoutMs: 1_000 });
    await t.markets('SE', 'US');
    const ok = async (url: string, body: unknown) => {
      const res = await t.call('POST', url, body);
      if (res.statusCode !== 201) throw new Error(`${url}: ${res.body}`);
    };
    await ok('/v1/products', { code: 'music', name: 'Music', features: ['ad-free'], seats: 1 });
    await ok('/v1/products', { code: 'books', name: 'Books', features: ['audiobooks'], seats: 1 });
    await ok('/v1/products', { code: 'films', name: 'Films', features: ['hd'], seats: 1 });
    await ok('/v1/plans', {
      code: 'music-monthly',
      product: 'music',
      billingPeriod: 'month',
      trialDays: 0,
      prices: [
        { currency: 'SEK', amount: 10900 },
        { currency: 'USD', amount: 1199 },
      ],
    });
    await ok('/v1/plans', {
      code: 'books-trial',
      product: 'books',
      billingPeriod: 'month',
      trialDays: 14,
      prices: [
        { currency: 'SEK', amount: 16900 },
        { currency: 'USD', amount: 1199 },
      ],
    });
    await ok('/v1/plans', {
      code: 'films-monthly',
      product: 'films',
      billingPeriod: 'month',
      trialDays: 0,
      prices: [{ currency: 'SEK', amount: 10000 }],
    });
  });
  afterAll(() => t.close());

  const customer = async (market: 'SE' | 'US', at: string, extra: Record<string, unknown> = {}) => {
    const clock = (await t.call('POST', '/v1/test-clocks', { frozenTime: at })).json();
    const externalId = `renew-user-${++n}`;
    const { noCard: _, ...fields } = extra;
    const res = await t.call('POST', '/v1/customers', { externalId, market, testClock: clock.id, ...fields });
    expect(res.statusCode).toBe(201);
    const id = res.json().id as string;
    if (!extra.noCard) await attach(id, 'tok_visa');
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
  const getSub = async (id: string) => (await t.call('GET', `/v1/subscriptions/${id}`)).json();
  const invoicesOf = async (subscription: string) =>
    (await t.call('GET', `/v1/invoices?subscription=${subscription}`)).json().data as Array<
      Record<string, unknown> & { id: string; payment: string | null; lines: Array<Record<string, unknown>> }
    >;
  const eventsOf = async (id: string) =>
    (
      (await t.call('GET', '/v1/events?type=subscription.*&limit=100')).json().data as Array<{
        type: string;
        data: { object: { id: string } };
      }>
    )
      .filter((e) => e.data.object.id === id)
      .map((e) => e.type);
  /**
   * The list shows an event once every transaction older than its own has ended (server-wide on
   * PostgreSQL, where other test files run at the same time): wait for it.
   */
  const expectEvents = (id: string, types: string[]) =>
    vi.waitFor(async () => expect(await eventsOf(id)).toEqual(types), { timeout: 10_000, interval: 50 });
  const trialBalanced = async () => {
    const currencies = (await t.call('GET', '/v1/ledger/trial-balance?verify=true')).json()
      .currencies as Array<{ debits: number; credits: number; balanced: boolean }>;
    return currencies.every((c) => c.balanced && c.debits === c.credits);
  };
  const periods = (invoices: Awaited<ReturnType<typeof invoicesOf>>) =>
    invoices.map((i) => [i.status, i.total, i.periodStart, i.periodEnd]);

  it('trial of 14 days: trial_will_end 3 days before, then the first paid invoice activates it (SE, 25 % inclusive)', async () => {
    const c = await customer('SE', '2027-01-15T00:00:00Z');
    const sub = await subscribe({ customer: c.id, plan: 'books-trial' });
    expect(sub).toMatchObject({ status: 'trialing', trialEnd: '2027-01-29T00:00:00Z' });

    await advance(c.clock, '2027-01-25T23:59:59Z');
    await expectEvents(sub.id, ['subscription.created']);
    await advance(c.clock, '2027-01-26T00:00:00Z');
    await expectEvents(sub.id, ['subscription.created', 'subscription.trial_will_end']);
    await advance(c.clock, '2027-01-28T23:59:59Z');
    expect((await getSub(sub.id)).status).toBe('trialing');
    expect(await invoicesOf(sub.id)).toHaveLength(1);

    await advance(c.clock, '2027-01-29T00:00:00Z');
    expect(await getSub(sub.id)).toMatchObject({
      status: 'active',
      price: 16900,
      currentPeriodStart: '2027-01-29T00:00:00Z',
      // Anchor day 29, clamped to February's last day.
      currentPeriodEnd: '2027-02-28T00:00:00Z',
    });
    const [trial, first, ...more] = await invoicesOf(sub.id);
    expect(more).toEqual([]);
    expect(trial).toMatchObject({ status: 'paid', total: 0 });
    expect(first).toMatchObject({
      status: 'paid',
      subtotal: 16900,
      tax: 3380,
      total: 16900,
      amountDue: 16900,
      periodStart: '2027-01-29T00:00:00Z',
      periodEnd: '2027-02-28T00:00:00Z',
    });
    expect(first?.number).toMatch(/^TEST-SE-2027-\d{6}$/);
    expect(first?.lines).toEqual([
      expect.objectContaining({
        kind: 'recurring',
        amount: 16900,
        periodStart: '2027-01-29T00:00:00Z',
        periodEnd: '2027-02-28T00:00:00Z',
      }),
      expect.objectContaining({ kind: 'tax', amount: 3380 }),
    ]);
    const payment = (await t.call('GET', `/v1/payments/${first?.payment}`)).json();
    expect(payment).toMatchObject({ status: 'succeeded', amount: 16900, tax: 3380, reference: first?.id });
    await expectEvents(sub.id, [
      'subscription.created',
      'subscription.trial_will_end',
      'subscription.activated',
    ]);
    expect(await trialBalanced()).toBe(true);
  });

  it('trial end with billing cycle day 1 (US): the first period [Jan 29, Feb 1) is prorated 3/31 of 1199 = 116', async () => {
    const c = await customer('US', '2027-01-15T00:00:00Z', { billingCycleDay: 1 });
    const sub = await subscribe({ customer: c.id, plan: 'books-trial' });
    await advance(c.clock, '2027-02-01T00:00:00Z');
    const [, first, second, ...more] = await invoicesOf(sub.id);
    expect(more).toEqual([]);
    expect(first).toMatchObject({
      status: 'paid',
      subtotal: 116,
      tax: 0,
      total: 116,
      periodStart: '2027-01-29T00:00:00Z',
      periodEnd: '2027-02-01T00:00:00Z',
    });
    expect(second).toMatchObject({
      status: 'paid',
      total: 1199,
      periodStart: '2027-02-01T00:00:00Z',
      periodEnd: '2027-03-01T00:00:00Z',
    });
    expect(await getSub(sub.id)).toMatchObject({
      status: 'active',
      currentPeriodStart: '2027-02-01T00:00:00Z',
      currentPeriodEnd: '2027-03-01T00:00:00Z',
    });
    expect(await trialBalanced()).toBe(true);
  });

  it('three monthly renewals from Jan 31 (leap year): Feb 29, Mar 31, Apr 30, never drifting; a second run changes nothing', async () => {
    const c = await customer('US', '2028-01-31T00:00:00Z');
    const sub = await subscribe({ customer: c.id, plan: 'music-monthly' });
    expect(sub).toMatchObject({ status: 'active', currentPeriodEnd: '2028-02-29T00:00:00Z' });
    await advance(c.clock, '2028-04-30T00:00:00Z');
    const invoices = await invoicesOf(sub.id);
    expect(periods(invoices)).toEqual([
      ['paid', 1199, '2028-01-31T00:00:00Z', '2028-02-29T00:00:00Z'],
      ['paid', 1199, '2028-02-29T00:00:00Z', '2028-03-31T00:00:00Z'],
      ['paid', 1199, '2028-03-31T00:00:00Z', '2028-04-30T00:00:00Z'],
      ['paid', 1199, '2028-04-30T00:00:00Z', '2028-05-31T00:00:00Z'],
    ]);
    for (const i of invoices.slice(1)) {
      const p = (await t.call('GET', `/v1/payments/${i.payment}`)).json();
      expect(p).toMatchObject({ status: 'succeeded', amount: 1199, reference: i.id });
      const entries = (await t.call('GET', `/v1/ledger/transactions?reference=${i.id}`)).json()
        .data as Array<{
        idempotencyKey: string;
        postings: Array<{ account: string; debit: number; credit: number }>;
      }>;
      const legs = (key: string) =>
        entries
          .find((e) => e.idempotencyKey === key)
          ?.postings.map((x) => [x.account, x.debit, x.credit])
          .sort();
      expect(legs(`invoice:${i.id}:finalize`)).toEqual(
        [
          [`customer_receivable:${c.id}:USD`, 1199, 0],
          ['deferred_revenue:-:USD', 0, 1199],
        ].sort(),
      );
      expect(legs(`invoice:${i.id}:paid`)).toEqual(
        [
          ['revenue:-:USD', 1199, 0],
          [`customer_receivable:${c.id}:USD`, 0, 1199],
        ].sort(),
      );
    }
    expect(await getSub(sub.id)).toMatchObject({
      status: 'active',
      currentPeriodStart: '2028-04-30T00:00:00Z',
      currentPeriodEnd: '2028-05-31T00:00:00Z',
    });
    await expectEvents(sub.id, [
      'subscription.created',
      'subscription.activated',
      'subscription.renewed',
      'subscription.renewed',
      'subscription.renewed',
    ]);

    // The jobs of the last renewal, run again: no second invoice, charge or period.
    const billing = t.app.services.billing;
    const last = invoices.at(-1)!;
    await transact(t.app.database.db, (trx) =>
      billing.invoiceCycle(trx, sub.id, new Date('2028-04-30T00:00:00Z')),
    );
    await billing.chargeInvoiceJob({ invoice: last.id });
    expect(await invoicesOf(sub.id)).toEqual(invoices);
    expect((await getSub(sub.id)).currentPeriodEnd).toBe('2028-05-31T00:00:00Z');
    expect((await t.call('GET', `/v1/payments?customer=${c.id}&limit=100`)).json().data).toHaveLength(4);
    expect(await trialBalanced()).toBe(true);
  });

  it('grandfathering: an existing subscriber keeps the old price until existingSubscribersFrom; a new one pays the new price', async () => {
    const old = await customer('SE', '2027-01-15T00:00:00Z');
    const sub = await subscribe({ customer: old.id, plan: 'films-monthly' });
    expect(sub.price).toBe(10000);
    const v2 = await t.call('POST', '/v1/plans/films-monthly/price-versions', {
      prices: [{ currency: 'SEK', amount: 15000 }],
      effectiveAt: '2027-02-01T00:00:00Z',
      existingSubscribersFrom: '2027-03-10T00:00:00Z',
    });
    expect(v2.statusCode).toBe(201);

    const late = await customer('SE', '2027-02-05T00:00:00Z');
    expect((await subscribe({ customer: late.id, plan: 'films-monthly' })).price).toBe(15000);

    await advance(old.clock, '2027-03-15T00:00:00Z');
    expect(periods(await invoicesOf(sub.id))).toEqual([
      ['paid', 10000, '2027-01-15T00:00:00Z', '2027-02-15T00:00:00Z'],
      // Feb 15: v2 is in force for new subscribers, not yet for existing ones.
      ['paid', 10000, '2027-02-15T00:00:00Z', '2027-03-15T00:00:00Z'],
      // Mar 15 ≥ Mar 10: the existing subscriber moves to v2.
      ['paid', 15000, '2027-03-15T00:00:00Z', '2027-04-15T00:00:00Z'],
    ]);
    expect(await getSub(sub.id)).toMatchObject({ status: 'active', price: 15000 });
    expect(await trialBalanced()).toBe(true);
  });

  it('a declined renewal: past_due with the failure on the open invoice, still entitled in the grace period', async () => {
    const c = await customer('SE', '2027-01-15T00:00:00Z');
    const sub = await subscribe({ customer: c.id, plan: 'music-monthly' });
    const failing = await attach(c.id, 'tok_chargeCustomerFail');
    const def = await t.call('POST', `/v1/customers/${c.id}/payment-methods/${failing}/default`);
    expect(def.statusCode).toBe(200);

    // Before the first dunning retry (Feb 16).
    await advance(c.clock, '2027-02-15T12:00:00Z');
    const [, renewal, ...more] = await invoicesOf(sub.id);
    expect(more).toEqual([]);
    expect(renewal).toMatchObject({
      status: 'open',
      total: 10900,
      amountDue: 10900,
      periodStart: '2027-02-15T00:00:00Z',
      periodEnd: '2027-03-15T00:00:00Z',
    });
    const payment = (await t.call('GET', `/v1/payments/${renewal?.payment}`)).json();
    expect(payment).toMatchObject({ status: 'failed', amount: 10900, reference: renewal?.id });
    expect(await getSub(sub.id)).toMatchObject({
      status: 'past_due',
      currentPeriodStart: '2027-02-15T00:00:00Z',
      currentPeriodEnd: '2027-03-15T00:00:00Z',
    });
    await expectEvents(sub.id, ['subscription.created', 'subscription.activated', 'subscription.past_due']);
    const ent = (await t.call('GET', `/v1/entitlements/${c.externalId}`)).json();
    expect(ent.active).toBe(true);

    // The charge job run again: the payment is found by the invoice's key, nothing changes.
    const before = await getSub(sub.id);
    await t.app.services.billing.chargeInvoiceJob({ invoice: renewal!.id });
    expect(await getSub(sub.id)).toEqual(before);
    expect((await invoicesOf(sub.id))[1]).toEqual(renewal);
    expect((await t.call('GET', `/v1/payments?customer=${c.id}&limit=100`)).json().data).toHaveLength(2);
    await expectEvents(sub.id, ['subscription.created', 'subscription.activated', 'subscription.past_due']);
    expect(await trialBalanced()).toBe(true);
  });
  it('a declined first charge at trial end: past_due for the first period, nothing paid', async () => {
    const c = await customer('US', '2027-03-01T00:00:00Z');
    const sub = await subscribe({ customer: c.id, plan: 'books-trial' });
    const failing = await attach(c.id, 'tok_chargeCustomerFail');
    expect(
      (await t.call('POST', `/v1/customers/${c.id}/payment-methods/${failing}/default`)).statusCode,
    ).toBe(200);
    // Past the trial end (Mar 15), before the first retry (Mar 16).
    await advance(c.clock, '2027-03-15T12:00:00Z');
    const [, first, ...more] = await invoicesOf(sub.id);
    expect(more).toEqual([]);
    expect(first).toMatchObject({
      status: 'open',
      total: 1199,
      amountDue: 1199,
      periodStart: '2027-03-15T00:00:00Z',
      periodEnd: '2027-04-15T00:00:00Z',
    });
    expect((await t.call('GET', `/v1/payments/${first?.payment}`)).json()).toMatchObject({
      status: 'failed',
    });
    expect(await getSub(sub.id)).toMatchObject({
      status: 'past_due',
      currentPeriodStart: '2027-03-15T00:00:00Z',
      currentPeriodEnd: '2027-04-15T00:00:00Z',
    });
    await expectEvents(sub.id, [
      'subscription.created',
      'subscription.trial_will_end',
      'subscription.past_due',
    ]);
    expect(await trialBalanced()).toBe(true);
  });
  it('a trial started without a payment method: at its end the charge cannot be made → past_due, no payment', async () => {
    const c = await customer('SE', '2027-05-01T00:00:00Z', { noCard: true });
    const sub = await subscribe({ customer: c.id, plan: 'books-trial' });
    expect(sub.status).toBe('trialing');
    await advance(c.clock, '2027-05-15T00:00:00Z');
    const [, first, ...more] = await invoicesOf(sub.id);
    expect(more).toEqual([]);
    expect(first).toMatchObject({
      status: 'open',
      total: 16900,
      tax: 3380,
      payment: null,
      periodStart: '2027-05-15T00:00:00Z',
      periodEnd: '2027-06-15T00:00:00Z',
    });
    expect(await getSub(sub.id)).toMatchObject({
      status: 'past_due',
      currentPeriodEnd: '2027-06-15T00:00:00Z',
    });
    expect((await t.call('GET', `/v1/payments?customer=${c.id}&limit=100`)).json().data).toEqual([]);
    expect(await trialBalanced()).toBe(true);
  });
});
