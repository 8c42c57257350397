import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { ConfigError, loadConfig } from '../../src/config.js';

const ROOT = join(import.meta.dirname, '..', '..');
const SIM_KEY = 'sk_test_0123456789abcdef';
const SIM_SECRET = 'whsec_test_0123456789abcdef';
const PG = 'postgres://db.example/reprise';
const KEYS = 'postgres://keys.example/reprise_keys';
const MASTER = Buffer.alloc(32, 1).toString('base64');

describe('configuration refuses to start without its secrets', () => {
  it('has no simulator secret of its own: unset stays unset', () => {
    const config = loadConfig({});
    expect(config.simulatorApiKey).toBeUndefined();
    expect(config.simulatorWebhookSecret).toBeUndefined();
  });

  it('external simulators require both simulator secrets, naming the missing ones', () => {
    const sims = 'simulator-a=http://127.0.0.1:4010';
    expect(() => loadConfig({ REPRISE_SIMULATORS: sims })).toThrow(
      /REPRISE_SIMULATORS requires REPRISE_SIMULATOR_API_KEY and REPRISE_SIMULATOR_WEBHOOK_SECRET/,
    );
    expect(() => loadConfig({ REPRISE_SIMULATORS: sims, REPRISE_SIMULATOR_API_KEY: SIM_KEY })).toThrow(
      /requires REPRISE_SIMULATOR_WEBHOOK_SECRET:/,
    );
    expect(() =>
      loadConfig({ REPRISE_SIMULATORS: sims, REPRISE_SIMULATOR_WEBHOOK_SECRET: SIM_SECRET }),
    ).toThrow(/requires REPRISE_SIMULATOR_API_KEY:/);
    expect(() =>
      loadConfig({
        REPRISE_SIMULATORS: sims,
        REPRISE_SIMULATOR_API_KEY: 'short',
        REPRISE_SIMULATOR_WEBHOOK_SECRET: SIM_SECRET,
      }),
    ).toThrow(/REPRISE_SIMULATOR_API_KEY must be at least 16 characters/);
    const ok = loadConfig({
      REPRISE_SIMULATORS: sims,
      REPRISE_SIMULATOR_API_KEY: SIM_KEY,
      REPRISE_SIMULATOR_WEBHOOK_SECRET: SIM_SECRET,
    });
    expect(ok).toMatchObject({ simulatorApiKey: SIM_KEY, simulatorWebhookSecret: SIM_SECRET });
  });

  it('PostgreSQL requires the master key and a key store of its own', () => {
    expect(() => loadConfig({ DATABASE_URL: PG, REPRISE_KEYSTORE_URL: KEYS })).toThrow(ConfigError);
    expect(() => loadConfig({ DATABASE_URL: PG, REPRISE_KEYSTORE_URL: KEYS })).toThrow(
      /REPRISE_MASTER_KEY is required with DATABASE_URL/,
    );
    expect(() => loadConfig({ DATABASE_URL: PG, REPRISE_MASTER_KEY: MASTER })).toThrow(
      /REPRISE_KEYSTORE_URL is required with DATABASE_URL/,
    );
    expect(() =>
      loadConfig({ DATABASE_URL: PG, REPRISE_MASTER_KEY: MASTER, REPRISE_KEYSTORE_URL: PG }),
    ).toThrow(/REPRISE_KEYSTORE_URL must name another database than DATABASE_URL/);
    expect(
      loadConfig({ DATABASE_URL: PG, REPRISE_MASTER_KEY: MASTER, REPRISE_KEYSTORE_URL: KEYS }),
    ).toMatchObject({ databaseUrl: PG, keystoreUrl: KEYS, masterKey: MASTER });
    // The embedded default needs neither: it generates its master key and keeps its key store apart.
    expect(loadConfig({})).toMatchObject({ databaseUrl: undefined, keystoreUrl: undefined });
  });

  const reprise = (args: string[], env: NodeJS.ProcessEnv) =>
    spawnSync(process.execPath, ['--import', 'tsx', join(ROOT, 'src/cli/main.ts'), ...args], {
      cwd: ROOT,
      env: { PATH: process.env.PATH, LOG_LEVEL: 'warn', ...env },
      encoding: 'utf8',
      timeout: 60_000,
    });

  it('`reprise serve` on PostgreSQL without a master key stops with a clear message', () => {
    const res = reprise(['serve'], { DATABASE_URL: PG, REPRISE_KEYSTORE_URL: KEYS });
    expect(res.status).toBe(1);
    expect(res.stderr).toMatch(/^reprise: REPRISE_MASTER_KEY is required with DATABASE_URL/);
    // A message, not a stack trace.
    expect(res.stderr).not.toContain('    at ');
  });

  it('`reprise psp-simulator` requires both secrets', () => {
    const res = reprise(['psp-simulator', '--port', '0'], {});
    expect(res.status).toBe(1);
    expect(res.stderr).toMatch(
      /^reprise: reprise psp-simulator requires REPRISE_SIMULATOR_API_KEY and REPRISE_SIMULATOR_WEBHOOK_SECRET/,
    );
  });
});
