import { createHmac, timingSafeEqual } from 'node:crypto';
import {
  AckPolicy,
  DeliverPolicy,
  DiscardPolicy,
  type JetStreamClient,
  type JetStreamManager,
  type JsMsg,
  jetstream,
  jetstreamManager,
  RetentionPolicy,
  StorageType,
} from '@nats-io/jetstream';
import { connect, headers, type MsgHdrs, type NatsConnection, nanos } from '@nats-io/transport-node';
import { assert } from '../kernel/assert.js';
import {
  type BroadcastHandler,
  type BroadcastOptions,
  type BusEvent,
  type BusSubscription,
  decodeEvent,
  type EventBus,
  encodeEvent,
  SHARED_BATCH_MAX,
  type SharedHandler,
  type SharedOptions,
  toBusEvent,
} from './bus.js';
import type { OutboxEvent } from './outbox.js';
import { EVENT_GROUPS, type EventType } from './types.js';

export interface NatsBusOptions {
  /** `nats://host:port` (comma-separated for a cluster). */
  url: string;
  /** Subject prefix and stream name prefix (`reprise` → subjects `reprise.subscription.…`, stream `REPRISE_SUBSCRIPTION`). */
  prefix?: string;
  /** Stream replicas: 3 on a cluster (R3) for writes that survive a server's loss. */
  replicas?: number;
  /** How long streams keep events (the outbox's retention). */
  retentionDays?: number;
  /** JetStream drops a message whose id it saw this recently (the relay's republish after a crash). */
  duplicateWindowMs?: number;
  /** This node's connection name (shown by the server). */
  name?: string;
  /** How long a publish waits for JetStream's ack. */
  publishTimeoutMs?: number;
  /** How long a shared consumer's message may stay unacknowledged before it is redelivered. */
  ackWaitMs?: number;
  onError?: (error: unknown, where: string) => void;
  /**
   * Key every published message is signed with (HMAC-SHA256 of the payload, header
   * `Reprise-Bus-Signature`); when set, a message without a valid signature is dropped and
   * reported, so whoever may publish on the subjects cannot forge events (webhooks signed with
   * endpoint secrets, entitlements). Every node derives it from the master key.
   */
  signingKey?: Buffer;
}

/** The header carrying a message's HMAC (see `signingKey`). */
export const BUS_SIGNATURE_HEADER = 'Reprise-Bus-Signature';

const PREFIX = /^[a-z][a-z0-9_-]{0,31}$/;
const DURABLE = /^[a-z][a-z0-9_-]{0,63}$/;
/** Redelivery delay after a shared handler failed. */
const NAK_DELAY_MS = 2_000;
/** How long `publish` waits for the first connection before failing (the relay retries). */
const READY_WAIT_MS = 2_000;

/** The group of an event type: what its stream is named after. */
const groupOf = (type: string): string => type.slice(0, type.indexOf('.'));

/**
 * The event bus on NATS JetStream (ADR 0018), with the official `@nats-io` clients.
 * - One stream per domain (event group): `REPRISE_SUBSCRIPTION` holds `reprise.subscription.>`.
 *   The subject is `<prefix>.<group>.<action>.<customer id or _>`, so a consumer can filter by
 *   type and by customer. File storage, limits retention (the outbox's retention), R1 by default,
 *   `REPRISE_NATS_REPLICAS=3` on a cluster.
 * - Every message carries `Nats-Msg-Id` = the event id: JetStream drops the relay's republished
 *   duplicates within the duplicate window.
 * - Shared consumers are durable pull consumers with explicit acks: a batch is acked after its
 *   handler returned, nak'ed (redelivered after a delay) when it threw, redelivered when a node
 *   died holding it (ack wait).
 * - Broadcast subscriptions are ordered consumers from "now": each node sees every event, in order.
 *
 * The connection is made in the background and kept (reconnecting forever): a node starts while
 * NATS is down, and events wait in the outbox until it is back.
 */
export class NatsBus implements EventBus {
  readonly kind = 'nats' as const;
  readonly #opts: Required<Omit<NatsBusOptions, 'onError' | 'name' | 'signingKey'>> &
    Pick<NatsBusOptions, 'onError' | 'name' | 'signingKey'>;
  readonly #ready: Promise<{ nc: NatsConnection; js: JetStreamClient; jsm: JetStreamManager }>;
  #connected: { nc: NatsConnection; js: JetStreamClient; jsm: JetStreamManager } | undefined;
  #closed = false;
  readonly #stoppers = new Set<() => Promise<void>>();

  constructor(opts: NatsBusOptions) {
    const prefix = opts.prefix ?? 'reprise';
    assert(PREFIX.test(prefix), `NATS prefix '${prefix}'`);
    this.#opts = {
      url: opts.url,
      prefix,
      replicas: opts.replicas ?? 1,
      retentionDays: opts.retentionDays ?? 90,
      duplicateWindowMs: opts.duplicateWindowMs ?? 10 * 60_000,
      publishTimeoutMs: opts.publishTimeoutMs ?? 5_000,
      ackWaitMs: opts.ackWaitMs ?? 30_000,
      ...(opts.name ? { name: opts.name } : {}),
      ...(opts.onError ? { onError: opts.onError } : {}),
      ...(opts.signingKey ? { signingKey: opts.signingKey } : {}),
    };
    this.#ready = this.#connect();
    // Failing to connect at all is reported through publish and subscribe, not here.
    this.#ready.catch(() => undefined);
  }

  /** Resolves once connected and the streams exist (rejects after `ms`). */
  async ready(ms = 10_000): Promise<void> {
    await this.#connection(ms);
  }

  /** Connected to the server right now. */
  get connected(): boolean {
    return this.#connected !== undefined && !this.#connected.nc.isClosed();
  }

  /** The stream holding events of `group` (an event type's part before the dot). */
  streamName(group: string): string {
    return `${this.#opts.prefix}_${group}`.toUpperCase().replace(/-/g, '_');
  }

  subjectOf(e: { type: string; customerId: string | null }): string {
    const [group, action] = e.type.split('.') as [string, string];
    return `${this.#opts.prefix}.${group}.${action}.${e.customerId ?? '_'}`;
  }

  /** Connects, retrying every second until it succeeds or the bus is closed; then reconnects forever. */
  async #connect() {
    for (let attempt = 1; ; attempt++) {
      if (this.#closed) throw new Error('NATS bus closed');
      let nc: NatsConnection | undefined;
      try {
        nc = await connect({
          servers: this.#opts.url.split(',').map((s) => s.trim()),
          ...(this.#opts.name ? { name: this.#opts.name } : {}),
          maxReconnectAttempts: -1,
          reconnectTimeWait: 500,
          pingInterval: 5_000,
          maxPingOut: 2,
        });
        const jsm = await jetstreamManager(nc);
        await this.#ensureStreams(jsm);
        const js = jetstream(nc, { timeout: this.#opts.publishTimeoutMs });
        if (this.#closed) {
          await nc.close();
          throw new Error('NATS bus closed');
        }
        this.#connected = { nc, js, jsm };
        return this.#connected;
      } catch (error) {
        await nc?.close().catch(() => undefined);
        if (this.#closed) throw error;
        if (attempt === 1 || attempt % 30 === 0)
          this.#opts.onError?.(error, `connecting to ${this.#opts.url}`);
        await new Promise<void>((resolve) => {
          const timer = setTimeout(resolve, 1_000);
          this.#cancelWait = () => {
            clearTimeout(timer);
            resolve();
          };
        });
        this.#cancelWait = undefined;
      }
    }
  }

  #cancelWait: (() => void) | undefined;

  async #ensureStreams(jsm: JetStreamManager): Promise<void> {
    for (const group of EVENT_GROUPS) {
      const config = {
        name: this.streamName(group),
        subjects: [`${this.#opts.prefix}.${group}.>`],
        storage: StorageType.File,
        retention: RetentionPolicy.Limits,
        discard: DiscardPolicy.Old,
        max_age: nanos(this.#opts.retentionDays * 24 * 3_600_000),
        duplicate_window: nanos(this.#opts.duplicateWindowMs),
        num_replicas: this.#opts.replicas,
      };
      try {
        await jsm.streams.add(config);
      } catch {
        // Exists with another configuration (an older release, a changed retention): bring it in line.
        const { name, ...update } = config;
        await jsm.streams.update(name, update);
      }
    }
  }

  /** The connection, waiting at most `ms` for it. */
  async #connection(ms: number) {
    if (this.#connected && !this.#connected.nc.isClosed()) return this.#connected;
    let timer: NodeJS.Timeout | undefined;
    try {
      return await Promise.race([
        this.#ready,
        new Promise<never>((_, reject) => {
          timer = setTimeout(() => reject(new Error(`NATS at ${this.#opts.url} not reachable yet`)), ms);
        }),
      ]);
    } finally {
      clearTimeout(timer);
    }
  }

  /**
   * Publishes with `Nats-Msg-Id` = event id, pipelined across aggregates and one at a time
   * within one (the next waits for the previous one's ack), so a failed publish never lets a
   * later version of the same aggregate into the stream before it: the relay republishes from
   * the failed one, and the duplicates of those already stored are dropped.
   */
  async publish(events: readonly OutboxEvent[]): Promise<void> {
    if (events.length === 0) return;
    const { js } = await this.#connection(READY_WAIT_MS);
    const chains = new Map<string, Promise<unknown>>();
    const all: Promise<unknown>[] = [];
    for (const e of events) {
      const busEvent = toBusEvent(e);
      const payload = encodeEvent(busEvent);
      const signed = this.#sign(payload);
      const send = () =>
        js.publish(this.subjectOf(busEvent), payload, {
          msgID: e.id,
          timeout: this.#opts.publishTimeoutMs,
          ...(signed ? { headers: signed } : {}),
        });
      const key = `${e.aggregate.type}\u0000${e.aggregate.id}`;
      const previous = chains.get(key);
      const sent = previous ? previous.then(send) : send();
      chains.set(key, sent);
      all.push(sent);
    }
    await Promise.all(all);
  }

  /** The signature headers of `payload`, when the bus signs. */
  #sign(payload: string): MsgHdrs | undefined {
    const key = this.#opts.signingKey;
    if (!key) return undefined;
    const h = headers();
    h.set(BUS_SIGNATURE_HEADER, createHmac('sha256', key).update(payload, 'utf8').digest('hex'));
    return h;
  }

  /** A message's event; throws when it is not one of ours (undecodable, or unsigned / badly signed). */
  #decode(payload: string, hdrs: MsgHdrs | undefined): BusEvent {
    const key = this.#opts.signingKey;
    if (key) {
      const given = Buffer.from(hdrs?.get(BUS_SIGNATURE_HEADER) ?? '', 'hex');
      const expected = createHmac('sha256', key).update(payload, 'utf8').digest();
      assert(given.length === expected.length && timingSafeEqual(given, expected), 'bus message signature');
    }
    return decodeEvent(payload);
  }

  /** Streams a type filter touches (every group when absent). */
  #groups(types: readonly EventType[] | undefined): string[] {
    return types ? [...new Set(types.map(groupOf))] : [...EVENT_GROUPS];
  }

  async consumeShared(
    name: string,
    handler: SharedHandler,
    opts: SharedOptions = {},
  ): Promise<BusSubscription> {
    assert(DURABLE.test(name), `durable consumer name '${name}'`);
    const batch = opts.batch ?? SHARED_BATCH_MAX;
    assert(Number.isInteger(batch) && batch >= 1 && batch <= SHARED_BATCH_MAX, `batch ${batch}`);
    const wanted = opts.types ? new Set<string>(opts.types) : undefined;
    const loops = this.#groups(opts.types).map((group) =>
      this.#loop(`shared ${name} on ${group}`, async (conn, alive) => {
        const stream = this.streamName(group);
        await conn.jsm.consumers.add(stream, {
          durable_name: name,
          ack_policy: AckPolicy.Explicit,
          ack_wait: nanos(this.#opts.ackWaitMs),
          deliver_policy: DeliverPolicy.All,
          max_deliver: -1,
          max_ack_pending: 10 * batch,
        });
        const consumer = await conn.js.consumers.get(stream, name);
        const messages = await consumer.consume({ max_messages: batch });
        alive(() => messages.close().then(() => undefined));
        let buffer: JsMsg[] = [];
        for await (const m of messages) {
          buffer.push(m);
          if (buffer.length < batch && messages.getPending() > 0) continue;
          const taken = buffer;
          buffer = [];
          const events: BusEvent[] = [];
          const skipped: JsMsg[] = [];
          for (const msg of taken) {
            try {
              const e = this.#decode(msg.string(), msg.headers);
              if (!wanted || wanted.has(e.type)) events.push(e);
              else skipped.push(msg);
            } catch (error) {
              // Not ours (someone published on our subjects): acknowledged and dropped, reported.
              this.#opts.onError?.(error, `undecodable message on ${msg.subject}`);
              skipped.push(msg);
            }
          }
          try {
            if (events.length > 0) await handler(events);
            for (const msg of taken) msg.ack();
          } catch (error) {
            this.#opts.onError?.(error, `shared consumer ${name}`);
            for (const msg of skipped) msg.ack();
            for (const msg of taken) if (!skipped.includes(msg)) msg.nak(NAK_DELAY_MS);
          }
        }
      }),
    );
    return { close: async () => void (await Promise.all(loops.map((stop) => stop()))) };
  }

  async subscribe(handler: BroadcastHandler, opts: BroadcastOptions = {}): Promise<BusSubscription> {
    const stops = this.#groups(opts.types).map((group) => {
      const filters = opts.types
        ?.filter((t) => groupOf(t) === group)
        .map((t) => `${this.#opts.prefix}.${t}.>`);
      return this.#loop(`broadcast on ${group}`, async (conn, alive) => {
        const consumer = await conn.js.consumers.get(this.streamName(group), {
          deliver_policy: DeliverPolicy.New,
          // One subject per consumer works on every server version (2.9 has no filter lists).
          ...(filters && filters.length === 1 ? { filter_subjects: filters[0]! } : {}),
        });
        const messages = await consumer.consume({ max_messages: SHARED_BATCH_MAX });
        alive(() => messages.close().then(() => undefined));
        // From "now": whatever was published before this point is not seen here.
        opts.onReset?.();
        const wanted = opts.types ? new Set<string>(opts.types) : undefined;
        let buffer: BusEvent[] = [];
        for await (const m of messages) {
          try {
            const e = this.#decode(m.string(), m.headers);
            if (!wanted || wanted.has(e.type)) buffer.push(e);
          } catch (error) {
            this.#opts.onError?.(error, `undecodable message on ${m.subject}`);
          }
          if (messages.getPending() > 0 && buffer.length < SHARED_BATCH_MAX) continue;
          if (buffer.length > 0) {
            const taken = buffer;
            buffer = [];
            try {
              handler(taken);
            } catch (error) {
              this.#opts.onError?.(error, 'broadcast handler');
            }
          }
        }
      });
    });
    return { close: async () => void (await Promise.all(stops.map((stop) => stop()))) };
  }

  /**
   * Replays what the streams hold from a stream sequence or a time (data teams, a consumer that
   * lost its state): each matching event in stream order, per stream, with its sequence, until the
   * stream's end as it was when the replay reached it, or `max` events. Returns how many.
   */
  async replay(
    from: { seq: number } | { time: Date },
    handler: (event: BusEvent, where: { stream: string; seq: number }) => void,
    opts: { types?: readonly EventType[]; max?: number } = {},
  ): Promise<number> {
    const { js } = await this.#connection(10_000);
    const max = opts.max ?? 1_000_000;
    assert(Number.isInteger(max) && max >= 1, 'replay max');
    const wanted = opts.types ? new Set<string>(opts.types) : undefined;
    let seen = 0;
    for (const group of this.#groups(opts.types)) {
      if (seen >= max) break;
      const stream = this.streamName(group);
      const consumer = await js.consumers.get(
        stream,
        'seq' in from
          ? { deliver_policy: DeliverPolicy.StartSequence, opt_start_seq: from.seq }
          : { deliver_policy: DeliverPolicy.StartTime, opt_start_time: from.time.toISOString() },
      );
      const info = await consumer.info();
      if (info.num_pending === 0) {
        await consumer.delete().catch(() => undefined);
        continue;
      }
      const messages = await consumer.consume({ max_messages: Math.min(SHARED_BATCH_MAX, max) });
      try {
        for await (const m of messages) {
          let e: BusEvent | undefined;
          try {
            e = this.#decode(m.string(), m.headers);
          } catch (error) {
            this.#opts.onError?.(error, `undecodable message on ${m.subject}`);
          }
          if (e && (!wanted || wanted.has(e.type))) {
            handler(e, { stream, seq: m.info.streamSequence });
            seen += 1;
          }
          if (m.info.pending === 0 || seen >= max) break;
        }
      } finally {
        await messages.close();
      }
    }
    return seen;
  }

  /**
   * Runs `body` once connected, again after it ends or fails (a deleted consumer, a server
   * restart that lost it), until stopped. Returns the stop function.
   */
  #loop(
    where: string,
    body: (
      conn: { nc: NatsConnection; js: JetStreamClient; jsm: JetStreamManager },
      alive: (stop: () => Promise<void>) => void,
    ) => Promise<void>,
  ): () => Promise<void> {
    let stopped = false;
    let stopCurrent: (() => Promise<void>) | undefined;
    let wakeSleep: (() => void) | undefined;
    let cancel: () => void = () => undefined;
    const cancelled = new Promise<null>((resolve) => {
      cancel = () => resolve(null);
    });
    const run = (async () => {
      while (!stopped && !this.#closed) {
        try {
          const conn = await Promise.race([this.#ready, cancelled]);
          if (stopped || conn === null) break;
          await body(conn, (stop) => {
            stopCurrent = stop;
          });
        } catch (error) {
          if (!stopped && !this.#closed) this.#opts.onError?.(error, where);
        }
        stopCurrent = undefined;
        if (stopped || this.#closed) break;
        await new Promise<void>((resolve) => {
          const timer = setTimeout(resolve, 1_000);
          wakeSleep = () => {
            clearTimeout(timer);
            resolve();
          };
        });
      }
    })();
    const stop = async () => {
      stopped = true;
      cancel();
      wakeSleep?.();
      await stopCurrent?.();
      await run;
    };
    this.#stoppers.add(stop);
    return async () => {
      this.#stoppers.delete(stop);
      await stop();
    };
  }

  async close(): Promise<void> {
    this.#closed = true;
    this.#cancelWait?.();
    await Promise.all([...this.#stoppers].map((stop) => stop()));
    this.#stoppers.clear();
    const conn = this.#connected;
    this.#connected = undefined;
    if (conn && !conn.nc.isClosed()) await conn.nc.drain().catch(() => conn.nc.close());
  }
}
