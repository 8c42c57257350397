import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { sql } from 'kysely';
import { adminQuery, withDatabase } from '../src/db/admin.js';
import { type DatabaseHandle, openDatabase } from '../src/db/engine.js';
import { migrate } from '../src/db/migrate.js';
import { transact } from '../src/db/transaction.js';
import { systemClock } from '../src/kernel/clock.js';
import type { TransactionSpec } from '../src/modules/ledger/domain/transaction.js';
import { BALANCE_SLOTS, LedgerService } from '../src/modules/ledger/service.js';
import { progress } from './support/load.js';
import { pgbenchConnectionArgs, pgbenchTpcb } from './support/pgbench.js';

const CLIENTS = 8;
const BATCH_SIZE = 100;

/**
 * Two-posting ledger transactions per second on the PostgreSQL server, against pgbench's
 * tpcb-like transactions per second on the same server in the same run (8 clients each).
 * Goals: single ≥ 0.7× pgbench, batched ≥ 3× pgbench, hot (10 accounts) ≥ 0.7× spread (10,000).
 */
export async function benchLedger(opts: { seconds: number }) {
  const serverUrl = process.env.DATABASE_URL;
  const runId = Date.now().toString(36);
  const pglite = await pgliteFigure(Math.min(opts.seconds, 5));
  if (!serverUrl) {
    progress('DATABASE_URL unset: only the PGlite figure (set it for the PostgreSQL ratios)');
    return { name: 'ledger', engine: 'pglite', pgliteSingleTps: pglite, failures: 0 };
  }

  const ledgerDb = `reprise_bench_ledger_${runId}`;
  await adminQuery(serverUrl, `CREATE DATABASE "${ledgerDb}"`);
  const handle = await openDatabase({ databaseUrl: withDatabase(serverUrl, ledgerDb), poolMax: CLIENTS });
  try {
    await migrate(handle.db);
    const ledger = new LedgerService(handle.db, systemClock);
    const deadlocksBefore = await deadlocks(handle, ledgerDb);
    // Warm up (connections, prepared statements, caches), unmeasured.
    await run(handle, ledger, 'warmup', 10_000, 1, 2);
    const spread = await run(handle, ledger, 'spread', 10_000, 1, opts.seconds);
    const statementTps = pgbenchStatement(withDatabase(serverUrl, ledgerDb), opts.seconds);
    const hot = await run(handle, ledger, 'hot', 10, 1, opts.seconds);
    const batched = await run(handle, ledger, 'batched', 10_000, BATCH_SIZE, opts.seconds);
    const deadlockCount = (await deadlocks(handle, ledgerDb)) - deadlocksBefore;
    const trial = await ledger.trialBalance({ verify: true });
    // The baseline last, on a quiet server (its initialisation writes a million rows).
    const pgbenchTps = await pgbenchTpcb(serverUrl, runId, opts.seconds, CLIENTS);
    return {
      name: 'ledger',
      engine: 'postgres',
      clients: CLIENTS,
      seconds: opts.seconds,
      pgbenchTps: Math.round(pgbenchTps),
      singleTps: Math.round(spread.tps),
      hotTps: Math.round(hot.tps),
      batchedTps: Math.round(batched.tps),
      pgliteSingleTps: Math.round(pglite),
      statementViaPgbenchTps: Math.round(statementTps),
      singleRatio: spread.tps / pgbenchTps,
      batchedRatio: batched.tps / pgbenchTps,
      hotRatio: hot.tps / spread.tps,
      deadlocks: deadlockCount,
      errors: spread.errors + hot.errors + batched.errors,
      trialBalanced: trial.every((l) => l.balanced),
      failures:
        spread.errors +
        hot.errors +
        batched.errors +
        deadlockCount +
        (trial.every((l) => l.balanced) ? 0 : 1),
    };
  } finally {
    await handle.close();
    await adminQuery(serverUrl, `DROP DATABASE IF EXISTS "${ledgerDb}" WITH (FORCE)`);
  }
}

/**
 * Diagnostic: the same one-statement post (transaction, two postings, two balance slots, with the
 * database's checks) driven by pgbench's C client instead of Node, to separate the database's cost
 * from the Node client's on a machine where both share the cores.
 */
function pgbenchStatement(url: string, seconds: number): number {
  const u = new URL(url);
  const script = join(mkdtempSync(join(tmpdir(), 'reprise-bench-')), 'post.sql');
  const code = (v: string) => `concat('transfer_test', chr(58), 'a', (:${v})::int, chr(58), 'EUR')`;
  writeFileSync(
    script,
    `\\set a random(0, 9999)
\\set b (:a + 1) % 10000
\\set s random(0, ${BALANCE_SLOTS - 1})
WITH acc AS (SELECT (SELECT id FROM ledger_accounts WHERE code = ${code('a')}) AS da, (SELECT id FROM ledger_accounts WHERE code = ${code('b')}) AS ca),
ins AS (INSERT INTO ledger_transactions (id, idempotency_key, postings_hash, effective_at, created_at)
  SELECT k, k, 'h', now(), now() FROM (SELECT gen_random_uuid()::text AS k) g RETURNING id),
input_p AS (SELECT ins.id AS transaction_id, v.seq, CASE WHEN v.seq = 0 THEN acc.da ELSE acc.ca END AS account_id, 'EUR' AS currency,
  (CASE WHEN v.seq = 0 THEN 5 ELSE -5 END)::bigint AS amount_minor, (:s)::smallint AS slot FROM ins, acc, (VALUES (0), (1)) v (seq)),
ins_p AS (INSERT INTO ledger_postings (transaction_id, seq, account_id, currency, amount_minor) SELECT transaction_id, seq, account_id, currency, amount_minor FROM input_p),
ins_s AS (INSERT INTO ledger_balance_slots (account_id, slot, currency, debits_minor, credits_minor)
  SELECT account_id, slot, currency, greatest(amount_minor, 0), greatest(-amount_minor, 0) FROM input_p ORDER BY account_id, slot
  ON CONFLICT (account_id, slot) DO UPDATE SET debits_minor = ledger_balance_slots.debits_minor + excluded.debits_minor,
    credits_minor = ledger_balance_slots.credits_minor + excluded.credits_minor)
SELECT id FROM ins;
`,
  );
  progress(`ledger statement via pgbench's client: ${CLIENTS} clients, ${seconds}s`);
  const out = execFileSync(
    'pgbench',
    [
      ...pgbenchConnectionArgs(url),
      '-n',
      '-M',
      'prepared',
      '-f',
      script,
      '-c',
      String(CLIENTS),
      '-j',
      '2',
      '-T',
      String(seconds),
      u.pathname.slice(1),
    ],
    { encoding: 'utf8' },
  );
  rmSync(dirname(script), { recursive: true, force: true });
  return Number(/tps = ([\d.]+)/.exec(out)?.[1] ?? 0);
}

async function deadlocks(handle: DatabaseHandle, database: string): Promise<number> {
  const r = await sql<{
    n: number;
  }>`SELECT deadlocks::bigint AS n FROM pg_stat_database WHERE datname = ${database}`.execute(handle.db);
  return r.rows[0]?.n ?? 0;
}

function transferSpec(key: string, accounts: number, rand: () => number): TransactionSpec {
  const from = Math.floor(rand() * accounts);
  let to = Math.floor(rand() * accounts);
  if (to === from) to = (to + 1) % accounts;
  const amount = 1 + Math.floor(rand() * 10_000);
  return {
    idempotencyKey: key,
    postings: [
      { account: { type: 'transfer_test', owner: `a${to}`, currency: 'EUR' }, debit: amount },
      { account: { type: 'transfer_test', owner: `a${from}`, currency: 'EUR' }, credit: amount },
    ],
  };
}

/** CLIENTS workers post for `seconds`; returns two-posting ledger transactions per second. */
async function run(
  handle: DatabaseHandle,
  ledger: LedgerService,
  label: string,
  accounts: number,
  batch: number,
  seconds: number,
) {
  const rand = Math.random;
  progress(`ledger ${label}: creating ${accounts} accounts`);
  for (let i = 0; i < accounts; i += 1000) {
    const specs = Array.from({ length: Math.min(1000, accounts - i) }, (_, j) => ({
      idempotencyKey: `${label}-setup-${i + j}`,
      postings: [
        { account: { type: 'transfer_test' as const, owner: `a${i + j}`, currency: 'EUR' }, debit: 1 },
        {
          account: { type: 'transfer_test' as const, owner: `a${(i + j + 1) % accounts}`, currency: 'EUR' },
          credit: 1,
        },
      ],
    }));
    await transact(handle.db, (trx) => ledger.postBatch(trx, specs));
  }
  progress(`ledger ${label}: ${CLIENTS} clients × ${batch} per database transaction, ${seconds}s`);
  const deadline = Date.now() + seconds * 1000;
  let done = 0;
  let errors = 0;
  let seq = 0;
  const started = performance.now();
  await Promise.all(
    Array.from({ length: CLIENTS }, async (_, w) => {
      while (Date.now() < deadline) {
        const specs = Array.from({ length: batch }, () =>
          transferSpec(`${label}-${w}-${seq++}`, accounts, rand),
        );
        try {
          // The post is one statement, so outside a business transaction it commits on its own:
          // one round trip, one commit (fsync) per database transaction, like pgbench's.
          if (batch === 1) await ledger.post(handle.db, specs[0]!);
          else await ledger.postBatch(handle.db, specs);
          done += batch;
        } catch (error) {
          errors++;
          if (errors <= 3)
            process.stderr.write(`    error: ${error instanceof Error ? error.message : String(error)}\n`);
        }
      }
    }),
  );
  const elapsed = (performance.now() - started) / 1000;
  return { tps: done / elapsed, errors };
}

/** One client posting single transactions on the embedded engine (file-backed, like npm start). */
async function pgliteFigure(seconds: number): Promise<number> {
  const dir = mkdtempSync(join(tmpdir(), 'reprise-bench-pglite-'));
  const handle = await openDatabase({ dataDir: dir });
  try {
    await migrate(handle.db);
    const ledger = new LedgerService(handle.db, systemClock);
    progress(`ledger on PGlite: 1 client, ${seconds}s`);
    const deadline = Date.now() + seconds * 1000;
    let done = 0;
    const started = performance.now();
    while (Date.now() < deadline) {
      await transact(handle.db, (trx) => ledger.post(trx, transferSpec(`pglite-${done}`, 1000, Math.random)));
      done++;
    }
    return done / ((performance.now() - started) / 1000);
  } finally {
    await handle.close();
    rmSync(dir, { recursive: true, force: true });
  }
}
