import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FINISHED_RETENTION_MS } from '../../src/jobs/scheduler.js';
import { ManualClock } from '../../src/kernel/clock.js';
import { newId } from '../../src/kernel/ids.js';
import { startTestApp, type TestApp } from '../support/app.js';
import { ENGINE } from '../support/database.js';

const HOUR = 60 * 60_000;

describe(`pruning finished jobs (${ENGINE})`, () => {
  let t: TestApp;
  const clock = new ManualClock('2030-01-01T00:00:00Z');
  beforeAll(async () => {
    t = await startTestApp({}, clock);
    t.app.services.jobs.register('prune.ok', async () => {});
    t.app.services.jobs.register('prune.fails', async () => {
      throw new Error('provider down');
    });
  });
  afterAll(() => t.close());

  const rows = () =>
    t.app.services.db
      .selectFrom('scheduled_jobs')
      .select(['id', 'kind', 'state', 'finished_at'])
      .orderBy('id')
      .execute();

  it('deletes a job a week after it finished on the wall clock; pending jobs stay', async () => {
    const { jobs, db } = t.app.services;
    const start = clock.now().getTime();
    const ok = await jobs.schedule(db, { kind: 'prune.ok', runAt: clock.now() });
    const fails = await jobs.schedule(db, { kind: 'prune.fails', runAt: clock.now() });
    const later = await jobs.schedule(db, { kind: 'prune.ok', runAt: new Date(start + 30 * 24 * HOUR) });
    // A test-clock job finishes at a simulated time far from now: its age is still wall-clock time.
    const testClock = (
      await t.call('POST', '/v1/test-clocks', { frozenTime: '2045-01-01T00:00:00Z' })
    ).json();
    const simulated = await jobs.schedule(db, {
      kind: 'prune.ok',
      runAt: new Date('2045-01-02T00:00:00Z'),
      testClockId: testClock.id,
    });
    const advanced = await t.call('POST', `/v1/test-clocks/${testClock.id}/advance`, {
      frozenTime: '2045-02-01T00:00:00Z',
    });
    expect(advanced.json().jobsRun).toBe(1);
    // The failing job is retried (1, 2, 4, 8 minutes) and fails for good on its fifth attempt.
    for (let attempt = 0; attempt < 5; attempt++) {
      await jobs.runDue();
      clock.advanceMs(HOUR);
    }
    const finished = new Map((await rows()).map((r) => [r.id, r]));
    expect(finished.get(ok)).toMatchObject({ state: 'done', finished_at: new Date(start) });
    expect(finished.get(simulated)).toMatchObject({ state: 'done', finished_at: new Date(start) });
    expect(finished.get(fails)).toMatchObject({ state: 'failed', finished_at: new Date(start + 4 * HOUR) });
    expect(finished.get(later)).toMatchObject({ state: 'pending', finished_at: null });

    clock.set(new Date(start + FINISHED_RETENTION_MS - 60_000));
    expect(await jobs.prune()).toBe(0);
    clock.set(new Date(start + FINISHED_RETENTION_MS + 60_000));
    expect(await jobs.prune()).toBe(2);
    expect((await rows()).map((r) => r.id)).toEqual([fails, later].sort());
    clock.set(new Date(start + 4 * HOUR + FINISHED_RETENTION_MS + 60_000));
    expect(await jobs.prune()).toBe(1);
    expect((await rows()).map((r) => r.id)).toEqual([later]);
  });

  it('prunes in bounded batches, and the poller prunes by itself', async () => {
    const { jobs, db } = t.app.services;
    const old = new Date(clock.now().getTime() - FINISHED_RETENTION_MS - HOUR);
    const backlog = Array.from({ length: 2_500 }, () => ({
      id: newId('job'),
      kind: 'prune.ok',
      run_at: old,
      test_clock_id: null,
      customer_id: null,
      payload: '{}',
      state: 'done' as const,
      last_error: null,
      dedupe_key: null,
      created_at: old,
      done_at: old,
      finished_at: old,
    }));
    await db.insertInto('scheduled_jobs').values(backlog).execute();
    // Two statements of 1,000 rows: the rest waits for the next run.
    expect(await jobs.prune({ batch: 1_000, batches: 2 })).toBe(2_000);
    expect((await rows()).filter((r) => r.state === 'done')).toHaveLength(500);

    jobs.start(10);
    try {
      for (let i = 0; i < 200 && (await rows()).some((r) => r.state === 'done'); i++) {
        await new Promise((r) => setTimeout(r, 25));
      }
    } finally {
      await jobs.stop();
    }
    expect((await rows()).map((r) => r.state)).toEqual(['pending']);
  });
});
