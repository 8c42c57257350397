import { type QueryExecutorProvider, sql } from 'kysely';
import { expect } from 'vitest';
import type { TestApp } from './app.js';

/**
 * A small catalog on markets SE and US: `music` (1 seat, ad-free + offline) with `music-monthly`,
 * `family` (6 seats, ad-free + offline + family-mix) with `family-monthly`, and `books`
 * (audiobooks) with `books-monthly`. Every call must succeed.
 */
export async function smallCatalog(t: TestApp): Promise<void> {
  await t.markets('SE', 'US');
  const ok = async (url: string, body: unknown) => {
    const res = await t.call('POST', url, body);
    if (res.statusCode !== 201) throw new Error(`${url}: ${res.body}`);
  };
  await ok('/v1/products', { code: 'music', name: 'Music', features: ['ad-free', 'offline'], seats: 1 });
  await ok('/v1/products', {
    code: 'family',
    name: 'Family',
    features: ['ad-free', 'family-mix', 'offline'],
    seats: 6,
  });
  await ok('/v1/products', { code: 'books', name: 'Books', features: ['audiobooks'], seats: 1 });
  for (const [code, product] of [
    ['music-monthly', 'music'],
    ['family-monthly', 'family'],
    ['books-monthly', 'books'],
  ] as const) {
    await ok('/v1/plans', {
      code,
      product,
      billingPeriod: 'month',
      trialDays: 0,
      prices: [
        { currency: 'SEK', amount: 10900 },
        { currency: 'USD', amount: 1199 },
      ],
    });
  }
}

/** A customer with a card that pays (`tok_visa`), on the wall clock unless `testClock` is given. */
export async function payingCustomer(
  t: TestApp,
  externalId: string,
  opts: { market?: 'SE' | 'US'; testClock?: string; token?: string } = {},
): Promise<{ id: string; externalId: string }> {
  const res = await t.call('POST', '/v1/customers', {
    externalId,
    market: opts.market ?? 'SE',
    ...(opts.testClock ? { testClock: opts.testClock } : {}),
  });
  expect(res.statusCode, res.body).toBe(201);
  const id = res.json().id as string;
  const pm = await t.call('POST', `/v1/customers/${id}/payment-methods`, {
    provider: 'simulator',
    token: opts.token ?? 'tok_visa',
  });
  expect(pm.statusCode, pm.body).toBe(201);
  return { id, externalId };
}

/** Subscribes and expects it to be created; returns the subscription. */
export async function subscribeOk(
  t: TestApp,
  customer: string,
  plan: string,
): Promise<{ id: string; status: string; currentPeriodEnd: string }> {
  const res = await t.call('POST', '/v1/subscriptions', { customer, plan });
  expect(res.statusCode, res.body).toBe(201);
  return res.json();
}

/**
 * Invoice numbers of `series` are gapless: each used once, and the numbers issued plus those a
 * node still holds in the pool (a concurrent transaction's block, not yet used) are exactly
 * 1..counter. Issued numbers alone may skip ahead while another block is held (ADR 0014).
 */
export async function expectGaplessSeries(db: QueryExecutorProvider, series: string): Promise<void> {
  const issued = await sql<{ number: string }>`SELECT number FROM invoices WHERE series = ${series}`.execute(
    db,
  );
  const pooled = await sql<{
    number: string;
  }>`SELECT number FROM invoice_number_pool WHERE series = ${series}`.execute(db);
  const counter = await sql<{
    last: string;
  }>`SELECT last_number AS last FROM invoice_number_series WHERE series = ${series}`.execute(db);
  const used = issued.rows.map((r) => Number(r.number.slice(-6)));
  expect(new Set(used).size, `${series}: a number used twice`).toBe(used.length);
  const all = [...used, ...pooled.rows.map((r) => Number(r.number))].sort((a, b) => a - b);
  const last = Number(counter.rows[0]?.last ?? 0);
  expect(all, `${series}: issued and pooled numbers`).toEqual(Array.from({ length: last }, (_, i) => i + 1));
}
