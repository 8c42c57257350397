import { describe, expect, it } from 'vitest';
import { DomainError } from '../../src/kernel/errors.js';
import { newSubscription, type SubscriptionState } from '../../src/modules/billing/domain/lifecycle.js';
import type { BillingSchedule } from '../../src/modules/billing/domain/periods.js';
import {
  changeBillingCycleDay,
  type PlanChangeInput,
  periodFrom,
  planChange,
} from '../../src/modules/billing/domain/plan-change.js';

const d = (iso: string): Date => new Date(iso);
const iso = (date: Date): string => date.toISOString();

const schedule: BillingSchedule = {
  anchor: d('2027-01-15T00:00:00Z'),
  period: 'month',
  billingCycleDay: null,
};
const active: SubscriptionState = {
  ...newSubscription({ createdAt: d('2027-01-15T00:00:00Z'), trialEnd: null }),
  status: 'active',
  currentPeriodStart: d('2027-02-15T00:00:00Z'),
  currentPeriodEnd: d('2027-03-15T00:00:00Z'),
};
const basic = { planId: 'plan_basic', name: 'Basic', billingPeriod: 'month' as const, priceMinor: 10900 };
const target = (over: Partial<PlanChangeInput['target']> = {}): PlanChangeInput['target'] => ({
  planId: 'plan_premium',
  name: 'Premium',
  billingPeriod: 'month',
  priceMinor: 16900,
  priceVersionId: 'pver_1',
  productId: 'prod_music',
  seats: 1,
  changeTiming: null,
  ...over,
});
const input = (over: Partial<PlanChangeInput> = {}): PlanChangeInput => ({
  at: d('2027-03-05T12:00:00Z'),
  state: active,
  schedule,
  current: basic,
  target: target(),
  pending: null,
  memberCount: 0,
  unit: 'day',
  ...over,
});
const refusal = (f: () => unknown): DomainError => {
  try {
    f();
  } catch (e) {
    if (e instanceof DomainError) return e;
    throw e;
  }
  throw new Error('not refused');
};

describe('planChange', () => {
  it('an upgrade is immediate: credit −3893 for [c, Mar 15), charge 6036, next renewal Mar 15', () => {
    const p = planChange(input());
    expect(p.kind).toBe('immediate');
    if (p.kind !== 'immediate') return;
    expect(p.lines.map((l) => [l.kind, l.amountMinor, iso(l.periodStart), iso(l.periodEnd)])).toEqual([
      ['proration_credit', -3893, '2027-03-05T12:00:00.000Z', '2027-03-15T00:00:00.000Z'],
      ['proration_charge', 6036, '2027-03-05T12:00:00.000Z', '2027-03-15T00:00:00.000Z'],
    ]);
    expect([iso(p.period.start), iso(p.period.end), iso(p.nextRenewal)]).toEqual([
      '2027-02-15T00:00:00.000Z',
      '2027-03-15T00:00:00.000Z',
      '2027-03-15T00:00:00.000Z',
    ]);
  });

  it('a downgrade waits for the term end and shows the renewal it bills then', () => {
    const p = planChange(
      input({
        target: target({ priceMinor: 7900 }),
        targetPriceAtTermEnd: { priceMinor: 7900, priceVersionId: 'pver_1' },
      }),
    );
    expect(p.kind).toBe('end_of_term');
    if (p.kind !== 'end_of_term') return;
    expect(iso(p.effectiveAt)).toBe('2027-03-15T00:00:00.000Z');
    expect(p.renewalLines?.map((l) => [l.kind, l.amountMinor, iso(l.periodStart), iso(l.periodEnd)])).toEqual(
      [['recurring', 7900, '2027-03-15T00:00:00.000Z', '2027-04-15T00:00:00.000Z']],
    );
  });

  it('during a trial: free and immediate whatever the request says; the trial end is the next renewal', () => {
    const trialing = newSubscription({
      createdAt: d('2027-01-15T00:00:00Z'),
      trialEnd: d('2027-01-29T00:00:00Z'),
    });
    const p = planChange(
      input({
        at: d('2027-01-20T00:00:00Z'),
        state: trialing,
        schedule: { ...schedule, anchor: d('2027-01-29T00:00:00Z') },
        requested: 'end_of_term',
      }),
    );
    expect([p.kind, p.timing, iso(p.nextRenewal)]).toEqual([
      'trial',
      'immediate',
      '2027-01-29T00:00:00.000Z',
    ]);
  });

  it('the current plan: 400 naming plan, unless a change is pending (then it is dropped)', () => {
    const same = refusal(() => planChange(input({ target: target({ planId: basic.planId }) })));
    expect([same.code, same.errors[0]?.path]).toEqual(['validation_failed', 'plan']);
    const back = planChange(
      input({
        target: target({ planId: basic.planId }),
        pending: { planId: 'plan_lite', at: d('2027-03-15T00:00:00Z') },
      }),
    );
    expect(back.kind).toBe('revert');
  });

  it('refuses past_due, a scheduled cancel, a period already over, and too few seats', () => {
    expect(refusal(() => planChange(input({ state: { ...active, status: 'past_due' } }))).code).toBe(
      'invalid_state',
    );
    expect(
      refusal(() => planChange(input({ state: { ...active, cancelAt: d('2027-03-15T00:00:00Z') } }))).code,
    ).toBe('invalid_state');
    expect(refusal(() => planChange(input({ at: d('2027-03-15T00:00:00Z') }))).code).toBe('invalid_state');
    const seats = refusal(() => planChange(input({ memberCount: 1 })));
    expect([seats.code, seats.extra]).toEqual(['invalid_state', { seats: 1, members: 1 }]);
  });
});

describe('periods after a change', () => {
  it('an end-of-term move to a yearly grid keeps the anchor: [Mar 15, Jan 15) prorated against the aligned year', () => {
    const p = periodFrom({ ...schedule, period: 'year' }, d('2027-03-15T00:00:00Z'));
    expect([iso(p.start), iso(p.end), iso(p.aligned.start), iso(p.aligned.end)]).toEqual([
      '2027-03-15T00:00:00.000Z',
      '2028-01-15T00:00:00.000Z',
      '2027-01-15T00:00:00.000Z',
      '2028-01-15T00:00:00.000Z',
    ]);
    // On an unchanged grid the period end is a boundary: a full period.
    const full = periodFrom(schedule, d('2027-03-15T00:00:00Z'));
    expect([iso(full.start), iso(full.end)]).toEqual([
      '2027-03-15T00:00:00.000Z',
      '2027-04-15T00:00:00.000Z',
    ]);
  });

  it('leaving weeks takes the customer billing day; other changes keep the stored one', () => {
    expect(changeBillingCycleDay({ period: 'week', billingCycleDay: null }, 1)).toBe(1);
    expect(changeBillingCycleDay({ period: 'month', billingCycleDay: 15 }, 1)).toBe(15);
    expect(changeBillingCycleDay({ period: 'month', billingCycleDay: null }, 1)).toBe(null);
  });
});
