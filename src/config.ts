import { resolve } from 'node:path';
import { parseAllowCidrs } from './modules/webhooks/domain/ssrf.js';

/** Everything the platform reads from its environment, read once, in one place. */
export interface Config {
  host: string;
  port: number;
  dataDir: string;
  databaseUrl: string | undefined;
  bootstrapKey: string | undefined;
  /** Required with DATABASE_URL: every node must unwrap every customer's data key. */
  masterKey: string | undefined;
  /** PostgreSQL database holding the wrapped data keys; unset: `<dataDir>/keystore` (embedded only). */
  keystoreUrl: string | undefined;
  /** `demo` seeds the demo catalog on first start (embedded default); `none` starts empty. */
  seed: 'demo' | 'none';
  logLevel: string;
  bodyLimitBytes: number;
  rateLimitPerMinute: number;
  /** Failed authentications per client address per minute before unknown keys are refused unseen. */
  authFailuresPerMinute: number;
  /** A request's headers and body must arrive within this (slow clients are cut off). */
  requestTimeoutMs: number;
  /** How long events are kept for `GET /v1/events` and replay (days). */
  eventRetentionDays: number;
  /** Dunning: days after a renewal's first failed charge when it is retried (default 1, 3, 5, 7). */
  dunningRetryDays: number[];
  /** Invoice numbers a node takes at once per series (gapless either way; 1 keeps them in time order). */
  invoiceNumberBlock: number;
  /** Cycle jobs a renewal batch claims (`REPRISE_RENEWAL_BATCH`). */
  renewalBatch: number;
  /** Charges a renewal batch has in flight at once (`REPRISE_RENEWAL_CONCURRENCY`). */
  renewalConcurrency: number;
  /** How long a renewal batch holds its claimed jobs (`REPRISE_RENEWAL_LEASE_SECONDS`). */
  renewalLeaseMs: number;
  /** `NATS_URL`: a NATS JetStream server (or cluster, comma-separated) for events; unset: in-process bus. */
  natsUrl: string | undefined;
  /** `REPRISE_NATS_PREFIX`: subject and stream prefix (several deployments on one NATS). */
  natsPrefix: string;
  /** `REPRISE_NATS_REPLICAS`: stream replicas (3 on a cluster: acknowledged writes survive a server). */
  natsReplicas: number;
  /** `REPRISE_ENTITLEMENT_CACHE_SIZE`: external ids a node's entitlement projection holds (LRU). */
  entitlementCacheSize: number;
  /** `REPRISE_ENTITLEMENT_CACHE_TTL_SECONDS`: a held entry is reloaded from the database after this. */
  entitlementCacheTtlMs: number;
  /** `REPRISE_TRUST_PROXY`: whose X-Forwarded-For to believe for the client address. */
  trustProxy: boolean | number | string;
  idempotencyRetentionHours: number;
  /** How long a running request's claim on its Idempotency-Key protects it; a crash's claim expires after it. */
  idempotencyLeaseMs: number;
  /** How long an advancing test clock is held by its node (renewed by each job); a crashed advance is resumed after it. */
  testClockLeaseMs: number;
  poolMax: number;
  /** `id=url,id=url` of external PSP simulators; unset: two are started in-process. */
  simulators: string | undefined;
  /** Required with `simulators`; in-process simulators get secrets generated at start instead. */
  simulatorApiKey: string | undefined;
  simulatorWebhookSecret: string | undefined;
  /** JSON list of routing rules `[{ market, brand, providers: [...] }]`; default: every provider, in order. */
  paymentRoutes: string | undefined;
  providerTimeoutMs: number;
  /** How long a provider's open circuit waits before letting a probe through. */
  breakerHalfOpenMs: number;
  /** Webhook attempts in flight per node (`REPRISE_WEBHOOK_CONCURRENCY`). */
  webhookConcurrency: number;
  /** One webhook attempt at most (`REPRISE_WEBHOOK_TIMEOUT_MS`). */
  webhookTimeoutMs: number;
  /** How long a node reuses a computed admin dashboard (`REPRISE_DASHBOARD_CACHE_MS`; 0: never). */
  dashboardCacheMs: number;
  /** CIDRs where private, CGNAT, unique-local and loopback webhook targets are allowed (`REPRISE_WEBHOOK_ALLOW_CIDRS`). */
  webhookAllowCidrs: string;
  /** `REPRISE_PUBLIC_URL`: the origin hosted pages are served on; unset: `http://<host>:<port>`. */
  publicUrl: string | undefined;
  /** `REPRISE_ALLOWED_REDIRECT_ORIGINS`: origins hosted pages may send customers back to; unset: the public origin. */
  allowedRedirectOrigins: string | undefined;
}

/** A setting is missing or wrong: the process refuses to start and says which and why. */
export class ConfigError extends Error {
  override name = 'ConfigError';
}

function int(name: string, value: string | undefined, fallback: number, min: number, max: number): number {
  if (value === undefined || value === '') return fallback;
  const n = Number(value);
  if (!Number.isInteger(n) || n < min || n > max) {
    throw new ConfigError(`${name} must be an integer between ${min} and ${max}, got '${value}'`);
  }
  return n;
}

/** `REPRISE_DUNNING_RETRY_DAYS`: comma-separated days, strictly increasing, 1..60, at most 8. */
function retryDaysOf(value: string | undefined): number[] {
  if (value === undefined || value.trim() === '') return [1, 3, 5, 7];
  const days = value.split(',').map((d) => Number(d.trim()));
  const ok =
    days.length >= 1 &&
    days.length <= 8 &&
    days.every((d, i) => Number.isInteger(d) && d >= 1 && d <= 60 && (i === 0 || d > (days[i - 1] ?? 0)));
  if (!ok) {
    throw new ConfigError(
      `REPRISE_DUNNING_RETRY_DAYS must list 1 to 8 increasing whole days from 1 to 60 (e.g. 1,3,5,7), got '${value}'`,
    );
  }
  return days;
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
    throw new ConfigError(
      `REPRISE_TRUST_PROXY must be true, false, a hop count or addresses/CIDRs, got '${value}'`,
    );
  }
  return parts.join(',');
}

/**
 * `REPRISE_WEBHOOK_ALLOW_CIDRS`: where internal webhook subscribers may live. Default: none with
 * DATABASE_URL; loopback on the embedded default (development).
 */
function webhookAllowCidrsOf(value: string | undefined, databaseUrl: string | undefined): string {
  const text = value ?? (databaseUrl ? '' : '127.0.0.0/8,::1/128');
  try {
    parseAllowCidrs(text);
  } catch (error) {
    throw new ConfigError(`REPRISE_WEBHOOK_ALLOW_CIDRS: ${(error as Error).message}`);
  }
  return text;
}

/** Shortest value accepted as a shared secret. */
export const SECRET_LENGTH_MIN = 16;

function secret(name: string, value: string | undefined): string | undefined {
  if (value === undefined || value === '') return undefined;
  if (value.length < SECRET_LENGTH_MIN)
    throw new ConfigError(`${name} must be at least ${SECRET_LENGTH_MIN} characters (a random secret)`);
  return value;
}

/**
 * The secrets external PSP simulators share with Reprise: no default, so none is ever in the
 * source. `what` names who needs them in the message.
 */
export function requireSimulatorSecrets(
  config: Pick<Config, 'simulatorApiKey' | 'simulatorWebhookSecret'>,
  what: string,
): { apiKey: string; webhookSecret: string } {
  const missing = [
    config.simulatorApiKey ? undefined : 'REPRISE_SIMULATOR_API_KEY',
    config.simulatorWebhookSecret ? undefined : 'REPRISE_SIMULATOR_WEBHOOK_SECRET',
  ].filter((m) => m !== undefined);
  if (!config.simulatorApiKey || !config.simulatorWebhookSecret)
    throw new ConfigError(
      `${what} requires ${missing.join(' and ')}: the secrets shared with the simulator (there are no defaults; generate each with \`openssl rand -hex 32\`)`,
    );
  return { apiKey: config.simulatorApiKey, webhookSecret: config.simulatorWebhookSecret };
}

/** The simulator secrets alone (the `psp-simulator` command needs nothing else). */
export function simulatorSecretsFrom(
  env: NodeJS.ProcessEnv,
): Pick<Config, 'simulatorApiKey' | 'simulatorWebhookSecret'> {
  return {
    simulatorApiKey: secret('REPRISE_SIMULATOR_API_KEY', env.REPRISE_SIMULATOR_API_KEY),
    simulatorWebhookSecret: secret('REPRISE_SIMULATOR_WEBHOOK_SECRET', env.REPRISE_SIMULATOR_WEBHOOK_SECRET),
  };
}

export function loadConfig(env: NodeJS.ProcessEnv = process.env): Config {
  const databaseUrl = env.DATABASE_URL && env.DATABASE_URL !== '' ? env.DATABASE_URL : undefined;
  const seedEnv = env.REPRISE_SEED ?? (databaseUrl ? 'none' : 'demo');
  if (seedEnv !== 'demo' && seedEnv !== 'none')
    throw new ConfigError(`REPRISE_SEED must be 'demo' or 'none', got '${seedEnv}'`);
  const masterKey = env.REPRISE_MASTER_KEY || undefined;
  const keystoreUrl = env.REPRISE_KEYSTORE_URL || undefined;
  if (databaseUrl && !masterKey)
    throw new ConfigError(
      'REPRISE_MASTER_KEY is required with DATABASE_URL: every node must use the same master key to read customers (generate one with `openssl rand -base64 32` and give it to every node)',
    );
  if (databaseUrl && !keystoreUrl)
    throw new ConfigError(
      'REPRISE_KEYSTORE_URL is required with DATABASE_URL: the wrapped data keys live in a database of their own, so backups of the data never hold them (docs/adr/0012-key-store.md)',
    );
  if (keystoreUrl && keystoreUrl === databaseUrl)
    throw new ConfigError('REPRISE_KEYSTORE_URL must name another database than DATABASE_URL');
  const simulators = env.REPRISE_SIMULATORS || undefined;
  const simulatorSecrets = simulatorSecretsFrom(env);
  if (simulators) requireSimulatorSecrets(simulatorSecrets, 'REPRISE_SIMULATORS');
  return {
    host: env.HOST ?? '127.0.0.1',
    port: int('PORT', env.PORT, 3000, 0, 65535),
    dataDir: resolve(env.REPRISE_DATA_DIR ?? '.reprise'),
    databaseUrl,
    bootstrapKey: env.REPRISE_BOOTSTRAP_KEY || undefined,
    masterKey,
    keystoreUrl,
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
    eventRetentionDays: int('REPRISE_EVENT_RETENTION_DAYS', env.REPRISE_EVENT_RETENTION_DAYS, 90, 1, 3650),
    dunningRetryDays: retryDaysOf(env.REPRISE_DUNNING_RETRY_DAYS),
    invoiceNumberBlock: int('REPRISE_INVOICE_NUMBER_BLOCK', env.REPRISE_INVOICE_NUMBER_BLOCK, 50, 1, 10_000),
    // A batch writes each table in one multi-row statement: at most 65,535 bind parameters, so
    // rows × columns (invoices: 27, payments: 25) must fit. 2,000 leaves a margin.
    renewalBatch: int('REPRISE_RENEWAL_BATCH', env.REPRISE_RENEWAL_BATCH, 200, 1, 2_000),
    renewalConcurrency: int('REPRISE_RENEWAL_CONCURRENCY', env.REPRISE_RENEWAL_CONCURRENCY, 8, 1, 256),
    renewalLeaseMs:
      int('REPRISE_RENEWAL_LEASE_SECONDS', env.REPRISE_RENEWAL_LEASE_SECONDS, 60, 5, 3_600) * 1_000,
    natsUrl: natsUrlOf(env.NATS_URL),
    natsPrefix: natsPrefixOf(env.REPRISE_NATS_PREFIX),
    natsReplicas: int('REPRISE_NATS_REPLICAS', env.REPRISE_NATS_REPLICAS, 1, 1, 5),
    entitlementCacheSize: int(
      'REPRISE_ENTITLEMENT_CACHE_SIZE',
      env.REPRISE_ENTITLEMENT_CACHE_SIZE,
      200_000,
      1,
      50_000_000,
    ),
    entitlementCacheTtlMs:
      int(
        'REPRISE_ENTITLEMENT_CACHE_TTL_SECONDS',
        env.REPRISE_ENTITLEMENT_CACHE_TTL_SECONDS,
        300,
        1,
        86_400,
      ) * 1_000,
    idempotencyLeaseMs: int(
      'REPRISE_IDEMPOTENCY_LEASE_MS',
      env.REPRISE_IDEMPOTENCY_LEASE_MS,
      60_000,
      1_000,
      3_600_000,
    ),
    testClockLeaseMs: int(
      'REPRISE_TEST_CLOCK_LEASE_MS',
      env.REPRISE_TEST_CLOCK_LEASE_MS,
      10 * 60_000,
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
    simulators,
    ...simulatorSecrets,
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
    webhookConcurrency: int('REPRISE_WEBHOOK_CONCURRENCY', env.REPRISE_WEBHOOK_CONCURRENCY, 64, 1, 1_024),
    webhookTimeoutMs: int('REPRISE_WEBHOOK_TIMEOUT_MS', env.REPRISE_WEBHOOK_TIMEOUT_MS, 10_000, 100, 60_000),
    dashboardCacheMs: int('REPRISE_DASHBOARD_CACHE_MS', env.REPRISE_DASHBOARD_CACHE_MS, 5_000, 0, 60_000),
    webhookAllowCidrs: webhookAllowCidrsOf(env.REPRISE_WEBHOOK_ALLOW_CIDRS, databaseUrl),
    publicUrl: env.REPRISE_PUBLIC_URL || undefined,
    allowedRedirectOrigins: env.REPRISE_ALLOWED_REDIRECT_ORIGINS || undefined,
  };
}

/** `NATS_URL`: one or more `nats://host:port` (or `tls://`), comma-separated. */
function natsUrlOf(value: string | undefined): string | undefined {
  if (value === undefined || value.trim() === '') return undefined;
  for (const part of value.split(',')) {
    let url: URL;
    try {
      url = new URL(part.trim());
    } catch {
      throw new ConfigError(`NATS_URL: '${part.trim()}' is not a URL (nats://host:4222)`);
    }
    if (!['nats:', 'tls:'].includes(url.protocol) || !url.hostname) {
      throw new ConfigError(`NATS_URL: '${part.trim()}' must be nats://host:port or tls://host:port`);
    }
  }
  return value.trim();
}

function natsPrefixOf(value: string | undefined): string {
  const prefix = value === undefined || value === '' ? 'reprise' : value;
  if (!/^[a-z][a-z0-9_-]{0,31}$/.test(prefix)) {
    throw new ConfigError(
      `REPRISE_NATS_PREFIX: '${prefix}' must be 1-32 lower-case letters, digits, '-' or '_', starting with a letter`,
    );
  }
  return prefix;
}
