import { type LoadResult, load, progress } from './support/load.js';
import { startServer } from './support/server.js';

/**
 * GET /v1/plans (auth, validation, three queries, serialisation of the 8 demo plans) against the
 * same server's GET /health, alternating so both see the same machine state.
 * Goal (docs/PERFORMANCE.md): the ratio, not the absolute number, which depends on the machine.
 */
export async function benchPlans(opts: {
  seconds: number;
  rounds: number;
  connections?: number | undefined;
}) {
  const connections = opts.connections ?? 20;
  progress('starting the server (built dist/, demo catalog)');
  const server = await startServer();
  try {
    const auth = { authorization: `Bearer ${server.apiKey}` };
    progress('warming up');
    await load('warmup', `${server.url}/v1/plans`, {
      seconds: 2,
      connections,
      headers: auth,
    });
    await load('warmup', `${server.url}/health`, { seconds: 1, connections });
    const health: LoadResult[] = [];
    const plans: LoadResult[] = [];
    for (let round = 1; round <= opts.rounds; round++) {
      progress(`round ${round}/${opts.rounds}: GET /health for ${opts.seconds}s`);
      health.push(
        await load('GET /health', `${server.url}/health`, {
          seconds: opts.seconds,
          connections,
        }),
      );
      progress(`round ${round}/${opts.rounds}: GET /v1/plans for ${opts.seconds}s`);
      plans.push(
        await load('GET /v1/plans', `${server.url}/v1/plans`, {
          seconds: opts.seconds,
          connections,
          headers: auth,
        }),
      );
    }
    const mean = (xs: LoadResult[], f: (r: LoadResult) => number) =>
      xs.reduce((s, r) => s + f(r), 0) / xs.length;
    const healthRps = mean(health, (r) => r.requestsPerSec);
    const plansRps = mean(plans, (r) => r.requestsPerSec);
    const failures = [...health, ...plans].reduce((s, r) => s + r.non2xx + r.errors, 0);
    return {
      name: 'plans-vs-health',
      engine: server.engine,
      connections,
      seconds: opts.seconds,
      rounds: opts.rounds,
      healthRps: Math.round(healthRps),
      plansRps: Math.round(plansRps),
      ratio: plansRps / healthRps,
      plansP50Ms: mean(plans, (r) => r.latencyP50Ms),
      plansP99Ms: mean(plans, (r) => r.latencyP99Ms),
      healthP99Ms: mean(health, (r) => r.latencyP99Ms),
      failures,
    };
  } finally {
    await server.cleanup();
  }
}
