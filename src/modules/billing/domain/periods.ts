import { assert } from '../../../kernel/assert.js';

/**
 * Billing periods and anchors (ADR 0014). Every boundary is computed directly from the anchor and
 * the billing cycle day, never by adding a month to the previous boundary (that drifts: Jan 31 →
 * Feb 28 → Mar 28). All arithmetic is in UTC.
 */

export type BillingPeriod = 'month' | 'year' | 'week';

export const DAY_MS = 86_400_000;
const WEEK_MS = 7 * DAY_MS;
/** Boundary indices beyond this are a bug (a weekly subscription would be 1,900 years old). */
export const MAX_PERIOD_INDEX = 100_000;
const MIN_YEAR = 1970;
const MAX_YEAR = 9999;

/** What fixes a subscription's boundaries: the anchor, the billing period and the customer's day D. */
export interface BillingSchedule {
  /** Start of the first paid period: the trial end when there is a trial, else the start. */
  readonly anchor: Date;
  readonly period: BillingPeriod;
  /** The customer's billing cycle day (1–31), or null to repeat the anchor's day and time. */
  readonly billingCycleDay: number | null;
}

/** A half-open interval [start, end). */
export interface Span {
  readonly start: Date;
  readonly end: Date;
}

/**
 * Billing period number `index` of a schedule: [start, end). `aligned` is the full period of the
 * grid (anchor / billing day) that contains it, the denominator of every proration. They differ
 * only for the first period when a billing cycle day puts the anchor between two boundaries.
 */
export interface Period extends Span {
  readonly index: number;
  readonly aligned: Span;
}

/** The billing anchor: the trial end when there is a trial, else the start. */
export function billingAnchor(input: { startedAt: Date; trialEnd: Date | null }): Date {
  return input.trialEnd ?? input.startedAt;
}

/** The end of a trial of `trialDays` whole days from `startedAt` (null without a trial). */
export function trialEndFor(startedAt: Date, trialDays: number): Date | null {
  assert(Number.isInteger(trialDays) && trialDays >= 0 && trialDays <= 730, `bad trialDays ${trialDays}`);
  return trialDays === 0 ? null : new Date(startedAt.getTime() + trialDays * DAY_MS);
}

function checkSchedule(s: BillingSchedule): void {
  const t = s.anchor.getTime();
  assert(Number.isFinite(t), 'anchor is not a valid date');
  const year = s.anchor.getUTCFullYear();
  assert(year >= MIN_YEAR && year <= MAX_YEAR, `anchor year ${year} out of range`);
  if (s.billingCycleDay !== null) {
    assert(
      Number.isInteger(s.billingCycleDay) && s.billingCycleDay >= 1 && s.billingCycleDay <= 31,
      `billing cycle day ${s.billingCycleDay} out of range`,
    );
  }
}

function daysInMonth(year: number, month0: number): number {
  return new Date(Date.UTC(year, month0 + 1, 0)).getUTCDate();
}

/** Day `day` (clamped to the month's last day) of month number `monthIndex` (year × 12 + month0), plus `timeMs`. */
function dayOfMonth(monthIndex: number, day: number, timeMs: number): Date {
  const year = Math.floor(monthIndex / 12);
  const month0 = monthIndex - year * 12;
  const d = new Date(0);
  d.setUTCFullYear(year, month0, Math.min(day, daysInMonth(year, month0)));
  return new Date(d.getTime() + timeMs);
}

const monthIndexOf = (d: Date): number => d.getUTCFullYear() * 12 + d.getUTCMonth();
const timeOfDayMs = (d: Date): number => d.getTime() - Math.floor(d.getTime() / DAY_MS) * DAY_MS;

/**
 * The grid of a schedule: G(i) for every integer i, strictly increasing, with G(0) ≤ anchor < G(1).
 * Billing period i ≥ 1 is [G(i), G(i+1)); period 0 is [anchor, G(1)).
 */
function grid(s: BillingSchedule): { at: (i: number) => Date; estimate: (t: Date) => number } {
  checkSchedule(s);
  const anchorMs = s.anchor.getTime();
  if (s.period === 'week') {
    // D does not apply to weekly periods.
    return {
      at: (i) => new Date(anchorMs + i * WEEK_MS),
      estimate: (t) => Math.floor((t.getTime() - anchorMs) / WEEK_MS),
    };
  }
  const step = s.period === 'month' ? 1 : 12;
  const m0 = monthIndexOf(s.anchor);
  const estimateMonths = (t: Date): number => Math.floor((monthIndexOf(t) - m0) / step);
  if (s.billingCycleDay === null) {
    // Repeat the anchor's day and time, clamped to each month's last day.
    const day = s.anchor.getUTCDate();
    const time = timeOfDayMs(s.anchor);
    return { at: (i) => dayOfMonth(m0 + step * i, day, time), estimate: estimateMonths };
  }
  // Day D at 00:00 UTC of each month (of the anchor's month each year), clamped. c(k) is the
  // boundary in the k-th month (year) after the anchor's; G(1) is the first one after the anchor.
  const D = s.billingCycleDay;
  const c = (k: number): Date => dayOfMonth(m0 + step * k, D, 0);
  const shift = c(0).getTime() > anchorMs ? -1 : 0;
  return { at: (i) => c(i + shift), estimate: (t) => estimateMonths(t) - shift };
}

/**
 * Boundary n of a schedule: n = 0 is the anchor, n ≥ 1 the end of billing period n − 1. Computed
 * directly from the anchor and D, so boundary n never depends on boundary n − 1.
 */
export function boundary(schedule: BillingSchedule, n: number): Date {
  assert(Number.isInteger(n) && n >= 0 && n <= MAX_PERIOD_INDEX, `bad boundary index ${n}`);
  return n === 0 ? schedule.anchor : grid(schedule).at(n);
}

/** Billing period number `index` (0 = the first paid period, prorated when D puts the anchor mid-period). */
export function periodByIndex(schedule: BillingSchedule, index: number): Period {
  assert(Number.isInteger(index) && index >= 0 && index < MAX_PERIOD_INDEX, `bad period index ${index}`);
  const g = grid(schedule);
  const aligned = { start: g.at(index), end: g.at(index + 1) };
  return { index, start: index === 0 ? schedule.anchor : aligned.start, end: aligned.end, aligned };
}

/** The number of the billing period containing `at` (at ≥ anchor: before it there is no paid period). */
export function periodIndexAt(schedule: BillingSchedule, at: Date): number {
  assert(at.getTime() >= schedule.anchor.getTime(), 'no billing period before the anchor');
  const g = grid(schedule);
  let i = Math.max(0, g.estimate(at));
  // The estimate is within one step; the loops are bounded to say so.
  for (let guard = 0; g.at(i).getTime() > at.getTime(); guard++) {
    assert(guard < 3 && i > 0, 'period estimate drifted');
    i--;
  }
  for (let guard = 0; g.at(i + 1).getTime() <= at.getTime(); guard++) {
    assert(guard < 3, 'period estimate drifted');
    i++;
  }
  assert(i < MAX_PERIOD_INDEX, `period index ${i} out of range`);
  return i;
}

/** The billing period whose [start, end) contains `at`. */
export function periodAt(schedule: BillingSchedule, at: Date): Period {
  return periodByIndex(schedule, periodIndexAt(schedule, at));
}

/** The first boundary strictly after `at` (the next renewal as seen from `at`). */
export function nextBoundaryAfter(schedule: BillingSchedule, at: Date): Date {
  if (at.getTime() < schedule.anchor.getTime()) return schedule.anchor;
  return periodAt(schedule, at).end;
}

/** Whether a period is shorter than its aligned full period (and so billed prorated). */
export function isPartial(period: Period): boolean {
  return (
    period.start.getTime() !== period.aligned.start.getTime() ||
    period.end.getTime() !== period.aligned.end.getTime()
  );
}

/** The UTC calendar day of an instant, as a count of days since 1970-01-01. */
export function utcDayNumber(d: Date): number {
  return Math.floor(d.getTime() / DAY_MS);
}

/** Whole UTC calendar days from `from` to `to`: the difference of their dates, time of day ignored. */
export function calendarDaysBetween(from: Date, to: Date): number {
  return utcDayNumber(to) - utcDayNumber(from);
}

/** 00:00 UTC of an instant's day. */
export function startOfUtcDay(d: Date): Date {
  return new Date(utcDayNumber(d) * DAY_MS);
}
