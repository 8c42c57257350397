import { applyBasisPoints, inclusiveTax } from '../../../kernel/money.js';

/**
 * Tax of a one-off payment, priced like a catalog price of the customer's market (BILLING.md
 * § Tax): tax-inclusive markets charge `amount` and find the tax in it, `amount × r / (1 + r)`;
 * tax-exclusive markets add `amount × r` on top. Half-up on the minor unit.
 */
export function taxOfOneOff(
  amountMinor: number,
  market: { taxRateBps: number; taxInclusive: boolean },
): { chargedMinor: number; taxMinor: number; subtotalMinor: number } {
  if (market.taxInclusive) {
    const taxMinor = inclusiveTax(amountMinor, market.taxRateBps);
    return { chargedMinor: amountMinor, taxMinor, subtotalMinor: amountMinor - taxMinor };
  }
  const taxMinor = applyBasisPoints(amountMinor, market.taxRateBps);
  return { chargedMinor: amountMinor + taxMinor, taxMinor, subtotalMinor: amountMinor };
}
