import { describe, expect, it } from 'vitest';
import { changeTiming } from '../../src/modules/billing/domain/change-timing.js';
import { assembleInvoice } from '../../src/modules/billing/domain/invoice.js';
import { type BillingSchedule, periodAt, periodByIndex } from '../../src/modules/billing/domain/periods.js';
import {
  periodAmount,
  planChangeLines,
  prorateSpan,
  recurringLine,
  unitsBetween,
} from '../../src/modules/billing/domain/proration.js';

const d = (iso: string): Date => new Date(iso);
const iso = (date: Date): string => date.toISOString();
const SE = { rateBps: 2500, inclusive: true };
const US = { rateBps: 725, inclusive: false };

describe('units', () => {
  it('counts whole UTC calendar days, time of day ignored: 2012-03-02T00:03:42 → 2012-03-31 is 29 days', () => {
    expect(unitsBetween(d('2012-03-02T00:03:42Z'), d('2012-03-31T00:00:00Z'), 'day')).toBe(29);
    expect(unitsBetween(d('2012-03-02T00:03:42Z'), d('2012-03-31T00:00:00Z'), 'second')).toBe(
      29 * 86_400 - 222,
    );
  });
});

describe('partial periods', () => {
  const march: BillingSchedule = { anchor: d('2012-01-01T00:00:00Z'), period: 'month', billingCycleDay: 1 };
  const full = periodAt(march, d('2012-03-15T00:00:00Z'));
  const part = { start: d('2012-03-02T00:03:42Z'), end: d('2012-03-31T00:00:00Z') };

  it('charge 999 × 29/31 = 934.55 → 935 by day, 999 × 2,505,378/2,678,400 = 934.47 → 934 by second', () => {
    expect([iso(full.start), iso(full.end)]).toEqual([
      '2012-03-01T00:00:00.000Z',
      '2012-04-01T00:00:00.000Z',
    ]);
    expect(prorateSpan(999, part, full, 'day')).toBe(935);
    expect(prorateSpan(999, part, full, 'second')).toBe(934);
  });

  it('rounds half up once per line: 1001 × 15/30 = 500.5 → 501', () => {
    const s: BillingSchedule = { anchor: d('2027-01-01T00:00:00Z'), period: 'month', billingCycleDay: 1 };
    const april = periodAt(s, d('2027-04-10T00:00:00Z'));
    expect(prorateSpan(1001, { start: d('2027-04-16T00:00:00Z'), end: april.end }, april, 'day')).toBe(501);
  });

  it('prorates the first period of a BCD 31 subscription: 1199 × 21/31 = 812.23 → 812', () => {
    const s: BillingSchedule = { anchor: d('2028-01-10T09:30:00Z'), period: 'month', billingCycleDay: 31 };
    expect(periodAmount(1199, periodByIndex(s, 0))).toBe(812);
    expect(periodAmount(1199, periodByIndex(s, 1))).toBe(1199);
    const line = recurringLine({ name: 'Premium', priceMinor: 1199 }, periodByIndex(s, 0));
    expect(line).toMatchObject({ kind: 'recurring', amountMinor: 812 });
  });

  it('prorates a first year from Feb 29 to Feb 15: 11990 × 352/366 = 11531.36 → 11531', () => {
    const s: BillingSchedule = { anchor: d('2028-02-29T08:00:00Z'), period: 'year', billingCycleDay: 15 };
    expect(periodAmount(11990, periodByIndex(s, 0))).toBe(11531);
  });

  it('has no fraction of a yen and three decimals of a dinar', () => {
    const s: BillingSchedule = { anchor: d('2027-01-01T00:00:00Z'), period: 'month', billingCycleDay: 1 };
    const c = planChangeLines({
      schedule: s,
      from: { name: 'Basic', priceMinor: 980 },
      to: { name: 'Premium', priceMinor: 1480, billingPeriod: 'month' },
      at: d('2027-02-11T00:00:00Z'),
      unit: 'day',
    });
    // 18 of 28 days: ¥980 × 18/28 = 630, ¥1480 × 18/28 = 951.43 → 951.
    expect([c.credit.amountMinor, c.charge.amountMinor]).toEqual([-630, 951]);
    const jp = assembleInvoice({
      currency: 'JPY',
      tax: { rateBps: 1000, inclusive: true },
      lines: [c.credit, c.charge],
      accountCreditMinor: 0,
    });
    // ¥321 including 10 %: 321 × 10/110 = 29.18 → 29.
    expect([jp.subtotalMinor, jp.taxMinor, jp.totalMinor, jp.amountDueMinor]).toEqual([321, 29, 321, 321]);

    // KWD 3.500 for 10 of 31 days of January: 3500 × 10/31 = 1129.03 → 1.129; 5 % on top: 56.45 → 0.056.
    const jan = periodAt(s, d('2027-01-05T00:00:00Z'));
    const fils = prorateSpan(3500, { start: d('2027-01-22T00:00:00Z'), end: jan.end }, jan, 'day');
    expect(fils).toBe(1129);
    const kw = assembleInvoice({
      currency: 'KWD',
      tax: { rateBps: 500, inclusive: false },
      lines: [
        { kind: 'fixed', description: 'x', periodStart: jan.start, periodEnd: jan.end, amountMinor: fils },
      ],
      accountCreditMinor: 0,
    });
    expect([kw.taxMinor, kw.totalMinor]).toEqual([56, 1185]);
  });
});

describe('plan changes', () => {
  // Monthly from Jan 15 2027 (no D); the change at Mar 5 12:00 lies in [Feb 15, Mar 15): 10 of 28 days left.
  const s: BillingSchedule = { anchor: d('2027-01-15T00:00:00Z'), period: 'month', billingCycleDay: null };
  const at = d('2027-03-05T12:00:00Z');

  it('upgrade mid-period (SE, 25 % inclusive): credit −3893, charge 6036, tax 429 of 2143, renewal unchanged', () => {
    const timing = changeTiming({
      trialing: false,
      from: { billingPeriod: 'month', priceMinor: 10900 },
      to: { billingPeriod: 'month', priceMinor: 16900 },
    });
    expect(timing).toEqual({ timing: 'immediate', free: false, reason: 'upgrade' });
    const c = planChangeLines({
      schedule: s,
      from: { name: 'Individual', priceMinor: 10900 },
      to: { name: 'Family', priceMinor: 16900, billingPeriod: 'month' },
      at,
      unit: 'day',
    });
    expect(c.credit).toMatchObject({ kind: 'proration_credit', amountMinor: -3893 });
    expect([iso(c.credit.periodStart), iso(c.credit.periodEnd)]).toEqual([
      iso(at),
      '2027-03-15T00:00:00.000Z',
    ]);
    expect(c.charge).toMatchObject({ kind: 'proration_charge', amountMinor: 6036 });
    expect(iso(c.nextRenewalAt)).toBe('2027-03-15T00:00:00.000Z');
    const inv = assembleInvoice({
      currency: 'SEK',
      tax: SE,
      lines: [c.credit, c.charge],
      accountCreditMinor: 0,
    });
    expect(inv).toMatchObject({ subtotalMinor: 2143, taxMinor: 429, totalMinor: 2143, amountDueMinor: 2143 });
    expect(inv.lines.map((l) => [l.kind, l.amountMinor])).toEqual([
      ['proration_credit', -3893],
      ['proration_charge', 6036],
      ['tax', 429],
    ]);
  });

  it('downgrade waits for the term end; the next invoice bills the new plan for a full period', () => {
    const timing = changeTiming({
      trialing: false,
      from: { billingPeriod: 'month', priceMinor: 16900 },
      to: { billingPeriod: 'month', priceMinor: 10900 },
    });
    expect(timing.timing).toBe('end_of_term');
    const next = periodAt(s, periodAt(s, at).end);
    const inv = assembleInvoice({
      currency: 'SEK',
      tax: SE,
      lines: [recurringLine({ name: 'Individual', priceMinor: 10900 }, next)],
      accountCreditMinor: 0,
    });
    expect([iso(next.start), iso(next.end)]).toEqual([
      '2027-03-15T00:00:00.000Z',
      '2027-04-15T00:00:00.000Z',
    ]);
    expect([inv.subtotalMinor, inv.taxMinor, inv.totalMinor]).toEqual([10900, 2180, 10900]);
  });

  it('month → year (US, 7.25 % exclusive): the yearly period containing c, renewal at its end', () => {
    const c = planChangeLines({
      schedule: s,
      from: { name: 'Monthly', priceMinor: 1199 },
      to: { name: 'Yearly', priceMinor: 11990, billingPeriod: 'year' },
      at,
      unit: 'day',
    });
    // Credit 1199 × 10/28 = 428.21 → 428; charge 11990 × 316/365 = 10380.38 → 10380 for [Mar 5 2027, Jan 15 2028).
    expect([c.credit.amountMinor, c.charge.amountMinor]).toEqual([-428, 10380]);
    expect([iso(c.newPeriod.aligned.start), iso(c.nextRenewalAt)]).toEqual([
      '2027-01-15T00:00:00.000Z',
      '2028-01-15T00:00:00.000Z',
    ]);
    expect(c.newSchedule).toEqual({ ...s, period: 'year' });
    const inv = assembleInvoice({
      currency: 'USD',
      tax: US,
      lines: [c.credit, c.charge],
      accountCreditMinor: 0,
    });
    // 9952 × 7.25 % = 721.52 → 722.
    expect([inv.subtotalMinor, inv.taxMinor, inv.totalMinor, inv.amountDueMinor]).toEqual([
      9952, 722, 10674, 10674,
    ]);
  });

  it('an immediate downgrade leaves credit, carried to the next invoice as credit_applied', () => {
    const c = planChangeLines({
      schedule: s,
      from: { name: 'Family', priceMinor: 16900 },
      to: { name: 'Individual', priceMinor: 10900, billingPeriod: 'month' },
      at,
      unit: 'day',
    });
    const change = assembleInvoice({
      currency: 'SEK',
      tax: SE,
      lines: [c.credit, c.charge],
      accountCreditMinor: 0,
    });
    // −6036 + 3893 = −2143 (tax −428.6 → −429 inside it): 2143 of credit, nothing due.
    expect(change).toMatchObject({
      subtotalMinor: -2143,
      taxMinor: -429,
      totalMinor: -2143,
      amountDueMinor: 0,
      creditAppliedMinor: 0,
      creditCreatedMinor: 2143,
      accountCreditAfterMinor: 2143,
    });
    const renewal = assembleInvoice({
      currency: 'SEK',
      tax: SE,
      lines: [recurringLine({ name: 'Individual', priceMinor: 10900 }, periodAt(s, c.nextRenewalAt))],
      accountCreditMinor: change.accountCreditAfterMinor,
    });
    expect(renewal).toMatchObject({ totalMinor: 10900, creditAppliedMinor: 2143, amountDueMinor: 8757 });
    expect(renewal.lines.at(-1)).toMatchObject({ kind: 'credit_applied', amountMinor: -2143 });
    expect(renewal.accountCreditAfterMinor).toBe(0);
  });

  it('prorates by second when asked', () => {
    const c = planChangeLines({
      schedule: s,
      from: { name: 'Monthly', priceMinor: 1199 },
      to: { name: 'Monthly+', priceMinor: 1999, billingPeriod: 'month' },
      at,
      unit: 'second',
    });
    // 9.5 of 28 days: 1199 × 820,800/2,419,200 = 406.8 → 407; 1999 × 820,800/2,419,200 = 678.23 → 678.
    expect([c.credit.amountMinor, c.charge.amountMinor]).toEqual([-407, 678]);
  });
});

describe('change timing', () => {
  const month = (priceMinor: number) => ({ billingPeriod: 'month' as const, priceMinor });
  it('is immediate and free during a trial, whatever is asked', () => {
    expect(
      changeTiming({ trialing: true, requested: 'end_of_term', from: month(1000), to: month(500) }),
    ).toEqual({ timing: 'immediate', free: true, reason: 'trial' });
  });
  it('takes the request over the plan, the plan over the default', () => {
    expect(
      changeTiming({
        trialing: false,
        requested: 'immediate',
        targetPlanTiming: 'end_of_term',
        from: month(1000),
        to: month(500),
      }).reason,
    ).toBe('request');
    expect(
      changeTiming({ trialing: false, targetPlanTiming: 'end_of_term', from: month(500), to: month(1000) }),
    ).toEqual({ timing: 'end_of_term', free: false, reason: 'plan' });
  });
  it('defaults: another billing period immediate (even cheaper), same price immediate', () => {
    expect(
      changeTiming({ trialing: false, from: month(1199), to: { billingPeriod: 'week', priceMinor: 299 } })
        .timing,
    ).toBe('immediate');
    expect(changeTiming({ trialing: false, from: month(1199), to: month(1199) }).reason).toBe('same_price');
  });
});
