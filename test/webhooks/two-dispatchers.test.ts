import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { systemClock } from '../../src/kernel/clock.js';
import { startTestApp, type TestApp } from '../support/app.js';
import { ENGINE } from '../support/database.js';
import { appendEvents, dispatcherFor, type Receiver, serviceFor, startReceiver, waitFor } from './support.js';

let t: TestApp;
let receiver: Receiver;
beforeAll(async () => {
  t = await startTestApp();
  receiver = await startReceiver();
});
afterAll(async () => {
  await receiver?.close();
  await t?.close();
});

describe(`two dispatchers on one database (${ENGINE})`, () => {
  it('share the deliveries and never send one twice within its lease', async () => {
    const endpoints: string[] = [];
    for (const path of ['/a', '/b', '/c']) {
      const res = await t.call('POST', '/v1/webhook-endpoints', {
        url: `${receiver.url}${path}`,
        eventTypes: ['*'],
      });
      expect(res.statusCode).toBe(201);
      endpoints.push(res.json().id);
    }
    receiver.answer = () => ({ status: 200, delayMs: Math.floor(Math.random() * 5) });
    const events = await appendEvents(
      t,
      Array.from({ length: 150 }, (_, i) => (i % 2 ? 'invoice.paid' : 'subscription.renewed')),
    );
    // Two nodes: each its own service (on PostgreSQL each claims through its own pool connection).
    const nodeA = serviceFor(t, systemClock);
    const nodeB = serviceFor(t, systemClock);
    await nodeA.fanOut(events.slice(0, 100));
    await nodeB.fanOut(events.slice(50));
    const a = dispatcherFor(nodeA, { concurrency: 8, perEndpoint: 4, claimMax: 10 });
    const b = dispatcherFor(nodeB, { concurrency: 8, perEndpoint: 4, claimMax: 10 });
    const expected = events.length * endpoints.length;
    a.start();
    b.start();
    try {
      await waitFor(() => receiver.received.length >= expected, 30_000, `${expected} deliveries`);
      // Anything sent twice would arrive now.
      await new Promise((r) => setTimeout(r, 300));
    } finally {
      await Promise.all([a.stop(), b.stop()]);
    }
    const seen = new Map<string, number>();
    for (const r of receiver.received) {
      const key = `${r.path} ${JSON.parse(r.body).id}`;
      seen.set(key, (seen.get(key) ?? 0) + 1);
    }
    expect(seen.size).toBe(expected);
    expect([...seen.values()].every((n) => n === 1)).toBe(true);
    for (const id of endpoints) {
      let cursor: string | null = null;
      let succeeded = 0;
      do {
        const page = await t.call(
          'GET',
          `/v1/webhook-endpoints/${id}/deliveries?limit=100${cursor ? `&cursor=${cursor}` : ''}`,
        );
        for (const d of page.json().data) if (d.status === 'succeeded' && d.attempts === 1) succeeded++;
        cursor = page.json().nextCursor;
      } while (cursor);
      expect(succeeded).toBe(events.length);
    }
  });
});
