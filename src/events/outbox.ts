import type { ExpressionBuilder, Kysely, Selectable } from 'kysely';
import { sql } from 'kysely';
import { encodeTime } from 'ulid';
import { isUniqueViolation } from '../db/errors.js';
import { type Before, newestFirst, olderThan } from '../db/keyset.js';
import type { Db, Executor } from '../db/schema.js';
import { afterCommit } from '../db/transaction.js';
import { AssertionError, assert } from '../kernel/assert.js';
import type { Clock } from '../kernel/clock.js';
import { invalid, notFound } from '../kernel/errors.js';
import { ID_PREFIXES, newId } from '../kernel/ids.js';
import { type EventsTable, type EventTables, eventTables } from './tables.js';
import { checkEventData, type EventData, type EventType, isEventType, parseTypeFilter } from './types.js';

/**
 * Where an event sits in the commit-safe order: (writing transaction id, global counter). Every
 * event a reader has not seen yet lands after the last position it read (ADR 0015).
 */
export interface OutboxPosition {
  readonly xactId: number;
  readonly seq: number;
}

/** Before every event. */
export const OUTBOX_START: OutboxPosition = Object.freeze({ xactId: 0, seq: 0 });

export function formatPosition(p: OutboxPosition): string {
  return `${p.xactId}.${p.seq}`;
}

/** The position `formatPosition` wrote, or undefined for anything else. */
export function parsePosition(text: string): OutboxPosition | undefined {
  const match = /^(\d{1,16})\.(\d{1,16})$/.exec(text);
  if (!match) return undefined;
  const xactId = Number(match[1]);
  const seq = Number(match[2]);
  return Number.isSafeInteger(xactId) && Number.isSafeInteger(seq) ? { xactId, seq } : undefined;
}

export interface AggregateRef {
  /** What the event is about, e.g. `subscription`. */
  type: string;
  id: string;
  /** The aggregate's version after the change: strictly increasing per aggregate. */
  version: number;
}

/** The event as API.md shows it (and as webhooks and the broker will carry it). */
export interface EventEnvelope {
  id: string;
  type: EventType;
  createdAt: Date;
  data: EventData;
  aggregate: AggregateRef;
}

/** What the relay reads: the envelope, its distribution key and its position. */
export interface OutboxEvent extends EventEnvelope {
  customerId: string | null;
  position: OutboxPosition;
}

/** An event a transaction of this node appended, as its after-commit listeners see it. */
export interface CommittedEvent extends EventEnvelope {
  customerId: string | null;
}

export interface AppendInput {
  type: EventType;
  aggregate: AggregateRef;
  /** The customer the event concerns: the distribution key (relay partitions, broker subjects). */
  customerId?: string | null;
  data: EventData;
}

export interface EventPage {
  events: EventEnvelope[];
  /** The position to continue from, or null when this was the last page for now. */
  next: OutboxPosition | null;
}

/** Events one `appendMany` writes at most (one multi-row insert). */
export const APPEND_BATCH_MAX = 10_000;
/** A relay batch at most. */
export const READ_LIMIT_MAX = 1_000;
export const RETENTION_DAYS_DEFAULT = 90;
/** Rows one pruning statement deletes, and statements one run issues at most (as jobs do, ADR 0013). */
export const PRUNE_BATCH = 1_000;
export const PRUNE_BATCHES_MAX = 100;
const DAY_MS = 24 * 60 * 60_000;
const AGGREGATE_TYPE = /^[a-z][a-z_]{0,39}$/;
const AGGREGATE_ID_MAX = 255;
const CUSTOMER_ID_MAX = 64;
const VERSION_MAX = 2_147_483_647;

/**
 * An earlier version of the aggregate was written by a transaction with a higher id than ours:
 * ordered by position, our event would come before it. SQLSTATE 40001, so `transact()` runs the
 * transaction again, with a new (higher) transaction id (ADR 0015). Only PostgreSQL can get here.
 */
export class OutboxOrderConflict extends Error {
  override name = 'OutboxOrderConflict';
  readonly code = '40001';
}

type Row = Selectable<EventsTable>;

/** The outbox's position order, limited to transactions below the oldest still in flight. */
const committedAfter = (p: OutboxPosition) => (eb: ExpressionBuilder<EventTables, 'events'>) =>
  eb.and([
    eb(eb.refTuple('xact_id', 'seq'), '>', eb.tuple(p.xactId, p.seq)),
    // Every transaction below the snapshot's xmin has ended: its rows are final. A row of a later
    // transaction may still be joined by rows before it, so it waits for the next read.
    eb('xact_id', '<', sql<number>`pg_snapshot_xmin(pg_current_snapshot())::text::bigint`),
  ]);

/**
 * The events outbox: an event is appended in the transaction of the change it describes, so it
 * exists exactly when the change does. Read by the API (`list`, `get`) and by the relay
 * (`readFrom`), both in the commit-safe position order. Platform infrastructure, like jobs/.
 */
export class EventsOutbox {
  readonly #tables: Kysely<EventTables>;
  readonly #clock: Clock;
  readonly #retentionMs: number;
  readonly #listeners = new Set<(events: readonly CommittedEvent[]) => void>();
  /** Events each open transaction appended, handed to the listeners once it commits. */
  readonly #appended = new WeakMap<object, CommittedEvent[]>();

  constructor(db: Db, clock: Clock, opts: { retentionDays?: number } = {}) {
    this.#tables = eventTables(db);
    this.#clock = clock;
    const days = opts.retentionDays ?? RETENTION_DAYS_DEFAULT;
    assert(Number.isInteger(days) && days >= 1 && days <= 3_650, `event retention of ${days} days`);
    this.#retentionMs = days * DAY_MS;
  }

  /**
   * Appends an event inside the caller's transaction. The caller holds the aggregate's lock (the
   * version comes from the locked row), so versions of one aggregate are written one transaction
   * at a time. Data is asserted to carry no names or emails. Returns the envelope.
   */
  async append(trx: Executor, input: AppendInput): Promise<EventEnvelope> {
    const [envelope] = await this.appendMany(trx, [input]);
    return envelope!;
  }

  /**
   * Appends events in order inside the caller's transaction in two statements whatever their
   * number (a batch of renewals): one read of the latest version of each aggregate, one insert.
   * Versions of one aggregate must increase along the list, as across calls.
   */
  async appendMany(trx: Executor, inputs: readonly AppendInput[]): Promise<EventEnvelope[]> {
    assert(trx.isTransaction, 'events are appended inside the transaction of their change');
    assert(inputs.length <= APPEND_BATCH_MAX, `${inputs.length} events in one append`);
    if (inputs.length === 0) return [];
    const latest = new Map<string, number>();
    const checked = inputs.map((input) => {
      assert(isEventType(input.type), `unknown event type '${input.type}'`);
      const { aggregate } = input;
      assert(AGGREGATE_TYPE.test(aggregate.type), `aggregate type '${aggregate.type}'`);
      assert(
        typeof aggregate.id === 'string' &&
          aggregate.id.length > 0 &&
          aggregate.id.length <= AGGREGATE_ID_MAX,
        'aggregate id of 1 to 255 characters',
      );
      assert(
        Number.isInteger(aggregate.version) && aggregate.version >= 1 && aggregate.version <= VERSION_MAX,
        `aggregate version ${aggregate.version}`,
      );
      const customerId = input.customerId ?? null;
      assert(
        customerId === null || (customerId.length > 0 && customerId.length <= CUSTOMER_ID_MAX),
        'customer id',
      );
      const key = `${aggregate.type}\u0000${aggregate.id}`;
      const before = latest.get(key);
      assert(
        before === undefined || before < aggregate.version,
        `${aggregate.type} ${aggregate.id}: version ${aggregate.version} after ${before}`,
      );
      latest.set(key, aggregate.version);
      return { input, customerId, data: checkEventData(input.data) };
    });

    const createdAt = this.#clock.now();
    const rows = checked.map((c) => ({
      id: newId('event', createdAt.getTime()),
      type: c.input.type,
      aggregate_type: c.input.aggregate.type,
      aggregate_id: c.input.aggregate.id,
      aggregate_version: c.input.aggregate.version,
      customer_id: c.customerId,
      data: c.data,
      created_at: createdAt,
    }));
    const col = <K extends keyof (typeof rows)[number]>(k: K) => rows.map((r) => r[k]);
    try {
      // Usually one statement: all inserted unless an event of one of the aggregates has this
      // version or a later one, or was written by a later transaction; then nothing is, and the
      // checks below say which (or insert when only an older version came from a later one).
      const inserted = await sql<{ id: string }>`
        WITH v AS (
          SELECT * FROM unnest(
            ${col('id')}::text[], ${col('type')}::text[], ${col('aggregate_type')}::text[],
            ${col('aggregate_id')}::text[], ${col('aggregate_version')}::int[], ${col('customer_id')}::text[],
            ${col('data')}::text[]
          ) WITH ORDINALITY AS v(id, type, aggregate_type, aggregate_id, aggregate_version, customer_id, data, n)
        )
        INSERT INTO events (id, type, aggregate_type, aggregate_id, aggregate_version, customer_id, data, created_at)
        SELECT v.id, v.type, v.aggregate_type, v.aggregate_id, v.aggregate_version, v.customer_id, v.data::jsonb,
               ${createdAt.toISOString()}::timestamptz
        FROM v
        WHERE NOT EXISTS (
          SELECT 1 FROM v w JOIN events e ON e.aggregate_type = w.aggregate_type AND e.aggregate_id = w.aggregate_id
          WHERE e.aggregate_version >= w.aggregate_version OR e.xact_id > pg_current_xact_id()::text::bigint
        )
        ORDER BY v.n
        RETURNING id`.execute(trx);
      if (inserted.rows.length !== rows.length) {
        assert(inserted.rows.length === 0, 'a guarded append inserts all its events or none');
        await this.#refusal(trx, checked);
        // An older version written by a later transaction, the latest one not: allowed, as before.
        await eventTables(trx).insertInto('events').values(rows).execute();
      }
    } catch (error) {
      if (isUniqueViolation(error)) {
        // Two unserialised writers of one aggregate: a bug in the caller, not a client's mistake.
        throw new AssertionError(`an aggregate version written twice (${(error as Error).message})`);
      }
      throw error;
    }
    const envelopes = checked.map((c, i) => ({
      id: rows[i]!.id,
      type: c.input.type,
      createdAt,
      data: c.input.data,
      aggregate: { ...c.input.aggregate },
    }));
    let appended = this.#appended.get(trx);
    if (!appended) {
      const list: CommittedEvent[] = [];
      appended = list;
      this.#appended.set(trx, list);
      afterCommit(trx, () => {
        for (const listener of this.#listeners) {
          try {
            listener(list);
          } catch {
            // A listener's failure is its own (it logs); the commit stands.
          }
        }
      });
    }
    for (const [i, e] of envelopes.entries()) appended.push({ ...e, customerId: checked[i]!.customerId });
    return envelopes;
  }

  /**
   * Why a guarded append refused: a version not above the aggregate's latest (a bug in the
   * caller: assertion) or the latest written by a later transaction (`OutboxOrderConflict`, run
   * again). Returns when neither holds.
   */
  async #refusal(trx: Executor, checked: ReadonlyArray<{ input: AppendInput }>): Promise<void> {
    // Each aggregate's first event of the batch is the one to compare with what is stored.
    const firsts = new Map<string, AppendInput>();
    for (const { input } of checked) {
      const key = `${input.aggregate.type}\u0000${input.aggregate.id}`;
      if (!firsts.has(key)) firsts.set(key, input);
    }
    const types = [...firsts.values()].map((i) => i.aggregate.type);
    const ids = [...firsts.values()].map((i) => i.aggregate.id);
    const previous = await sql<{ t: string; i: string; version: number; xact_id: number; own: number }>`
      SELECT a.t, a.i, e.aggregate_version AS version, e.xact_id,
             pg_current_xact_id()::text::bigint AS own
      FROM unnest(${types}::text[], ${ids}::text[]) AS a(t, i)
      CROSS JOIN LATERAL (
        SELECT aggregate_version, xact_id FROM events
        WHERE aggregate_type = a.t AND aggregate_id = a.i
        ORDER BY aggregate_version DESC LIMIT 1
      ) e`.execute(trx);
    for (const p of previous.rows) {
      const first = firsts.get(`${p.t}\u0000${p.i}`)!;
      assert(
        p.version < first.aggregate.version,
        `${p.t} ${p.i}: version ${first.aggregate.version} after ${p.version}`,
      );
      if (Number(p.xact_id) > Number(p.own)) {
        throw new OutboxOrderConflict(
          `${p.t} ${p.i} version ${p.version} was written by a later transaction`,
        );
      }
    }
  }

  /**
   * `listener` runs after each committed transaction that appended events (on this node), with
   * those events: a relay reads at once instead of waiting for its next poll, and this node's
   * entitlement projection sees its own writes at once. Returns the unsubscribe.
   */
  onCommitted(listener: (events: readonly CommittedEvent[]) => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  async get(id: string): Promise<EventEnvelope> {
    const row = await this.#tables.selectFrom('events').selectAll().where('id', '=', id).executeTakeFirst();
    if (!row) throw notFound('event', id);
    return toEnvelope(row);
  }

  /**
   * A page of events, oldest first in the commit-safe order. `cursor` (a formatted position)
   * continues a listing; otherwise `after` (an event id, exclusive) or the beginning. `type` is
   * one event type or a group (`subscription.*`).
   */
  async list(query: {
    type?: string | undefined;
    after?: string | undefined;
    limit: number;
    cursor?: string | undefined;
  }): Promise<EventPage> {
    assert(Number.isInteger(query.limit) && query.limit >= 1 && query.limit <= READ_LIMIT_MAX, 'list limit');
    const filter = query.type === undefined ? undefined : parseTypeFilter(query.type);
    let from: OutboxPosition = OUTBOX_START;
    if (query.cursor !== undefined) {
      const parsed = parsePosition(query.cursor);
      if (!parsed) throw invalid('cursor', 'is not a cursor returned by this API', 'query');
      from = parsed;
    } else if (query.after !== undefined) {
      const row = await this.#tables
        .selectFrom('events')
        .select(['xact_id', 'seq'])
        .where('id', '=', query.after)
        .executeTakeFirst();
      if (!row)
        throw invalid('after', `'${query.after}' is not the id of an event (unknown or pruned)`, 'query');
      from = { xactId: row.xact_id, seq: row.seq };
    }
    let q = this.#tables
      .selectFrom('events')
      .selectAll()
      .where(committedAfter(from))
      .orderBy('xact_id')
      .orderBy('seq')
      .limit(query.limit + 1);
    if (filter && 'type' in filter) q = q.where('type', '=', filter.type);
    // Written as the index events_type_group is, so the planner reads that index in order.
    if (filter && 'group' in filter) q = q.where(sql<string>`split_part(type, '.', 1)`, '=', filter.group);
    const rows = await q.execute();
    const page = rows.slice(0, query.limit);
    const last = page.at(-1);
    return {
      events: page.map(toEnvelope),
      next: rows.length > query.limit && last ? { xactId: last.xact_id, seq: last.seq } : null,
    };
  }

  /**
   * Events about any of these aggregates (a customer's subscriptions, invoices, payments: the
   * customer timeline), newest first by creation then id, `limit` of them older than `before`.
   * The (aggregate type, id, version) index finds them; the ids are bounded by the caller.
   */
  async forAggregates(
    aggregates: ReadonlyArray<{ type: string; ids: readonly string[] }>,
    before: Before | undefined,
    limit: number,
  ): Promise<EventEnvelope[]> {
    const wanted = aggregates.filter((a) => a.ids.length > 0);
    if (wanted.length === 0) return [];
    const rows = await this.#tables
      .selectFrom('events')
      .selectAll()
      .where((eb) =>
        eb.or(
          wanted.map((a) =>
            eb.and([eb('aggregate_type', '=', a.type), eb('aggregate_id', 'in', [...new Set(a.ids)])]),
          ),
        ),
      )
      .where(olderThan('created_at', 'id', before))
      .orderBy(newestFirst('created_at'))
      .orderBy('id', 'desc')
      .limit(limit)
      .execute();
    return rows.map(toEnvelope);
  }

  /**
   * Up to `limit` events after `position`, in order, for the relay. Commit-safe: an event whose
   * transaction commits after this read has a position after the last one returned, so storing
   * the last position and reading on from it never skips an event. A long writing transaction
   * holds back everything written after it started (latency, never loss).
   */
  async readFrom(position: OutboxPosition, limit: number): Promise<OutboxEvent[]> {
    assert(Number.isInteger(limit) && limit >= 1 && limit <= READ_LIMIT_MAX, `read limit ${limit}`);
    const rows = await this.#tables
      .selectFrom('events')
      .selectAll()
      .where(committedAfter(position))
      .orderBy('xact_id')
      .orderBy('seq')
      .limit(limit)
      .execute();
    return rows.map((r) => ({
      ...toEnvelope(r),
      customerId: r.customer_id,
      position: { xactId: r.xact_id, seq: r.seq },
    }));
  }

  /**
   * Deletes events older than the retention (`REPRISE_EVENT_RETENTION_DAYS`), oldest first,
   * `batch` rows per statement, at most `batches` statements; rows another node is pruning are
   * skipped. `keepAfter` (the relay's stored position) protects events not yet published. Event
   * ids are ULIDs minted from `created_at`, so the id index finds the old rows without an index
   * of its own. Returns how many were deleted.
   */
  async prune(opts: { batch?: number; batches?: number; keepAfter?: OutboxPosition } = {}): Promise<number> {
    const batch = opts.batch ?? PRUNE_BATCH;
    const batches = opts.batches ?? PRUNE_BATCHES_MAX;
    const cutoff = new Date(this.#clock.now().getTime() - this.#retentionMs);
    // The smallest id minted at the cutoff: every id minted before it sorts below.
    const cutoffId = `${ID_PREFIXES.event}_${encodeTime(cutoff.getTime(), 10)}${'0'.repeat(16)}`;
    assert(Number.isInteger(batch) && batch >= 1 && batch <= 10_000, `prune batch ${batch}`);
    assert(Number.isInteger(batches) && batches >= 1 && batches <= 10_000, `prune batches ${batches}`);
    const { keepAfter } = opts;
    let old = this.#tables
      .selectFrom('events')
      .select('id')
      .where('id', '<', cutoffId)
      .where('created_at', '<', cutoff);
    if (keepAfter) {
      old = old.where(({ eb, refTuple, tuple }) =>
        eb(refTuple('xact_id', 'seq'), '<=', tuple(keepAfter.xactId, keepAfter.seq)),
      );
    }
    const oldest = old.orderBy('id').limit(batch).forUpdate().skipLocked();
    let deleted = 0;
    for (let i = 0; i < batches; i++) {
      // `= ANY(ARRAY(…))`, not `IN (…)`: the planner may answer IN with a hash join over a scan
      // of the whole table; this is one index probe per id.
      const result = await this.#tables
        .deleteFrom('events')
        .where('id', '=', sql<string>`ANY(ARRAY(${oldest}))`)
        .executeTakeFirst();
      const n = Number(result.numDeletedRows);
      deleted += n;
      if (n < batch) break;
    }
    return deleted;
  }
}

function toEnvelope(r: Row): EventEnvelope {
  return {
    id: r.id,
    type: r.type as EventType,
    createdAt: r.created_at,
    data: r.data as EventData,
    aggregate: { type: r.aggregate_type, id: r.aggregate_id, version: r.aggregate_version },
  };
}
