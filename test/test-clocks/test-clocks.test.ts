import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { ConfigError, loadConfig } from '../../src/config.js';
import { ADVANCE_LEASE_MS, TestClockService } from '../../src/modules/test-clocks/service.js';
import { startTestApp, type TestApp } from '../support/app.js';
import { ENGINE } from '../support/database.js';

describe(`test clocks and due jobs (${ENGINE})`, () => {
  let t: TestApp;
  const seen: Array<{ job: string; now: string; clockTime: string; customerNow: string }> = [];
  beforeAll(async () => {
    t = await startTestApp();
    await t.markets('SE');
    const { jobs, testClocks, customers } = t.app.services;
    jobs.register('test.record', async (job, { trx, now }) => {
      const clock = await testClocks.get(job.testClockId!, trx);
      seen.push({
        job: (job.payload as { name: string }).name,
        now: now.toISOString(),
        clockTime: clock.frozenTime.toISOString(),
        customerNow: (await customers.now(job.customerId!, trx)).toISOString(),
      });
    });
    jobs.register('test.fails', async () => {
      throw new Error('card network down');
    });
  });
  afterAll(() => t.close());

  it('creates and gets a clock', async () => {
    const res = await t.call('POST', '/v1/test-clocks', {
      frozenTime: '2025-01-01T00:00:00Z',
      name: 'renewals',
    });
    expect(res.statusCode).toBe(201);
    expect(res.json()).toMatchObject({
      frozenTime: '2025-01-01T00:00:00Z',
      status: 'ready',
      name: 'renewals',
    });
    expect((await t.call('GET', `/v1/test-clocks/${res.json().id}`)).json()).toEqual(res.json());
  });

  it('advancing runs every due job in time order, each at its own time, and stops at the target', async () => {
    const clock = (await t.call('POST', '/v1/test-clocks', { frozenTime: '2025-01-01T00:00:00Z' })).json();
    const customer = (
      await t.call('POST', '/v1/customers', { externalId: 'clocked-1', market: 'SE', testClock: clock.id })
    ).json();
    const { jobs, db } = t.app.services;
    const at = (iso: string, name: string) =>
      jobs.schedule(db, {
        kind: 'test.record',
        runAt: new Date(iso),
        customerId: customer.id,
        testClockId: clock.id,
        payload: { name },
      });
    await at('2025-03-01T00:00:00Z', 'renewal-march');
    await at('2025-01-31T00:00:00Z', 'trial-end');
    await at('2025-02-28T00:00:00Z', 'renewal-february');
    await at('2025-06-01T00:00:00Z', 'after-target');
    // A job of the wall clock and one of another clock are not this clock's business.
    await jobs.schedule(db, {
      kind: 'test.record',
      runAt: new Date('2025-02-01T00:00:00Z'),
      payload: { name: 'wall-clock' },
    });

    const res = await t.call('POST', `/v1/test-clocks/${clock.id}/advance`, {
      frozenTime: '2025-04-01T00:00:00Z',
    });
    expect(res.statusCode).toBe(200);
    expect(res.json()).toMatchObject({ frozenTime: '2025-04-01T00:00:00Z', status: 'ready', jobsRun: 3 });
    expect(seen).toEqual([
      {
        job: 'trial-end',
        now: '2025-01-31T00:00:00.000Z',
        clockTime: '2025-01-31T00:00:00.000Z',
        customerNow: '2025-01-31T00:00:00.000Z',
      },
      {
        job: 'renewal-february',
        now: '2025-02-28T00:00:00.000Z',
        clockTime: '2025-02-28T00:00:00.000Z',
        customerNow: '2025-02-28T00:00:00.000Z',
      },
      {
        job: 'renewal-march',
        now: '2025-03-01T00:00:00.000Z',
        clockTime: '2025-03-01T00:00:00.000Z',
        customerNow: '2025-03-01T00:00:00.000Z',
      },
    ]);
    seen.length = 0;
    await t.call('POST', `/v1/test-clocks/${clock.id}/advance`, { frozenTime: '2025-07-01T00:00:00Z' });
    expect(seen.map((s) => s.job)).toEqual(['after-target']);
    seen.length = 0;
  });

  it('a job that schedules another due job sees it run in the same advance', async () => {
    const clock = (await t.call('POST', '/v1/test-clocks', { frozenTime: '2025-01-01T00:00:00Z' })).json();
    const { jobs, db } = t.app.services;
    let renewals = 0;
    jobs.register('test.renewal', async (job, { trx, now }) => {
      renewals++;
      const next = new Date(now);
      next.setUTCMonth(next.getUTCMonth() + 1);
      await jobs.schedule(trx, {
        kind: 'test.renewal',
        runAt: next,
        testClockId: job.testClockId,
        dedupeKey: `renewal:${next.toISOString()}`,
      });
    });
    await jobs.schedule(db, {
      kind: 'test.renewal',
      runAt: new Date('2025-01-15T00:00:00Z'),
      testClockId: clock.id,
    });
    const res = await t.call('POST', `/v1/test-clocks/${clock.id}/advance`, {
      frozenTime: '2025-12-31T00:00:00Z',
    });
    expect(res.json().jobsRun).toBe(12);
    expect(renewals).toBe(12);
  });

  it('a failing job is retried later in simulated time, then marked failed; the advance completes', async () => {
    const clock = (await t.call('POST', '/v1/test-clocks', { frozenTime: '2025-01-01T00:00:00Z' })).json();
    const { jobs, db } = t.app.services;
    const id = await jobs.schedule(db, {
      kind: 'test.fails',
      runAt: new Date('2025-01-02T00:00:00Z'),
      testClockId: clock.id,
    });
    const res = await t.call('POST', `/v1/test-clocks/${clock.id}/advance`, {
      frozenTime: '2025-02-01T00:00:00Z',
    });
    expect(res.statusCode).toBe(200);
    const row = await db
      .selectFrom('scheduled_jobs')
      .selectAll()
      .where('id', '=', id)
      .executeTakeFirstOrThrow();
    expect(row).toMatchObject({ state: 'failed', attempts: 5, last_error: 'card network down' });
  });

  it('refuses to move backwards or to the same instant, naming frozenTime', async () => {
    const clock = (await t.call('POST', '/v1/test-clocks', { frozenTime: '2025-05-01T00:00:00Z' })).json();
    for (const frozenTime of ['2025-04-01T00:00:00Z', '2025-05-01T00:00:00Z']) {
      const res = await t.call('POST', `/v1/test-clocks/${clock.id}/advance`, { frozenTime });
      expect(res.statusCode).toBe(400);
      expect(res.json().errors[0].path).toBe('frozenTime');
    }
    expect(
      (await t.call('POST', `/v1/test-clocks/${clock.id}/advance`, { frozenTime: 'tomorrow' })).statusCode,
    ).toBe(400);
    expect(
      (
        await t.call('POST', '/v1/test-clocks/clk_01ARZ3NDEKTSV4RRFFQ69G5FAV/advance', {
          frozenTime: '2030-01-01T00:00:00Z',
        })
      ).statusCode,
    ).toBe(404);
  });

  it('refuses a second advance while one runs (409 invalid_state)', async () => {
    const clock = (await t.call('POST', '/v1/test-clocks', { frozenTime: '2025-01-01T00:00:00Z' })).json();
    await t.app.services.db
      .updateTable('test_clocks')
      .set({ status: 'advancing', advance_lease_until: new Date(Date.now() + 60_000) })
      .where('id', '=', clock.id)
      .execute();
    const res = await t.call('POST', `/v1/test-clocks/${clock.id}/advance`, {
      frozenTime: '2025-02-01T00:00:00Z',
    });
    expect(res.statusCode).toBe(409);
    expect(res.json().code).toBe('invalid_state');
    // An advance whose node died (lease over) can be resumed.
    await t.app.services.db
      .updateTable('test_clocks')
      .set({ advance_lease_until: new Date(Date.now() - 1) })
      .where('id', '=', clock.id)
      .execute();
    expect(
      (await t.call('POST', `/v1/test-clocks/${clock.id}/advance`, { frozenTime: '2025-02-01T00:00:00Z' }))
        .statusCode,
    ).toBe(200);
  });

  it('the advance lease is REPRISE_TEST_CLOCK_LEASE_MS (default 10 minutes), renewed as each job starts', async () => {
    expect(loadConfig({}).testClockLeaseMs).toBe(ADVANCE_LEASE_MS);
    expect(ADVANCE_LEASE_MS).toBe(600_000);
    expect(loadConfig({ REPRISE_TEST_CLOCK_LEASE_MS: '3000' }).testClockLeaseMs).toBe(3000);
    expect(() => loadConfig({ REPRISE_TEST_CLOCK_LEASE_MS: '10' })).toThrow(ConfigError);
    expect(() => loadConfig({ REPRISE_TEST_CLOCK_LEASE_MS: 'soon' })).toThrow(/REPRISE_TEST_CLOCK_LEASE_MS/);

    const { jobs, db, clock } = t.app.services;
    const testClocks = new TestClockService(db, clock, jobs, { leaseMs: 4_000 });
    const created = (await t.call('POST', '/v1/test-clocks', { frozenTime: '2025-01-01T00:00:00Z' })).json();
    const leases: number[] = [];
    jobs.register('test.lease', async (job, { trx }) => {
      const row = await trx
        .selectFrom('test_clocks')
        .select('advance_lease_until')
        .where('id', '=', job.testClockId!)
        .executeTakeFirstOrThrow();
      leases.push(row.advance_lease_until!.getTime() - Date.now());
      // The next job's lease counts from its own start.
      await new Promise((r) => setTimeout(r, 1_200));
    });
    for (const runAt of ['2025-01-02T00:00:00Z', '2025-01-03T00:00:00Z']) {
      await jobs.schedule(db, { kind: 'test.lease', runAt: new Date(runAt), testClockId: created.id });
    }
    const { clock: advanced, jobsRun } = await testClocks.advance(
      created.id,
      new Date('2025-02-01T00:00:00Z'),
    );
    expect(jobsRun).toBe(2);
    expect(advanced).toMatchObject({ status: 'ready', frozenTime: new Date('2025-02-01T00:00:00Z') });
    expect(leases).toHaveLength(2);
    for (const left of leases) {
      expect(left).toBeGreaterThan(3_000);
      expect(left).toBeLessThanOrEqual(4_000);
    }
    const row = await db
      .selectFrom('test_clocks')
      .select(['status', 'advance_lease_until'])
      .where('id', '=', created.id)
      .executeTakeFirstOrThrow();
    expect(row).toEqual({ status: 'ready', advance_lease_until: null });
  });

  it('a retry of an advance that died during its last job (at the target) resumes it after the lease and re-runs that job', async () => {
    const { jobs, db, clock } = t.app.services;
    const testClocks = new TestClockService(db, clock, jobs, { leaseMs: 1_000 });
    const created = (await t.call('POST', '/v1/test-clocks', { frozenTime: '2025-01-01T00:00:00Z' })).json();
    // The first run of the job never ends: its node died while it waited for the provider.
    let release = () => {};
    const hung = new Promise<void>((r) => {
      release = r;
    });
    const runs: string[] = [];
    jobs.register(
      'test.charge',
      async (_job, { now }) => {
        runs.push(now.toISOString());
        if (runs.length === 1) await hung;
      },
      { external: true },
    );
    const target = new Date('2025-02-01T00:00:00Z');
    await jobs.schedule(db, { kind: 'test.charge', runAt: target, testClockId: created.id });
    const dead = testClocks.advance(created.id, target);
    await vi.waitFor(() => expect(runs).toHaveLength(1));
    // The clock stands at the target, still advancing under the dead node's lease.
    expect(await testClocks.get(created.id)).toMatchObject({ status: 'advancing', frozenTime: target });
    await expect(testClocks.advance(created.id, target)).rejects.toMatchObject({ code: 'invalid_state' });
    await new Promise((r) => setTimeout(r, 1_100));
    const resumed = await testClocks.advance(created.id, target);
    expect(resumed).toMatchObject({ jobsRun: 1, clock: { status: 'ready', frozenTime: target } });
    // Re-run at once, at its own time (not after a 5-minute lease in simulated time, past the target).
    expect(runs).toEqual(['2025-02-01T00:00:00.000Z', '2025-02-01T00:00:00.000Z']);
    release();
    await dead;
  });

  it('a retry of an advance that finished answers 200 again; earlier times are still refused', async () => {
    const created = (await t.call('POST', '/v1/test-clocks', { frozenTime: '2025-01-01T00:00:00Z' })).json();
    const advance = (frozenTime: string) =>
      t.call('POST', `/v1/test-clocks/${created.id}/advance`, { frozenTime });
    const first = await advance('2025-03-01T00:00:00Z');
    expect(first.statusCode).toBe(200);
    const again = await advance('2025-03-01T00:00:00Z');
    expect(again.statusCode).toBe(200);
    expect(again.json()).toMatchObject({ frozenTime: '2025-03-01T00:00:00Z', status: 'ready', jobsRun: 0 });
    for (const frozenTime of ['2025-02-01T00:00:00Z', '2025-01-01T00:00:00Z']) {
      const res = await advance(frozenTime);
      expect(res.statusCode).toBe(400);
      expect(res.json().errors[0].path).toBe('frozenTime');
    }
    expect((await advance('2025-04-01T00:00:00Z')).json()).toMatchObject({
      frozenTime: '2025-04-01T00:00:00Z',
    });
    // The previous target is no longer the latest advance's: now it is in the past.
    expect((await advance('2025-03-01T00:00:00Z')).statusCode).toBe(400);
    expect((await advance('2025-04-01T00:00:00Z')).statusCode).toBe(200);
  });

  it('an external job runs outside any database transaction (it may open its own)', async () => {
    const { jobs, db } = t.app.services;
    const { transact } = await import('../../src/db/transaction.js');
    let ran = 0;
    jobs.register(
      'test.external',
      async (_job, { trx }) => {
        expect(trx.isTransaction).toBe(false);
        await transact(db, async (inner) => {
          await inner.selectFrom('test_clocks').select('id').limit(1).execute();
        });
        ran++;
      },
      { external: true },
    );
    const id = await jobs.schedule(db, { kind: 'test.external', runAt: new Date(Date.now() - 1000) });
    await jobs.runDue();
    expect(ran).toBe(1);
    expect(
      (await db.selectFrom('scheduled_jobs').select('state').where('id', '=', id).executeTakeFirstOrThrow())
        .state,
    ).toBe('done');
  });

  it('wall-clock jobs run on the system clock when due, never twice', async () => {
    const { jobs, db } = t.app.services;
    let runs = 0;
    jobs.register('test.wall', async () => {
      runs++;
    });
    await jobs.schedule(db, { kind: 'test.wall', runAt: new Date(Date.now() - 1000), dedupeKey: 'wall-1' });
    await jobs.schedule(db, { kind: 'test.wall', runAt: new Date(Date.now() - 1000), dedupeKey: 'wall-1' });
    await jobs.schedule(db, { kind: 'test.wall', runAt: new Date(Date.now() + 3_600_000) });
    await Promise.all([jobs.runDue(), jobs.runDue()]);
    expect(runs).toBe(1);
  });
});
