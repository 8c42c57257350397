import { type ChildProcess, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import autocannon from 'autocannon';
import { sql } from 'kysely';
import { adminQuery } from '../src/db/admin.js';
import { openDatabase } from '../src/db/engine.js';
import { systemClock } from '../src/kernel/clock.js';
import { LedgerService } from '../src/modules/ledger/service.js';
import { progress } from './support/load.js';
import { pgbenchTpcb } from './support/pgbench.js';
import { freePort, type RunningServer, startServer } from './support/server.js';

const ROOT = new URL('..', import.meta.url).pathname;
/** The embedded engine is one session in the server's process: the issue measures it at 8 clients. */
const PGLITE_CLIENTS = 8;
const PGBENCH_CLIENTS = 8;
const CUSTOMERS = 256;
const WARMUP_SECONDS = 2;

type Endpoint = 'payments' | 'subscriptions';

interface RunFigures {
  requestsPerSec: number;
  latencyP50Ms: number;
  latencyP99Ms: number;
  ok: number;
  failed: number;
}

interface EngineFigures {
  engine: 'postgres' | 'pglite';
  connections: number;
  payments: RunFigures;
  paymentsHalf: RunFigures;
  subscriptions: RunFigures;
  subscriptionsHalf: RunFigures;
  checks: string[];
}

/**
 * `POST /v1/payments` and `POST /v1/subscriptions` (a yearly plan without trial: every checkout
 * charges) against the built server in its own process, with the PSP simulator in another
 * (`reprise psp-simulator`, webhooks back to the server). Each endpoint runs with `connections`
 * clients (every request a new Idempotency-Key), then again at half the rate measured, for the
 * latency at a load the server can carry. PostgreSQL when DATABASE_URL is set (then PGlite too,
 * at 8 clients, and pgbench tpcb-like at 8 clients as the baseline); PGlite alone otherwise.
 * Fails on any non-2xx answer or when the database disagrees with the answers.
 */
export async function benchPurchase(opts: {
  seconds: number;
  connections?: number | undefined;
  trace?: boolean;
  /** One engine only (both by default when DATABASE_URL is set). */
  engine?: string | undefined;
}) {
  const connections = opts.connections ?? 32;
  const serverUrl = process.env.DATABASE_URL;
  const runId = Date.now().toString(36);
  if (opts.trace) {
    // Diagnostic only: the database logs every statement with its duration (PostgreSQL's own log).
    if (!serverUrl) throw new Error('--trace needs DATABASE_URL (statements are counted in its log)');
    const traced = await runEngine('postgres', 1, opts);
    return { name: 'purchase-trace', engine: 'postgres', ...traced.trace, failures: 0 };
  }
  const results: EngineFigures[] = [];
  if (serverUrl && opts.engine !== 'pglite') results.push(await runEngine('postgres', connections, opts));
  if (!serverUrl || opts.engine !== 'postgres')
    results.push(await runEngine('pglite', Math.min(connections, PGLITE_CLIENTS), opts));
  const pgbenchTps = serverUrl
    ? await pgbenchTpcb(serverUrl, runId, opts.seconds, PGBENCH_CLIENTS)
    : undefined;

  const out: Record<string, unknown> = {
    name: 'purchase',
    engine: results.map((r) => r.engine).join('+'),
    seconds: opts.seconds,
  };
  if (pgbenchTps !== undefined) out.pgbenchTps = Math.round(pgbenchTps);
  const pg = results.find((r) => r.engine === 'postgres');
  for (const r of results) {
    const p = r.engine === 'postgres' ? 'pg' : 'pglite';
    out[`${p}Connections`] = r.connections;
    for (const ep of ['payments', 'subscriptions'] as const) {
      const full = r[ep];
      const half = r[`${ep}Half`];
      out[`${p}.${ep}PerSec`] = Math.round(full.requestsPerSec);
      if (pgbenchTps) out[`${p}.${ep}÷pgbench`] = full.requestsPerSec / pgbenchTps;
      if (r.engine === 'pglite' && pg) out[`${p}.${ep}÷pg`] = full.requestsPerSec / pg[ep].requestsPerSec;
      out[`${p}.${ep}P50/P99`] = `${full.latencyP50Ms} / ${full.latencyP99Ms} ms`;
      out[`${p}.${ep}Half`] =
        `${Math.round(half.requestsPerSec)}/s, p50 ${half.latencyP50Ms} ms, p99 ${half.latencyP99Ms} ms`;
    }
  }
  const failedRequests = results.reduce(
    (n, r) =>
      n + r.payments.failed + r.paymentsHalf.failed + r.subscriptions.failed + r.subscriptionsHalf.failed,
    0,
  );
  const failedChecks = results.flatMap((r) => r.checks.map((c) => `${r.engine}: ${c}`));
  out.failedRequests = failedRequests;
  out.failedChecks = failedChecks.length === 0 ? 'none' : failedChecks.join('; ');
  out.failures = failedRequests + failedChecks.length;
  return out as { name: string; failures: number } & Record<string, unknown>;
}

/** Starts the simulator and the server on one engine, sets up customers, loads both endpoints. */
async function runEngine(
  engine: 'postgres' | 'pglite',
  connections: number,
  opts: { seconds: number; trace?: boolean },
): Promise<EngineFigures & { trace?: Record<string, number> }> {
  const [serverPort, simPort] = [await freePort(), await freePort()];
  const secrets = {
    REPRISE_SIMULATOR_API_KEY: `sk_bench_${randomBytes(16).toString('hex')}`,
    REPRISE_SIMULATOR_WEBHOOK_SECRET: `whsec_bench_${randomBytes(16).toString('hex')}`,
  };
  const base = `http://127.0.0.1:${serverPort}`;
  const simulator = spawn(
    process.execPath,
    [
      join(ROOT, 'dist/cli/main.js'),
      'psp-simulator',
      '--port',
      String(simPort),
      '--webhook-url',
      `${base}/v1/providers/simulator-a/webhooks`,
    ],
    { cwd: ROOT, env: { ...process.env, ...secrets }, stdio: ['ignore', 'ignore', 'inherit'] },
  );
  let server: RunningServer | undefined;
  try {
    await waitFor(`http://127.0.0.1:${simPort}/admin/state`, simulator);
    const profileDir = process.env.BENCH_CPU_PROF;
    server = await startServer({
      port: serverPort,
      engine,
      nodeArgs: profileDir ? ['--cpu-prof', `--cpu-prof-dir=${profileDir}`] : [],
      ...(opts.trace
        ? {
            beforeStart: (url: string) =>
              adminQuery(
                process.env.DATABASE_URL!,
                `ALTER DATABASE "${new URL(url).pathname.slice(1)}" SET log_min_duration_statement = 0`,
              ),
          }
        : {}),
      env: {
        REPRISE_SEED: 'none',
        REPRISE_SIMULATORS: `simulator-a=http://127.0.0.1:${simPort}`,
        ...secrets,
      },
    });
    const api = client(base, server.apiKey);
    progress(`${engine}: catalog and ${CUSTOMERS} customers with a default card`);
    const customers = await setup(api);
    const sent = { payments: 0, subscriptions: 0 };
    const drive = (ep: Endpoint, seconds: number, conns: number, rate?: number) =>
      driveLoad(base, server!.apiKey, ep, customers, { seconds, connections: conns, rate }, sent);

    if (opts.trace) {
      const trace = await traceRequests(server, api, customers);
      return { engine, connections, trace } as EngineFigures & { trace: Record<string, number> };
    }
    const figures: Partial<EngineFigures> = { engine, connections };
    for (const ep of ['payments', 'subscriptions'] as const) {
      progress(`${engine}: POST /v1/${ep}, warm-up ${WARMUP_SECONDS}s`);
      const warm = await drive(ep, WARMUP_SECONDS, connections);
      progress(`${engine}: POST /v1/${ep}, ${connections} connections, ${opts.seconds}s`);
      const full = await drive(ep, opts.seconds, connections);
      const rate = Math.max(1, Math.round(full.requestsPerSec / 2));
      progress(`${engine}: POST /v1/${ep} at ${rate}/s (half), ${opts.seconds}s`);
      const half = await drive(ep, opts.seconds, connections, rate);
      full.failed += warm.failed;
      figures[ep] = full;
      figures[`${ep}Half`] = half;
    }
    await server.stop();
    figures.checks = await check(server, sent);
    if (profileDir) progress(`${engine}: CPU profile of the server in ${profileDir}`);
    return figures as EngineFigures;
  } finally {
    await server?.cleanup();
    if (simulator.exitCode === null) {
      const exited = new Promise((r) => simulator.once('exit', r));
      simulator.kill('SIGTERM');
      await exited;
    }
  }
}

type Api = (method: string, path: string, body?: unknown, key?: string) => Promise<Response>;

function client(base: string, apiKey: string): Api {
  return (method, path, body, key) =>
    fetch(`${base}${path}`, {
      method,
      headers: {
        authorization: `Bearer ${apiKey}`,
        'content-type': 'application/json',
        ...(key ? { 'idempotency-key': key } : {}),
      },
      body: body === undefined ? undefined : JSON.stringify(body),
      signal: AbortSignal.timeout(30_000),
    });
}

async function must(res: Promise<Response>, what: string): Promise<{ id: string }> {
  const r = await res;
  const text = await r.text();
  if (r.status >= 300) throw new Error(`${what}: ${r.status} ${text}`);
  return JSON.parse(text) as { id: string };
}

async function setup(api: Api): Promise<string[]> {
  await must(
    api('POST', '/v1/markets', { code: 'SE', currency: 'SEK', taxRateBps: 2500, taxInclusive: true }),
    'market',
  );
  await must(api('POST', '/v1/products', { code: 'bench-music', features: ['ad-free'] }), 'product');
  await must(
    api('POST', '/v1/plans', {
      code: 'bench-music-yearly',
      product: 'bench-music',
      billingPeriod: 'year',
      trialDays: 0,
      prices: [{ currency: 'SEK', amount: 139_000 }],
    }),
    'plan',
  );
  const customers: string[] = [];
  let next = 0;
  await Promise.all(
    Array.from({ length: 8 }, async () => {
      while (next < CUSTOMERS) {
        const i = next++;
        const c = await must(
          api('POST', '/v1/customers', { externalId: `bench-${i}`, market: 'SE' }),
          'customer',
        );
        await must(
          api('POST', `/v1/customers/${c.id}/payment-methods`, { provider: 'simulator', token: 'tok_visa' }),
          'payment method',
        );
        customers.push(c.id);
      }
    }),
  );
  return customers;
}

function bodyOf(ep: Endpoint, customer: string, n: number): string {
  return JSON.stringify(
    ep === 'payments'
      ? { customer, amount: 1000 + (n % 9000), currency: 'SEK', description: `bench purchase ${n}` }
      : { customer, plan: 'bench-music-yearly' },
  );
}

/**
 * One autocannon run; every request carries a new Idempotency-Key. Requests autocannon abandoned
 * when the time ran out are retried with their key and body until answered (as a client would),
 * so the database's counts can be compared with the answers exactly.
 */
async function driveLoad(
  base: string,
  apiKey: string,
  ep: Endpoint,
  customers: string[],
  opts: { seconds: number; connections: number; rate?: number | undefined },
  sent: Record<Endpoint, number>,
): Promise<RunFigures> {
  const runTag = randomBytes(4).toString('hex');
  const inFlight = new Map<string, string>();
  let n = 0;
  let ok = 0;
  let failed = 0;
  const shown = new Set<number>();
  const result = await autocannon({
    url: base,
    duration: opts.seconds,
    connections: opts.connections,
    pipelining: 1,
    ...(opts.rate ? { overallRate: opts.rate } : {}),
    requests: [
      {
        method: 'POST',
        path: `/v1/${ep}`,
        setupRequest: (req, context) => {
          const i = n++;
          const key = `${ep}-${runTag}-${i}`;
          const body = bodyOf(ep, customers[i % customers.length]!, i);
          inFlight.set(key, body);
          (context as { key?: string }).key = key;
          return {
            ...req,
            headers: {
              authorization: `Bearer ${apiKey}`,
              'content-type': 'application/json',
              'idempotency-key': key,
            },
            body,
          };
        },
        onResponse: (status, body, context) => {
          inFlight.delete((context as { key: string }).key);
          if (status >= 200 && status < 300) ok++;
          else {
            failed++;
            if (!shown.has(status) && shown.size < 3) {
              shown.add(status);
              process.stderr.write(`    ${ep}: ${status} ${body.slice(0, 300)}\n`);
            }
          }
        },
      },
    ],
  });
  // Abandoned at the end of the run: the server may have done them; a retry settles which.
  const api = client(base, apiKey);
  for (const [key, body] of inFlight) {
    const deadline = Date.now() + 60_000;
    for (;;) {
      const res = await api('POST', `/v1/${ep}`, JSON.parse(body), key);
      await res.text();
      if (res.status === 409 && Date.now() < deadline) {
        await new Promise((r) => setTimeout(r, 200));
        continue;
      }
      if (res.status >= 200 && res.status < 300) ok++;
      else failed++;
      break;
    }
  }
  sent[ep] += ok;
  return {
    requestsPerSec: result.requests.average,
    latencyP50Ms: result.latency.p50,
    latencyP99Ms: result.latency.p99,
    ok,
    failed: failed + result.errors + result.timeouts,
  };
}

/** After the server stopped: the database must hold exactly what was answered, and balance. */
async function check(server: RunningServer, answered: Record<Endpoint, number>): Promise<string[]> {
  const handle = await openDatabase(
    server.databaseUrl ? { databaseUrl: server.databaseUrl } : { dataDir: join(server.dataDir, 'pgdata') },
  );
  const failures: string[] = [];
  try {
    const count = async (query: ReturnType<typeof sql<{ n: number }>>) =>
      Number((await query.execute(handle.db)).rows[0]?.n ?? -1);
    const subscriptions = await count(sql`SELECT count(*)::int AS n FROM subscriptions`);
    const active = await count(sql`SELECT count(*)::int AS n FROM subscriptions WHERE status = 'active'`);
    const payments = await count(sql`SELECT count(*)::int AS n FROM payments`);
    const succeeded = await count(sql`SELECT count(*)::int AS n FROM payments WHERE status = 'succeeded'`);
    const paidInvoices = await count(sql`SELECT count(*)::int AS n FROM invoices WHERE status = 'paid'`);
    // Every checkout charges its first invoice through the payments module: one payment each.
    const expectedPayments = answered.payments + answered.subscriptions;
    if (subscriptions !== answered.subscriptions)
      failures.push(`${subscriptions} subscriptions stored, ${answered.subscriptions} answered 2xx`);
    if (active !== subscriptions) failures.push(`${subscriptions - active} subscriptions not active`);
    if (paidInvoices !== subscriptions)
      failures.push(`${paidInvoices} paid invoices for ${subscriptions} subscriptions`);
    if (payments !== expectedPayments)
      failures.push(`${payments} payments stored, ${expectedPayments} answered 2xx`);
    if (succeeded !== payments) failures.push(`${payments - succeeded} payments not succeeded`);
    const trial = await new LedgerService(handle.db, systemClock).trialBalance({ verify: true });
    if (!trial.every((l) => l.balanced)) failures.push(`trial balance not zero: ${JSON.stringify(trial)}`);
    progress(
      `${server.engine}: ${payments} payments, ${subscriptions} subscriptions stored; ${failures.length} check(s) failed`,
    );
  } finally {
    await handle.close();
  }
  return failures;
}

/** A statement in PostgreSQL's log with `log_min_duration_statement = 0`: its time in ms. */
const STATEMENT_LINE = /LOG: {2}duration: ([\d.]+) ms {2}(?:statement|execute [^:]*):/;
const PHASE_LINE = /LOG: {2}duration: ([\d.]+) ms {2}(?:statement|parse|bind|execute)/;

/**
 * Diagnostic (PostgreSQL, `--trace`): sequential requests on a bench database created with
 * `log_min_duration_statement = 0`; statements are counted in the server's log (BENCH_PG_LOG), transactions from
 * pg_stat_database. Includes the simulator's webhook for each charge and the job poller.
 */
async function traceRequests(server: RunningServer, api: Api, customers: string[]) {
  const log = process.env.BENCH_PG_LOG ?? '/var/log/postgresql/postgresql-15-main.log';
  const database = new URL(server.databaseUrl!).pathname.slice(1);
  const admin = process.env.DATABASE_URL!;
  const N = 50;
  const out: Record<string, number> = {};
  const handle = await openDatabase({ databaseUrl: admin, poolMax: 1 });
  const xacts = async () =>
    Number(
      (
        await sql<{
          n: number;
        }>`SELECT (xact_commit + xact_rollback)::bigint AS n FROM pg_stat_database WHERE datname = ${database}`.execute(
          handle.db,
        )
      ).rows[0]?.n,
    );
  try {
    for (const ep of ['idle', 'payments', 'subscriptions'] as const) {
      await new Promise((r) => setTimeout(r, 1500)); // webhooks of the previous phase
      const from = statSync(log).size;
      const x0 = await xacts();
      const started = Date.now();
      if (ep === 'idle') await new Promise((r) => setTimeout(r, 3000));
      else {
        const t0 = performance.now();
        for (let i = 0; i < N; i++) {
          const res = await api(
            'POST',
            `/v1/${ep}`,
            JSON.parse(bodyOf(ep, customers[i]!, i)),
            `trace-${ep}-${i}`,
          );
          if (res.status >= 300) throw new Error(`trace ${ep}: ${res.status} ${await res.text()}`);
          await res.text();
        }
        out[`${ep}SequentialMs`] = Math.round(((performance.now() - t0) / N) * 10) / 10;
        await new Promise((r) => setTimeout(r, 1500)); // their webhooks
      }
      const seconds = (Date.now() - started) / 1000;
      await new Promise((r) => setTimeout(r, 500)); // pg_stat_database lags
      const x1 = await xacts();
      const text = readFileSync(log).subarray(from).toString('utf8');
      const ours = text.split('\n').filter((l) => l.includes(`@${database} `));
      const lines = ours.filter((l) => STATEMENT_LINE.test(l));
      const statements = lines.length;
      const begins = lines.filter((l) => /(statement|execute [^:]*): BEGIN/i.test(l)).length;
      // Parse, bind and execute are logged apart for the extended protocol: all of it is the server's.
      const serverMs = ours.reduce((ms, l) => ms + Number(PHASE_LINE.exec(l)?.[1] ?? 0), 0);
      if (process.env.BENCH_TRACE_DUMP) writeFileSync(`${process.env.BENCH_TRACE_DUMP}.${ep}.log`, text);
      if (ep === 'idle') {
        out.idleStatementsPerSec = statements / seconds;
        out.idleTransactionsPerSec = (x1 - x0) / seconds;
        out.idleBeginsPerSec = begins / seconds;
      } else {
        const idleS = out.idleStatementsPerSec! * seconds;
        const idleX = out.idleTransactionsPerSec! * seconds;
        out[`${ep}StatementsPerRequest`] = Math.round(((statements - idleS) / N) * 10) / 10;
        out[`${ep}StatementMsPerRequest`] = Math.round((serverMs / N) * 100) / 100;
        out[`${ep}CommitsPerRequest`] = Math.round(((x1 - x0 - idleX) / N) * 10) / 10;
        out[`${ep}BeginsPerRequest`] = Math.round(((begins - out.idleBeginsPerSec! * seconds) / N) * 10) / 10;
      }
    }
  } finally {
    await handle.close();
  }
  return out;
}

async function waitFor(url: string, child: ChildProcess): Promise<void> {
  const deadline = Date.now() + 30_000;
  while (Date.now() < deadline) {
    if (child.exitCode !== null) throw new Error(`${url}: process exited with ${child.exitCode}`);
    try {
      await fetch(url);
      return;
    } catch {
      await new Promise((r) => setTimeout(r, 100));
    }
  }
  throw new Error(`${url} did not answer in 30 s`);
}
