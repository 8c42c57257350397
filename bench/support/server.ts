import { type ChildProcess, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { adminQuery, withDatabase } from '../../src/db/admin.js';

export interface RunningServer {
  url: string;
  apiKey: string;
  engine: 'pglite' | 'postgres';
  process: ChildProcess;
  /** The server's data directory (its PGlite database is `pgdata/` in it). */
  dataDir: string;
  /** The server's database on the PostgreSQL server, when DATABASE_URL is set. */
  databaseUrl: string | undefined;
  /** Stops the server (SIGTERM, drained); the data stays until `cleanup`. */
  stop(): Promise<void>;
  /** Stops the server if it runs, then removes its data directory and databases. */
  cleanup(): Promise<void>;
}

export interface ServerOptions {
  /** Extra environment (wins over the defaults below). */
  env?: Record<string, string>;
  /** Listen here instead of a free port (e.g. when a simulator must know the webhook URL first). */
  port?: number;
  /** Arguments to node before the script (e.g. `--cpu-prof`). */
  nodeArgs?: string[];
  /** PGlite even when DATABASE_URL is set. */
  engine?: 'pglite' | 'postgres';
  /** Runs on the fresh PostgreSQL database before the server connects (e.g. ALTER DATABASE … SET). */
  beforeStart?: (databaseUrl: string) => Promise<void>;
}

const ROOT = new URL('../..', import.meta.url).pathname;
export const BENCH_KEY = 'bench-bootstrap-key-0123456789abcdef';

export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.listen(0, '127.0.0.1', () => {
      const address = srv.address();
      srv.close(() =>
        typeof address === 'object' && address ? resolve(address.port) : reject(new Error('no port')),
      );
    });
  });
}

/**
 * Starts the built server (`node dist/cli/main.js serve`) as its own process, with a fresh data
 * directory, and with a fresh database on the PostgreSQL server when DATABASE_URL is set.
 */
export async function startServer(options: ServerOptions = {}): Promise<RunningServer> {
  const env = options.env ?? {};
  const port = options.port ?? (await freePort());
  const dataDir = mkdtempSync(join(tmpdir(), 'reprise-bench-'));
  let dropDatabase: (() => Promise<void>) | undefined;
  let databaseUrl: string | undefined;
  let keystoreUrl: string | undefined;
  if (process.env.DATABASE_URL && options.engine !== 'pglite') {
    const name = `reprise_bench_${Date.now().toString(36)}`;
    await adminQuery(process.env.DATABASE_URL, `CREATE DATABASE "${name}"`);
    // PostgreSQL needs a key store database of its own (and a master key, below).
    await adminQuery(process.env.DATABASE_URL, `CREATE DATABASE "${name}_keys"`);
    databaseUrl = withDatabase(process.env.DATABASE_URL, name);
    keystoreUrl = withDatabase(process.env.DATABASE_URL, `${name}_keys`);
    dropDatabase = async () => {
      for (const db of [name, `${name}_keys`])
        await adminQuery(process.env.DATABASE_URL!, `DROP DATABASE IF EXISTS "${db}" WITH (FORCE)`);
    };
  }
  if (databaseUrl && options.beforeStart) await options.beforeStart(databaseUrl);
  const child = spawn(
    process.execPath,
    [...(options.nodeArgs ?? []), join(ROOT, 'dist/cli/main.js'), 'serve'],
    {
      cwd: ROOT,
      env: {
        ...process.env,
        PORT: String(port),
        HOST: '127.0.0.1',
        REPRISE_DATA_DIR: dataDir,
        REPRISE_SEED: 'demo',
        REPRISE_BOOTSTRAP_KEY: BENCH_KEY,
        REPRISE_RATE_LIMIT_PER_MINUTE: '10000000',
        LOG_LEVEL: 'warn',
        ...(databaseUrl && keystoreUrl
          ? {
              DATABASE_URL: databaseUrl,
              REPRISE_KEYSTORE_URL: keystoreUrl,
              REPRISE_MASTER_KEY: randomBytes(32).toString('base64'),
            }
          : { DATABASE_URL: '' }),
        ...env,
      },
      stdio: ['ignore', 'pipe', 'inherit'],
    },
  );
  const url = `http://127.0.0.1:${port}`;
  const deadline = Date.now() + 60_000;
  while (Date.now() < deadline) {
    if (child.exitCode !== null) throw new Error(`server exited with ${child.exitCode}`);
    try {
      if ((await fetch(`${url}/health`)).ok) break;
    } catch {
      // not listening yet
    }
    await new Promise((r) => setTimeout(r, 200));
  }
  return {
    url,
    apiKey: BENCH_KEY,
    engine: databaseUrl ? 'postgres' : 'pglite',
    process: child,
    dataDir,
    databaseUrl,
    stop,
    async cleanup() {
      await stop();
      rmSync(dataDir, { recursive: true, force: true });
      if (dropDatabase) await dropDatabase();
    },
  };
  async function stop() {
    if (child.exitCode === null && child.signalCode === null) {
      const exited = new Promise((r) => child.once('exit', r));
      child.kill('SIGTERM');
      await exited;
    }
  }
}
