import { assert } from '../../../kernel/assert.js';
import { divRoundHalfUp, inclusiveTax } from '../../../kernel/money.js';

/**
 * Monthly recurring revenue (MRR), as Stripe and ChartMogul define it: every paying subscription's
 * recurring price normalised to a month, net of discounts and without tax, summed per currency.
 *
 * - Counted: `active` and `past_due` subscriptions (past_due until dunning cancels them, as Stripe
 *   does); not `trialing` (nothing paid yet), `paused`, `canceled`, `incomplete` or `expired`.
 * - The price is the subscription's current recurring price (what its next renewal bills), net of
 *   tax: in a tax-inclusive market the net part of it (price − the tax it contains, that tax
 *   rounded half-up as an invoice rounds it), in a tax-exclusive market the price itself.
 * - Normalised to a month: monthly ×1, yearly ÷12, weekly ×52÷12, daily ×365÷12.
 * - Summed exactly (in twelfths of a minor unit) and rounded half-up once per currency.
 */

export type Period = 'day' | 'week' | 'month' | 'year';

/** A month in twelfths: what one period's price is worth per month, times 12 (exact integers). */
const TWELFTHS_PER_MONTH: Record<Period, bigint> = { month: 12n, year: 1n, week: 52n, day: 365n };

export interface MrrInput {
  currency: string;
  period: Period;
  /** The recurring price one subscriber pays per period, minor units, as the catalog states it. */
  priceMinor: number;
  taxRateBps: number;
  taxInclusive: boolean;
  /** Subscribers paying it. */
  count: number;
}

/** The recurring price without tax: the net part of an inclusive price, an exclusive price as is. */
export function netOf(priceMinor: number, taxRateBps: number, taxInclusive: boolean): number {
  return taxInclusive ? priceMinor - inclusiveTax(priceMinor, taxRateBps) : priceMinor;
}

/** MRR per currency, in minor units, currencies in alphabetical order. */
export function monthlyRecurringRevenue(
  groups: readonly MrrInput[],
): Array<{ currency: string; amount: number }> {
  const twelfths = new Map<string, bigint>();
  for (const g of groups) {
    assert(Number.isSafeInteger(g.priceMinor) && g.priceMinor >= 0, `bad price ${g.priceMinor}`);
    assert(Number.isSafeInteger(g.count) && g.count >= 0, `bad count ${g.count}`);
    const net = BigInt(netOf(g.priceMinor, g.taxRateBps, g.taxInclusive));
    const add = net * BigInt(g.count) * TWELFTHS_PER_MONTH[g.period];
    twelfths.set(g.currency, (twelfths.get(g.currency) ?? 0n) + add);
  }
  return [...twelfths.entries()]
    .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
    .map(([currency, sum]) => {
      const amount = divRoundHalfUp(sum, 12n);
      assert(amount <= BigInt(Number.MAX_SAFE_INTEGER), `MRR in ${currency} beyond 2^53`);
      return { currency, amount: Number(amount) };
    });
}
