import { unreachable } from '../../../kernel/assert.js';
import { DomainError, invalid } from '../../../kernel/errors.js';
import type { Span } from './periods.js';

/**
 * The subscription state machine (ADR 0014) as one pure transition function: the new state, or a
 * refusal (`invalid_state`, 409) that changes nothing. Periods, amounts and schedules come from
 * the other domain files; this one decides which moves are allowed and what they change.
 */

export type SubscriptionStatus =
  | 'trialing'
  | 'active'
  | 'past_due'
  | 'paused'
  | 'canceled'
  | 'incomplete'
  | 'expired';

export type CancelTiming = 'immediate' | 'end_of_term';
export type RefundPolicy = 'none' | 'prorated';

/** An unpaid sign-up expires this long after it was created. */
export const INCOMPLETE_EXPIRY_MS = 23 * 3_600_000;

export interface SubscriptionState {
  readonly status: SubscriptionStatus;
  readonly createdAt: Date;
  readonly trialEnd: Date | null;
  /** The current (or, while paused, the last) billing period; null before the first one. */
  readonly currentPeriodStart: Date | null;
  readonly currentPeriodEnd: Date | null;
  /** A scheduled end_of_term cancel: when it takes effect. */
  readonly cancelAt: Date | null;
  /** When it ended (canceled or expired). */
  readonly endedAt: Date | null;
  readonly pausedAt: Date | null;
  /** The first failed charge of the unpaid invoice: the dunning clock (while past_due). */
  readonly pastDueSince: Date | null;
}

export type SubscriptionEvent =
  /** The first charge of a sign-up without trial succeeded (at once or on a later pay). */
  | { readonly type: 'first_payment_succeeded'; readonly at: Date; readonly period: Span }
  /** An unpaid sign-up reached its 23 hours. */
  | { readonly type: 'expire_incomplete'; readonly at: Date }
  /** Trial end: the first invoice was charged; `paid` false → past_due. */
  | { readonly type: 'trial_ended'; readonly at: Date; readonly paid: boolean; readonly period: Span }
  /** Period end: the next period was invoiced and charged; `paid` false → past_due. */
  | { readonly type: 'renewed'; readonly at: Date; readonly paid: boolean; readonly period: Span }
  /** A retry (or `POST /v1/invoices/{id}/pay`) of the unpaid invoice succeeded. */
  | { readonly type: 'retry_succeeded'; readonly at: Date }
  /** A retry failed; `last` when the schedule is spent (see dunning.isLastFailure). */
  | { readonly type: 'retry_failed'; readonly at: Date; readonly last: boolean }
  | {
      readonly type: 'cancel';
      readonly at: Date;
      /** Resolved with `cancelTiming` (request, then plan, then end_of_term). */
      readonly timing: CancelTiming;
      readonly refund: RefundPolicy;
    }
  /** The scheduled cancel's instant arrived. */
  | { readonly type: 'cancel_due'; readonly at: Date }
  | { readonly type: 'reactivate'; readonly at: Date }
  | { readonly type: 'pause'; readonly at: Date }
  /** Resume at `at`; `period` is [at, next boundary) (pause.resumePeriod). */
  | { readonly type: 'resume'; readonly at: Date; readonly period: Span }
  /** A plan change; `period` is the new current period when it changes it (immediate change). */
  | { readonly type: 'change_plan'; readonly at: Date; readonly period?: Span | undefined };

export type Transition =
  | { readonly ok: true; readonly state: SubscriptionState }
  | { readonly ok: false; readonly error: DomainError };

/** The cancel timing in force: the request's, else the plan's `cancelTiming`, else end_of_term. */
export function cancelTiming(requested?: CancelTiming | null, plan?: CancelTiming | null): CancelTiming {
  return requested ?? plan ?? 'end_of_term';
}

/** When an incomplete subscription created at `createdAt` expires. */
export function incompleteExpiresAt(createdAt: Date): Date {
  return new Date(createdAt.getTime() + INCOMPLETE_EXPIRY_MS);
}

const refuse = (state: SubscriptionState, event: SubscriptionEvent, detail: string): Transition => ({
  ok: false,
  error: new DomainError('invalid_state', detail, {
    extra: { subscriptionStatus: state.status, operation: event.type },
  }),
});
const to = (state: SubscriptionState, patch: Partial<SubscriptionState>): Transition => ({
  ok: true,
  state: { ...state, ...patch },
});
const ms = (d: Date | null): number => (d ? d.getTime() : Number.NaN);
const ended = (at: Date) => ({ cancelAt: null, pausedAt: null, pastDueSince: null, endedAt: at });
const withPeriod = (p: Span) => ({ currentPeriodStart: p.start, currentPeriodEnd: p.end });

/** The transition of `state` under `event`, or an `invalid_state` refusal. */
export function transition(state: SubscriptionState, event: SubscriptionEvent): Transition {
  const s = state.status;
  const at = event.at.getTime();
  switch (event.type) {
    case 'first_payment_succeeded':
      if (s !== 'incomplete')
        return refuse(state, event, `A ${s} subscription has no first payment pending.`);
      return to(state, { status: 'active', ...withPeriod(event.period) });

    case 'expire_incomplete':
      if (s !== 'incomplete')
        return refuse(state, event, `Only an incomplete subscription expires; this one is ${s}.`);
      if (at < incompleteExpiresAt(state.createdAt).getTime()) {
        return refuse(state, event, 'An incomplete subscription expires 23 hours after it was created.');
      }
      return to(state, { status: 'expired', ...ended(event.at) });

    case 'trial_ended':
      if (s !== 'trialing') return refuse(state, event, `The subscription is ${s}, not trialing.`);
      if (at < ms(state.trialEnd)) return refuse(state, event, 'The trial has not ended yet.');
      if (state.cancelAt) return refuse(state, event, 'A trial canceled at its end is never charged.');
      return to(state, {
        status: event.paid ? 'active' : 'past_due',
        pastDueSince: event.paid ? null : event.at,
        ...withPeriod(event.period),
      });

    case 'renewed':
      if (s !== 'active') {
        // No new period is invoiced while past_due (nor paused, nor ended).
        return refuse(state, event, `A ${s} subscription does not renew.`);
      }
      if (at < ms(state.currentPeriodEnd)) return refuse(state, event, 'The current period has not ended.');
      if (state.cancelAt) return refuse(state, event, 'The subscription ends at this period end.');
      return to(state, {
        status: event.paid ? 'active' : 'past_due',
        pastDueSince: event.paid ? null : event.at,
        ...withPeriod(event.period),
      });

    case 'retry_succeeded':
      // The period is unchanged: the subscriber pays for the period that was invoiced.
      if (s !== 'past_due')
        return refuse(state, event, `A ${s} subscription has no unpaid invoice to retry.`);
      return to(state, { status: 'active', pastDueSince: null });

    case 'retry_failed':
      if (s !== 'past_due')
        return refuse(state, event, `A ${s} subscription has no unpaid invoice to retry.`);
      return event.last ? to(state, { status: 'canceled', ...ended(event.at) }) : to(state, {});

    case 'cancel':
      return cancel(state, event);

    case 'cancel_due':
      if ((s !== 'active' && s !== 'trialing') || !state.cancelAt) {
        return refuse(state, event, 'No cancel is scheduled.');
      }
      if (at < state.cancelAt.getTime()) return refuse(state, event, 'The scheduled cancel is not due yet.');
      return to(state, { status: 'canceled', ...ended(state.cancelAt) });

    case 'reactivate':
      if ((s !== 'active' && s !== 'trialing') || !state.cancelAt) {
        return refuse(state, event, 'Only a subscription with a scheduled cancel can be reactivated.');
      }
      if (at >= state.cancelAt.getTime()) return refuse(state, event, 'The cancel has already taken effect.');
      return to(state, { cancelAt: null });

    case 'pause':
      if (s === 'past_due') {
        return refuse(
          state,
          event,
          'A past_due subscription cannot be paused: unpaid time is never credited.',
        );
      }
      if (s !== 'active')
        return refuse(state, event, `Only an active subscription can be paused; this one is ${s}.`);
      if (state.cancelAt) return refuse(state, event, 'Reactivate the subscription before pausing it.');
      if (at < ms(state.currentPeriodStart) || at >= ms(state.currentPeriodEnd)) {
        return refuse(state, event, 'A pause must fall inside the current period.');
      }
      return to(state, { status: 'paused', pausedAt: event.at });

    case 'resume':
      if (s !== 'paused')
        return refuse(state, event, `Only a paused subscription can be resumed; this one is ${s}.`);
      if (at < ms(state.pausedAt)) {
        return { ok: false, error: invalid('at', 'must not be before the pause') };
      }
      return to(state, { status: 'active', pausedAt: null, ...withPeriod(event.period) });

    case 'change_plan':
      if (s === 'past_due') {
        return refuse(
          state,
          event,
          'A past_due subscription cannot change plan: unpaid time is never credited.',
        );
      }
      if (s !== 'active' && s !== 'trialing') {
        return refuse(
          state,
          event,
          `Only an active or trialing subscription can change plan; this one is ${s}.`,
        );
      }
      if (state.cancelAt)
        return refuse(state, event, 'Reactivate the subscription before changing its plan.');
      // During a trial the trial end (and so the anchor) does not move.
      return event.period && s === 'active' ? to(state, withPeriod(event.period)) : to(state, {});

    default:
      return unreachable(event);
  }
}

function cancel(state: SubscriptionState, event: Extract<SubscriptionEvent, { type: 'cancel' }>): Transition {
  const s = state.status;
  if (s === 'canceled' || s === 'expired') return refuse(state, event, `The subscription is already ${s}.`);
  if (event.refund === 'prorated' && event.timing !== 'immediate') {
    return { ok: false, error: invalid('refund', 'a prorated refund needs timing "immediate"') };
  }
  // Only trialing and active subscriptions have a paid (or free) term to run out; the others end now.
  if (event.timing === 'end_of_term' && (s === 'trialing' || s === 'active')) {
    // During a trial, end_of_term ends at the trial end and never charges.
    const cancelAt = s === 'trialing' ? state.trialEnd : state.currentPeriodEnd;
    if (!cancelAt || event.at.getTime() >= cancelAt.getTime()) {
      return refuse(state, event, 'The current term has already ended.');
    }
    return to(state, { cancelAt });
  }
  return to(state, { status: 'canceled', ...ended(event.at) });
}

/** `transition`, throwing its refusal. */
export function applyEvent(state: SubscriptionState, event: SubscriptionEvent): SubscriptionState {
  const t = transition(state, event);
  if (!t.ok) throw t.error;
  return t.state;
}

/** The state of a new subscription: trialing with a trial, else incomplete until its first payment. */
export function newSubscription(input: { createdAt: Date; trialEnd: Date | null }): SubscriptionState {
  return {
    status: input.trialEnd ? 'trialing' : 'incomplete',
    createdAt: input.createdAt,
    trialEnd: input.trialEnd,
    currentPeriodStart: input.trialEnd ? input.createdAt : null,
    currentPeriodEnd: input.trialEnd,
    cancelAt: null,
    endedAt: null,
    pausedAt: null,
    pastDueSince: null,
  };
}
