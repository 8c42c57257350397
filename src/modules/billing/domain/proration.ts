import { assert } from '../../../kernel/assert.js';
import { prorate } from '../../../kernel/money.js';
import type { ChargeLine } from './invoice.js';
import {
  type BillingPeriod,
  type BillingSchedule,
  calendarDaysBetween,
  type Period,
  periodAt,
  type Span,
} from './periods.js';

/**
 * Proration (ADR 0014): a partial period [from, to) inside its aligned full period [start, end)
 * costs `price × (to − from) / (end − start)`, in whole UTC calendar days (default) or seconds,
 * rounded half-up once per line with bigint arithmetic.
 */

export type ProrationUnit = 'day' | 'second';

/**
 * Units from `from` to `to`. Days: the difference of the UTC calendar dates, time of day ignored
 * (2012-03-02T00:03:42 → 2012-03-31 is 29). Seconds: each instant truncated to its second, so the
 * parts of a split period add up to the whole.
 */
export function unitsBetween(from: Date, to: Date, unit: ProrationUnit): number {
  if (unit === 'day') return calendarDaysBetween(from, to);
  return Math.floor(to.getTime() / 1000) - Math.floor(from.getTime() / 1000);
}

/** `price × units(part) / units(full)`, half-up. `part` must lie inside `full`. */
export function prorateSpan(priceMinor: number, part: Span, full: Span, unit: ProrationUnit): number {
  assert(Number.isSafeInteger(priceMinor), `price ${priceMinor} is not a safe integer`);
  const [ps, pe, fs, fe] = [part.start, part.end, full.start, full.end].map((d) => d.getTime()) as [
    number,
    number,
    number,
    number,
  ];
  assert(fs <= ps && ps <= pe && pe <= fe, 'the partial period must lie inside the full period');
  const whole = unitsBetween(full.start, full.end, unit);
  assert(whole > 0, 'a full period has at least one unit');
  return prorate(priceMinor, unitsBetween(part.start, part.end, unit), whole);
}

/** The amount of a billing period at `priceMinor`: the price, prorated when the period is partial. */
export function periodAmount(priceMinor: number, period: Period, unit: ProrationUnit = 'day'): number {
  return prorateSpan(priceMinor, period, period.aligned, unit);
}

/** The unused part [at, end) of `period` at `priceMinor` (what a change, pause or cancel gives back). */
export function unusedAmount(priceMinor: number, period: Period, at: Date, unit: ProrationUnit): number {
  assert(
    at.getTime() >= period.start.getTime() && at.getTime() <= period.end.getTime(),
    'the instant must lie in the period',
  );
  return prorateSpan(priceMinor, { start: at, end: period.end }, period.aligned, unit);
}

const isoDate = (d: Date): string => d.toISOString().slice(0, 10);

export interface PlanChangeInput {
  /** The subscription's schedule on the old plan (anchor, old billing period, D). */
  readonly schedule: BillingSchedule;
  readonly from: { readonly name: string; readonly priceMinor: number };
  readonly to: { readonly name: string; readonly priceMinor: number; readonly billingPeriod: BillingPeriod };
  /** The instant of the change, c (≥ the anchor: a change during a trial is free and has no lines). */
  readonly at: Date;
  readonly unit: ProrationUnit;
}

export interface PlanChangeLines {
  /** `proration_credit`: −price_old × (e − c)/(e − s), for [c, e). */
  readonly credit: ChargeLine;
  /** `proration_charge`: price_new × (e′ − c)/(e′ − s′), for [c, e′). */
  readonly charge: ChargeLine;
  /** The old plan's period containing c, [s, e) (aligned: the denominator). */
  readonly oldPeriod: Period;
  /** The new plan's period containing c, from the same anchor and D with the new billing period. */
  readonly newPeriod: Period;
  /** The schedule from now on: same anchor and D, the new billing period. */
  readonly newSchedule: BillingSchedule;
  /** e′: the next renewal. */
  readonly nextRenewalAt: Date;
}

/**
 * The lines of an immediate plan change at c. A month → year change gets the yearly period that
 * contains c; the next renewal is at its end e′.
 */
export function planChangeLines(input: PlanChangeInput): PlanChangeLines {
  const { schedule, at, unit } = input;
  const oldPeriod = periodAt(schedule, at);
  const newSchedule: BillingSchedule = { ...schedule, period: input.to.billingPeriod };
  const newPeriod = periodAt(newSchedule, at);
  const creditAmount = unusedAmount(input.from.priceMinor, oldPeriod, at, unit);
  const chargeAmount = unusedAmount(input.to.priceMinor, newPeriod, at, unit);
  return {
    credit: {
      kind: 'proration_credit',
      description: `Unused time on ${input.from.name} from ${isoDate(at)}`,
      periodStart: at,
      periodEnd: oldPeriod.end,
      amountMinor: creditAmount === 0 ? 0 : -creditAmount,
    },
    charge: {
      kind: 'proration_charge',
      description: `Remaining time on ${input.to.name} from ${isoDate(at)}`,
      periodStart: at,
      periodEnd: newPeriod.end,
      amountMinor: chargeAmount,
    },
    oldPeriod,
    newPeriod,
    newSchedule,
    nextRenewalAt: newPeriod.end,
  };
}

/**
 * The `recurring` line of a billing period: the full price, or the prorated price of a partial
 * period (the first one when D puts the anchor mid-period, the one a resume starts).
 */
export function recurringLine(
  plan: { readonly name: string; readonly priceMinor: number },
  period: Period,
  unit: ProrationUnit = 'day',
): ChargeLine {
  return {
    kind: 'recurring',
    description: `${plan.name} ${isoDate(period.start)} – ${isoDate(period.end)}`,
    periodStart: period.start,
    periodEnd: period.end,
    amountMinor: periodAmount(plan.priceMinor, period, unit),
  };
}
