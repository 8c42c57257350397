import Stripe from 'stripe';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { transact } from '../../src/db/transaction.js';
import { MemoryBus } from '../../src/events/bus.js';
import { OUTBOX_START } from '../../src/events/outbox.js';
import { ManualClock } from '../../src/kernel/clock.js';
import { send } from '../../src/modules/webhooks/sender.js';
import type { Resolver } from '../../src/modules/webhooks/target.js';
import { startTestApp, type TestApp } from '../support/app.js';
import { appendEvents, dispatcherFor, type Receiver, serviceFor, startReceiver, waitFor } from './support.js';

const stripe = new Stripe('sk_test_not_used_for_calls');
/** Verifies with Stripe's SDK: an implementation of the scheme that is not ours. */
const verify = (raw: string, header: string, secret: string, toleranceSeconds = 300) =>
  stripe.webhooks.constructEvent(raw, header, secret, toleranceSeconds);

let receiver: Receiver;
beforeAll(async () => {
  receiver = await startReceiver();
});
afterAll(async () => receiver?.close());
afterEach(() => {
  receiver.received.length = 0;
  receiver.answer = () => ({ status: 200 });
});

describe('webhook deliveries (wall clock)', () => {
  let t: TestApp;
  beforeAll(async () => {
    t = await startTestApp();
  });
  afterAll(async () => t?.close());

  it('fans out matching events once, signs them (verified by Stripe) with the event as GET shows it', async () => {
    const before = await appendEvents(t, ['invoice.paid']);
    await new Promise((r) => setTimeout(r, 5));
    const created = await t.call('POST', '/v1/webhook-endpoints', {
      url: `${receiver.url}/hooks?src=reprise`,
      eventTypes: ['invoice.*'],
    });
    expect(created.statusCode).toBe(201);
    const { id, secret } = created.json();
    const events = await appendEvents(t, ['invoice.paid', 'subscription.created', 'invoice.finalized']);
    const webhooks = t.app.services.webhooks;
    // Handed twice (a redelivered bus batch), and with an event older than the endpoint.
    await webhooks.fanOut([...before, ...events]);
    await webhooks.fanOut(events);
    const dispatcher = dispatcherFor(webhooks);
    dispatcher.start();
    try {
      await waitFor(() => receiver.received.length >= 2, 10_000, 'two deliveries');
      await new Promise((r) => setTimeout(r, 200));
    } finally {
      await dispatcher.stop();
    }
    expect(receiver.received).toHaveLength(2);
    const ids = receiver.received.map((r) => JSON.parse(r.body).id).sort();
    expect(ids).toEqual([events[0]!.id, events[2]!.id].sort());
    for (const r of receiver.received) {
      expect(r.path).toBe('/hooks?src=reprise');
      expect(r.headers['content-type']).toBe('application/json');
      expect(r.headers['user-agent']).toBe('Reprise-Webhooks/1');
      const header = r.headers['reprise-signature'] as string;
      expect(header).toMatch(/^t=\d+,v1=[0-9a-f]{64}$/);
      const verified = verify(r.body, header, secret);
      const shown = await t.call('GET', `/v1/events/${(verified as unknown as { id: string }).id}`);
      expect(JSON.parse(r.body)).toEqual(shown.json());
      expect(() => verify(r.body, header, 'whsec_another')).toThrow(/signature/i);
      expect(() => verify(`${r.body} `, header, secret)).toThrow(/signature/i);
    }
    const deliveries = await t.call('GET', `/v1/webhook-endpoints/${id}/deliveries?limit=10`);
    expect(deliveries.statusCode).toBe(200);
    expect(deliveries.json().data).toHaveLength(2);
    for (const d of deliveries.json().data) {
      expect(d).toMatchObject({
        endpoint: id,
        status: 'succeeded',
        attempts: 1,
        responseCode: 200,
        lastError: null,
        nextAttemptAt: null,
      });
      expect(d.eventType).toMatch(/^invoice\./);
    }
  });

  it('the bus drives the fan-out: a MemoryBus shared consumer over the outbox', async () => {
    const created = await t.call('POST', '/v1/webhook-endpoints', {
      url: `${receiver.url}/bus`,
      eventTypes: ['payment.succeeded'],
    });
    const { secret } = created.json();
    const bus = new MemoryBus();
    await bus.consumeShared('webhooks', (events) => t.app.services.webhooks.fanOut(events));
    const [event] = await appendEvents(t, ['payment.succeeded']);
    // The outbox is read in its commit-safe order: on a busy PostgreSQL server the event may
    // show a moment later.
    let read: Awaited<ReturnType<typeof t.app.services.events.readFrom>> = [];
    await waitFor(async () => {
      read = await t.app.services.events.readFrom(OUTBOX_START, 1000);
      return read.some((e) => e.id === event!.id);
    });
    await bus.publish(read);
    await bus.publish(read);
    await dispatcherFor(t.app.services.webhooks).runOnce();
    const mine = receiver.received.filter((r) => r.path === '/bus');
    expect(mine).toHaveLength(1);
    expect(JSON.parse(mine[0]!.body).id).toBe(event!.id);
    verify(mine[0]!.body, mine[0]!.headers['reprise-signature'] as string, secret);
    await bus.close();
  });

  it('redeliver: due again now even after a success; 404 for an unknown event; a named endpoint', async () => {
    const created = await t.call('POST', '/v1/webhook-endpoints', {
      url: `${receiver.url}/redeliver`,
      eventTypes: ['subscription.renewed'],
    });
    const { id } = created.json();
    const [event] = await appendEvents(t, ['subscription.renewed']);
    await t.app.services.webhooks.fanOut([event!]);
    const dispatcher = dispatcherFor(t.app.services.webhooks);
    await dispatcher.runOnce();
    const mine = () => receiver.received.filter((r) => r.path === '/redeliver');
    expect(mine()).toHaveLength(1);
    const res = await t.call('POST', `/v1/events/${event!.id}/redeliver`, {});
    expect(res.statusCode).toBe(202);
    expect(res.json().data).toEqual([
      expect.objectContaining({ endpoint: id, event: event!.id, status: 'pending', attempts: 1 }),
    ]);
    await dispatcher.runOnce();
    expect(mine()).toHaveLength(2);
    expect(mine()[1]!.body).toBe(mine()[0]!.body);
    const named = await t.call('POST', `/v1/events/${event!.id}/redeliver`, { endpoint: id });
    expect(named.statusCode).toBe(202);
    expect(named.json().data).toHaveLength(1);
    const unknown = await t.call('POST', `/v1/events/${event!.id}/redeliver`, { endpoint: 'we_nope' });
    expect(unknown.statusCode).toBe(400);
    expect(unknown.json().errors[0].path).toBe('endpoint');
    const missing = await t.call('POST', '/v1/events/evt_01JD0000000000000000000000/redeliver');
    expect(missing.statusCode, missing.body).toBe(404);
    await dispatcher.runOnce();
    expect(mine()).toHaveLength(3);
  });

  it('a slow endpoint does not block a fast one (per-endpoint cap, no transaction held)', async () => {
    const slow = await t.call('POST', '/v1/webhook-endpoints', {
      url: `${receiver.url}/slow`,
      eventTypes: ['invoice.voided'],
    });
    const fast = await t.call('POST', '/v1/webhook-endpoints', {
      url: `${receiver.url}/fast`,
      eventTypes: ['invoice.voided'],
    });
    expect(slow.statusCode).toBe(201);
    expect(fast.statusCode).toBe(201);
    receiver.answer = (r) => (r.path === '/slow' ? { status: 200, delayMs: 3_000 } : { status: 200 });
    const events = await appendEvents(
      t,
      Array.from({ length: 6 }, () => 'invoice.voided' as const),
    );
    await t.app.services.webhooks.fanOut(events);
    const dispatcher = dispatcherFor(t.app.services.webhooks, { perEndpoint: 2, timeoutMs: 10_000 });
    const started = Date.now();
    dispatcher.start();
    try {
      await waitFor(
        () => receiver.received.filter((r) => r.path === '/fast').length === 6,
        2_500,
        'fast deliveries',
      );
      expect(Date.now() - started).toBeLessThan(2_500);
      // The slow endpoint holds at most its 2 slots, and its first answer has not come yet.
      expect(receiver.received.filter((r) => r.path === '/slow')).toHaveLength(2);
      // The fast results are recorded meanwhile: the database is free (PGlite has one session:
      // a transaction held across the slow call would block these writes and this read).
      await waitFor(
        async () => {
          const list = await t.call('GET', `/v1/webhook-endpoints/${fast.json().id}/deliveries`);
          return list.json().data.every((d: { status: string }) => d.status === 'succeeded');
        },
        Math.max(100, 2_500 - (Date.now() - started)),
        'fast results recorded before the slow answer',
      );
    } finally {
      await dispatcher.stop();
      // What the slow endpoint still has pending is not for the next tests.
      for (const e of [slow, fast]) await t.call('DELETE', `/v1/webhook-endpoints/${e.json().id}`);
    }
  });

  it('DNS is checked again at each delivery and the connection pinned: a rebinding is caught', async () => {
    let current = '93.184.215.14';
    const resolve: Resolver = async (host) => {
      if (host !== 'hooks.rebind.test') throw Object.assign(new Error('unknown'), { code: 'ENOTFOUND' });
      return [{ address: current, family: 4 }];
    };
    // No private range allowed: only the public first answer passes at creation.
    const service = serviceFor(t, t.app.services.clock, { resolve, allowCidrs: [] });
    const url = `http://hooks.rebind.test:${receiver.port}/pinned`;
    await service.checkUrl(url);
    const { endpoint } = await transact(t.app.services.db, (trx) =>
      service.create({ url, eventTypes: ['payment.refunded'] }, trx),
    );
    let sent = 0;
    const dispatcher = dispatcherFor(service, {
      send: (...args) => {
        if (args[0].host === 'hooks.rebind.test') sent++;
        return send(...args);
      },
    });
    current = '169.254.169.254';
    const [first] = await appendEvents(t, ['payment.refunded']);
    await service.fanOut([first!]);
    expect(await dispatcher.runOnce()).toBeGreaterThanOrEqual(1);
    expect(sent).toBe(0);
    const [refused] = await service.deliveries(endpoint.id, { limit: 1 });
    expect(refused).toMatchObject({ eventId: first!.id, status: 'pending', attempts: 1, responseCode: null });
    expect(refused!.lastError).toMatch(/169\.254\.169\.254 is (link-local|a cloud metadata address)/);

    // Pinned: the request goes to the address checked, never to a second resolution, and
    // carries the name (Host header; SNI for https).
    const loopback = serviceFor(t, t.app.services.clock, { resolve });
    current = '127.0.0.1';
    const [second] = await appendEvents(t, ['payment.refunded']);
    await loopback.fanOut([second!]);
    await dispatcherFor(loopback).runOnce();
    const pinned = receiver.received.filter((r) => r.path === '/pinned');
    expect(pinned.map((r) => JSON.parse(r.body).id)).toContain(second!.id);
    expect(pinned[0]!.headers.host).toBe(`hooks.rebind.test:${receiver.port}`);
  });
});

describe('webhook retries, rotation and disabling (manual clock)', () => {
  let t: TestApp;
  let clock: ManualClock;
  beforeAll(async () => {
    clock = new ManualClock(new Date(Math.floor(Date.now() / 1000) * 1000));
    t = await startTestApp({}, clock);
  });
  afterAll(async () => t?.close());

  it('both secrets sign for 24 hours after a rotation, then only the new one', async () => {
    const created = await t.call('POST', '/v1/webhook-endpoints', {
      url: `${receiver.url}/rotation`,
      eventTypes: ['invoice.created'],
    });
    const { id, secret: oldSecret } = created.json();
    const rotated = await t.call('POST', `/v1/webhook-endpoints/${id}/rotate-secret`);
    const newSecret = rotated.json().secret as string;
    expect(newSecret).not.toBe(oldSecret);
    const service = serviceFor(t, clock);
    const dispatcher = dispatcherFor(service);
    const [e1] = await appendEvents(t, ['invoice.created']);
    await service.fanOut([e1!]);
    await dispatcher.runOnce();
    const [r1] = receiver.received.splice(0);
    const h1 = r1!.headers['reprise-signature'] as string;
    expect(h1.match(/v1=/g)).toHaveLength(2);
    // One day is far beyond Stripe's default tolerance of 5 minutes: the test's clock moves.
    const day = 24 * 3_600;
    verify(r1!.body, h1, oldSecret, 2 * day);
    verify(r1!.body, h1, newSecret, 2 * day);

    clock.advanceMs(day * 1000 + 1000);
    const [e2] = await appendEvents(t, ['invoice.created']);
    await service.fanOut([e2!]);
    await dispatcher.runOnce();
    const [r2] = receiver.received.splice(0);
    const h2 = r2!.headers['reprise-signature'] as string;
    expect(h2.match(/v1=/g)).toHaveLength(1);
    verify(r2!.body, h2, newSecret, 2 * day);
    expect(() => verify(r2!.body, h2, oldSecret, 2 * day)).toThrow(/signature/i);
  });

  it('failed attempts are retried with backoff (3xx not followed, 5xx, timeouts, refused connections)', async () => {
    const created = await t.call('POST', '/v1/webhook-endpoints', {
      url: `${receiver.url}/flaky`,
      eventTypes: ['invoice.uncollectible'],
    });
    const { id } = created.json();
    const service = serviceFor(t, clock, { random: () => 0.5 });
    const dispatcher = dispatcherFor(service, { timeoutMs: 300 });
    const answers = [{ status: 302 }, { status: 500 }, { status: 200, delayMs: 1_000 }, { status: 204 }];
    receiver.answer = () => answers.shift() ?? { status: 500 };
    const [event] = await appendEvents(t, ['invoice.uncollectible']);
    await service.fanOut([event!]);
    const t0 = clock.now().getTime();
    const delivery = async () =>
      (await t.call('GET', `/v1/webhook-endpoints/${id}/deliveries`)).json().data[0];

    expect(await dispatcher.runOnce()).toBe(1);
    expect(await delivery()).toMatchObject({
      status: 'pending',
      attempts: 1,
      responseCode: 302,
      lastError: 'answered 302',
      nextAttemptAt: new Date(t0 + 15_000).toISOString().replace('.000', ''),
    });
    clock.advanceMs(14_000);
    expect(await dispatcher.runOnce()).toBe(0);
    clock.advanceMs(1_000);
    expect(await dispatcher.runOnce()).toBe(1);
    expect(await delivery()).toMatchObject({ status: 'pending', attempts: 2, responseCode: 500 });
    expect(Date.parse((await delivery()).nextAttemptAt)).toBe(t0 + 15_000 + 30_000);
    clock.advanceMs(30_000);
    expect(await dispatcher.runOnce()).toBe(1);
    expect(await delivery()).toMatchObject({
      status: 'pending',
      attempts: 3,
      responseCode: null,
      lastError: expect.stringMatching(/^no answer within \d+ ms$/),
    });
    clock.advanceMs(60_000);
    expect(await dispatcher.runOnce()).toBe(1);
    expect(await delivery()).toMatchObject({
      status: 'succeeded',
      attempts: 4,
      responseCode: 204,
      nextAttemptAt: null,
    });
    // Only the configured path was ever asked: the redirect was not followed.
    expect(receiver.received.every((r) => r.path === '/flaky')).toBe(true);
    expect(receiver.received).toHaveLength(4);

    // A connection refused is a failed attempt too.
    const closed = await startReceiver();
    await closed.close();
    const refused = await t.call('POST', '/v1/webhook-endpoints', {
      url: `${closed.url}/gone`,
      eventTypes: ['invoice.uncollectible'],
    });
    const [e2] = await appendEvents(t, ['invoice.uncollectible']);
    await service.fanOut([e2!]);
    await dispatcher.runOnce();
    const [d2] = (await t.call('GET', `/v1/webhook-endpoints/${refused.json().id}/deliveries`)).json().data;
    expect(d2).toMatchObject({
      status: 'pending',
      attempts: 1,
      responseCode: null,
      lastError: 'ECONNREFUSED',
    });
  });

  it('an endpoint failing for 3 days is disabled with a webhook_endpoint.disabled event; its delivery failed', async () => {
    const created = await t.call('POST', '/v1/webhook-endpoints', {
      url: `${receiver.url}/down`,
      eventTypes: ['subscription.expired'],
    });
    const { id } = created.json();
    receiver.answer = () => ({ status: 503 });
    const service = serviceFor(t, clock, { random: () => 0.999 });
    const dispatcher = dispatcherFor(service);
    const [event] = await appendEvents(t, ['subscription.expired']);
    await service.fanOut([event!]);
    const t0 = clock.now().getTime();
    const day = 24 * 3_600_000;
    // Every due attempt for three days, all failing.
    for (let i = 0; i < 100 && clock.now().getTime() <= t0 + 3 * day; i++) {
      await dispatcher.runOnce();
      const [d] = (await t.call('GET', `/v1/webhook-endpoints/${id}/deliveries`)).json().data;
      if (d.status !== 'pending') break;
      clock.set(d.nextAttemptAt);
    }
    const [d] = (await t.call('GET', `/v1/webhook-endpoints/${id}/deliveries`)).json().data;
    expect(d).toMatchObject({ status: 'failed', responseCode: 503, nextAttemptAt: null });
    expect(d.attempts).toBeGreaterThan(10);
    expect(Date.parse(d.lastAttemptAt)).toBe(t0 + 3 * day);
    const endpoint = (await t.call('GET', `/v1/webhook-endpoints/${id}`)).json();
    expect(endpoint).toMatchObject({ status: 'disabled', disabledReason: 'failing' });

    let disabled: Array<{
      aggregate: { id: string; type: string; version: number };
      data: { object: { id: string } };
    }> = [];
    await waitFor(async () => {
      const page = await t.call('GET', '/v1/events?type=webhook_endpoint.disabled&limit=100');
      disabled = page.json().data.filter((e: { aggregate: { id: string } }) => e.aggregate.id === id);
      return disabled.length === 1;
    });
    expect(disabled[0]!.aggregate).toEqual({ type: 'webhook_endpoint', id, version: 2 });
    expect(disabled[0]!.data.object).toMatchObject({ id, status: 'disabled', disabledReason: 'failing' });

    // Nothing more is sent to it.
    const [later] = await appendEvents(t, ['subscription.expired']);
    await service.fanOut([later!]);
    expect((await t.call('GET', `/v1/webhook-endpoints/${id}/deliveries`)).json().data).toHaveLength(1);
  });

  it('a success in between keeps an endpoint enabled', async () => {
    const created = await t.call('POST', '/v1/webhook-endpoints', {
      url: `${receiver.url}/wobbly`,
      eventTypes: ['subscription.paused'],
    });
    const { id } = created.json();
    const service = serviceFor(t, clock, { random: () => 0.999 });
    const dispatcher = dispatcherFor(service);
    const day = 24 * 3_600_000;
    receiver.answer = () => ({ status: 500 });
    await service.fanOut(await appendEvents(t, ['subscription.paused']));
    await dispatcher.runOnce();
    clock.advanceMs(2 * day);
    receiver.answer = () => ({ status: 200 });
    await service.fanOut(await appendEvents(t, ['subscription.paused']));
    await dispatcher.runOnce();
    clock.advanceMs(1.5 * day);
    receiver.answer = () => ({ status: 500 });
    await service.fanOut(await appendEvents(t, ['subscription.paused']));
    await dispatcher.runOnce();
    expect((await t.call('GET', `/v1/webhook-endpoints/${id}`)).json().status).toBe('enabled');
  });
});
