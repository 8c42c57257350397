import { randomBytes } from 'node:crypto';
import { closeSync, mkdirSync, mkdtempSync, openSync, readSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { sql } from 'kysely';
import { createApp } from '../src/app.js';
import { loadConfig } from '../src/config.js';
import { MasterKey } from '../src/crypto/envelope.js';
import { adminQuery, withDatabase } from '../src/db/admin.js';
import { type DatabaseHandle, openDatabase } from '../src/db/engine.js';
import { systemClock } from '../src/kernel/clock.js';
import { LedgerService } from '../src/modules/ledger/service.js';
import { progress } from './support/load.js';
import { pgbenchTpcb } from './support/pgbench.js';
import { type BenchProcess, startProduct } from './support/processes.js';
import { type SeededRun, SIMULATOR_ID, seedRenewals } from './support/seed-renewals.js';
import { BENCH_KEY, freePort } from './support/server.js';

export interface RenewalsOptions {
  subscriptions: number;
  /** Server processes sharing the run (`--workers`). */
  workers: number;
  /** kill -9 one worker at ~30 % and start it again. */
  kill: boolean;
  /** `--nodes K`: a run with 1 node, then one with K (fresh seed each), and their ratio. */
  nodes: number | undefined;
  /** On PostgreSQL, also the same bench on PGlite at min(N, 100k), and the ratio. */
  comparePglite: boolean;
  /** The run stops itself (and fails) after this; default derived from N. */
  deadlineSeconds: number | undefined;
  /** Length of the pgbench baseline. */
  pgbenchSeconds: number;
  /** Seed (and count what was written), no servers, no renewals: to time the seed at scale. */
  seedOnly?: boolean;
}

/**
 * Every renewal the product writes, as one subscription renewed once (ADR 0014/0015): the cycle
 * invoice created and finalised, paid by one succeeded payment, the subscription renewed and its
 * entitlement moved. Each of these event types is counted and must come to N.
 */
export const EVENTS_PER_RENEWAL = [
  'invoice.created',
  'invoice.finalized',
  'invoice.paid',
  'payment.succeeded',
  'subscription.renewed',
  'entitlement.updated',
] as const;

/**
 * Diagnostic (PostgreSQL): with BENCH_LOG_STATEMENTS=<the server's log file>, the bench database
 * logs every statement (`ALTER DATABASE … SET log_statement = 'all'`, this database only) and the
 * run counts the statements logged while it renewed. Logging slows the server: not for figures.
 */
const STATEMENT_LOG = process.env.BENCH_LOG_STATEMENTS || undefined;

/** The PGlite comparison runs at most this many subscriptions (issue 8: "at 100k"). */
const PGLITE_MAX = 100_000;
/** An external job claimed by a worker that died is protected this long (scheduler's lease). */
const EXTERNAL_LEASE_S = 300;
/** Above this many subscriptions the simulator's settlement report is not fetched (its size). */
const SETTLEMENT_CHECK_MAX = 200_000;

interface RunResult {
  engine: 'postgres' | 'pglite';
  subscriptions: number;
  workers: number;
  killed: boolean;
  seedSeconds: number;
  attachSeconds: number;
  renewSeconds: number;
  renewalsPerSec: number;
  /** Time within the run when no renewal completed for 4 s or more (e.g. a dead worker's lease). */
  stalledSeconds: number;
  peakRssBytes: number[];
  /** CPU seconds of the server processes (the killed one included) per renewal, in ms. */
  serverCpuMsPerRenewal: number;
  /** PostgreSQL only: seconds until every cycle invoice was finalised (the cycle jobs' phase). */
  allInvoicedSeconds: number | null;
  /** PostgreSQL only: committed transactions on the bench database per renewal. */
  xactPerRenewal: number | null;
  jobs: string;
  failures: number;
  checks: string[];
  events: Record<string, number>;
}

export async function benchRenewals(opts: RenewalsOptions) {
  const serverUrl = process.env.DATABASE_URL || undefined;
  const runId = Date.now().toString(36);
  const n = opts.subscriptions;
  if (!Number.isSafeInteger(n) || n < 1) throw new Error('--subscriptions must be a positive integer');
  if (opts.seedOnly) {
    const run = await runOnce({
      ...opts,
      engine: serverUrl ? 'postgres' : 'pglite',
      ...(serverUrl ? { serverUrl } : {}),
      runId: `${runId}s`,
      workers: 1,
      kill: false,
    });
    return {
      name: 'renewals',
      engine: serverUrl ? 'postgres' : 'pglite',
      subscriptions: n,
      seedOnly: true,
      seedSeconds: round1(run.seedSeconds),
      attachSeconds: round1(run.attachSeconds),
      simulatorPeakRssMiB: mib(Math.max(...run.peakRssBytes)),
      checks: run.checks.length === 0 ? 'all passed' : run.checks.join('; '),
      failures: run.failures,
    };
  }
  if (!serverUrl) {
    if (opts.workers > 1 || (opts.nodes ?? 1) > 1)
      throw new Error('PGlite is one process: --workers and --nodes need DATABASE_URL (PostgreSQL)');
    progress('DATABASE_URL unset: PGlite (embedded), one server process, no pgbench ratio');
    const run = await runOnce({ ...opts, engine: 'pglite', runId: `${runId}p`, workers: 1 });
    return { name: 'renewals', engine: 'pglite', ...flatten(run), failures: run.failures };
  }

  const runs: RunResult[] = [];
  let one: RunResult | undefined;
  let many: RunResult;
  if (opts.nodes !== undefined) {
    one = await runOnce({
      ...opts,
      engine: 'postgres',
      serverUrl,
      runId: `${runId}a`,
      workers: 1,
      kill: false,
    });
    runs.push(one);
    many = await runOnce({ ...opts, engine: 'postgres', serverUrl, runId: `${runId}b`, workers: opts.nodes });
  } else {
    many = await runOnce({ ...opts, engine: 'postgres', serverUrl, runId: `${runId}a` });
  }
  runs.push(many);
  // The baseline on a quiet server, same run.
  const pgbenchTps = await pgbenchTpcb(serverUrl, runId, opts.pgbenchSeconds);
  let pglite: RunResult | undefined;
  if (opts.comparePglite) {
    pglite = await runOnce({
      ...opts,
      subscriptions: Math.min(n, PGLITE_MAX),
      engine: 'pglite',
      runId: `${runId}p`,
      workers: 1,
      kill: false,
    });
    runs.push(pglite);
  }
  const failures = runs.reduce((s, r) => s + r.failures, 0);
  return {
    name: 'renewals',
    engine: 'postgres',
    ...flatten(many),
    pgbenchTps: Math.round(pgbenchTps),
    ratio: many.renewalsPerSec / pgbenchTps,
    ...(one
      ? {
          oneNodePerSec: round1(one.renewalsPerSec),
          oneNodeRatio: one.renewalsPerSec / pgbenchTps,
          nodesVsOne: many.renewalsPerSec / one.renewalsPerSec,
          oneNodeFailures: one.failures,
        }
      : {}),
    ...(pglite
      ? {
          pgliteSubscriptions: pglite.subscriptions,
          pglitePerSec: round1(pglite.renewalsPerSec),
          pgliteVsPostgres: pglite.renewalsPerSec / many.renewalsPerSec,
          pglitePeakRssMiB: mib(Math.max(...pglite.peakRssBytes)),
          pgliteFailures: pglite.failures,
        }
      : {}),
    failures,
  };
}

function flatten(r: RunResult) {
  return {
    subscriptions: r.subscriptions,
    workers: r.workers,
    killed: r.killed,
    seedSeconds: round1(r.seedSeconds),
    attachSeconds: round1(r.attachSeconds),
    renewSeconds: round1(r.renewSeconds),
    renewalsPerSec: round1(r.renewalsPerSec),
    stalledSeconds: round1(r.stalledSeconds),
    ...(r.allInvoicedSeconds !== null ? { allInvoicedSeconds: round1(r.allInvoicedSeconds) } : {}),
    serverCpuMsPerRenewal: round1(r.serverCpuMsPerRenewal),
    ...(r.xactPerRenewal !== null ? { xactPerRenewal: round1(r.xactPerRenewal) } : {}),
    jobs: r.jobs,
    peakRssMiB: r.peakRssBytes.map(mib).join(' / '),
    eventsPerRenewal: Object.entries(r.events)
      .map(([t, c]) => `${t}=${round1(c / r.subscriptions)}`)
      .join(' '),
    checks: r.checks.length === 0 ? 'all passed' : r.checks.join('; '),
  };
}

const round1 = (x: number) => Math.round(x * 10) / 10;
const mib = (bytes: number) => Math.round(bytes / 1024 / 1024);

/**
 * One run: a fresh database, the simulator in its own process, the seed, `workers` server
 * processes renewing until every subscription is renewed (or the deadline), then the checks.
 */
async function runOnce(
  o: RenewalsOptions & { engine: 'postgres' | 'pglite'; serverUrl?: string; runId: string },
): Promise<RunResult> {
  const n = o.subscriptions;
  const label = `${o.engine}, ${n} subscriptions, ${o.workers} worker${o.workers > 1 ? 's' : ''}${o.kill ? ', kill' : ''}`;
  progress(`renewals run (${label})`);
  const dir = mkdtempSync(join(tmpdir(), 'reprise-renewals-'));
  const masterKey = MasterKey.generate();
  const simulatorSecrets = {
    REPRISE_SIMULATOR_API_KEY: `sk_bench_${randomBytes(24).toString('hex')}`,
    REPRISE_SIMULATOR_WEBHOOK_SECRET: `whsec_bench_${randomBytes(24).toString('hex')}`,
  };
  const simPort = await freePort();
  const ports: number[] = [];
  for (let i = 0; i < o.workers; i++) ports.push(await freePort());
  const dbName = `reprise_bench_renewals_${o.runId}`;
  let databaseUrl: string | undefined;
  if (o.engine === 'postgres') {
    const url = o.serverUrl!;
    await adminQuery(url, `CREATE DATABASE "${dbName}"`);
    await adminQuery(url, `CREATE DATABASE "${dbName}_keys"`);
    databaseUrl = withDatabase(url, dbName);
    if (STATEMENT_LOG) await adminQuery(url, `ALTER DATABASE "${dbName}" SET log_statement = 'all'`);
  }
  const baseEnv: Record<string, string> = {
    HOST: '127.0.0.1',
    REPRISE_SEED: 'none',
    REPRISE_BOOTSTRAP_KEY: BENCH_KEY,
    REPRISE_RATE_LIMIT_PER_MINUTE: '10000000',
    LOG_LEVEL: 'warn',
    REPRISE_MASTER_KEY: masterKey.toBase64(),
    REPRISE_SIMULATORS: `${SIMULATOR_ID}=http://127.0.0.1:${simPort}`,
    ...simulatorSecrets,
    ...(databaseUrl
      ? { DATABASE_URL: databaseUrl, REPRISE_KEYSTORE_URL: withDatabase(o.serverUrl!, `${dbName}_keys`) }
      : { DATABASE_URL: '', REPRISE_KEYSTORE_URL: '' }),
  };
  // PGlite: one data directory, the bench's while it seeds, then the one server's.
  const dataDirOf = (i: number) => (databaseUrl ? join(dir, `node-${i + 1}`) : join(dir, 'data'));
  const envOf = (i: number) => ({ ...baseEnv, PORT: String(ports[i]), REPRISE_DATA_DIR: dataDirOf(i) });
  const processes: BenchProcess[] = [];
  const servers: BenchProcess[] = [];
  const checks: string[] = [];
  let handle: DatabaseHandle | undefined;
  try {
    const simulator = await startProduct({
      name: 'psp-simulator',
      args: [
        'psp-simulator',
        '--port',
        String(simPort),
        // Webhooks go to the first node, as through a load balancer to one address.
        // BENCH_NO_WEBHOOKS=1 (a diagnostic): the simulator sends none, to see their share.
        ...(process.env.BENCH_NO_WEBHOOKS
          ? []
          : ['--webhook-url', `http://127.0.0.1:${ports[0]}/v1/providers/${SIMULATOR_ID}/webhooks`]),
      ],
      port: simPort,
      // The simulator keeps every method, charge and idempotent answer in memory: room for 1M.
      env: { ...simulatorSecrets, NODE_OPTIONS: '--max-old-space-size=8192' },
      logPath: join(dir, 'simulator.log'),
      healthPath: '/v1/charges?idempotency_key=health',
      headers: { authorization: `Bearer ${simulatorSecrets.REPRISE_SIMULATOR_API_KEY}` },
    });
    processes.push(simulator);

    // ---- seed (in this process: migrations, demo catalog, then bulk rows)
    progress(`seeding ${n} subscriptions`);
    mkdirSync(dataDirOf(0), { recursive: true });
    const app = await createApp({ config: loadConfig({ ...envOf(0) }) });
    let seeded: SeededRun;
    try {
      seeded = await seedRenewals({
        services: app.services,
        keyStore: app.keyStore,
        masterKey,
        simulator: { url: simulator.url, apiKey: simulatorSecrets.REPRISE_SIMULATOR_API_KEY },
        subscriptions: n,
        runId: o.runId,
        onProgress: (done) => bar('seed', done, n, 0, undefined),
      });
    } finally {
      await app.close();
    }
    endBar();
    progress(
      `seeded in ${seeded.seedSeconds.toFixed(1)} s (attach at the simulator ${seeded.attachSeconds.toFixed(1)} s); period end ${seeded.periodEnd.toISOString()}`,
    );
    if (o.seedOnly) {
      handle = await openDatabase(
        databaseUrl ? { databaseUrl, poolMax: 1 } : { dataDir: join(dataDirOf(0), 'pgdata') },
      );
      const counts = await sql<{ subs: number; jobs: number; customers: number; methods: number }>`
        SELECT (SELECT count(*) FROM subscriptions WHERE current_period_end = ${seeded.periodEnd}
            AND status = 'active')::int AS subs,
          (SELECT count(*) FROM scheduled_jobs WHERE kind = 'billing.cycle' AND state = 'pending'
            AND run_at = ${seeded.periodEnd})::int AS jobs,
          (SELECT count(*) FROM customers)::int AS customers,
          (SELECT count(*) FROM payment_methods WHERE is_default)::int AS methods`.execute(handle.db);
      const c = counts.rows[0]!;
      for (const [what, got] of Object.entries(c))
        if (got !== n) checks.push(`seeded ${what}: ${got}, expected ${n}`);
      return {
        engine: o.engine,
        subscriptions: n,
        workers: 0,
        killed: false,
        seedSeconds: seeded.seedSeconds,
        attachSeconds: seeded.attachSeconds,
        renewSeconds: 0,
        renewalsPerSec: 0,
        stalledSeconds: 0,
        peakRssBytes: [simulator.peakRss() ?? 0],
        serverCpuMsPerRenewal: 0,
        xactPerRenewal: null,
        allInvoicedSeconds: null,
        jobs: '',
        failures: checks.length,
        checks,
        events: {},
      };
    }

    // ---- run
    const deadlineS =
      o.deadlineSeconds ?? Math.min(7_200, 600 + Math.ceil(n / 20)) + (o.kill ? EXTERNAL_LEASE_S + 60 : 0);
    const deadline = Date.now() + deadlineS * 1000;
    const start = (i: number) =>
      startProduct({
        name: `server-${i + 1}`,
        args: ['serve'],
        port: ports[i]!,
        env: envOf(i),
        logPath: join(dir, `server-${i + 1}.log`),
        healthPath: '/health',
      });
    const spawnedAt = performance.now();
    servers.push(...(await Promise.all(ports.map((_, i) => start(i)))));
    processes.push(...servers);
    if (databaseUrl) handle = await openDatabase({ databaseUrl, poolMax: 1 });
    // Cycle invoices finalised so far (PostgreSQL): the first half of a renewal, shown in the bar.
    const invoiced = { n: -1 };
    const counter = databaseUrl
      ? sqlCounter(handle!, seeded.periodEnd, invoiced)
      : eventCounter(() => servers[0]!.url);
    const commits = async () =>
      handle
        ? ((
            await sql<{ n: number }>`
              SELECT xact_commit::bigint AS n FROM pg_stat_database WHERE datname = ${dbName}`.execute(
              handle.db,
            )
          ).rows[0]?.n ?? 0)
        : 0;
    const t0 = performance.now();
    const before = await counter();
    const commitsBefore = await commits();
    const logFrom = STATEMENT_LOG && databaseUrl ? statSync(STATEMENT_LOG).size : 0;
    // CPU from here on: startup (migration check, catalog cache) is not a renewal's.
    const cpuAtStart = servers.reduce((sum, s) => sum + (s.cpuSeconds() ?? 0), 0);
    let renewed = before;
    let killed = false;
    const peaks: number[] = [];
    let cpuOfKilled = 0;
    let pollMs = 500;
    let stalledMs = 0;
    /** Seconds from the start until every cycle invoice was finalised (PostgreSQL). */
    let invoicedAt: number | undefined;
    let lastProgressAt = performance.now();
    while (renewed < n) {
      if (Date.now() > deadline) {
        checks.push(`deadline: ${renewed}/${n} renewed after ${deadlineS} s`);
        break;
      }
      for (const s of servers) {
        if (s.child.exitCode !== null)
          throw new Error(`${s.name} exited (${s.child.exitCode}):\n${s.tail()}`);
      }
      await new Promise((r) => setTimeout(r, pollMs));
      const asked = performance.now();
      const previous = renewed;
      // A restarting server (kill mode on PGlite) may not answer for a moment: keep the last count.
      renewed = await counter().catch(() => previous);
      const now = performance.now();
      if (renewed > previous) {
        // A stall: no progress over 4 s and over more than two polls (polls are up to 5 s apart).
        if (now - lastProgressAt >= Math.max(4_000, 2.5 * pollMs)) stalledMs += now - lastProgressAt;
        lastProgressAt = now;
      }
      // Counting a million rows every 500 ms would load the server it measures: the count reads
      // every subscription, so poll at most 1/40 of the time, 0.5 to 5 s apart.
      pollMs = Math.min(5_000, Math.max(500, 40 * (performance.now() - asked)));
      const elapsed = (performance.now() - t0) / 1000;
      if (invoicedAt === undefined && invoiced.n >= n) invoicedAt = elapsed;
      bar(
        'renew',
        renewed,
        n,
        elapsed,
        (renewed - before) / elapsed,
        invoiced.n >= 0 ? `invoiced ${invoiced.n}` : '',
      );
      if (o.kill && !killed && renewed >= 0.3 * n) {
        killed = true;
        const i = servers.length - 1;
        const victim = servers[i]!;
        peaks[i] = victim.peakRss() ?? 0;
        cpuOfKilled += victim.cpuSeconds() ?? 0;
        endBar();
        progress(`kill -9 ${victim.name} at ${renewed}/${n}, starting it again`);
        await victim.kill9();
        servers[i] = await start(i);
        processes.push(servers[i]!);
      }
    }
    const renewSeconds = (performance.now() - t0) / 1000;
    endBar();
    const perSec = (renewed - before) / renewSeconds;
    progress(
      `renewed ${renewed}/${n} in ${renewSeconds.toFixed(1)} s (${perSec.toFixed(1)}/s; servers up ${((t0 - spawnedAt) / 1000).toFixed(1)} s after spawn, ${before} renewed by then)`,
    );
    const peakRssBytes = servers.map((s, i) => Math.max(s.peakRss() ?? 0, peaks[i] ?? 0));
    const cpu = servers.reduce((sum, s) => sum + (s.cpuSeconds() ?? 0), cpuOfKilled) - cpuAtStart;
    const xacts = (await commits()) - commitsBefore;
    if (STATEMENT_LOG && databaseUrl) {
      const statements = countStatements(STATEMENT_LOG, logFrom);
      progress(
        `statements logged while renewing: ${statements} (${(statements / Math.max(1, renewed - before)).toFixed(1)} per renewal)`,
      );
    }
    for (const s of servers) await s.stop();
    // ---- checks, on the database the servers left
    if (!handle) handle = await openDatabase({ dataDir: join(dataDirOf(0), 'pgdata') });
    const events = await verify(handle, seeded, checks);
    const jobs = (
      await sql<{ kind: string; state: string; n: number }>`
        SELECT kind, state, count(*)::int AS n FROM scheduled_jobs GROUP BY kind, state ORDER BY kind, state`.execute(
        handle.db,
      )
    ).rows
      .map((r) => `${r.kind}:${r.state}=${r.n}`)
      .join(' ');
    if (n <= SETTLEMENT_CHECK_MAX)
      await verifySettlement(handle, simulator, simulatorSecrets.REPRISE_SIMULATOR_API_KEY, n, checks);
    for (const c of checks) process.stderr.write(`  ✗ ${c}\n`);
    if (checks.length === 0) progress('checks passed');
    return {
      engine: o.engine,
      subscriptions: n,
      workers: o.workers,
      killed,
      seedSeconds: seeded.seedSeconds,
      attachSeconds: seeded.attachSeconds,
      renewSeconds,
      renewalsPerSec: perSec,
      stalledSeconds: stalledMs / 1000,
      peakRssBytes,
      serverCpuMsPerRenewal: (cpu * 1000) / Math.max(1, renewed - before),
      xactPerRenewal: databaseUrl ? xacts / Math.max(1, renewed - before) : null,
      allInvoicedSeconds: invoicedAt ?? null,
      jobs,
      failures: checks.length,
      checks,
      events,
    };
  } catch (error) {
    endBar();
    for (const s of servers) process.stderr.write(`--- ${s.name} log tail\n${s.tail()}\n`);
    throw error;
  } finally {
    await handle?.close();
    for (const p of processes) await p.stop(10_000);
    if (o.engine === 'postgres') {
      for (const db of [dbName, `${dbName}_keys`])
        await adminQuery(o.serverUrl!, `DROP DATABASE IF EXISTS "${db}" WITH (FORCE)`);
    }
    if (checks.length === 0) rmSync(dir, { recursive: true, force: true });
    else progress(`logs kept in ${dir}`);
  }
}

/** Renewed so far, from the database: subscriptions whose current period starts at the seeded end. */
function sqlCounter(handle: DatabaseHandle, periodEnd: Date, invoiced: { n: number }) {
  return async () => {
    const r = await sql<{ n: number; invoiced: number }>`
      SELECT (SELECT count(*) FROM subscriptions WHERE current_period_start = ${periodEnd})::int AS n,
        (SELECT count(*) FROM invoices WHERE reason = 'subscription_cycle')::int AS invoiced`.execute(
      handle.db,
    );
    invoiced.n = r.rows[0]?.invoiced ?? 0;
    return r.rows[0]?.n ?? 0;
  };
}

/**
 * Renewed so far on PGlite, whose database only its server may open: `subscription.renewed`
 * events read through the server's own API, following the outbox from the last one seen (the
 * reader never skips an event that commits late, so the count is exact).
 */
function eventCounter(url: () => string) {
  let after: string | undefined;
  let count = 0;
  return async () => {
    for (let page = 0; page < 1_000; page++) {
      const q = new URLSearchParams({ type: 'subscription.renewed', limit: '100' });
      if (after) q.set('after', after);
      const res = await fetch(`${url()}/v1/events?${q}`, {
        headers: { authorization: `Bearer ${BENCH_KEY}` },
      });
      if (!res.ok) throw new Error(`GET /v1/events: ${res.status} ${await res.text()}`);
      const body = (await res.json()) as { data: Array<{ id: string }> };
      count += body.data.length;
      if (body.data.length > 0) after = body.data.at(-1)!.id;
      if (body.data.length < 100) break;
    }
    return count;
  };
}

/** The correctness checks; failures are appended to `checks`. Returns the event counts by type. */
async function verify(handle: DatabaseHandle, seeded: SeededRun, checks: string[]) {
  const db = handle.db;
  const n = seeded.subscriptions;
  const expect = (what: string, got: number, want: number) => {
    if (got !== want) checks.push(`${what}: ${got}, expected ${want}`);
  };
  const one = async <T>(q: { execute(db: unknown): Promise<{ rows: T[] }> }) =>
    (await q.execute(db)).rows[0]!;

  // Every seeded subscription renewed exactly once: active, one period further, none skipped.
  const subs = await one(sql<{ total: number; renewed: number; behind: number; ahead: number }>`
    SELECT count(*)::int AS total,
      count(*) FILTER (WHERE status = 'active' AND current_period_start = ${seeded.periodEnd}
        AND current_period_end = CASE billing_period WHEN 'month' THEN ${seeded.nextEnd.month}::timestamptz
          ELSE ${seeded.nextEnd.year}::timestamptz END)::int AS renewed,
      count(*) FILTER (WHERE current_period_end <= ${seeded.periodEnd})::int AS behind,
      count(*) FILTER (WHERE current_period_start > ${seeded.periodEnd})::int AS ahead
    FROM subscriptions`);
  expect('subscriptions', subs.total, n);
  expect('subscriptions renewed once (active, next period)', subs.renewed, n);
  expect('subscriptions not renewed (skipped)', subs.behind, 0);
  expect('subscriptions renewed past the next period', subs.ahead, 0);

  // One paid, numbered subscription_cycle invoice per subscription and period.
  const inv = await one(sql<{
    total: number;
    subs: number;
    periods: number;
    ok: number;
    numbers: number;
    other: number;
  }>`
    SELECT count(*) FILTER (WHERE reason = 'subscription_cycle')::int AS total,
      count(DISTINCT subscription_id) FILTER (WHERE reason = 'subscription_cycle')::int AS subs,
      count(DISTINCT (subscription_id, period_start)) FILTER (WHERE reason = 'subscription_cycle')::int AS periods,
      count(*) FILTER (WHERE reason = 'subscription_cycle' AND status = 'paid' AND number IS NOT NULL
        AND payment_id IS NOT NULL AND paid_at IS NOT NULL AND period_start = ${seeded.periodEnd})::int AS ok,
      count(DISTINCT number)::int AS numbers,
      count(*) FILTER (WHERE reason <> 'subscription_cycle')::int AS other
    FROM invoices`);
  expect('cycle invoices', inv.total, n);
  expect('subscriptions with a cycle invoice', inv.subs, n);
  expect('cycle invoices per (subscription, period) distinct', inv.periods, n);
  expect('cycle invoices paid, numbered, from the period end', inv.ok, n);
  expect('distinct invoice numbers', inv.numbers, n);
  expect('other invoices', inv.other, 0);

  // One succeeded payment per invoice, of its amount due, and no other payment (nothing billed twice).
  const pay = await one(sql<{
    total: number;
    succeeded: number;
    failed: number;
    refs: number;
    matched: number;
  }>`
    SELECT (SELECT count(*) FROM payments)::int AS total,
      (SELECT count(*) FROM payments WHERE status = 'succeeded' AND captured)::int AS succeeded,
      (SELECT count(*) FROM payments WHERE status = 'failed')::int AS failed,
      (SELECT count(DISTINCT reference) FROM payments)::int AS refs,
      (SELECT count(*) FROM invoices i JOIN payments p ON p.id = i.payment_id
        WHERE i.reason = 'subscription_cycle' AND p.reference = i.id AND p.status = 'succeeded'
          AND p.captured AND p.amount_minor = i.amount_due_minor AND p.customer_id = i.customer_id)::int AS matched`);
  expect('payments', pay.total, n);
  expect('payments succeeded', pay.succeeded, n);
  expect('payments failed', pay.failed, 0);
  expect('invoices with a payment', pay.refs, n);
  expect('invoices paid by their own succeeded payment of the amount due', pay.matched, n);

  // The outbox: the events of one renewal, N of each.
  const rows = (
    await sql<{ type: string; n: number }>`SELECT type, count(*)::int AS n FROM events GROUP BY type`.execute(
      db,
    )
  ).rows;
  const events = Object.fromEntries(rows.map((r) => [r.type, r.n])) as Record<string, number>;
  for (const type of EVENTS_PER_RENEWAL) expect(`events ${type}`, events[type] ?? 0, n);
  for (const r of rows) {
    if (!(EVENTS_PER_RENEWAL as readonly string[]).includes(r.type))
      checks.push(`unexpected events ${r.type}: ${r.n}`);
  }

  // Jobs: none failed; every seeded cycle job done, and the next period's scheduled once each.
  const jobs = await one(sql<{
    failed: number;
    cycleDone: number;
    cyclePending: number;
    failedKinds: string | null;
  }>`
    SELECT count(*) FILTER (WHERE state = 'failed')::int AS failed,
      count(*) FILTER (WHERE kind = 'billing.cycle' AND state = 'done'
        AND dedupe_key LIKE '%:' || ${String(seeded.periodEnd.getTime())})::int AS "cycleDone",
      count(*) FILTER (WHERE kind = 'billing.cycle' AND state = 'pending' AND run_at > ${seeded.periodEnd})::int AS "cyclePending",
      string_agg(DISTINCT kind || ': ' || coalesce(left(last_error, 200), ''), ' | ') FILTER (WHERE state = 'failed') AS "failedKinds"
    FROM scheduled_jobs`);
  expect('failed jobs', jobs.failed, 0);
  if (jobs.failedKinds) checks.push(`failed jobs: ${jobs.failedKinds}`);
  expect('seeded cycle jobs done', jobs.cycleDone, n);
  expect('next cycle jobs scheduled', jobs.cyclePending, n);

  // The books: debits equal credits in every currency, recomputed from every posting.
  const trial = await new LedgerService(db, systemClock).trialBalance({ verify: true });
  if (!trial.every((l) => l.balanced)) checks.push(`trial balance not zero: ${JSON.stringify(trial)}`);
  return events;
}

/** At the PSP: one captured charge per payment, for exactly the payments the database holds. */
async function verifySettlement(
  handle: DatabaseHandle,
  simulator: BenchProcess,
  apiKey: string,
  n: number,
  checks: string[],
) {
  const res = await fetch(`${simulator.url}/v1/reports/settlement.csv`, {
    headers: { authorization: `Bearer ${apiKey}` },
  });
  const lines = (await res.text()).trim().split('\n').slice(1);
  const paymentIds = lines.map((l) => l.split(',')[0]!);
  const distinct = new Set(paymentIds);
  if (lines.length !== n) checks.push(`captured charges at the simulator: ${lines.length}, expected ${n}`);
  if (distinct.size !== lines.length)
    checks.push(`payments charged twice at the simulator: ${lines.length - distinct.size}`);
  const ours = (
    await sql<{ id: string; provider_payment_id: string | null }>`
      SELECT id, provider_payment_id FROM payments WHERE status = 'succeeded'`.execute(handle.db)
  ).rows;
  const missing = ours.filter((p) => !distinct.has(p.id)).length;
  if (missing > 0) checks.push(`succeeded payments without a captured charge at the simulator: ${missing}`);
}

let barShown = false;
/** One-line progress on stderr (\r on a terminal, a line every ~5 % otherwise). */
function bar(
  what: string,
  done: number,
  total: number,
  elapsed: number,
  rate: number | undefined,
  extra = '',
) {
  const width = 30;
  const frac = total === 0 ? 1 : done / total;
  const filled = Math.round(frac * width);
  const eta = rate && rate > 0 ? (total - done) / rate : undefined;
  const line = `  ${what} [${'#'.repeat(filled)}${'.'.repeat(width - filled)}] ${done}/${total} ${(frac * 100).toFixed(1)}%${
    rate !== undefined
      ? `  ${rate.toFixed(1)}/s  ETA ${eta === undefined ? '?' : clock(eta)}  ${clock(elapsed)}  ${extra}`
      : ''
  }`;
  if (process.stderr.isTTY) {
    process.stderr.write(`\r${line}\x1b[K`);
    barShown = true;
  } else {
    const step = Math.max(1, Math.floor(total / 20));
    if (done === total || Math.floor(done / step) !== Math.floor(lastShown / step))
      process.stderr.write(`${line}\n`);
    lastShown = done;
  }
}
let lastShown = -1;
function endBar() {
  if (barShown) process.stderr.write('\n');
  barShown = false;
  lastShown = -1;
}
function clock(seconds: number): string {
  const s = Math.max(0, Math.round(seconds));
  return `${Math.floor(s / 60)}:${String(s % 60).padStart(2, '0')}`;
}

/** Statements a PostgreSQL log holds from byte `from` on (simple and extended protocol). */
function countStatements(path: string, from: number): number {
  const size = statSync(path).size;
  const fd = openSync(path, 'r');
  try {
    const buf = Buffer.alloc(size - from);
    readSync(fd, buf, 0, buf.length, from);
    return (buf.toString('utf8').match(/ LOG: {2}(statement|execute [^:]*): /g) ?? []).length;
  } finally {
    closeSync(fd);
  }
}
