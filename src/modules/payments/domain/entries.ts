import { prorate } from '../../../kernel/money.js';
import type { TransactionSpec } from '../../ledger/domain/transaction.js';

/**
 * The ledger transactions of a payment's life, as pure functions. Each idempotency key is derived
 * from its cause, so the synchronous path, a webhook and a reconciliation job that all learn of
 * the same fact post it once.
 */
interface PaymentFacts {
  id: string;
  provider: string;
  currency: string;
  amountMinor: number;
  taxMinor: number;
}

const clearing = (p: PaymentFacts) => ({
  type: 'provider_clearing' as const,
  owner: p.provider,
  currency: p.currency,
});
const nonZero = (spec: TransactionSpec): TransactionSpec => ({
  ...spec,
  postings: spec.postings.filter((x) => (x.debit ?? x.credit ?? 0) !== 0),
});

/** Captured: cash at the provider; revenue net of the tax it contains; tax owed. */
export function captureEntry(p: PaymentFacts, at: Date): TransactionSpec {
  return nonZero({
    idempotencyKey: `payment:${p.id}:captured`,
    reference: p.id,
    description: 'payment captured',
    effectiveAt: at,
    postings: [
      { account: clearing(p), debit: p.amountMinor },
      { account: { type: 'revenue', currency: p.currency }, credit: p.amountMinor - p.taxMinor },
      { account: { type: 'tax_payable', currency: p.currency }, credit: p.taxMinor },
    ],
  });
}

export function feeEntry(p: PaymentFacts, feeMinor: number, at: Date): TransactionSpec | null {
  if (feeMinor <= 0) return null;
  return {
    idempotencyKey: `payment:${p.id}:fee`,
    reference: p.id,
    description: 'provider fee',
    effectiveAt: at,
    postings: [
      { account: { type: 'provider_fees', owner: p.provider, currency: p.currency }, debit: feeMinor },
      { account: clearing(p), credit: feeMinor },
    ],
  };
}

/**
 * The tax part of a refund: proportional to the refund, and on the refund that completes the
 * payment exactly what is left, so the tax refunded never drifts from the tax collected.
 */
export function refundTaxPart(
  p: PaymentFacts,
  refundedBefore: number,
  taxRefundedBefore: number,
  amountMinor: number,
): number {
  if (refundedBefore + amountMinor >= p.amountMinor) return p.taxMinor - taxRefundedBefore;
  return Math.min(prorate(p.taxMinor, amountMinor, p.amountMinor), p.taxMinor - taxRefundedBefore);
}

export function refundEntry(
  p: PaymentFacts,
  refundId: string,
  amountMinor: number,
  taxPart: number,
  at: Date,
): TransactionSpec {
  // Filed under the refund (`?reference=re_…` finds it); the description names the payment.
  return nonZero({
    idempotencyKey: `refund:${refundId}:succeeded`,
    reference: refundId,
    description: `refund ${refundId} of payment ${p.id}`,
    effectiveAt: at,
    postings: [
      { account: { type: 'refunds', currency: p.currency }, debit: amountMinor - taxPart },
      { account: { type: 'tax_payable', currency: p.currency }, debit: taxPart },
      { account: clearing(p), credit: amountMinor },
    ],
  });
}

/** A dispute opened: the provider withholds the amount and charges its fee. */
export function disputeOpenedEntry(
  p: PaymentFacts,
  disputeId: string,
  amountMinor: number,
  feeMinor: number,
  at: Date,
): TransactionSpec {
  return nonZero({
    idempotencyKey: `dispute:${disputeId}:opened`,
    reference: p.id,
    description: `dispute ${disputeId} opened (chargeback)`,
    effectiveAt: at,
    postings: [
      { account: { type: 'disputed_funds', owner: p.provider, currency: p.currency }, debit: amountMinor },
      { account: { type: 'provider_fees', owner: p.provider, currency: p.currency }, debit: feeMinor },
      { account: clearing(p), credit: amountMinor + feeMinor },
    ],
  });
}

/** Won: the withheld amount comes back. Lost: it is gone, written off. */
export function disputeClosedEntry(
  p: PaymentFacts,
  disputeId: string,
  outcome: 'won' | 'lost',
  amountMinor: number,
  at: Date,
): TransactionSpec | null {
  if (amountMinor <= 0) return null;
  return {
    idempotencyKey: `dispute:${disputeId}:${outcome}`,
    reference: p.id,
    description: `dispute ${disputeId} ${outcome}`,
    effectiveAt: at,
    postings: [
      outcome === 'won'
        ? { account: clearing(p), debit: amountMinor }
        : { account: { type: 'bad_debt', currency: p.currency }, debit: amountMinor },
      { account: { type: 'disputed_funds', owner: p.provider, currency: p.currency }, credit: amountMinor },
    ],
  };
}
