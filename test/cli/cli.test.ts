import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { adminQuery } from '../../src/db/admin.js';
import { openDatabase } from '../../src/db/engine.js';
import { ENGINE, freshDatabase, freshDatabaseUrl } from '../support/database.js';

const ROOT = join(import.meta.dirname, '..', '..');

// Each case spawns the CLI through tsx (compiling on the fly) once or twice: slow on a loaded machine.
describe(`reprise CLI (${ENGINE})`, { timeout: 150_000 }, () => {
  let dataDir: string;
  let database: Awaited<ReturnType<typeof freshDatabase>> | undefined;
  let env: NodeJS.ProcessEnv;
  let keyStoreDb: Awaited<ReturnType<typeof freshDatabaseUrl>> | undefined;

  beforeAll(async () => {
    dataDir = mkdtempSync(join(tmpdir(), 'reprise-cli-'));
    // On PostgreSQL the CLI gets a fresh database of its own; on PGlite, the data directory.
    if (ENGINE === 'postgres') {
      database = await freshDatabase();
      await database.db.destroy();
    }
    // PostgreSQL needs the master key and a key store database of its own (the embedded default
    // generates one and keeps the other in the data directory).
    if (ENGINE === 'postgres') keyStoreDb = await freshDatabaseUrl(process.env.DATABASE_URL!);
    env = {
      ...process.env,
      REPRISE_DATA_DIR: dataDir,
      DATABASE_URL: database?.url ?? '',
      REPRISE_KEYSTORE_URL: keyStoreDb?.url ?? '',
      REPRISE_MASTER_KEY: ENGINE === 'postgres' ? Buffer.alloc(32, 5).toString('base64') : '',
      LOG_LEVEL: 'warn',
    };
  });
  afterAll(async () => {
    rmSync(dataDir, { recursive: true, force: true });
    await keyStoreDb?.drop();
    if (database?.url) {
      const name = new URL(database.url).pathname.slice(1);
      await adminQuery(process.env.DATABASE_URL!, `DROP DATABASE IF EXISTS "${name}" WITH (FORCE)`);
    }
  });

  const reprise = (...args: string[]) =>
    spawnSync(process.execPath, ['--import', 'tsx', join(ROOT, 'src/cli/main.ts'), ...args], {
      cwd: ROOT,
      env,
      encoding: 'utf8',
      timeout: 60_000,
    });

  it('migrate applies every migration once', () => {
    const first = reprise('migrate');
    expect(first.status, first.stderr).toBe(0);
    expect(first.stdout).toMatch(/^Applied \d+: 0001_platform_meta/);
    const second = reprise('migrate');
    expect(second.stdout).toMatch(/^Up to date \(\d+ migrations\)/);
  });

  it('seed --demo creates the demo catalog, and a second run creates nothing new', async () => {
    const first = reprise('seed', '--demo');
    expect(first.status, first.stderr).toBe(0);
    expect(first.stdout).toContain('Demo catalog: 8 markets, 4 products, 8 plans created.');
    expect(reprise('seed', '--demo').stdout).toContain(
      'Demo catalog: 0 markets, 0 products, 0 plans created.',
    );
    const handle = await openDatabase({ databaseUrl: database?.url, dataDir: join(dataDir, 'pgdata') });
    try {
      const jp = await handle.db
        .selectFrom('markets')
        .selectAll()
        .where('code', '=', 'JP')
        .executeTakeFirstOrThrow();
      expect(jp).toMatchObject({ currency: 'JPY', tax_inclusive: true });
      const plans = await handle.db.selectFrom('plans').select('code').orderBy('code').execute();
      expect(plans.map((p) => p.code)).toContain('premium-family-yearly');
    } finally {
      await handle.close();
    }
  });

  it('keys create prints an id and a secret once; unknown scopes are refused', () => {
    const ok = reprise('keys', 'create', '--name', 'ops', '--scopes', 'catalog:read,customers:write');
    expect(ok.status, ok.stderr).toBe(0);
    const [id, secret] = ok.stdout.trim().split('\n');
    expect(id).toMatch(/^key_/);
    expect(secret).toMatch(/^rpk_/);
    const bad = reprise('keys', 'create', '--name', 'ops', '--scopes', 'root');
    expect(bad.status).toBe(2);
    expect(bad.stderr).toContain('Unknown scopes: root');
  });

  it('explains itself and refuses unknown commands', () => {
    expect(reprise('--help').stdout).toContain('reprise serve');
    const unknown = reprise('frobnicate');
    expect(unknown.status).toBe(2);
    expect(unknown.stderr).toContain("Unknown command 'frobnicate'");
    if (ENGINE === 'pglite') {
      expect(readFileSync(join(dataDir, 'master.key'), 'utf8').trim()).toHaveLength(44);
      // The embedded key store is a database of its own, beside the data database, not in it.
      expect(existsSync(join(dataDir, 'keystore', 'PG_VERSION'))).toBe(true);
      expect(existsSync(join(dataDir, 'pgdata', 'PG_VERSION'))).toBe(true);
    }
  });
});
