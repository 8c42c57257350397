import { describe, expect, it } from 'vitest';
import { isCurrency, minorUnitExponent } from '../../src/kernel/currency.js';
import {
  AMOUNT_MINOR_MAX,
  amountMinorMax,
  amountProblem,
  applyBasisPoints,
  divRoundHalfUp,
  formatMajor,
  inclusiveTax,
  money,
  parseMajor,
  prorate,
} from '../../src/kernel/money.js';

describe('ISO 4217 exponents', () => {
  it.each([
    ['USD', 2],
    ['SEK', 2],
    ['EUR', 2],
    ['JPY', 0],
    ['KRW', 0],
    ['KWD', 3],
    ['BHD', 3],
    ['INR', 2],
  ])('%s has %i decimal places', (code, exponent) => {
    expect(minorUnitExponent(code)).toBe(exponent);
  });

  it('refuses unknown codes, funds and test currencies', () => {
    expect(isCurrency('ABC')).toBe(false);
    expect(isCurrency('XXX')).toBe(false);
    expect(isCurrency('XTS')).toBe(false);
    expect(isCurrency('XAU')).toBe(false);
    expect(isCurrency('usd')).toBe(false);
    expect(() => minorUnitExponent('ABC')).toThrow(RangeError);
  });
});

describe('divRoundHalfUp', () => {
  it.each([
    [5n, 2n, 3n],
    [-5n, 2n, -3n],
    [4n, 2n, 2n],
    [7n, 3n, 2n],
    [8n, 3n, 3n],
    [-7n, 3n, -2n],
    [-8n, 3n, -3n],
    [1n, 3n, 0n],
    [3n, -2n, -2n],
    [0n, 7n, 0n],
  ])('%i / %i = %i (half away from zero)', (n, d, expected) => {
    expect(divRoundHalfUp(n, d)).toBe(expected);
  });

  it('is exact beyond float precision', () => {
    // 2^60 + 1 is not representable as a double; bigint keeps it.
    expect(divRoundHalfUp(2n ** 60n * 2n + 2n, 2n)).toBe(2n ** 60n + 1n);
  });

  it('refuses division by zero', () => {
    expect(() => divRoundHalfUp(1n, 0n)).toThrow();
  });
});

describe('proration and tax helpers', () => {
  it('prorates 11.99 over 10 of 31 days to 3.87 (386.77 rounds up)', () => {
    expect(prorate(1199, 10, 31)).toBe(387);
  });
  it('prorates a credit negatively, rounding away from zero', () => {
    expect(prorate(-1199, 10, 31)).toBe(-387);
  });
  it('rounds a half cent up: 1 × 1/2 = 1', () => {
    expect(prorate(1, 1, 2)).toBe(1);
  });
  // Rates are whole basis points: 8.875 % cannot be expressed, 8.88 % (888 bps) is what this tests.
  it('adds 8.88 % (888 bps) on top of 11.99: 1.0647 → 1.06', () => {
    expect(applyBasisPoints(1199, 888)).toBe(106);
  });
  it('adds 8.89 % (889 bps) on top of 11.99: 1.0659 → 1.07 (half-up, not truncated)', () => {
    expect(applyBasisPoints(1199, 889)).toBe(107);
  });
  it('extracts 25 % VAT included in 139.00 SEK: 27.80', () => {
    expect(inclusiveTax(13900, 2500)).toBe(2780);
  });
  it('extracts 19 % VAT included in 10.99 EUR: 1.75 (175.47)', () => {
    expect(inclusiveTax(1099, 1900)).toBe(175);
  });
  it('extracts 10 % consumption tax included in ¥980: ¥89 (89.09)', () => {
    expect(inclusiveTax(980, 1000)).toBe(89);
  });
});

describe('major-unit parsing and formatting', () => {
  it('parses by the currency exponent', () => {
    expect(parseMajor('11.99', 'USD')).toBe(1199);
    expect(parseMajor('11.9', 'USD')).toBe(1190);
    expect(parseMajor('980', 'JPY')).toBe(980);
    expect(parseMajor('1.234', 'KWD')).toBe(1234);
    expect(parseMajor('-0.01', 'EUR')).toBe(-1);
  });
  it('refuses precision finer than the minor unit', () => {
    expect(() => parseMajor('980.5', 'JPY')).toThrow(/0 decimal places/);
    expect(() => parseMajor('1.999', 'USD')).toThrow(/2 decimal places/);
    expect(() => parseMajor('1e3', 'USD')).toThrow();
  });
  it('formats minor units', () => {
    expect(formatMajor(1199, 'USD')).toBe('11.99');
    expect(formatMajor(5, 'USD')).toBe('0.05');
    expect(formatMajor(-5, 'USD')).toBe('-0.05');
    expect(formatMajor(980, 'JPY')).toBe('980');
    expect(formatMajor(1234, 'KWD')).toBe('1.234');
  });
  it('money() refuses non-integers and unknown currencies', () => {
    expect(() => money(1.5, 'USD')).toThrow();
    expect(() => money(1, 'ZZZ')).toThrow();
    expect(money(0, 'JPY')).toEqual({ amountMinor: 0, currency: 'JPY' });
  });
});

describe('amount bound per currency', () => {
  it('allows 8 digits of minor units by default', () => {
    expect(amountMinorMax('USD')).toBe(99_999_999);
    expect(amountMinorMax('EUR')).toBe(99_999_999);
    expect(amountMinorMax('JPY')).toBe(99_999_999);
    expect(amountMinorMax('KWD')).toBe(99_999_999);
  });
  it('allows 12 digits for currencies whose unit is worth very little', () => {
    expect(amountMinorMax('IDR')).toBe(999_999_999_999);
    expect(amountMinorMax('VND')).toBe(999_999_999_999);
  });
  it('keeps a sum of ten million maximal amounts exact in a JS number', () => {
    // The reads sum amounts; with the bound, 10^7 maximal USD postings are still below 2^53.
    expect(amountMinorMax('USD') * 10_000_000).toBeLessThan(AMOUNT_MINOR_MAX);
  });
  it('accepts amounts up to the bound and names the range otherwise', () => {
    expect(amountProblem(1, 'USD')).toBeNull();
    expect(amountProblem(99_999_999, 'USD')).toBeNull();
    expect(amountProblem(100_000_000, 'USD')).toBe(
      'must be an integer in minor units between 1 and 99999999 for USD',
    );
    expect(amountProblem(999_999_999_999, 'IDR')).toBeNull();
    expect(amountProblem(1_000_000_000_000, 'IDR')).toMatch(/between 1 and 999999999999 for IDR/);
    expect(amountProblem(Number.MAX_SAFE_INTEGER, 'USD')).not.toBeNull();
  });
  it('refuses zero unless allowed, negatives, fractions and non-numbers', () => {
    expect(amountProblem(0, 'USD')).toMatch(/between 1 and/);
    expect(amountProblem(0, 'USD', true)).toBeNull();
    expect(amountProblem(-1, 'USD', true)).toMatch(/between 0 and 99999999/);
    expect(amountProblem(1.5, 'USD')).not.toBeNull();
    expect(amountProblem(Number.NaN, 'USD')).not.toBeNull();
    expect(amountProblem(Number.POSITIVE_INFINITY, 'USD')).not.toBeNull();
  });
});
