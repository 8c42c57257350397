import { createServer, type IncomingHttpHeaders } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { startTestApp, type TestApp } from '../support/app.js';
import { ENGINE } from '../support/database.js';

/**
 * Provider faults, bounded and on loopback: timeouts, 5xx, outages with failover and circuit
 * breaking, and webhooks that arrive twice, late or in the wrong order. Each converges on the
 * right state with no double effect.
 */
describe(`provider faults and webhooks (${ENGINE})`, () => {
  let t: TestApp;
  let n = 0;
  beforeAll(async () => {
    t = await startTestApp({ providerTimeoutMs: 1_000, breakerHalfOpenMs: 500 });
    const address = await t.app.server.listen({ port: 0, host: '127.0.0.1' });
    t.app.services.providers.setWebhookBase(address);
    await t.markets('SE');
  });
  afterAll(() => t.close());

  const sims = () => Object.fromEntries(t.app.services.providers.embedded.map((e) => [e.id, e]));
  const customer = async () => {
    const id = (
      await t.call('POST', '/v1/customers', { externalId: `fault-user-${++n}`, market: 'SE' })
    ).json().id as string;
    expect(
      (
        await t.call('POST', `/v1/customers/${id}/payment-methods`, {
          provider: 'simulator',
          token: 'tok_visa',
        })
      ).statusCode,
    ).toBe(201);
    return id;
  };
  const pay = (c: string, amount = 5000) =>
    t.call('POST', '/v1/payments', { customer: c, amount, currency: 'SEK', description: 'Gift card' });
  const capturedCount = (paymentId: string) =>
    t.app.services.providers.embedded
      .flatMap((e) => [...e.state.charges.values()])
      .filter((c) => c.idempotencyKey === paymentId && c.captured).length;
  const flushWebhooks = async () => {
    for (const e of t.app.services.providers.embedded)
      await e.app.inject({
        method: 'POST',
        url: '/admin/webhooks/flush',
        headers: { authorization: `Bearer ${e.apiKey}` },
      });
  };
  const eventually = async (check: () => Promise<boolean>, what: string) => {
    for (let i = 0; i < 100; i++) {
      if (await check()) return;
      await new Promise((r) => setTimeout(r, 50));
    }
    throw new Error(`never: ${what}`);
  };
  const trialBalanced = async () =>
    (await t.call('GET', '/v1/ledger/trial-balance?verify=true'))
      .json()
      .currencies.every((c: { balanced: boolean }) => c.balanced);

  it('a provider that times out after charging is retried with the same key: one charge', async () => {
    const c = await customer();
    const a = sims()['simulator-a']!;
    const webhookUrl = a.state.webhook.url;
    // No webhooks for now: only the reconciliation can learn what happened.
    a.state.webhook.url = undefined;
    a.state.faults = { ...a.state.faults, timeoutRate: 1, timeoutMs: 1_500 };
    try {
      const res = await pay(c);
      // Every attempt timed out: the outcome is unknown, so the API says so (202 processing),
      // and it does not fail over (simulator-a may hold the charge).
      expect(res.statusCode).toBe(202);
      expect(res.json()).toMatchObject({ status: 'processing', provider: 'simulator-a' });
      a.state.faults.timeoutRate = 0;
      // The reconciliation job scheduled with the payment runs (made due now instead of at the
      // charge deadline): the lookup finds the charge, so it need not wait for the deadline.
      const { db, jobs } = t.app.services;
      await db
        .updateTable('scheduled_jobs')
        .set({ run_at: new Date(Date.now() - 1) })
        .where('dedupe_key', 'like', `payments.reconcile:${res.json().id}:%`)
        .execute();
      expect(await jobs.runDue()).toBeGreaterThanOrEqual(1);
      expect((await t.call('GET', `/v1/payments/${res.json().id}`)).json().status).toBe('succeeded');
      const job = await db
        .selectFrom('scheduled_jobs')
        .selectAll()
        .where('dedupe_key', 'like', `payments.reconcile:${res.json().id}:%`)
        .executeTakeFirstOrThrow();
      expect(job.state).toBe('done');
      // Reconciling again, or the late webhook, change nothing.
      await t.app.services.payments.reconcile(res.json().id);
      expect(capturedCount(res.json().id)).toBe(1);
      expect(
        (await t.call('GET', `/v1/ledger/transactions?reference=${res.json().id}`)).json().data,
      ).toHaveLength(2);
    } finally {
      a.state.faults.timeoutRate = 0;
      a.state.webhook.url = webhookUrl;
    }
  });

  it('5xx answers are retried with the same key; payments succeed with exactly one charge each', async () => {
    const c = await customer();
    sims()['simulator-a']!.state.faults.errorRate = 0.5;
    try {
      const results = await Promise.all(Array.from({ length: 10 }, () => pay(c, 1000)));
      for (const r of results) {
        expect([201, 202]).toContain(r.statusCode);
        if (r.statusCode === 201) expect(capturedCount(r.json().id)).toBe(1);
      }
      sims()['simulator-a']!.state.faults.errorRate = 0;
      // Half the calls failing may have opened simulator-a's circuit (5 failures in a row): let it
      // half-open, so the reconciliation below reaches the provider.
      await new Promise((r) => setTimeout(r, 600));
      // The 202s settle once every attempt's deadline has passed (moved to now here): each is
      // either charged once and booked once, or failed with nothing charged and nothing booked.
      const { db, payments } = t.app.services;
      for (const r of results.filter((x) => x.statusCode === 202)) {
        await db
          .updateTable('payments')
          .set({ charge_deadline_at: new Date(Date.now() - 1) })
          .where('id', '=', r.json().id)
          .execute();
        await payments.reconcile(r.json().id);
      }
      await flushWebhooks();
      for (const r of results) {
        const p = (await t.call('GET', `/v1/payments/${r.json().id}`)).json();
        const entries = (await t.call('GET', `/v1/ledger/transactions?reference=${p.id}`)).json().data;
        if (p.status === 'succeeded') {
          expect(capturedCount(p.id)).toBe(1);
          expect(entries).toHaveLength(2);
        } else {
          expect(p.status).toBe('failed');
          expect(capturedCount(p.id)).toBe(0);
          expect(entries).toEqual([]);
        }
      }
      expect(await trialBalanced()).toBe(true);
    } finally {
      sims()['simulator-a']!.state.faults.errorRate = 0;
      // Leave simulator-a's circuit closed for the next tests: a probe after the half-open delay.
      await new Promise((r) => setTimeout(r, 600));
      expect((await pay(c, 100)).statusCode).toBe(201);
    }
  });

  it('after a 202, the same key with another amount is 422; with the same body it resumes: one charge', async () => {
    const c = await customer();
    const a = sims()['simulator-a']!;
    const webhookUrl = a.state.webhook.url;
    a.state.webhook.url = undefined;
    a.state.faults = { ...a.state.faults, timeoutRate: 1, timeoutMs: 1_500 };
    const headers = { 'idempotency-key': `resume-${c}` };
    const body = { customer: c, amount: 5000, currency: 'SEK', description: 'Gift card' };
    try {
      const first = await t.call('POST', '/v1/payments', body, { headers });
      expect(first.statusCode).toBe(202);
      a.state.faults.timeoutRate = 0;
      const other = await t.call('POST', '/v1/payments', { ...body, amount: 9000 }, { headers });
      expect(other.statusCode).toBe(422);
      expect(other.json().code).toBe('idempotency_key_reused');
      // Also once the idempotency record is pruned: the payment keeps the hash of its input.
      await t.app.services.db
        .deleteFrom('idempotency_keys')
        .where('key', '=', headers['idempotency-key'])
        .execute();
      expect((await t.call('POST', '/v1/payments', { ...body, amount: 9000 }, { headers })).statusCode).toBe(
        422,
      );
      // That 422 is not stored as the key's answer: the first body still resumes its payment.
      const same = await t.call('POST', '/v1/payments', body, { headers });
      expect(same.statusCode).toBe(201);
      expect(same.json()).toMatchObject({ id: first.json().id, amount: 5000, status: 'succeeded' });
      expect(capturedCount(first.json().id)).toBe(1);
    } finally {
      a.state.faults.timeoutRate = 0;
      a.state.webhook.url = webhookUrl;
    }
  });

  it('fails over to the next provider when one is down, opens its circuit, and returns once it recovers', async () => {
    const c = await customer();
    sims()['simulator-a']!.state.faults.outage = true;
    try {
      const first = await pay(c);
      expect(first.statusCode).toBe(201);
      expect(first.json()).toMatchObject({ status: 'succeeded', provider: 'simulator-b' });
      expect(first.json().routing.attempts).toEqual([
        { provider: 'simulator-a', outcome: 'unavailable' },
        { provider: 'simulator-b', outcome: 'succeeded' },
      ]);
      await pay(c);
      await pay(c);
      // Three consecutive failures opened simulator-a's circuit: it is skipped without a call.
      const before = sims()['simulator-a']!.state.requests;
      const skipped = await pay(c);
      expect(skipped.json().provider).toBe('simulator-b');
      expect(skipped.json().routing.skipped).toEqual([{ provider: 'simulator-a', reason: 'circuit_open' }]);
      expect(sims()['simulator-a']!.state.requests).toBe(before);
      const metrics = (await t.call('GET', '/metrics', undefined, { key: null })).body;
      expect(metrics).toMatch(
        /reprise_payment_routing_total\{provider="simulator-a",outcome="skipped_circuit_open"\} [1-9]/,
      );
      expect(metrics).toMatch(
        /reprise_payment_routing_total\{provider="simulator-b",outcome="failover"\} [1-9]/,
      );
    } finally {
      sims()['simulator-a']!.state.faults.outage = false;
    }
    await new Promise((r) => setTimeout(r, 600));
    const back = await pay(c);
    expect(back.json().provider).toBe('simulator-a');
  });

  it('a bad or missing webhook signature is refused; an unknown provider is 404', async () => {
    const body = JSON.stringify({ id: 'evt_x', type: 'charge.succeeded', data: { object: {} } });
    const bad = await t.app.server.inject({
      method: 'POST',
      url: '/v1/providers/simulator-a/webhooks',
      headers: {
        'content-type': 'application/json',
        'simulator-signature': `t=${Math.floor(Date.now() / 1000)},v1=00`,
      },
      payload: body,
    });
    expect(bad.statusCode).toBe(400);
    expect(bad.json().errors[0].path).toBe('signature');
    const none = await t.app.server.inject({
      method: 'POST',
      url: '/v1/providers/simulator-a/webhooks',
      headers: { 'content-type': 'application/json' },
      payload: body,
    });
    expect(none.statusCode).toBe(400);
    const unknown = await t.app.server.inject({
      method: 'POST',
      url: '/v1/providers/nope/webhooks',
      headers: { 'content-type': 'application/json' },
      payload: body,
    });
    expect(unknown.statusCode).toBe(404);
  });

  describe('webhook replay, staleness and tampering', () => {
    /** Captures the webhooks simulator-a sends for one payment, instead of delivering them. */
    const recordWebhooks = async (run: () => Promise<void>) => {
      const got: Array<{ body: string; headers: IncomingHttpHeaders }> = [];
      const server = createServer((req, res) => {
        let body = '';
        req.on('data', (chunk) => {
          body += chunk;
        });
        req.on('end', () => {
          got.push({ body, headers: req.headers });
          res.end('{}');
        });
      });
      await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
      const a = sims()['simulator-a']!;
      const webhookUrl = a.state.webhook.url;
      a.state.webhook.url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/`;
      try {
        await run();
        await flushWebhooks();
      } finally {
        a.state.webhook.url = webhookUrl;
        await new Promise((r) => server.close(r));
      }
      return got;
    };
    const deliver = (body: string, signature: string) =>
      t.app.server.inject({
        method: 'POST',
        url: '/v1/providers/simulator-a/webhooks',
        headers: { 'content-type': 'application/json', 'simulator-signature': signature },
        payload: body,
      });

    it('a replayed event is a duplicate; a tampered body or a stale timestamp is refused; nothing is booked twice', async () => {
      const c = await customer();
      let paymentId = '';
      const [event] = await recordWebhooks(async () => {
        paymentId = (await pay(c, 4200)).json().id;
      });
      expect(event).toBeDefined();
      const signature = String(event!.headers['simulator-signature']);
      const eventId = JSON.parse(event!.body).id as string;
      const first = await deliver(event!.body, signature);
      expect(first.statusCode).toBe(200);
      expect(first.json()).toEqual({ received: true, duplicate: false });
      const replay = await deliver(event!.body, signature);
      expect(replay.json()).toEqual({ received: true, duplicate: true });

      // Another event id and amount under the original signature.
      const tampered = event!.body.replace(eventId, `${eventId}x`).replace('"amount":4200', '"amount":1');
      const refused = await deliver(tampered, signature);
      expect(refused.statusCode).toBe(400);
      expect(refused.json().errors).toEqual([
        { path: 'signature', in: 'header', message: 'signature does not match' },
      ]);

      // The genuine event, delivered again more than 300 s after it was signed.
      vi.useFakeTimers({ toFake: ['Date'] });
      try {
        vi.setSystemTime(Date.now() + 301_000);
        const stale = await deliver(event!.body.replace(eventId, `${eventId}y`), signature);
        expect(stale.statusCode).toBe(400);
        expect(stale.json().errors[0].path).toBe('signature');
        const late = await deliver(event!.body, signature);
        expect(late.json().errors).toEqual([
          { path: 'signature', in: 'header', message: 'signature timestamp outside the tolerance' },
        ]);
      } finally {
        vi.useRealTimers();
      }
      const stored = await t.app.services.db
        .selectFrom('provider_events')
        .select('event_id')
        .where('event_id', 'like', `${eventId}%`)
        .execute();
      expect(stored.map((e) => e.event_id)).toEqual([eventId]);
      expect(
        (await t.call('GET', `/v1/ledger/transactions?reference=${paymentId}`)).json().data,
      ).toHaveLength(2);
      expect(capturedCount(paymentId)).toBe(1);
    });

    it('a webhook repeating what the payment records is acknowledged without a transaction, audited; one with a new fact is applied in one', async () => {
      const { payments } = t.app.services;
      const applied = vi.spyOn(payments, 'receiveEvent');
      try {
        const c = await customer();
        let paymentId = '';
        const [captured] = await recordWebhooks(async () => {
          paymentId = (await pay(c, 5100)).json().id;
        });
        const first = await deliver(captured!.body, String(captured!.headers['simulator-signature']));
        expect(first.json()).toEqual({ received: true, duplicate: false });
        const again = await deliver(captured!.body, String(captured!.headers['simulator-signature']));
        expect(again.json()).toEqual({ received: true, duplicate: true });
        // Our own call had booked the capture: nothing for the transaction path to do.
        expect(applied).not.toHaveBeenCalled();
        const eventId = JSON.parse(captured!.body).id as string;
        const stored = await t.app.services.db
          .selectFrom('provider_events')
          .select(['payment_id'])
          .where('event_id', '=', eventId)
          .execute();
        expect(stored).toEqual([{ payment_id: paymentId }]);
        const audited = (await t.call('GET', `/v1/audit-log?resource=${paymentId}`)).json().data as Array<{
          action: string;
          apiKey: string;
          status: number;
        }>;
        expect(audited.filter((e) => e.action === 'provider_webhooks.receive')).toEqual([
          expect.objectContaining({ apiKey: 'provider:simulator-a', status: 200 }),
          expect.objectContaining({ apiKey: 'provider:simulator-a', status: 200 }),
        ]);

        // A refund made at the provider directly is news: applied in a transaction, booked once.
        const sim = sims()['simulator-a']!;
        const charge = [...sim.state.charges.values()].find((ch) => ch.idempotencyKey === paymentId)!;
        const [refunded] = await recordWebhooks(async () => {
          const res = await sim.app.inject({
            method: 'POST',
            url: '/v1/refunds',
            headers: { authorization: `Bearer ${sim.apiKey}`, 'idempotency-key': `direct-${paymentId}` },
            payload: { charge: charge.id, amount: 1000 },
          });
          expect(res.statusCode).toBeLessThan(300);
        });
        const news = await deliver(refunded!.body, String(refunded!.headers['simulator-signature']));
        expect(news.json()).toEqual({ received: true, duplicate: false });
        expect(applied).toHaveBeenCalledTimes(1);
        expect((await t.call('GET', `/v1/payments/${paymentId}`)).json()).toMatchObject({
          status: 'partially_refunded',
          amountRefunded: 1000,
        });
      } finally {
        applied.mockRestore();
      }
    });
    it('a webhook for a payment its worker is still charging is acknowledged and left to the worker; after the lease it is applied', async () => {
      const { payments, db } = t.app.services;
      const applied = vi.spyOn(payments, 'receiveEvent');
      const ledgerOf = async (id: string) =>
        (await t.call('GET', `/v1/ledger/transactions?reference=${id}`)).json().data as unknown[];
      try {
        // The worker started and charged; the webhook the provider sent as it answered arrives
        // before the worker records the answer (as for a renewal batch, which settles together).
        const c = await customer();
        const started = await payments.start(
          { customer: c, amount: 4300, currency: 'SEK', description: 'Held by its worker' },
          null,
        );
        let charged: Awaited<ReturnType<typeof payments.charge>> | undefined;
        const [event] = await recordWebhooks(async () => {
          charged = await payments.charge(started.payment, started.lease);
        });
        expect(charged?.result?.status).toBe('succeeded');
        const signature = String(event!.headers['simulator-signature']);
        const early = await deliver(event!.body, signature);
        expect(early.json()).toEqual({ received: true, duplicate: false });
        expect(applied).not.toHaveBeenCalled();
        expect((await payments.get(started.payment.id)).status).toBe('processing');
        expect(await ledgerOf(started.payment.id)).toHaveLength(0);
        // The worker records its answer: booked once (capture and fee), the webhook's replay a duplicate.
        await db.transaction().execute((trx) => payments.finish(trx, charged!.payment, charged!.result!));
        expect((await payments.get(started.payment.id)).status).toBe('succeeded');
        expect(await ledgerOf(started.payment.id)).toHaveLength(2);
        expect((await deliver(event!.body, signature)).json()).toEqual({ received: true, duplicate: true });

        // A worker that died after charging: once its lease lapsed, the webhook is news, applied.
        const orphan = await payments.start(
          { customer: c, amount: 4400, currency: 'SEK', description: 'Its worker died' },
          null,
        );
        const [late] = await recordWebhooks(async () => {
          await payments.charge(orphan.payment, orphan.lease);
        });
        await db
          .updateTable('payments')
          .set({ charge_deadline_at: new Date(Date.now() - 1_000) })
          .where('id', '=', orphan.payment.id)
          .execute();
        const news = await deliver(late!.body, String(late!.headers['simulator-signature']));
        expect(news.json()).toEqual({ received: true, duplicate: false });
        expect(applied).toHaveBeenCalledTimes(1);
        expect((await payments.get(orphan.payment.id)).status).toBe('succeeded');
        expect(await ledgerOf(orphan.payment.id)).toHaveLength(2);
        expect(capturedCount(orphan.payment.id)).toBe(1);
        expect(await trialBalanced()).toBe(true);
      } finally {
        applied.mockRestore();
      }
    });
  });

  it('provider event ids are forgotten after the dedupe window, in bounded batches', async () => {
    const { db, payments, clock } = t.app.services;
    const now = clock.now().getTime();
    const day = 86_400_000;
    await db
      .insertInto('provider_events')
      .values([
        {
          provider: 'simulator-a',
          event_id: 'evt_old_1',
          type: 'x',
          payment_id: null,
          received_at: new Date(now - 31 * day),
        },
        {
          provider: 'simulator-a',
          event_id: 'evt_old_2',
          type: 'x',
          payment_id: null,
          received_at: new Date(now - 40 * day),
        },
        {
          provider: 'simulator-a',
          event_id: 'evt_recent',
          type: 'x',
          payment_id: null,
          received_at: new Date(now - 29 * day),
        },
      ])
      .execute();
    expect(await payments.pruneProviderEvents(1)).toBe(1);
    expect(await payments.pruneProviderEvents()).toBe(1);
    const left = await db
      .selectFrom('provider_events')
      .select('event_id')
      .where('event_id', 'in', ['evt_old_1', 'evt_old_2', 'evt_recent'])
      .execute();
    expect(left.map((e) => e.event_id)).toEqual(['evt_recent']);
  });

  it('disputes: duplicated and reordered webhooks converge on one dispute and one entry per fact', async () => {
    const c = await customer();
    const won = (await pay(c, 10_000)).json();
    const lost = (await pay(c, 20_000)).json();
    for (const s of t.app.services.providers.embedded)
      s.state.webhook = { ...s.state.webhook, duplicate: true, reorder: true };
    try {
      const sim = sims()[won.provider]!;
      const chargeOf = (id: string) => [...sim.state.charges.values()].find((x) => x.idempotencyKey === id)!;
      await sim.app.inject({
        method: 'POST',
        url: `/admin/charges/${chargeOf(won.id).id}/dispute`,
        headers: { authorization: `Bearer ${sim.apiKey}` },
        payload: { outcome: 'won' },
      });
      await sim.app.inject({
        method: 'POST',
        url: `/admin/charges/${chargeOf(lost.id).id}/dispute`,
        headers: { authorization: `Bearer ${sim.apiKey}` },
        payload: { outcome: 'lost' },
      });
      await flushWebhooks();
      await eventually(
        async () => (await t.call('GET', `/v1/payments/${won.id}`)).json().status === 'dispute_won',
        'dispute won',
      );
      await eventually(
        async () => (await t.call('GET', `/v1/payments/${lost.id}`)).json().status === 'dispute_lost',
        'dispute lost',
      );
    } finally {
      for (const s of t.app.services.providers.embedded)
        s.state.webhook = { ...s.state.webhook, duplicate: false, reorder: false };
    }
    const keys = async (id: string) =>
      (
        (await t.call('GET', `/v1/ledger/transactions?reference=${id}`)).json().data as Array<{
          idempotencyKey: string;
        }>
      ).map((x) => x.idempotencyKey.replace(/dp_\w+/, 'dp').replace(/pay_\w+/, 'pay'));
    expect((await keys(won.id)).sort()).toEqual([
      'dispute:dp:opened',
      'dispute:dp:won',
      'payment:pay:captured',
      'payment:pay:fee',
    ]);
    expect((await keys(lost.id)).sort()).toEqual([
      'dispute:dp:lost',
      'dispute:dp:opened',
      'payment:pay:captured',
      'payment:pay:fee',
    ]);
    const disputes = await t.app.services.db
      .selectFrom('disputes')
      .selectAll()
      .where('payment_id', 'in', [won.id, lost.id])
      .execute();
    expect(disputes.map((d) => d.status).sort()).toEqual(['lost', 'won']);
    // Lost: the 200.00 is written off as bad debt; the 15.00 dispute fee is a provider fee either way.
    const badDebt = (await t.call('GET', '/v1/ledger/accounts?type=bad_debt')).json().data[0];
    expect(badDebt).toMatchObject({ currency: 'SEK', balance: 20_000 });
    expect(await trialBalanced()).toBe(true);
  });

  it('a refund made at the provider arrives by webhook and is booked once', async () => {
    const c = await customer();
    const p = (await pay(c, 8000)).json();
    const sim = sims()[p.provider]!;
    sim.state.webhook.duplicate = true;
    try {
      const charge = [...sim.state.charges.values()].find((x) => x.idempotencyKey === p.id)!;
      await sim.app.inject({
        method: 'POST',
        url: '/v1/refunds',
        headers: {
          authorization: `Bearer ${sim.apiKey}`,
          'idempotency-key': 'dashboard-refund-1',
        },
        payload: { charge: charge.id, amount: 2000 },
      });
      await flushWebhooks();
      await eventually(
        async () => (await t.call('GET', `/v1/payments/${p.id}`)).json().amountRefunded === 2000,
        'refund booked',
      );
    } finally {
      sim.state.webhook.duplicate = false;
    }
    const stored = await t.app.services.db
      .selectFrom('refunds')
      .selectAll()
      .where('payment_id', '=', p.id)
      .execute();
    expect(stored).toHaveLength(1);
    const refunds = (await t.call('GET', `/v1/ledger/transactions?reference=${stored[0]!.id}`)).json().data;
    expect(refunds.map((x: { idempotencyKey: string }) => x.idempotencyKey)).toEqual([
      `refund:${stored[0]!.id}:succeeded`,
    ]);
    expect((await t.call('GET', `/v1/payments/${p.id}`)).json().status).toBe('partially_refunded');
  });

  it('the settlement report lists captured charges with fee, net and payout date', async () => {
    const sim = sims()['simulator-b']!;
    const csv = (
      await sim.app.inject({
        method: 'GET',
        url: '/v1/reports/settlement.csv',
        headers: { authorization: `Bearer ${sim.apiKey}` },
      })
    ).body;
    const [header, ...rows] = csv.trim().split('\n');
    expect(header).toBe('payment_id,charge_id,amount,fee,net,currency,payout_date');
    expect(rows.length).toBeGreaterThan(0);
    for (const row of rows) {
      const [paymentId, , amount, fee, net, currency, payout] = row.split(',');
      expect(paymentId).toMatch(/^pay_/);
      expect(Number(amount) - Number(fee)).toBe(Number(net));
      expect(currency).toBe('SEK');
      expect(payout).toMatch(/^\d{4}-\d{2}-\d{2}$/);
    }
  });
});
