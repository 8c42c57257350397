import { LRUCache } from 'lru-cache';
import { Counter, Gauge, type Registry } from 'prom-client';
import type { BusEvent } from '../../events/bus.js';
import { assert } from '../../kernel/assert.js';
import { type Clock, isoSeconds } from '../../kernel/clock.js';
import { looksLikeId } from '../../kernel/ids.js';
import type { BillingService, EntitlementRecord } from '../billing/service.js';
import type { CatalogService } from '../catalog/service.js';
import type { CustomerService } from '../customers/service.js';
import type { Entitlement } from './service.js';

/** What one subscription gives one external id, as the projection holds it. */
interface SourceRecord {
  subscription: string;
  version: number;
  role: 'owner' | 'member';
  features: readonly string[];
  /** Epoch ms until which it entitles; null: it does not (a tombstone that keeps the version). */
  validUntil: number | null;
}

interface Entry {
  sources: Map<string, SourceRecord>;
  /** The response, rendered for the time it was rendered at. */
  body: Buffer;
  /** The rendered body is right until this instant (the first active source's validUntil). */
  renderedUntil: number;
  /** Reloaded from the database after this (staleness bound should an event be missed). */
  freshUntil: number;
}

export interface ProjectionOptions {
  /** Entries kept at most (LRU). */
  maxEntries?: number;
  /** An entry is reloaded from the database after this long whatever the events said. */
  ttlMs?: number;
}

export const PROJECTION_MAX_ENTRIES_DEFAULT = 200_000;
export const PROJECTION_TTL_MS_DEFAULT = 5 * 60_000;

/** The data of an `entitlement.updated` event (see BillingContext.entitlementEventInputs). */
interface UpdatedObject {
  subscription: string;
  owner: string;
  members: string[];
  removed: string[];
  features: string[];
  active: boolean;
  validUntil: string | null;
  testClock?: string | null;
}

const isStringArray = (v: unknown): v is string[] =>
  Array.isArray(v) && v.every((x) => typeof x === 'string');

/** The object of an `entitlement.updated` event, or undefined when it is not one (a foreign message). */
function updatedObject(e: BusEvent): UpdatedObject | undefined {
  if (e.type !== 'entitlement.updated' || !Number.isSafeInteger(e.aggregate.version)) return undefined;
  const o = e.data?.object as Partial<UpdatedObject> | undefined;
  if (
    !o ||
    typeof o.subscription !== 'string' ||
    typeof o.owner !== 'string' ||
    !isStringArray(o.members ?? []) ||
    !isStringArray(o.removed ?? []) ||
    !isStringArray(o.features) ||
    typeof o.active !== 'boolean' ||
    (o.validUntil !== null && (typeof o.validUntil !== 'string' || Number.isNaN(Date.parse(o.validUntil))))
  ) {
    return undefined;
  }
  return o as UpdatedObject;
}

/**
 * The entitlement hot path (ADR 0018): per node, `externalId → sources, features, validUntil,
 * version` in memory with the response precomputed, fed by `entitlement.updated` events from the
 * bus and by this node's own commits, bounded (LRU), loaded from the database on a miss.
 *
 * - A hit returns stored bytes: no database round trip, no serialisation.
 * - Every source carries the subscription's version: a duplicate or late event never moves an
 *   entry backwards; an event for an id not held is ignored (a miss loads it whole), except
 *   while its load is in flight, when it is applied to the loaded entry.
 * - A source's `validUntil` passing re-renders the entry without an event (renewal margin of
 *   BILLING.md included in validUntil).
 * - What a test clock decides is never cached (simulated time): such ids take the database path.
 */
export class EntitlementProjection {
  readonly #billing: BillingService;
  readonly #customers: CustomerService;
  readonly #catalog: CatalogService;
  readonly #clock: Clock;
  readonly #cache: LRUCache<string, Entry>;
  readonly #ttlMs: number;
  /** Loads in flight, with the events that arrived for their ids meanwhile. */
  readonly #loading = new Map<string, { pending: BusEvent[]; generation: number; invalidated: boolean }>();
  /** Bumped by `clear()`: a load begun before a clear does not fill the cache after it. */
  #generation = 0;
  /** Id loads in flight, shared by concurrent misses of one id. */
  readonly #inflight = new Map<string, Promise<Buffer>>();
  hits = 0;
  misses = 0;
  /** Filled by the database fallback for simulated-time ids: never cached. */
  readonly #uncached: (externalId: string) => Promise<Entitlement>;

  constructor(
    deps: {
      billing: BillingService;
      customers: CustomerService;
      catalog: CatalogService;
      clock: Clock;
      /** The database path (EntitlementService.forExternalId), for simulated-time ids. */
      uncached: (externalId: string) => Promise<Entitlement>;
    },
    opts: ProjectionOptions = {},
  ) {
    this.#billing = deps.billing;
    this.#customers = deps.customers;
    this.#catalog = deps.catalog;
    this.#clock = deps.clock;
    this.#uncached = deps.uncached;
    const max = opts.maxEntries ?? PROJECTION_MAX_ENTRIES_DEFAULT;
    assert(Number.isInteger(max) && max >= 1 && max <= 50_000_000, `projection size ${max}`);
    this.#ttlMs = opts.ttlMs ?? PROJECTION_TTL_MS_DEFAULT;
    this.#cache = new LRUCache<string, Entry>({ max });
  }

  get size(): number {
    return this.#cache.size;
  }

  /** The response bytes of a hit that is still right, or undefined (then `load`). No I/O. */
  peek(externalId: string, now: number = this.#clock.now().getTime()): Buffer | undefined {
    const entry = this.#cache.get(externalId);
    if (!entry) return undefined;
    if (now >= entry.freshUntil) return undefined;
    if (now >= entry.renderedUntil) this.#render(externalId, entry, now);
    this.hits += 1;
    return entry.body;
  }

  /** The response bytes of each id, hits from memory and every miss in one set-based load. */
  async getMany(externalIds: readonly string[]): Promise<Buffer[]> {
    const now = this.#clock.now().getTime();
    const out: Array<Buffer | undefined> = externalIds.map((x) => this.peek(x, now));
    const missing = [...new Set(externalIds.filter((_, i) => out[i] === undefined))];
    if (missing.length > 0) {
      const loaded = await this.#loadMany(missing);
      for (const [i, x] of externalIds.entries()) out[i] ??= loaded.get(x);
    }
    return out as Buffer[];
  }

  async get(externalId: string): Promise<Buffer> {
    return this.peek(externalId) ?? (await this.load(externalId));
  }

  /** A miss: loads the id from the database (one load per id at a time) and caches it. */
  load(externalId: string): Promise<Buffer> {
    let p = this.#inflight.get(externalId);
    if (!p) {
      p = this.#loadMany([externalId])
        .then((m) => m.get(externalId)!)
        .finally(() => this.#inflight.delete(externalId));
      this.#inflight.set(externalId, p);
    }
    return p;
  }

  async #loadMany(externalIds: readonly string[]): Promise<Map<string, Buffer>> {
    this.misses += externalIds.length;
    const generation = this.#generation;
    for (const x of externalIds) {
      if (!this.#loading.has(x)) this.#loading.set(x, { pending: [], generation, invalidated: false });
    }
    const out = new Map<string, Buffer>();
    try {
      // External ids never look like ids (refused at creation), so an id-shaped one is no customer.
      const owners = await this.#customers.accountsByExternalIds(externalIds.filter((x) => !looksLikeId(x)));
      const records = await this.#billing.entitlementRecords(externalIds, owners);
      const productIds = new Set([...records.values()].flatMap((rs) => rs.map((r) => r.productId)));
      const features = new Map(
        await Promise.all(
          [...productIds].map(async (id) => [id, (await this.#catalog.getProduct(id)).features] as const),
        ),
      );
      const now = this.#clock.now().getTime();
      for (const x of externalIds) {
        const rs = records.get(x) ?? [];
        const simulated = owners.get(x)?.testClockId != null || rs.some((r) => r.testClock !== null);
        if (simulated) {
          this.#cache.delete(x);
          out.set(x, render(await this.#uncached(x)));
          continue;
        }
        const entry: Entry = {
          sources: new Map(rs.map((r) => [r.subscription, sourceOf(r, features.get(r.productId) ?? [])])),
          body: EMPTY,
          renderedUntil: 0,
          freshUntil: now + this.#ttlMs,
        };
        // Events that arrived while the database was read: newer versions win.
        const loading = this.#loading.get(x);
        let uncacheable = false;
        for (const e of loading?.pending ?? []) {
          if (!this.#applyTo(x, entry, e)) uncacheable = true;
        }
        this.#render(x, entry, now);
        if (!uncacheable && !loading?.invalidated && loading?.generation === this.#generation) {
          this.#cache.set(x, entry);
        }
        out.set(x, entry.body);
      }
    } finally {
      for (const x of externalIds) this.#loading.delete(x);
    }
    return out;
  }

  /**
   * Applies `entitlement.updated` events (from the bus, or this node's commits): each touches
   * the entries of the subscription's owner, members and removed members that are held (or
   * being loaded). Duplicates and older versions change nothing.
   */
  apply(events: readonly BusEvent[]): void {
    const now = this.#clock.now().getTime();
    for (const e of events) {
      const o = updatedObject(e);
      if (!o) continue;
      const ids = new Set([o.owner, ...(o.members ?? []), ...(o.removed ?? [])]);
      for (const x of ids) {
        const loading = this.#loading.get(x);
        if (loading) loading.pending.push(e);
        const entry = this.#cache.peek(x);
        if (!entry) continue;
        if (!this.#applyTo(x, entry, e)) {
          this.#cache.delete(x);
          continue;
        }
        this.#render(x, entry, now);
      }
    }
  }

  /**
   * This node committed these events: the ids they touch are read from the database next time
   * (read-your-writes on the writing node, before the bus brings the event back). Only evicts:
   * an event of a savepoint that rolled back is in the list too, and evicting is always safe.
   */
  committedHere(events: readonly BusEvent[]): void {
    for (const e of events) {
      const o = updatedObject(e);
      if (!o) continue;
      for (const x of [o.owner, ...(o.members ?? []), ...(o.removed ?? [])]) {
        this.#cache.delete(x);
        const loading = this.#loading.get(x);
        if (loading) loading.invalidated = true;
      }
    }
  }

  /** Applies one event to one entry; false when the entry must not be cached (simulated time). */
  #applyTo(externalId: string, entry: Entry, e: BusEvent): boolean {
    const o = updatedObject(e);
    if (!o) return true;
    if (o.testClock) return false;
    const held = entry.sources.get(o.subscription);
    if (held && held.version >= e.aggregate.version) return true;
    const removed = o.removed?.includes(externalId) ?? false;
    entry.sources.set(o.subscription, {
      subscription: o.subscription,
      version: e.aggregate.version,
      role: o.owner === externalId ? 'owner' : 'member',
      features: [...o.features],
      validUntil: o.active && !removed && o.validUntil ? Date.parse(o.validUntil) : null,
    });
    return true;
  }

  #render(externalId: string, entry: Entry, now: number): void {
    const active = [...entry.sources.values()]
      .filter((s) => s.validUntil !== null && now < s.validUntil)
      .sort((a, b) =>
        a.role === b.role ? (a.subscription < b.subscription ? -1 : 1) : a.role === 'owner' ? -1 : 1,
      );
    const features = new Set<string>();
    for (const s of active) for (const f of s.features) features.add(f);
    entry.body = render({
      externalId,
      active: active.length > 0,
      features: [...features].sort(),
      sources: active.map((s) => ({
        subscription: s.subscription,
        role: s.role,
        validUntil: isoSeconds(new Date(s.validUntil!)),
      })),
    });
    entry.renderedUntil = active.reduce((m, s) => Math.min(m, s.validUntil!), Number.POSITIVE_INFINITY);
  }

  /** Forgets everything (the bus restarted from "now": events may have been missed). */
  clear(): void {
    this.#generation += 1;
    this.#cache.clear();
  }

  /** Forgets one id (it is read from the database next time). */
  evict(externalId: string): void {
    this.#cache.delete(externalId);
  }

  registerMetrics(registry: Registry): void {
    const projection = this;
    new Gauge({
      name: 'reprise_entitlement_cache_entries',
      help: 'External ids held by this node’s entitlement projection',
      registers: [registry],
      collect() {
        this.set(projection.size);
      },
    });
    new Counter({
      name: 'reprise_entitlement_cache_lookups_total',
      help: 'Entitlement lookups answered from memory (hit) or the database (miss)',
      labelNames: ['result'],
      registers: [registry],
      collect() {
        this.reset();
        this.inc({ result: 'hit' }, projection.hits);
        this.inc({ result: 'miss' }, projection.misses);
      },
    });
  }
}

const EMPTY = Buffer.alloc(0);

function sourceOf(r: EntitlementRecord, features: readonly string[]): SourceRecord {
  return {
    subscription: r.subscription,
    version: r.version,
    role: r.role,
    features,
    validUntil: r.validUntil ? r.validUntil.getTime() : null,
  };
}

/** The response bytes of an entitlement: the same JSON the API's schema describes. */
export function render(e: Entitlement): Buffer {
  return Buffer.from(
    JSON.stringify({ externalId: e.externalId, active: e.active, features: e.features, sources: e.sources }),
  );
}
