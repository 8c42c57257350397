import { type Kysely, type Selectable, sql } from 'kysely';
import { Gauge, type Registry } from 'prom-client';
import type { Db, Executor } from '../db/schema.js';
import { transact } from '../db/transaction.js';
import { assert } from '../kernel/assert.js';
import type { Clock } from '../kernel/clock.js';
import { newId } from '../kernel/ids.js';
import { type JobTables, jobTables, type ScheduledJobsTable } from './tables.js';

export interface Job {
  id: string;
  kind: string;
  runAt: Date;
  customerId: string | null;
  testClockId: string | null;
  payload: unknown;
  attempts: number;
}

/** Runs one job inside its own transaction; `now` is the job's due time on a test clock. */
export type JobHandler = (job: Job, ctx: { trx: Executor; now: Date }) => Promise<void>;

/**
 * Runs a claimed batch of due wall-clock jobs of one kind (outside any transaction; each job is
 * leased for `leaseMs`). The handler completes the jobs it finished with `complete()` in its own
 * transactions, and answers the failures by job id; a job neither completed nor failed (a crash,
 * an answer still pending) is claimed again when its lease lapses, so the work must be idempotent.
 */
export type BatchHandler = (jobs: Job[], now: Date) => Promise<Map<string, string>>;

export interface BatchOptions {
  /** Jobs claimed per batch. */
  size: number;
  /** Batches one node runs at once (one can write while another waits on a provider). */
  parallel?: number;
  /** How long a claimed batch is protected from other runners. */
  leaseMs?: number;
}

export interface ScheduleInput {
  kind: string;
  runAt: Date;
  customerId?: string | null;
  testClockId?: string | null;
  payload?: unknown;
  /** A second job with the same key is not created (e.g. `renewal:sub_…:3`). */
  dedupeKey?: string;
}

type JobRow = Pick<
  Selectable<ScheduledJobsTable>,
  'id' | 'kind' | 'run_at' | 'customer_id' | 'test_clock_id' | 'payload' | 'attempts' | 'first_failed_at'
>;

export interface JobKindOptions {
  /** See `JobScheduler.register`. */
  external?: boolean;
  /**
   * Retry a failing job for this long after its first failure (then it fails for good), instead
   * of `ATTEMPTS_MAX` attempts: for work that must converge through a long outage (money owed).
   */
  retryForMs?: number;
}

export const ATTEMPTS_MAX = 5;
/** How long a claimed external job is protected from a second runner. */
const EXTERNAL_LEASE_MS = 5 * 60_000;
const RETRY_BASE_MS = 60_000;
/** Longest wait between two attempts: a long retry window still retries often enough to converge soon after an outage. */
export const RETRY_DELAY_MAX_MS = 15 * 60_000;
/** Longest retry window a kind may ask for (a bound, like every retry). */
export const RETRY_FOR_MAX_MS = 30 * 24 * 60 * 60_000;
/** Jobs one batch claims at most. */
export const BATCH_SIZE_MAX = 5_000;
/** How long one poll runs a batch kind before the other jobs get their turn. */
const BATCH_BUDGET_MS = 5_000;
/** Polls one tick runs back to back while there is work (then the next tick goes on). */
const DRAIN_POLLS_MAX = 1_000;
/** Bound of one advance or one poll: more jobs than this in one go means a runaway schedule. */
export const JOBS_PER_RUN_MAX = 100_000;
/**
 * How long a finished job is kept: long enough to inspect a failure (its last_error) over a
 * weekend and for its dedupe key to refuse a late duplicate of the change that scheduled it; the
 * ledger, payments and audit log hold the lasting record, so a week is enough.
 */
export const FINISHED_RETENTION_MS = 7 * 24 * 60 * 60_000;
/** Rows one pruning statement deletes: short statements, no long lock on the table. */
export const PRUNE_BATCH = 1_000;
/** Statements one pruning run issues at most; a larger backlog is worked off over later runs. */
export const PRUNE_BATCHES_MAX = 100;
/** How often the poller prunes. */
export const PRUNE_INTERVAL_MS = 60 * 60_000;

/**
 * Time-triggered work. Modules register handlers by kind and schedule jobs in the transaction that
 * makes them due (an outbox of the future). Jobs of customers on a test clock run only when that
 * clock advances past them, in time order; the others are polled on the wall clock with
 * `FOR UPDATE SKIP LOCKED`, so many nodes can share the work without running a job twice.
 */
export class JobScheduler {
  readonly #db: Db;
  /** The shared database seen through the scheduler's tables, for work outside a transaction. */
  readonly #tables: Kysely<JobTables>;
  readonly #clock: Clock;
  readonly #handlers = new Map<
    string,
    { handler: JobHandler; external: boolean; retryForMs: number | undefined }
  >();
  readonly #batches = new Map<string, { handler: BatchHandler } & Required<BatchOptions>>();
  #timer: NodeJS.Timeout | undefined;
  #running: Promise<unknown> | undefined;
  #prunedAtMs: number | undefined;

  constructor(db: Db, clock: Clock) {
    this.#db = db;
    this.#tables = jobTables(db);
    this.#clock = clock;
  }

  /**
   * `external`: the handler talks to the outside world (a payment provider) and must not hold a
   * database transaction while it waits. It is claimed for a lease in a short transaction, runs
   * with the database itself as `trx`, and is marked done afterwards; a crash re-runs it after the
   * lease, so it must be idempotent.
   * `retryForMs`: a failing job is retried (backoff doubling from a minute, capped at
   * `RETRY_DELAY_MAX_MS`) until this long after its first failure; by default `ATTEMPTS_MAX`
   * attempts. A job that gives up is `failed` and counted in /metrics (`reprise_jobs_failed`).
   */
  register(kind: string, handler: JobHandler, opts: JobKindOptions = {}): void {
    assert(!this.#handlers.has(kind), `job kind ${kind} registered twice`);
    const { retryForMs } = opts;
    assert(
      retryForMs === undefined ||
        (Number.isSafeInteger(retryForMs) && retryForMs > 0 && retryForMs <= RETRY_FOR_MAX_MS),
      `job kind ${kind}: retryForMs out of range`,
    );
    this.#handlers.set(kind, { handler, external: opts.external ?? false, retryForMs });
  }

  /**
   * Runs the due wall-clock jobs of `kind` (registered with `register`, which still runs a test
   * clock's jobs one at a time, in time order) a batch at a time: claimed with `FOR UPDATE SKIP
   * LOCKED` and leased in one short transaction, so several nodes share a run without taking a job
   * twice.
   */
  registerBatch(kind: string, handler: BatchHandler, opts: BatchOptions): void {
    assert(this.#handlers.has(kind), `job kind ${kind}: register its one-job handler first`);
    assert(!this.#batches.has(kind), `job kind ${kind} has a batch handler already`);
    const parallel = opts.parallel ?? 1;
    const leaseMs = opts.leaseMs ?? EXTERNAL_LEASE_MS;
    assert(Number.isInteger(opts.size) && opts.size >= 1 && opts.size <= BATCH_SIZE_MAX, 'batch size');
    assert(Number.isInteger(parallel) && parallel >= 1 && parallel <= 16, 'parallel batches');
    assert(Number.isInteger(leaseMs) && leaseMs >= 1_000, 'batch lease');
    this.#batches.set(kind, { handler, size: opts.size, parallel, leaseMs });
  }

  /**
   * Claims up to `limit` due wall-clock jobs of `kind` for `leaseMs` (moves their run_at past the
   * lease) in its own transaction, oldest first.
   */
  async #claimRows(kind: string, limit: number, leaseMs: number): Promise<JobRow[]> {
    const now = this.#clock.now();
    const due = this.#tables
      .selectFrom('scheduled_jobs')
      .select('id')
      .where('kind', '=', kind)
      .where('test_clock_id', 'is', null)
      .where('state', '=', 'pending')
      .where('run_at', '<=', now)
      .orderBy('run_at')
      .orderBy('id')
      .limit(limit)
      .forUpdate()
      .skipLocked();
    const rows = await this.#tables
      .updateTable('scheduled_jobs')
      .set({ run_at: new Date(now.getTime() + leaseMs) })
      .where(sql<boolean>`id = ANY(ARRAY(${due}))`)
      .returning([
        'id',
        'kind',
        'run_at',
        'customer_id',
        'test_clock_id',
        'payload',
        'attempts',
        'first_failed_at',
      ])
      .execute();
    // The lease moved run_at: hand the handler the time each job was due (its claim time).
    return rows.map((r) => ({ ...r, run_at: now }));
  }

  /** Marks jobs done in the caller's transaction (one statement), e.g. with the work they did. */
  async complete(trx: Executor, ids: readonly string[], now: Date): Promise<void> {
    if (ids.length === 0) return;
    await jobTables(trx)
      .updateTable('scheduled_jobs')
      .set({ state: 'done', done_at: now, finished_at: this.#clock.now() })
      .where('id', 'in', [...ids])
      .where('state', '=', 'pending')
      .execute();
  }

  /**
   * Marks pending jobs done by their dedupe keys in the caller's transaction (one statement): work
   * made moot by the transaction, e.g. the reconciliation of a payment whose capture it records.
   */
  async completeByKeys(trx: Executor, keys: readonly string[], now: Date): Promise<void> {
    if (keys.length === 0) return;
    await jobTables(trx)
      .updateTable('scheduled_jobs')
      .set({ state: 'done', done_at: now, finished_at: this.#clock.now() })
      .where('dedupe_key', 'in', [...keys])
      .where('state', '=', 'pending')
      .execute();
  }

  /** Runs batches of `kind` until none is due or `budgetMs` passed; returns the jobs claimed. */
  async #runBatches(kind: string, budgetMs: number): Promise<number> {
    const entry = this.#batches.get(kind)!;
    const until = performance.now() + budgetMs;
    let claimed = 0;
    const lane = async () => {
      while (performance.now() < until) {
        const rows = await this.#claimRows(kind, entry.size, entry.leaseMs);
        claimed += rows.length;
        if (rows.length === 0) return;
        const now = this.#clock.now();
        let failures: Map<string, string>;
        try {
          failures = await entry.handler(rows.map(toJob), now);
        } catch (error) {
          const message = error instanceof Error ? error.message : String(error);
          failures = new Map(rows.map((r) => [r.id, message]));
        }
        if (failures.size > 0) {
          await transact(this.#db, async (trx) => {
            for (const row of rows) {
              const failure = failures.get(row.id);
              if (failure !== undefined) await this.#settle(trx, row, now, failure);
            }
          });
        }
        if (rows.length < entry.size) return;
      }
    };
    await Promise.all(Array.from({ length: entry.parallel }, lane));
    return claimed;
  }

  /** Failed jobs (kept `FINISHED_RETENTION_MS`) by kind, for the /metrics gauge. */
  async failedByKind(): Promise<Map<string, number>> {
    const rows = await this.#tables
      .selectFrom('scheduled_jobs')
      .select(['kind', (eb) => eb.fn.countAll<string | number>().as('n')])
      .where('state', '=', 'failed')
      .groupBy('kind')
      .execute();
    return new Map(rows.map((r) => [r.kind, Number(r.n)]));
  }

  /** Adds `reprise_jobs_failed{kind}`: jobs that gave up, so operators see what did not converge. */
  registerMetrics(registry: Registry): void {
    const failedByKind = () => this.failedByKind();
    new Gauge({
      name: 'reprise_jobs_failed',
      help: 'Scheduled jobs that gave up (state failed, kept a week) by kind',
      labelNames: ['kind'] as const,
      registers: [registry],
      async collect() {
        const counts = await failedByKind();
        this.reset();
        for (const [kind, n] of counts) this.set({ kind }, n);
      },
    });
  }

  async schedule(trx: Executor, input: ScheduleInput): Promise<string> {
    const id = newId('job');
    await jobTables(trx)
      .insertInto('scheduled_jobs')
      .values({
        id,
        kind: input.kind,
        run_at: input.runAt,
        test_clock_id: input.testClockId ?? null,
        customer_id: input.customerId ?? null,
        payload: JSON.stringify(input.payload ?? {}),
        state: 'pending',
        last_error: null,
        dedupe_key: input.dedupeKey ?? null,
        created_at: this.#clock.now(),
        done_at: null,
        finished_at: null,
      })
      .onConflict((oc) => oc.column('dedupe_key').doNothing())
      .execute();
    return id;
  }

  /**
   * Schedules many jobs in one statement; a dedupe key already taken creates nothing. Returns the
   * id of each job created, by its dedupe key (jobs without a key are always created).
   */
  async scheduleMany(trx: Executor, inputs: readonly ScheduleInput[]): Promise<Map<string, string>> {
    const created = new Map<string, string>();
    if (inputs.length === 0) return created;
    // 12 bind parameters a row: 5,000 rows stay within the protocol's 65,535.
    assert(inputs.length <= BATCH_SIZE_MAX, `${inputs.length} jobs in one statement`);
    const now = this.#clock.now();
    const rows = await jobTables(trx)
      .insertInto('scheduled_jobs')
      .values(
        inputs.map((input) => ({
          id: newId('job'),
          kind: input.kind,
          run_at: input.runAt,
          test_clock_id: input.testClockId ?? null,
          customer_id: input.customerId ?? null,
          payload: JSON.stringify(input.payload ?? {}),
          state: 'pending' as const,
          last_error: null,
          dedupe_key: input.dedupeKey ?? null,
          created_at: now,
          done_at: null,
          finished_at: null,
        })),
      )
      .onConflict((oc) => oc.column('dedupe_key').doNothing())
      .returning(['id', 'dedupe_key'])
      .execute();
    for (const r of rows) if (r.dedupe_key !== null) created.set(r.dedupe_key, r.id);
    return created;
  }

  /**
   * Runs, one by one in (run_at, id) order, every pending job of a test clock due at or before
   * `upTo`. `beforeEach` runs in the job's transaction first (the clock moves to the job's time).
   */
  async runDueForClock(
    testClockId: string,
    upTo: Date,
    beforeEach: (at: Date, trx: Executor) => Promise<void>,
  ): Promise<number> {
    for (let ran = 0; ran < JOBS_PER_RUN_MAX; ran++) {
      const done = await this.#runNext(
        testClockId,
        () => upTo,
        async (row, trx) => {
          await beforeEach(row.run_at, trx);
          return row.run_at;
        },
      );
      if (!done) return ran;
    }
    throw new Error(`test clock ${testClockId}: more than ${JOBS_PER_RUN_MAX} jobs in one advance`);
  }

  /**
   * One poll of wall-clock jobs: batches of the batch kinds (for up to `BATCH_BUDGET_MS` each),
   * then up to `batch` due jobs, each in its own transaction. Returns how many ran.
   */
  async runDue(batch = 100): Promise<number> {
    let batched = 0;
    for (const kind of this.#batches.keys()) batched += await this.#runBatches(kind, BATCH_BUDGET_MS);
    let ran = 0;
    while (
      ran < batch &&
      (await this.#runNext(
        null,
        () => this.#clock.now(),
        async () => this.#clock.now(),
      ))
    )
      ran++;
    return batched + ran;
  }

  /**
   * Locks the next due job of a clock (null: the wall clock) and runs it in its own transaction;
   * `at` answers the time the handler sees. False when nothing is due.
   */
  async #runNext(
    testClockId: string | null,
    dueBy: () => Date,
    at: (row: JobRow, trx: Executor) => Promise<Date>,
  ): Promise<boolean> {
    // On the wall clock, kinds with a batch handler are the batches' alone: taken one at a time
    // here they would go the slow way (a million-renewal run sent 1.3 % of its renewals, and
    // their charges, through this path, and finished on a tail of one-by-one charge jobs).
    const batchKinds = testClockId === null ? [...this.#batches.keys()] : [];
    const claimed = await transact(this.#db, async (trx) => {
      const db = jobTables(trx);
      let query = db
        .selectFrom('scheduled_jobs')
        .selectAll()
        .where('test_clock_id', testClockId === null ? 'is' : '=', testClockId)
        .where('state', '=', 'pending')
        .where('run_at', '<=', dueBy());
      if (batchKinds.length > 0) query = query.where('kind', 'not in', batchKinds);
      const row = await query
        .orderBy('run_at')
        .orderBy('id')
        .limit(1)
        .forUpdate()
        .skipLocked()
        .executeTakeFirst();
      if (!row) return null;
      const now = await at(row, trx);
      if (this.#handlers.get(row.kind)?.external) {
        // Claim it for a lease; the work happens after this transaction commits. A test clock's
        // job needs none: one advance at a time runs them (the clock's own lease), and a lease in
        // simulated time would put it past the target, so the retry of an advance interrupted
        // during the job would end without running it. It stays due, at its own time.
        if (testClockId === null) {
          await db
            .updateTable('scheduled_jobs')
            .set({ run_at: new Date(now.getTime() + EXTERNAL_LEASE_MS) })
            .where('id', '=', row.id)
            .execute();
        }
        return { row, now };
      }
      await this.#execute(trx, row, now);
      return 'done' as const;
    });
    if (claimed === null) return false;
    if (claimed !== 'done') await this.#executeExternal(claimed.row, claimed.now);
    return true;
  }

  async #executeExternal(row: JobRow, now: Date): Promise<void> {
    const entry = this.#handlers.get(row.kind)!;
    let failure: string | undefined;
    try {
      await entry.handler(toJob(row), { trx: this.#db, now });
    } catch (error) {
      failure = error instanceof Error ? error.message : String(error);
    }
    await transact(this.#db, (trx) => this.#settle(trx, row, now, failure));
  }

  async #settle(trx: Executor, row: JobRow, now: Date, failure: string | undefined): Promise<void> {
    const db = jobTables(trx);
    if (failure === undefined) {
      await db
        .updateTable('scheduled_jobs')
        .set({ state: 'done', done_at: now, finished_at: this.#clock.now() })
        .where('id', '=', row.id)
        .execute();
      return;
    }
    const attempts = row.attempts + 1;
    const firstFailedAt = row.first_failed_at ?? now;
    const retryForMs = this.#handlers.get(row.kind)?.retryForMs;
    const givesUp =
      retryForMs === undefined
        ? attempts >= ATTEMPTS_MAX
        : now.getTime() - firstFailedAt.getTime() >= retryForMs;
    await db
      .updateTable('scheduled_jobs')
      .set({
        attempts,
        last_error: failure.slice(0, 2000),
        first_failed_at: firstFailedAt,
        ...(givesUp
          ? { state: 'failed' as const, done_at: now, finished_at: this.#clock.now() }
          : { run_at: new Date(now.getTime() + retryDelayMs(attempts)) }),
      })
      .where('id', '=', row.id)
      .execute();
  }

  async #execute(trx: Executor, row: JobRow, now: Date): Promise<void> {
    const entry = this.#handlers.get(row.kind);
    let failure: string | undefined;
    try {
      if (!entry) throw new Error(`no handler for job kind '${row.kind}'`);
      // A savepoint, so a failing handler's partial writes go while the retry bookkeeping stays.
      await runInSavepoint(trx, () => entry.handler(toJob(row), { trx, now }));
    } catch (error) {
      failure = error instanceof Error ? error.message : String(error);
    }
    await this.#settle(trx, row, now, failure);
  }

  /**
   * Deletes jobs finished (done or failed) more than `FINISHED_RETENTION_MS` ago on the wall
   * clock, oldest first, `batch` rows per statement and at most `batches` statements. Rows another
   * node is pruning are skipped. Returns how many were deleted.
   */
  async prune(opts: { batch?: number; batches?: number } = {}): Promise<number> {
    const batch = opts.batch ?? PRUNE_BATCH;
    const batches = opts.batches ?? PRUNE_BATCHES_MAX;
    const cutoff = new Date(this.#clock.now().getTime() - FINISHED_RETENTION_MS);
    let deleted = 0;
    for (let i = 0; i < batches; i++) {
      const doomed = this.#tables
        .selectFrom('scheduled_jobs')
        .select('id')
        .where('state', '<>', 'pending')
        .where('finished_at', '<', cutoff)
        .orderBy('finished_at')
        .limit(batch)
        .forUpdate()
        .skipLocked();
      // `= ANY(ARRAY(…))` probes the primary key per id; `IN (subquery)` can be planned as a
      // semi-join that scans the whole table on every batch.
      const result = await this.#tables
        .deleteFrom('scheduled_jobs')
        .where(sql<boolean>`id = ANY(ARRAY(${doomed}))`)
        .executeTakeFirst();
      const n = Number(result.numDeletedRows);
      deleted += n;
      if (n < batch) break;
    }
    return deleted;
  }

  /** Prunes if the last pruning of this node is `PRUNE_INTERVAL_MS` old (or never happened). */
  async #pruneIfDue(): Promise<void> {
    const nowMs = this.#clock.now().getTime();
    if (this.#prunedAtMs !== undefined && nowMs - this.#prunedAtMs < PRUNE_INTERVAL_MS) return;
    this.#prunedAtMs = nowMs;
    await this.prune();
  }

  /** Polls wall-clock jobs every `intervalMs`, and prunes finished ones hourly, until stop(). */
  start(intervalMs = 1_000): void {
    if (this.#timer) return;
    this.#timer = setInterval(() => {
      if (this.#running) return;
      this.#running = this.#drain()
        .then(() => this.#pruneIfDue())
        .catch(() => undefined)
        .finally(() => {
          this.#running = undefined;
        });
    }, intervalMs);
    this.#timer.unref();
  }

  /** Polls again at once while polls find work (a renewal run), up to a bound per tick. */
  async #drain(): Promise<void> {
    for (let polls = 0; polls < DRAIN_POLLS_MAX && this.#timer; polls++) {
      if ((await this.runDue()) === 0) return;
    }
  }

  async stop(): Promise<void> {
    if (this.#timer) clearInterval(this.#timer);
    this.#timer = undefined;
    await this.#running;
  }
}

/** Wait before attempt `attempts + 1`: 1, 2, 4, 8… minutes, capped (the exponent too, so it stays finite). */
export function retryDelayMs(attempts: number): number {
  return Math.min(RETRY_BASE_MS * 2 ** Math.min(attempts - 1, 30), RETRY_DELAY_MAX_MS);
}

function toJob(row: JobRow): Job {
  return {
    id: row.id,
    kind: row.kind,
    runAt: row.run_at,
    customerId: row.customer_id,
    testClockId: row.test_clock_id,
    payload: row.payload,
    attempts: row.attempts,
  };
}

let savepointSeq = 0;

/** Runs `fn` in a savepoint of `trx`: a failure undoes its writes and is rethrown; the transaction goes on. */
export async function runInSavepoint<T>(trx: Executor, fn: () => Promise<T>): Promise<T> {
  const name = sql.id(`job_${++savepointSeq}`);
  await sql`SAVEPOINT ${name}`.execute(trx);
  try {
    const value = await fn();
    await sql`RELEASE SAVEPOINT ${name}`.execute(trx);
    return value;
  } catch (error) {
    await sql`ROLLBACK TO SAVEPOINT ${name}`.execute(trx);
    throw error;
  }
}
