import { sql } from 'kysely';
import pg from 'pg';
import { Counter, Gauge, type Registry } from 'prom-client';
import type { Db } from '../db/schema.js';
import { assert } from '../kernel/assert.js';
import type { Clock } from '../kernel/clock.js';
import type { EventBus } from './bus.js';
import { type EventsOutbox, OUTBOX_START, type OutboxPosition, READ_LIMIT_MAX } from './outbox.js';
import { eventTables } from './tables.js';

/**
 * Who may publish: one relay at a time across the nodes of one database (ADR 0018). `check()`
 * answers whether this node leads now (taking the lead when it is free).
 */
export interface Leadership {
  check(): Promise<boolean>;
  release(): Promise<void>;
}

/** The embedded default: one process, so it always leads. */
export const soleLeader: Leadership = { check: async () => true, release: async () => undefined };

/** Advisory lock class of the relays ('RPRL'); the object is a hash of the relay's name. */
const LOCK_CLASS = 0x5250524c;

function nameHash(name: string): number {
  let h = 0;
  for (const ch of name) h = (Math.imul(h, 31) + ch.charCodeAt(0)) | 0;
  return h;
}

/**
 * Leadership by a PostgreSQL session-level advisory lock held on a connection of its own (not
 * from the pool): the lock lives exactly as long as that session, so a node that dies or loses
 * its connection gives the lead up at once, and another node's next `check()` takes it.
 */
export class AdvisoryLockLeadership implements Leadership {
  readonly #connectionString: string;
  readonly #key: number;
  #client: pg.Client | undefined;
  #connecting: Promise<pg.Client> | undefined;

  constructor(connectionString: string, name: string) {
    this.#connectionString = connectionString;
    this.#key = nameHash(name);
  }

  async check(): Promise<boolean> {
    try {
      const client = await this.#connect();
      // Held already (by this session), or taken now if free: one round trip either way. The
      // try-lock is not re-entered while held, so the lock count stays at one.
      const { rows } = await client.query<{ leader: boolean }>(
        `SELECT CASE WHEN EXISTS (
            SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND pid = pg_backend_pid()
              AND classid = $1::oid AND objid = $2::oid AND objsubid = 2 AND granted)
          THEN true ELSE pg_try_advisory_lock($3::int, $4::int) END AS leader`,
        [LOCK_CLASS >>> 0, this.#key >>> 0, LOCK_CLASS | 0, this.#key],
      );
      return rows[0]?.leader === true;
    } catch {
      // A broken session held nothing (the server released its locks): connect again next time.
      await this.#drop();
      return false;
    }
  }

  async #connect(): Promise<pg.Client> {
    if (this.#client) return this.#client;
    this.#connecting ??= (async () => {
      const client = new pg.Client({
        connectionString: this.#connectionString,
        application_name: 'reprise-relay-lock',
        keepAlive: true,
        connectionTimeoutMillis: 5_000,
        query_timeout: 5_000,
      });
      client.on('error', () => void this.#drop());
      await client.connect();
      this.#client = client;
      return client;
    })().finally(() => {
      this.#connecting = undefined;
    });
    return this.#connecting;
  }

  async #drop(): Promise<void> {
    const client = this.#client;
    this.#client = undefined;
    await client?.end().catch(() => undefined);
  }

  async release(): Promise<void> {
    await this.#drop();
  }
}

export interface RelayOptions {
  /** The relay's row in `relay_positions`. */
  name?: string;
  /** Events read and published per round. */
  batch?: number;
  /** How often the leader looks for events committed on other nodes when nothing woke it. */
  pollMs?: number;
  /** How often a node that does not lead tries to take the lead. */
  standbyMs?: number;
  /** Longest wait after a failed round (the bus or the database absent); doubling from 100 ms. */
  retryMaxMs?: number;
  leadership?: Leadership;
  onError?: (error: unknown) => void;
}

export const RELAY_BATCH_DEFAULT = 500;

export interface RelayStatus {
  leader: boolean;
  position: OutboxPosition | null;
  publishedHere: number;
  consecutiveFailures: number;
}

/**
 * The outbox relay (ADR 0018): publishes committed events to the bus in outbox order, at least
 * once, and stores how far it got after the bus accepted them. It resumes from the stored
 * position after its own crash or the broker's absence (the events wait in the outbox; nothing
 * is skipped, nothing lost); republished events carry the same id, which the broker and the
 * consumers drop as duplicates. One node leads at a time (`Leadership`); the others stand by.
 */
export class OutboxRelay {
  readonly #db: Db;
  readonly #outbox: EventsOutbox;
  readonly #bus: EventBus;
  readonly #clock: Clock;
  readonly #name: string;
  readonly #batch: number;
  readonly #pollMs: number;
  readonly #standbyMs: number;
  readonly #retryMaxMs: number;
  readonly #leadership: Leadership;
  readonly #onError: (error: unknown) => void;
  #leader = false;
  #position: OutboxPosition | null = null;
  #failures = 0;
  #publishedHere = 0;
  #running: Promise<void> | undefined;
  #stopped = true;
  #wake: (() => void) | undefined;
  #woken = false;
  #unsubscribe: (() => void) | undefined;

  constructor(db: Db, outbox: EventsOutbox, bus: EventBus, clock: Clock, opts: RelayOptions = {}) {
    this.#db = db;
    this.#outbox = outbox;
    this.#bus = bus;
    this.#clock = clock;
    this.#name = opts.name ?? 'bus';
    this.#batch = opts.batch ?? RELAY_BATCH_DEFAULT;
    assert(Number.isInteger(this.#batch) && this.#batch >= 1 && this.#batch <= READ_LIMIT_MAX, 'relay batch');
    this.#pollMs = opts.pollMs ?? 100;
    this.#standbyMs = opts.standbyMs ?? 1_000;
    this.#retryMaxMs = opts.retryMaxMs ?? 5_000;
    this.#leadership = opts.leadership ?? soleLeader;
    this.#onError = opts.onError ?? (() => undefined);
  }

  get name(): string {
    return this.#name;
  }

  status(): RelayStatus {
    return {
      leader: this.#leader,
      position: this.#position,
      publishedHere: this.#publishedHere,
      consecutiveFailures: this.#failures,
    };
  }

  /** The stored position: every event at or before it was accepted by the bus. */
  async storedPosition(): Promise<OutboxPosition> {
    const row = await eventTables(this.#db)
      .selectFrom('relay_positions')
      .select(['xact_id', 'seq'])
      .where('name', '=', this.#name)
      .executeTakeFirst();
    return row ? { xactId: row.xact_id, seq: row.seq } : OUTBOX_START;
  }

  /**
   * One round: publishes up to a batch of events after the stored position, then stores the
   * new position. Returns how many were published (0: nothing to do, or this node does not lead).
   */
  async runOnce(): Promise<number> {
    const leader = await this.#leadership.check();
    if (!leader) {
      this.#leader = false;
      this.#position = null;
      return 0;
    }
    if (!this.#leader || this.#position === null) {
      // Just took the lead: another node may have moved the position since this one last led.
      await eventTables(this.#db)
        .insertInto('relay_positions')
        .values({ name: this.#name, xact_id: 0, seq: 0, published: 0, updated_at: this.#clock.now() })
        .onConflict((oc) => oc.column('name').doNothing())
        .execute();
      this.#position = await this.storedPosition();
      this.#leader = true;
    }
    const events = await this.#outbox.readFrom(this.#position, this.#batch);
    if (events.length === 0) return 0;
    await this.#bus.publish(events);
    const last = events.at(-1)!.position;
    // Forward only: a node that lost the lead mid-round cannot move the position back.
    await eventTables(this.#db)
      .updateTable('relay_positions')
      .set({
        xact_id: last.xactId,
        seq: last.seq,
        published: sql<number>`published + ${events.length}`,
        updated_at: this.#clock.now(),
      })
      .where('name', '=', this.#name)
      .where(({ eb, refTuple, tuple }) => eb(refTuple('xact_id', 'seq'), '<', tuple(last.xactId, last.seq)))
      .execute();
    this.#position = last;
    this.#publishedHere += events.length;
    return events.length;
  }

  /** Runs rounds until nothing is left (tests, the CLI); bounded by `maxRounds`. */
  async drain(maxRounds = 10_000): Promise<number> {
    let total = 0;
    for (let i = 0; i < maxRounds; i++) {
      const n = await this.runOnce();
      total += n;
      if (n < this.#batch) return total;
    }
    return total;
  }

  /** Starts the background loop: woken by this node's commits, polling for the others'. */
  start(): void {
    if (!this.#stopped) return;
    this.#stopped = false;
    this.#unsubscribe = this.#outbox.onCommitted(() => this.wake());
    this.#running = this.#loop();
  }

  /** Runs a round now if the loop is idle (a commit that appended events). */
  wake(): void {
    this.#woken = true;
    this.#wake?.();
  }

  async #loop(): Promise<void> {
    while (!this.#stopped) {
      let wait: number;
      let wakeable = true;
      try {
        this.#woken = false;
        const n = await this.runOnce();
        this.#failures = 0;
        if (n === this.#batch) continue;
        wait = this.#leader ? this.#pollMs : this.#standbyMs;
        wakeable = this.#leader;
      } catch (error) {
        this.#failures += 1;
        this.#onError(error);
        wait = Math.min(100 * 2 ** Math.min(this.#failures - 1, 16), this.#retryMaxMs);
        wakeable = false;
      }
      if (this.#stopped) break;
      if (wakeable && this.#woken) continue;
      await new Promise<void>((resolve) => {
        const timer = setTimeout(done, wait);
        function done() {
          clearTimeout(timer);
          resolve();
        }
        this.#wake = wakeable ? done : undefined;
        this.#stopHook = done;
      });
      this.#wake = undefined;
    }
  }

  #stopHook: (() => void) | undefined;

  async stop(): Promise<void> {
    if (this.#stopped) return;
    this.#stopped = true;
    this.#unsubscribe?.();
    this.#stopHook?.();
    await this.#running;
    await this.#leadership.release();
    this.#leader = false;
  }

  /**
   * `reprise_relay_lag_seconds` (age of the oldest event not yet published, 0 when none; read from
   * the database at scrape time, so every node reports it, leader or not), `reprise_relay_backlog`
   * (events waiting, counted up to 100,000) and `reprise_relay_leader`.
   */
  registerMetrics(registry: Registry): void {
    const relay = this;
    const lagSql = (name: string) => sql<{ created_at: Date | null; backlog: number }>`
      SELECT (SELECT e.created_at FROM events e
                WHERE (e.xact_id, e.seq) > (p.xact_id, p.seq)
                ORDER BY e.xact_id, e.seq LIMIT 1) AS created_at,
             (SELECT count(*) FROM (SELECT 1 FROM events e
                WHERE (e.xact_id, e.seq) > (p.xact_id, p.seq) LIMIT 100000) b)::int AS backlog
      FROM (SELECT coalesce(max(xact_id), 0) AS xact_id, coalesce(max(seq), 0) AS seq
            FROM relay_positions WHERE name = ${name}) p`;
    let last: { created_at: Date | null; backlog: number } | undefined;
    let lastAt = 0;
    const read = async () => {
      // Two gauges, one read per scrape.
      if (Date.now() - lastAt > 200) {
        last = (await lagSql(relay.#name).execute(relay.#db)).rows[0];
        lastAt = Date.now();
      }
      return last ?? { created_at: null, backlog: 0 };
    };
    new Gauge({
      name: 'reprise_relay_lag_seconds',
      help: 'Age of the oldest event the relay has not published yet (0: caught up)',
      labelNames: ['relay'],
      registers: [registry],
      async collect() {
        const r = await read();
        const lag = r.created_at
          ? Math.max(0, (relay.#clock.now().getTime() - r.created_at.getTime()) / 1000)
          : 0;
        this.set({ relay: relay.#name }, lag);
      },
    });
    new Gauge({
      name: 'reprise_relay_backlog',
      help: 'Events committed and not yet published (counted up to 100,000)',
      labelNames: ['relay'],
      registers: [registry],
      async collect() {
        this.set({ relay: relay.#name }, (await read()).backlog);
      },
    });
    new Gauge({
      name: 'reprise_relay_leader',
      help: '1 when this node runs the relay',
      labelNames: ['relay'],
      registers: [registry],
      collect() {
        this.set({ relay: relay.#name }, relay.#leader ? 1 : 0);
      },
    });
    new Counter({
      name: 'reprise_relay_published_total',
      help: 'Events this node published to the bus (republished duplicates included)',
      labelNames: ['relay'],
      registers: [registry],
      collect() {
        this.reset();
        this.inc({ relay: relay.#name }, relay.#publishedHere);
      },
    });
  }
}
