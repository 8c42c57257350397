import { execFileSync } from 'node:child_process';
import { adminQuery, withDatabase } from '../../src/db/admin.js';
import { progress } from './load.js';

/** The baseline's clients, as issue 8 fixes them: every ratio is against tpcb-like at 8 clients. */
export const PGBENCH_CLIENTS = 8;

/** pgbench's connection arguments for a database URL (host, port, user). */
export function pgbenchArgs(url: string): string[] {
  const u = new URL(url);
  return ['-h', u.hostname, '-p', u.port || '5432', '-U', decodeURIComponent(u.username || 'postgres')];
}

/**
 * `pgbench -b tpcb-like` on a fresh database of the same server (scale 10, `clients` clients,
 * 2 threads, `seconds` long); returns its transactions per second. The database is dropped after.
 */
export async function pgbenchTpcb(
  serverUrl: string,
  runId: string,
  seconds: number,
  clients = PGBENCH_CLIENTS,
): Promise<number> {
  const pgbenchDb = `reprise_bench_pgbench_${runId}`;
  await adminQuery(serverUrl, `CREATE DATABASE "${pgbenchDb}"`);
  try {
    progress('pgbench: initialising scale 10');
    const args = pgbenchArgs(withDatabase(serverUrl, pgbenchDb));
    execFileSync('pgbench', [...args, '-i', '-s', '10', '-q', pgbenchDb], { stdio: 'ignore' });
    progress(`pgbench: tpcb-like, ${clients} clients, ${seconds}s`);
    const out = execFileSync(
      'pgbench',
      [...args, '-b', 'tpcb-like', '-c', String(clients), '-j', '2', '-T', String(seconds), pgbenchDb],
      { encoding: 'utf8' },
    );
    const match = /tps = ([\d.]+)/.exec(out);
    if (!match) throw new Error(`cannot read pgbench output:\n${out}`);
    return Number(match[1]);
  } finally {
    await adminQuery(serverUrl, `DROP DATABASE IF EXISTS "${pgbenchDb}" WITH (FORCE)`);
  }
}
