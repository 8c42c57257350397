import { afterAll, beforeAll, expect, it } from 'vitest';
import { startTestApp, type TestApp } from '../support/app.js';

let t: TestApp;
beforeAll(async () => {
  t = await startTestApp();
});
afterAll(() => t.close());

it('serves health and creates a market', async () => {
  expect((await t.call('GET', '/health', undefined, { key: null })).json()).toEqual({ status: 'ok' });
  const res = await t.call('POST', '/v1/markets', {
    code: 'SE',
    currency: 'SEK',
    taxRateBps: 2500,
    taxInclusive: true,
  });
  expect(res.statusCode, res.body).toBe(201);
  const plan = await t.call('POST', '/v1/products', { code: 'premium', features: ['ad-free'], seats: 1 });
  expect(plan.statusCode, plan.body).toBe(201);
  const p = await t.call('POST', '/v1/plans', {
    code: 'premium-monthly',
    product: 'premium',
    billingPeriod: 'month',
    prices: [
      { currency: 'SEK', amount: 13900 },
      { currency: 'SEK', amount: 12900, market: 'SE' },
    ],
  });
  expect(p.statusCode, p.body).toBe(201);
  const list = await t.call('GET', '/v1/plans');
  expect(list.statusCode, list.body).toBe(200);
  console.log(list.body);
  const bad = await t.call('POST', '/v1/plans', {
    code: 'X',
    product: 'nope',
    billingPeriod: 'day',
    prices: [{ currency: 'SEK', amount: -1 }],
  });
  console.log(bad.body);
});
