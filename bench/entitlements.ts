import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import autocannon from 'autocannon';
import { createApp } from '../src/app.js';
import { loadConfig } from '../src/config.js';
import { MasterKey } from '../src/crypto/envelope.js';
import { adminQuery, withDatabase } from '../src/db/admin.js';
import { progress } from './support/load.js';
import { type BenchProcess, startProduct } from './support/processes.js';
import { seedEntitled } from './support/seed-entitled.js';
import { BENCH_KEY, freePort } from './support/server.js';

export interface EntitlementsOptions {
  /** Entitled owners seeded (members come on top: 2 per Family plan, one in ten). */
  users?: number;
  /** Distinct users the measured requests pick from (the node's working set). */
  hot?: number;
  seconds: number;
  rounds: number;
  connections?: number | undefined;
}

const MIB = 1024 * 1024;

/**
 * `GET /v1/entitlements/{externalId}` req/s ÷ `GET /health` req/s of the same server in the same
 * run (alternating rounds), over users seeded straight into the database (1M owners on PostgreSQL
 * by default, 50k on PGlite). Every hardening check stays on (API-key auth on the matched route,
 * input guards, rate limiting with a high limit). Then: p99 at half the measured rate, `POST
 * /v1/entitlements/batch` of 1000 ids (p99), the miss path over the whole population, and a
 * correctness sample (each answer checked against what was seeded). Exits non-zero on a failed
 * check or a non-2xx answer, never on a rate.
 */
export async function benchEntitlements(opts: EntitlementsOptions) {
  const serverUrl = process.env.DATABASE_URL || undefined;
  const engine = serverUrl ? 'postgres' : 'pglite';
  const owners = opts.users ?? (serverUrl ? 1_000_000 : 50_000);
  const hot = Math.min(opts.hot ?? 100_000, owners);
  const connections = opts.connections ?? 20;
  const runId = Date.now().toString(36);
  const dir = mkdtempSync(join(tmpdir(), 'reprise-entitlements-'));
  const masterKey = MasterKey.generate();
  const dbName = `reprise_bench_ent_${runId}`;
  let databaseUrl: string | undefined;
  if (serverUrl) {
    await adminQuery(serverUrl, `CREATE DATABASE "${dbName}"`);
    await adminQuery(serverUrl, `CREATE DATABASE "${dbName}_keys"`);
    databaseUrl = withDatabase(serverUrl, dbName);
  }
  const port = await freePort();
  const env: Record<string, string> = {
    HOST: '127.0.0.1',
    PORT: String(port),
    REPRISE_DATA_DIR: join(dir, 'data'),
    REPRISE_SEED: 'none',
    REPRISE_BOOTSTRAP_KEY: BENCH_KEY,
    REPRISE_RATE_LIMIT_PER_MINUTE: '10000000',
    LOG_LEVEL: 'warn',
    REPRISE_MASTER_KEY: masterKey.toBase64(),
    // The whole working set fits: what a node serving these users would be configured with.
    REPRISE_ENTITLEMENT_CACHE_SIZE: String(Math.max(200_000, hot * 2)),
    ...(databaseUrl
      ? { DATABASE_URL: databaseUrl, REPRISE_KEYSTORE_URL: withDatabase(serverUrl!, `${dbName}_keys`) }
      : { DATABASE_URL: '', REPRISE_KEYSTORE_URL: '' }),
  };
  let server: BenchProcess | undefined;
  const failures: string[] = [];
  try {
    progress(`seeding ${owners} entitled owners (${engine})`);
    mkdirSync(env.REPRISE_DATA_DIR!, { recursive: true });
    const app = await createApp({ config: loadConfig(env) });
    let seeded: Awaited<ReturnType<typeof seedEntitled>>;
    try {
      seeded = await seedEntitled({
        services: app.services,
        owners,
        runId,
        onProgress: (done) => {
          if (done % 100_000 === 0 || done === owners) progress(`seeded ${done}/${owners}`);
        },
      });
    } finally {
      await app.close();
    }
    progress(`seeded ${seeded.users} users in ${seeded.seconds.toFixed(1)} s; starting the server`);
    server = await startProduct({
      name: 'server',
      args: ['serve'],
      port,
      env,
      logPath: join(dir, 'server.log'),
      healthPath: '/health',
    });
    const auth = { authorization: `Bearer ${BENCH_KEY}` };
    const base = server.url;
    const hotUser = () => seeded.userAt(Math.floor(Math.random() * hot));
    const anyUser = () => seeded.userAt(Math.floor(Math.random() * seeded.users));

    // ---- correctness sample (also warms nothing: these go through the miss path first)
    const expectOf = (x: string) =>
      x.startsWith('member-') || Number(x.split('-').at(-1)) % 10 === 0
        ? seeded.expected.family
        : seeded.expected.individual;
    for (let k = 0; k < 300; k++) {
      const x = k % 2 === 0 ? anyUser() : `nobody-${runId}-${k}`;
      const res = await fetch(`${base}/v1/entitlements/${x}`, { headers: auth });
      const body = (await res.json()) as {
        active: boolean;
        features: string[];
        sources: Array<{ validUntil: string }>;
      };
      const entitled = !x.startsWith('nobody-');
      const ok =
        res.status === 200 &&
        body.active === entitled &&
        JSON.stringify(body.features) === JSON.stringify(entitled ? expectOf(x) : []) &&
        (!entitled || body.sources[0]?.validUntil === seeded.validUntil);
      if (!ok) failures.push(`entitlement of ${x}: ${res.status} ${JSON.stringify(body)}`);
    }

    // ---- warm the working set with batch reads (what a node serving these users holds)
    progress(`warming ${hot} users through POST /v1/entitlements/batch`);
    for (let from = 0; from < hot; from += 1000) {
      const ids = Array.from({ length: Math.min(1000, hot - from) }, (_, k) => seeded.userAt(from + k));
      const res = await fetch(`${base}/v1/entitlements/batch`, {
        method: 'POST',
        headers: { ...auth, 'content-type': 'application/json' },
        body: JSON.stringify({ externalIds: ids }),
      });
      if (res.status !== 200) failures.push(`warm-up batch: ${res.status}`);
      await res.arrayBuffer();
    }

    const run = async (
      label: string,
      o: {
        path?: () => string;
        url?: string;
        rate?: number;
        seconds?: number;
        body?: () => string;
        conns?: number;
      },
    ) => {
      progress(label);
      const result = await autocannon({
        url: o.url ?? base,
        connections: o.conns ?? connections,
        duration: o.seconds ?? opts.seconds,
        ...(o.rate ? { overallRate: o.rate } : {}),
        headers: { ...auth, ...(o.body ? { 'content-type': 'application/json' } : {}) },
        requests: [
          {
            method: o.body ? 'POST' : 'GET',
            setupRequest: (req) => ({
              ...req,
              ...(o.path ? { path: o.path() } : {}),
              ...(o.body ? { body: o.body() } : {}),
            }),
          },
        ],
      });
      const bad = result.non2xx + result.errors + result.timeouts;
      if (bad > 0) failures.push(`${label}: ${bad} failed requests`);
      return { rps: result.requests.average, p50: result.latency.p50, p99: result.latency.p99 };
    };

    const health: number[] = [];
    const ent: Array<{ rps: number; p50: number; p99: number }> = [];
    for (let round = 1; round <= opts.rounds; round++) {
      health.push((await run(`round ${round}: GET /health`, { path: () => '/health' })).rps);
      ent.push(
        await run(`round ${round}: GET /v1/entitlements/{id} over ${hot} users`, {
          path: () => `/v1/entitlements/${hotUser()}`,
        }),
      );
    }
    const mean = (xs: number[]) => xs.reduce((s, x) => s + x, 0) / xs.length;
    const healthRps = mean(health);
    const entRps = mean(ent.map((r) => r.rps));
    const half = await run(`GET /v1/entitlements/{id} at half rate (${Math.round(entRps / 2)}/s)`, {
      path: () => `/v1/entitlements/${hotUser()}`,
      rate: Math.round(entRps / 2),
    });
    const batch = await run('POST /v1/entitlements/batch of 1000 ids, one client', {
      path: () => '/v1/entitlements/batch',
      body: () => JSON.stringify({ externalIds: Array.from({ length: 1000 }, hotUser) }),
      conns: 1,
    });
    const misses = await run(`GET /v1/entitlements/{id} over all ${seeded.users} users (mostly misses)`, {
      path: () => `/v1/entitlements/${anyUser()}`,
      seconds: Math.max(2, Math.round(opts.seconds / 2)),
    });
    const metrics = await (await fetch(`${base}/metrics`, { headers: auth })).text();
    const counter = (result: string) =>
      Number(
        metrics
          .split('\n')
          .find((l) => l.startsWith(`reprise_entitlement_cache_lookups_total{result="${result}"}`))
          ?.split(' ')
          .at(-1) ?? 0,
      );
    return {
      name: 'entitlements',
      engine,
      users: seeded.users,
      hotUsers: hot,
      connections,
      healthRps: Math.round(healthRps),
      entitlementsRps: Math.round(entRps),
      ratio: entRps / healthRps,
      p99Ms: mean(ent.map((r) => r.p99)),
      halfRateP99Ms: half.p99,
      halfRateP50Ms: half.p50,
      batch1000Rps: Math.round(batch.rps * 10) / 10,
      batch1000P99Ms: batch.p99,
      missPathRps: Math.round(misses.rps),
      missPathP99Ms: misses.p99,
      cacheHits: counter('hit'),
      cacheMisses: counter('miss'),
      serverPeakRssMiB: Math.round((server.peakRss() ?? 0) / MIB),
      seedSeconds: Math.round(seeded.seconds),
      checks: failures.length === 0 ? 'all passed' : failures.slice(0, 5).join('; '),
      failures: failures.length,
    };
  } finally {
    if (server && failures.length > 0) process.stderr.write(`--- server log tail\n${server.tail()}\n`);
    await server?.stop();
    rmSync(dir, { recursive: true, force: true });
    if (serverUrl) {
      for (const db of [dbName, `${dbName}_keys`])
        await adminQuery(serverUrl, `DROP DATABASE IF EXISTS "${db}" WITH (FORCE)`).catch(() => undefined);
    }
  }
}
