import { sql } from 'kysely';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { MasterKey } from '../../src/crypto/envelope.js';
import { CLAIM_LEASE_MS, requestHash } from '../../src/http/idempotency.js';
import { ManualClock } from '../../src/kernel/clock.js';
import { BOOTSTRAP_KEY_ID } from '../../src/modules/api-keys/service.js';
import { MASTER_KEY, startTestApp, type TestApp } from '../support/app.js';
import { ENGINE } from '../support/database.js';

describe(`idempotency store (${ENGINE})`, () => {
  const clock = new ManualClock('2026-01-01T00:00:00Z');
  let t: TestApp;
  beforeAll(async () => {
    t = await startTestApp({ idempotencyRetentionHours: 24 }, clock);
    await t.markets('DE');
  });
  afterAll(() => t.close());

  const customer = (externalId: string) => ({ externalId, market: 'DE' });
  const countCustomers = async (externalId: string) =>
    (await t.call('GET', `/v1/customers?externalId=${externalId}`)).json().data.length as number;

  it('a claim left by a request that died is taken over once its lease ran out', async () => {
    // What a crash leaves behind: the claim, and no effect (the two commit together).
    await t.app.services.db
      .insertInto('idempotency_keys')
      .values({
        api_key_id: BOOTSTRAP_KEY_ID,
        key: 'k-crashed',
        request_hash: (await hashOf('/v1/customers', customer('crash-1')))!,
        method: 'POST',
        path: '/v1/customers',
        state: 'in_flight',
        lock_token: 'dead-process',
        locked_until: new Date(clock.now().getTime() + CLAIM_LEASE_MS),
        response_status: null,
        response_body: null,
        created_at: clock.now(),
        completed_at: null,
      })
      .execute();
    const headers = { 'idempotency-key': 'k-crashed' };
    const early = await t.call('POST', '/v1/customers', customer('crash-1'), { headers });
    expect(early.statusCode).toBe(409);
    expect(early.json().code).toBe('idempotency_key_in_use');
    clock.advanceMs(CLAIM_LEASE_MS + 1);
    const retried = await t.call('POST', '/v1/customers', customer('crash-1'), { headers });
    expect(retried.statusCode).toBe(201);
    const replay = await t.call('POST', '/v1/customers', customer('crash-1'), { headers });
    expect(replay.headers['idempotent-replayed']).toBe('true');
    expect(replay.json().id).toBe(retried.json().id);
    expect(await countCustomers('crash-1')).toBe(1);
  });

  it('a request whose claim was taken over cannot commit its effect: its business write rolls back', async () => {
    const store = t.app.services.idempotency;
    const original = store.begin.bind(store);
    let requestId = '';
    // The request claims its key, then (as if it stalled past its lease) a retry takes the claim over
    // before the request's unit of work commits.
    store.begin = async (request, reply, apiKeyId, key) => {
      const run = await original(request, reply, apiKeyId, key);
      await t.app.services.db
        .updateTable('idempotency_keys')
        .set({ lock_token: 'the-retry-took-it' })
        .where('api_key_id', '=', apiKeyId)
        .where('key', '=', key)
        .execute();
      return run;
    };
    try {
      const res = await t.call('POST', '/v1/customers', customer('stolen-1'), {
        headers: { 'idempotency-key': 'k-stolen' },
      });
      expect(res.statusCode).toBe(409);
      expect(res.json().code).toBe('idempotency_key_in_use');
      requestId = res.headers['request-id'] as string;
    } finally {
      store.begin = original;
    }
    // The customer insert ran inside the unit of work and was rolled back with it, audit entry too.
    expect(await countCustomers('stolen-1')).toBe(0);
    const committed = await t.app.services.db
      .selectFrom('audit_log')
      .select('id')
      .where('request_id', '=', requestId)
      .where('status', '=', 201)
      .execute();
    expect(committed).toEqual([]);
  });

  it('a 5xx is not stored: the key is released and a retry runs the request', async () => {
    const headers = { 'idempotency-key': 'k-500' };
    const customers = t.app.services.customers;
    const original = customers.create.bind(customers);
    customers.create = async () => {
      throw new Error('database fell over');
    };
    try {
      const failed = await t.call('POST', '/v1/customers', customer('five-hundred'), { headers });
      expect(failed.statusCode).toBe(500);
      expect(failed.json().code).toBe('internal_error');
    } finally {
      customers.create = original;
    }
    const retried = await t.call('POST', '/v1/customers', customer('five-hundred'), { headers });
    expect(retried.statusCode).toBe(201);
    expect(retried.headers['idempotent-replayed']).toBeUndefined();
  });

  it('parallel retries of one request produce one effect', async () => {
    const headers = { 'idempotency-key': 'k-parallel' };
    const results = await Promise.all(
      Array.from({ length: 8 }, () => t.call('POST', '/v1/customers', customer('parallel-1'), { headers })),
    );
    const statuses = results.map((r) => r.statusCode);
    expect(statuses.filter((s) => s === 201).length).toBeGreaterThanOrEqual(1);
    expect(statuses.every((s) => s === 201 || s === 409)).toBe(true);
    const ids = new Set(results.filter((r) => r.statusCode === 201).map((r) => r.json().id));
    expect(ids.size).toBe(1);
    expect(await countCustomers('parallel-1')).toBe(1);
  });

  it('keys are kept at least 24 hours, then pruned', async () => {
    const headers = { 'idempotency-key': 'k-old' };
    expect((await t.call('POST', '/v1/customers', customer('prune-1'), { headers })).statusCode).toBe(201);
    clock.advanceMs(23 * 3_600_000);
    await t.app.services.idempotency.prune();
    expect(
      (await t.call('POST', '/v1/customers', customer('prune-1'), { headers })).headers[
        'idempotent-replayed'
      ],
    ).toBe('true');
    clock.advanceMs(2 * 3_600_000);
    const pruned = await t.app.services.idempotency.prune();
    expect(pruned).toBeGreaterThanOrEqual(1);
    const left = await sql<{
      n: number;
    }>`SELECT count(*)::int AS n FROM idempotency_keys WHERE key = 'k-old'`.execute(t.app.services.db);
    expect(left.rows[0]?.n).toBe(0);
  });

  it('the stored request fingerprint is keyed: it cannot confirm a guessed email without the master key', async () => {
    const body = { externalId: 'hash-1', market: 'DE', email: 'guess-me@example.com' };
    const res = await t.call('POST', '/v1/customers', body, { headers: { 'idempotency-key': 'k-hash' } });
    expect(res.statusCode).toBe(201);
    const row = await t.app.services.db
      .selectFrom('idempotency_keys')
      .select('request_hash')
      .where('key', '=', 'k-hash')
      .executeTakeFirstOrThrow();
    const request = { method: 'POST', url: '/v1/customers', body } as Parameters<typeof requestHash>[0];
    expect(row.request_hash).not.toBe(requestHash(request));
    // Personal fields (the email) are not part of the fingerprint at all.
    expect(row.request_hash).toBe(await hashOf('/v1/customers', { externalId: 'hash-1', market: 'DE' }));
    expect(row.request_hash).not.toBe(await hashOf('/v1/customers', body));
  });

  async function hashOf(url: string, body: unknown): Promise<string> {
    const key = MasterKey.parse(MASTER_KEY).derive('idempotency-request-hash');
    return requestHash({ method: 'POST', url, body } as Parameters<typeof requestHash>[0], key);
  }
});
