import { randomBytes } from 'node:crypto';
import { jetstreamManager } from '@nats-io/jetstream';
import { connect } from '@nats-io/transport-node';
import { sql } from 'kysely';
import { adminQuery, withDatabase } from '../src/db/admin.js';
import { type DatabaseHandle, openDatabase } from '../src/db/engine.js';
import { migrate } from '../src/db/migrate.js';
import { transact } from '../src/db/transaction.js';
import { NatsBus } from '../src/events/nats-bus.js';
import { EventsOutbox } from '../src/events/outbox.js';
import { AdvisoryLockLeadership, OutboxRelay } from '../src/events/relay.js';
import { systemClock } from '../src/kernel/clock.js';
import { progress } from './support/load.js';

export interface RelayOptions {
  seconds: number;
  connections?: number | undefined;
}

/** Events per writing transaction (a checkout writes about this many). */
const EVENTS_PER_TX = 4;

/**
 * The outbox relay on PostgreSQL and NATS JetStream (the production path), driving the product's
 * own EventsOutbox, OutboxRelay and NatsBus:
 * 1. **commit rate**: `connections` writers append events (4 per transaction, a checkout's worth)
 *    as fast as they can for `seconds`, the relay stopped: events committed per second;
 * 2. **relay rate**: the relay alone publishes that backlog to JetStream (acks awaited): events
 *    published per second. Ratio = relay ÷ commit (goal ≥ 1.0: the relay keeps up with writers
 *    at full speed);
 * 3. **lag**: writers and relay together for `seconds`; a subscriber on the streams measures
 *    receive time − commit time of every event (p50/p99, goal p99 ≤ 1 s), and the end-to-end
 *    check that every committed event arrived (by id).
 */
export async function benchRelay(opts: RelayOptions) {
  const serverUrl = process.env.DATABASE_URL;
  if (!serverUrl)
    throw new Error(
      'bench relay needs DATABASE_URL (PostgreSQL) and NATS (NATS_URL, default 127.0.0.1:4222)',
    );
  const natsUrl = process.env.NATS_URL ?? 'nats://127.0.0.1:4222';
  const writers = opts.connections ?? 8;
  const runId = Date.now().toString(36);
  const dbName = `reprise_bench_relay_${runId}`;
  const prefix = `bench${randomBytes(3).toString('hex')}`;
  await adminQuery(serverUrl, `CREATE DATABASE "${dbName}"`);
  const url = withDatabase(serverUrl, dbName);
  let handle: DatabaseHandle | undefined;
  const buses: NatsBus[] = [];
  const failures: string[] = [];
  try {
    handle = await openDatabase({ databaseUrl: url, poolMax: writers + 4 });
    await migrate(handle.db);
    const db = handle.db;
    const outbox = new EventsOutbox(db, systemClock);
    const bus = new NatsBus({ url: natsUrl, prefix, name: 'bench-relay' });
    buses.push(bus);
    const relay = new OutboxRelay(db, outbox, bus, systemClock, {
      leadership: new AdvisoryLockLeadership(url, 'bus'),
      pollMs: 20,
    });
    let aggregate = 0;
    const committed: string[] = [];
    const writeFor = async (ms: number) => {
      const until = performance.now() + ms;
      const worker = async () => {
        while (performance.now() < until) {
          const id = `sub_bench_${++aggregate}`;
          const envelopes = await transact(db, (trx) =>
            outbox.appendMany(
              trx,
              Array.from({ length: EVENTS_PER_TX }, (_, v) => ({
                type:
                  v === EVENTS_PER_TX - 1
                    ? ('entitlement.updated' as const)
                    : ('subscription.renewed' as const),
                aggregate: {
                  type: v === EVENTS_PER_TX - 1 ? 'entitlement' : 'subscription',
                  id,
                  version: v + 1,
                },
                customerId: `cus_bench_${aggregate % 1000}`,
                data: {
                  object: {
                    id,
                    status: 'active',
                    currentPeriodStart: '2027-01-01T00:00:00Z',
                    currentPeriodEnd: '2027-02-01T00:00:00Z',
                    price: 10900,
                    currency: 'SEK',
                    plan: 'plan_01HZZZZZZZZZZZZZZZZZZZZZZZ',
                  },
                },
              })),
            ),
          );
          for (const e of envelopes) committed.push(e.id);
        }
      };
      const started = performance.now();
      await Promise.all(Array.from({ length: writers }, worker));
      return (performance.now() - started) / 1000;
    };

    // Streams exist before measuring (the bus creates them on connect).
    await bus.ready();
    await relay.drain();

    progress(`1/3 commit rate: ${writers} writers for ${opts.seconds} s, relay stopped`);
    const writeSeconds = await writeFor(opts.seconds * 1000);
    const backlog = committed.length;
    const commitRate = backlog / writeSeconds;

    progress(`2/3 relay rate: publishing the backlog of ${backlog} events to JetStream`);
    const relayStarted = performance.now();
    let published = 0;
    for (let guard = 0; guard < 100_000 && published < backlog; guard++) published += await relay.runOnce();
    const relaySeconds = (performance.now() - relayStarted) / 1000;
    const relayRate = published / relaySeconds;
    if (published !== backlog) failures.push(`relay published ${published} of ${backlog}`);

    progress(`3/3 lag: writers and relay together for ${opts.seconds} s`);
    const lags: number[] = [];
    const received = new Set<string>();
    const subscriber = new NatsBus({ url: natsUrl, prefix, name: 'bench-subscriber' });
    buses.push(subscriber);
    let ready = false;
    const sub = await subscriber.subscribe(
      (events) => {
        const now = Date.now();
        for (const e of events) {
          received.add(e.id);
          lags.push(now - e.createdAt.getTime());
        }
      },
      { onReset: () => (ready = true) },
    );
    for (let i = 0; i < 100 && !ready; i++) await new Promise((r) => setTimeout(r, 50));
    await new Promise((r) => setTimeout(r, 300));
    const before = committed.length;
    relay.start();
    await writeFor(opts.seconds * 1000);
    const during = committed.slice(before);
    const deadline = Date.now() + 30_000;
    while (Date.now() < deadline && during.some((id) => !received.has(id)))
      await new Promise((r) => setTimeout(r, 100));
    await relay.stop();
    await sub.close();
    const missing = during.filter((id) => !received.has(id)).length;
    if (missing > 0) failures.push(`${missing} of ${during.length} events never reached the subscriber`);
    lags.sort((a, b) => a - b);
    const pct = (p: number) => lags[Math.min(lags.length - 1, Math.floor((lags.length * p) / 100))] ?? 0;
    const stored = await sql<{ n: number }>`SELECT count(*)::int AS n FROM events`.execute(db);
    return {
      name: 'relay',
      engine: 'postgres+nats',
      writers,
      eventsPerTransaction: EVENTS_PER_TX,
      commitRate: Math.round(commitRate),
      relayRate: Math.round(relayRate),
      ratio: relayRate / commitRate,
      concurrentEvents: during.length,
      concurrentCommitRate: Math.round(during.length / opts.seconds),
      lagP50Ms: pct(50),
      lagP99Ms: pct(99),
      lagMaxMs: lags.at(-1) ?? 0,
      eventsInOutbox: stored.rows[0]!.n,
      checks: failures.length === 0 ? 'all passed' : failures.join('; '),
      failures: failures.length,
    };
  } finally {
    await Promise.all(buses.map((b) => b.close().catch(() => undefined)));
    await handle?.close();
    await adminQuery(serverUrl, `DROP DATABASE IF EXISTS "${dbName}" WITH (FORCE)`).catch(() => undefined);
    const nc = await connect({ servers: natsUrl }).catch(() => undefined);
    if (nc) {
      const jsm = await jetstreamManager(nc);
      for await (const info of jsm.streams.list()) {
        if (info.config.name.startsWith(`${prefix.toUpperCase()}_`))
          await jsm.streams.delete(info.config.name);
      }
      await nc.close();
    }
  }
}
