import { execFileSync } from 'node:child_process';
import { adminQuery, withDatabase } from '../../src/db/admin.js';
import { progress } from './load.js';

/** `-h -p -U` arguments of pgbench for a PostgreSQL URL. */
export function pgbenchConnectionArgs(url: string): string[] {
  const u = new URL(url);
  return ['-h', u.hostname, '-p', u.port || '5432', '-U', decodeURIComponent(u.username || 'postgres')];
}

/**
 * The baseline of every database benchmark: `pgbench -b tpcb-like` on a fresh database of the same
 * server (scale 10, `clients` clients, 2 threads), dropped afterwards. Returns transactions per second.
 */
export async function pgbenchTpcb(
  serverUrl: string,
  runId: string,
  seconds: number,
  clients = 8,
): Promise<number> {
  const pgbenchDb = `reprise_bench_pgbench_${runId}`;
  await adminQuery(serverUrl, `CREATE DATABASE "${pgbenchDb}"`);
  try {
    progress('pgbench: initialising scale 10');
    const args = pgbenchConnectionArgs(withDatabase(serverUrl, pgbenchDb));
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
