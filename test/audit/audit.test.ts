import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BOOTSTRAP_KEY_ID } from '../../src/modules/api-keys/service.js';
import { startTestApp, type TestApp } from '../support/app.js';
import { ENGINE } from '../support/database.js';

describe(`audit log (${ENGINE})`, () => {
  let t: TestApp;
  beforeAll(async () => {
    t = await startTestApp();
  });
  afterAll(() => t.close());

  it('records every mutating call with key, action, resource, time and request id', async () => {
    const market = await t.call(
      'POST',
      '/v1/markets',
      { code: 'SE', currency: 'SEK', taxRateBps: 2500, taxInclusive: true },
      { headers: { 'x-request-id': 'req-audit-1' } },
    );
    const id = market.json().id;
    const entries = (await t.call('GET', `/v1/audit-log?resource=${id}`)).json().data;
    expect(entries).toHaveLength(1);
    expect(entries[0]).toMatchObject({
      apiKey: BOOTSTRAP_KEY_ID,
      action: 'markets.create',
      resourceType: 'market',
      resource: id,
      requestId: 'req-audit-1',
      status: 201,
    });
    expect(Date.parse(entries[0].at)).toBeGreaterThan(Date.now() - 60_000);
  });

  it('records refused mutations too, and not reads or replays', async () => {
    const writer = await t.keyWith('customers:write');
    const writerId = (await t.call('GET', '/v1/api-keys')).json().data.at(-1).id;
    await t.call(
      'POST',
      '/v1/markets',
      { code: 'NO', currency: 'NOK', taxRateBps: 2500, taxInclusive: true },
      { key: writer },
    );
    await t.call('GET', '/v1/customers', undefined, { key: writer });
    const headers = { 'idempotency-key': 'audit-replay' };
    await t.call('POST', '/v1/customers', { externalId: 'a-1', market: 'SE' }, { key: writer, headers });
    await t.call('POST', '/v1/customers', { externalId: 'a-1', market: 'SE' }, { key: writer, headers });
    const entries = (await t.call('GET', `/v1/audit-log?apiKey=${writerId}`)).json().data;
    expect(entries.map((e: { action: string; status: number }) => [e.action, e.status])).toEqual([
      ['markets.create', 403],
      ['customers.create', 201],
    ]);
  });

  it('is for admin keys only', async () => {
    const reader = await t.keyWith('catalog:read', 'customers:read');
    expect((await t.call('GET', '/v1/audit-log', undefined, { key: reader })).statusCode).toBe(403);
  });
});
