import { sql } from 'kysely';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ManualClock } from '../../src/kernel/clock.js';
import { startTestApp, type TestApp } from '../support/app.js';
import { appendEvents, dispatcherFor, type Receiver, serviceFor, startReceiver } from './support.js';

const DAY = 86_400_000;

/** Webhook tables stay bounded: finished deliveries, their bodies and deleted endpoints go once old. */
describe('webhook pruning', () => {
  let t: TestApp;
  let receiver: Receiver;
  const clock = new ManualClock('2027-06-01T00:00:00Z');
  beforeAll(async () => {
    t = await startTestApp({}, clock);
    receiver = await startReceiver();
  });
  afterAll(async () => {
    await receiver?.close();
    await t?.close();
  });
  const count = async (table: string) =>
    (await sql<{ n: number }>`SELECT count(*)::int AS n FROM ${sql.table(table)}`.execute(t.app.services.db))
      .rows[0]!.n;

  it('deletes finished deliveries and their bodies past the retention, keeps pending and recent ones', async () => {
    const service = serviceFor(t, clock);
    const ok = await t.call('POST', '/v1/webhook-endpoints', {
      url: `${receiver.url}/ok`,
      eventTypes: ['invoice.paid'],
    });
    const down = await t.call('POST', '/v1/webhook-endpoints', {
      url: `${receiver.url}/down`,
      eventTypes: ['invoice.paid'],
    });
    expect(ok.statusCode, ok.body).toBe(201);
    expect(down.statusCode, down.body).toBe(201);
    receiver.answer = (r) => ({ status: r.path === '/down' ? 503 : 200 });
    await service.fanOut(await appendEvents(t, ['invoice.paid', 'invoice.paid']));
    await dispatcherFor(service).runOnce();
    expect(await count('webhook_deliveries')).toBe(4);
    // Deleted endpoints with no deliveries left go too (create/delete cannot grow the table forever).
    const gone = await t.call('POST', '/v1/webhook-endpoints', {
      url: `${receiver.url}/gone`,
      eventTypes: ['invoice.voided'],
    });
    expect((await t.call('DELETE', `/v1/webhook-endpoints/${gone.json().id}`)).statusCode).toBe(200);

    expect(await service.prune({ retentionMs: 30 * DAY })).toBe(0);
    clock.set(new Date(clock.now().getTime() + 31 * DAY));
    const deleted = await service.prune({ retentionMs: 30 * DAY });
    // The two delivered rows; the failing endpoint's two stay pending (their bodies with them).
    expect(await count('webhook_deliveries')).toBe(2);
    expect(await count('webhook_payloads')).toBe(2);
    expect(deleted).toBe(3);
    const endpoints = await sql<{ id: string }>`SELECT id FROM webhook_endpoints`.execute(t.app.services.db);
    expect(endpoints.rows.map((r) => r.id).sort()).toEqual([ok.json().id, down.json().id].sort());
  });
});
