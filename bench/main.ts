import { mkdirSync, writeFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { benchLedger } from './ledger.js';
import { benchPlans } from './plans.js';
import { benchPurchase } from './purchase.js';

/**
 * `npm run bench [name] [-- --seconds N --rounds N --connections N --trace --engine postgres|pglite]`
 * Every benchmark prints a ratio against a baseline measured in the same run. Results also go to
 * .bench/<name>.json. Set DATABASE_URL to run against a PostgreSQL server instead of PGlite.
 */
const BENCHES = { plans: benchPlans, ledger: benchLedger, purchase: benchPurchase } as const;

const { values, positionals } = parseArgs({
  allowPositionals: true,
  options: {
    seconds: { type: 'string', default: '5' },
    rounds: { type: 'string', default: '2' },
    connections: { type: 'string' },
    trace: { type: 'boolean', default: false },
    engine: { type: 'string' },
  },
});
const opts = {
  seconds: Number(values.seconds),
  rounds: Number(values.rounds),
  connections: values.connections === undefined ? undefined : Number(values.connections),
  trace: values.trace,
  engine: values.engine,
};
const names = positionals.length > 0 ? positionals : Object.keys(BENCHES);
mkdirSync('.bench', { recursive: true });
for (const name of names) {
  const bench = BENCHES[name as keyof typeof BENCHES];
  if (!bench) {
    process.stderr.write(`Unknown benchmark '${name}'. Known: ${Object.keys(BENCHES).join(', ')}\n`);
    process.exit(2);
  }
  process.stderr.write(`bench ${name} (${JSON.stringify(opts)})\n`);
  const result = await bench(opts);
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
