import autocannon from 'autocannon';

export interface LoadResult {
  label: string;
  requestsPerSec: number;
  latencyP50Ms: number;
  latencyP99Ms: number;
  non2xx: number;
  errors: number;
}

/** One bounded autocannon run (time-limited, loopback only). */
export async function load(
  label: string,
  url: string,
  opts: { seconds: number; connections: number; headers?: Record<string, string> },
): Promise<LoadResult> {
  const result = await autocannon({
    url,
    duration: opts.seconds,
    connections: opts.connections,
    pipelining: 1,
    headers: opts.headers ?? {},
  });
  return {
    label,
    requestsPerSec: result.requests.average,
    latencyP50Ms: result.latency.p50,
    latencyP99Ms: result.latency.p99,
    non2xx: result.non2xx,
    errors: result.errors + result.timeouts,
  };
}

export function progress(message: string): void {
  process.stderr.write(`  … ${message}\n`);
}
