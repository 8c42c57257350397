import { createHmac } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildSimulator } from '../../src/providers/simulator/server.js';
import { startTestApp, type TestApp } from '../support/app.js';
import { ENGINE } from '../support/database.js';

/** The constants the simulators used to fall back to: anyone could read them in the source. */
const OLD_WEBHOOK_SECRET = 'whsec_simulator_development';
const OLD_API_KEY = 'sk_simulator_development';

const signed = (secret: string, body: string) => {
  const t = Math.floor(Date.now() / 1000);
  return `t=${t},v1=${createHmac('sha256', secret).update(`${t}.${body}`).digest('hex')}`;
};

describe(`simulator secrets (${ENGINE})`, () => {
  let t: TestApp;
  beforeAll(async () => {
    t = await startTestApp({ providerTimeoutMs: 1_000 });
    await t.markets('SE');
  });
  afterAll(() => t.close());

  const sim = (id: string) => t.app.services.providers.embedded.find((e) => e.id === id)!;

  it('in-process simulators get random secrets of their own, none from the source', () => {
    const [a, b] = t.app.services.providers.embedded;
    for (const s of [a!, b!]) {
      expect(s.apiKey).toMatch(/^sk_sim_[0-9a-f]{48}$/);
      expect(s.webhookSecret).toMatch(/^whsec_[0-9a-f]{48}$/);
    }
    expect(a!.apiKey).not.toBe(b!.apiKey);
    expect(a!.webhookSecret).not.toBe(b!.webhookSecret);
  });

  it('a charge.succeeded forged with the old constant secret is refused: the payment stays authorized', async () => {
    const c = (await t.call('POST', '/v1/customers', { externalId: 'forge-1', market: 'SE' })).json().id;
    expect(
      (
        await t.call('POST', `/v1/customers/${c}/payment-methods`, {
          provider: 'simulator',
          token: 'tok_visa',
        })
      ).statusCode,
    ).toBe(201);
    const p = (
      await t.call('POST', '/v1/payments', {
        customer: c,
        amount: 4900,
        currency: 'SEK',
        description: 'held',
        capture: false,
      })
    ).json();
    expect(p.status).toBe('authorized');
    const a = sim(p.provider);
    const charge = [...a.state.charges.values()].find((x) => x.idempotencyKey === p.id)!;
    const forged = JSON.stringify({
      id: 'evt_forged_1',
      type: 'charge.succeeded',
      created: Math.floor(Date.now() / 1000),
      data: { object: { ...charge, status: 'succeeded', captured: true, fee: 0 } },
    });
    const post = (signature: string) =>
      t.app.server.inject({
        method: 'POST',
        url: `/v1/providers/${p.provider}/webhooks`,
        headers: { 'content-type': 'application/json', 'simulator-signature': signature },
        payload: forged,
      });
    const refused = await post(signed(OLD_WEBHOOK_SECRET, forged));
    expect(refused.statusCode).toBe(400);
    expect(refused.json()).toMatchObject({ code: 'validation_failed', errors: [{ path: 'signature' }] });
    const after = (await t.call('GET', `/v1/payments/${p.id}`)).json();
    expect(after.status).toBe('authorized');
    expect(
      (await t.call('GET', `/v1/ledger/transactions?reference=${p.id}`)).json().data as unknown[],
    ).toEqual([]);
    // The same event signed with the simulator's real secret is accepted: the forgery above was
    // refused for its secret alone.
    const genuine = await post(signed(a.webhookSecret, forged));
    expect(genuine.statusCode).toBe(200);
    expect((await t.call('GET', `/v1/payments/${p.id}`)).json().status).toBe('succeeded');
  });

  it('the simulator answers nothing, admin endpoints included, without its API key', async () => {
    const a = sim('simulator-a');
    const requests = [
      { method: 'POST' as const, url: '/admin/faults', payload: { outage: true } },
      { method: 'POST' as const, url: '/admin/webhooks', payload: { url: 'http://attacker.example/' } },
      { method: 'GET' as const, url: '/admin/state' },
      { method: 'POST' as const, url: '/admin/webhooks/flush' },
      { method: 'POST' as const, url: '/admin/charges/ch_x/dispute', payload: { outcome: 'lost' } },
      // Other spellings of the same paths reach the same routes: still refused.
      { method: 'POST' as const, url: '/%61dmin/faults', payload: { outage: true } },
      { method: 'GET' as const, url: '/admin//state' },
      { method: 'GET' as const, url: '/v1/reports/settlement.csv' },
    ];
    for (const authorization of [undefined, `Bearer ${OLD_API_KEY}`, `Bearer ${sim('simulator-b').apiKey}`]) {
      for (const r of requests) {
        const res = await a.app.inject({ ...r, headers: authorization ? { authorization } : {} });
        expect(res.statusCode, `${r.method} ${r.url} with ${authorization}`).toBe(401);
      }
    }
    expect(a.state.faults.outage).toBe(false);
    expect(a.state.webhook.url).not.toBe('http://attacker.example/');
    const ok = await a.app.inject({
      method: 'GET',
      url: '/admin/state',
      headers: { authorization: `Bearer ${a.apiKey}` },
    });
    expect(ok.statusCode).toBe(200);
  });

  it('a standalone simulator refuses the wrong key on its payment API too', async () => {
    const { app } = await buildSimulator({
      apiKey: 'sk_test_0123456789abcdef',
      webhookSecret: 'whsec_test_0123456789abcdef',
    });
    try {
      const res = await app.inject({
        method: 'POST',
        url: '/v1/payment_methods',
        headers: { authorization: `Bearer ${OLD_API_KEY}`, 'idempotency-key': 'k1' },
        payload: { token: 'tok_visa' },
      });
      expect(res.statusCode).toBe(401);
      const good = await app.inject({
        method: 'POST',
        url: '/v1/payment_methods',
        headers: { authorization: 'Bearer sk_test_0123456789abcdef', 'idempotency-key': 'k1' },
        payload: { token: 'tok_visa' },
      });
      expect(good.statusCode).toBe(200);
    } finally {
      await app.close();
    }
  });
});
