import type { FastifyInstance } from 'fastify';
import { sql } from 'kysely';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import type { Executor } from '../../src/db/schema.js';
import { transact } from '../../src/db/transaction.js';
import {
  type AppendInput,
  EventsOutbox,
  OUTBOX_START,
  OutboxOrderConflict,
  type OutboxPosition,
} from '../../src/events/outbox.js';
import { eventRoutes } from '../../src/events/routes.js';
import { type EventType, isPersonalKey } from '../../src/events/types.js';
import { buildServer } from '../../src/http/server.js';
import { AssertionError } from '../../src/kernel/assert.js';
import { ManualClock } from '../../src/kernel/clock.js';
import { BOOTSTRAP, startTestApp, type TestApp } from '../support/app.js';
import { ENGINE } from '../support/database.js';

const DAY = 24 * 60 * 60_000;

let aggregateSeq = 0;
/** A fresh aggregate id, so tests do not share version histories. */
const newAggregate = (prefix = 'sub') => `${prefix}_test_${++aggregateSeq}`;

const input = (
  type: EventType,
  aggregateId: string,
  version: number,
  object: Record<string, string | number> = {},
): AppendInput => ({
  type,
  aggregate: { type: type.split('.')[0]!, id: aggregateId, version },
  customerId: 'cus_test',
  data: { object: { id: aggregateId, ...object } },
});

describe(`events outbox (${ENGINE})`, () => {
  let t: TestApp;
  let events: EventsOutbox;
  let server: FastifyInstance;
  const db = () => t.app.services.db;
  const append = (i: AppendInput, executor?: Executor) =>
    executor ? events.append(executor, i) : transact(db(), (trx) => events.append(trx, i));
  const get = (url: string, key: string = BOOTSTRAP) =>
    server.inject({ method: 'GET', url, headers: { authorization: `Bearer ${key}` } });
  const count = async () =>
    (await sql<{ n: number }>`SELECT count(*)::int AS n FROM events`.execute(db())).rows[0]!.n;
  /**
   * Retries an assertion about what the reader returns: a transaction of another test file in
   * flight on the same PostgreSQL server holds every later row back until it ends (CI saw this).
   */
  const eventually = (check: () => Promise<void>) => vi.waitFor(check, { timeout: 20_000, interval: 50 });
  /**
   * Waits until every committed event is readable. Readers stop at the oldest transaction in flight
   * on the whole server (ADR 0015), and on PostgreSQL other test files run transactions meanwhile.
   */
  const settled = () =>
    eventually(async () => expect((await events.readFrom(OUTBOX_START, 1000)).length).toBe(await count()));
  /** Every event the API lists for `query`, following nextCursor; asserts each page's size. */
  const listAll = async (query: string, limit: number) => {
    const ids: string[] = [];
    let cursor: string | null = null;
    for (let page = 0; page < 100; page++) {
      const res = await get(
        `/v1/events?limit=${limit}${query}${cursor ? `&cursor=${encodeURIComponent(cursor)}` : ''}`,
      );
      expect(res.statusCode, res.body).toBe(200);
      const body = res.json();
      ids.push(...body.data.map((e: { id: string }) => e.id));
      cursor = body.nextCursor;
      if (!cursor) return ids;
      expect(body.data).toHaveLength(limit);
    }
    throw new Error('more than 100 pages');
  };

  beforeAll(async () => {
    t = await startTestApp();
    events = new EventsOutbox(db(), t.app.services.clock);
    // The lead wires eventRoutes into src/app.ts; until then a server of the same shell serves them.
    const { services, database } = t.app;
    server = await buildServer(
      {
        db: services.db,
        apiKeys: services.apiKeys,
        idempotency: services.idempotency,
        audit: services.audit,
        poolStats: database.poolStats,
        engine: database.kind,
        isReady: () => true,
      },
      {
        logger: false,
        bodyLimitBytes: t.config.bodyLimitBytes,
        rateLimitPerMinute: 100_000,
        authFailuresPerMinute: t.config.authFailuresPerMinute,
        requestTimeoutMs: t.config.requestTimeoutMs,
        trustProxy: false,
      },
    );
    eventRoutes(server, { events });
    await server.ready();
  });
  afterAll(async () => {
    await server?.close();
    await t.close();
  });

  it('appends in the caller transaction and answers the envelope of API.md', async () => {
    const sub = newAggregate();
    const envelope = await append({
      type: 'subscription.activated',
      aggregate: { type: 'subscription', id: sub, version: 1 },
      customerId: 'cus_1',
      data: { object: { id: sub, customer: 'cus_1', amount: 9900, currency: 'SEK' } },
    });
    expect(envelope.id).toMatch(/^evt_[0-9A-HJKMNP-TV-Z]{26}$/);
    const res = await get(`/v1/events/${envelope.id}`);
    expect(res.statusCode).toBe(200);
    expect(res.json()).toEqual({
      id: envelope.id,
      type: 'subscription.activated',
      createdAt: expect.stringMatching(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/),
      data: { object: { id: sub, customer: 'cus_1', amount: 9900, currency: 'SEK' } },
      aggregate: { type: 'subscription', id: sub, version: 1 },
    });
    const missing = await get('/v1/events/evt_01JD0000000000000000000000');
    expect(missing.statusCode).toBe(404);
    expect(missing.json().code).toBe('not_found');

    // Rolled back with its transaction: an event exists exactly when its change does.
    const before = await count();
    await expect(
      transact(db(), async (trx) => {
        await events.append(trx, input('subscription.renewed', sub, 2));
        throw new Error('the change failed');
      }),
    ).rejects.toThrow('the change failed');
    expect(await count()).toBe(before);
    // Outside a transaction there is no change to go with: a bug.
    await expect(events.append(db(), input('subscription.renewed', sub, 2))).rejects.toThrow(AssertionError);
  });

  it('lists oldest first by cursor pages, by type and by group (subscription.*)', async () => {
    await settled();
    const start = (await events.readFrom(OUTBOX_START, 1000)).length;
    const sub = newAggregate();
    const inv = newAggregate('in');
    const written: Array<{ id: string; type: string }> = [];
    const plan: EventType[] = [
      'subscription.created',
      'invoice.created',
      'invoice.finalized',
      'invoice.paid',
      'subscription.activated',
      'payment.succeeded',
      'subscription.renewed',
    ];
    let subVersion = 0;
    let invVersion = 0;
    for (const type of plan) {
      const isSub = type.startsWith('subscription.');
      const version = isSub ? ++subVersion : ++invVersion;
      const id = type.startsWith('subscription.') ? sub : inv;
      written.push(await append(input(type, id, version, { amount: 100 })));
    }
    // Two events in one transaction keep their order too.
    await transact(db(), async (trx) => {
      written.push(await events.append(trx, input('subscription.past_due', sub, ++subVersion)));
      written.push(await events.append(trx, input('invoice.uncollectible', inv, ++invVersion)));
    });
    await settled();
    const all = await listAll('', 3);
    expect(all.slice(start)).toEqual(written.map((e) => e.id));
    const ofGroup = (group: string) => written.filter((e) => e.type.startsWith(group)).map((e) => e.id);
    const subs = await listAll('&type=subscription.*', 2);
    expect(subs.slice(-4)).toEqual(ofGroup('subscription.'));
    const listed = (await get('/v1/events?type=subscription.*&limit=100')).json().data;
    expect(listed.every((e: { type: string }) => e.type.startsWith('subscription.'))).toBe(true);
    expect(await listAll('&type=invoice.*', 100)).toEqual(expect.arrayContaining(ofGroup('invoice.')));
    expect(await listAll('&type=invoice.paid', 1)).toEqual(ofGroup('invoice.paid'));
  });

  it('after is an event id, exclusive; unknown ids, types and cursors are 400s naming the field', async () => {
    const sub = newAggregate();
    const a = await append(input('subscription.created', sub, 1));
    const b = await append(input('subscription.activated', sub, 2));
    const c = await append(input('subscription.renewed', sub, 3));
    await settled();
    const res = await get(`/v1/events?after=${a.id}`);
    expect(res.json().data.map((e: { id: string }) => e.id)).toEqual([b.id, c.id]);
    expect((await get(`/v1/events?after=${c.id}`)).json()).toEqual({ data: [], nextCursor: null });
    // `after` with a type: still exclusive of `after` and in order.
    const typed = await get(`/v1/events?after=${a.id}&type=subscription.renewed`);
    expect(typed.json().data.map((e: { id: string }) => e.id)).toEqual([c.id]);

    const refusals: Array<[string, string]> = [
      ['after=evt_01JD0000000000000000000000', 'after'],
      ['after=not-an-id', 'after'],
      ['type=subscription', 'type'],
      ['type=subscription.renamed', 'type'],
      ['type=customer.*', 'type'],
      ['type=*', 'type'],
      ['cursor=bm9wZQ', 'cursor'],
      [`cursor=${Buffer.from(JSON.stringify({ after: '12x.3' })).toString('base64url')}`, 'cursor'],
    ];
    for (const [query, field] of refusals) {
      const refused = await get(`/v1/events?${query}`);
      expect(refused.statusCode, query).toBe(400);
      expect(refused.headers['content-type']).toContain('application/problem+json');
      expect(refused.json().code).toBe('validation_failed');
      expect(refused.json().errors, query).toEqual([expect.objectContaining({ path: field, in: 'query' })]);
    }
  });

  it('needs the events:read scope', async () => {
    const reader = await t.keyWith('events:read');
    const other = await t.keyWith('customers:read');
    expect((await get('/v1/events', reader)).statusCode).toBe(200);
    const refused = await get('/v1/events', other);
    expect(refused.statusCode).toBe(403);
    expect(refused.json().code).toBe('forbidden');
    expect((await get('/v1/events/evt_01JD0000000000000000000000', other)).statusCode).toBe(403);
  });

  it('aggregate versions strictly increase: a repeated or lower version is a bug and writes nothing', async () => {
    const sub = newAggregate();
    await append(input('subscription.created', sub, 1));
    await append(input('subscription.activated', sub, 3));
    const before = await count();
    await expect(append(input('subscription.renewed', sub, 3))).rejects.toThrow(/version 3 after 3/);
    await expect(append(input('subscription.renewed', sub, 2))).rejects.toThrow(AssertionError);
    await expect(append(input('subscription.renewed', sub, 0))).rejects.toThrow(AssertionError);
    // The same aggregate id under another aggregate type is another history.
    await append({
      ...input('invoice.created', sub, 1),
      aggregate: { type: 'invoice', id: sub, version: 1 },
    });
    expect(await count()).toBe(before + 1);
    // The table itself refuses a duplicate, whatever writes it.
    await expect(
      sql`INSERT INTO events (id, type, aggregate_type, aggregate_id, aggregate_version, data, created_at)
          VALUES ('evt_dup', 'subscription.renewed', 'subscription', ${sub}, 3, '{"object":{}}', now())`.execute(
        db(),
      ),
    ).rejects.toMatchObject({ code: '23505' });
    const versions = await db()
      .selectFrom('events')
      .select('aggregate_version')
      .where('aggregate_type', '=', 'subscription')
      .where('aggregate_id', '=', sub)
      .orderBy('aggregate_version')
      .execute();
    expect(versions.map((v) => v.aggregate_version)).toEqual([1, 3]);
  });

  it('refuses (assert) data with a name or an email at any depth, and writes nothing', async () => {
    const before = await count();
    const sub = newAggregate();
    const leaks: unknown[] = [
      { id: sub, email: 'a@example.com' },
      { id: sub, name: 'Ada' },
      { id: sub, customer: { id: 'cus_1', Email: 'a@example.com' } },
      { id: sub, members: [{ id: 'cus_2' }, { id: 'cus_3', firstName: 'Grace' }] },
      { id: sub, billing_email: 'a@example.com' },
      { id: sub, lines: [[{ customer_name: 'Ada' }]] },
    ];
    for (const object of leaks) {
      await expect(
        append({ ...input('subscription.created', sub, 1), data: { object } as never }),
      ).rejects.toThrow(/never names or emails/);
    }
    await expect(
      append({
        ...input('subscription.created', sub, 1),
        data: { object: { id: sub }, previousAttributes: { name: 'x' } },
      }),
    ).rejects.toThrow(AssertionError);
    expect(await count()).toBe(before);
    // Ids and amounts pass.
    await append({
      ...input('subscription.created', sub, 1),
      data: {
        object: { id: sub, customer: 'cus_1', plan: 'plan_1', amount: 9900, items: [{ plan: 'plan_1' }] },
      },
    });
    expect(await count()).toBe(before + 1);
    expect(['email', 'EMAIL', 'contactEmail', 'name', 'lastName', 'display_name'].every(isPersonalKey)).toBe(
      true,
    );
    expect(['id', 'customer', 'amount', 'currency', 'plan', 'status'].some(isPersonalKey)).toBe(false);
  });

  it('the relay reader returns everything once, in position order, from any stored position', async () => {
    const sub = newAggregate();
    const written: string[] = [];
    for (let v = 1; v <= 5; v++) written.push((await append(input('subscription.renewed', sub, v))).id);
    // Once readable, rows of committed transactions stay readable: the loop below sees them all.
    await settled();
    const seen: string[] = [];
    let position: OutboxPosition = OUTBOX_START;
    for (let round = 0; round < 100; round++) {
      const batch = await events.readFrom(position, 2);
      if (batch.length === 0) break;
      expect(batch.length).toBeLessThanOrEqual(2);
      seen.push(...batch.map((e) => e.id));
      position = batch.at(-1)!.position;
    }
    expect(new Set(seen).size).toBe(seen.length);
    expect(seen.slice(-5)).toEqual(written);
    const mine = (await events.readFrom(OUTBOX_START, 1000)).filter((e) => e.aggregate.id === sub);
    expect(mine.map((e) => e.aggregate.version)).toEqual([1, 2, 3, 4, 5]);
    expect(mine[0]).toMatchObject({ customerId: 'cus_test', type: 'subscription.renewed' });
  });

  it('holds back rows of transactions at or above the oldest one in flight, and delivers them later in order', async () => {
    // A row stamped with a transaction id not yet ended (above the snapshot's xmin) is visible
    // but not final: the reader must not move past it. Once every row so far is readable, no
    // transaction older than them is in flight, so the snapshot's xmin sorts after all of them.
    await settled();
    const xmin = (
      await sql<{ x: number }>`SELECT pg_snapshot_xmin(pg_current_snapshot())::text::bigint AS x`.execute(
        db(),
      )
    ).rows[0]!.x;
    const sub = newAggregate();
    await sql`INSERT INTO events (xact_id, id, type, aggregate_type, aggregate_id, aggregate_version, data, created_at)
              VALUES (${xmin + 1_000_000}, 'evt_held', 'subscription.created', 'subscription', ${sub}, 1, '{"object":{}}', now())`.execute(
      db(),
    );
    const all = await events.readFrom(OUTBOX_START, 1000);
    expect(all.map((e) => e.id)).not.toContain('evt_held');
    expect(
      (await get('/v1/events?limit=100&type=subscription.created'))
        .json()
        .data.map((e: { id: string }) => e.id),
    ).not.toContain('evt_held');
    const last = all.at(-1)!.position;
    // Once that transaction id is below every one in flight, the row comes after the last read.
    await sql`UPDATE events SET xact_id = ${xmin} WHERE id = 'evt_held'`.execute(db());
    // (xmin) sorts after every row of earlier transactions already read.
    await eventually(async () =>
      expect((await events.readFrom(last, 1000)).map((e) => e.id)).toEqual(['evt_held']),
    );
  });

  it('an older version written by a later transaction is an ordering conflict (retried as 40001)', async () => {
    const sub = newAggregate();
    // Stamped with a transaction id above ours: position order would put version 2 before it.
    await sql`INSERT INTO events (xact_id, id, type, aggregate_type, aggregate_id, aggregate_version, data, created_at)
              VALUES (pg_current_xact_id()::text::bigint + 1000000, 'evt_late', 'subscription.created', 'subscription', ${sub}, 1, '{"object":{}}', now())`.execute(
      db(),
    );
    const error = await db()
      .transaction()
      .execute((trx) => events.append(trx, input('subscription.activated', sub, 2)))
      .catch((e: unknown) => e);
    expect(error).toBeInstanceOf(OutboxOrderConflict);
    expect(error).toMatchObject({ code: '40001' });
    await sql`DELETE FROM events WHERE id = 'evt_late'`.execute(db());
  });

  it('tells listeners once per committed transaction that appended, never on rollback', async () => {
    let calls = 0;
    const off = events.onCommitted(() => calls++);
    const sub = newAggregate();
    await transact(db(), async (trx) => {
      await events.append(trx, input('subscription.created', sub, 1));
      await events.append(trx, input('subscription.activated', sub, 2));
      expect(calls).toBe(0);
    });
    expect(calls).toBe(1);
    await transact(db(), async (trx) => {
      await events.append(trx, input('subscription.renewed', sub, 3));
      throw new Error('rolled back');
    }).catch(() => undefined);
    expect(calls).toBe(1);
    off();
    await append(input('subscription.renewed', sub, 3));
    expect(calls).toBe(1);
  });

  // Two transactions at once need two sessions: PGlite has one, so writers never interleave there.
  if (ENGINE === 'postgres') {
    /** A promise and its resolver. */
    const latch = () => {
      let open!: () => void;
      const opened = new Promise<void>((r) => {
        open = r;
      });
      return { open, opened };
    };

    it('never skips a row whose transaction commits after a later one (two connections)', async () => {
      const sub1 = newAggregate();
      const sub2 = newAggregate();
      await settled();
      const before = await events.readFrom(OUTBOX_START, 1000);
      const position = before.at(-1)?.position ?? OUTBOX_START;
      const seqBefore = (
        await sql<{ m: number }>`SELECT coalesce(max(seq), 0)::bigint AS m FROM events`.execute(db())
      ).rows[0]!.m;
      const firstInserted = latch();
      const mayCommit = latch();
      // The first to insert (lower seq, lower transaction id) commits last.
      const first = db()
        .transaction()
        .execute(async (trx) => {
          const e = await events.append(trx, input('subscription.created', sub1, 1));
          firstInserted.open();
          await mayCommit.opened;
          return e;
        });
      await firstInserted.opened;
      const second = await db()
        .transaction()
        .execute((trx) => events.append(trx, input('subscription.created', sub2, 1)));
      // A reader ordered by seq alone would now see the second and move past the first for good.
      const naive = await sql<{
        id: string;
      }>`SELECT id FROM events WHERE seq > ${seqBefore} ORDER BY seq`.execute(db());
      expect(naive.rows.map((r) => r.id)).toEqual([second.id]);
      // The commit-safe reader, and the API, wait for the first transaction.
      expect(await events.readFrom(position, 1000)).toEqual([]);
      const listed = (await get('/v1/events?type=subscription.created&limit=100')).json().data;
      expect(listed.map((e: { id: string }) => e.id)).not.toContain(second.id);
      mayCommit.open();
      const firstEvent = await first;
      await eventually(async () =>
        expect((await events.readFrom(position, 1000)).map((e) => e.id)).toEqual([firstEvent.id, second.id]),
      );
    });

    it('an event of a transaction older than one already committed comes first, never skipped', async () => {
      const subA = newAggregate();
      const subB = newAggregate();
      await settled();
      const before = await events.readFrom(OUTBOX_START, 1000);
      const position = before.at(-1)?.position ?? OUTBOX_START;
      const hasId = latch();
      const mayInsert = latch();
      // B takes a transaction id (any write does), then inserts its event after A has committed.
      const b = db()
        .transaction()
        .execute(async (trx) => {
          await sql`SELECT pg_current_xact_id()`.execute(trx);
          hasId.open();
          await mayInsert.opened;
          return events.append(trx, input('subscription.created', subB, 1));
        });
      await hasId.opened;
      const a = await db()
        .transaction()
        .execute((trx) => events.append(trx, input('subscription.created', subA, 1)));
      // A committed, but B (older) is in flight: A waits, since B's event will sort before it.
      expect(await events.readFrom(position, 1000)).toEqual([]);
      mayInsert.open();
      const bEvent = await b;
      await eventually(async () =>
        expect((await events.readFrom(position, 1000)).map((e) => e.id)).toEqual([bEvent.id, a.id]),
      );
    });

    it('keeps versions of one aggregate in position order: a conflicting writer is run again', async () => {
      const sub = newAggregate();
      const hasId = latch();
      const mayAppend = latch();
      let attempts = 0;
      // The writer of version 2 took its transaction id before version 1 was written.
      const v2 = transact(db(), async (trx) => {
        attempts++;
        await sql`SELECT pg_current_xact_id()`.execute(trx);
        hasId.open();
        await mayAppend.opened;
        return events.append(trx, input('subscription.activated', sub, 2));
      });
      await hasId.opened;
      await append(input('subscription.created', sub, 1));
      mayAppend.open();
      await v2;
      expect(attempts).toBe(2);
      await settled();
      const mine = (await events.readFrom(OUTBOX_START, 1000)).filter((e) => e.aggregate.id === sub);
      expect(mine.map((e) => e.aggregate.version)).toEqual([1, 2]);
    });
  }

  it('prunes events older than the retention in bounded batches, sparing what the relay has not published', async () => {
    const clock = new ManualClock(new Date());
    const pruner = new EventsOutbox(db(), clock, { retentionDays: 90 });
    expect(() => new EventsOutbox(db(), clock, { retentionDays: 0 })).toThrow(AssertionError);
    // This test owns the table: the events of the tests above were written on the wall clock.
    await sql`DELETE FROM events`.execute(db());
    const start = clock.now().getTime();
    const sub = newAggregate();
    const old: Array<{ id: string }> = [];
    for (let v = 1; v <= 5; v++)
      old.push(await transact(db(), (trx) => pruner.append(trx, input('subscription.renewed', sub, v))));
    clock.set(new Date(start + 30 * DAY));
    const young: Array<{ id: string }> = [];
    for (let v = 6; v <= 8; v++)
      young.push(await transact(db(), (trx) => pruner.append(trx, input('subscription.renewed', sub, v))));
    const ids = async () =>
      (
        await db().selectFrom('events').select('id').where('aggregate_id', '=', sub).orderBy('id').execute()
      ).map((r) => r.id);

    clock.set(new Date(start + 90 * DAY - 60_000));
    expect(await pruner.prune()).toBe(0);
    clock.set(new Date(start + 91 * DAY));
    await settled();
    const mine = (await pruner.readFrom(OUTBOX_START, 1000)).filter((e) => e.aggregate.id === sub);
    // The relay has published up to the second old event: only those two may go.
    expect(await pruner.prune({ keepAfter: mine[1]!.position })).toBe(2);
    expect(await ids()).toEqual([...old.slice(2), ...young].map((e) => e.id));
    // Two rows per statement: the remaining three old ones go in two statements of one run.
    expect(await pruner.prune({ batch: 2 })).toBe(3);
    expect(await ids()).toEqual(young.map((e) => e.id));
    // A run stops after its statement budget; the rest waits for the next run.
    clock.set(new Date(start + 200 * DAY));
    expect(await pruner.prune({ batch: 1, batches: 2 })).toBe(2);
    expect(await ids()).toEqual(young.slice(2).map((e) => e.id));
    // After pruning, `after` an id that is gone is a 400; cursors (positions) still work.
    const gone = await get(`/v1/events?after=${old[0]!.id}`);
    expect(gone.statusCode).toBe(400);
  });
});
