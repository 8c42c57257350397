import { mkdirSync, writeFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { benchPlans } from './plans.js';

/**
 * `npm run bench [name] [-- --seconds N --rounds N --connections N]`
 * Every benchmark prints a ratio against a baseline measured in the same run. Results also go to
 * .bench/<name>.json. Set DATABASE_URL to run against a PostgreSQL server instead of PGlite.
 */
const BENCHES = { plans: benchPlans } as const;

const { values, positionals } = parseArgs({
  allowPositionals: true,
  options: {
    seconds: { type: 'string', default: '5' },
    rounds: { type: 'string', default: '2' },
    connections: { type: 'string', default: '20' },
  },
});
const opts = {
  seconds: Number(values.seconds),
  rounds: Number(values.rounds),
  connections: Number(values.connections),
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
  process.stdout.write(
    [
      `${result.name} [${result.engine}]`,
      `  GET /health     ${result.healthRps} req/s (p99 ${result.healthP99Ms.toFixed(1)} ms)`,
      `  GET /v1/plans   ${result.plansRps} req/s (p50 ${result.plansP50Ms.toFixed(1)} ms, p99 ${result.plansP99Ms.toFixed(1)} ms)`,
      `  ratio plans/health = ${result.ratio.toFixed(3)}   failures: ${result.failures}`,
      '',
    ].join('\n'),
  );
  if (result.failures > 0) process.exitCode = 1;
}
