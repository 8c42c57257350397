import { assert } from '../../../kernel/assert.js';
import { divRoundHalfUp } from '../../../kernel/money.js';
import { calendarDaysBetween, DAY_MS, type Span, startOfUtcDay, utcDayNumber } from './periods.js';

/**
 * Revenue recognition (ADR 0014): each invoice line's net amount is recognised daily over its
 * service period, by cumulative rounding: day k of n recognises round(net × k/n) −
 * round(net × (k−1)/n), so the days sum to the net exactly (no cent lost or made) and each day is
 * within one minor unit of net / n.
 *
 * Days are UTC calendar dates: a line [start, end) covers n = calendar days from start to end
 * (at least 1, so a line inside one date is recognised on that date), day k being the date
 * start + k − 1. A day is recognised once it has ended.
 */

/** A year and its leap day; a service period is never longer (a yearly period is 365 or 366 days). */
export const MAX_RECOGNITION_DAYS = 366;

export interface RecognisableLine extends Span {
  /** The line's revenue net of tax (negative for a proration credit). */
  readonly netMinor: number;
  readonly currency: string;
}

/** The number of days a line is recognised over. */
export function recognitionDays(span: Span): number {
  assert(span.start.getTime() <= span.end.getTime(), 'period ends before it starts');
  const n = Math.max(1, calendarDaysBetween(span.start, span.end));
  assert(n <= MAX_RECOGNITION_DAYS, `a service period of ${n} days is longer than a year`);
  return n;
}

/** round(net × k / n), half-up: what is recognised after k of n days. */
function cumulative(netMinor: number, k: number, n: number): number {
  return Number(divRoundHalfUp(BigInt(netMinor) * BigInt(k), BigInt(n)));
}

/** The amount recognised on day k (1-based) of n. */
export function dailyAmount(netMinor: number, k: number, n: number): number {
  assert(Number.isInteger(k) && k >= 1 && k <= n, `day ${k} is not in 1..${n}`);
  return cumulative(netMinor, k, n) - cumulative(netMinor, k - 1, n);
}

/** The amount of `line` recognised for the UTC date of `day` (0 outside its period). */
export function recognisedOn(line: RecognisableLine, day: Date): number {
  const n = recognitionDays(line);
  const k = utcDayNumber(day) - utcDayNumber(line.start) + 1;
  return k >= 1 && k <= n ? dailyAmount(line.netMinor, k, n) : 0;
}

/** What is recognised of `line` by `at`: every day whose date has ended by then. */
export function recognisedBy(line: RecognisableLine, at: Date): number {
  const n = recognitionDays(line);
  const ended = Math.min(n, Math.max(0, utcDayNumber(at) - utcDayNumber(line.start)));
  return cumulative(line.netMinor, ended, n);
}

/** What is still deferred of `line` at `at`: its net less what is recognised by then. */
export function deferredAt(line: RecognisableLine, at: Date): number {
  return line.netMinor - recognisedBy(line, at);
}

/** Every day of a line with its amount, in date order (at most MAX_RECOGNITION_DAYS entries). */
export function recognitionSchedule(line: RecognisableLine): { day: Date; amountMinor: number }[] {
  const n = recognitionDays(line);
  const first = startOfUtcDay(line.start).getTime();
  return Array.from({ length: n }, (_, i) => ({
    day: new Date(first + i * DAY_MS),
    amountMinor: dailyAmount(line.netMinor, i + 1, n),
  }));
}

/**
 * The day's recognition, one amount per currency (the daily job posts one aggregated ledger
 * transaction per currency and day; the detail per line is derivable with `recognisedOn`).
 */
export function recognitionForDay(lines: Iterable<RecognisableLine>, day: Date): Map<string, number> {
  const byCurrency = new Map<string, number>();
  for (const line of lines) {
    const amount = recognisedOn(line, day);
    if (amount !== 0) byCurrency.set(line.currency, (byCurrency.get(line.currency) ?? 0) + amount);
  }
  return byCurrency;
}
