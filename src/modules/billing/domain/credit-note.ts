import { assert } from '../../../kernel/assert.js';
import { invalid } from '../../../kernel/errors.js';
import { divRoundHalfUp, prorate } from '../../../kernel/money.js';
import type { Span } from './periods.js';
import { type ProrationUnit, unitsBetween } from './proration.js';

/**
 * A refund of an invoice's payment is a credit note on that invoice (ADR 0014): its amount, the tax
 * part returned in proportion to the invoice's tax, the reason, and where the net comes from:
 * deferred revenue for the unserved part first, then revenue. It does not change access by itself.
 */

export type CreditNoteReason =
  | 'requested_by_customer'
  | 'cancellation'
  | 'duplicate'
  | 'fraudulent'
  | 'product_unsatisfactory';

export interface CreditNoteInput {
  readonly invoice: { readonly totalMinor: number; readonly taxMinor: number };
  /** What the invoice's payment captured (the amount due, after any account credit). */
  readonly paidMinor: number;
  /** The amounts of the invoice's earlier credit notes, summed. */
  readonly refundedBeforeMinor: number;
  readonly amountMinor: number;
  /** The invoice's net revenue not yet recognised at the refund (see recognition.deferredAt). */
  readonly deferredRemainingMinor: number;
  readonly reason: CreditNoteReason;
}

export interface CreditNote {
  readonly amountMinor: number;
  /** The tax part returned: the invoice's tax in proportion of the refunded amount to its total. */
  readonly taxMinor: number;
  /** amount − tax. */
  readonly netMinor: number;
  /** The part of the net taken from deferred revenue (the unserved part). */
  readonly fromDeferredMinor: number;
  /** The rest of the net, taken from recognised revenue. */
  readonly fromRevenueMinor: number;
  readonly reason: CreditNoteReason;
}

/**
 * The credit note of a refund of `amountMinor`. Tax parts are cumulative (the refunded sum's share
 * after this note minus before it), so the notes' tax parts always sum to round(refunded × tax /
 * total): refunding the whole total returns exactly the invoice's tax however it was split.
 */
export function creditNote(input: CreditNoteInput): CreditNote {
  const { invoice, paidMinor, refundedBeforeMinor, amountMinor } = input;
  assert(Number.isSafeInteger(paidMinor) && paidMinor >= 0, 'paid must be ≥ 0');
  assert(paidMinor <= invoice.totalMinor, 'an invoice is never paid more than its total');
  assert(refundedBeforeMinor >= 0 && refundedBeforeMinor <= paidMinor, 'refunded more than paid');
  const refundable = paidMinor - refundedBeforeMinor;
  if (!Number.isSafeInteger(amountMinor) || amountMinor < 1 || amountMinor > refundable) {
    throw invalid('amount', `must be an integer between 1 and ${refundable} (what is left to refund)`);
  }
  const taxShare = (refunded: number): number =>
    Number(divRoundHalfUp(BigInt(refunded) * BigInt(invoice.taxMinor), BigInt(invoice.totalMinor)));
  const taxMinor = taxShare(refundedBeforeMinor + amountMinor) - taxShare(refundedBeforeMinor);
  const netMinor = amountMinor - taxMinor;
  const fromDeferredMinor = Math.min(Math.max(0, netMinor), Math.max(0, input.deferredRemainingMinor));
  return {
    amountMinor,
    taxMinor,
    netMinor,
    fromDeferredMinor,
    fromRevenueMinor: netMinor - fromDeferredMinor,
    reason: input.reason,
  };
}

/**
 * The prorated refund of an immediate cancel (`refund: "prorated"`): the unused part [at, end) of
 * the paid period, in proportion of what was paid for it, never more than is left to refund.
 */
export function proratedRefund(input: {
  readonly paidMinor: number;
  readonly refundedBeforeMinor: number;
  /** The period the payment paid for (as billed: a partial first period is its own span). */
  readonly period: Span;
  readonly at: Date;
  readonly unit: ProrationUnit;
}): number {
  const { period, at, unit } = input;
  const start = period.start.getTime();
  const end = period.end.getTime();
  if (at.getTime() >= end) return 0;
  const from = at.getTime() <= start ? period.start : at;
  const whole = unitsBetween(period.start, period.end, unit);
  const unused =
    whole === 0 ? input.paidMinor : prorate(input.paidMinor, unitsBetween(from, period.end, unit), whole);
  return Math.max(0, Math.min(unused, input.paidMinor - input.refundedBeforeMinor));
}
