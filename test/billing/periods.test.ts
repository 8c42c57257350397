import { describe, expect, it } from 'vitest';
import {
  type BillingSchedule,
  billingAnchor,
  boundary,
  isPartial,
  nextBoundaryAfter,
  periodAt,
  periodByIndex,
  trialEndFor,
} from '../../src/modules/billing/domain/periods.js';

const d = (iso: string): Date => new Date(iso);
const iso = (date: Date): string => date.toISOString();
const boundaries = (s: BillingSchedule, count: number): string[] =>
  Array.from({ length: count }, (_, n) => iso(boundary(s, n)));

describe('anchors', () => {
  it('is the trial end when there is a trial, else the start', () => {
    const start = d('2027-03-10T14:20:00Z');
    const trialEnd = trialEndFor(start, 14);
    expect(trialEnd && iso(trialEnd)).toBe('2027-03-24T14:20:00.000Z');
    expect(billingAnchor({ startedAt: start, trialEnd })).toEqual(trialEnd);
    expect(trialEndFor(start, 0)).toBeNull();
    expect(billingAnchor({ startedAt: start, trialEnd: null })).toEqual(start);
  });
});

describe('monthly with billing cycle day 31', () => {
  it('falls on the last day of each month through February of a leap year (2028)', () => {
    const s: BillingSchedule = { anchor: d('2028-01-10T09:30:00Z'), period: 'month', billingCycleDay: 31 };
    expect(boundaries(s, 6)).toEqual([
      '2028-01-10T09:30:00.000Z',
      '2028-01-31T00:00:00.000Z',
      '2028-02-29T00:00:00.000Z',
      '2028-03-31T00:00:00.000Z',
      '2028-04-30T00:00:00.000Z',
      '2028-05-31T00:00:00.000Z',
    ]);
    // The first paid period runs from the anchor to the next boundary, aligned on Dec 31 → Jan 31.
    const first = periodByIndex(s, 0);
    expect(iso(first.start)).toBe('2028-01-10T09:30:00.000Z');
    expect(iso(first.aligned.start)).toBe('2027-12-31T00:00:00.000Z');
    expect(iso(first.end)).toBe('2028-01-31T00:00:00.000Z');
    expect(isPartial(first)).toBe(true);
    expect(isPartial(periodByIndex(s, 1))).toBe(false);
  });

  it('falls on Feb 28 in a common year (2027) and never drifts to the 28th afterwards', () => {
    const s: BillingSchedule = { anchor: d('2027-01-10T09:30:00Z'), period: 'month', billingCycleDay: 31 };
    expect(boundaries(s, 5).slice(1)).toEqual([
      '2027-01-31T00:00:00.000Z',
      '2027-02-28T00:00:00.000Z',
      '2027-03-31T00:00:00.000Z',
      '2027-04-30T00:00:00.000Z',
    ]);
    expect(iso(boundary(s, 13))).toBe('2028-01-31T00:00:00.000Z');
    expect(iso(boundary(s, 14))).toBe('2028-02-29T00:00:00.000Z');
  });

  it('starts with a full period when the anchor is exactly on a boundary', () => {
    const s: BillingSchedule = { anchor: d('2027-03-31T00:00:00Z'), period: 'month', billingCycleDay: 31 };
    const first = periodByIndex(s, 0);
    expect(isPartial(first)).toBe(false);
    expect(iso(first.end)).toBe('2027-04-30T00:00:00.000Z');
  });

  it('starts the first period after the boundary on the anchor day when the anchor is past 00:00', () => {
    const s: BillingSchedule = { anchor: d('2027-01-31T12:00:00Z'), period: 'month', billingCycleDay: 31 };
    const first = periodByIndex(s, 0);
    expect(iso(first.aligned.start)).toBe('2027-01-31T00:00:00.000Z');
    expect(iso(first.end)).toBe('2027-02-28T00:00:00.000Z');
  });
});

describe('monthly without billing cycle day', () => {
  it('repeats the anchor day and time from Jan 31: Feb 29 (2028), Mar 31, Apr 30', () => {
    const s: BillingSchedule = { anchor: d('2028-01-31T12:00:00Z'), period: 'month', billingCycleDay: null };
    expect(boundaries(s, 4)).toEqual([
      '2028-01-31T12:00:00.000Z',
      '2028-02-29T12:00:00.000Z',
      '2028-03-31T12:00:00.000Z',
      '2028-04-30T12:00:00.000Z',
    ]);
    expect(iso(boundary(s, 13))).toBe('2029-02-28T12:00:00.000Z');
    expect(iso(boundary(s, 14))).toBe('2029-03-31T12:00:00.000Z');
  });

  it('gives Feb 28 in a common year (2027)', () => {
    const s: BillingSchedule = { anchor: d('2027-01-31T12:00:00Z'), period: 'month', billingCycleDay: null };
    expect(boundaries(s, 4).slice(1)).toEqual([
      '2027-02-28T12:00:00.000Z',
      '2027-03-31T12:00:00.000Z',
      '2027-04-30T12:00:00.000Z',
    ]);
  });

  it('keeps the seconds of an anchor with a time of day', () => {
    const s: BillingSchedule = { anchor: d('2012-02-01T00:03:42Z'), period: 'month', billingCycleDay: null };
    const p = periodAt(s, d('2012-03-02T00:03:42Z'));
    expect([iso(p.start), iso(p.end), p.index]).toEqual([
      '2012-03-01T00:03:42.000Z',
      '2012-04-01T00:03:42.000Z',
      1,
    ]);
  });
});

describe('yearly', () => {
  it('repeats Feb 29 as Feb 28 in common years and Feb 29 in leap years', () => {
    const s: BillingSchedule = { anchor: d('2028-02-29T08:00:00Z'), period: 'year', billingCycleDay: null };
    expect(boundaries(s, 5)).toEqual([
      '2028-02-29T08:00:00.000Z',
      '2029-02-28T08:00:00.000Z',
      '2030-02-28T08:00:00.000Z',
      '2031-02-28T08:00:00.000Z',
      '2032-02-29T08:00:00.000Z',
    ]);
  });

  it('with D falls on day D of the anchor month: a prorated first year from Feb 29 to Feb 15', () => {
    const s: BillingSchedule = { anchor: d('2028-02-29T08:00:00Z'), period: 'year', billingCycleDay: 15 };
    const first = periodByIndex(s, 0);
    expect(iso(first.aligned.start)).toBe('2028-02-15T00:00:00.000Z');
    expect(iso(first.end)).toBe('2029-02-15T00:00:00.000Z');
    expect(iso(boundary(s, 2))).toBe('2030-02-15T00:00:00.000Z');
  });

  it('with D 31 falls on the last day of February each year', () => {
    const s: BillingSchedule = { anchor: d('2027-02-10T00:00:00Z'), period: 'year', billingCycleDay: 31 };
    expect(boundaries(s, 4).slice(1)).toEqual([
      '2027-02-28T00:00:00.000Z',
      '2028-02-29T00:00:00.000Z',
      '2029-02-28T00:00:00.000Z',
    ]);
  });
});

describe('weekly', () => {
  it('is 7 days from the anchor; the billing cycle day does not apply', () => {
    const s: BillingSchedule = { anchor: d('2027-03-01T10:00:00Z'), period: 'week', billingCycleDay: 31 };
    expect(boundaries(s, 6)).toEqual([
      '2027-03-01T10:00:00.000Z',
      '2027-03-08T10:00:00.000Z',
      '2027-03-15T10:00:00.000Z',
      '2027-03-22T10:00:00.000Z',
      '2027-03-29T10:00:00.000Z',
      '2027-04-05T10:00:00.000Z',
    ]);
    expect(isPartial(periodByIndex(s, 0))).toBe(false);
  });
});

describe('the period containing an instant', () => {
  const s: BillingSchedule = { anchor: d('2027-01-15T00:00:00Z'), period: 'month', billingCycleDay: null };

  it('puts a boundary instant in the period it starts', () => {
    const p = periodAt(s, d('2027-03-15T00:00:00Z'));
    expect([p.index, iso(p.start), iso(p.end)]).toEqual([
      2,
      '2027-03-15T00:00:00.000Z',
      '2027-04-15T00:00:00.000Z',
    ]);
    const before = periodAt(s, d('2027-03-14T23:59:59.999Z'));
    expect(before.index).toBe(1);
  });

  it('gives the next renewal after an instant, the anchor before it', () => {
    expect(iso(nextBoundaryAfter(s, d('2027-03-05T12:00:00Z')))).toBe('2027-03-15T00:00:00.000Z');
    expect(iso(nextBoundaryAfter(s, d('2027-01-01T00:00:00Z')))).toBe('2027-01-15T00:00:00.000Z');
  });

  it('refuses an instant before the anchor (a bug: no paid period then)', () => {
    expect(() => periodAt(s, d('2027-01-14T00:00:00Z'))).toThrow(/before the anchor/);
  });
});
