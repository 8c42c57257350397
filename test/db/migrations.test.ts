import { sql } from 'kysely';
import { afterEach, describe, expect, it } from 'vitest';
import { openDatabase } from '../../src/db/engine.js';
import { loadMigrations, migrate } from '../../src/db/migrate.js';
import { ENGINE, freshDatabase } from '../support/database.js';

const handles: Array<{ close(): Promise<void> }> = [];
afterEach(async () => {
  while (handles.length > 0) await handles.pop()!.close();
});

describe(`migrations (${ENGINE})`, () => {
  it('are found in every module, uniquely numbered, in order', () => {
    const names = loadMigrations().map((m) => m.name);
    expect(names.length).toBeGreaterThanOrEqual(8);
    expect([...names].sort()).toEqual(names);
    expect(names).toContain('0005_catalog');
  });

  it('apply once; a second run finds nothing to do', async () => {
    const db = await freshDatabase();
    handles.push(db);
    const first = await migrate(db.db);
    expect(first.applied).toEqual(loadMigrations().map((m) => m.name));
    const second = await migrate(db.db);
    expect(second).toEqual({ applied: [], alreadyApplied: first.applied.length });
  });

  it('run by several nodes at once, migrate exactly once', async () => {
    const db = await freshDatabase();
    handles.push(db);
    // Separate handles are separate nodes on PostgreSQL; on PGlite they share the one session.
    const nodes = db.url
      ? await Promise.all([1, 2, 3].map(() => openDatabase({ databaseUrl: db.url, poolMax: 2 })))
      : [db, db, db];
    if (db.url) handles.push(...nodes);
    const results = await Promise.all(nodes.map((n) => migrate(n.db)));
    const appliedCounts = results.map((r) => r.applied.length).sort();
    expect(appliedCounts).toEqual([0, 0, loadMigrations().length]);
    const rows = await sql<{ n: number }>`SELECT count(*)::int AS n FROM reprise_migrations`.execute(db.db);
    expect(rows.rows[0]?.n).toBe(loadMigrations().length);
  });

  it('refuse to run when an applied migration was edited', async () => {
    const db = await freshDatabase();
    handles.push(db);
    const migrations = loadMigrations();
    await migrate(db.db, migrations);
    const edited = migrations.map((m, i) => (i === 0 ? { ...m, checksum: 'changed' } : m));
    await expect(migrate(db.db, edited)).rejects.toThrow(/changed after it was applied/);
  });

  it('roll back entirely when one fails', async () => {
    const db = await freshDatabase();
    handles.push(db);
    const broken = [
      { name: '9001_ok', sql: 'CREATE TABLE t_ok (x int);', checksum: 'a' },
      { name: '9002_bad', sql: 'CREATE TABLE t_bad (x nosuchtype);', checksum: 'b' },
    ];
    await expect(migrate(db.db, broken)).rejects.toThrow();
    const exists = await sql<{
      n: number;
    }>`SELECT count(*)::int AS n FROM pg_tables WHERE tablename = 't_ok'`.execute(db.db);
    expect(exists.rows[0]?.n).toBe(0);
  });
});
