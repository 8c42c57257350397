import { assert } from '../kernel/assert.js';
import type { EventEnvelope, OutboxEvent } from './outbox.js';
import type { EventType } from './types.js';

/**
 * The event bus (ADR 0018): what the relay publishes the outbox to, and what consumers read.
 * In-process by default (`MemoryBus`); NATS JetStream when `NATS_URL` is set (`NatsBus`).
 *
 * Two ways to consume:
 * - **shared** (`consumeShared`): a durable, named consumer whose work the nodes split. Every
 *   event is handed to one node's handler at least once; a handler that throws gets the batch
 *   again later. Handlers must be idempotent (the event id is the dedupe key). Webhook fan-out.
 * - **broadcast** (`subscribe`): every node sees every event published from now on, in order,
 *   at most once per node (a gap is possible across a broker outage: the consumer must tolerate
 *   it, e.g. by falling back to the database). The entitlement projections.
 */
export interface EventBus {
  readonly kind: 'memory' | 'nats';
  /**
   * Publishes events in order; resolves once each is durably accepted (JetStream acks it; the
   * in-process bus has handed it to every shared consumer and they returned). Duplicates by
   * event id are dropped by the broker (within its duplicate window) or by the consumers.
   */
  publish(events: readonly OutboxEvent[]): Promise<void>;
  consumeShared(name: string, handler: SharedHandler, opts?: SharedOptions): Promise<BusSubscription>;
  subscribe(handler: BroadcastHandler, opts?: BroadcastOptions): Promise<BusSubscription>;
  close(): Promise<void>;
}

/** An event as it travels: the envelope plus its distribution key. */
export interface BusEvent extends EventEnvelope {
  customerId: string | null;
}

export type SharedHandler = (events: readonly BusEvent[]) => Promise<void>;
export type BroadcastHandler = (events: readonly BusEvent[]) => void;

export interface SharedOptions {
  /** Only these types reach the handler (all when absent). */
  types?: readonly EventType[];
  /** Events per handler call at most. */
  batch?: number;
}

export interface BroadcastOptions {
  /** Only these types reach the handler (all when absent). */
  types?: readonly EventType[];
  /**
   * Called when the subscription (re)starts from "now": events published before may not have
   * been seen, so state built from earlier events must be reloaded (the projection clears).
   */
  onReset?: () => void;
}

export interface BusSubscription {
  close(): Promise<void>;
}

/** Events per shared handler call at most. */
export const SHARED_BATCH_MAX = 500;

/** The JSON an event travels as (the broker's payload): the API's envelope plus `customerId`. */
export function encodeEvent(e: BusEvent): string {
  return JSON.stringify({
    id: e.id,
    type: e.type,
    createdAt: e.createdAt.toISOString(),
    data: e.data,
    aggregate: e.aggregate,
    customerId: e.customerId,
  });
}

/** The inverse of `encodeEvent`; throws on anything else (a foreign message on our subjects). */
export function decodeEvent(text: string): BusEvent {
  const v = JSON.parse(text) as Record<string, unknown>;
  assert(typeof v.id === 'string' && typeof v.type === 'string', 'bus event id and type');
  const aggregate = v.aggregate as BusEvent['aggregate'];
  assert(
    typeof aggregate === 'object' &&
      aggregate !== null &&
      typeof aggregate.id === 'string' &&
      Number.isInteger(aggregate.version),
    'bus event aggregate',
  );
  const createdAt = new Date(String(v.createdAt));
  assert(!Number.isNaN(createdAt.getTime()), 'bus event createdAt');
  return {
    id: v.id,
    type: v.type as EventType,
    createdAt,
    data: v.data as BusEvent['data'],
    aggregate,
    customerId: typeof v.customerId === 'string' ? v.customerId : null,
  };
}

/** An outbox event as it travels (its position stays behind). */
export const toBusEvent = (e: OutboxEvent): BusEvent => ({
  id: e.id,
  type: e.type,
  createdAt: e.createdAt,
  data: e.data,
  aggregate: e.aggregate,
  customerId: e.customerId,
});

/**
 * The in-process bus of the embedded default (one node). `publish` awaits every shared consumer,
 * so the relay stores its position only after they handled the batch: at least once across a
 * crash, with nothing kept in memory. Broadcast subscribers are called synchronously, in order.
 */
export class MemoryBus implements EventBus {
  readonly kind = 'memory' as const;
  readonly #shared = new Map<
    string,
    { handler: SharedHandler; types?: ReadonlySet<string>; batch: number }
  >();
  readonly #broadcast = new Set<{ handler: BroadcastHandler; types?: ReadonlySet<string> }>();

  async publish(events: readonly OutboxEvent[]): Promise<void> {
    if (events.length === 0) return;
    const busEvents = events.map(toBusEvent);
    for (const s of this.#shared.values()) {
      const mine = s.types ? busEvents.filter((e) => s.types!.has(e.type)) : busEvents;
      for (let i = 0; i < mine.length; i += s.batch) await s.handler(mine.slice(i, i + s.batch));
    }
    for (const b of this.#broadcast) {
      const mine = b.types ? busEvents.filter((e) => b.types!.has(e.type)) : busEvents;
      // A subscriber's bug must not fail the publish (the shared consumers already handled it).
      if (mine.length > 0) {
        try {
          b.handler(mine);
        } catch {
          /* the subscriber reports its own errors */
        }
      }
    }
  }

  async consumeShared(
    name: string,
    handler: SharedHandler,
    opts: SharedOptions = {},
  ): Promise<BusSubscription> {
    assert(!this.#shared.has(name), `shared consumer '${name}' registered twice`);
    const batch = opts.batch ?? SHARED_BATCH_MAX;
    assert(Number.isInteger(batch) && batch >= 1 && batch <= SHARED_BATCH_MAX, `batch ${batch}`);
    this.#shared.set(name, { handler, batch, ...(opts.types ? { types: new Set(opts.types) } : {}) });
    return { close: async () => void this.#shared.delete(name) };
  }

  async subscribe(handler: BroadcastHandler, opts: BroadcastOptions = {}): Promise<BusSubscription> {
    const entry = { handler, ...(opts.types ? { types: new Set<string>(opts.types) } : {}) };
    this.#broadcast.add(entry);
    return { close: async () => void this.#broadcast.delete(entry) };
  }

  async close(): Promise<void> {
    this.#shared.clear();
    this.#broadcast.clear();
  }
}
