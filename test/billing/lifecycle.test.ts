import { describe, expect, it } from 'vitest';
import type { DomainError } from '../../src/kernel/errors.js';
import {
  DEFAULT_RETRY_SCHEDULE,
  graceEndsAt,
  isLastFailure,
  nextRetryAt,
  retrySchedule,
} from '../../src/modules/billing/domain/dunning.js';
import {
  checkAddMember,
  checkSeatsForPlanChange,
  isEntitled,
  validUntil,
} from '../../src/modules/billing/domain/entitlement.js';
import { assembleInvoice } from '../../src/modules/billing/domain/invoice.js';
import {
  applyEvent,
  cancelTiming,
  newSubscription,
  type SubscriptionState,
  transition,
} from '../../src/modules/billing/domain/lifecycle.js';
import { pauseCredit, resumeCharge } from '../../src/modules/billing/domain/pause.js';
import { type BillingSchedule, periodAt } from '../../src/modules/billing/domain/periods.js';

const d = (iso: string): Date => new Date(iso);
const iso = (date: Date | null): string | null => date?.toISOString() ?? null;
const US = { rateBps: 725, inclusive: false };

const active = (): SubscriptionState =>
  applyEvent(newSubscription({ createdAt: d('2027-01-15T00:00:00Z'), trialEnd: null }), {
    type: 'first_payment_succeeded',
    at: d('2027-01-15T00:00:00Z'),
    period: { start: d('2027-01-15T00:00:00Z'), end: d('2027-02-15T00:00:00Z') },
  });

const refusal = (state: SubscriptionState, event: Parameters<typeof transition>[1]): DomainError => {
  const t = transition(state, event);
  if (t.ok) throw new Error(`expected a refusal, got ${t.state.status}`);
  return t.error;
};

describe('dunning schedule', () => {
  const f = d('2027-03-15T00:00:05Z');

  it('retries 1, 3, 5 and 7 days after the first failure; the fifth failure is the last', () => {
    expect([1, 2, 3, 4, 5].map((n) => iso(nextRetryAt(DEFAULT_RETRY_SCHEDULE, f, n)))).toEqual([
      '2027-03-16T00:00:05.000Z',
      '2027-03-18T00:00:05.000Z',
      '2027-03-20T00:00:05.000Z',
      '2027-03-22T00:00:05.000Z',
      null,
    ]);
    expect([4, 5].map((n) => isLastFailure(DEFAULT_RETRY_SCHEDULE, n))).toEqual([false, true]);
    expect(iso(graceEndsAt(DEFAULT_RETRY_SCHEDULE, f))).toBe('2027-03-22T00:00:05.000Z');
  });

  it('takes a configured schedule and refuses one that is not increasing or not bounded', () => {
    const two = retrySchedule([2, 10]);
    expect(iso(nextRetryAt(two, f, 2))).toBe('2027-03-25T00:00:05.000Z');
    expect(isLastFailure(two, 3)).toBe(true);
    const paths = (days: number[]) => {
      try {
        retrySchedule(days);
        return [];
      } catch (e) {
        return (e as DomainError).errors.map((x) => x.path);
      }
    };
    expect(paths([3, 3, 1])).toEqual(['retryDays[1]', 'retryDays[2]']);
    expect(paths([0, 61, 1.5])).toEqual(['retryDays[0]', 'retryDays[1]', 'retryDays[2]']);
    expect(paths([])).toEqual(['retryDays']);
    expect(paths([1, 2, 3, 4, 5, 6, 7, 8, 9])).toEqual(['retryDays']);
  });
});

describe('subscription state machine', () => {
  it('a decline at sign-up stays incomplete, unentitled, and expires after 23 hours', () => {
    const s = newSubscription({ createdAt: d('2027-01-15T10:00:00Z'), trialEnd: null });
    expect(s.status).toBe('incomplete');
    expect(isEntitled(s, DEFAULT_RETRY_SCHEDULE, d('2027-01-15T10:00:01Z'))).toBe(false);
    expect(refusal(s, { type: 'expire_incomplete', at: d('2027-01-16T08:59:59Z') }).code).toBe(
      'invalid_state',
    );
    const expired = applyEvent(s, { type: 'expire_incomplete', at: d('2027-01-16T09:00:00Z') });
    expect([expired.status, iso(expired.endedAt)]).toEqual(['expired', '2027-01-16T09:00:00.000Z']);
  });

  it('trial → active when the first invoice is paid, → past_due when it is not', () => {
    const t = newSubscription({ createdAt: d('2027-01-01T00:00:00Z'), trialEnd: d('2027-01-15T00:00:00Z') });
    const period = { start: d('2027-01-15T00:00:00Z'), end: d('2027-02-15T00:00:00Z') };
    expect(
      refusal(t, { type: 'trial_ended', at: d('2027-01-14T00:00:00Z'), paid: true, period }).message,
    ).toMatch(/not ended/);
    expect(applyEvent(t, { type: 'trial_ended', at: period.start, paid: true, period }).status).toBe(
      'active',
    );
    const pd = applyEvent(t, { type: 'trial_ended', at: period.start, paid: false, period });
    expect([pd.status, iso(pd.pastDueSince)]).toEqual(['past_due', '2027-01-15T00:00:00.000Z']);
  });

  it('a trial canceled at term end ends at the trial end and is never charged', () => {
    const t = newSubscription({ createdAt: d('2027-01-01T00:00:00Z'), trialEnd: d('2027-01-15T00:00:00Z') });
    const c = applyEvent(t, {
      type: 'cancel',
      at: d('2027-01-05T00:00:00Z'),
      timing: 'end_of_term',
      refund: 'none',
    });
    expect(iso(c.cancelAt)).toBe('2027-01-15T00:00:00.000Z');
    const period = { start: d('2027-01-15T00:00:00Z'), end: d('2027-02-15T00:00:00Z') };
    expect(refusal(c, { type: 'trial_ended', at: period.start, paid: true, period }).code).toBe(
      'invalid_state',
    );
    expect(applyEvent(c, { type: 'cancel_due', at: period.start }).status).toBe('canceled');
  });

  it('dunning: past_due keeps the period; a success is active again, the last failure cancels', () => {
    const next = { start: d('2027-02-15T00:00:00Z'), end: d('2027-03-15T00:00:00Z') };
    const pd = applyEvent(active(), { type: 'renewed', at: next.start, paid: false, period: next });
    expect(pd.status).toBe('past_due');
    expect(refusal(pd, { type: 'renewed', at: next.end, paid: true, period: next }).message).toMatch(
      /does not renew/,
    );
    const ok = applyEvent(pd, { type: 'retry_succeeded', at: d('2027-02-18T00:00:00Z') });
    expect([ok.status, iso(ok.currentPeriodStart), iso(ok.currentPeriodEnd)]).toEqual([
      'active',
      '2027-02-15T00:00:00.000Z',
      '2027-03-15T00:00:00.000Z',
    ]);
    const still = applyEvent(pd, { type: 'retry_failed', at: d('2027-02-16T00:00:00Z'), last: false });
    expect(still.status).toBe('past_due');
    const gone = applyEvent(still, { type: 'retry_failed', at: d('2027-02-22T00:00:00Z'), last: true });
    expect(gone.status).toBe('canceled');
  });

  it('refuses pausing or changing plan while past_due (409 invalid_state): unpaid time is never credited', () => {
    const next = { start: d('2027-02-15T00:00:00Z'), end: d('2027-03-15T00:00:00Z') };
    const pd = applyEvent(active(), { type: 'renewed', at: next.start, paid: false, period: next });
    for (const type of ['pause', 'change_plan'] as const) {
      const e = refusal(pd, { type, at: d('2027-02-16T00:00:00Z') });
      expect([e.code, e.status]).toEqual(['invalid_state', 409]);
      expect(e.message).toMatch(/unpaid time is never credited/);
    }
  });

  it('cancel at term end can be undone before then, not after', () => {
    const c = applyEvent(active(), {
      type: 'cancel',
      at: d('2027-02-01T00:00:00Z'),
      timing: 'end_of_term',
      refund: 'none',
    });
    expect([c.status, iso(c.cancelAt)]).toEqual(['active', '2027-02-15T00:00:00.000Z']);
    expect(applyEvent(c, { type: 'reactivate', at: d('2027-02-14T23:59:59Z') }).cancelAt).toBeNull();
    expect(refusal(c, { type: 'reactivate', at: d('2027-02-15T00:00:00Z') }).code).toBe('invalid_state');
    expect(refusal(active(), { type: 'reactivate', at: d('2027-02-01T00:00:00Z') }).code).toBe(
      'invalid_state',
    );
  });

  it('cancel timing: request, then plan, then end_of_term; a prorated refund needs immediate', () => {
    expect(cancelTiming(undefined, null)).toBe('end_of_term');
    expect(cancelTiming(undefined, 'immediate')).toBe('immediate');
    expect(cancelTiming('end_of_term', 'immediate')).toBe('end_of_term');
    const e = refusal(active(), {
      type: 'cancel',
      at: d('2027-02-01T00:00:00Z'),
      timing: 'end_of_term',
      refund: 'prorated',
    });
    expect(e.errors.map((x) => x.path)).toEqual(['refund']);
    const now = applyEvent(active(), {
      type: 'cancel',
      at: d('2027-02-01T00:00:00Z'),
      timing: 'immediate',
      refund: 'prorated',
    });
    expect([now.status, iso(now.endedAt)]).toEqual(['canceled', '2027-02-01T00:00:00.000Z']);
    expect(
      refusal(now, { type: 'cancel', at: d('2027-02-02T00:00:00Z'), timing: 'immediate', refund: 'none' })
        .code,
    ).toBe('invalid_state');
  });
});

describe('pause and resume', () => {
  // Monthly 1199 USD from Jan 15 2027, US 7.25 % exclusive.
  const schedule: BillingSchedule = {
    anchor: d('2027-01-15T00:00:00Z'),
    period: 'month',
    billingCycleDay: null,
  };
  const plan = { name: 'Premium', priceMinor: 1199 };

  it('credits the unused part at p and charges [r, next boundary) from the credit first', () => {
    const p = d('2027-03-05T12:00:00Z');
    const credit = pauseCredit({ schedule, plan, at: p, unit: 'day' });
    // [Mar 5, Mar 15) of [Feb 15, Mar 15): 1199 × 10/28 = 428.21 → −428.
    expect(credit.line).toMatchObject({ kind: 'proration_credit', amountMinor: -428 });
    const pauseInvoice = assembleInvoice({
      currency: 'USD',
      tax: US,
      lines: [credit.line],
      accountCreditMinor: 0,
    });
    // −428 − 31.03 → −31 = −459: account credit 459, tax included.
    expect([pauseInvoice.totalMinor, pauseInvoice.creditCreatedMinor]).toEqual([-459, 459]);

    const state = applyEvent(
      {
        ...active(),
        currentPeriodStart: d('2027-02-15T00:00:00Z'),
        currentPeriodEnd: d('2027-03-15T00:00:00Z'),
      },
      { type: 'pause', at: p },
    );
    expect(state.status).toBe('paused');
    expect(isEntitled(state, DEFAULT_RETRY_SCHEDULE, p)).toBe(false);

    const r = d('2027-04-20T08:00:00Z');
    const resume = resumeCharge({ schedule, plan, pausedAt: p, at: r, unit: 'day' });
    // [Apr 20 08:00, May 15) of [Apr 15, May 15): 1199 × 25/30 = 999.17 → 999; tax 72.43 → 72.
    expect([resume.line.kind, resume.line.amountMinor, iso(resume.period.end)]).toEqual([
      'recurring',
      999,
      '2027-05-15T00:00:00.000Z',
    ]);
    const resumeInvoice = assembleInvoice({
      currency: 'USD',
      tax: US,
      lines: [resume.line],
      accountCreditMinor: pauseInvoice.accountCreditAfterMinor,
    });
    expect(resumeInvoice).toMatchObject({ totalMinor: 1071, creditAppliedMinor: 459, amountDueMinor: 612 });
    const resumed = applyEvent(state, { type: 'resume', at: r, period: resume.period });
    expect([resumed.status, iso(resumed.currentPeriodStart), iso(resumed.currentPeriodEnd)]).toEqual([
      'active',
      '2027-04-20T08:00:00.000Z',
      '2027-05-15T00:00:00.000Z',
    ]);
    // The grid is unchanged: the renewal after the resumed period is a full one.
    expect(iso(periodAt(schedule, resume.period.end).end)).toBe('2027-06-15T00:00:00.000Z');
  });
});

describe('entitlements', () => {
  it('run to the period end plus 24 h; through the grace while past_due; to a scheduled cancel exactly', () => {
    expect(iso(validUntil(active(), DEFAULT_RETRY_SCHEDULE))).toBe('2027-02-16T00:00:00.000Z');
    const next = { start: d('2027-02-15T00:00:00Z'), end: d('2027-03-15T00:00:00Z') };
    const pd = applyEvent(active(), {
      type: 'renewed',
      at: d('2027-02-15T00:10:00Z'),
      paid: false,
      period: next,
    });
    // Last retry 7 days after the failure at 00:10, plus the margin.
    expect(iso(validUntil(pd, DEFAULT_RETRY_SCHEDULE))).toBe('2027-02-23T00:10:00.000Z');
    const c = applyEvent(active(), {
      type: 'cancel',
      at: d('2027-02-01T00:00:00Z'),
      timing: 'end_of_term',
      refund: 'none',
    });
    expect(iso(validUntil(c, DEFAULT_RETRY_SCHEDULE))).toBe('2027-02-15T00:00:00.000Z');
    const t = newSubscription({ createdAt: d('2027-01-01T00:00:00Z'), trialEnd: d('2027-01-15T00:00:00Z') });
    expect(iso(validUntil(t, DEFAULT_RETRY_SCHEDULE))).toBe('2027-01-16T00:00:00.000Z');
  });

  it('seats: the owner plus up to seats − 1 members', () => {
    const duo = { seats: 2, ownerExternalId: 'u1', externalId: 'u2' };
    expect(() => checkAddMember({ ...duo, members: [] })).not.toThrow();
    expect(() => checkAddMember({ ...duo, members: ['u3'] })).toThrow(
      /2 seats \(the owner and up to 1 member\)/,
    );
    expect(() => checkAddMember({ ...duo, members: ['u2'] })).toThrow(/already a member/);
    expect(() => checkAddMember({ ...duo, externalId: 'u1', members: [] })).toThrow(/owner/);
  });

  it('refuses a change to a plan with fewer seats than the members need (409 naming the seats)', () => {
    expect(() => checkSeatsForPlanChange({ newSeats: 2, memberCount: 1 })).not.toThrow();
    try {
      checkSeatsForPlanChange({ newSeats: 1, memberCount: 1 });
      expect.unreachable();
    } catch (e) {
      const err = e as DomainError;
      expect([err.code, err.status, err.extra]).toEqual(['invalid_state', 409, { seats: 1, members: 1 }]);
      expect(err.message).toMatch(/1 seat \(the owner and up to 0 members\)/);
    }
  });
});
