import type { PaymentStatus } from '../tables.js';

/**
 * The payment state machine, as a function of facts that only ever grow (captured, refunded
 * amount, dispute outcome): applying provider news in any order, any number of times, lands on
 * the same state.
 *   processing → succeeded | failed | authorized;  authorized → succeeded | voided;
 *   succeeded → partially_refunded → refunded;     succeeded → disputed → dispute_won | dispute_lost
 */
export interface PaymentFactsState {
  base: 'processing' | 'authorized' | 'succeeded' | 'failed' | 'voided';
  amountMinor: number;
  amountRefundedMinor: number;
  dispute: 'open' | 'won' | 'lost' | null;
}

export function deriveStatus(f: PaymentFactsState): PaymentStatus {
  if (f.base !== 'succeeded') return f.base;
  if (f.dispute === 'open') return 'disputed';
  if (f.dispute === 'won') return 'dispute_won';
  if (f.dispute === 'lost') return 'dispute_lost';
  if (f.amountRefundedMinor >= f.amountMinor) return 'refunded';
  if (f.amountRefundedMinor > 0) return 'partially_refunded';
  return 'succeeded';
}

/** The base status behind a stored status. */
export function baseOf(status: PaymentStatus, captured: boolean): PaymentFactsState['base'] {
  if (captured) return 'succeeded';
  if (status === 'processing' || status === 'authorized' || status === 'failed' || status === 'voided')
    return status;
  return 'succeeded';
}
