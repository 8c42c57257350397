import { sql } from 'kysely';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestApp, type TestApp } from '../support/app.js';
import { dumpAll } from '../support/database.js';

let t: TestApp;
beforeAll(async () => {
  // The embedded default allows loopback targets (REPRISE_WEBHOOK_ALLOW_CIDRS).
  t = await startTestApp();
});
afterAll(async () => t?.close());

const create = (body: unknown, headers?: Record<string, string>) =>
  t.call('POST', '/v1/webhook-endpoints', body, headers ? { headers } : {});
const count = async () =>
  Number(
    (
      await sql<{
        n: number;
      }>`SELECT count(*)::int AS n FROM webhook_endpoints WHERE status <> 'deleted'`.execute(
        t.app.services.db,
      )
    ).rows[0]!.n,
  );

describe('webhook endpoints API', () => {
  it('creates an endpoint and shows its secret once', async () => {
    const res = await create({
      url: 'http://127.0.0.1:9/hook',
      eventTypes: ['subscription.*', 'invoice.paid'],
      description: 'billing sync',
    });
    expect(res.statusCode).toBe(201);
    const body = res.json();
    expect(body).toMatchObject({
      url: 'http://127.0.0.1:9/hook',
      eventTypes: ['subscription.*', 'invoice.paid'],
      description: 'billing sync',
      status: 'enabled',
      disabledReason: null,
    });
    expect(body.id).toMatch(/^we_[0-9A-Z]{26}$/);
    expect(body.secret).toMatch(/^whsec_[A-Za-z0-9_-]{43}$/);
    const got = await t.call('GET', `/v1/webhook-endpoints/${body.id}`);
    expect(got.statusCode).toBe(200);
    expect(got.json()).not.toHaveProperty('secret');
    expect(got.json()).toEqual(Object.fromEntries(Object.entries(body).filter(([k]) => k !== 'secret')));
    // Stored sealed: the secret appears nowhere in the database (audit log, idempotency, rows).
    expect(await dumpAll(t.app.services.db)).not.toContain(body.secret);
  });

  it('an idempotent replay answers the same endpoint with secret null; nothing stores it in clear', async () => {
    const headers = { 'idempotency-key': 'create-hook-1' };
    const first = await create({ url: 'http://127.0.0.1:9/replay', eventTypes: ['*'] }, headers);
    expect(first.statusCode).toBe(201);
    const replay = await create({ url: 'http://127.0.0.1:9/replay', eventTypes: ['*'] }, headers);
    expect(replay.statusCode).toBe(201);
    expect(replay.headers['idempotent-replayed']).toBe('true');
    expect(replay.json()).toEqual({ ...first.json(), secret: null });
    const rotated = await t.call(
      'POST',
      `/v1/webhook-endpoints/${first.json().id}/rotate-secret`,
      undefined,
      {
        headers: { 'idempotency-key': 'rotate-1' },
      },
    );
    expect(rotated.statusCode).toBe(200);
    const again = await t.call('POST', `/v1/webhook-endpoints/${first.json().id}/rotate-secret`, undefined, {
      headers: { 'idempotency-key': 'rotate-1' },
    });
    expect(again.json()).toEqual({ ...rotated.json(), secret: null });
    const dump = await dumpAll(t.app.services.db);
    expect(dump).not.toContain(first.json().secret);
    expect(dump).not.toContain(rotated.json().secret);
  });

  it('lists with cursors, disables, enables, rotates, deletes', async () => {
    const ids: string[] = [];
    for (let i = 0; i < 3; i++) {
      const res = await create({ url: `http://127.0.0.1:9/list/${i}`, eventTypes: ['invoice.*'] });
      ids.push(res.json().id);
    }
    const seen: string[] = [];
    let cursor: string | null = null;
    do {
      const page = await t.call('GET', `/v1/webhook-endpoints?limit=2${cursor ? `&cursor=${cursor}` : ''}`);
      expect(page.statusCode).toBe(200);
      expect(page.json().data.length).toBeLessThanOrEqual(2);
      for (const e of page.json().data) {
        expect(e).not.toHaveProperty('secret');
        seen.push(e.id);
      }
      cursor = page.json().nextCursor;
    } while (cursor);
    expect(seen).toEqual(expect.arrayContaining(ids));
    expect(new Set(seen).size).toBe(seen.length);

    const id = ids[0]!;
    const disabled = await t.call('POST', `/v1/webhook-endpoints/${id}/disable`);
    expect(disabled.json()).toMatchObject({ status: 'disabled', disabledReason: 'requested' });
    const enabled = await t.call('POST', `/v1/webhook-endpoints/${id}/enable`);
    expect(enabled.json()).toMatchObject({ status: 'enabled', disabledReason: null });

    const rotated = await t.call('POST', `/v1/webhook-endpoints/${id}/rotate-secret`);
    expect(rotated.statusCode).toBe(200);
    expect(rotated.json().secret).toMatch(/^whsec_/);
    const expires = Date.parse(rotated.json().previousSecretExpiresAt);
    expect(Math.abs(expires - (Date.now() + 24 * 3_600_000))).toBeLessThan(60_000);

    const deleted = await t.call('DELETE', `/v1/webhook-endpoints/${id}`);
    expect(deleted.statusCode).toBe(200);
    expect(deleted.json()).toEqual({ id, deleted: true });
    expect((await t.call('GET', `/v1/webhook-endpoints/${id}`)).statusCode).toBe(404);
    expect((await t.call('DELETE', `/v1/webhook-endpoints/${id}`)).statusCode).toBe(404);
    expect((await t.call('POST', `/v1/webhook-endpoints/${id}/enable`)).statusCode).toBe(404);
    expect((await t.call('GET', `/v1/webhook-endpoints/${id}/deliveries`)).statusCode).toBe(404);
  });

  it('bad input is a problem naming the field, and changes nothing', async () => {
    const before = await count();
    const cases: Array<[unknown, string]> = [
      [{ url: 'ftp://127.0.0.1/x', eventTypes: ['*'] }, 'url'],
      [{ url: 'http://user:pw@127.0.0.1/x', eventTypes: ['*'] }, 'url'],
      [{ url: 'http://169.254.169.254/latest/meta-data/', eventTypes: ['*'] }, 'url'],
      [{ url: 'http://2852039166/', eventTypes: ['*'] }, 'url'],
      [{ url: 'http://0xa9fea9fe/', eventTypes: ['*'] }, 'url'],
      [{ url: 'http://[::ffff:169.254.169.254]/', eventTypes: ['*'] }, 'url'],
      [{ url: 'http://[fe80::1]/', eventTypes: ['*'] }, 'url'],
      [{ url: 'http://10.0.0.1/', eventTypes: ['*'] }, 'url'],
      [{ url: 'http://224.0.0.1/', eventTypes: ['*'] }, 'url'],
      [{ url: 'http://0.0.0.0/', eventTypes: ['*'] }, 'url'],
      [{ url: `http://127.0.0.1/${'a'.repeat(2048)}`, eventTypes: ['*'] }, 'url'],
      [{ url: 'not a url', eventTypes: ['*'] }, 'url'],
      [{ url: 'http://127.0.0.1/x', eventTypes: ['invoice.paid', 'invoice.nope'] }, 'eventTypes[1]'],
      [{ url: 'http://127.0.0.1/x', eventTypes: ['nope.*'] }, 'eventTypes[0]'],
      [{ url: 'http://127.0.0.1/x', eventTypes: [] }, 'eventTypes'],
      [{ url: 'http://127.0.0.1/x', eventTypes: Array.from({ length: 51 }, () => '*') }, 'eventTypes'],
      [{ url: 'http://127.0.0.1/x', eventTypes: ['*'], description: 'x'.repeat(501) }, 'description'],
      [{ url: 'http://127.0.0.1/x', eventTypes: ['*'], secret: 'whsec_mine' }, 'secret'],
    ];
    for (const [body, field] of cases) {
      const res = await create(body);
      expect(res.statusCode, JSON.stringify(body).slice(0, 100)).toBe(400);
      expect(res.headers['content-type']).toMatch(/application\/problem\+json/);
      expect(res.json().errors.map((e: { path: string }) => e.path)).toContain(field);
    }
    expect(await count()).toBe(before);
    const bad = await t.call('POST', '/v1/events/evt_nope/redeliver', {});
    expect(bad.statusCode).toBe(404);
  });

  it('needs webhooks:write', async () => {
    const reader = await t.keyWith('events:read');
    const res = await t.call(
      'POST',
      '/v1/webhook-endpoints',
      { url: 'http://127.0.0.1/x', eventTypes: ['*'] },
      { key: reader },
    );
    expect(res.statusCode).toBe(403);
    expect((await t.call('GET', '/v1/webhook-endpoints', undefined, { key: reader })).statusCode).toBe(403);
    const writer = await t.keyWith('webhooks:write');
    expect((await t.call('GET', '/v1/webhook-endpoints', undefined, { key: writer })).statusCode).toBe(200);
  });

  it('at most 100 endpoints', async () => {
    const room = 100 - (await count());
    const now = new Date();
    // Filled straight into the table (sealed secrets are not needed to count).
    await sql`
      INSERT INTO webhook_endpoints (id, url, event_types, status, version, created_at, updated_at)
      SELECT 'we_FILL' || lpad(g::text, 22, '0'), 'http://127.0.0.1/fill', ARRAY['*'], 'enabled', 1, ${now}, ${now}
      FROM generate_series(1, ${room}) g`.execute(t.app.services.db);
    const res = await create({ url: 'http://127.0.0.1/x', eventTypes: ['*'] });
    expect(res.statusCode).toBe(409);
    expect(res.json().detail).toMatch(/At most 100 webhook endpoints/);
    expect(await count()).toBe(100);
    await sql`DELETE FROM webhook_endpoints WHERE id LIKE 'we_FILL%'`.execute(t.app.services.db);
  });
});
