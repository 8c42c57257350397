import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import type { Before } from '../../src/db/keyset.js';
import { perDay, utcDays } from '../../src/modules/reports/domain/days.js';
import { monthlyRecurringRevenue, netOf } from '../../src/modules/reports/domain/mrr.js';
import {
  beforeFor,
  compareNewestFirst,
  decodeTimelineCursor,
  encodeTimelineCursor,
  mergeNewestFirst,
  type Positioned,
  TIMELINE_KINDS,
} from '../../src/modules/reports/domain/timeline.js';

describe('MRR (pure)', () => {
  it('the worked example of docs/API.md', () => {
    expect(
      monthlyRecurringRevenue([
        {
          currency: 'SEK',
          period: 'month',
          priceMinor: 10900,
          taxRateBps: 2500,
          taxInclusive: true,
          count: 3,
        },
        {
          currency: 'SEK',
          period: 'year',
          priceMinor: 119900,
          taxRateBps: 2500,
          taxInclusive: true,
          count: 1,
        },
        { currency: 'SEK', period: 'week', priceMinor: 2900, taxRateBps: 2500, taxInclusive: true, count: 1 },
        { currency: 'USD', period: 'month', priceMinor: 1199, taxRateBps: 0, taxInclusive: false, count: 1 },
        {
          currency: 'CAD',
          period: 'month',
          priceMinor: 1500,
          taxRateBps: 1300,
          taxInclusive: false,
          count: 1,
        },
      ]),
    ).toEqual([
      { currency: 'CAD', amount: 1500 },
      { currency: 'SEK', amount: 44207 },
      { currency: 'USD', amount: 1199 },
    ]);
  });

  it('normalises each period to a month: yearly ÷12, weekly ×52÷12, daily ×365÷12', () => {
    const one = (period: 'day' | 'week' | 'month' | 'year', priceMinor: number) =>
      monthlyRecurringRevenue([
        { currency: 'EUR', period, priceMinor, taxRateBps: 0, taxInclusive: false, count: 1 },
      ])[0]!.amount;
    expect(one('month', 999)).toBe(999);
    expect(one('year', 12000)).toBe(1000);
    expect(one('year', 6)).toBe(1); // 0.5 rounds half up
    expect(one('year', 5)).toBe(0); // 0.41… rounds down
    expect(one('week', 300)).toBe(1300);
    expect(one('day', 12)).toBe(365);
    expect(one('day', 1)).toBe(30); // 30.41… → 30
  });

  it('takes the tax out of inclusive prices as an invoice does, and leaves exclusive prices whole', () => {
    expect(netOf(10900, 2500, true)).toBe(8720);
    expect(netOf(999, 1900, true)).toBe(839); // 999 − round(999 × 0.19 / 1.19 = 159.50…) = 839
    expect(netOf(1500, 1300, false)).toBe(1500);
  });

  it('rounds once per currency: the sum of exact parts, not the sum of rounded parts', () => {
    // Three yearly subscribers at 100 each are 25.00 a month, not 3 × round(8.33) = 24.
    expect(
      monthlyRecurringRevenue([
        { currency: 'JPY', period: 'year', priceMinor: 100, taxRateBps: 0, taxInclusive: false, count: 3 },
      ]),
    ).toEqual([{ currency: 'JPY', amount: 25 }]);
    fc.assert(
      fc.property(
        fc.array(
          fc.record({
            period: fc.constantFrom('day' as const, 'week' as const, 'month' as const, 'year' as const),
            priceMinor: fc.integer({ min: 0, max: 99_999_999 }),
            count: fc.integer({ min: 0, max: 1000 }),
          }),
          { maxLength: 20 },
        ),
        (groups) => {
          const twelfths = { day: 365n, week: 52n, month: 12n, year: 1n };
          const exact = groups.reduce(
            (sum, g) => sum + BigInt(g.priceMinor * g.count) * twelfths[g.period],
            0n,
          );
          const got = monthlyRecurringRevenue(
            groups.map((g) => ({ ...g, currency: 'USD', taxRateBps: 0, taxInclusive: false })),
          );
          if (groups.length === 0) {
            expect(got).toEqual([]);
          } else {
            // 12 × amount − exact is in [−5, 6]: the exact value rounded half up, once.
            const diff = BigInt(got[0]!.amount) * 12n - exact;
            expect(diff >= -5n && diff <= 6n).toBe(true);
          }
        },
      ),
    );
  });
});

describe('dashboard days (pure)', () => {
  it('30 UTC days ending today, oldest first, zeros filled', () => {
    const w = utcDays(new Date('2027-03-10T23:59:59.999Z'), 30);
    expect(w.days).toHaveLength(30);
    expect(w.days[0]).toBe('2027-02-09');
    expect(w.days[29]).toBe('2027-03-10');
    expect(w.from.toISOString()).toBe('2027-02-09T00:00:00.000Z');
    expect(w.to.toISOString()).toBe('2027-03-11T00:00:00.000Z');
    expect(perDay(['2027-03-09', '2027-03-10'], [{ day: '2027-03-10', count: 4 }])).toEqual([
      { day: '2027-03-09', count: 0 },
      { day: '2027-03-10', count: 4 },
    ]);
  });
});

const ULID = '0123456789ABCDEFGHJKMNPQRSTVWXYZ';
const positioned = fc.record({
  at: fc.integer({ min: 0, max: 5 }).map((s) => new Date(Date.UTC(2027, 0, 1) + s)),
  kind: fc.constantFrom(...TIMELINE_KINDS),
  id: fc.string({ unit: fc.constantFrom(...ULID), minLength: 26, maxLength: 26 }).map((u) => `x_${u}`),
});

/** What a part's query keeps for `before` (see db/keyset.ts), in JS. */
const keeps = (item: Positioned, before: Before | undefined) => {
  if (!before) return true;
  const a = item.at.getTime();
  const b = before.at.getTime();
  if (before.id !== undefined) return a < b || (a === b && item.id < before.id);
  return before.inclusive ? a <= b : a < b;
};

describe('timeline merge and cursor (pure)', () => {
  it('a k-way merge of newest-first lists is the newest-first sort of all their items', () => {
    fc.assert(
      fc.property(fc.array(positioned, { maxLength: 60 }), fc.integer({ min: 0, max: 70 }), (items, take) => {
        const unique = [...new Map(items.map((i) => [`${i.kind}${i.id}`, i])).values()];
        const lists = TIMELINE_KINDS.map((k) => unique.filter((i) => i.kind === k).sort(compareNewestFirst));
        const sorted = [...unique].sort(compareNewestFirst);
        expect(mergeNewestFirst(lists, take)).toEqual(sorted.slice(0, take));
      }),
    );
  });

  it('each part keeps exactly the items that sort after the cursor', () => {
    fc.assert(
      fc.property(positioned, positioned, (item, after) => {
        expect(keeps(item, beforeFor(item.kind, after))).toBe(compareNewestFirst(item, after) > 0);
      }),
    );
  });

  it('paging with the cursor visits every item once, in order', () => {
    fc.assert(
      fc.property(fc.array(positioned, { maxLength: 40 }), fc.integer({ min: 1, max: 7 }), (items, limit) => {
        const unique = [...new Map(items.map((i) => [`${i.kind}${i.id}`, i])).values()];
        const seen: Positioned[] = [];
        let after: Positioned | undefined;
        for (let guard = 0; guard < 100; guard++) {
          const lists = TIMELINE_KINDS.map((k) =>
            unique
              .filter((i) => i.kind === k && keeps(i, beforeFor(k, after)))
              .sort(compareNewestFirst)
              .slice(0, limit + 1),
          );
          const merged = mergeNewestFirst(lists, limit + 1);
          seen.push(...merged.slice(0, limit));
          if (merged.length <= limit) break;
          const cursor = encodeTimelineCursor(merged[limit - 1]!);
          after = decodeTimelineCursor(cursor);
        }
        expect(seen).toEqual([...unique].sort(compareNewestFirst));
      }),
    );
  });

  it('a cursor round-trips; anything else is a 400 naming it', () => {
    const p: Positioned = {
      at: new Date('2027-01-01T00:00:00.123Z'),
      kind: 'invoice',
      id: 'in_01ARZ3NDEKTSV4RRFFQ69G5FAV',
    };
    expect(decodeTimelineCursor(encodeTimelineCursor(p))).toEqual(p);
    expect(decodeTimelineCursor(undefined)).toBeUndefined();
    for (const bad of [
      'x',
      Buffer.from('{"at":1,"kind":"invoice","id":"in_01ARZ3NDEKTSV4RRFFQ69G5FAV","more":1}').toString(
        'base64url',
      ),
      Buffer.from('{"at":-1,"kind":"invoice","id":"in_01ARZ3NDEKTSV4RRFFQ69G5FAV"}').toString('base64url'),
      Buffer.from('{"at":1,"kind":"nope","id":"in_01ARZ3NDEKTSV4RRFFQ69G5FAV"}').toString('base64url'),
      Buffer.from('{"at":1,"kind":"invoice","id":"in_x\' OR 1=1"}').toString('base64url'),
    ]) {
      expect(() => decodeTimelineCursor(bad)).toThrowError(
        expect.objectContaining({ code: 'validation_failed' }),
      );
    }
  });
});
