import type { Kysely } from 'kysely';
import type { Db, Executor } from '../../db/schema.js';
import { transact } from '../../db/transaction.js';
import type { JobScheduler } from '../../jobs/scheduler.js';
import type { Clock } from '../../kernel/clock.js';
import { invalid, invalidState, notFound } from '../../kernel/errors.js';
import { newId } from '../../kernel/ids.js';
import { type TestClocksTable, type TestClockTables, testClockTables } from './tables.js';

export interface TestClock {
  id: string;
  name: string | null;
  frozenTime: Date;
  status: 'ready' | 'advancing';
  createdAt: Date;
}

/**
 * Default of `REPRISE_TEST_CLOCK_LEASE_MS`: a node advancing a clock holds it this long, renewed as
 * each due job starts; a crashed advance can be resumed once it has run out.
 */
export const ADVANCE_LEASE_MS = 10 * 60_000;

const toClock = (r: TestClocksTable): TestClock => ({
  id: r.id,
  name: r.name,
  frozenTime: r.frozen_time,
  status: r.status,
  createdAt: r.created_at,
});

/**
 * Simulated time. Customers attached to a test clock read their "now" from it; advancing it runs
 * every due job of those customers in time order, moving the clock to each job's time first, so a
 * job sees exactly the time the real scheduler would have run it at.
 */
export class TestClockService {
  readonly #db: Db;
  /** The shared database seen through this module's tables, for work outside a transaction. */
  readonly #tables: Kysely<TestClockTables>;
  readonly #clock: Clock;
  readonly #jobs: JobScheduler;
  readonly #leaseMs: number;

  constructor(db: Db, clock: Clock, jobs: JobScheduler, opts: { leaseMs?: number } = {}) {
    this.#db = db;
    this.#tables = testClockTables(db);
    this.#clock = clock;
    this.#jobs = jobs;
    this.#leaseMs = opts.leaseMs ?? ADVANCE_LEASE_MS;
  }

  async create(input: { frozenTime: Date; name?: string | undefined }, trx: Executor): Promise<TestClock> {
    const row: TestClocksTable = {
      id: newId('testClock'),
      name: input.name ?? null,
      frozen_time: input.frozenTime,
      status: 'ready',
      advancing_to: null,
      advance_lease_until: null,
      created_at: this.#clock.now(),
    };
    await testClockTables(trx).insertInto('test_clocks').values(row).execute();
    return toClock(row);
  }

  async get(id: string, trx: Executor = this.#db): Promise<TestClock> {
    const row = await testClockTables(trx)
      .selectFrom('test_clocks')
      .selectAll()
      .where('id', '=', id)
      .executeTakeFirst();
    if (!row) throw notFound('test clock', id);
    return toClock(row);
  }

  async list(page: { limit: number; after?: string | undefined }): Promise<TestClock[]> {
    let q = this.#tables
      .selectFrom('test_clocks')
      .selectAll()
      .orderBy('id')
      .limit(page.limit + 1);
    if (page.after) q = q.where('id', '>', page.after);
    return (await q.execute()).map(toClock);
  }

  /**
   * Moves the clock forward to `to`, running due jobs in order; answers when all have run.
   * Concurrent advances of one clock are refused (409 invalid_state) while the advancing node's
   * lease runs (renewed by each job). An advance to the target of the clock's latest advance
   * resumes it, even when the clock already stands there (the advance was interrupted after its
   * last job, or after it finished but before it answered): a client's retry converges.
   */
  async advance(id: string, to: Date): Promise<{ clock: TestClock; jobsRun: number }> {
    await transact(this.#db, async (trx) => {
      const now = this.#clock.now();
      const db = testClockTables(trx);
      const current = await db
        .selectFrom('test_clocks')
        .selectAll()
        .where('id', '=', id)
        .forUpdate()
        .executeTakeFirst();
      if (!current) throw notFound('test clock', id);
      const leaseHeld =
        current.advance_lease_until !== null && current.advance_lease_until.getTime() > now.getTime();
      if (current.status === 'advancing' && leaseHeld) {
        throw invalidState(
          `Test clock ${id} is already advancing to ${current.advancing_to?.toISOString()}; retry after ${current.advance_lease_until?.toISOString()} at the latest.`,
        );
      }
      // The latest advance went (or was going) to this very time: run it again to its end.
      const resumes = current.advancing_to !== null && current.advancing_to.getTime() === to.getTime();
      const ahead = to.getTime() > current.frozen_time.getTime();
      if (!ahead && !(resumes && to.getTime() === current.frozen_time.getTime())) {
        throw invalid(
          'frozenTime',
          `must be after the clock's current time ${current.frozen_time.toISOString()}`,
        );
      }
      await db
        .updateTable('test_clocks')
        .set({
          status: 'advancing',
          advancing_to: to,
          advance_lease_until: new Date(now.getTime() + this.#leaseMs),
        })
        .where('id', '=', id)
        .execute();
    });
    let jobsRun: number;
    try {
      jobsRun = await this.#jobs.runDueForClock(id, to, async (at, trx) => {
        const db = testClockTables(trx);
        await db
          .updateTable('test_clocks')
          .set({ frozen_time: at })
          .where('id', '=', id)
          .where('frozen_time', '<', at)
          .execute();
        // Still alive: keep the lease for the job about to run.
        await db
          .updateTable('test_clocks')
          .set({ advance_lease_until: new Date(this.#clock.now().getTime() + this.#leaseMs) })
          .where('id', '=', id)
          .where('status', '=', 'advancing')
          .execute();
      });
    } catch (error) {
      // The clock stays where the last job left it, ready for another try (which resumes it).
      await this.#tables
        .updateTable('test_clocks')
        .set({ status: 'ready', advance_lease_until: null })
        .where('id', '=', id)
        .execute();
      throw error;
    }
    // `advancing_to` stays: it names the latest advance, so a retry of it answers instead of refusing.
    const row = await this.#tables
      .updateTable('test_clocks')
      .set({ frozen_time: to, status: 'ready', advance_lease_until: null })
      .where('id', '=', id)
      .returningAll()
      .executeTakeFirstOrThrow();
    return { clock: toClock(row), jobsRun };
  }
}
