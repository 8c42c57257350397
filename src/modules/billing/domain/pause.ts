import { assert } from '../../../kernel/assert.js';
import type { ChargeLine } from './invoice.js';
import { type BillingSchedule, type Period, periodAt } from './periods.js';
import { type ProrationUnit, periodAmount, unusedAmount } from './proration.js';

/**
 * Pause and resume (ADR 0014). Pausing at p gives back the unused part [p, e) of the current
 * period as a `proration_credit` line; on an invoice of its own its negative total becomes account
 * credit, tax included (invoice.assembleInvoice). Resuming at r starts a period [r, next boundary)
 * of the same grid (anchor and D unchanged), billed prorated as a `recurring` line on an invoice
 * that applies the account credit first.
 */

const isoDate = (d: Date): string => d.toISOString().slice(0, 10);

export interface PauseCredit {
  /** The period the pause interrupts. */
  readonly period: Period;
  /** `proration_credit` for [p, e): −price × (e − p)/(e − s). */
  readonly line: ChargeLine;
}

export function pauseCredit(input: {
  readonly schedule: BillingSchedule;
  readonly plan: { readonly name: string; readonly priceMinor: number };
  readonly at: Date;
  readonly unit: ProrationUnit;
}): PauseCredit {
  const period = periodAt(input.schedule, input.at);
  const amount = unusedAmount(input.plan.priceMinor, period, input.at, input.unit);
  return {
    period,
    line: {
      kind: 'proration_credit',
      description: `Unused time on ${input.plan.name} from ${isoDate(input.at)} (paused)`,
      periodStart: input.at,
      periodEnd: period.end,
      amountMinor: amount === 0 ? 0 : -amount,
    },
  };
}

export interface ResumeCharge {
  /** [r, next boundary), aligned to the grid period that contains r. */
  readonly period: Period;
  /** `recurring`: price × (e − r)/(e − s) for [r, e). */
  readonly line: ChargeLine;
}

export function resumeCharge(input: {
  readonly schedule: BillingSchedule;
  readonly plan: { readonly name: string; readonly priceMinor: number };
  readonly pausedAt: Date;
  readonly at: Date;
  readonly unit: ProrationUnit;
}): ResumeCharge {
  assert(input.at.getTime() >= input.pausedAt.getTime(), 'a resume follows its pause');
  const grid = periodAt(input.schedule, input.at);
  const period: Period = { ...grid, start: input.at };
  return {
    period,
    line: {
      kind: 'recurring',
      description: `${input.plan.name} ${isoDate(input.at)} – ${isoDate(period.end)} (resumed)`,
      periodStart: input.at,
      periodEnd: period.end,
      amountMinor: periodAmount(input.plan.priceMinor, period, input.unit),
    },
  };
}
