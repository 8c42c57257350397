import { assert } from './assert.js';
import { minorUnitExponent } from './currency.js';

/** An amount in the minor unit of its currency (cents for USD, yen for JPY, fils for KWD). */
export interface Money {
  readonly amountMinor: number;
  readonly currency: string;
}

/** Largest intermediate value arithmetic may reach: fits a JS number exactly and a PostgreSQL bigint. */
export const AMOUNT_MINOR_MAX = Number.MAX_SAFE_INTEGER;

/**
 * Largest amount one price, payment or ledger posting may carry, per currency. Stripe caps
 * amounts at 8 digits of minor units (99,999,999: $999,999.99, ¥99,999,999); currencies whose
 * unit is worth very little get 12 digits, as Stripe allows for them. The bound keeps every sum a
 * read can make (balances, trial balances over tens of millions of postings) an exact integer.
 */
export const PAYMENT_AMOUNT_MINOR_MAX_DEFAULT = 99_999_999;
/** The largest bound of any currency: what an API schema can state before the per-currency check. */
export const PAYMENT_AMOUNT_MINOR_MAX_HIGH_DENOMINATION = 999_999_999_999;
const HIGH_DENOMINATION = new Set([
  'COP',
  'GNF',
  'IDR',
  'IRR',
  'KHR',
  'LAK',
  'LBP',
  'MMK',
  'MNT',
  'PYG',
  'SLE',
  'SLL',
  'TZS',
  'UGX',
  'UZS',
  'VND',
]);

/** The largest amount in minor units a single price, payment or posting may have in `currency`. */
export function amountMinorMax(currency: string): number {
  return HIGH_DENOMINATION.has(currency)
    ? PAYMENT_AMOUNT_MINOR_MAX_HIGH_DENOMINATION
    : PAYMENT_AMOUNT_MINOR_MAX_DEFAULT;
}

/** Why `amountMinor` is not an acceptable amount in `currency` (positive unless `allowZero`), or null. */
export function amountProblem(amountMinor: number, currency: string, allowZero = false): string | null {
  const max = amountMinorMax(currency);
  const min = allowZero ? 0 : 1;
  if (!Number.isSafeInteger(amountMinor) || amountMinor < min || amountMinor > max) {
    return `must be an integer in minor units between ${min} and ${max} for ${currency}`;
  }
  return null;
}

export function money(amountMinor: number, currency: string): Money {
  assert(Number.isSafeInteger(amountMinor), `amount must be a safe integer, got ${amountMinor}`);
  minorUnitExponent(currency);
  return Object.freeze({ amountMinor, currency });
}

/**
 * Divides `numerator / denominator` and rounds half away from zero ("half-up" in billing usage),
 * exactly, with bigint arithmetic: no float ever touches money.
 */
export function divRoundHalfUp(numerator: bigint, denominator: bigint): bigint {
  assert(denominator !== 0n, 'division by zero');
  const negative = numerator < 0n !== denominator < 0n;
  const n = numerator < 0n ? -numerator : numerator;
  const d = denominator < 0n ? -denominator : denominator;
  const q = n / d;
  const r = n % d;
  const rounded = r * 2n >= d ? q + 1n : q;
  return negative ? -rounded : rounded;
}

/** `amountMinor × numerator / denominator`, rounded half-up to the minor unit. */
export function prorate(
  amountMinor: number,
  numerator: bigint | number,
  denominator: bigint | number,
): number {
  const result = divRoundHalfUp(BigInt(amountMinor) * BigInt(numerator), BigInt(denominator));
  assert(result <= BigInt(AMOUNT_MINOR_MAX) && result >= -BigInt(AMOUNT_MINOR_MAX), 'amount overflow');
  return Number(result);
}

/** `amountMinor × bps / 10000`, half-up: tax added on top of a tax-exclusive subtotal. */
export function applyBasisPoints(amountMinor: number, bps: number): number {
  return prorate(amountMinor, bps, 10_000);
}

/** Tax contained in a tax-inclusive total at rate r = bps/10000: total × r / (1 + r), half-up. */
export function inclusiveTax(totalMinor: number, bps: number): number {
  return prorate(totalMinor, bps, 10_000 + bps);
}

/**
 * Parses a decimal string in major units ("11.99") into minor units, refusing precision finer than
 * the currency allows. Used by the CLI and seed files, never by the API (which takes minor units).
 */
export function parseMajor(value: string, currency: string): number {
  const exponent = minorUnitExponent(currency);
  const match = /^(-?)(\d+)(?:\.(\d+))?$/.exec(value.trim());
  if (!match) throw new RangeError(`'${value}' is not a decimal amount`);
  const [, sign, whole, fraction = ''] = match;
  if (fraction.length > exponent) {
    throw new RangeError(`${currency} has ${exponent} decimal places; '${value}' has ${fraction.length}`);
  }
  const minor = BigInt(whole + fraction.padEnd(exponent, '0')) * (sign === '-' ? -1n : 1n);
  assert(minor <= BigInt(AMOUNT_MINOR_MAX), 'amount overflow');
  return Number(minor);
}

/** Formats minor units as a decimal string in major units: (1199, USD) → "11.99". */
export function formatMajor(amountMinor: number, currency: string): string {
  const exponent = minorUnitExponent(currency);
  const negative = amountMinor < 0;
  const digits = String(Math.abs(amountMinor)).padStart(exponent + 1, '0');
  const whole = exponent === 0 ? digits : digits.slice(0, -exponent);
  const fraction = exponent === 0 ? '' : `.${digits.slice(-exponent)}`;
  return `${negative ? '-' : ''}${whole}${fraction}`;
}
