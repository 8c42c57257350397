import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { transact } from '../../src/db/transaction.js';
import { startTestApp, type TestApp } from '../support/app.js';
import { ENGINE } from '../support/database.js';

/**
 * A wall-clock job of a kind that has a batch handler is run by the batches only, never by the
 * one-at-a-time runner, even when a poll's batch budget ran out with such jobs still due (a
 * million-renewal run sent 1.3 % of its renewals the slow way before this held).
 */
describe(`scheduler: batch kinds stay with the batches (${ENGINE})`, () => {
  let t: TestApp;
  beforeAll(async () => {
    t = await startTestApp();
  });
  afterAll(() => t.close());

  it('the single runner leaves them alone once the batch budget (5 s) is spent', async () => {
    const jobs = t.app.services.jobs;
    const single: string[] = [];
    const batched: string[] = [];
    jobs.register('test.batchable', async (job) => {
      single.push(job.id);
    });
    jobs.registerBatch(
      'test.batchable',
      async (claimed, now) => {
        // Slow batches: three of them spend the poll's budget.
        await new Promise((r) => setTimeout(r, 2_000));
        batched.push(...claimed.map((j) => j.id));
        await transact(t.app.services.db, (trx) =>
          jobs.complete(
            trx,
            claimed.map((j) => j.id),
            now,
          ),
        );
        return new Map();
      },
      { size: 1 },
    );
    const past = new Date(Date.now() - 1_000);
    await transact(t.app.services.db, (trx) =>
      jobs.scheduleMany(
        trx,
        Array.from({ length: 5 }, (_, i) => ({
          kind: 'test.batchable',
          runAt: past,
          dedupeKey: `batchable:${i}`,
        })),
      ),
    );
    await jobs.runDue();
    expect(single).toEqual([]);
    expect(batched.length).toBeGreaterThanOrEqual(2);
    expect(batched.length).toBeLessThan(5);
    await jobs.runDue();
    expect(single).toEqual([]);
    expect(batched).toHaveLength(5);
  }, 30_000);
});
