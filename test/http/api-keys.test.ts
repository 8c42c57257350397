import { sql } from 'kysely';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestApp, type TestApp } from '../support/app.js';
import { ENGINE } from '../support/database.js';

describe(`API keys (${ENGINE})`, () => {
  let t: TestApp;
  beforeAll(async () => {
    t = await startTestApp();
  });
  afterAll(() => t.close());

  it('creates a key whose secret is shown once and stored only as a hash', async () => {
    const res = await t.call('POST', '/v1/api-keys', {
      name: 'playback service',
      scopes: ['entitlements:read', 'catalog:read'],
    });
    expect(res.statusCode).toBe(201);
    const key = res.json();
    expect(key).toMatchObject({
      name: 'playback service',
      scopes: ['catalog:read', 'entitlements:read'],
      revokedAt: null,
    });
    expect(key.id).toMatch(/^key_/);
    expect(key.secret).toMatch(/^rpk_[A-Za-z0-9_-]{43}$/);
    const list = (await t.call('GET', '/v1/api-keys')).json().data;
    const listed = list.find((k: { id: string }) => k.id === key.id);
    expect(listed.secret).toBeUndefined();
    expect(listed.secretHint).toBe(`${key.secret.slice(0, 8)}…${key.secret.slice(-4)}`);
    const raw = await sql<{
      row: string;
    }>`SELECT api_keys::text AS row FROM api_keys WHERE id = ${key.id}`.execute(t.app.services.db);
    expect(raw.rows[0]?.row).not.toContain(key.secret);
    expect((await t.call('GET', '/v1/plans', undefined, { key: key.secret })).statusCode).toBe(200);
  });

  it('refuses unknown scopes naming the field', async () => {
    const res = await t.call('POST', '/v1/api-keys', { name: 'x', scopes: ['catalog:read', 'root'] });
    expect(res.statusCode).toBe(400);
    expect(res.json().errors[0].path).toBe('scopes[1]');
  });

  it('only admin keys manage keys', async () => {
    const catalogKey = await t.keyWith('catalog:write');
    expect((await t.call('GET', '/v1/api-keys', undefined, { key: catalogKey })).statusCode).toBe(403);
    expect(
      (await t.call('POST', '/v1/api-keys', { name: 'x', scopes: ['admin'] }, { key: catalogKey }))
        .statusCode,
    ).toBe(403);
  });

  it('a revoked key is refused at once', async () => {
    const created = (await t.call('POST', '/v1/api-keys', { name: 'temp', scopes: ['catalog:read'] })).json();
    expect((await t.call('GET', '/v1/markets', undefined, { key: created.secret })).statusCode).toBe(200);
    const revoked = await t.call('POST', `/v1/api-keys/${created.id}/revoke`);
    expect(revoked.statusCode).toBe(200);
    expect(revoked.json().revokedAt).not.toBeNull();
    const after = await t.call('GET', '/v1/markets', undefined, { key: created.secret });
    expect(after.statusCode).toBe(401);
    expect((await t.call('POST', '/v1/api-keys/key_01ARZ3NDEKTSV4RRFFQ69G5FAV/revoke')).statusCode).toBe(404);
  });
});
