import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { dailyAmount, recognisedBy } from '../../src/modules/billing/domain/recognition.js';
import { startTestApp, type TestApp } from '../support/app.js';
import { ENGINE } from '../support/database.js';

/**
 * Revenue recognition, credit notes on refunds and payment events through HTTP, on test clocks
 * (each customer on its own clock: its recognition scope), so every day and amount is exact.
 */
describe(`billing: revenue recognition, credit notes, payment events (${ENGINE})`, () => {
  let t: TestApp;
  let n = 0;

  beforeAll(async () => {
    t = await startTestApp({ providerTimeoutMs: 1_000 });
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

  const customer = async (at: string, token = 'tok_visa') => {
    const clock = (await t.call('POST', '/v1/test-clocks', { frozenTime: at })).json();
    const res = await t.call('POST', '/v1/customers', {
      externalId: `recognition-user-${++n}`,
      market: 'SE',
      testClock: clock.id,
    });
    expect(res.statusCode).toBe(201);
    const id = res.json().id as string;
    const pm = await t.call('POST', `/v1/customers/${id}/payment-methods`, { provider: 'simulator', token });
    expect(pm.statusCode).toBe(201);
    return { id, clock: clock.id as string };
  };
  const advance = async (clock: string, frozenTime: string) => {
    const res = await t.call('POST', `/v1/test-clocks/${clock}/advance`, { frozenTime });
    expect(res.statusCode).toBe(200);
  };
  type Txn = { idempotencyKey: string; postings: Array<{ account: string; debit: number; credit: number }> };
  const ledgerOf = async (reference: string) =>
    (await t.call('GET', `/v1/ledger/transactions?reference=${reference}&limit=100`)).json().data as Txn[];
  /** Net movement of `account` (credit positive) over these transactions. */
  const creditOf = (txns: Txn[], account: string) =>
    txns
      .flatMap((x) => x.postings)
      .filter((p) => p.account === account)
      .reduce((sum, p) => sum + p.credit - p.debit, 0);
  const debitOf = (txns: Txn[], account: string) => 0 - creditOf(txns, account);
  const recognitionOf = (clock: string) => ledgerOf(`recognition:${clock}`);
  const trialBalanced = async () => {
    const currencies = (await t.call('GET', '/v1/ledger/trial-balance?verify=true')).json()
      .currencies as Array<{ debits: number; credits: number; balanced: boolean }>;
    return currencies.every((c) => c.balanced && c.debits === c.credits);
  };
  const invoicesOf = async (subscription: string) =>
    (await t.call('GET', `/v1/invoices?subscription=${subscription}`)).json().data as Array<
      Record<string, unknown> & { id: string; payment: string | null; total: number; tax: number }
    >;
  const DEFERRED = 'deferred_revenue:-:SEK';
  const REVENUE = 'revenue:-:SEK';
  const REFUNDS = 'refunds:-:SEK';
  const TAX = 'tax_payable:-:SEK';
  const line = (netMinor: number, start: string, end: string) => ({
    netMinor,
    currency: 'SEK',
    start: new Date(start),
    end: new Date(end),
  });

  it('SE 25 % inclusive, 10900 SEK monthly: exact mid-period split, the whole net by the period end, deferred 0, nothing posted twice', async () => {
    const c = await customer('2027-01-15T10:00:00Z');
    const res = await t.call('POST', '/v1/subscriptions', { customer: c.id, plan: 'music-monthly' });
    expect(res.statusCode).toBe(201);
    const sub = res.json();
    const [first] = await invoicesOf(sub.id);
    // Tax 10900 / 5 = 2180, net 8720, over [Jan 15 10:00, Feb 15 10:00): 31 days, Jan 15 … Feb 14.
    expect(first).toMatchObject({ total: 10900, tax: 2180 });
    const firstLine = line(8720, '2027-01-15T10:00:00Z', '2027-02-15T10:00:00Z');
    expect(debitOf(await ledgerOf(first!.id), DEFERRED)).toBe(-8720);

    // The first day has not ended: nothing recognised.
    await advance(c.clock, '2027-01-15T23:59:59Z');
    expect(await recognitionOf(c.clock)).toEqual([]);

    // 10 days ended (Jan 15 … 24): round(8720 × 10/31) = 2813, one transaction per day.
    await advance(c.clock, '2027-01-25T00:00:00Z');
    const mid = await recognitionOf(c.clock);
    expect(recognisedBy(firstLine, new Date('2027-01-25T00:00:00Z'))).toBe(2813);
    expect(creditOf(mid, REVENUE)).toBe(2813);
    expect(debitOf(mid, DEFERRED)).toBe(2813);
    expect(mid.map((x) => x.idempotencyKey)).toEqual(
      Array.from(
        { length: 10 },
        (_, i) => `recognition:${c.clock}:SEK:2027-01-${String(15 + i).padStart(2, '0')}`,
      ),
    );
    // Each day is round(8720 × k/31) − round(8720 × (k − 1)/31): 281 or 282.
    expect(mid.map((x) => creditOf([x], REVENUE))).toEqual(
      Array.from({ length: 10 }, (_, i) => dailyAmount(8720, i + 1, 31)),
    );
    expect(mid.every((x) => [281, 282].includes(creditOf([x], REVENUE)))).toBe(true);
    expect(await trialBalanced()).toBe(true);

    // Advancing within the same day posts nothing more.
    await advance(c.clock, '2027-01-25T12:00:00Z');
    expect(await recognitionOf(c.clock)).toHaveLength(10);

    // Past the period end (renewed Feb 15 10:00): the first invoice is recognised in full, and the
    // renewal's first day (Feb 15, of [Feb 15, Mar 15): 28 days) too.
    await advance(c.clock, '2027-02-16T00:00:00Z');
    const [, second, ...more] = await invoicesOf(sub.id);
    expect(more).toEqual([]);
    expect(second).toMatchObject({ total: 10900, tax: 2180, periodStart: '2027-02-15T10:00:00Z' });
    const secondLine = line(8720, '2027-02-15T10:00:00Z', '2027-03-15T10:00:00Z');
    const at = new Date('2027-02-16T00:00:00Z');
    expect(recognisedBy(firstLine, at)).toBe(8720);
    expect(recognisedBy(secondLine, at)).toBe(311);
    const all = await recognitionOf(c.clock);
    expect(all).toHaveLength(32);
    expect(new Set(all.map((x) => x.idempotencyKey)).size).toBe(32);
    expect(creditOf(all, REVENUE)).toBe(8720 + 311);
    // Deferred revenue of the two invoices: 8720 + 8720 booked, 9031 recognised; the first is at 0.
    const booked = creditOf([...(await ledgerOf(first!.id)), ...(await ledgerOf(second!.id))], DEFERRED);
    expect(booked).toBe(17440);
    expect(booked - debitOf(all, DEFERRED)).toBe(8720 - 311);
    expect(await trialBalanced()).toBe(true);

    // Again up to the same instant's day: nothing new.
    await advance(c.clock, '2027-02-16T08:00:00Z');
    expect(await recognitionOf(c.clock)).toHaveLength(32);
  });

  it('a partial refund of the first payment is a credit note: tax part by cumulative proportion, unserved part out of deferred revenue', async () => {
    const c = await customer('2027-03-01T00:00:00Z');
    const res = await t.call('POST', '/v1/subscriptions', { customer: c.id, plan: 'music-monthly' });
    expect(res.statusCode).toBe(201);
    const sub = res.json();
    const [invoice] = await invoicesOf(sub.id);
    const payment = invoice!.payment as string;
    const span = line(8720, '2027-03-01T00:00:00Z', '2027-04-01T00:00:00Z');

    // 24 of 31 days served: round(8720 × 24/31) = 6751 recognised, 1969 still deferred.
    await advance(c.clock, '2027-03-25T00:00:00Z');
    expect(recognisedBy(span, new Date('2027-03-25T00:00:00Z'))).toBe(6751);

    const r1 = await t.call('POST', '/v1/refunds', { payment, amount: 5000 });
    expect(r1.statusCode).toBe(201);
    const refund1 = r1.json().id as string;
    // Tax part: round(5000 × 2180 / 10900) = 1000; net 4000: 1969 from deferred, 2031 from revenue.
    const shown = (await t.call('GET', `/v1/invoices/${invoice!.id}`)).json();
    expect(shown).toMatchObject({ id: invoice!.id, status: 'paid', total: 10900, tax: 2180 });
    expect(shown.creditNotes).toEqual([
      {
        id: expect.stringMatching(/^cn_/),
        amount: 5000,
        tax: 1000,
        reason: 'requested_by_customer',
        createdAt: '2027-03-25T00:00:00Z',
      },
    ]);
    const noteTxn = (await ledgerOf(invoice!.id)).find((x) => x.idempotencyKey.startsWith('credit_note:'))!;
    expect(noteTxn.postings.map((p) => [p.account, p.debit, p.credit]).sort()).toEqual(
      [
        [DEFERRED, 1969, 0],
        [REFUNDS, 0, 1969],
      ].sort(),
    );
    const refundTxns = await ledgerOf(refund1);
    expect(debitOf(refundTxns, REFUNDS)).toBe(4000);
    expect(debitOf(refundTxns, TAX)).toBe(1000);
    // Refunds net of the adjustment: the part already earned, 2031.
    expect(debitOf([...refundTxns, noteTxn], REFUNDS)).toBe(2031);
    expect(await trialBalanced()).toBe(true);

    // The rest: cumulative tax round(10900 × 2180 / 10900) − 1000 = 1180; nothing left deferred.
    const r2 = await t.call('POST', '/v1/refunds', { payment });
    expect(r2.statusCode).toBe(201);
    expect(r2.json()).toMatchObject({ amount: 5900 });
    const notes = (await t.call('GET', `/v1/invoices/${invoice!.id}`)).json().creditNotes;
    expect(notes.map((x: { amount: number; tax: number }) => [x.amount, x.tax])).toEqual([
      [5000, 1000],
      [5900, 1180],
    ]);
    expect((await t.call('GET', `/v1/payments/${payment}`)).json()).toMatchObject({
      status: 'refunded',
      amountRefunded: 10900,
    });
    // The listing shows them too.
    expect((await invoicesOf(sub.id))[0]!.creditNotes).toEqual(notes);
    // Access does not change.
    expect((await t.call('GET', `/v1/subscriptions/${sub.id}`)).json().status).toBe('active');

    // Past the period end (the renewal declines nothing: tok_visa, so it renews on Apr 1): the
    // first invoice's recognition stops at 8720 − 1969 = 6751, and its deferred revenue is 0.
    await advance(c.clock, '2027-04-01T00:00:00Z');
    const recognised = await recognitionOf(c.clock);
    expect(creditOf(recognised, REVENUE)).toBe(6751);
    const invoiceTxns = await ledgerOf(invoice!.id);
    expect(creditOf(invoiceTxns, DEFERRED) - debitOf(recognised, DEFERRED)).toBe(0);
    // Revenue 6751 earned, refunds 4000 + 4720 − 1969 = 6751 of it given back (all of it, net 0);
    // tax: the invoice's 2180 returned in full (1000 + 1180, the notes adjusting nothing here).
    const r2Txns = await ledgerOf(r2.json().id);
    const noteTxns = invoiceTxns.filter((x) => x.idempotencyKey.startsWith('credit_note:'));
    expect(noteTxns).toHaveLength(1);
    expect(debitOf([...refundTxns, ...r2Txns, ...noteTxns], REFUNDS)).toBe(6751);
    expect(debitOf([...refundTxns, ...r2Txns, ...noteTxns], TAX)).toBe(2180);
    expect(await trialBalanced()).toBe(true);

    // Payment events: succeeded (v1), refunded (v2, v3); ids and amounts only.
    await vi.waitFor(
      async () => {
        const events = (await t.call('GET', '/v1/events?type=payment.*&limit=100')).json().data as Array<{
          type: string;
          data: { object: Record<string, unknown> };
        }>;
        const mine = events.filter((e) => e.data.object.id === payment);
        expect(mine.map((e) => [e.type, e.data.object.status, e.data.object.amountRefunded])).toEqual([
          ['payment.succeeded', 'succeeded', 0],
          ['payment.refunded', 'partially_refunded', 5000],
          ['payment.refunded', 'refunded', 10900],
        ]);
        expect(mine[0]!.data.object).toEqual({
          id: payment,
          status: 'succeeded',
          amount: 10900,
          amountRefunded: 0,
          currency: 'SEK',
          customer: c.id,
          invoice: invoice!.id,
        });
      },
      { timeout: 10_000, interval: 50 },
    );
  });

  it('an unpaid sign-up voided after midnight: the day already recognised is reversed (payment.failed emitted)', async () => {
    const c = await customer('2027-05-10T12:00:00Z', 'tok_chargeCustomerFail');
    const res = await t.call('POST', '/v1/subscriptions', { customer: c.id, plan: 'music-monthly' });
    expect(res.statusCode).toBe(402);
    const { subscription, payment } = res.json() as { subscription: string; payment: string };
    // May 10 ended: 1 of 31 days, round(8720 / 31) = 281.
    await advance(c.clock, '2027-05-11T00:00:00Z');
    expect(creditOf(await recognitionOf(c.clock), REVENUE)).toBe(281);
    // Expired 23 h after creation: invoice void, the recognised day reversed at once.
    await advance(c.clock, '2027-05-11T11:00:00Z');
    expect((await invoicesOf(subscription))[0]).toMatchObject({ status: 'void' });
    const after = await recognitionOf(c.clock);
    expect(creditOf(after, REVENUE)).toBe(0);
    expect(debitOf(after, DEFERRED)).toBe(0);
    // Later days net to 0 (the mirror cancels the line): no revenue appears.
    await advance(c.clock, '2027-06-20T00:00:00Z');
    expect(creditOf(await recognitionOf(c.clock), REVENUE)).toBe(0);
    expect(await trialBalanced()).toBe(true);
    await vi.waitFor(
      async () => {
        const events = (await t.call('GET', '/v1/events?type=payment.failed&limit=100')).json()
          .data as Array<{
          data: { object: Record<string, unknown> };
        }>;
        expect(events.find((e) => e.data.object.id === payment)?.data.object).toMatchObject({
          status: 'failed',
          amount: 10900,
          amountRefunded: 0,
          currency: 'SEK',
          customer: c.id,
        });
      },
      { timeout: 10_000, interval: 50 },
    );
  });
});
