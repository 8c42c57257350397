import { assert } from '../../../kernel/assert.js';
import { DomainError, invalid } from '../../../kernel/errors.js';
import { graceEndsAt, type RetrySchedule } from './dunning.js';
import type { SubscriptionState } from './lifecycle.js';

/**
 * Entitlements of a subscription (ADR 0014): until when its owner and members have the product's
 * features, and how many members it holds.
 */

/** After a period end, access lasts this long while the renewal runs, so a late batch never cuts playback. */
export const RENEWAL_MARGIN_MS = 24 * 3_600_000;
/** A product's seats are bounded on input; more is a bug. */
export const MAX_SEATS = 100;

const plus = (d: Date, msToAdd: number): Date => new Date(d.getTime() + msToAdd);

/**
 * Until when a subscription entitles, or null when it does not (incomplete, paused, canceled,
 * expired): trialing to the trial end, active to the period end, past_due to the last retry, each
 * plus the renewal margin, because a renewal (or the last retry) runs then. A scheduled cancel
 * ends access at its instant: no renewal runs, so no margin.
 */
export function validUntil(state: SubscriptionState, dunning: RetrySchedule): Date | null {
  switch (state.status) {
    case 'trialing':
      return state.cancelAt ?? (state.trialEnd ? plus(state.trialEnd, RENEWAL_MARGIN_MS) : null);
    case 'active':
      return (
        state.cancelAt ?? (state.currentPeriodEnd ? plus(state.currentPeriodEnd, RENEWAL_MARGIN_MS) : null)
      );
    case 'past_due':
      return state.pastDueSince ? plus(graceEndsAt(dunning, state.pastDueSince), RENEWAL_MARGIN_MS) : null;
    default:
      return null;
  }
}

/** Whether the subscription entitles at `at`. */
export function isEntitled(state: SubscriptionState, dunning: RetrySchedule, at: Date): boolean {
  const until = validUntil(state, dunning);
  return until !== null && at.getTime() < until.getTime();
}

/** Members a product of `seats` seats holds besides its owner. */
export function memberCapacity(seats: number): number {
  assert(Number.isInteger(seats) && seats >= 1 && seats <= MAX_SEATS, `bad seats ${seats}`);
  return seats - 1;
}

const seatsText = (seats: number): string =>
  `${seats} seat${seats === 1 ? '' : 's'} (the owner and up to ${memberCapacity(seats)} member${seats === 2 ? '' : 's'})`;

/**
 * Refuses adding `externalId` as a member: the owner is not a member of their own subscription
 * (400), a member is added once (409 already_exists), and the owner plus members fit the seats (409).
 */
export function checkAddMember(input: {
  readonly seats: number;
  readonly ownerExternalId: string;
  readonly members: readonly string[];
  readonly externalId: string;
}): void {
  const { seats, members, externalId } = input;
  if (externalId === input.ownerExternalId) {
    throw invalid('externalId', 'is the subscription owner, not a member');
  }
  if (members.includes(externalId)) {
    throw new DomainError('already_exists', `'${externalId}' is already a member of this subscription.`, {
      errors: [{ path: 'externalId', in: 'body', message: `'${externalId}' is already a member` }],
    });
  }
  if (members.length >= memberCapacity(seats)) {
    throw new DomainError('invalid_state', `The product has ${seatsText(seats)}; all are taken.`, {
      extra: { seats, members: members.length },
    });
  }
}

/** Refuses a change to a plan whose product cannot hold the owner and the current members. */
export function checkSeatsForPlanChange(input: {
  readonly newSeats: number;
  readonly memberCount: number;
}): void {
  const { newSeats, memberCount } = input;
  if (memberCount > memberCapacity(newSeats)) {
    throw new DomainError(
      'invalid_state',
      `The new plan has ${seatsText(newSeats)} but the subscription has ${memberCount} member${
        memberCount === 1 ? '' : 's'
      }; remove members first.`,
      { extra: { seats: newSeats, members: memberCount } },
    );
  }
}
