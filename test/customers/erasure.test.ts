import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PGlite } from '@electric-sql/pglite';
import { sql } from 'kysely';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createApp } from '../../src/app.js';
import { loadConfig } from '../../src/config.js';
import { MasterKey, seal } from '../../src/crypto/envelope.js';
import { KeyStore } from '../../src/crypto/key-store.js';
import { loadMigrations, migrate } from '../../src/db/migrate.js';
import { encodeCursor } from '../../src/http/pagination.js';
import { newId } from '../../src/kernel/ids.js';
import { BOOTSTRAP, MASTER_KEY, startTestApp, type TestApp } from '../support/app.js';
import { dumpAll, ENGINE, freshDatabase, freshKeyStore } from '../support/database.js';

/** What must never be found: the value as text, and as the hex a bytea column would show. */
const traces = (value: string) => [value, Buffer.from(value, 'utf8').toString('hex')];

describe(`erasure reaches every copy (${ENGINE})`, () => {
  let t: TestApp;
  beforeAll(async () => {
    t = await startTestApp();
    await t.markets('SE');
  });
  afterAll(() => t.close());

  const unique = () => randomBytes(6).toString('hex');

  it('personal data given at creation is nowhere in the data database in plaintext, nor its data key', async () => {
    const tag = unique();
    const email = `plain.${tag}@example.com`;
    const name = `Person ${tag}`;
    const created = await t.call(
      'POST',
      '/v1/customers',
      { externalId: `every-table-${tag}`, market: 'SE', email, name },
      { headers: { 'idempotency-key': `create-${tag}` } },
    );
    expect(created.statusCode).toBe(201);
    const id = created.json().id as string;
    // Give the customer a life: a payment method and a payment, so payments, ledger, jobs and
    // provider rows exist too.
    expect(
      (
        await t.call('POST', `/v1/customers/${id}/payment-methods`, {
          provider: 'simulator',
          token: 'tok_visa',
        })
      ).statusCode,
    ).toBe(201);
    expect(
      (
        await t.call('POST', '/v1/payments', {
          customer: id,
          amount: 1000,
          currency: 'SEK',
          description: 'x',
        })
      ).statusCode,
    ).toBe(201);
    const dump = await dumpAll(t.app.services.db);
    expect(dump).toContain(id);
    for (const secret of [...traces(email), ...traces(name)]) expect(dump).not.toContain(secret);
    const key = (await t.app.keyStore.get([id])).get(id)!;
    expect(dump).not.toContain(Buffer.from(key.wrapped).toString('hex'));
  });

  it('a replay of the creating request rebuilds personal data from the customer; erasure retires it', async () => {
    const tag = unique();
    const email = `replay.${tag}@example.com`;
    const body = { externalId: `replay-${tag}`, market: 'SE', email, name: `Replay ${tag}` };
    const headers = { 'idempotency-key': `create-${tag}` };
    const first = await t.call('POST', '/v1/customers', body, { headers });
    expect(first.statusCode).toBe(201);
    const c = first.json();
    expect(c.email).toBe(email);

    // Stored without personal data, replayed with it while the customer exists.
    const stored = await t.app.services.db
      .selectFrom('idempotency_keys')
      .selectAll()
      .where('key', '=', headers['idempotency-key'])
      .executeTakeFirstOrThrow();
    expect(stored.response_body).not.toContain(email);
    expect(JSON.parse(stored.response_body!)).toMatchObject({ id: c.id, email: null, name: null });
    const replay = await t.call('POST', '/v1/customers', body, { headers });
    expect(replay.statusCode).toBe(201);
    expect(replay.headers['idempotent-replayed']).toBe('true');
    expect(replay.json()).toEqual(c);

    expect((await t.call('POST', `/v1/customers/${c.id}/erase`)).statusCode).toBe(200);
    // After erasure the stored request matches nothing: the same body and another email get the
    // same 422, so the key cannot confirm which email was erased, and nothing is replayed.
    const after = await t.call('POST', '/v1/customers', body, { headers });
    const guess = await t.call('POST', '/v1/customers', { ...body, email: 'other@example.com' }, { headers });
    for (const res of [after, guess]) {
      expect(res.statusCode).toBe(422);
      expect(res.json().code).toBe('idempotency_key_reused');
      expect(res.body).not.toContain(email);
    }
    expect(after.json().detail).toBe(guess.json().detail);
    // The data key is gone from the key store; nothing in the data database reads as the email.
    expect((await t.app.keyStore.get([c.id])).size).toBe(0);
    const dump = await dumpAll(t.app.services.db);
    for (const secret of traces(email)) expect(dump).not.toContain(secret);
    // The audit log says who created and erased the customer, by id only.
    const audit = (await t.call('GET', `/v1/audit-log?resource=${c.id}`)).json();
    expect(audit.data.map((e: { action: string }) => e.action)).toEqual([
      'customers.create',
      'customers.erase',
    ]);
    expect(JSON.stringify(audit)).not.toContain(email);
  });

  it('a stored 409 under a second key confirms no email after erasure: personal fields are not fingerprinted', async () => {
    const tag = unique();
    const email = `oracle.${tag}@example.com`;
    const body = { externalId: `oracle-${tag}`, market: 'SE', email, name: `Oracle ${tag}` };
    const created = await t.call('POST', '/v1/customers', body, {
      headers: { 'idempotency-key': `k1-${tag}` },
    });
    expect(created.statusCode).toBe(201);
    const k2 = { 'idempotency-key': `k2-${tag}` };
    const conflict = await t.call('POST', '/v1/customers', body, { headers: k2 });
    expect(conflict.statusCode).toBe(409);
    expect(conflict.json().code).toBe('already_exists');
    expect((await t.call('POST', `/v1/customers/${created.json().id}/erase`)).statusCode).toBe(200);
    // The right email and a guess get the same answer: the stored 409, replayed.
    const right = await t.call('POST', '/v1/customers', body, { headers: k2 });
    const guess = await t.call(
      'POST',
      '/v1/customers',
      { ...body, email: 'someone.else@example.com', name: 'Someone Else' },
      { headers: k2 },
    );
    for (const res of [right, guess]) {
      expect(res.statusCode).toBe(409);
      expect(res.headers['idempotent-replayed']).toBe('true');
      expect(res.body).not.toContain(email);
    }
    expect(guess.body).toBe(right.body);
    // Other fields still count: another externalId with the same key is refused.
    const other = await t.call('POST', '/v1/customers', { ...body, externalId: `x-${tag}` }, { headers: k2 });
    expect(other.statusCode).toBe(422);
  });

  it('an erased customer is read without its key; a key lost before the row was erased is a clear error', async () => {
    const tag = unique();
    const c = (
      await t.call('POST', '/v1/customers', {
        externalId: `lost-${tag}`,
        market: 'SE',
        email: `l.${tag}@x.io`,
      })
    ).json();
    // An erasure that deleted the key, then failed to commit.
    await t.app.keyStore.delete(c.id);
    const read = await t.call('GET', `/v1/customers/${c.id}`);
    expect(read.statusCode).toBe(500);
    expect(read.json()).toMatchObject({ code: 'data_key_missing' });
    expect(read.json().detail).toContain(c.id);
    // Erasing again completes it.
    expect((await t.call('POST', `/v1/customers/${c.id}/erase`)).json()).toMatchObject({
      email: null,
      erased: true,
    });
    expect((await t.call('GET', `/v1/customers/${c.id}`)).statusCode).toBe(200);
    // What payments and billing need reads no key.
    const lost2 = (
      await t.call('POST', '/v1/customers', { externalId: `lost2-${tag}`, market: 'SE', name: 'N' })
    ).json();
    await t.app.keyStore.delete(lost2.id);
    expect(await t.app.services.customers.account(lost2.id)).toMatchObject({
      id: lost2.id,
      externalId: `lost2-${tag}`,
      erasedAt: null,
    });
    // A customer without personal data needs no key at all.
    const bare = (await t.call('POST', '/v1/customers', { externalId: `bare-${tag}`, market: 'SE' })).json();
    await t.app.keyStore.delete(bare.id);
    expect((await t.call('GET', `/v1/customers/${bare.id}`)).statusCode).toBe(200);
  });

  it('an interrupted erasure (key gone, row not erased) is logged at error level and fails no list page', async () => {
    const lines: string[] = [];
    const stream = { write: (line: string) => void lines.push(line) };
    const logged = await createApp({
      config: t.config,
      database: t.app.database,
      keyStore: t.app.keyStore,
      logger: { level: 'info', stream },
    });
    try {
      const tag = unique();
      const clockId = (await t.call('POST', '/v1/test-clocks', { frozenTime: '2030-01-01T00:00:00Z' })).json()
        .id as string;
      const make = async (n: number) =>
        (
          await t.call('POST', '/v1/customers', {
            externalId: `half-${n}-${tag}`,
            market: 'SE',
            email: `half${n}.${tag}@x.io`,
            name: `Half ${n}`,
            testClock: clockId,
          })
        ).json().id as string;
      const [a, lost, b] = [await make(1), await make(2), await make(3)];
      // What a kill -9 between deleting the key and committing the erasure leaves.
      await t.app.keyStore.delete(lost);
      const as = { authorization: `Bearer ${BOOTSTRAP}` };

      const read = await logged.server.inject({ method: 'GET', url: `/v1/customers/${lost}`, headers: as });
      expect(read.statusCode).toBe(500);
      expect(read.json().code).toBe('data_key_missing');
      const entries = () => lines.map((l) => JSON.parse(l) as Record<string, unknown>);
      expect(entries()).toContainEqual(
        expect.objectContaining({ level: 50, reqId: read.json().requestId, code: 'data_key_missing' }),
      );

      const list = await logged.server.inject({
        method: 'GET',
        url: `/v1/customers?testClock=${clockId}&limit=10`,
        headers: as,
      });
      expect(list.statusCode).toBe(200);
      const byId = new Map(list.json().data.map((c: { id: string }) => [c.id, c]));
      expect(byId.get(a)).toMatchObject({ email: `half1.${tag}@x.io`, name: 'Half 1' });
      expect(byId.get(b)).toMatchObject({ email: `half3.${tag}@x.io`, name: 'Half 3' });
      expect(byId.get(lost)).toMatchObject({ id: lost, email: null, name: null, erased: false });
      const listId = list.headers['request-id'];
      expect(entries()).toContainEqual(
        expect.objectContaining({ level: 50, reqId: listId, customerId: lost, code: 'data_key_missing' }),
      );
    } finally {
      await logged.close();
    }
  });

  it('the embedded key store keeps WAL recycling off for good (at startup, before crash recovery)', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'reprise-walrecycle-'));
    try {
      const store = await KeyStore.open({ dataDir: dir });
      await store.close();
      // A bare start of the same directory (as crash recovery is) reads it from its configuration.
      const raw = await PGlite.create({ dataDir: dir });
      try {
        const { rows } = await raw.query<{ setting: string; source: string }>(
          "SELECT setting, source FROM pg_settings WHERE name = 'wal_recycle'",
        );
        expect(rows).toEqual([{ setting: 'off', source: 'configuration file' }]);
      } finally {
        await raw.close();
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('a node with another master key fails clearly on customers it cannot open', async () => {
    const tag = unique();
    const c = (
      await t.call('POST', '/v1/customers', {
        externalId: `mk-${tag}`,
        market: 'SE',
        email: `mk.${tag}@x.io`,
      })
    ).json();
    const other = MasterKey.generate();
    const node2 = await createApp({
      config: { ...t.config, masterKey: other.toBase64() },
      database: t.app.database,
      keyStore: t.app.keyStore,
    });
    try {
      const res = await node2.server.inject({
        method: 'GET',
        url: `/v1/customers/${c.id}`,
        headers: { authorization: `Bearer ${BOOTSTRAP}` },
      });
      expect(res.statusCode).toBe(500);
      expect(res.json()).toMatchObject({ code: 'master_key_mismatch' });
      expect(res.json().detail).toContain(MasterKey.parse(MASTER_KEY).id);
      expect(res.json().detail).toContain(other.id);
      expect(res.json().detail).toContain('REPRISE_MASTER_KEY');
    } finally {
      await node2.close();
    }
  });

  it('logs carry no personal data, even at trace level and on refused requests', async () => {
    const lines: string[] = [];
    const stream = { write: (line: string) => void lines.push(line) };
    const logged = await createApp({
      config: t.config,
      database: t.app.database,
      keyStore: t.app.keyStore,
      logger: { level: 'trace', stream },
    });
    try {
      const tag = unique();
      const email = `logged.${tag}@example.com`;
      const as = { authorization: `Bearer ${BOOTSTRAP}`, 'idempotency-key': `log-${tag}` };
      const payload = { externalId: `log-${tag}`, market: 'SE', email, name: `Logged ${tag}` };
      const created = await logged.server.inject({
        method: 'POST',
        url: '/v1/customers',
        headers: as,
        payload,
      });
      expect(created.statusCode).toBe(201);
      await logged.server.inject({ method: 'POST', url: '/v1/customers', headers: as, payload });
      // Refused: a duplicate externalId, and an unknown field beside the email.
      await logged.server.inject({
        method: 'POST',
        url: '/v1/customers',
        headers: { authorization: `Bearer ${BOOTSTRAP}` },
        payload,
      });
      await logged.server.inject({
        method: 'POST',
        url: '/v1/customers',
        headers: { authorization: `Bearer ${BOOTSTRAP}` },
        payload: { ...payload, externalId: `log2-${tag}`, market: 'ZZ' },
      });
      await logged.server.inject({
        method: 'GET',
        url: `/v1/customers/${created.json().id}`,
        headers: { authorization: `Bearer ${BOOTSTRAP}` },
      });
      expect(lines.length).toBeGreaterThan(4);
      const all = lines.join('');
      expect(all).toContain(created.json().id);
      expect(all).not.toContain(email);
      expect(all).not.toContain(`Logged ${tag}`);
    } finally {
      await logged.close();
    }
  });

  it('?externalId= is a list like any other: it honours cursor and limit', async () => {
    const tag = unique();
    const c = (await t.call('POST', '/v1/customers', { externalId: `page-${tag}`, market: 'SE' })).json();
    expect((await t.call('GET', `/v1/customers?externalId=page-${tag}&limit=1`)).json()).toEqual({
      data: [c],
      nextCursor: null,
    });
    const past = await t.call('GET', `/v1/customers?externalId=page-${tag}&cursor=${encodeCursor(c.id)}`);
    expect(past.json()).toEqual({ data: [], nextCursor: null });
    const bad = await t.call('GET', `/v1/customers?externalId=page-${tag}&cursor=garbage`);
    expect(bad.statusCode).toBe(400);
    expect(bad.json().errors[0].path).toBe('cursor');
    expect((await t.call('GET', `/v1/customers?externalId=page-${tag}&limit=0`)).statusCode).toBe(400);
  });

  it('an externalId of 255 characters is accepted by the customer routes', async () => {
    const long = `x${unique()}`.padEnd(255, 'y');
    const c = await t.call('POST', '/v1/customers', { externalId: long, market: 'SE' });
    expect(c.statusCode).toBe(201);
    expect((await t.call('GET', `/v1/customers?externalId=${long}`)).json().data[0].id).toBe(c.json().id);
    const spec = (await t.call('GET', '/openapi.json')).json();
    for (const path of ['/v1/customers/{id}', '/v1/customers/{id}/erase']) {
      const op = spec.paths[path].get ?? spec.paths[path].post;
      const param = op.parameters.find((p: { name: string }) => p.name === 'id');
      expect(param.schema.maxLength).toBe(255);
    }
  });

  it('keys whose customer never came to exist are swept; others stay', async () => {
    const tag = unique();
    const c = (
      await t.call('POST', '/v1/customers', {
        externalId: `sweep-${tag}`,
        market: 'SE',
        email: `s.${tag}@x.io`,
      })
    ).json();
    const old = new Date(Date.now() - 2 * 3_600_000);
    await t.app.keyStore.put(
      `cus_orphan${tag}`,
      { wrapped: randomBytes(61), masterKeyId: 'mk_0000000000000000' },
      old,
    );
    // A fresh orphan may belong to a transaction still running: left alone.
    await t.app.keyStore.put(
      `cus_fresh${tag}`,
      { wrapped: randomBytes(61), masterKeyId: 'mk_0000000000000000' },
      new Date(),
    );
    const result = await t.app.services.customers.sweepOrphanKeys();
    expect(result.deleted).toBeGreaterThanOrEqual(1);
    const left = await t.app.keyStore.get([`cus_orphan${tag}`, `cus_fresh${tag}`, c.id]);
    expect([...left.keys()].sort()).toEqual([c.id, `cus_fresh${tag}`].sort());
    // A window reaching now: the fresh orphan goes, the key of the customer that exists stays.
    await t.app.services.customers.sweepOrphanKeys({ olderThanMs: -60_000 });
    expect([...(await t.app.keyStore.get([`cus_fresh${tag}`, c.id])).keys()]).toEqual([c.id]);
    expect((await t.call('GET', `/v1/customers/${c.id}`)).json().email).toBe(`s.${tag}@x.io`);
  });
});

describe(`upgrade: data keys move out of the data database (${ENGINE})`, () => {
  it('an existing data directory keeps every customer readable, its keys moved and its stored responses cleaned', async () => {
    const database = await freshDatabase();
    const keyStore = await freshKeyStore();
    try {
      // The schema as the previous version left it, with one customer and its stored response.
      await migrate(
        database.db,
        loadMigrations().filter((m) => m.name < '0014'),
      );
      const master = MasterKey.parse(MASTER_KEY);
      const id = newId('customer');
      const dataKey = randomBytes(32);
      const market = newId('market');
      await sql`INSERT INTO markets (id, code, name, currency, tax_rate_bps, tax_inclusive, created_at)
        VALUES (${market}, 'SE', 'Sweden', 'SEK', 2500, true, now())`.execute(database.db);
      await sql`INSERT INTO customers (id, external_id, market_id, wrapped_data_key, master_key_id, email_cipher, name_cipher, created_at)
        VALUES (${id}, 'old-user', ${market}, ${master.wrap(dataKey, id)}, ${master.id},
                ${seal(dataKey, 'old@example.com', `${id}:email`)}, ${seal(dataKey, 'Old Timer', `${id}:name`)}, now())`.execute(
        database.db,
      );
      const oldBody = JSON.stringify({
        id,
        externalId: 'old-user',
        email: 'old@example.com',
        name: 'Old Timer',
      });
      await sql`INSERT INTO idempotency_keys (api_key_id, key, request_hash, method, path, state, response_status, response_body, created_at, completed_at)
        VALUES ('bootstrap', 'old-create', 'h', 'POST', '/v1/customers', 'completed', 201, ${oldBody}, now(), now())`.execute(
        database.db,
      );

      const app = await createApp({
        config: { ...loadConfig({}), masterKey: MASTER_KEY, bootstrapKey: BOOTSTRAP, seed: 'none' },
        database,
        keyStore,
      });
      try {
        const res = await app.server.inject({
          method: 'GET',
          url: `/v1/customers/${id}`,
          headers: { authorization: `Bearer ${BOOTSTRAP}` },
        });
        expect(res.statusCode).toBe(200);
        expect(res.json()).toMatchObject({ email: 'old@example.com', name: 'Old Timer' });
        expect((await keyStore.get([id])).get(id)?.masterKeyId).toBe(master.id);
        const columns = await sql<{ column_name: string }>`
          SELECT column_name FROM information_schema.columns WHERE table_name = 'customers'`.execute(
          database.db,
        );
        expect(columns.rows.map((c) => c.column_name)).not.toContain('wrapped_data_key');
        const dump = await dumpAll(database.db);
        for (const secret of [...traces('old@example.com'), ...traces('Old Timer')])
          expect(dump).not.toContain(secret);
        const stored = await database.db
          .selectFrom('idempotency_keys')
          .select(['response_body', 'personal_ref'])
          .where('key', '=', 'old-create')
          .executeTakeFirstOrThrow();
        expect(stored.personal_ref).toEqual({ customerId: id, fields: ['email', 'name'] });
      } finally {
        await app.close();
      }
    } finally {
      await keyStore.close();
      await database.close();
    }
  });

  it('the migration that drops the key column refuses while a key is still there', async () => {
    const database = await freshDatabase();
    try {
      const all = loadMigrations();
      await migrate(
        database.db,
        all.filter((m) => m.name < '0014'),
      );
      await sql`INSERT INTO customers (id, external_id, market_id, wrapped_data_key, master_key_id, created_at)
        VALUES ('cus_01JNOTMOVED000000000000000', 'u', 'mkt_x', '\\x01', 'mk_x', now())`.execute(database.db);
      await expect(migrate(database.db, all)).rejects.toThrow(/customers still hold data keys/);
    } finally {
      await database.close();
    }
  });
});
