import { sql } from 'kysely';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { transact } from '../../src/db/transaction.js';
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

  it('runs a deadlock victim again: both transactions of a lock-order cycle complete', async () => {
    await sql`CREATE TABLE locks (id int PRIMARY KEY, n int NOT NULL)`.execute(db.db);
    await sql`INSERT INTO locks VALUES (1, 0), (2, 0)`.execute(db.db);
    let attempts = 0;
    // Each locks one row, waits until the other has locked its own, then wants the other's.
    let arrived = 0;
    const bothHoldOne = () =>
      new Promise<void>((resolve) => {
        arrived++;
        const check = () => (arrived >= 2 ? resolve() : setTimeout(check, 5));
        check();
      });
    const cross = (first: number, second: number) =>
      transact(db.db, async (trx) => {
        attempts++;
        await sql`UPDATE locks SET n = n + 1 WHERE id = ${first}`.execute(trx);
        if (attempts <= 2) await Promise.race([bothHoldOne(), new Promise((r) => setTimeout(r, 300))]);
        await sql`UPDATE locks SET n = n + 1 WHERE id = ${second}`.execute(trx);
      });
    await Promise.all([cross(1, 2), cross(2, 1)]);
    const rows = await sql<{ n: number }>`SELECT n FROM locks ORDER BY id`.execute(db.db);
    expect(rows.rows.map((r) => r.n)).toEqual([2, 2]);
    // On PostgreSQL one of them was aborted as the deadlock victim and ran a second time.
    expect(attempts).toBe(ENGINE === 'postgres' ? 3 : 2);
  });

  it('returns bigint as exact numbers and refuses values beyond 2^53', async () => {
    const ok = await sql<{ v: number }>`SELECT 9007199254740991::int8 AS v`.execute(db.db);
    expect(ok.rows[0]?.v).toBe(Number.MAX_SAFE_INTEGER);
    await expect(sql`SELECT 9007199254740993::int8 AS v`.execute(db.db)).rejects.toThrow(/safe integer/);
  });
});
