import { describe, expect, it } from 'vitest';
import {
  type PriceVersion,
  resolvePrice,
  versionInForce,
} from '../../src/modules/catalog/domain/price-resolution.js';
import { checkPrices } from '../../src/modules/catalog/domain/price-rules.js';

const SE = { id: 'mkt_SE', currency: 'SEK' };
const DE = { id: 'mkt_DE', currency: 'EUR' };
const FR = { id: 'mkt_FR', currency: 'EUR' };
const US = { id: 'mkt_US', currency: 'USD' };

const d = (iso: string) => new Date(iso);

// v1 forever; v2 for new subscribers from March, existing ones from June; v3 from September for all.
const versions: PriceVersion[] = [
  {
    id: 'v1',
    version: 1,
    effectiveAt: null,
    existingSubscribersFrom: null,
    prices: [
      { currency: 'SEK', marketId: null, amountMinor: 11900 },
      { currency: 'EUR', marketId: null, amountMinor: 999 },
      { currency: 'EUR', marketId: 'mkt_FR', amountMinor: 1049 },
    ],
  },
  {
    id: 'v2',
    version: 2,
    effectiveAt: d('2026-03-01T00:00:00Z'),
    existingSubscribersFrom: d('2026-06-01T00:00:00Z'),
    prices: [
      { currency: 'SEK', marketId: null, amountMinor: 12900 },
      { currency: 'EUR', marketId: null, amountMinor: 1099 },
    ],
  },
  {
    id: 'v3',
    version: 3,
    effectiveAt: d('2026-09-01T00:00:00Z'),
    existingSubscribersFrom: null,
    prices: [{ currency: 'SEK', marketId: null, amountMinor: 13900 }],
  },
];

describe('the price of plan P for customer C at time t', () => {
  it('new subscribers pay the latest version in force at t', () => {
    const at = (iso: string) => resolvePrice(versions, { market: SE, at: d(iso) });
    expect(at('2026-01-15T00:00:00Z')).toMatchObject({ ok: true, value: { amountMinor: 11900, version: 1 } });
    expect(at('2026-02-28T23:59:59Z')).toMatchObject({ ok: true, value: { amountMinor: 11900, version: 1 } });
    expect(at('2026-03-01T00:00:00Z')).toMatchObject({ ok: true, value: { amountMinor: 12900, version: 2 } });
    expect(at('2026-09-01T00:00:00Z')).toMatchObject({ ok: true, value: { amountMinor: 13900, version: 3 } });
  });

  it('existing subscribers keep their price until existingSubscribersFrom (grandfathering)', () => {
    const joined = d('2026-01-10T00:00:00Z');
    const period = (iso: string) => resolvePrice(versions, { market: SE, at: d(iso), subscribedAt: joined });
    expect(period('2026-04-10T00:00:00Z')).toMatchObject({ ok: true, value: { amountMinor: 11900 } });
    expect(period('2026-05-10T00:00:00Z')).toMatchObject({ ok: true, value: { amountMinor: 11900 } });
    // First period starting on or after June 1st moves to v2.
    expect(period('2026-06-10T00:00:00Z')).toMatchObject({
      ok: true,
      value: { amountMinor: 12900, version: 2 },
    });
    // v3 has no separate date for existing subscribers: it reaches them from its effectiveAt.
    expect(period('2026-09-10T00:00:00Z')).toMatchObject({
      ok: true,
      value: { amountMinor: 13900, version: 3 },
    });
  });

  it('a subscriber who joined on v2 stays on v2 before June, never falling back to v1', () => {
    const joined = d('2026-03-15T00:00:00Z');
    const v = versionInForce(versions, { market: SE, at: d('2026-04-15T00:00:00Z'), subscribedAt: joined });
    expect(v?.id).toBe('v2');
  });

  it('a market price wins over the currency price', () => {
    const fr = resolvePrice(versions, { market: FR, at: d('2026-01-01T00:00:00Z') });
    const de = resolvePrice(versions, { market: DE, at: d('2026-01-01T00:00:00Z') });
    expect(fr).toMatchObject({ ok: true, value: { amountMinor: 1049, source: 'market' } });
    expect(de).toMatchObject({ ok: true, value: { amountMinor: 999, source: 'currency' } });
  });

  it('a version without the market price falls back to the currency price of that version', () => {
    const fr = resolvePrice(versions, { market: FR, at: d('2026-03-02T00:00:00Z') });
    expect(fr).toMatchObject({ ok: true, value: { amountMinor: 1099, source: 'currency', version: 2 } });
  });

  it('fails with price_not_found when the version has no price in the currency', () => {
    const us = resolvePrice(versions, { market: US, at: d('2026-01-01T00:00:00Z') });
    expect(us).toMatchObject({ ok: false, error: 'price_not_found' });
    // v3 dropped EUR: new German subscribers in September cannot be priced.
    expect(resolvePrice(versions, { market: DE, at: d('2026-09-02T00:00:00Z') })).toMatchObject({
      ok: false,
    });
  });

  it('does not depend on the order versions are given in', () => {
    const reversed = [...versions].reverse();
    const q = { market: SE, at: d('2026-06-10T00:00:00Z'), subscribedAt: d('2026-01-10T00:00:00Z') };
    expect(resolvePrice(reversed, q)).toEqual(resolvePrice(versions, q));
  });
});

describe('price list rules', () => {
  const markets = [
    { id: 'mkt_SE', code: 'SE', currency: 'SEK' },
    { id: 'mkt_JP', code: 'JP', currency: 'JPY' },
  ];
  const find = (ref: string) => markets.find((m) => m.code === ref || m.id === ref);

  it('accepts a valid list', () => {
    expect(
      checkPrices(
        [
          { currency: 'SEK', amount: 13900 },
          { currency: 'JPY', amount: 980, market: 'JP' },
        ],
        find,
      ),
    ).toEqual([]);
  });

  it('names every bad field', () => {
    const errors = checkPrices(
      [
        { currency: 'ZZZ', amount: 100 },
        { currency: 'SEK', amount: -1 },
        { currency: 'JPY', amount: 980.5 },
        { currency: 'USD', amount: 1199, market: 'SE' },
        { currency: 'SEK', amount: 1, market: 'XX' },
        { currency: 'SEK', amount: 12900 },
      ],
      find,
    );
    expect(errors).toEqual([
      { path: 'prices[0].currency', message: "'ZZZ' is not an ISO 4217 currency" },
      { path: 'prices[1].amount', message: 'must be zero or a positive number of minor units' },
      {
        path: 'prices[2].amount',
        message: 'must be an integer in minor units of JPY (0 decimal places); 980.5 is finer than that',
      },
      { path: 'prices[3].currency', message: 'market SE bills in SEK, not USD' },
      { path: 'prices[4].market', message: "unknown market 'XX'" },
      { path: 'prices[5]', message: 'duplicate price for SEK' },
    ]);
  });
});
