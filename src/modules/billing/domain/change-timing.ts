import type { BillingPeriod } from './periods.js';

/**
 * When a plan change takes effect (ADR 0014). A change during a trial is immediate and free (the
 * trial end does not move). Otherwise the request decides, then the target plan's `changeTiming`,
 * then the default: another billing period → immediate; same period: upgrade (higher price)
 * immediate, downgrade at the term end, same price immediate (no money moves).
 */

export type ChangeTiming = 'immediate' | 'end_of_term';

export type ChangeTimingReason =
  | 'trial'
  | 'request'
  | 'plan'
  | 'period_change'
  | 'upgrade'
  | 'downgrade'
  | 'same_price';

export interface ChangeTimingInput {
  readonly trialing: boolean;
  readonly requested?: ChangeTiming | null | undefined;
  /** The target plan's `changeTiming` (the default for changes to it). */
  readonly targetPlanTiming?: ChangeTiming | null | undefined;
  /** Prices in the subscriber's currency, at the price in force for them. */
  readonly from: { readonly billingPeriod: BillingPeriod; readonly priceMinor: number };
  readonly to: { readonly billingPeriod: BillingPeriod; readonly priceMinor: number };
}

export interface ChangeTimingDecision {
  readonly timing: ChangeTiming;
  /** True during a trial: no proration lines, no invoice. */
  readonly free: boolean;
  /** What decided it, for the audit trail and the event. */
  readonly reason: ChangeTimingReason;
}

export function changeTiming(input: ChangeTimingInput): ChangeTimingDecision {
  if (input.trialing) return { timing: 'immediate', free: true, reason: 'trial' };
  if (input.requested) return { timing: input.requested, free: false, reason: 'request' };
  if (input.targetPlanTiming) return { timing: input.targetPlanTiming, free: false, reason: 'plan' };
  if (input.from.billingPeriod !== input.to.billingPeriod) {
    return { timing: 'immediate', free: false, reason: 'period_change' };
  }
  if (input.to.priceMinor > input.from.priceMinor)
    return { timing: 'immediate', free: false, reason: 'upgrade' };
  if (input.to.priceMinor < input.from.priceMinor) {
    return { timing: 'end_of_term', free: false, reason: 'downgrade' };
  }
  return { timing: 'immediate', free: false, reason: 'same_price' };
}
