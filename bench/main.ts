import { mkdirSync, writeFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { benchEntitlements } from './entitlements.js';
import { benchLedger } from './ledger.js';
import { benchPlans } from './plans.js';
import { benchPurchase } from './purchase.js';
import { benchRelay } from './relay.js';
import { benchRenewals } from './renewals.js';

/**
 * `npm run bench [name] [-- --seconds N --rounds N --connections N --trace --engine postgres|pglite]`
 * `npm run bench renewals -- --subscriptions N [--workers K] [--kill] [--nodes K] [--compare-pglite]
 *   [--deadline S] [--pgbench-seconds S]`
 * `npm run bench entitlements -- [--users N] [--hot N] [--seconds S --rounds R --connections C]`
 * `npm run bench relay -- [--seconds S --connections WRITERS]` (PostgreSQL and NATS)
 * Every benchmark prints a ratio against a baseline measured in the same run. Results also go to
 * .bench/<name>.json. Set DATABASE_URL to run against a PostgreSQL server instead of PGlite.
 */
const { values, positionals } = parseArgs({
  allowPositionals: true,
  options: {
    seconds: { type: 'string', default: '5' },
    rounds: { type: 'string', default: '2' },
    connections: { type: 'string' },
    trace: { type: 'boolean', default: false },
    engine: { type: 'string' },
    // renewals
    subscriptions: { type: 'string', default: '10000' },
    workers: { type: 'string', default: '1' },
    kill: { type: 'boolean', default: false },
    nodes: { type: 'string' },
    'compare-pglite': { type: 'boolean', default: false },
    deadline: { type: 'string' },
    'pgbench-seconds': { type: 'string', default: '10' },
    'seed-only': { type: 'boolean', default: false },
    // entitlements
    users: { type: 'string' },
    hot: { type: 'string' },
  },
});
const positiveInt = (name: string, v: string | undefined): number | undefined => {
  if (v === undefined) return undefined;
  const x = Number(v);
  if (!Number.isSafeInteger(x) || x < 1) {
    process.stderr.write(`--${name} must be a positive integer, got '${v}'\n`);
    process.exit(2);
  }
  return x;
};
const opts = {
  seconds: Number(values.seconds),
  rounds: Number(values.rounds),
  connections: values.connections === undefined ? undefined : Number(values.connections),
  trace: values.trace,
  engine: values.engine,
};
const renewalOpts = {
  subscriptions: positiveInt('subscriptions', values.subscriptions)!,
  workers: positiveInt('workers', values.workers)!,
  kill: values.kill,
  nodes: positiveInt('nodes', values.nodes),
  comparePglite: values['compare-pglite'],
  deadlineSeconds: positiveInt('deadline', values.deadline),
  pgbenchSeconds: positiveInt('pgbench-seconds', values['pgbench-seconds'])!,
  seedOnly: values['seed-only'],
};
/** The default run (no name) keeps to the quick benches; `renewals` is named explicitly. */
const BENCHES = {
  plans: () => benchPlans(opts),
  ledger: () => benchLedger(opts),
  purchase: () => benchPurchase(opts),
  renewals: () => benchRenewals(renewalOpts),
  entitlements: () =>
    benchEntitlements({
      ...opts,
      ...(values.users ? { users: positiveInt('users', values.users)! } : {}),
      ...(values.hot ? { hot: positiveInt('hot', values.hot)! } : {}),
    }),
  relay: () => benchRelay(opts),
} as const;
const DEFAULT = ['plans', 'ledger'];

const names = positionals.length > 0 ? positionals : DEFAULT;
mkdirSync('.bench', { recursive: true });
for (const name of names) {
  const bench = BENCHES[name as keyof typeof BENCHES];
  if (!bench) {
    process.stderr.write(`Unknown benchmark '${name}'. Known: ${Object.keys(BENCHES).join(', ')}\n`);
    process.exit(2);
  }
  process.stderr.write(`bench ${name} (${JSON.stringify(name === 'renewals' ? renewalOpts : opts)})\n`);
  const result = await bench();
  writeFileSync(
    `.bench/${name}.json`,
    `${JSON.stringify({ ...result, at: new Date().toISOString() }, null, 2)}\n`,
  );
  process.stdout.write(`${report(result as Record<string, unknown>)}\n`);
  if (result.failures > 0) process.exitCode = 1;
}

function report(result: Record<string, unknown>): string {
  const lines = [`${result.name} [${result.engine}]`];
  for (const [key, value] of Object.entries(result)) {
    if (key === 'name' || key === 'engine') continue;
    const shown = typeof value === 'number' && !Number.isInteger(value) ? value.toFixed(3) : String(value);
    lines.push(`  ${key.padEnd(18)} ${shown}`);
  }
  return lines.join('\n');
}
