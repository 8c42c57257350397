import { assert } from '../../../kernel/assert.js';
import { type FieldError, invalidMany } from '../../../kernel/errors.js';
import { DAY_MS } from './periods.js';

/**
 * Dunning (ADR 0014): after a renewal (or trial-end) charge fails at instant f, the invoice is
 * retried at f + d days for each d of the schedule (default 1, 3, 5, 7). The grace period is the
 * retry window: the subscription stays entitled until the last retry fails, then it is canceled.
 */

export const DEFAULT_RETRY_DAYS: readonly number[] = Object.freeze([1, 3, 5, 7]);
/** At most 8 retries within 60 days (Stripe's bounds for its retry schedules). */
export const MAX_RETRIES = 8;
export const MAX_RETRY_DAY = 60;

export interface RetrySchedule {
  /** Days after the first failure, strictly increasing, 1..MAX_RETRY_DAY, 1..MAX_RETRIES of them. */
  readonly retryDays: readonly number[];
}

/** Validates a configured schedule; a bad one is refused naming each bad entry (`retryDays[i]`). */
export function retrySchedule(
  days: readonly number[] = DEFAULT_RETRY_DAYS,
  path = 'retryDays',
): RetrySchedule {
  const errors: FieldError[] = [];
  if (days.length < 1 || days.length > MAX_RETRIES) {
    errors.push({ path, in: 'body', message: `must list 1 to ${MAX_RETRIES} retry days` });
  }
  days.slice(0, MAX_RETRIES).forEach((d, i) => {
    if (!Number.isInteger(d) || d < 1 || d > MAX_RETRY_DAY) {
      errors.push({
        path: `${path}[${i}]`,
        in: 'body',
        message: `must be a whole number of days 1..${MAX_RETRY_DAY}`,
      });
    } else if (i > 0 && d <= (days[i - 1] ?? 0)) {
      errors.push({ path: `${path}[${i}]`, in: 'body', message: 'must be later than the retry before it' });
    }
  });
  if (errors.length > 0) throw invalidMany(errors);
  return { retryDays: Object.freeze([...days]) };
}

export const DEFAULT_RETRY_SCHEDULE: RetrySchedule = retrySchedule();

/** The instant of retry number `attempt` (1-based) after the first failure at `firstFailureAt`. */
export function retryAt(schedule: RetrySchedule, firstFailureAt: Date, attempt: number): Date {
  const day = schedule.retryDays[attempt - 1];
  assert(Number.isInteger(attempt) && day !== undefined, `no retry number ${attempt}`);
  return new Date(firstFailureAt.getTime() + day * DAY_MS);
}

/**
 * After `failures` failed charges of one invoice (the first one included), when the next retry
 * runs, or null when that failure was the last.
 */
export function nextRetryAt(schedule: RetrySchedule, firstFailureAt: Date, failures: number): Date | null {
  assert(Number.isInteger(failures) && failures >= 1, `failures must be ≥ 1, got ${failures}`);
  return failures > schedule.retryDays.length ? null : retryAt(schedule, firstFailureAt, failures);
}

/** Whether failure number `failures` (the first charge is failure 1) is the last: the retries are spent. */
export function isLastFailure(schedule: RetrySchedule, failures: number): boolean {
  assert(Number.isInteger(failures) && failures >= 1, `failures must be ≥ 1, got ${failures}`);
  return failures >= schedule.retryDays.length + 1;
}

/** The end of the grace period: the last retry's instant. */
export function graceEndsAt(schedule: RetrySchedule, firstFailureAt: Date): Date {
  return retryAt(schedule, firstFailureAt, schedule.retryDays.length);
}
