import { randomBytes } from 'node:crypto';
import type { Db, Executor } from '../../db/schema.js';
import { afterCommit, transact } from '../../db/transaction.js';
import { assert } from '../../kernel/assert.js';
import type { Clock } from '../../kernel/clock.js';
import { billingTables } from './tables.js';

/** Numbers a node takes per block of a series (the counter row is touched once per block). */
export const NUMBER_BLOCK_DEFAULT = 50;
/** How long a node holds a block's unused numbers before any node may take them. */
export const NUMBER_LEASE_MS_DEFAULT = 5 * 60_000;
/** Numbers one `reserve` takes of a series at most (a batch of renewals). */
const RESERVE_MAX = 100_000;
/** Series a node keeps blocks of at once (markets × years × live/test): bounded. */
const SERIES_HELD_MAX = 1_000;

/**
 * Gapless invoice numbers taken in blocks (ADR 0014). `next(trx, series)` gives the invoice being
 * finalised in `trx` a number of this node's block, deleting its row from the pool in that same
 * transaction: committed, the number is used once; rolled back, the row is still there, and once
 * its lease lapses any node takes it again. So no number is lost and none is used twice.
 *
 * A block is taken inside the transaction of the invoice that finds none left (no second
 * connection is needed, so a full pool cannot deadlock, and PGlite's one session works the same):
 * that transaction alone holds the series' counter row, and only once per block, instead of every
 * finalisation of a market holding it until commit. Its other numbers become usable by this node
 * when that transaction commits; a rollback takes the whole block back with it.
 *
 * The price: across nodes (and after a rollback or a crash) numbers are not issued in strictly
 * increasing order of time; within one node's block they are. A block of 1 keeps the order
 * tighter, at the cost of the counter row per invoice.
 */
export class InvoiceNumbers {
  readonly #clock: Clock;
  readonly #blockSize: number;
  readonly #leaseMs: number;
  readonly #db: Db;
  /** This node's name on the leases it holds. */
  readonly owner = `node_${randomBytes(8).toString('hex')}`;
  /** Leased numbers not yet used, ascending, per series. */
  readonly #held = new Map<string, { numbers: number[]; leaseUntil: number }>();

  constructor(
    db: Db,
    clock: Clock,
    opts: { blockSize?: number | undefined; leaseMs?: number | undefined } = {},
  ) {
    this.#db = db;
    this.#clock = clock;
    this.#blockSize = opts.blockSize ?? NUMBER_BLOCK_DEFAULT;
    this.#leaseMs = opts.leaseMs ?? NUMBER_LEASE_MS_DEFAULT;
    assert(
      Number.isInteger(this.#blockSize) && this.#blockSize >= 1 && this.#blockSize <= 10_000,
      'block size',
    );
    assert(Number.isInteger(this.#leaseMs) && this.#leaseMs >= 1_000, 'lease of at least a second');
  }

  /** The next number of `series` for the invoice finalised in `trx` (used when `trx` commits). */
  async next(trx: Executor, series: string): Promise<number> {
    assert(trx.isTransaction, 'an invoice number is taken in the transaction that finalises the invoice');
    for (let tries = 0; tries < this.#blockSize + 2; tries++) {
      const n = this.#fromBlock(series);
      if (n === null) break;
      if (await this.#use(trx, series, n)) return n;
      // Our lease lapsed and another node took this number: forget the block, take a new one.
      this.#held.delete(series);
    }
    const [first, ...rest] = await this.#claim(trx, series);
    assert(first !== undefined && (await this.#use(trx, series, first)), 'a fresh block has its numbers');
    const leaseUntil = this.#clock.now().getTime() + this.#leaseMs;
    afterCommit(trx, () => this.#keep(series, rest, leaseUntil));
    return first;
  }

  /**
   * Before a batch (renewals): makes this node hold at least `count` numbers of each series, each
   * short series' block taken in its own short transaction, so the counter row is touched once per
   * batch and never held while the batch's invoices are written.
   */
  async reserve(needs: ReadonlyMap<string, number>): Promise<void> {
    for (const [series, count] of needs) {
      assert(Number.isInteger(count) && count >= 0 && count <= RESERVE_MAX, `reserve of ${count} numbers`);
      const short = count - this.#usable(series);
      if (short <= 0) continue;
      const size = Math.max(this.#blockSize, short);
      await transact(this.#db, async (trx) => {
        const numbers = await this.#claim(trx, series, size);
        const leaseUntil = this.#clock.now().getTime() + this.#leaseMs;
        afterCommit(trx, () => this.#keep(series, numbers, leaseUntil));
      });
    }
  }

  /**
   * `n` numbers of `series`, ascending, for invoices finalised in `trx`: those this node holds in
   * one statement, any shortfall one at a time (`next`).
   */
  async takeMany(trx: Executor, series: string, n: number): Promise<number[]> {
    assert(trx.isTransaction, 'invoice numbers are taken in the transaction that finalises the invoices');
    const wanted: number[] = [];
    for (let i = 0; i < n; i++) {
      const k = this.#fromBlock(series);
      if (k === null) break;
      wanted.push(k);
    }
    const got: number[] = [];
    if (wanted.length > 0) {
      const used = await billingTables(trx)
        .deleteFrom('invoice_number_pool')
        .where('series', '=', series)
        .where('number', 'in', wanted)
        .where('owner', '=', this.owner)
        .returning('number')
        .execute();
      got.push(...used.map((r) => Number(r.number)));
      // Numbers not found: our lease lapsed and another node took them; forget the block.
      if (got.length < wanted.length) this.#held.delete(series);
    }
    while (got.length < n) got.push(await this.next(trx, series));
    return got.sort((a, b) => a - b);
  }

  /** Numbers of `series` this node holds and may still use. */
  #usable(series: string): number {
    const held = this.#held.get(series);
    if (!held || held.leaseUntil - this.#clock.now().getTime() <= 5_000) return 0;
    return held.numbers.length;
  }

  #fromBlock(series: string): number | null {
    const held = this.#held.get(series);
    // A margin: a number is used well within its lease, or left for the next block.
    if (!held || held.leaseUntil - this.#clock.now().getTime() <= 5_000) return null;
    return held.numbers.shift() ?? null;
  }

  async #use(trx: Executor, series: string, n: number): Promise<boolean> {
    const used = await billingTables(trx)
      .deleteFrom('invoice_number_pool')
      .where('series', '=', series)
      .where('number', '=', n)
      .where('owner', '=', this.owner)
      .returning('number')
      .executeTakeFirst();
    return used !== undefined;
  }

  #keep(series: string, numbers: number[], leaseUntil: number): void {
    if (numbers.length === 0) return;
    const held = this.#held.get(series);
    if (held && held.leaseUntil > this.#clock.now().getTime()) {
      // Another transaction of this node took a block meanwhile: keep both, earliest lease first.
      held.numbers = [...held.numbers, ...numbers].sort((a, b) => a - b);
      held.leaseUntil = Math.min(held.leaseUntil, leaseUntil);
      return;
    }
    if (!held && this.#held.size >= SERIES_HELD_MAX) {
      // Bounded: forget the oldest series' block (its numbers come back when their lease lapses).
      const oldest = this.#held.keys().next().value;
      if (oldest !== undefined) this.#held.delete(oldest);
    }
    this.#held.set(series, { numbers, leaseUntil });
  }

  /**
   * A block, leased to this node in `trx`: numbers whose lease lapsed first (lowest first: the
   * gaps a rollback or a dead node left are filled before new numbers are made), then new ones
   * from the series' counter.
   */
  async #claim(trx: Executor, series: string, size = this.#blockSize): Promise<number[]> {
    const now = this.#clock.now();
    const leaseUntil = new Date(now.getTime() + this.#leaseMs);
    const db = billingTables(trx);
    const lapsed = await db
      .selectFrom('invoice_number_pool')
      .select('number')
      .where('series', '=', series)
      .where('lease_until', '<=', now)
      .orderBy('number')
      .limit(size)
      .forUpdate()
      .skipLocked()
      .execute();
    const taken = lapsed.map((r) => Number(r.number));
    if (taken.length > 0) {
      await db
        .updateTable('invoice_number_pool')
        .set({ owner: this.owner, lease_until: leaseUntil })
        .where('series', '=', series)
        .where('number', 'in', taken)
        .execute();
    }
    const more = size - taken.length;
    if (more > 0) {
      const counter = await db
        .insertInto('invoice_number_series')
        .values({ series, last_number: more })
        .onConflict((oc) =>
          oc
            .column('series')
            .doUpdateSet((eb) => ({ last_number: eb('invoice_number_series.last_number', '+', more) })),
        )
        .returning('last_number')
        .executeTakeFirstOrThrow();
      const last = Number(counter.last_number);
      const fresh = Array.from({ length: more }, (_, i) => last - more + 1 + i);
      await db
        .insertInto('invoice_number_pool')
        .values(fresh.map((number) => ({ series, number, owner: this.owner, lease_until: leaseUntil })))
        .execute();
      taken.push(...fresh);
    }
    return taken.sort((a, b) => a - b);
  }

  /** Gives back every number this node holds (shutdown): any node may take them at once. */
  async release(): Promise<void> {
    this.#held.clear();
    await billingTables(this.#db)
      .updateTable('invoice_number_pool')
      .set({ lease_until: new Date(0) })
      .where('owner', '=', this.owner)
      .execute();
  }
}
