import { sql } from 'kysely';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { transact } from '../../src/db/transaction.js';
import type { EventBus } from '../../src/events/bus.js';
import { MemoryBus } from '../../src/events/bus.js';
import type { OutboxEvent } from '../../src/events/outbox.js';
import { OutboxRelay } from '../../src/events/relay.js';
import { systemClock } from '../../src/kernel/clock.js';
import { startTestApp, type TestApp } from '../support/app.js';
import { ENGINE } from '../support/database.js';

/** A bus that records what it accepted, and fails while `down` is set. */
class RecordingBus extends MemoryBus {
  accepted: string[] = [];
  down = false;
  calls = 0;
  override async publish(events: readonly OutboxEvent[]): Promise<void> {
    this.calls += 1;
    if (this.down) throw new Error('broker unreachable');
    this.accepted.push(...events.map((e) => e.id));
    await super.publish(events);
  }
}

describe(`outbox relay (${ENGINE})`, () => {
  let t: TestApp;
  let aggregate = 0;
  const db = () => t.app.services.db;
  const outbox = () => t.app.services.events;
  /** Appends `n` events of one new aggregate (versions 1..n) in one transaction; returns their ids. */
  const appendEvents = async (n: number) => {
    const id = `sub_relay_${++aggregate}`;
    const envelopes = await transact(db(), (trx) =>
      outbox().appendMany(
        trx,
        Array.from({ length: n }, (_, i) => ({
          type: 'subscription.renewed' as const,
          aggregate: { type: 'subscription', id, version: i + 1 },
          customerId: 'cus_relay',
          data: { object: { id, n: i } },
        })),
      ),
    );
    return envelopes.map((e) => e.id);
  };
  /** Every event id in the outbox, in outbox order (once nothing is in flight). */
  const allIds = async () =>
    (await sql<{ id: string }>`SELECT id FROM events ORDER BY xact_id, seq`.execute(db())).rows.map(
      (r) => r.id,
    );
  const relayOn = (bus: EventBus, name: string, batch = 7) =>
    new OutboxRelay(db(), outbox(), bus, systemClock, { name, batch });

  beforeAll(async () => {
    t = await startTestApp();
  });
  afterAll(() => t.close());

  it('publishes every committed event once, in outbox order, and resumes from its stored position', async () => {
    await appendEvents(5);
    await appendEvents(12);
    const bus = new RecordingBus();
    const relay = relayOn(bus, 'order');
    await vi.waitFor(
      async () => {
        await relay.drain();
        expect(bus.accepted).toEqual(await allIds());
      },
      { timeout: 20_000 },
    );
    // A restart (a new relay on the same stored position) publishes nothing again.
    const again = new RecordingBus();
    expect(await relayOn(again, 'order').drain()).toBe(0);
    expect(again.accepted).toEqual([]);
    // New events after the restart are published, and only they.
    const fresh = await appendEvents(3);
    await vi.waitFor(
      async () => {
        await relayOn(again, 'order').drain();
        expect(again.accepted).toEqual(fresh);
      },
      { timeout: 20_000 },
    );
    const stored = await sql<{
      published: number;
    }>`SELECT published FROM relay_positions WHERE name = 'order'`.execute(db());
    expect(stored.rows[0]!.published).toBe((await allIds()).length);
  });

  it('the broker absent: nothing is skipped or lost; once back, everything is published in order', async () => {
    const bus = new RecordingBus();
    const relay = relayOn(bus, 'outage', 4);
    await relay.drain();
    bus.accepted = [];
    bus.down = true;
    const during = [...(await appendEvents(6)), ...(await appendEvents(3))];
    // (On a shared PostgreSQL server, another transaction in flight can hold the events back a moment.)
    await vi.waitFor(() => expect(relay.runOnce()).rejects.toThrow('broker unreachable'), {
      timeout: 20_000,
    });
    for (let i = 0; i < 2; i++) await expect(relay.runOnce()).rejects.toThrow('broker unreachable');
    expect(bus.accepted).toEqual([]);
    bus.down = false;
    await vi.waitFor(
      async () => {
        await relay.drain();
        expect(bus.accepted).toEqual(during);
      },
      { timeout: 20_000 },
    );
  });

  it('a crash between publishing and storing the position republishes the same ids (duplicates, never gaps)', async () => {
    await relayOn(new RecordingBus(), 'crash', 100).drain();
    const ids = await appendEvents(4);
    // The bus accepts the batch, then the process "dies" before the position is stored.
    const dying = new RecordingBus();
    dying.publish = async function (events) {
      await RecordingBus.prototype.publish.call(this, events);
      throw new Error('killed after publishing');
    };
    await vi.waitFor(
      async () => {
        await expect(relayOn(dying, 'crash', 100).runOnce()).rejects.toThrow('killed');
        expect(dying.accepted).toEqual(ids);
      },
      { timeout: 20_000 },
    );
    const restarted = new RecordingBus();
    await relayOn(restarted, 'crash', 100).drain();
    expect(restarted.accepted).toEqual(ids);
    expect(await relayOn(new RecordingBus(), 'crash', 100).drain()).toBe(0);
  });

  it('/metrics: the lag is the age of the oldest unpublished event, 0 once the relay caught up', async () => {
    const relay = t.app.services.relay;
    await relay.drain();
    await appendEvents(2);
    const metric = async (name: string) => {
      const res = await t.call('GET', '/metrics');
      const line = res.body.split('\n').find((l) => l.startsWith(`${name}{relay="bus"}`));
      return line ? Number(line.split(' ').at(-1)) : undefined;
    };
    await vi.waitFor(async () => expect(await metric('reprise_relay_backlog')).toBeGreaterThanOrEqual(2), {
      timeout: 20_000,
    });
    expect(await metric('reprise_relay_lag_seconds')).toBeGreaterThanOrEqual(0);
    await vi.waitFor(
      async () => {
        await relay.drain();
        await new Promise((r) => setTimeout(r, 250)); // the metrics read is cached 200 ms
        expect(await metric('reprise_relay_backlog')).toBe(0);
      },
      { timeout: 20_000 },
    );
    expect(await metric('reprise_relay_lag_seconds')).toBe(0);
    expect(await metric('reprise_relay_leader')).toBe(1);
  });
});
