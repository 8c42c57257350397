/**
 * When a failed webhook delivery is tried again (ADR 0019): exponential backoff with full jitter
 * (a random delay between 0 and base × 2^(n−1), capped), for up to a window after the first
 * attempt; the last try is made at the window's end, then the delivery is `failed`.
 */
export interface RetryPolicy {
  baseDelayMs: number;
  maxDelayMs: number;
  /** How long after its first attempt a delivery is still retried. */
  windowMs: number;
}

export const DAY_MS = 24 * 60 * 60_000;

export const DEFAULT_RETRY: RetryPolicy = {
  baseDelayMs: 30_000,
  maxDelayMs: 4 * 60 * 60_000,
  windowMs: 3 * DAY_MS,
};

/** An endpoint with no success for this long since its first failure is disabled. */
export const FAILING_DISABLE_MS = 3 * DAY_MS;

/** The smallest delay between two attempts, whatever the jitter drew. */
export const MIN_DELAY_MS = 1_000;

export type NextStep = { status: 'pending'; nextAttemptAt: Date } | { status: 'failed' };

/**
 * After failed attempt number `attempts` (1 for the first) made at `now`: the next attempt's time,
 * or `failed` once the window since `firstAttemptAt` has passed. `random` is in [0, 1).
 */
export function afterFailure(
  policy: RetryPolicy,
  input: { attempts: number; firstAttemptAt: Date; now: Date },
  random: number,
): NextStep {
  const end = input.firstAttemptAt.getTime() + policy.windowMs;
  const now = input.now.getTime();
  if (now >= end) return { status: 'failed' };
  const exponent = Math.min(Math.max(input.attempts - 1, 0), 40);
  const ceiling = Math.min(policy.maxDelayMs, policy.baseDelayMs * 2 ** exponent);
  const delay = Math.max(Math.min(MIN_DELAY_MS, ceiling), Math.floor(random * ceiling));
  // On a whole second, as the API shows it.
  const next = Math.ceil((now + delay) / 1000) * 1000;
  return { status: 'pending', nextAttemptAt: new Date(Math.min(next, end)) };
}

/** Whether an endpoint failing since `failingSince` (no success since) is disabled at `now`. */
export function shouldDisable(failingSince: Date | null, now: Date, failingMs = FAILING_DISABLE_MS): boolean {
  return failingSince !== null && now.getTime() - failingSince.getTime() >= failingMs;
}
