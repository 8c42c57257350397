import { randomBytes } from 'node:crypto';
import { sql } from 'kysely';
import { KeyStore } from '../../src/crypto/key-store.js';
import { adminQuery, withDatabase } from '../../src/db/admin.js';
import { type DatabaseHandle, openDatabase } from '../../src/db/engine.js';
import type { Db } from '../../src/db/schema.js';

export const ENGINE = process.env.DATABASE_URL ? 'postgres' : 'pglite';

/**
 * A fresh, empty database on the engine this run tests: in-memory PGlite, or a new database on
 * the PostgreSQL server of DATABASE_URL (dropped again by close()).
 */
/** A new empty database on the PostgreSQL server of DATABASE_URL (dropped by this run's teardown). */
export async function freshDatabaseUrl(serverUrl: string): Promise<{ url: string; drop(): Promise<void> }> {
  const name = `reprise_t_${process.env.REPRISE_TEST_RUN ?? 'adhoc'}_${randomBytes(4).toString('hex')}`;
  await adminQuery(serverUrl, `CREATE DATABASE "${name}"`);
  return {
    url: withDatabase(serverUrl, name),
    drop: () => adminQuery(serverUrl, `DROP DATABASE IF EXISTS "${name}" WITH (FORCE)`),
  };
}

/**
 * A fresh, empty key store on the engine this run tests: in-memory PGlite, or a second new
 * database on the PostgreSQL server (dropped again by close()).
 */
export async function freshKeyStore(): Promise<KeyStore & { url?: string }> {
  const serverUrl = process.env.DATABASE_URL;
  if (!serverUrl) return KeyStore.open({ dataDir: 'memory://' });
  const fresh = await freshDatabaseUrl(serverUrl);
  const store = await KeyStore.open({ url: fresh.url });
  const close = store.close.bind(store);
  return Object.assign(store, {
    url: fresh.url,
    async close() {
      await close();
      await fresh.drop();
    },
  });
}

export async function freshDatabase(): Promise<DatabaseHandle & { url?: string }> {
  const serverUrl = process.env.DATABASE_URL;
  if (!serverUrl) return openDatabase({ dataDir: 'memory://' });
  const name = `reprise_t_${process.env.REPRISE_TEST_RUN ?? 'adhoc'}_${randomBytes(4).toString('hex')}`;
  await adminQuery(serverUrl, `CREATE DATABASE "${name}"`);
  const url = withDatabase(serverUrl, name);
  const handle = await openDatabase({ databaseUrl: url, poolMax: 10 });
  return {
    ...handle,
    url,
    async close() {
      await handle.close();
      await adminQuery(serverUrl, `DROP DATABASE IF EXISTS "${name}" WITH (FORCE)`);
    },
  };
}

/** Every row of every table of the data database, as text (bytea as hex). */
export async function dumpAll(db: Db): Promise<string> {
  const tables = await sql<{ name: string }>`
    SELECT table_name AS name FROM information_schema.tables
    WHERE table_schema = current_schema() AND table_type = 'BASE TABLE' ORDER BY table_name`.execute(db);
  if (tables.rows.length < 15) throw new Error(`only ${tables.rows.length} tables: not migrated?`);
  const parts: string[] = [];
  for (const { name } of tables.rows) {
    const rows = await sql<{ row: string }>`SELECT t::text AS row FROM ${sql.table(name)} t`.execute(db);
    parts.push(`${name}:`, ...rows.rows.map((r) => r.row));
  }
  return parts.join('\n');
}
