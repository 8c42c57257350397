import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { ManualClock } from '../../src/kernel/clock.js';
import { startTestApp, type TestApp } from '../support/app.js';
import { expectGaplessSeries } from '../support/billing.js';
import { ENGINE } from '../support/database.js';

/**
 * Wall-clock renewals run as a pipeline of batches (renewals.ts); test clocks renew one job at a
 * time. Twins, one of each kind subscribed at the same instant, must renew to the same invoice, lines,
 * ledger entries and events; the odd cases (a downgrade taking effect, a cancel at term end, a
 * declined card) are mixed into the batches.
 */
describe(`billing: renewal batches (${ENGINE})`, () => {
  const T0 = '2027-01-15T00:00:00Z';
  const RENEW = '2027-02-15T00:00:00Z';
  const clock = new ManualClock(T0);
  let t: TestApp;
  let n = 0;

  beforeAll(async () => {
    // Batches of 3: seven subscriptions need several, claimed by two lanes at once. A generous
    // provider timeout: a charge left unanswered on a loaded machine would wait for its charge job
    // (correct, but not what these comparisons are about).
    t = await startTestApp({ providerTimeoutMs: 5_000, renewalBatch: 3, renewalConcurrency: 2 }, clock);
    await t.markets('SE', 'US');
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
      prices: [
        { currency: 'SEK', amount: 10900 },
        { currency: 'USD', amount: 1199 },
      ],
    });
    await ok('/v1/plans', {
      code: 'music-lite',
      product: 'music',
      billingPeriod: 'month',
      trialDays: 0,
      prices: [
        { currency: 'SEK', amount: 5900 },
        { currency: 'USD', amount: 599 },
      ],
    });
  });
  afterAll(() => t.close());

  const customer = async (market: 'SE' | 'US', token: string, testClock?: string) => {
    const externalId = `batch-user-${++n}`;
    const res = await t.call('POST', '/v1/customers', {
      externalId,
      market,
      ...(testClock ? { testClock } : {}),
    });
    expect(res.statusCode, res.body).toBe(201);
    const id = res.json().id as string;
    const pm = await t.call('POST', `/v1/customers/${id}/payment-methods`, { provider: 'simulator', token });
    expect(pm.statusCode, pm.body).toBe(201);
    return id;
  };
  const subscribe = async (customerId: string, plan = 'music-monthly') => {
    const res = await t.call('POST', '/v1/subscriptions', { customer: customerId, plan });
    expect(res.statusCode, res.body).toBe(201);
    return res.json() as { id: string };
  };
  const getSub = async (id: string) => (await t.call('GET', `/v1/subscriptions/${id}`)).json();
  type Inv = Record<string, unknown> & { id: string; number: string; lines: Array<Record<string, unknown>> };
  const invoicesOf = async (subscription: string) =>
    (await t.call('GET', `/v1/invoices?subscription=${subscription}`)).json().data as Inv[];
  const ledgerOf = async (reference: string) =>
    (
      (await t.call('GET', `/v1/ledger/transactions?reference=${reference}`)).json().data as Array<{
        idempotencyKey: string;
        postings: Array<{ account: string; debit: number; credit: number }>;
      }>
    )
      .map((e) => ({
        key: e.idempotencyKey.replace(reference, 'X'),
        legs: e.postings.map((p) => [p.account.replace(/cus_\w+/, 'C'), p.debit, p.credit]).sort(),
      }))
      .sort((a, b) => a.key.localeCompare(b.key));
  const eventTypesOf = async (id: string) => {
    const all: Array<{ type: string; data: { object: { id: string; subscription?: string } } }> = [];
    let cursor: string | null = null;
    for (let page = 0; page < 50; page++) {
      const res: { data: typeof all; nextCursor: string | null } = (
        await t.call('GET', `/v1/events?limit=100${cursor ? `&cursor=${encodeURIComponent(cursor)}` : ''}`)
      ).json();
      all.push(...res.data);
      cursor = res.nextCursor;
      if (!cursor) break;
    }
    return all.filter((e) => e.data.object.id === id || e.data.object.subscription === id).map((e) => e.type);
  };
  /** An invoice as its twin must show it: no ids, numbers, customers or times of creation. */
  const shape = (i: Inv) => {
    const { id: _i, number: _n, customer: _c, subscription: _s, payment: _p, createdAt: _a, ...rest } = i;
    return rest;
  };
  const trialBalanced = async () => {
    const currencies = (await t.call('GET', '/v1/ledger/trial-balance?verify=true')).json()
      .currencies as Array<{ debits: number; credits: number; balanced: boolean }>;
    return currencies.every((c) => c.balanced && c.debits === c.credits);
  };
  const jobs = () => t.app.services.jobs;
  const paymentsOf = async (customerId: string) =>
    (
      (await t.call('GET', `/v1/payments?customer=${customerId}&limit=100`)).json().data as Array<{
        status: string;
        createdAt: string;
      }>
    ).sort((a, b) => a.createdAt.localeCompare(b.createdAt));

  it('renews due subscriptions in batches exactly as one job at a time does, odd cases mixed in', async () => {
    const testClock = (await t.call('POST', '/v1/test-clocks', { frozenTime: T0 })).json().id as string;
    const pairs: Array<{ wall: string; twin: string }> = [];
    for (const market of ['SE', 'US', 'SE', 'US', 'SE'] as const) {
      const wall = await subscribe(await customer(market, 'tok_visa'));
      const twin = await subscribe(await customer(market, 'tok_visa', testClock));
      pairs.push({ wall: wall.id, twin: twin.id });
    }
    // A downgrade at term end (the one-job path within the batch), a cancel at term end (no
    // renewal), a card that fails every charge (dunning).
    const downgraded = await subscribe(await customer('SE', 'tok_visa'));
    const change = await t.call('POST', `/v1/subscriptions/${downgraded.id}/change`, { plan: 'music-lite' });
    expect(change.statusCode, change.body).toBe(200);
    const canceled = await subscribe(await customer('US', 'tok_visa'));
    expect((await t.call('POST', `/v1/subscriptions/${canceled.id}/cancel`, {})).statusCode).toBe(200);
    const failingCustomer = await customer('SE', 'tok_visa');
    const failing = await subscribe(failingCustomer);
    const bad = await t.call('POST', `/v1/customers/${failingCustomer}/payment-methods`, {
      provider: 'simulator',
      token: 'tok_chargeCustomerFail',
    });
    expect(bad.statusCode, bad.body).toBe(201);
    const made = await t.call(
      'POST',
      `/v1/customers/${failingCustomer}/payment-methods/${bad.json().id}/default`,
    );
    expect(made.statusCode, made.body).toBe(200);

    clock.set(RENEW);
    expect(await jobs().runDue()).toBeGreaterThan(0);
    const advanced = await t.call('POST', `/v1/test-clocks/${testClock}/advance`, { frozenTime: RENEW });
    expect(advanced.statusCode, advanced.body).toBe(200);

    for (const { wall, twin } of pairs) {
      const [w, tw] = [await getSub(wall), await getSub(twin)];
      expect(w).toMatchObject({
        status: 'active',
        currentPeriodStart: RENEW,
        currentPeriodEnd: '2027-03-15T00:00:00Z',
      });
      expect({ ...w, id: null, customer: null, createdAt: null, updatedAt: null }).toEqual({
        ...tw,
        id: null,
        customer: null,
        createdAt: null,
        updatedAt: null,
      });
      const [wi, ti] = [await invoicesOf(wall), await invoicesOf(twin)];
      expect(wi).toHaveLength(2);
      expect(wi.map(shape)).toEqual(ti.map(shape));
      expect(wi[1]).toMatchObject({ billingReason: 'subscription_cycle', status: 'paid' });
      expect(wi[1]!.number).toMatch(/^(SE|US)-2027-\d{6}$/);
      expect(await ledgerOf(wi[1]!.id)).toEqual(await ledgerOf(ti[1]!.id));
      // Events are listed once every older transaction on the server ended (on PostgreSQL other
      // test files' too): wait until both histories are readable.
      await vi.waitFor(
        async () => {
          expect(await eventTypesOf(wall)).toEqual(await eventTypesOf(twin));
          expect(await eventTypesOf(wi[1]!.id)).toEqual([
            'invoice.created',
            'invoice.finalized',
            'invoice.paid',
          ]);
        },
        { timeout: 20_000, interval: 100 },
      );
    }

    // The downgrade took effect and the renewal billed the new plan in full.
    const down = await getSub(downgraded.id);
    expect(down).toMatchObject({ status: 'active', currentPeriodStart: RENEW, pendingChange: null });
    const downInvoices = await invoicesOf(downgraded.id);
    expect(downInvoices.at(-1)).toMatchObject({
      status: 'paid',
      total: 5900,
      billingReason: 'subscription_cycle',
    });
    // The cancel at term end ended it, with no renewal invoice.
    expect(await getSub(canceled.id)).toMatchObject({ status: 'canceled' });
    expect(await invoicesOf(canceled.id)).toHaveLength(1);
    // The declined renewal: past_due, its invoice open after one failed payment, a retry scheduled.
    expect(await getSub(failing.id)).toMatchObject({ status: 'past_due' });
    expect((await invoicesOf(failing.id)).at(-1)).toMatchObject({ status: 'open' });
    expect(await paymentsOf(failingCustomer)).toEqual([
      expect.objectContaining({ status: 'succeeded' }),
      expect.objectContaining({ status: 'failed' }),
    ]);

    // Live invoice numbers stay gapless per series: checkout's and the batches' together.
    for (const series of ['SE-2027', 'US-2027']) await expectGaplessSeries(t.app.services.db, series);
    expect(await trialBalanced()).toBe(true);

    // Nothing left: no failed job, every charge job done, a second run renews nothing.
    const pending = await t.app.services.db
      .selectFrom('scheduled_jobs')
      .select(['kind', 'state', 'run_at'])
      .where('test_clock_id', 'is', null)
      .where((eb) =>
        eb.or([eb('state', '=', 'failed'), eb('kind', 'in', ['billing.cycle', 'billing.charge_invoice'])]),
      )
      .where((eb) => eb.or([eb('state', '=', 'failed'), eb('run_at', '<=', clock.now())]))
      .where('state', '<>', 'done')
      .execute();
    expect(pending).toEqual([]);
    const before = (await t.app.services.db.selectFrom('invoices').select('id').execute()).length;
    await jobs().runDue();
    expect((await t.app.services.db.selectFrom('invoices').select('id').execute()).length).toBe(before);
  });

  it('a batch claimed again (its worker died after finalising) bills nothing twice and charges what was left', async () => {
    clock.set('2027-04-01T00:00:00Z');
    const subs = [];
    for (const market of ['SE', 'US', 'SE', 'US'] as const)
      subs.push(await subscribe(await customer(market, 'tok_visa')));
    clock.set('2027-05-01T00:00:00Z');
    // The first claim finalises and charges; then its jobs are put back as if its lease lapsed
    // before it completed them, and the charge jobs too: the next runs find the invoices made.
    await jobs().runDue();
    await t.app.services.db
      .updateTable('scheduled_jobs')
      .set({ state: 'pending', run_at: clock.now(), done_at: null, finished_at: null })
      .where('kind', 'in', ['billing.cycle', 'billing.charge_invoice'])
      .where('test_clock_id', 'is', null)
      .where('done_at', '=', clock.now())
      .execute();
    await jobs().runDue();
    for (const sub of subs) {
      const invoices = await invoicesOf(sub.id);
      expect(invoices).toHaveLength(2);
      expect(invoices[1]).toMatchObject({ status: 'paid' });
      // One payment per invoice: the second claim of the charge found the first one's.
      expect(await paymentsOf(invoices[1]!.customer as string)).toHaveLength(2);
      expect(await getSub(sub.id)).toMatchObject({
        status: 'active',
        currentPeriodStart: '2027-05-01T00:00:00Z',
      });
    }
    expect(await trialBalanced()).toBe(true);
  });
});
