import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestApp, type TestApp } from '../support/app.js';
import { ENGINE } from '../support/database.js';

/**
 * A 202 releases the key (outcome unknown). A retry with another body is refused by the payment
 * (422 idempotency_key_reused); that refusal must not become the key's answer, or the first
 * request's own retry would get 422 forever.
 */
describe(`idempotency key after a 202 and a wrong retry (${ENGINE})`, () => {
  let t: TestApp;
  beforeAll(async () => {
    t = await startTestApp({ providerTimeoutMs: 400 });
    await t.markets('SE');
  });
  afterAll(() => t.close());

  it('202, other amount → 422 (not stored), original body → resumes', async () => {
    const c = (await t.call('POST', '/v1/customers', { externalId: 'retry-user-1', market: 'SE' })).json()
      .id as string;
    expect(
      (
        await t.call('POST', `/v1/customers/${c}/payment-methods`, {
          provider: 'simulator',
          token: 'tok_visa',
        })
      ).statusCode,
    ).toBe(201);
    const a = t.app.services.providers.embedded.find((e) => e.id === 'simulator-a')!;
    a.state.faults = { ...a.state.faults, timeoutRate: 1, timeoutMs: 700 };
    const headers = { 'idempotency-key': `retry-${c}` };
    const body = { customer: c, amount: 5000, currency: 'SEK', description: 'Gift card' };
    try {
      const first = await t.call('POST', '/v1/payments', body, { headers });
      expect(first.statusCode).toBe(202);
      a.state.faults.timeoutRate = 0;
      const other = await t.call('POST', '/v1/payments', { ...body, amount: 9000 }, { headers });
      expect(other.statusCode).toBe(422);
      expect(other.json().code).toBe('idempotency_key_reused');
      const stored = await t.app.services.db
        .selectFrom('idempotency_keys')
        .select('state')
        .where('key', '=', headers['idempotency-key'])
        .execute();
      expect(stored).toEqual([]);
      const same = await t.call('POST', '/v1/payments', body, { headers });
      expect([201, 202]).toContain(same.statusCode);
      expect(same.json()).toMatchObject({ id: first.json().id, amount: 5000 });
    } finally {
      a.state.faults.timeoutRate = 0;
    }
  });
});
