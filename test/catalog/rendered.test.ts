import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ManualClock } from '../../src/kernel/clock.js';
import { startTestApp, type TestApp } from '../support/app.js';
import { ENGINE } from '../support/database.js';

/**
 * Catalog reads answer stored bytes while the snapshot is the same (src/http/rendered-cache.ts):
 * a write is seen at once, and a scheduled price takes effect at its instant, not a request later.
 */
describe(`catalog reads from rendered bytes (${ENGINE})`, () => {
  let t: TestApp;
  const clock = new ManualClock('2027-05-01T12:00:00Z');
  const get = async (url: string) => {
    const res = await t.call('GET', url);
    expect(res.statusCode, res.body).toBe(200);
    expect(res.headers['content-type']).toBe('application/json; charset=utf-8');
    return res.json();
  };

  beforeAll(async () => {
    t = await startTestApp({}, clock);
    await t.markets('SE');
    expect(
      (await t.call('POST', '/v1/products', { code: 'radio', name: 'Radio', features: ['radio'], seats: 1 }))
        .statusCode,
    ).toBe(201);
    const plan = await t.call('POST', '/v1/plans', {
      code: 'radio-monthly',
      product: 'radio',
      billingPeriod: 'month',
      trialDays: 0,
      prices: [{ currency: 'SEK', amount: 4900 }],
    });
    expect(plan.statusCode, plan.body).toBe(201);
  });
  afterAll(() => t.close());

  it('the same answer twice; a price scheduled for later shows exactly from its instant', async () => {
    const first = await get('/v1/plans/radio-monthly');
    expect(first.prices).toEqual([expect.objectContaining({ currency: 'SEK', amount: 4900 })]);
    expect(await get('/v1/plans/radio-monthly')).toEqual(first);
    const list = await get('/v1/plans');
    expect(await get('/v1/plans')).toEqual(list);

    const scheduled = await t.call('POST', '/v1/plans/radio-monthly/price-versions', {
      prices: [{ currency: 'SEK', amount: 5900 }],
      effectiveAt: '2027-05-01T13:00:00Z',
    });
    expect(scheduled.statusCode, scheduled.body).toBe(201);
    expect((await get('/v1/plans/radio-monthly')).prices[0].amount).toBe(4900);
    clock.set('2027-05-01T12:59:59Z');
    expect((await get('/v1/plans/radio-monthly')).priceVersion).toBe(1);
    expect((await get('/v1/plans')).data[0].prices[0].amount).toBe(4900);
    clock.set('2027-05-01T13:00:00Z');
    const after = await get('/v1/plans/radio-monthly');
    expect(after.priceVersion).toBe(2);
    expect(after.prices[0].amount).toBe(5900);
    expect((await get('/v1/plans')).data[0].prices[0].amount).toBe(5900);
  });

  it('a write on this node is seen at once by the lists; unknown ids stay 404 (errors are never stored)', async () => {
    const before = await get('/v1/products');
    expect((await t.call('GET', '/v1/products/podcasts')).statusCode).toBe(404);
    expect(
      (
        await t.call('POST', '/v1/products', {
          code: 'podcasts',
          name: 'Podcasts',
          features: ['pods'],
          seats: 1,
        })
      ).statusCode,
    ).toBe(201);
    const after = await get('/v1/products');
    expect(after.data.length).toBe(before.data.length + 1);
    expect((await get('/v1/products/podcasts')).code).toBe('podcasts');
    expect((await get('/v1/markets')).data.map((m: { code: string }) => m.code)).toEqual(['SE']);
    expect((await get('/v1/markets/SE')).currency).toBe('SEK');
  });
});
