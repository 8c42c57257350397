import { invalid, invalidState } from '../../../kernel/errors.js';
import { type ChangeTiming, type ChangeTimingReason, changeTiming } from './change-timing.js';
import { checkSeatsForPlanChange } from './entitlement.js';
import type { ChargeLine } from './invoice.js';
import { applyEvent, type SubscriptionState } from './lifecycle.js';
import { type BillingPeriod, type BillingSchedule, type Period, periodAt } from './periods.js';
import { type ProrationUnit, planChangeLines, recurringLine } from './proration.js';

/**
 * A plan change, planned (ADR 0014, "Plan changes"): the one pure function behind both
 * `POST /v1/subscriptions/{id}/change` and its preview, so they can never disagree. It refuses
 * what the lifecycle, the seats or the input forbid, decides the timing, and computes every line
 * and period; the caller stores (change) or shows (preview) what it returns.
 */

export interface PlanSide {
  readonly planId: string;
  readonly name: string;
  readonly billingPeriod: BillingPeriod;
  /** The price this side is billed at: the subscriber's own price for the current plan. */
  readonly priceMinor: number;
}

export interface TargetPlan extends PlanSide {
  /** The price version of `priceMinor` (the price in force for a new subscriber at the change). */
  readonly priceVersionId: string;
  readonly productId: string;
  readonly seats: number;
  /** The target plan's `changeTiming`: the default for changes to it. */
  readonly changeTiming: ChangeTiming | null;
}

export interface PlanChangeInput {
  /** c: the customer's now. */
  readonly at: Date;
  readonly state: SubscriptionState;
  /**
   * The subscription's schedule (anchor, current billing period) with the billing cycle day the
   * new grid uses (`changeSchedule`): weekly grids ignore it, so the old periods are unaffected.
   */
  readonly schedule: BillingSchedule;
  readonly current: PlanSide;
  readonly target: TargetPlan;
  /** A pending end-of-term change, if any. */
  readonly pending: { readonly planId: string; readonly at: Date } | null;
  readonly memberCount: number;
  readonly requested?: ChangeTiming | null | undefined;
  readonly unit: ProrationUnit;
  /**
   * The target plan's price for a new subscriber at the current period end (what an end-of-term
   * change bills then), when the caller wants that invoice shown; null to leave it out.
   */
  readonly targetPriceAtTermEnd?: { readonly priceMinor: number; readonly priceVersionId: string } | null;
}

interface Planned {
  readonly timing: ChangeTiming;
  readonly reason: ChangeTimingReason | 'revert';
  /** When the new plan takes effect. */
  readonly effectiveAt: Date;
  /** The next renewal after the change (the trial end during a trial). */
  readonly nextRenewal: Date;
}

export type PlannedChange =
  /** Back to the current plan while a change is pending: the pending change is dropped. */
  | (Planned & { readonly kind: 'revert' })
  /** During a trial: plan and price swap at once, free, the trial end unchanged. */
  | (Planned & { readonly kind: 'trial' })
  /** Immediate: one invoice of these lines; the subscription takes `schedule` and `period`. */
  | (Planned & {
      readonly kind: 'immediate';
      readonly lines: readonly ChargeLine[];
      readonly schedule: BillingSchedule;
      /** [s′, e′): the new plan's period containing c, the new current period. */
      readonly period: Period;
    })
  /** At the term end: stored as pending; the renewal at `effectiveAt` bills `renewalLines`. */
  | (Planned & {
      readonly kind: 'end_of_term';
      /** The period the renewal at the term end bills (on the new plan's grid). */
      readonly renewalPeriod: Period;
      /** Its line, when `targetPriceAtTermEnd` was given. */
      readonly renewalLines: readonly ChargeLine[] | null;
    });

/**
 * The billing cycle day of the grid after a change to `to`: the stored one; a weekly subscription
 * stores none (D does not apply to weeks), so one that leaves weeks takes the customer's.
 */
export function changeBillingCycleDay(
  stored: { readonly period: BillingPeriod; readonly billingCycleDay: number | null },
  customerBillingCycleDay: number | null,
): number | null {
  if (stored.period === 'week') return customerBillingCycleDay;
  return stored.billingCycleDay;
}

/**
 * The billing period a renewal at `at` bills on `schedule`: from `at` to the end of the grid
 * period containing it, prorated against that aligned period when `at` is not one of its
 * boundaries (an end-of-term change to another billing period keeps the anchor: the first period
 * on the new grid is partial). On an unchanged grid `at` is a boundary and the period is full.
 */
export function periodFrom(schedule: BillingSchedule, at: Date): Period {
  const p = periodAt(schedule, at);
  return { ...p, start: at };
}

export function planChange(input: PlanChangeInput): PlannedChange {
  const { at, state, current, target, pending } = input;
  const samePlan = target.planId === current.planId;
  if (samePlan && !pending) {
    throw invalid('plan', `is already the subscription's plan`);
  }
  // Refusals of the state machine first (past_due, canceled, a scheduled cancel…).
  applyEvent(state, { type: 'change_plan', at });
  const trialing = state.status === 'trialing';
  const termEnd = trialing ? state.trialEnd : state.currentPeriodEnd;
  if (!termEnd || at.getTime() >= termEnd.getTime()) {
    throw invalidState(
      trialing
        ? 'The trial has ended; its first invoice is being processed. Retry in a moment.'
        : 'The current period has ended; its renewal is being processed. Retry in a moment.',
    );
  }
  if (samePlan) {
    // Only a pending change can make the current plan a change: going back drops it.
    return {
      kind: 'revert',
      timing: 'end_of_term',
      reason: 'revert',
      effectiveAt: termEnd,
      nextRenewal: termEnd,
    };
  }
  checkSeatsForPlanChange({ newSeats: target.seats, memberCount: input.memberCount });
  const decision = changeTiming({
    trialing,
    requested: input.requested,
    targetPlanTiming: target.changeTiming,
    from: current,
    to: target,
  });
  if (decision.free) {
    return {
      kind: 'trial',
      timing: 'immediate',
      reason: decision.reason,
      effectiveAt: at,
      nextRenewal: termEnd,
    };
  }
  const newSchedule: BillingSchedule = { ...input.schedule, period: target.billingPeriod };
  if (decision.timing === 'end_of_term') {
    const renewalPeriod = periodFrom(newSchedule, termEnd);
    const price = input.targetPriceAtTermEnd;
    return {
      kind: 'end_of_term',
      timing: 'end_of_term',
      reason: decision.reason,
      effectiveAt: termEnd,
      nextRenewal: termEnd,
      renewalPeriod,
      renewalLines: price
        ? [recurringLine({ name: target.name, priceMinor: price.priceMinor }, renewalPeriod)]
        : null,
    };
  }
  const change = planChangeLines({
    schedule: input.schedule,
    from: current,
    to: target,
    at,
    unit: input.unit,
  });
  return {
    kind: 'immediate',
    timing: 'immediate',
    reason: decision.reason,
    effectiveAt: at,
    nextRenewal: change.nextRenewalAt,
    lines: [change.credit, change.charge],
    schedule: change.newSchedule,
    period: change.newPeriod,
  };
}
