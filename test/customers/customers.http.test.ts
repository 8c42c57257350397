import { sql } from 'kysely';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestApp, type TestApp } from '../support/app.js';
import { dumpAll, ENGINE } from '../support/database.js';

describe(`customers (${ENGINE})`, () => {
  let t: TestApp;
  beforeAll(async () => {
    t = await startTestApp();
    await t.markets('SE');
  });
  afterAll(() => t.close());

  const raw = async (id: string) =>
    (
      await sql<{ row: string }>`SELECT c::text AS row FROM customers c WHERE id = ${id}`.execute(
        t.app.services.db,
      )
    ).rows[0]!.row;

  it('creates a customer and gets it by id and by externalId', async () => {
    const res = await t.call('POST', '/v1/customers', {
      externalId: 'user-1001',
      market: 'SE',
      email: 'astrid@example.se',
      name: 'Astrid Lindqvist',
      billingCycleDay: 31,
    });
    expect(res.statusCode).toBe(201);
    const c = res.json();
    expect(c).toMatchObject({
      externalId: 'user-1001',
      market: 'SE',
      currency: 'SEK',
      email: 'astrid@example.se',
      name: 'Astrid Lindqvist',
      billingCycleDay: 31,
      testClock: null,
      erased: false,
    });
    expect(c.id).toMatch(/^cus_/);
    expect((await t.call('GET', `/v1/customers/${c.id}`)).json()).toEqual(c);
    expect((await t.call('GET', '/v1/customers/user-1001')).json()).toEqual(c);
    expect((await t.call('GET', '/v1/customers?externalId=user-1001')).json()).toEqual({
      data: [c],
      nextCursor: null,
    });
    expect((await t.call('GET', '/v1/customers?externalId=nobody')).json()).toEqual({
      data: [],
      nextCursor: null,
    });
  });

  it('keeps email and name encrypted at rest', async () => {
    const c = (
      await t.call('POST', '/v1/customers', {
        externalId: 'user-1002',
        market: 'SE',
        email: 'secret.person@example.com',
        name: 'Secret Person',
      })
    ).json();
    const row = await raw(c.id);
    expect(row).not.toContain('secret.person');
    expect(row).not.toContain('Secret Person');
    const cols = await t.app.services.db
      .selectFrom('customers')
      .select(['email_cipher'])
      .where('id', '=', c.id)
      .executeTakeFirstOrThrow();
    // version byte + 12-byte IV + 16-byte tag + ciphertext
    expect(Buffer.from(cols.email_cipher!).length).toBe(1 + 12 + 16 + 'secret.person@example.com'.length);
    // The data key is in the key store, wrapped, with the fingerprint of the master key that wrapped it.
    const key = (await t.app.keyStore.get([c.id])).get(c.id)!;
    expect(Buffer.from(key.wrapped).length).toBe(1 + 12 + 16 + 32);
    expect(key.masterKeyId).toMatch(/^mk_[0-9a-f]{16}$/);
  });

  it('erasure destroys the data key: personal data unreadable forever, ids remain', async () => {
    // With an Idempotency-Key, as clients send it: its stored response is a copy to erase too.
    const c = (
      await t.call(
        'POST',
        '/v1/customers',
        { externalId: 'user-1003', market: 'SE', email: 'gone@example.com', name: 'To Be Forgotten' },
        { headers: { 'idempotency-key': 'create-user-1003' } },
      )
    ).json();
    const erased = await t.call('POST', `/v1/customers/${c.id}/erase`);
    expect(erased.statusCode).toBe(200);
    expect(erased.json()).toMatchObject({
      id: c.id,
      externalId: 'user-1003',
      market: 'SE',
      email: null,
      name: null,
      erased: true,
    });
    expect(erased.json().erasedAt).not.toBeNull();
    const stored = await t.app.services.db
      .selectFrom('customers')
      .selectAll()
      .where('id', '=', c.id)
      .executeTakeFirstOrThrow();
    expect(stored.email_cipher).toBeNull();
    expect(stored.name_cipher).toBeNull();
    expect((await t.app.keyStore.get([c.id])).size).toBe(0);
    expect(await raw(c.id)).not.toContain('gone@example.com');
    // Nor any other table (stored responses, audit, jobs…): see erasure.test.ts for the full story.
    expect(await dumpAll(t.app.services.db)).not.toContain('gone@example.com');
    expect(await dumpAll(t.app.services.db)).not.toContain('To Be Forgotten');
    expect((await t.call('GET', `/v1/customers/${c.id}`)).json()).toMatchObject({
      id: c.id,
      email: null,
      erased: true,
    });
    // Erasing again changes nothing and answers the same.
    expect((await t.call('POST', `/v1/customers/${c.id}/erase`)).json().erasedAt).toBe(
      erased.json().erasedAt,
    );
  });

  it('a ciphertext moved to another customer does not decrypt', async () => {
    const a = (
      await t.call('POST', '/v1/customers', { externalId: 'user-a', market: 'SE', email: 'a@example.com' })
    ).json();
    const b = (
      await t.call('POST', '/v1/customers', { externalId: 'user-b', market: 'SE', email: 'b@example.com' })
    ).json();
    const rowA = await t.app.services.db
      .selectFrom('customers')
      .selectAll()
      .where('id', '=', a.id)
      .executeTakeFirstOrThrow();
    await t.app.services.db
      .updateTable('customers')
      .set({ email_cipher: rowA.email_cipher })
      .where('id', '=', b.id)
      .execute();
    const keyA = (await t.app.keyStore.get([a.id])).get(a.id)!;
    await t.app.keyStore.delete(b.id);
    await t.app.keyStore.put(b.id, keyA, keyA.createdAt);
    await expect(t.app.services.customers.get(b.id)).rejects.toThrow();
  });

  it('refuses a duplicate externalId, an unknown market and a billing day outside 1..31', async () => {
    const dup = await t.call('POST', '/v1/customers', { externalId: 'user-1001', market: 'SE' });
    expect(dup.statusCode).toBe(409);
    expect(dup.json()).toMatchObject({ code: 'already_exists', errors: [{ path: 'externalId' }] });
    const market = await t.call('POST', '/v1/customers', { externalId: 'user-x', market: 'ZZ' });
    expect(market.statusCode).toBe(400);
    expect(market.json().errors).toEqual([{ path: 'market', in: 'body', message: "unknown market 'ZZ'" }]);
    for (const day of [0, 32, 1.5]) {
      const res = await t.call('POST', '/v1/customers', {
        externalId: 'user-y',
        market: 'SE',
        billingCycleDay: day,
      });
      expect(res.statusCode).toBe(400);
      expect(res.json().errors[0].path).toBe('billingCycleDay');
    }
    const email = await t.call('POST', '/v1/customers', {
      externalId: 'user-z',
      market: 'SE',
      email: 'not-an-email',
    });
    expect(email.json().errors[0].path).toBe('email');
    const clock = await t.call('POST', '/v1/customers', {
      externalId: 'user-z',
      market: 'SE',
      testClock: 'clk_01ARZ3NDEKTSV4RRFFQ69G5FAV',
    });
    expect(clock.json().errors[0].path).toBe('testClock');
    expect((await t.call('GET', '/v1/customers/user-z')).statusCode).toBe(404);
  });

  it('a customer on a test clock reads its time from the clock', async () => {
    const clock = (await t.call('POST', '/v1/test-clocks', { frozenTime: '2025-01-31T10:00:00Z' })).json();
    const c = (
      await t.call('POST', '/v1/customers', { externalId: 'user-clocked', market: 'SE', testClock: clock.id })
    ).json();
    expect(c.testClock).toBe(clock.id);
    expect((await t.app.services.customers.now(c.id)).toISOString()).toBe('2025-01-31T10:00:00.000Z');
    await t.call('POST', `/v1/test-clocks/${clock.id}/advance`, { frozenTime: '2025-03-01T00:00:00Z' });
    expect((await t.app.services.customers.now(c.id)).toISOString()).toBe('2025-03-01T00:00:00.000Z');
    const free = (await t.call('POST', '/v1/customers', { externalId: 'user-free', market: 'SE' })).json();
    expect(Math.abs((await t.app.services.customers.now(free.id)).getTime() - Date.now())).toBeLessThan(
      5_000,
    );
    expect(
      (await t.call('GET', `/v1/customers?testClock=${clock.id}`))
        .json()
        .data.map((x: { id: string }) => x.id),
    ).toEqual([c.id]);
  });
});
