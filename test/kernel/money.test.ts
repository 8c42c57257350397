import { describe, expect, it } from 'vitest';
import { isCurrency, minorUnitExponent } from '../../src/kernel/currency.js';
import {
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
  it('adds 8.875 % on top of 11.99: 1.064 → 1.06', () => {
    expect(applyBasisPoints(1199, 888)).toBe(106);
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
