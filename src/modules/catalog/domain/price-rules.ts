import { isCurrency, minorUnitExponent } from '../../../kernel/currency.js';
import type { FieldError } from '../../../kernel/errors.js';
import { amountMinorMax } from '../../../kernel/money.js';

export interface PriceInput {
  currency: string;
  amount: number;
  market?: string | undefined;
}

export interface MarketRef {
  id: string;
  code: string;
  currency: string;
}

/**
 * Checks a list of prices and names every bad field: unknown currency, negative or fractional
 * minor units, more than `amountMinorMax` of the currency, a market price in another currency than the market's, duplicates.
 * `findMarket` resolves a market code or id (undefined when there is none).
 */
export function checkPrices(
  prices: readonly PriceInput[],
  findMarket: (ref: string) => MarketRef | undefined,
  path = 'prices',
): FieldError[] {
  const errors: FieldError[] = [];
  const seen = new Set<string>();
  if (prices.length === 0) errors.push({ path, message: 'at least one price is required' });
  prices.forEach((price, i) => {
    const at = `${path}[${i}]`;
    const currencyOk = isCurrency(price.currency);
    if (!currencyOk)
      errors.push({ path: `${at}.currency`, message: `'${price.currency}' is not an ISO 4217 currency` });
    if (!Number.isFinite(price.amount) || price.amount < 0) {
      errors.push({ path: `${at}.amount`, message: 'must be zero or a positive number of minor units' });
    } else if (!Number.isInteger(price.amount)) {
      const unit = currencyOk ? minorUnitExponent(price.currency) : undefined;
      errors.push({
        path: `${at}.amount`,
        message:
          unit === undefined
            ? 'must be an integer in minor units'
            : `must be an integer in minor units of ${price.currency} (${unit} decimal places); ${price.amount} is finer than that`,
      });
    } else if (currencyOk && price.amount > amountMinorMax(price.currency)) {
      // A price is charged as one payment: the same per-currency bound as payments and postings.
      errors.push({
        path: `${at}.amount`,
        message: `must be at most ${amountMinorMax(price.currency)} minor units of ${price.currency}`,
      });
    }
    let marketId = '';
    if (price.market !== undefined) {
      const market = findMarket(price.market);
      if (!market) {
        errors.push({ path: `${at}.market`, message: `unknown market '${price.market}'` });
        return;
      } else {
        marketId = market.id;
        if (currencyOk && market.currency !== price.currency) {
          errors.push({
            path: `${at}.currency`,
            message: `market ${market.code} bills in ${market.currency}, not ${price.currency}`,
          });
        }
      }
    }
    const key = `${price.currency}|${marketId}`;
    if (seen.has(key)) {
      errors.push({
        path: at,
        message: `duplicate price for ${price.currency}${price.market ? ` in market ${price.market}` : ''}`,
      });
    }
    seen.add(key);
  });
  return errors;
}
