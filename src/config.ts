import { resolve } from 'node:path';

/** Everything the platform reads from its environment, read once, in one place. */
export interface Config {
  host: string;
  port: number;
  dataDir: string;
  databaseUrl: string | undefined;
  bootstrapKey: string | undefined;
  masterKey: string | undefined;
  /** `demo` seeds the demo catalog on first start (embedded default); `none` starts empty. */
  seed: 'demo' | 'none';
  logLevel: string;
  bodyLimitBytes: number;
  rateLimitPerMinute: number;
  /** Failed authentications per client address per minute before unknown keys are refused unseen. */
  authFailuresPerMinute: number;
  /** A request's headers and body must arrive within this (slow clients are cut off). */
  requestTimeoutMs: number;
  /** `REPRISE_TRUST_PROXY`: whose X-Forwarded-For to believe for the client address. */
  trustProxy: boolean | number | string;
  idempotencyRetentionHours: number;
  /** How long a running request's claim on its Idempotency-Key protects it; a crash's claim expires after it. */
  idempotencyLeaseMs: number;
  poolMax: number;
  /** `id=url,id=url` of external PSP simulators; unset: two are started in-process. */
  simulators: string | undefined;
  simulatorApiKey: string;
  simulatorWebhookSecret: string;
  /** JSON list of routing rules `[{ market, brand, providers: [...] }]`; default: every provider, in order. */
  paymentRoutes: string | undefined;
  providerTimeoutMs: number;
  /** How long a provider's open circuit waits before letting a probe through. */
  breakerHalfOpenMs: number;
}

function int(name: string, value: string | undefined, fallback: number, min: number, max: number): number {
  if (value === undefined || value === '') return fallback;
  const n = Number(value);
  if (!Number.isInteger(n) || n < min || n > max) {
    throw new Error(`${name} must be an integer between ${min} and ${max}, got '${value}'`);
  }
  return n;
}

/**
 * `REPRISE_TRUST_PROXY`: unset or `false` (the peer is the client), `true` (trust every proxy:
 * only behind a proxy that overwrites X-Forwarded-For), a hop count, or a comma-separated list of
 * proxy addresses and CIDRs (e.g. `10.0.0.0/8,127.0.0.1`).
 */
function trustProxyOf(value: string | undefined): boolean | number | string {
  if (value === undefined || value === '' || value === 'false') return false;
  if (value === 'true') return true;
  if (/^\d+$/.test(value)) return int('REPRISE_TRUST_PROXY', value, 0, 0, 100);
  const parts = value.split(',').map((p) => p.trim());
  if (parts.some((p) => !/^[0-9a-fA-F.:]+(\/\d{1,3})?$/.test(p))) {
    throw new Error(
      `REPRISE_TRUST_PROXY must be true, false, a hop count or addresses/CIDRs, got '${value}'`,
    );
  }
  return parts.join(',');
}

export function loadConfig(env: NodeJS.ProcessEnv = process.env): Config {
  const databaseUrl = env.DATABASE_URL && env.DATABASE_URL !== '' ? env.DATABASE_URL : undefined;
  const seedEnv = env.REPRISE_SEED ?? (databaseUrl ? 'none' : 'demo');
  if (seedEnv !== 'demo' && seedEnv !== 'none')
    throw new Error(`REPRISE_SEED must be 'demo' or 'none', got '${seedEnv}'`);
  return {
    host: env.HOST ?? '127.0.0.1',
    port: int('PORT', env.PORT, 3000, 0, 65535),
    dataDir: resolve(env.REPRISE_DATA_DIR ?? '.reprise'),
    databaseUrl,
    bootstrapKey: env.REPRISE_BOOTSTRAP_KEY || undefined,
    masterKey: env.REPRISE_MASTER_KEY || undefined,
    seed: seedEnv,
    logLevel: env.LOG_LEVEL ?? 'info',
    bodyLimitBytes: int(
      'REPRISE_BODY_LIMIT_BYTES',
      env.REPRISE_BODY_LIMIT_BYTES,
      256 * 1024,
      1024,
      50 * 1024 * 1024,
    ),
    rateLimitPerMinute: int(
      'REPRISE_RATE_LIMIT_PER_MINUTE',
      env.REPRISE_RATE_LIMIT_PER_MINUTE,
      6000,
      1,
      10_000_000,
    ),
    authFailuresPerMinute: int(
      'REPRISE_AUTH_FAILURES_PER_MINUTE',
      env.REPRISE_AUTH_FAILURES_PER_MINUTE,
      30,
      1,
      1_000_000,
    ),
    requestTimeoutMs: int('REPRISE_REQUEST_TIMEOUT_MS', env.REPRISE_REQUEST_TIMEOUT_MS, 30_000, 500, 600_000),
    trustProxy: trustProxyOf(env.REPRISE_TRUST_PROXY),
    idempotencyLeaseMs: int(
      'REPRISE_IDEMPOTENCY_LEASE_MS',
      env.REPRISE_IDEMPOTENCY_LEASE_MS,
      60_000,
      1_000,
      3_600_000,
    ),
    idempotencyRetentionHours: int(
      'REPRISE_IDEMPOTENCY_RETENTION_HOURS',
      env.REPRISE_IDEMPOTENCY_RETENTION_HOURS,
      48,
      24,
      24 * 90,
    ),
    poolMax: int('REPRISE_DB_POOL_MAX', env.REPRISE_DB_POOL_MAX, 10, 1, 500),
    simulators: env.REPRISE_SIMULATORS || undefined,
    simulatorApiKey: env.REPRISE_SIMULATOR_API_KEY || 'sk_simulator_development',
    simulatorWebhookSecret: env.REPRISE_SIMULATOR_WEBHOOK_SECRET || 'whsec_simulator_development',
    paymentRoutes: env.REPRISE_PAYMENT_ROUTES || undefined,
    providerTimeoutMs: int(
      'REPRISE_PROVIDER_TIMEOUT_MS',
      env.REPRISE_PROVIDER_TIMEOUT_MS,
      5_000,
      100,
      120_000,
    ),
    breakerHalfOpenMs: int(
      'REPRISE_PROVIDER_BREAKER_HALF_OPEN_MS',
      env.REPRISE_PROVIDER_BREAKER_HALF_OPEN_MS,
      5_000,
      100,
      600_000,
    ),
  };
}
