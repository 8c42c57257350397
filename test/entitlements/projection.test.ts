import fc from 'fast-check';
import { sql } from 'kysely';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { BusEvent } from '../../src/events/bus.js';
import { ManualClock } from '../../src/kernel/clock.js';
import { EntitlementProjection, render } from '../../src/modules/entitlements/projection.js';
import { startTestApp, type TestApp } from '../support/app.js';
import { payingCustomer, smallCatalog, subscribeOk } from '../support/billing.js';
import { ENGINE } from '../support/database.js';

/**
 * The entitlement hot path (ADR 0018): the per-node projection answers what the database path
 * answers, from memory, and follows every change: this node's own writes at once, other nodes'
 * through the bus, the passing of validUntil without any event.
 */
describe(`entitlement projection (${ENGINE})`, () => {
  let t: TestApp;
  const clock = new ManualClock('2027-03-01T10:00:00Z');
  let n = 0;
  const projection = () => t.app.services.entitlementProjection;
  const viaApi = async (x: string) => {
    const res = await t.call('GET', `/v1/entitlements/${encodeURIComponent(x)}`);
    expect(res.statusCode, res.body).toBe(200);
    expect(res.headers['content-type']).toMatch(/^application\/json/);
    return res.json();
  };
  /** What the database path says now. */
  const truth = async (x: string) =>
    JSON.parse(render(await t.app.services.entitlements.forExternalId(x)).toString());
  const user = () => `listener-${ENGINE}-${++n}`;

  beforeAll(async () => {
    // A long staleness bound: the manual clock jumps weeks, and these tests count database reads.
    t = await startTestApp({ providerTimeoutMs: 2_000, entitlementCacheTtlMs: 365 * 86_400_000 }, clock);
    await smallCatalog(t);
  });
  afterAll(() => t.close());

  it('a miss loads from the database, the next read is a hit with the same answer; unknown ids are inactive', async () => {
    const c = await payingCustomer(t, user());
    const sub = await subscribeOk(t, c.id, 'music-monthly');
    const before = { hits: projection().hits, misses: projection().misses };
    const first = await viaApi(c.externalId);
    expect(first).toEqual({
      externalId: c.externalId,
      active: true,
      features: ['ad-free', 'offline'],
      sources: [{ subscription: sub.id, role: 'owner', validUntil: '2027-04-02T10:00:00Z' }],
    });
    expect(projection().misses).toBe(before.misses + 1);
    const second = await viaApi(c.externalId);
    expect(second).toEqual(first);
    expect(projection().hits).toBe(before.hits + 1);
    expect(second).toEqual(await truth(c.externalId));

    expect(await viaApi('nobody-at-all')).toEqual({
      externalId: 'nobody-at-all',
      active: false,
      features: [],
      sources: [],
    });
    // An id-shaped external id is nobody's (external ids never look like ids).
    expect((await viaApi('cus_01HZZZZZZZZZZZZZZZZZZZZZZZ')).active).toBe(false);
  });

  it("this node's writes are seen at once: a cancel, a second subscription, members added and removed", async () => {
    const c = await payingCustomer(t, user());
    const music = await subscribeOk(t, c.id, 'music-monthly');
    expect((await viaApi(c.externalId)).features).toEqual(['ad-free', 'offline']);
    const books = await subscribeOk(t, c.id, 'books-monthly');
    expect((await viaApi(c.externalId)).features).toEqual(['ad-free', 'audiobooks', 'offline']);
    const cancel = await t.call('POST', `/v1/subscriptions/${music.id}/cancel`, { timing: 'immediate' });
    expect(cancel.statusCode, cancel.body).toBe(200);
    const after = await viaApi(c.externalId);
    expect(after.features).toEqual(['audiobooks']);
    expect(after.sources.map((s: { subscription: string }) => s.subscription)).toEqual([books.id]);

    const owner = await payingCustomer(t, user());
    const family = await subscribeOk(t, owner.id, 'family-monthly');
    const kid = user();
    expect((await viaApi(kid)).active).toBe(false); // held now, as inactive
    const add = await t.call('POST', `/v1/subscriptions/${family.id}/members`, { externalId: kid });
    expect(add.statusCode, add.body).toBe(201);
    expect(await viaApi(kid)).toEqual({
      externalId: kid,
      active: true,
      features: ['ad-free', 'family-mix', 'offline'],
      sources: [{ subscription: family.id, role: 'member', validUntil: '2027-04-02T10:00:00Z' }],
    });
    const remove = await t.call('DELETE', `/v1/subscriptions/${family.id}/members/${kid}`);
    expect(remove.statusCode, remove.body).toBe(200);
    expect((await viaApi(kid)).active).toBe(false);
    for (const x of [c.externalId, owner.externalId, kid]) expect(await viaApi(x)).toEqual(await truth(x));
  });

  it('validUntil passing ends access without any event or database read', async () => {
    const c = await payingCustomer(t, user());
    await subscribeOk(t, c.id, 'music-monthly');
    expect((await viaApi(c.externalId)).active).toBe(true);
    const misses = projection().misses;
    const saved = clock.now();
    try {
      // The period ends on Apr 1 10:00; with the 24 h renewal margin, access lasts until Apr 2 10:00.
      clock.set('2027-04-02T09:59:59Z');
      expect((await viaApi(c.externalId)).active).toBe(true);
      clock.set('2027-04-02T10:00:00Z');
      expect(await viaApi(c.externalId)).toEqual({
        externalId: c.externalId,
        active: false,
        features: [],
        sources: [],
      });
      expect(projection().misses).toBe(misses);
      expect(await viaApi(c.externalId)).toEqual(await truth(c.externalId));
    } finally {
      clock.set(saved);
    }
  });

  it('events from the bus: a newer version applies, a duplicate or an older one changes nothing', async () => {
    const c = await payingCustomer(t, user());
    const sub = await subscribeOk(t, c.id, 'music-monthly');
    const held = await viaApi(c.externalId);
    expect(held.active).toBe(true);
    const { version } = (
      await sql<{ version: number }>`SELECT version FROM subscriptions WHERE id = ${sub.id}`.execute(
        t.app.services.db,
      )
    ).rows[0]!;
    const event = (v: number, active: boolean): BusEvent => ({
      id: `evt_test_${v}_${active}`,
      type: 'entitlement.updated',
      createdAt: clock.now(),
      customerId: c.id,
      aggregate: { type: 'entitlement', id: sub.id, version: v },
      data: {
        object: {
          subscription: sub.id,
          owner: c.externalId,
          members: [],
          removed: [],
          product: 'prod_x',
          features: ['ad-free', 'offline'],
          active,
          validUntil: active ? '2027-04-02T10:00:00Z' : null,
          status: active ? 'active' : 'canceled',
          testClock: null,
        },
      },
    });
    projection().apply([event(version, false), event(version - 1, false)]);
    expect(await viaApi(c.externalId)).toEqual(held);
    projection().apply([event(version + 1, false)]);
    expect((await viaApi(c.externalId)).active).toBe(false);
    projection().apply([event(version + 1, true), event(version, true)]);
    expect((await viaApi(c.externalId)).active).toBe(false);
  });

  it('a test clock’s customers are never cached, and still answered right', async () => {
    const tc = (await t.call('POST', '/v1/test-clocks', { frozenTime: '2027-03-01T10:00:00Z' })).json();
    const c = await payingCustomer(t, user(), { testClock: tc.id });
    await subscribeOk(t, c.id, 'music-monthly');
    const size = projection().size;
    expect((await viaApi(c.externalId)).active).toBe(true);
    expect(projection().size).toBe(size);
    const adv = await t.call('POST', `/v1/test-clocks/${tc.id}/advance`, {
      frozenTime: '2027-04-02T10:00:00Z',
    });
    expect(adv.statusCode, adv.body).toBe(200);
    expect(await viaApi(c.externalId)).toEqual(await truth(c.externalId));
  });

  it('POST /v1/entitlements/batch: in the order asked, duplicates and unknown ids included, same as one by one', async () => {
    const a = await payingCustomer(t, user());
    await subscribeOk(t, a.id, 'music-monthly');
    const b = await payingCustomer(t, user());
    await subscribeOk(t, b.id, 'books-monthly');
    const ids = [b.externalId, 'nobody-2', a.externalId, b.externalId];
    projection().clear();
    const res = await t.call('POST', '/v1/entitlements/batch', { externalIds: ids });
    expect(res.statusCode, res.body).toBe(200);
    const data = res.json().data;
    expect(data.map((e: { externalId: string }) => e.externalId)).toEqual(ids);
    for (const [i, x] of ids.entries()) expect(data[i]).toEqual(await truth(x));
    const again = await t.call('POST', '/v1/entitlements/batch', { externalIds: ids });
    expect(again.json()).toEqual(res.json());
  });

  it('bounded: an LRU of maxEntries, the least recently read goes first', async () => {
    const small = new EntitlementProjection(
      {
        billing: t.app.services.billing,
        customers: t.app.services.customers,
        catalog: t.app.services.catalog,
        clock,
        uncached: (x) => t.app.services.entitlements.forExternalId(x),
      },
      { maxEntries: 3 },
    );
    for (let i = 0; i < 10; i++) await small.get(`bounded-${i}`);
    expect(small.size).toBe(3);
    expect(small.peek('bounded-9')).toBeDefined();
    expect(small.peek('bounded-0')).toBeUndefined();
  });

  it('property: after any sequence of subscribes, cancels and member changes, every held answer equals the database’s', async () => {
    const owners = await Promise.all([0, 1, 2].map(() => payingCustomer(t, user())));
    const others = [user(), user(), user()];
    const ids = [...owners.map((o) => o.externalId), ...others];
    const subs: string[] = [];
    const op = fc.oneof(
      fc.record({
        kind: fc.constant('subscribe' as const),
        owner: fc.nat(2),
        plan: fc.constantFrom('music-monthly', 'family-monthly', 'books-monthly'),
      }),
      fc.record({ kind: fc.constant('cancel' as const), sub: fc.nat(20) }),
      fc.record({ kind: fc.constant('add' as const), sub: fc.nat(20), member: fc.nat(2) }),
      fc.record({ kind: fc.constant('remove' as const), sub: fc.nat(20), member: fc.nat(2) }),
      fc.record({ kind: fc.constant('read' as const), who: fc.nat(5) }),
    );
    await fc.assert(
      fc.asyncProperty(fc.array(op, { minLength: 3, maxLength: 8 }), async (ops) => {
        for (const o of ops) {
          if (o.kind === 'subscribe') {
            const res = await t.call('POST', '/v1/subscriptions', {
              customer: owners[o.owner]!.id,
              plan: o.plan,
            });
            if (res.statusCode === 201) subs.push(res.json().id);
          } else if (o.kind === 'read') {
            await viaApi(ids[o.who]!);
          } else if (subs.length > 0) {
            const sub = subs[o.sub % subs.length]!;
            if (o.kind === 'cancel')
              await t.call('POST', `/v1/subscriptions/${sub}/cancel`, { timing: 'immediate' });
            if (o.kind === 'add')
              await t.call('POST', `/v1/subscriptions/${sub}/members`, { externalId: others[o.member]! });
            if (o.kind === 'remove')
              await t.call('DELETE', `/v1/subscriptions/${sub}/members/${others[o.member]!}`);
          }
        }
        for (const x of ids) expect(await viaApi(x)).toEqual(await truth(x));
      }),
      { numRuns: 8 },
    );
  });
});
