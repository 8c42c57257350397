import { randomBytes } from 'node:crypto';
import { jetstreamManager } from '@nats-io/jetstream';
import { connect } from '@nats-io/transport-node';
import { afterAll, describe, expect, it, vi } from 'vitest';
import { type BusEvent, encodeEvent } from '../../src/events/bus.js';
import { NatsBus } from '../../src/events/nats-bus.js';
import type { OutboxEvent } from '../../src/events/outbox.js';

/**
 * The JetStream bus against the machine's nats-server (NATS_URL, default 127.0.0.1:4222; .ci/run
 * starts one with JetStream when none answers). Each test uses its own subject prefix, so its own
 * streams; they are deleted afterwards.
 */
const NATS_URL = process.env.NATS_URL ?? 'nats://127.0.0.1:4222';

let seq = 0;
const event = (
  type: OutboxEvent['type'],
  aggregate: string,
  version: number,
  customerId = 'cus_nats',
): OutboxEvent => ({
  id: `evt_nats_${randomBytes(6).toString('hex')}_${++seq}`,
  type,
  createdAt: new Date('2027-01-01T00:00:00Z'),
  data: { object: { id: aggregate, version } },
  aggregate: { type: type.split('.')[0]!, id: aggregate, version },
  customerId,
  position: { xactId: 1, seq },
});

describe('NATS JetStream bus', () => {
  const prefixes: string[] = [];
  const buses: NatsBus[] = [];
  const newBus = (prefix: string, extra: Partial<ConstructorParameters<typeof NatsBus>[0]> = {}) => {
    const bus = new NatsBus({ url: NATS_URL, prefix, duplicateWindowMs: 60_000, ackWaitMs: 2_000, ...extra });
    buses.push(bus);
    return bus;
  };
  const freshPrefix = () => {
    const p = `t${randomBytes(4).toString('hex')}`;
    prefixes.push(p);
    return p;
  };
  afterAll(async () => {
    await Promise.all(buses.map((b) => b.close()));
    const nc = await connect({ servers: NATS_URL });
    const jsm = await jetstreamManager(nc);
    for await (const info of jsm.streams.list()) {
      if (prefixes.some((p) => info.config.name.startsWith(`${p.toUpperCase()}_`))) {
        await jsm.streams.delete(info.config.name);
      }
    }
    await nc.close();
  });

  it('one stream per domain; Nats-Msg-Id = event id, so a republished event is stored once', async () => {
    const prefix = freshPrefix();
    const bus = newBus(prefix);
    const batch = [
      event('subscription.created', 'sub_a', 1),
      event('subscription.activated', 'sub_a', 2),
      event('invoice.paid', 'inv_a', 1),
      event('entitlement.updated', 'sub_a', 2),
    ];
    await bus.publish(batch);
    await bus.publish(batch); // the relay after a crash
    await bus.publish(batch.slice(1, 3));
    const nc = await connect({ servers: NATS_URL });
    try {
      const jsm = await jetstreamManager(nc);
      const counts = new Map<string, number>();
      for (const group of ['subscription', 'invoice', 'entitlement', 'payment', 'webhook_endpoint']) {
        const info = await jsm.streams.info(bus.streamName(group));
        counts.set(group, info.state.messages);
        expect(info.config.subjects).toEqual([`${prefix}.${group}.>`]);
        expect(info.config.storage).toBe('file');
      }
      expect(Object.fromEntries(counts)).toEqual({
        subscription: 2,
        invoice: 1,
        entitlement: 1,
        payment: 0,
        webhook_endpoint: 0,
      });
      const stored = await jsm.streams.getMessage(bus.streamName('subscription'), { seq: 1 });
      expect(stored?.header.get('Nats-Msg-Id')).toBe(batch[0]!.id);
      expect(stored?.subject).toBe(`${prefix}.subscription.created.cus_nats`);
      expect(JSON.parse(stored!.string())).toMatchObject({ id: batch[0]!.id, type: 'subscription.created' });
    } finally {
      await nc.close();
    }
  });

  it('a shared durable consumer: a failing handler gets the batch again; two nodes split the work, nothing lost', async () => {
    const prefix = freshPrefix();
    const nodeA = newBus(prefix);
    const nodeB = newBus(prefix);
    const handled: string[] = [];
    let failuresLeft = 2;
    const handler = (node: string) => async (events: readonly BusEvent[]) => {
      if (node === 'a' && failuresLeft > 0) {
        failuresLeft -= 1;
        throw new Error('database down for a moment');
      }
      handled.push(...events.map((e) => e.id));
    };
    const subA = await nodeA.consumeShared('fanout', handler('a'), { batch: 10 });
    const subB = await nodeB.consumeShared('fanout', handler('b'), { batch: 10 });
    const published = Array.from({ length: 40 }, (_, i) => event('payment.succeeded', `pay_${i}`, 1));
    await nodeA.publish(published);
    await vi.waitFor(() => expect(new Set(handled)).toEqual(new Set(published.map((e) => e.id))), {
      timeout: 20_000,
      interval: 100,
    });
    await subA.close();
    await subB.close();
    // After a restart the durable consumer resumes where it was: nothing is handed out again.
    const before = handled.length;
    const again = await newBus(prefix).consumeShared('fanout', handler('c'), { batch: 10 });
    const late = event('payment.failed', 'pay_late', 1);
    await nodeB.publish([late]);
    await vi.waitFor(() => expect(handled).toContain(late.id), { timeout: 20_000 });
    expect(handled.length).toBe(before + 1);
    await again.close();
  });

  it('broadcast: every node sees every event, in order, from the moment it subscribed', async () => {
    const prefix = freshPrefix();
    const publisher = newBus(prefix);
    await publisher.publish([event('entitlement.updated', 'sub_before', 1)]);
    const seenA: string[] = [];
    const seenB: string[] = [];
    let resets = 0;
    const a = await newBus(prefix).subscribe((es) => seenA.push(...es.map((e) => e.id)), {
      types: ['entitlement.updated'],
      onReset: () => resets++,
    });
    const b = await newBus(prefix).subscribe((es) => seenB.push(...es.map((e) => e.id)), {
      types: ['entitlement.updated'],
    });
    await vi.waitFor(() => expect(resets).toBe(1), { timeout: 10_000 });
    // Let both consumers exist before publishing (they start from "now").
    await new Promise((r) => setTimeout(r, 300));
    const events = Array.from({ length: 30 }, (_, i) => event('entitlement.updated', 'sub_x', i + 1));
    await publisher.publish([...events.slice(0, 10), event('subscription.renewed', 'sub_x', 1)]);
    await publisher.publish(events.slice(10));
    const ids = events.map((e) => e.id);
    await vi.waitFor(
      () => {
        expect(seenA).toEqual(ids);
        expect(seenB).toEqual(ids);
      },
      { timeout: 10_000 },
    );
    await a.close();
    await b.close();
  });

  it('replay from a stream sequence or a time', async () => {
    const prefix = freshPrefix();
    const bus = newBus(prefix);
    const first = Array.from({ length: 5 }, (_, i) => event('invoice.paid', `inv_r${i}`, 1));
    await bus.publish(first);
    await new Promise((r) => setTimeout(r, 50));
    const middle = new Date();
    await new Promise((r) => setTimeout(r, 50));
    const second = Array.from({ length: 3 }, (_, i) => event('invoice.paid', `inv_s${i}`, 1));
    await bus.publish(second);
    const fromSeq: Array<[string, number]> = [];
    expect(
      await bus.replay({ seq: 3 }, (e, w) => fromSeq.push([e.id, w.seq]), { types: ['invoice.paid'] }),
    ).toBe(6);
    expect(fromSeq).toEqual([...first.slice(2), ...second].map((e, i) => [e.id, i + 3]));
    const fromTime: string[] = [];
    await bus.replay({ time: middle }, (e) => fromTime.push(e.id), { types: ['invoice.paid'] });
    expect(fromTime).toEqual(second.map((e) => e.id));
    // An empty remainder returns at once.
    expect(await bus.replay({ seq: 1_000 }, () => undefined, { types: ['invoice.paid'] })).toBe(0);
  });

  it('NATS unreachable: publish fails fast (the relay retries; events wait in the outbox)', async () => {
    const bus = newBus(freshPrefix(), { url: 'nats://127.0.0.1:1' });
    const started = Date.now();
    await expect(bus.publish([event('invoice.paid', 'inv_x', 1)])).rejects.toThrow(/not reachable/);
    expect(Date.now() - started).toBeLessThan(5_000);
    await bus.close();
  });

  it('a signing bus drops messages not signed with its key: a forged, well-formed event on its subjects reaches no consumer', async () => {
    const prefix = freshPrefix();
    const key = randomBytes(32);
    const errors: string[] = [];
    const node = newBus(prefix, { signingKey: key, onError: (_e, where) => errors.push(where) });
    const handled: string[] = [];
    const broadcast: string[] = [];
    const shared = await node.consumeShared('forge', async (es) => void handled.push(...es.map((e) => e.id)));
    const sub = await node.subscribe((es) => broadcast.push(...es.map((e) => e.id)));
    await node.ready();
    await new Promise((r) => setTimeout(r, 300));
    // Someone who may publish on the subjects, with a perfectly shaped event.
    const forged = event('entitlement.updated', 'sub_forged', 99);
    const nc = await connect({ servers: NATS_URL });
    const js = (await import('@nats-io/jetstream')).jetstream(nc);
    await js.publish(node.subjectOf(forged), encodeEvent(forged), { msgID: forged.id });
    // Signed with another key: also refused.
    const otherKey = newBus(prefix, { signingKey: randomBytes(32) });
    const other = event('entitlement.updated', 'sub_other', 1);
    await otherKey.publish([other]);
    const genuine = event('entitlement.updated', 'sub_genuine', 1);
    await node.publish([genuine]);
    await vi.waitFor(() => expect(handled).toContain(genuine.id), { timeout: 20_000, interval: 100 });
    await vi.waitFor(() => expect(broadcast).toContain(genuine.id), { timeout: 20_000, interval: 100 });
    expect(handled).not.toContain(forged.id);
    expect(handled).not.toContain(other.id);
    expect(broadcast).not.toContain(forged.id);
    expect(broadcast).not.toContain(other.id);
    expect(errors.filter((w) => w.startsWith('undecodable')).length).toBeGreaterThanOrEqual(4);
    // Replay skips them too.
    const replayed: string[] = [];
    await node.replay({ seq: 1 }, (e) => replayed.push(e.id), { types: ['entitlement.updated'] });
    expect(replayed).toEqual([genuine.id]);
    await nc.close();
    await shared.close();
    await sub.close();
  });
});
