import cc from 'currency-codes';

/**
 * ISO 4217 currencies with their minor-unit exponent (JPY 0, USD 2, KWD 3), from the
 * `currency-codes` package (its data is the ISO 4217 list one). Funds, precious metals and test
 * codes are not money a customer pays with, so they are refused.
 */
const NOT_TENDER = new Set([
  'XAU',
  'XAG',
  'XPT',
  'XPD',
  'XBA',
  'XBB',
  'XBC',
  'XBD',
  'XDR',
  'XSU',
  'XUA',
  'XTS',
  'XXX',
  'BOV',
  'CHE',
  'CHW',
  'CLF',
  'COU',
  'MXV',
  'USN',
  'UYI',
  'UYW',
]);

const EXPONENTS: ReadonlyMap<string, number> = new Map(
  cc.data.filter((c) => !NOT_TENDER.has(c.code)).map((c) => [c.code, c.digits] as const),
);

export function isCurrency(code: string): boolean {
  return EXPONENTS.has(code);
}

/** Number of decimal places of the currency's minor unit. Throws for an unknown code. */
export function minorUnitExponent(code: string): number {
  const exponent = EXPONENTS.get(code);
  if (exponent === undefined) throw new RangeError(`unknown currency ${code}`);
  return exponent;
}
