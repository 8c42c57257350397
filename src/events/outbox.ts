import type { ExpressionBuilder, Kysely, Selectable } from 'kysely';
import { sql } from 'kysely';
import { encodeTime } from 'ulid';
import { isUniqueViolation } from '../db/errors.js';
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
  readonly #listeners = new Set<() => void>();
  /** Transactions whose after-commit notification is registered (once per transaction). */
  readonly #hooked = new WeakSet<object>();

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
    assert(trx.isTransaction, 'events are appended inside the transaction of their change');
    assert(isEventType(input.type), `unknown event type '${input.type}'`);
    const { aggregate } = input;
    assert(AGGREGATE_TYPE.test(aggregate.type), `aggregate type '${aggregate.type}'`);
    assert(
      typeof aggregate.id === 'string' && aggregate.id.length > 0 && aggregate.id.length <= AGGREGATE_ID_MAX,
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
    const data = checkEventData(input.data);

    const db = eventTables(trx);
    const createdAt = this.#clock.now();
    const id = newId('event', createdAt.getTime());
    const row = {
      id,
      type: input.type,
      aggregate_type: aggregate.type,
      aggregate_id: aggregate.id,
      aggregate_version: aggregate.version,
      customer_id: customerId,
      data,
      created_at: createdAt,
    };
    try {
      // Usually one statement: inserted unless an event of the aggregate has this version or a
      // later one, or was written by a later transaction; then the checks below say which.
      const inserted = await db
        .insertInto('events')
        .columns([
          'id',
          'type',
          'aggregate_type',
          'aggregate_id',
          'aggregate_version',
          'customer_id',
          'data',
          'created_at',
        ])
        .expression(
          sql`SELECT ${row.id}, ${row.type}, ${row.aggregate_type}, ${row.aggregate_id}, ${row.aggregate_version}::int, ${row.customer_id}, ${row.data}::jsonb, ${row.created_at}::timestamptz
            WHERE NOT EXISTS (SELECT 1 FROM events WHERE aggregate_type = ${aggregate.type}
              AND aggregate_id = ${aggregate.id}
              AND (aggregate_version >= ${aggregate.version}
                OR xact_id > pg_current_xact_id()::text::bigint))`,
        )
        .returning('id')
        .executeTakeFirst();
      if (!inserted) {
        const previous = await db
          .selectFrom('events')
          .select([
            'aggregate_version',
            'xact_id',
            sql<number>`pg_current_xact_id()::text::bigint`.as('own_xact_id'),
          ])
          .where('aggregate_type', '=', aggregate.type)
          .where('aggregate_id', '=', aggregate.id)
          .orderBy('aggregate_version', 'desc')
          .limit(1)
          .executeTakeFirst();
        if (previous) {
          assert(
            previous.aggregate_version < aggregate.version,
            `${aggregate.type} ${aggregate.id}: version ${aggregate.version} after ${previous.aggregate_version}`,
          );
          if (previous.xact_id > previous.own_xact_id) {
            throw new OutboxOrderConflict(
              `${aggregate.type} ${aggregate.id} version ${previous.aggregate_version} was written by a later transaction`,
            );
          }
        }
        // An older version written by a later transaction, the latest one not: as before, allowed.
        await db.insertInto('events').values(row).execute();
      }
    } catch (error) {
      if (isUniqueViolation(error)) {
        // Two unserialised writers of one aggregate: a bug in the caller, not a client's mistake.
        throw new AssertionError(
          `${aggregate.type} ${aggregate.id}: version ${aggregate.version} written twice`,
        );
      }
      throw error;
    }
    if (!this.#hooked.has(trx)) {
      this.#hooked.add(trx);
      afterCommit(trx, () => {
        for (const listener of this.#listeners) listener();
      });
    }
    return { id, type: input.type, createdAt, data: input.data, aggregate: { ...aggregate } };
  }

  /**
   * `listener` runs after each committed transaction that appended events (on this node), so a
   * relay can read at once instead of waiting for its next poll. Returns the unsubscribe.
   */
  onCommitted(listener: () => void): () => void {
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
