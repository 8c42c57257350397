import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { transact } from '../../src/db/transaction.js';
import type { Clock } from '../../src/kernel/clock.js';
import { InvoiceNumbers } from '../../src/modules/billing/invoice-numbers.js';
import { billingTables } from '../../src/modules/billing/tables.js';
import { startTestApp, type TestApp } from '../support/app.js';
import { ENGINE } from '../support/database.js';

/** Gapless invoice numbers in blocks: the counter once per block, nothing lost, nothing used twice. */
describe(`invoice numbers in blocks (${ENGINE})`, () => {
  let t: TestApp;
  let now = Date.parse('2027-01-01T00:00:00Z');
  const clock: Clock = { now: () => new Date(now) };

  beforeAll(async () => {
    t = await startTestApp();
  });
  afterAll(() => t.close());

  const db = () => t.app.database.db;
  const counter = async (series: string) =>
    Number(
      (
        await billingTables(db())
          .selectFrom('invoice_number_series')
          .select('last_number')
          .where('series', '=', series)
          .executeTakeFirst()
      )?.last_number ?? 0,
    );
  const useOne = (numbers: InvoiceNumbers, series: string, commit = true) =>
    transact(db(), async (trx) => {
      const n = await numbers.next(trx, series);
      if (!commit) throw Object.assign(new Error('rolled back'), { n });
      return n;
    }).catch((e: { n?: number }) => {
      if (e.n === undefined) throw e;
      return -e.n;
    });

  it('numbers in order within a block; the counter moves once per block', async () => {
    const numbers = new InvoiceNumbers(db(), clock, { blockSize: 5, leaseMs: 60_000 });
    const got: number[] = [];
    for (let i = 0; i < 12; i++) got.push(await useOne(numbers, 'SE-2027'));
    expect(got).toEqual([1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12]);
    // Three blocks of 5 were taken: the counter was touched three times, to 15.
    expect(await counter('SE-2027')).toBe(15);
  });

  it('concurrent finalisations never share a number; two nodes share a series without a gap', async () => {
    const a = new InvoiceNumbers(db(), clock, { blockSize: 4, leaseMs: 60_000 });
    const b = new InvoiceNumbers(db(), clock, { blockSize: 3, leaseMs: 60_000 });
    const got = await Promise.all(Array.from({ length: 20 }, (_, i) => useOne(i % 2 ? a : b, 'US-2027')));
    expect(new Set(got).size).toBe(20);
    // What both nodes still hold, given back, is what is missing from 1..counter.
    await a.release();
    await b.release();
    const last = await counter('US-2027');
    const pooled = (
      await billingTables(db())
        .selectFrom('invoice_number_pool')
        .select('number')
        .where('series', '=', 'US-2027')
        .execute()
    ).map((r) => Number(r.number));
    expect([...got, ...pooled].sort((x, y) => x - y)).toEqual(Array.from({ length: last }, (_, i) => i + 1));
  });

  it('a rolled-back number and a dead node’s block come back once their lease lapses: gapless', async () => {
    const dead = new InvoiceNumbers(db(), clock, { blockSize: 3, leaseMs: 10_000 });
    expect(await useOne(dead, 'DE-2027')).toBe(1);
    // Number 2 is taken by a transaction that rolls back; then the node dies holding 3.
    expect(await useOne(dead, 'DE-2027', false)).toBe(-2);
    const alive = new InvoiceNumbers(db(), clock, { blockSize: 3, leaseMs: 10_000 });
    // While the lease holds, the other node makes new numbers.
    expect(await useOne(alive, 'DE-2027')).toBe(4);
    now += 11_000;
    // Lapsed: the next block takes 2 and 3 back first (lowest first), then goes on.
    const fresh = new InvoiceNumbers(db(), clock, { blockSize: 3, leaseMs: 10_000 });
    expect([await useOne(fresh, 'DE-2027'), await useOne(fresh, 'DE-2027')]).toEqual([2, 3]);
    await alive.release();
    await fresh.release();
    const issued = (
      await billingTables(db())
        .selectFrom('invoice_number_pool')
        .select('number')
        .where('series', '=', 'DE-2027')
        .execute()
    ).map((r) => Number(r.number));
    // 1..counter = the used ones (1, 2, 3, 4) and the pooled ones: none lost.
    const last = await counter('DE-2027');
    expect([1, 2, 3, 4, ...issued].sort((x, y) => x - y)).toEqual(
      Array.from({ length: last }, (_, i) => i + 1),
    );
  });
});
