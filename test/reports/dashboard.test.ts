import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ManualClock } from '../../src/kernel/clock.js';
import { ReportsService } from '../../src/modules/reports/service.js';
import { startTestApp, type TestApp } from '../support/app.js';
import { ENGINE } from '../support/database.js';

/**
 * GET /v1/reports/dashboard over a month of simulated wall-clock time: sign-ups in several markets
 * and billing periods, a trial, a cancel, a failed renewal in dunning, a failed sign-up, and
 * customers on a test clock that must not count. Every figure is asserted exactly.
 */
describe(`reports: the admin dashboard (${ENGINE})`, () => {
  const clock = new ManualClock('2027-02-01T12:00:00Z');
  let t: TestApp;
  let n = 0;

  const ok = async (method: 'POST', url: string, body?: unknown) => {
    const res = await t.call(method, url, body);
    expect(res.statusCode, `${url}: ${res.body}`).toBeLessThan(300);
    return res.json();
  };
  const customer = async (market: string, token = 'tok_visa', testClock?: string) => {
    const c = await ok('POST', '/v1/customers', {
      externalId: `dash-${++n}`,
      market,
      ...(testClock ? { testClock } : {}),
    });
    await ok('POST', `/v1/customers/${c.id}/payment-methods`, { provider: 'simulator', token });
    return c.id as string;
  };
  const subscribe = async (customerId: string, plan: string) =>
    (await ok('POST', '/v1/subscriptions', { customer: customerId, plan })) as { id: string; status: string };
  const runJobs = async () => {
    for (let i = 0; i < 20; i++) if ((await t.app.services.jobs.runDue()) === 0) return;
  };

  let pastDue: { customer: string; subscription: string };
  let usCustomer: string;
  const refund = async (customerId: string, amount: number) => {
    const [payment] = (await t.call('GET', `/v1/payments?customer=${customerId}`)).json().data;
    const r = await ok('POST', '/v1/refunds', { payment: payment.id, amount });
    expect(r.status).toBe('succeeded');
  };
  beforeAll(async () => {
    t = await startTestApp({ dashboardCacheMs: 0, providerTimeoutMs: 5_000 }, clock);
    await t.markets('SE', 'US');
    // A market whose prices exclude tax (13 %, added on top): MRR counts the price as it is.
    await ok('POST', '/v1/markets', { code: 'CA', currency: 'CAD', taxRateBps: 1300, taxInclusive: false });
    await ok('POST', '/v1/products', { code: 'music', name: 'Music', features: ['ad-free'], seats: 1 });
    await ok('POST', '/v1/products', { code: 'family', name: 'Family', features: ['ad-free'], seats: 6 });
    const plan = (code: string, product: string, billingPeriod: string, prices: object[], trialDays = 0) =>
      ok('POST', '/v1/plans', { code, product, billingPeriod, trialDays, prices });
    await plan('music-monthly', 'music', 'month', [
      { currency: 'SEK', amount: 10900 },
      { currency: 'USD', amount: 1199 },
      { currency: 'CAD', amount: 1500 },
    ]);
    await plan('music-yearly', 'music', 'year', [{ currency: 'SEK', amount: 119900 }]);
    await plan('music-weekly', 'music', 'week', [{ currency: 'SEK', amount: 2900 }]);
    await plan('family-monthly', 'family', 'month', [{ currency: 'SEK', amount: 17900 }], 14);

    // 2027-02-01: two monthly subscribers (outside the 30 days by the end); one will fail to renew.
    await subscribe(await customer('SE'), 'music-monthly');
    const failing = await customer('SE');
    pastDue = { customer: failing, subscription: (await subscribe(failing, 'music-monthly')).id };
    const declining = await ok('POST', `/v1/customers/${failing}/payment-methods`, {
      provider: 'simulator',
      token: 'tok_chargeCustomerFail',
    });
    await ok('POST', `/v1/customers/${failing}/payment-methods/${declining.id}/default`);

    clock.set('2027-02-20T09:00:00Z');
    await subscribe(await customer('SE'), 'music-monthly');
    await subscribe(await customer('SE'), 'music-yearly');

    clock.set('2027-02-25T18:30:00Z');
    await subscribe(await customer('SE'), 'music-weekly');
    usCustomer = await customer('US');
    await subscribe(usCustomer, 'music-monthly');
    await subscribe(await customer('CA'), 'music-monthly');

    // 2027-03-01: the monthly renewals run; one is declined (past_due, in dunning).
    clock.set('2027-03-01T13:00:00Z');
    await runJobs();
    expect((await t.call('GET', `/v1/subscriptions/${pastDue.subscription}`)).json().status).toBe('past_due');
    expect((await subscribe(await customer('SE'), 'family-monthly')).status).toBe('trialing');
    const leaving = await customer('SE');
    const left = await subscribe(leaving, 'music-monthly');

    // 2027-03-02: a sign-up whose first payment is declined is no new subscription, but a failed payment.
    clock.set('2027-03-02T08:00:00Z');
    const declined = await t.call('POST', '/v1/subscriptions', {
      customer: await customer('SE', 'tok_chargeCustomerFail'),
      plan: 'music-monthly',
    });
    expect(declined.statusCode).toBe(402);
    // Customers on a test clock count nowhere: a subscriber and a declined sign-up.
    const testClock = (await ok('POST', '/v1/test-clocks', { frozenTime: '2027-03-02T08:00:00Z' }))
      .id as string;
    const simulated = await customer('SE', 'tok_visa', testClock);
    await subscribe(simulated, 'music-yearly');
    const simulatedDecline = await t.call('POST', '/v1/subscriptions', {
      customer: await customer('SE', 'tok_chargeCustomerFail', testClock),
      plan: 'music-monthly',
    });
    expect(simulatedDecline.statusCode).toBe(402);

    clock.set('2027-03-05T10:00:00Z');
    await ok('POST', `/v1/subscriptions/${left.id}/cancel`, { timing: 'immediate' });
    // Refunds: two on the 5th (one of a test-clock customer's payment, which counts nowhere), one on the 6th.
    await refund(usCustomer, 500);
    await refund(simulated, 100);
    clock.set('2027-03-06T10:00:00Z');
    await refund(leaving, 1000);
    await refund(leaving, 900);

    clock.set('2027-03-10T08:00:00Z');
  });
  afterAll(() => t.close());

  const days = (from: string, counts: Record<string, number>) => {
    const out: Array<{ day: string; count: number }> = [];
    const start = Date.parse(`${from}T00:00:00Z`);
    for (let i = 0; i < 30; i++) {
      const day = new Date(start + i * 86_400_000).toISOString().slice(0, 10);
      out.push({ day, count: counts[day] ?? 0 });
    }
    return out;
  };

  it('counts, MRR, new and churned per day, failed payments, refunds and the dunning queue, exactly', async () => {
    const res = await t.call('GET', '/v1/reports/dashboard');
    expect(res.statusCode, res.body).toBe(200);
    const d = res.json();
    expect(d.asOf).toBe('2027-03-10T08:00:00Z');
    const groups = d.activeSubscriptions.map(
      (g: { planCode: string; productCode: string; market: string; status: string; count: number }) =>
        `${g.market} ${g.planCode} (${g.productCode}) ${g.status}: ${g.count}`,
    );
    expect(groups).toEqual([
      'CA music-monthly (music) active: 1',
      'SE family-monthly (family) trialing: 1',
      'SE music-monthly (music) active: 2',
      'SE music-monthly (music) past_due: 1',
      'SE music-weekly (music) active: 1',
      'SE music-yearly (music) active: 1',
      'US music-monthly (music) active: 1',
    ]);
    expect(d.activeSubscriptions[0]).toEqual({
      plan: expect.stringMatching(/^plan_/),
      planCode: 'music-monthly',
      product: expect.stringMatching(/^prod_/),
      productCode: 'music',
      market: 'CA',
      status: 'active',
      count: 1,
    });
    // SEK (25 % inclusive): three monthly at 10900 (one past_due) are 3 × 8720 net; the yearly
    // 119900 is 95920 net ÷ 12; the weekly 2900 is 2320 net × 52 ÷ 12: 26160 + 7993.33… +
    // 10053.33… = 44206.67 → 44207. The trial counts for nothing. CAD excludes its tax: 1500.
    expect(d.mrr).toEqual([
      { currency: 'CAD', amount: 1500 },
      { currency: 'SEK', amount: 44207 },
      { currency: 'USD', amount: 1199 },
    ]);
    expect(d.new30d).toEqual(days('2027-02-09', { '2027-02-20': 2, '2027-02-25': 3, '2027-03-01': 2 }));
    expect(d.churned30d).toEqual(days('2027-02-09', { '2027-03-05': 1 }));
    expect(d.failedPayments30d).toEqual(days('2027-02-09', { '2027-03-01': 1, '2027-03-02': 1 }));
    expect(d.refunds30d).toEqual(days('2027-02-09', { '2027-03-05': 1, '2027-03-06': 2 }));
    expect(d.refunded30d).toEqual([
      { currency: 'SEK', amount: 1900 },
      { currency: 'USD', amount: 500 },
    ]);
    const [invoice] = (await t.call('GET', `/v1/invoices?subscription=${pastDue.subscription}`))
      .json()
      .data.filter((i: { status: string }) => i.status === 'open');
    expect(d.dunning).toEqual({
      count: 1,
      invoices: [
        {
          invoice: invoice.id,
          customer: pastDue.customer,
          subscription: pastDue.subscription,
          amountDue: 10900,
          currency: 'SEK',
          attempts: 1,
          // Retry 1 of the schedule (1, 3, 5, 7 days): a day after the renewal's first failure.
          nextAttemptAt: '2027-03-02T13:00:00Z',
        },
      ],
    });
  });

  it('needs reports:read (admin covers it); the answer is a named schema in the OpenAPI document', async () => {
    const reader = await t.keyWith('reports:read');
    expect((await t.call('GET', '/v1/reports/dashboard', undefined, { key: reader })).statusCode).toBe(200);
    const other = await t.keyWith('subscriptions:read', 'payments:read');
    const denied = await t.call('GET', '/v1/reports/dashboard', undefined, { key: other });
    expect(denied.statusCode).toBe(403);
    expect(denied.json().requiredScope).toBe('reports:read');
    expect((await t.call('GET', '/v1/reports/dashboard', undefined, { key: null })).statusCode).toBe(401);
    const doc = (await t.call('GET', '/openapi.json', undefined, { key: null })).json();
    expect(
      doc.paths['/v1/reports/dashboard'].get.responses['200'].content['application/json'].schema,
    ).toEqual({
      $ref: '#/components/schemas/DashboardReport',
    });
    expect(Object.keys(doc.components.schemas)).toEqual(
      expect.arrayContaining([
        'DashboardReport',
        'DayCount',
        'MrrAmount',
        'DunningInvoice',
        'ActiveSubscriptionGroup',
      ]),
    );
    expect(doc.components.schemas.DashboardReport.required).toEqual([
      'asOf',
      'activeSubscriptions',
      'mrr',
      'new30d',
      'churned30d',
      'failedPayments30d',
      'refunds30d',
      'refunded30d',
      'dunning',
    ]);
  });
});

describe(`reports: the dashboard is computed at most once per cache period on a node (${ENGINE})`, () => {
  let t: TestApp;
  beforeAll(async () => {
    t = await startTestApp({ dashboardCacheMs: 60_000 });
    await t.markets('US');
  });
  afterAll(() => t.close());

  it('answers the same figures within the period, concurrent callers sharing one computation', async () => {
    const [a, b] = await Promise.all([
      t.call('GET', '/v1/reports/dashboard'),
      t.call('GET', '/v1/reports/dashboard'),
    ]);
    expect(a.statusCode).toBe(200);
    expect(b.json()).toEqual(a.json());
    expect(a.json().activeSubscriptions).toEqual([]);
    expect(a.json().mrr).toEqual([]);
    expect(a.json().dunning).toEqual({ count: 0, invoices: [] });
    await t.call('POST', '/v1/products', { code: 'music', name: 'Music', features: ['ad-free'], seats: 1 });
    await t.call('POST', '/v1/plans', {
      code: 'music-monthly',
      product: 'music',
      billingPeriod: 'month',
      trialDays: 0,
      prices: [{ currency: 'USD', amount: 1199 }],
    });
    const c = (await t.call('POST', '/v1/customers', { externalId: 'cached-1', market: 'US' })).json();
    await t.call('POST', `/v1/customers/${c.id}/payment-methods`, {
      provider: 'simulator',
      token: 'tok_visa',
    });
    expect(
      (await t.call('POST', '/v1/subscriptions', { customer: c.id, plan: 'music-monthly' })).statusCode,
    ).toBe(201);
    const again = await t.call('GET', '/v1/reports/dashboard');
    expect(again.json()).toEqual(a.json());
    // Another node (or this one after the period) computes afresh and sees it.
    const { db, clock, reports } = t.app.services;
    const elsewhere = new ReportsService(db, clock, reports.deps, { cacheMs: 0 });
    expect((await elsewhere.dashboard()).mrr).toEqual([{ currency: 'USD', amount: 1199 }]);
  });
});
