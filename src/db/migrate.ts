import { readdirSync, readFileSync, statSync } from 'node:fs';
import { basename, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { sql } from 'kysely';
import { sha256Hex } from '../kernel/canonical-json.js';
import { SCRIPT_MARKER } from './pglite-dialect.js';
import type { Db } from './schema.js';

/** Migrations are plain SQL files named `NNNN_what.sql` in any `migrations/` folder under src/. */
export interface Migration {
  name: string;
  sql: string;
  checksum: string;
}

const SRC_ROOT = fileURLToPath(new URL('..', import.meta.url));
/** Any constant will do, as long as every node uses the same one. */
const MIGRATION_LOCK_ID = 7_262_022_001;

function findMigrationDirs(dir: string, depth = 0): string[] {
  if (depth > 4) return [];
  const found: string[] = [];
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    if (!entry.isDirectory() || entry.name === 'node_modules') continue;
    const path = join(dir, entry.name);
    if (entry.name === 'migrations') found.push(path);
    else found.push(...findMigrationDirs(path, depth + 1));
  }
  return found;
}

export function loadMigrations(root: string = SRC_ROOT): Migration[] {
  const files = findMigrationDirs(root).flatMap((dir) =>
    readdirSync(dir)
      .filter((f) => /^\d{4}_[a-z0-9_]+\.sql$/.test(f))
      .map((f) => join(dir, f)),
  );
  const migrations = files
    .filter((f) => statSync(f).isFile())
    .map((f) => {
      const text = readFileSync(f, 'utf8');
      return { name: basename(f, '.sql'), sql: text, checksum: sha256Hex(text) };
    })
    .sort((a, b) => a.name.localeCompare(b.name));
  const numbers = new Set<string>();
  for (const m of migrations) {
    const number = m.name.slice(0, 4);
    if (numbers.has(number)) throw new Error(`two migrations are numbered ${number}`);
    numbers.add(number);
  }
  return migrations;
}

export interface MigrateResult {
  applied: string[];
  alreadyApplied: number;
}

/**
 * Applies pending migrations in one transaction under a transaction-scoped advisory lock, so
 * nodes that start together migrate once: the others wait for the lock, then find nothing to do.
 * A migration that was edited after it was applied is refused (its checksum changed).
 */
export async function migrate(db: Db, migrations: Migration[] = loadMigrations()): Promise<MigrateResult> {
  return db.transaction().execute(async (trx) => {
    await sql`SELECT pg_advisory_xact_lock(${MIGRATION_LOCK_ID})`.execute(trx);
    await sql`CREATE TABLE IF NOT EXISTS reprise_migrations (
      name text PRIMARY KEY,
      checksum text NOT NULL,
      applied_at timestamptz NOT NULL DEFAULT now()
    )`.execute(trx);
    const rows = await sql<{
      name: string;
      checksum: string;
    }>`SELECT name, checksum FROM reprise_migrations`.execute(trx);
    const done = new Map(rows.rows.map((r) => [r.name, r.checksum]));
    const applied: string[] = [];
    for (const m of migrations) {
      const checksum = done.get(m.name);
      if (checksum !== undefined) {
        if (checksum !== m.checksum) throw new Error(`migration ${m.name} changed after it was applied`);
        continue;
      }
      await sql.raw(SCRIPT_MARKER + m.sql).execute(trx);
      await sql`INSERT INTO reprise_migrations (name, checksum) VALUES (${m.name}, ${m.checksum})`.execute(
        trx,
      );
      applied.push(m.name);
    }
    return { applied, alreadyApplied: done.size };
  });
}
