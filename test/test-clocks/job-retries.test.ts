import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ATTEMPTS_MAX, RETRY_DELAY_MAX_MS } from '../../src/jobs/scheduler.js';
import { ManualClock } from '../../src/kernel/clock.js';
import { startTestApp, type TestApp } from '../support/app.js';
import { ENGINE } from '../support/database.js';

const MINUTE = 60_000;
const HOUR = 60 * MINUTE;

describe(`job retry windows (${ENGINE})`, () => {
  let t: TestApp;
  const clock = new ManualClock('2030-01-01T00:00:00Z');
  let outage = true;
  beforeAll(async () => {
    t = await startTestApp({}, clock);
    const down = async () => {
      if (outage) throw new Error('provider down');
    };
    t.app.services.jobs.register('window.external', down, { external: true, retryForMs: 3 * HOUR });
    t.app.services.jobs.register('window.local', down, { retryForMs: 3 * HOUR });
    t.app.services.jobs.register('window.default', down, { external: true });
  });
  afterAll(() => t.close());

  const row = (id: string) =>
    t.app.services.db
      .selectFrom('scheduled_jobs')
      .select(['state', 'attempts', 'run_at'])
      .where('id', '=', id)
      .executeTakeFirstOrThrow();

  /** Runs due jobs minute by minute for `ms` of wall-clock time. */
  const runFor = async (ms: number) => {
    for (let elapsed = 0; elapsed < ms; elapsed += MINUTE) {
      await t.app.services.jobs.runDue();
      clock.advanceMs(MINUTE);
    }
  };

  it('a kind with retryForMs keeps retrying through an outage (backoff capped), then converges', async () => {
    const { jobs, db } = t.app.services;
    outage = true;
    const ext = await jobs.schedule(db, { kind: 'window.external', runAt: clock.now() });
    const local = await jobs.schedule(db, { kind: 'window.local', runAt: clock.now() });
    const dflt = await jobs.schedule(db, { kind: 'window.default', runAt: clock.now() });
    // A 2-hour outage: the default kind gives up after its 5 attempts, the others keep going.
    await runFor(2 * HOUR);
    expect(await row(dflt)).toMatchObject({ state: 'failed', attempts: ATTEMPTS_MAX });
    for (const id of [ext, local]) {
      const r = await row(id);
      expect(r.state).toBe('pending');
      expect(r.attempts).toBeGreaterThan(ATTEMPTS_MAX);
      // Never more than the cap away (plus the minute of this loop's step).
      expect(r.run_at.getTime() - clock.now().getTime()).toBeLessThanOrEqual(RETRY_DELAY_MAX_MS);
    }
    outage = false;
    await runFor(RETRY_DELAY_MAX_MS + MINUTE);
    expect(await row(ext)).toMatchObject({ state: 'done' });
    expect(await row(local)).toMatchObject({ state: 'done' });
  });

  it('gives up once the window after the first failure is over, and /metrics counts it by kind', async () => {
    const { jobs, db } = t.app.services;
    outage = true;
    const start = clock.now().getTime();
    const ext = await jobs.schedule(db, { kind: 'window.external', runAt: clock.now() });
    await runFor(3 * HOUR - 20 * MINUTE);
    expect((await row(ext)).state).toBe('pending');
    await runFor(40 * MINUTE);
    const failed = await t.app.services.db
      .selectFrom('scheduled_jobs')
      .select(['state', 'done_at'])
      .where('id', '=', ext)
      .executeTakeFirstOrThrow();
    expect(failed.state).toBe('failed');
    expect(failed.done_at!.getTime() - start).toBeGreaterThanOrEqual(3 * HOUR);
    expect(failed.done_at!.getTime() - start).toBeLessThanOrEqual(3 * HOUR + RETRY_DELAY_MAX_MS);

    const metrics = (await t.call('GET', '/metrics', undefined, { key: null })).body;
    expect(metrics).toMatch(/^reprise_jobs_failed\{kind="window\.external"\} 1$/m);
    expect(metrics).toMatch(/^reprise_jobs_failed\{kind="window\.default"\} 1$/m);
    expect(metrics).not.toMatch(/kind="window\.local"/);
  });
});
