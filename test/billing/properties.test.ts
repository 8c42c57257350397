import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { creditNote } from '../../src/modules/billing/domain/credit-note.js';
import { isLastFailure, nextRetryAt, retrySchedule } from '../../src/modules/billing/domain/dunning.js';
import { assembleInvoice, type ChargeLine, lineNets } from '../../src/modules/billing/domain/invoice.js';
import {
  type BillingSchedule,
  boundary,
  DAY_MS,
  periodAt,
  periodByIndex,
} from '../../src/modules/billing/domain/periods.js';
import { periodAmount, planChangeLines, prorateSpan } from '../../src/modules/billing/domain/proration.js';
import { recognisedBy, recognitionSchedule } from '../../src/modules/billing/domain/recognition.js';

// Small runs keep CI fast; a long run by hand: REPRISE_PROPERTY_RUNS=20000 npx vitest run test/billing.
// A failure prints its seed; REPRISE_PROPERTY_SEED=<seed> replays it.
const RUNS = {
  numRuns: Number(process.env.REPRISE_PROPERTY_RUNS ?? 200),
  ...(process.env.REPRISE_PROPERTY_SEED ? { seed: Number(process.env.REPRISE_PROPERTY_SEED) } : {}),
};

/** Half away from zero of n / d, written independently of kernel/money.ts. */
function refRound(n: bigint, d: bigint): bigint {
  const neg = n < 0n !== d < 0n;
  const an = n < 0n ? -n : n;
  const ad = d < 0n ? -d : d;
  const q = (2n * an + ad) / (2n * ad);
  return neg ? -q : q;
}

const daysIn = (y: number, m: number): number => new Date(Date.UTC(y, m + 1, 0)).getUTCDate();

/** Boundary n computed straight from the anchor by another route: Date.UTC's month overflow, a scan for D. */
function refBoundary(s: BillingSchedule, n: number): number {
  const a = s.anchor;
  if (n === 0) return a.getTime();
  if (s.period === 'week') return a.getTime() + n * 7 * DAY_MS;
  const step = s.period === 'month' ? 1 : 12;
  const [y, m] = [a.getUTCFullYear(), a.getUTCMonth()];
  const at = (k: number, day: number, h = 0, mi = 0, sec = 0, ms = 0): number => {
    const ty = y + Math.floor((m + step * k) / 12);
    const tm = (m + step * k) % 12;
    return Date.UTC(ty, tm, Math.min(day, daysIn(ty, tm)), h, mi, sec, ms);
  };
  if (s.billingCycleDay === null) {
    return at(
      n,
      a.getUTCDate(),
      a.getUTCHours(),
      a.getUTCMinutes(),
      a.getUTCSeconds(),
      a.getUTCMilliseconds(),
    );
  }
  const D = s.billingCycleDay;
  const after: number[] = [];
  for (let k = 0; after.length < n; k++) {
    const c = at(k, D);
    if (c > a.getTime()) after.push(c);
  }
  return after[n - 1]!;
}

const anchorArb = fc.oneof(
  // Anywhere in 1990–2089, to the millisecond.
  fc.integer({ min: Date.UTC(1990, 0, 1), max: Date.UTC(2089, 11, 31) }).map((t) => new Date(t)),
  // Month ends and leap days, the dates that break naive code.
  fc
    .record({
      y: fc.integer({ min: 1996, max: 2036 }),
      m: fc.integer({ min: 0, max: 11 }),
      day: fc.constantFrom(1, 28, 29, 30, 31),
      secs: fc.constantFrom(0, 222, 43_200, 86_399),
    })
    .map(({ y, m, day, secs }) => new Date(Date.UTC(y, m, Math.min(day, daysIn(y, m))) + secs * 1000)),
);
const scheduleArb: fc.Arbitrary<BillingSchedule> = fc.record({
  anchor: anchorArb,
  period: fc.constantFrom('month' as const, 'year' as const, 'week' as const),
  billingCycleDay: fc.option(fc.integer({ min: 1, max: 31 }), { nil: null }),
});
const unitArb = fc.constantFrom('day' as const, 'second' as const);

describe('periods (property)', () => {
  it('boundaries are strictly increasing and boundary n equals the direct computation from the anchor', () => {
    fc.assert(
      fc.property(scheduleArb, fc.integer({ min: 1, max: 60 }), (s, count) => {
        let previous = Number.NEGATIVE_INFINITY;
        for (let n = 0; n <= count; n++) {
          const b = boundary(s, n).getTime();
          expect(b).toBeGreaterThan(previous);
          expect(b).toBe(refBoundary(s, n));
          previous = b;
        }
        // Asked alone, far out, boundary n is the same: no dependence on the ones before it.
        expect(boundary(s, count * 7).getTime()).toBe(refBoundary(s, count * 7));
      }),
      RUNS,
    );
  });

  it('every instant from the anchor lies in exactly one period', () => {
    fc.assert(
      fc.property(scheduleArb, fc.integer({ min: 0, max: 12 * 366 * DAY_MS }), (s, offset) => {
        const t = new Date(s.anchor.getTime() + offset);
        const p = periodAt(s, t);
        expect(p.start.getTime()).toBeLessThanOrEqual(t.getTime());
        expect(t.getTime()).toBeLessThan(p.end.getTime());
        expect(p.start.getTime()).toBe(boundary(s, p.index).getTime());
        expect(p.end.getTime()).toBe(boundary(s, p.index + 1).getTime());
        // Its neighbours touch it and so cannot hold t.
        if (p.index > 0) expect(periodByIndex(s, p.index - 1).end.getTime()).toBe(p.start.getTime());
        expect(periodByIndex(s, p.index + 1).start.getTime()).toBe(p.end.getTime());
      }),
      RUNS,
    );
  });
});

describe('proration (property)', () => {
  const priceArb = fc.integer({ min: 0, max: 99_999_999 });

  it('a full period costs the price; the parts of a split period sum to it within their rounding', () => {
    fc.assert(
      fc.property(
        scheduleArb,
        fc.integer({ min: 0, max: 40 }),
        priceArb,
        unitArb,
        fc.double({ min: 0, max: 1, noNaN: true }),
        (s, index, price, unit, where) => {
          const p = periodByIndex(s, index);
          expect(prorateSpan(price, p.aligned, p.aligned, unit)).toBe(price);
          if (index > 0) expect(periodAmount(price, p, unit)).toBe(price);
          const { start, end } = p.aligned;
          const cut = new Date(start.getTime() + Math.floor((end.getTime() - start.getTime()) * where));
          const a = prorateSpan(price, { start, end: cut }, p.aligned, unit);
          const b = prorateSpan(price, { start: cut, end }, p.aligned, unit);
          expect(Math.abs(a + b - price)).toBeLessThanOrEqual(1);
        },
      ),
      RUNS,
    );
  });

  it('an immediate change to the same price and period gives back exactly what it charges', () => {
    fc.assert(
      fc.property(
        scheduleArb,
        fc.integer({ min: 0, max: 400 * DAY_MS }),
        priceArb,
        unitArb,
        (s, offset, price, unit) => {
          const c = planChangeLines({
            schedule: s,
            from: { name: 'A', priceMinor: price },
            to: { name: 'B', priceMinor: price, billingPeriod: s.period },
            at: new Date(s.anchor.getTime() + offset),
            unit,
          });
          expect(c.credit.amountMinor + c.charge.amountMinor).toBe(0);
          expect(c.nextRenewalAt.getTime()).toBe(c.oldPeriod.end.getTime());
        },
      ),
      RUNS,
    );
  });
});

describe('recognition (property)', () => {
  it('sums exactly to the net, each day within one minor unit of net / n', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: Date.UTC(2000, 0, 1), max: Date.UTC(2080, 0, 1) }),
        fc.integer({ min: 0, max: 365 }),
        fc.integer({ min: 0, max: DAY_MS - 1 }),
        fc.integer({ min: -99_999_999, max: 99_999_999 }),
        (startMs, days, extra, net) => {
          const line = {
            start: new Date(startMs),
            end: new Date(startMs + days * DAY_MS + extra),
            netMinor: net,
            currency: 'USD',
          };
          const schedule = recognitionSchedule(line);
          expect(schedule.reduce((sum, r) => sum + r.amountMinor, 0)).toBe(net);
          for (const r of schedule)
            expect(Math.abs(r.amountMinor * schedule.length - net)).toBeLessThan(schedule.length);
          expect(recognisedBy(line, new Date(schedule.at(-1)!.day.getTime() + DAY_MS))).toBe(net);
          expect(recognisedBy(line, line.start)).toBe(0);
        },
      ),
      RUNS,
    );
  });
});

const lineArb: fc.Arbitrary<ChargeLine> = fc
  .record({
    kind: fc.constantFrom(
      'recurring' as const,
      'fixed' as const,
      'proration_credit' as const,
      'proration_charge' as const,
      'discount' as const,
    ),
    amount: fc.integer({ min: 0, max: 9_999_999 }),
  })
  .map(({ kind, amount }) => ({
    kind,
    description: kind,
    periodStart: new Date('2027-01-01T00:00:00Z'),
    periodEnd: new Date('2027-02-01T00:00:00Z'),
    amountMinor: kind === 'proration_credit' || kind === 'discount' ? 0 - amount : amount,
  }));

describe('invoice arithmetic (property)', () => {
  it('subtotal, tax, total, amount due ≥ 0 and credit conservation hold for any lines and credit', () => {
    fc.assert(
      fc.property(
        fc.array(lineArb, { minLength: 1, maxLength: 8 }),
        fc.integer({ min: 0, max: 3000 }),
        fc.boolean(),
        fc.integer({ min: 0, max: 20_000_000 }),
        (lines, bps, inclusive, credit) => {
          const inv = assembleInvoice({
            currency: 'USD',
            tax: { rateBps: bps, inclusive },
            lines,
            accountCreditMinor: credit,
          });
          const subtotal = lines.reduce((s, l) => s + l.amountMinor, 0);
          expect(inv.subtotalMinor).toBe(subtotal);
          if (inclusive) {
            expect(inv.totalMinor).toBe(subtotal);
            expect(BigInt(inv.taxMinor)).toBe(refRound(BigInt(subtotal) * BigInt(bps), BigInt(10_000 + bps)));
            expect(inv.netMinor).toBe(subtotal - inv.taxMinor);
          } else {
            expect(BigInt(inv.taxMinor)).toBe(refRound(BigInt(subtotal) * BigInt(bps), 10_000n));
            expect(inv.totalMinor).toBe(subtotal + inv.taxMinor);
            expect(inv.netMinor).toBe(subtotal);
          }
          const applied = inv.lines
            .filter((l) => l.kind === 'credit_applied')
            .reduce((s, l) => s + l.amountMinor, 0);
          expect(applied + inv.creditAppliedMinor).toBe(0);
          expect(inv.amountDueMinor).toBe(Math.max(0, inv.totalMinor + applied));
          expect(inv.amountDueMinor).toBeGreaterThanOrEqual(0);
          // Credit is used before anything is due, never more than there is, never lost.
          expect(inv.creditAppliedMinor).toBe(Math.min(credit, Math.max(0, inv.totalMinor)));
          expect(inv.creditCreatedMinor).toBe(Math.max(0, -inv.totalMinor));
          expect(inv.accountCreditAfterMinor).toBe(credit - inv.creditAppliedMinor + inv.creditCreatedMinor);
          expect(inv.amountDueMinor + inv.creditAppliedMinor - inv.creditCreatedMinor).toBe(inv.totalMinor);
          // The tax line shows the invoice's tax and the subtotal lines are untouched.
          if (bps > 0) expect(inv.lines.find((l) => l.kind === 'tax')?.amountMinor).toBe(inv.taxMinor);
          expect(inv.lines.slice(0, lines.length)).toEqual(lines);
          expect(lineNets(inv).reduce((s, n) => s + n, 0)).toBe(inv.netMinor);
        },
      ),
      RUNS,
    );
  });

  it('credit notes return the tax in proportion whatever the split, exactly the tax when all is refunded', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 99_999_999 }),
        fc.integer({ min: 0, max: 3000 }),
        fc.array(fc.integer({ min: 1, max: 1000 }), { minLength: 1, maxLength: 6 }),
        (total, bps, weights) => {
          const tax = Number(refRound(BigInt(total) * BigInt(bps), BigInt(10_000 + bps)));
          const sum = weights.reduce((a, b) => a + b, 0);
          // Split the whole total into parts (the last takes the remainder).
          const parts = weights.map((w) => Math.floor((total * w) / sum));
          parts[parts.length - 1]! += total - parts.reduce((a, b) => a + b, 0);
          let refunded = 0;
          let taxBack = 0;
          for (const amount of parts.filter((p) => p > 0)) {
            const note = creditNote({
              invoice: { totalMinor: total, taxMinor: tax },
              paidMinor: total,
              refundedBeforeMinor: refunded,
              amountMinor: amount,
              deferredRemainingMinor: 0,
              reason: 'requested_by_customer',
            });
            expect(note.netMinor + note.taxMinor).toBe(amount);
            refunded += amount;
            taxBack += note.taxMinor;
            expect(BigInt(taxBack)).toBe(refRound(BigInt(refunded) * BigInt(tax), BigInt(total)));
          }
          expect(taxBack).toBe(tax);
        },
      ),
      RUNS,
    );
  });
});

describe('dunning (property)', () => {
  it('retries come in order after the first failure and the last failure is the one after the last retry', () => {
    fc.assert(
      fc.property(
        fc.uniqueArray(fc.integer({ min: 1, max: 60 }), { minLength: 1, maxLength: 8 }),
        fc.integer({ min: Date.UTC(2000, 0, 1), max: Date.UTC(2080, 0, 1) }),
        (days, f) => {
          const s = retrySchedule([...days].sort((a, b) => a - b));
          const first = new Date(f);
          let previous = f;
          for (let failures = 1; failures <= days.length; failures++) {
            const next = nextRetryAt(s, first, failures)!.getTime();
            expect(next).toBeGreaterThan(previous);
            expect(isLastFailure(s, failures)).toBe(false);
            previous = next;
          }
          expect(nextRetryAt(s, first, days.length + 1)).toBeNull();
          expect(isLastFailure(s, days.length + 1)).toBe(true);
        },
      ),
      RUNS,
    );
  });
});
