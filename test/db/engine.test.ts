import { sql } from 'kysely';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ENGINE, freshDatabase } from '../support/database.js';

describe(`database engine (${ENGINE})`, () => {
  let db: Awaited<ReturnType<typeof freshDatabase>>;
  beforeAll(async () => {
    db = await freshDatabase();
    await sql`CREATE TABLE counter (id int PRIMARY KEY, n bigint NOT NULL)`.execute(db.db);
    await sql`INSERT INTO counter VALUES (1, 0)`.execute(db.db);
  });
  afterAll(() => db.close());

  it('keeps concurrent transactions apart (no interleaved statements, no lost update)', async () => {
    const increments = 40;
    await Promise.all(
      Array.from({ length: increments }, () =>
        db.db.transaction().execute(async (trx) => {
          const row = await sql<{ n: number }>`SELECT n FROM counter WHERE id = 1 FOR UPDATE`.execute(trx);
          await new Promise((r) => setTimeout(r, 1));
          await sql`UPDATE counter SET n = ${row.rows[0]!.n + 1} WHERE id = 1`.execute(trx);
        }),
      ),
    );
    const final = await sql<{ n: number }>`SELECT n FROM counter WHERE id = 1`.execute(db.db);
    expect(final.rows[0]?.n).toBe(increments);
  });

  it('rolls a failed transaction back and keeps serving', async () => {
    await expect(
      db.db.transaction().execute(async (trx) => {
        await sql`UPDATE counter SET n = -1 WHERE id = 1`.execute(trx);
        throw new Error('boom');
      }),
    ).rejects.toThrow('boom');
    const final = await sql<{ n: number }>`SELECT n FROM counter WHERE id = 1`.execute(db.db);
    expect(final.rows[0]?.n).toBe(40);
  });

  it('reports queries waiting for a connection (the pool gauge of /metrics)', async () => {
    let release!: () => void;
    const held = new Promise<void>((r) => {
      release = r;
    });
    const holder = db.db.transaction().execute(async (trx) => {
      await sql`SELECT 1`.execute(trx);
      await held;
    });
    await new Promise((r) => setTimeout(r, 50));
    const waiter = sql`SELECT 1`.execute(db.db);
    await new Promise((r) => setTimeout(r, 50));
    // PGlite has one session, held by the transaction; the server pool has a free connection.
    expect(db.poolStats().waiting).toBe(ENGINE === 'pglite' ? 1 : 0);
    release();
    await Promise.all([holder, waiter]);
    expect(db.poolStats().waiting).toBe(0);
  });

  it('returns bigint as exact numbers and refuses values beyond 2^53', async () => {
    const ok = await sql<{ v: number }>`SELECT 9007199254740991::int8 AS v`.execute(db.db);
    expect(ok.rows[0]?.v).toBe(Number.MAX_SAFE_INTEGER);
    await expect(sql`SELECT 9007199254740993::int8 AS v`.execute(db.db)).rejects.toThrow(/safe integer/);
  });
});
