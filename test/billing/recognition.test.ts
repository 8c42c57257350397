import { sql } from 'kysely';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { transact } from '../../src/db/transaction.js';
import { DAY_MS } from '../../src/modules/billing/domain/periods.js';
import { recognisedBy, recognitionForDay } from '../../src/modules/billing/domain/recognition.js';
import {
  creditNoteEntry,
  recognisedThrough,
  recognitionDaysOf,
  recognitionEntry,
} from '../../src/modules/billing/domain/revenue-entries.js';
import { addRecognitionLines, RECOGNIZE_JOB, recognizeScope } from '../../src/modules/billing/recognition.js';
import type { TransactionSpec } from '../../src/modules/ledger/domain/transaction.js';
import { startTestApp, type TestApp } from '../support/app.js';
import { ENGINE } from '../support/database.js';

const net = (spec: TransactionSpec | null): Record<string, number> => {
  const out: Record<string, number> = {};
  for (const p of spec?.postings ?? [])
    out[p.account.type] = (out[p.account.type] ?? 0) + (p.debit ?? 0) - (p.credit ?? 0);
  return out;
};

describe('recognition entries (pure)', () => {
  it('recognisedThrough agrees with the domain recognisedBy on every day of a line', () => {
    const line = {
      netMinor: -9999,
      currency: 'SEK',
      start: new Date('2028-02-10T13:00:00Z'),
      end: new Date('2028-03-10T13:00:00Z'),
    };
    const days = recognitionDaysOf(line);
    expect(days.lastDay - days.firstDay + 1).toBe(29);
    for (let d = days.firstDay - 2; d <= days.lastDay + 2; d++) {
      expect(recognisedThrough(line.netMinor, days, d)).toBe(recognisedBy(line, new Date((d + 1) * DAY_MS)));
    }
  });

  it("a day beyond one posting's bound is split into pairs; negative days flip the sides", () => {
    const big = recognitionEntry({ scope: 'live', currency: 'SEK', day: 20_000, amountMinor: 250_000_000 });
    expect(big?.postings).toHaveLength(6);
    expect(big?.postings.every((p) => (p.debit ?? p.credit)! <= 99_999_999)).toBe(true);
    expect(net(big)).toEqual({ deferred_revenue: 250_000_000, revenue: -250_000_000 });
    expect(big?.idempotencyKey).toBe('recognition:live:SEK:2024-10-04');
    const back = recognitionEntry({ scope: 'clk_1', currency: 'SEK', day: 20_000, amountMinor: -5 });
    expect(net(back)).toEqual({ deferred_revenue: -5, revenue: 5 });
    expect(recognitionEntry({ scope: 'live', currency: 'SEK', day: 20_000, amountMinor: 0 })).toBeNull();
  });

  it('a credit note moves the unserved part from refunds to deferred revenue and corrects the tax part', () => {
    const at = new Date('2027-03-25T00:00:00Z');
    const note = { id: 'cn_1', invoiceId: 'in_1', currency: 'SEK', taxMinor: 667, fromDeferredMinor: 1969 };
    expect(net(creditNoteEntry(note, 667, at))).toEqual({ deferred_revenue: 1969, refunds: -1969 });
    // The payments module booked 666 of tax: one more is given back, one less counts as a refund.
    expect(net(creditNoteEntry(note, 666, at))).toEqual({
      tax_payable: 1,
      deferred_revenue: 1969,
      refunds: -1970,
    });
    expect(creditNoteEntry({ ...note, fromDeferredMinor: 0 }, 667, at)).toBeNull();
  });
});

/** The job's SQL sums against the domain's per-line figures, on the database. */
describe(`recognition job sums (${ENGINE})`, () => {
  let t: TestApp;
  beforeAll(async () => {
    t = await startTestApp();
  });
  afterAll(() => t.close());

  const anInvoice = async (): Promise<string> => {
    await t.markets('US');
    const ok = async (url: string, body: unknown) => {
      const res = await t.call('POST', url, body);
      if (res.statusCode !== 201) throw new Error(`${url}: ${res.body}`);
      return res.json();
    };
    await ok('/v1/products', { code: 'music', name: 'Music', features: ['ad-free'], seats: 1 });
    await ok('/v1/plans', {
      code: 'music-monthly',
      product: 'music',
      billingPeriod: 'month',
      trialDays: 0,
      prices: [{ currency: 'USD', amount: 1199 }],
    });
    const clock = await ok('/v1/test-clocks', { frozenTime: '2027-01-01T00:00:00Z' });
    const customer = await ok('/v1/customers', { externalId: 'sql-1', market: 'US', testClock: clock.id });
    await ok(`/v1/customers/${customer.id}/payment-methods`, { provider: 'simulator', token: 'tok_visa' });
    const sub = await ok('/v1/subscriptions', { customer: customer.id, plan: 'music-monthly' });
    const invoices = (await t.call('GET', `/v1/invoices?subscription=${sub.id}`)).json().data;
    return invoices[0].id as string;
  };

  it('sums every day exactly as recognitionForDay does (positive, negative, one-day, 366-day lines), catching up 366 days per run', async () => {
    const { billing, db } = t.app.services;
    const scope = 'clk_sqltest';
    const start = Date.UTC(2027, 0, 1);
    const day = (d: number) => new Date(start + d * DAY_MS);
    const specs = [
      { netMinor: 8720, from: day(0), to: new Date(day(31).getTime() + 36_000_000), currency: 'SEK' },
      { netMinor: -3893, from: new Date(day(5).getTime() + 43_200_000), to: day(15), currency: 'SEK' },
      {
        netMinor: 1001,
        from: new Date(day(3).getTime() + 60_000),
        to: new Date(day(3).getTime() + 120_000),
        currency: 'SEK',
      },
      { netMinor: 1, from: day(2), to: day(9), currency: 'SEK' },
      { netMinor: -7, from: day(2), to: day(9), currency: 'SEK' },
      { netMinor: 99_999_999, from: day(0), to: day(366), currency: 'EUR' },
      { netMinor: 11531, from: day(40), to: day(392), currency: 'EUR' },
    ];
    // A real invoice for the lines to belong to (its own lines are in its clock's scope, not this one).
    const invoiceId = await anInvoice();
    await transact(db, async (trx) => {
      await addRecognitionLines(
        billing.ctx,
        trx,
        scope,
        specs.map((s, position) => ({
          source: `${invoiceId}:sqltest`,
          position,
          invoiceId,
          currency: s.currency,
          days: recognitionDaysOf({ start: s.from, end: s.to }),
          netMinor: s.netMinor,
        })),
        day(0),
      );
    });
    // 400 days later: the first run recognises 366 days and asks for another run at once.
    const now = day(400);
    const first = await transact(db, (trx) => recognizeScope(billing.ctx, trx, scope, now));
    expect(first.days).toBe(366);
    const second = await transact(db, (trx) => recognizeScope(billing.ctx, trx, scope, now));
    expect(second.days).toBe(34);
    expect((await transact(db, (trx) => recognizeScope(billing.ctx, trx, scope, now))).days).toBe(0);

    const rows = (
      await sql<{ day: string; currency: string; amount_minor: number }>`
        SELECT day::text AS day, currency, amount_minor FROM revenue_recognitions
        WHERE scope = ${scope} ORDER BY day, currency`.execute(db)
    ).rows;
    const got = new Map(rows.map((r) => [`${r.day}:${r.currency}`, Number(r.amount_minor)]));
    const lines = specs.map((s) => ({
      netMinor: s.netMinor,
      currency: s.currency,
      start: s.from,
      end: s.to,
    }));
    const totals = new Map<string, number>();
    for (let d = 0; d < 400; d++) {
      for (const [currency, amount] of recognitionForDay(lines, day(d))) {
        const key = `${day(d).toISOString().slice(0, 10)}:${currency}`;
        expect(got.get(key) ?? 0, key).toBe(amount);
        totals.set(currency, (totals.get(currency) ?? 0) + amount);
      }
    }
    for (const [key, amount] of got) {
      if (amount !== 0) expect(key.slice(0, 10) < day(400).toISOString().slice(0, 10)).toBe(true);
    }
    // Every line in full: 8720 − 3893 + 1001 + 1 − 7 SEK, 99999999 + 11531 EUR.
    expect(totals.get('SEK')).toBe(5822);
    expect(totals.get('EUR')).toBe(100_011_530);
    // The chain stops once no line has days to come: no pending run of the scope is left.
    const pending = await sql<{ n: string }>`
      SELECT count(*)::text AS n FROM scheduled_jobs
      WHERE kind = ${RECOGNIZE_JOB} AND test_clock_id = ${scope} AND state = 'pending'
        AND run_at > ${now}`.execute(db);
    expect(Number(pending.rows[0]!.n)).toBe(0);
    const balance = (await t.call('GET', '/v1/ledger/trial-balance?verify=true')).json();
    expect(balance.currencies.every((c: { balanced: boolean }) => c.balanced)).toBe(true);
  });
});
