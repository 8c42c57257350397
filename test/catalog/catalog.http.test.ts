import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { transact } from '../../src/db/transaction.js';
import { startTestApp, type TestApp } from '../support/app.js';
import { ENGINE } from '../support/database.js';

describe(`catalog API (${ENGINE})`, () => {
  let t: TestApp;
  beforeAll(async () => {
    t = await startTestApp();
    await t.markets('SE', 'DE', 'FR', 'JP', 'US');
    expect(
      (
        await t.call('POST', '/v1/products', {
          code: 'premium-family',
          name: 'Premium Family',
          features: ['ad-free', 'offline'],
          seats: 6,
        })
      ).statusCode,
    ).toBe(201);
  });
  afterAll(() => t.close());

  const plan = (over: Record<string, unknown> = {}) => ({
    code: 'family-monthly',
    product: 'premium-family',
    billingPeriod: 'month',
    trialDays: 30,
    prices: [
      { currency: 'SEK', amount: 20900 },
      { currency: 'EUR', amount: 1799 },
      { currency: 'EUR', amount: 1899, market: 'FR' },
      { currency: 'JPY', amount: 1580 },
    ],
    cancelTiming: 'end_of_term',
    ...over,
  });

  it('creates a plan, referring to its product by code, and finds it by id or code', async () => {
    const res = await t.call('POST', '/v1/plans', plan());
    expect(res.statusCode).toBe(201);
    const created = res.json();
    const product = (await t.call('GET', '/v1/products/premium-family')).json();
    expect(created).toMatchObject({
      code: 'family-monthly',
      product: product.id,
      billingPeriod: 'month',
      trialDays: 30,
      changeTiming: null,
      cancelTiming: 'end_of_term',
      priceVersion: 1,
    });
    expect(created.prices).toEqual([
      { currency: 'EUR', amount: 1799, market: null },
      { currency: 'EUR', amount: 1899, market: 'FR' },
      { currency: 'JPY', amount: 1580, market: null },
      { currency: 'SEK', amount: 20900, market: null },
    ]);
    expect((await t.call('GET', `/v1/plans/${created.id}`)).json()).toEqual(created);
    expect((await t.call('GET', '/v1/plans/family-monthly')).json()).toEqual(created);
    expect(product).toMatchObject({ seats: 6, features: ['ad-free', 'offline'] });
    expect((await t.call('GET', `/v1/plans?product=${product.id}`)).json().data).toHaveLength(1);
    expect((await t.call('GET', '/v1/plans?product=premium-family')).json().data).toHaveLength(1);
  });

  it('refuses an unknown currency, naming the field', async () => {
    const res = await t.call(
      'POST',
      '/v1/plans',
      plan({ code: 'p-ccy', prices: [{ currency: 'ABC', amount: 100 }] }),
    );
    expect(res.statusCode).toBe(400);
    expect(res.json().errors).toEqual([
      { path: 'prices[0].currency', message: "'ABC' is not an ISO 4217 currency" },
    ]);
    const market = await t.call('POST', '/v1/markets', {
      code: 'XY',
      currency: 'XTS',
      taxRateBps: 0,
      taxInclusive: false,
    });
    expect(market.statusCode).toBe(400);
    expect(market.json().errors[0].path).toBe('currency');
  });

  it('refuses negative amounts and amounts finer than the minor unit', async () => {
    const negative = await t.call(
      'POST',
      '/v1/plans',
      plan({ code: 'p-neg', prices: [{ currency: 'SEK', amount: -100 }] }),
    );
    expect(negative.statusCode).toBe(400);
    expect(negative.json().errors[0].path).toBe('prices[0].amount');
    const yen = await t.call(
      'POST',
      '/v1/plans',
      plan({ code: 'p-yen', prices: [{ currency: 'JPY', amount: 980.5 }] }),
    );
    expect(yen.statusCode).toBe(400);
    expect(yen.json().errors[0]).toEqual({
      path: 'prices[0].amount',
      message: 'must be an integer in minor units of JPY (0 decimal places); 980.5 is finer than that',
    });
    const cents = await t.call(
      'POST',
      '/v1/plans',
      plan({ code: 'p-cents', prices: [{ currency: 'EUR', amount: 17.99 }] }),
    );
    expect(cents.json().errors[0].message).toContain('minor units of EUR (2 decimal places)');
    expect((await t.call('GET', '/v1/plans/p-yen')).statusCode).toBe(404);
  });

  it('bounds a price per currency: 8 digits of minor units, 12 for IDR', async () => {
    const create = (code: string, currency: string, amount: number) =>
      t.call('POST', '/v1/plans', plan({ code, prices: [{ currency, amount }] }));
    expect((await create('p-usd-max', 'USD', 99_999_999)).statusCode).toBe(201);
    const over = await create('p-usd-over', 'USD', 100_000_000);
    expect(over.statusCode).toBe(400);
    expect(over.json().errors).toEqual([
      { path: 'prices[0].amount', message: 'must be at most 99999999 minor units of USD' },
    ]);
    // The documented JS maximum is no longer a price: sums of such prices would break reads.
    expect((await create('p-usd-huge', 'USD', Number.MAX_SAFE_INTEGER)).statusCode).toBe(400);
    expect((await create('p-idr-max', 'IDR', 999_999_999_999)).statusCode).toBe(201);
    const idrOver = await create('p-idr-over', 'IDR', 1_000_000_000_000);
    expect(idrOver.json().errors).toEqual([
      { path: 'prices[0].amount', message: 'must be at most 999999999999 minor units of IDR' },
    ]);
    expect((await t.call('GET', '/v1/plans/p-usd-over')).statusCode).toBe(404);
    const version = await t.call('POST', '/v1/plans/p-usd-max/price-versions', {
      prices: [
        { currency: 'USD', amount: 1 },
        { currency: 'SEK', amount: 100_000_000 },
      ],
      effectiveAt: '2031-01-01T00:00:00Z',
    });
    expect(version.statusCode).toBe(400);
    expect(version.json().errors).toEqual([
      { path: 'prices[1].amount', message: 'must be at most 99999999 minor units of SEK' },
    ]);
  });

  it('pages price versions with limit and cursor, oldest first', async () => {
    expect((await t.call('POST', '/v1/plans', plan({ code: 'p-paged' }))).statusCode).toBe(201);
    for (let year = 2031; year <= 2034; year++) {
      const res = await t.call('POST', '/v1/plans/p-paged/price-versions', {
        prices: [{ currency: 'EUR', amount: year, market: 'FR' }],
        effectiveAt: `${year}-01-01T00:00:00Z`,
      });
      expect(res.statusCode).toBe(201);
    }
    const seen: number[] = [];
    let url = '/v1/plans/p-paged/price-versions?limit=2';
    for (let pages = 0; pages < 5; pages++) {
      const res = await t.call('GET', url);
      expect(res.statusCode).toBe(200);
      const body = res.json();
      expect(body.data.length).toBeLessThanOrEqual(2);
      seen.push(...body.data.map((v: { version: number }) => v.version));
      if (!body.nextCursor) break;
      url = `/v1/plans/p-paged/price-versions?limit=2&cursor=${body.nextCursor}`;
    }
    expect(seen).toEqual([1, 2, 3, 4, 5]);
    const last = (await t.call('GET', '/v1/plans/p-paged/price-versions?limit=1&cursor=' + 'x')).json();
    expect(last.errors[0].path).toBe('cursor');
    const over = await t.call('GET', '/v1/plans/p-paged/price-versions?limit=101');
    expect(over.statusCode).toBe(400);
    expect(over.json().errors[0].path).toBe('limit');
    const second = (await t.call('GET', '/v1/plans/p-paged/price-versions?limit=1')).json();
    expect(second.data[0].prices[0]).toMatchObject({ currency: 'EUR' });
    const page = await t.call('GET', `/v1/plans/p-paged/price-versions?limit=2&cursor=${second.nextCursor}`);
    expect(page.json().data.map((v: { version: number }) => v.version)).toEqual([2, 3]);
    expect(page.json().data[0].prices.map((p: { market: string | null }) => p.market)).toEqual(['FR']);
    // Inside a transaction the same page comes from the database, not the snapshot.
    const fromDb = await transact(t.app.services.db, (trx) =>
      t.app.services.catalog.listPriceVersions('p-paged', { limit: 2, after: second.data[0].id }, trx),
    );
    expect(fromDb.versions.map((v) => v.version)).toEqual([2, 3, 4]);
    await expect(
      transact(t.app.services.db, (trx) =>
        t.app.services.catalog.listPriceVersions('p-paged', { limit: 2, after: 'pv_unknown' }, trx),
      ),
    ).rejects.toMatchObject({ code: 'validation_failed' });
  });

  it('refuses duplicate codes, duplicate prices and a market price in the wrong currency', async () => {
    const dup = await t.call('POST', '/v1/plans', plan());
    expect(dup.statusCode).toBe(409);
    expect(dup.json()).toMatchObject({ code: 'already_exists', errors: [{ path: 'code' }] });
    const product = await t.call('POST', '/v1/products', { code: 'premium-family', features: [], seats: 1 });
    expect(product.statusCode).toBe(409);
    const twice = await t.call(
      'POST',
      '/v1/plans',
      plan({
        code: 'p-dup',
        prices: [
          { currency: 'SEK', amount: 1 },
          { currency: 'SEK', amount: 2 },
        ],
      }),
    );
    expect(twice.json().errors).toEqual([{ path: 'prices[1]', message: 'duplicate price for SEK' }]);
    const wrong = await t.call(
      'POST',
      '/v1/plans',
      plan({ code: 'p-wrong', prices: [{ currency: 'USD', amount: 1, market: 'SE' }] }),
    );
    expect(wrong.json().errors).toEqual([
      { path: 'prices[0].currency', message: 'market SE bills in SEK, not USD' },
    ]);
    const unknownProduct = await t.call('POST', '/v1/plans', plan({ code: 'p-prod', product: 'nope' }));
    expect(unknownProduct.statusCode).toBe(400);
    expect(unknownProduct.json().errors[0].path).toBe('product');
  });

  it('prices a customer by market before currency, and grandfathers existing subscribers', async () => {
    const quote = async (q: string) => (await t.call('GET', `/v1/plans/family-monthly/price?${q}`)).json();
    expect(await quote('market=FR')).toMatchObject({
      amount: 1899,
      currency: 'EUR',
      source: 'market',
      taxInclusive: true,
      taxRateBps: 2000,
    });
    expect(await quote('market=DE')).toMatchObject({
      amount: 1799,
      currency: 'EUR',
      source: 'currency',
      taxRateBps: 1900,
    });
    expect(await quote('market=JP')).toMatchObject({ amount: 1580, currency: 'JPY' });
    const us = await t.call('GET', '/v1/plans/family-monthly/price?market=US');
    expect(us.statusCode).toBe(422);
    expect(us.json().code).toBe('price_not_found');

    const version = await t.call('POST', '/v1/plans/family-monthly/price-versions', {
      prices: [
        { currency: 'SEK', amount: 22900 },
        { currency: 'EUR', amount: 1999 },
        { currency: 'JPY', amount: 1780 },
      ],
      effectiveAt: '2030-03-01T00:00:00Z',
      existingSubscribersFrom: '2030-06-01T00:00:00Z',
    });
    expect(version.statusCode).toBe(201);
    expect(version.json()).toMatchObject({
      version: 2,
      effectiveAt: '2030-03-01T00:00:00Z',
      existingSubscribersFrom: '2030-06-01T00:00:00Z',
    });

    // New subscribers: the new price from effectiveAt.
    expect(await quote('market=SE&at=2030-02-28T00:00:00Z')).toMatchObject({
      amount: 20900,
      priceVersion: 1,
    });
    expect(await quote('market=SE&at=2030-03-01T00:00:00Z')).toMatchObject({
      amount: 22900,
      priceVersion: 2,
    });
    // Existing subscribers (joined 2029): old price until their first period from June 1st.
    const existing = 'subscribedAt=2029-05-10T00:00:00Z';
    expect(await quote(`market=SE&at=2030-05-10T00:00:00Z&${existing}`)).toMatchObject({ amount: 20900 });
    expect(await quote(`market=SE&at=2030-06-10T00:00:00Z&${existing}`)).toMatchObject({ amount: 22900 });
    // France had a market price in v1 only; v2 prices France by currency.
    expect(await quote('market=FR&at=2030-03-02T00:00:00Z')).toMatchObject({
      amount: 1999,
      source: 'currency',
    });

    const versions = (await t.call('GET', '/v1/plans/family-monthly/price-versions')).json().data;
    expect(versions.map((v: { version: number }) => v.version)).toEqual([1, 2]);
    // The plan shows the prices in force now (2026), i.e. still version 1.
    expect((await t.call('GET', '/v1/plans/family-monthly')).json().priceVersion).toBe(1);
  });

  it('refuses a price version that is out of order or grandfathers backwards', async () => {
    const early = await t.call('POST', '/v1/plans/family-monthly/price-versions', {
      prices: [{ currency: 'SEK', amount: 1 }],
      effectiveAt: '2030-01-01T00:00:00Z',
    });
    expect(early.statusCode).toBe(400);
    expect(early.json().errors[0].path).toBe('effectiveAt');
    const backwards = await t.call('POST', '/v1/plans/family-monthly/price-versions', {
      prices: [{ currency: 'SEK', amount: 1 }],
      effectiveAt: '2031-01-01T00:00:00Z',
      existingSubscribersFrom: '2030-12-01T00:00:00Z',
    });
    expect(backwards.json().errors).toEqual([
      { path: 'existingSubscribersFrom', message: 'must not be before effectiveAt' },
    ]);
    const missing = await t.call('POST', '/v1/plans/nope/price-versions', {
      prices: [{ currency: 'SEK', amount: 1 }],
      effectiveAt: '2031-01-01T00:00:00Z',
    });
    expect(missing.statusCode).toBe(404);
  });

  it('markets are found by code or id', async () => {
    const se = (await t.call('GET', '/v1/markets/SE')).json();
    expect(se).toMatchObject({ code: 'SE', currency: 'SEK', taxRateBps: 2500, taxInclusive: true });
    expect((await t.call('GET', `/v1/markets/${se.id}`)).json()).toEqual(se);
  });
});
