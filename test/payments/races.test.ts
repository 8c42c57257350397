import { createHmac } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { transact } from '../../src/db/transaction.js';
import { startTestApp, type TestApp } from '../support/app.js';
import { ENGINE } from '../support/database.js';

/**
 * Races between a charge in flight, the reconciliation job and a second worker, made
 * deterministic by the simulator's `hold` fault: the charge is parked at the provider, the other
 * party runs, then the charge is released (issue 6 item 4).
 */
describe(`payment races (${ENGINE})`, () => {
  let t: TestApp;
  let n = 0;
  beforeAll(async () => {
    // Long enough that a held charge is still awaited when released.
    t = await startTestApp({ providerTimeoutMs: 5_000 });
    await t.markets('SE');
  });
  afterAll(() => t.close());

  const sim = (id: string) => t.app.services.providers.embedded.find((e) => e.id === id)!;
  const customer = async (token = 'tok_visa') => {
    const id = (
      await t.call('POST', '/v1/customers', { externalId: `race-user-${++n}`, market: 'SE' })
    ).json().id as string;
    expect(
      (await t.call('POST', `/v1/customers/${id}/payment-methods`, { provider: 'simulator', token }))
        .statusCode,
    ).toBe(201);
    return id;
  };
  const pay = (c: string, amount: number, headers: Record<string, string> = {}) =>
    t.call(
      'POST',
      '/v1/payments',
      { customer: c, amount, currency: 'SEK', description: 'Race' },
      { headers },
    );
  const held = async (id: string, count: number) => {
    for (let i = 0; i < 200 && sim(id).state.held.length < count; i++)
      await new Promise((r) => setTimeout(r, 10));
    expect(sim(id).state.held.length).toBe(count);
  };
  const release = (id: string) =>
    sim(id).app.inject({
      method: 'POST',
      url: '/admin/release',
      headers: { authorization: `Bearer ${sim(id).apiKey}` },
    });
  const paymentOf = async (c: string) => {
    const rows = await t.app.services.db
      .selectFrom('payments')
      .selectAll()
      .where('customer_id', '=', c)
      .execute();
    expect(rows).toHaveLength(1);
    return rows[0]!;
  };
  const charges = (paymentId: string) =>
    t.app.services.providers.embedded.flatMap((e) =>
      [...e.state.charges.values()]
        .filter((c) => c.idempotencyKey === paymentId)
        .map((c) => ({ sim: e.id, ...c })),
    );
  const ledgerKeys = async (reference: string) =>
    (
      (await t.call('GET', `/v1/ledger/transactions?reference=${reference}`)).json().data as Array<{
        idempotencyKey: string;
      }>
    )
      .map((x) => x.idempotencyKey)
      .sort();
  const trialBalanced = async () =>
    (await t.call('GET', '/v1/ledger/trial-balance?verify=true'))
      .json()
      .currencies.every((c: { balanced: boolean }) => c.balanced);

  it('the reconciliation job does not fail a payment whose charge is still in flight', async () => {
    const c = await customer();
    sim('simulator-a').state.faults.hold = true;
    const answer = pay(c, 5000);
    await held('simulator-a', 1);
    const p = await paymentOf(c);
    expect(p.status).toBe('processing');
    // The lookup finds nothing (the charge is parked, unprocessed): before the deadline that is no answer.
    await t.app.services.payments.reconcile(p.id);
    expect((await paymentOf(c)).status).toBe('processing');
    const followUp = await t.app.services.db
      .selectFrom('scheduled_jobs')
      .select(['run_at', 'state'])
      .where('dedupe_key', '=', `payments.reconcile:${p.id}:${p.charge_deadline_at!.getTime()}`)
      .executeTakeFirstOrThrow();
    expect(followUp.run_at.getTime()).toBe(p.charge_deadline_at!.getTime());
    await release('simulator-a');
    const res = await answer;
    expect(res.statusCode).toBe(201);
    expect(res.json().status).toBe('succeeded');
    expect(charges(p.id).filter((x) => x.captured)).toHaveLength(1);
    expect(await ledgerKeys(p.id)).toEqual([`payment:${p.id}:captured`, `payment:${p.id}:fee`]);
    expect(await trialBalanced()).toBe(true);
  });

  it('a capture after the deadline, of a payment the job failed, is booked and refunded in full', async () => {
    const c = await customer();
    sim('simulator-a').state.faults.hold = true;
    const answer = pay(c, 7000);
    await held('simulator-a', 1);
    const p = await paymentOf(c);
    // Time passes beyond every attempt's deadline (as for a provider that processes very late).
    await t.app.services.db
      .updateTable('payments')
      .set({ charge_deadline_at: new Date(t.app.services.clock.now().getTime() - 1_000) })
      .where('id', '=', p.id)
      .execute();
    await t.app.services.payments.reconcile(p.id);
    expect(await paymentOf(c)).toMatchObject({ status: 'failed', decline_code: 'provider_unreachable' });
    await release('simulator-a');
    // The client is told what everyone was told: failed (its money is on the way back).
    expect((await answer).statusCode).toBe(402);
    expect(await paymentOf(c)).toMatchObject({ status: 'failed', captured: true });
    // The money the provider took is on the books, and a late_capture refund gives it back.
    const refunds = await t.app.services.db
      .selectFrom('refunds')
      .selectAll()
      .where('payment_id', '=', p.id)
      .execute();
    expect(refunds).toMatchObject([{ amount_minor: 7000, reason: 'late_capture', status: 'pending' }]);
    expect(await t.app.services.jobs.runDue()).toBeGreaterThanOrEqual(1);
    const refund = (await t.call('GET', `/v1/refunds/${refunds[0]!.id}`)).json();
    expect(refund).toMatchObject({ status: 'succeeded', amount: 7000, reason: 'late_capture' });
    expect((await t.call('GET', `/v1/payments/${p.id}`)).json()).toMatchObject({
      status: 'refunded',
      amount: 7000,
      amountRefunded: 7000,
    });
    const [charge] = charges(p.id);
    expect(charge).toMatchObject({ captured: true, amountRefunded: 7000 });
    expect(await ledgerKeys(p.id)).toEqual([`payment:${p.id}:captured`, `payment:${p.id}:fee`]);
    expect(await ledgerKeys(refund.id)).toEqual([`refund:${refund.id}:succeeded`]);
    expect(await trialBalanced()).toBe(true);
  });

  it('a fully reserved payment answers 409 invalid_state to another refund', async () => {
    const c = await customer();
    const p = (await pay(c, 4000)).json();
    sim(p.provider).state.faults.hold = true;
    const first = t.call('POST', '/v1/refunds', { payment: p.id });
    await held(p.provider, 1);
    // The first refund is pending for the whole amount: nothing is left.
    const second = await t.call('POST', '/v1/refunds', { payment: p.id, amount: 1 });
    expect(second.statusCode).toBe(409);
    expect(second.json().code).toBe('invalid_state');
    await release(p.provider);
    expect((await first).statusCode).toBe(201);
  });

  it('the route of a charge is recorded even when the webhook settled the payment first', async () => {
    const c = await customer('tok_processingError');
    const { payments, db, providers } = t.app.services;
    const { payment, lease } = await payments.start(
      { customer: c, amount: 2500, currency: 'SEK', description: 'Flaky' },
      null,
    );
    const charged = await payments.charge(payment, lease);
    expect(charged.result).toMatchObject({ status: 'succeeded' });
    // The provider's webhook for the charge arrives before the synchronous answer is recorded.
    const snapshot = await providers.router.provider('simulator-a').lookup(payment.id);
    await transact(db, (trx) => payments.applySnapshot(trx, 'simulator-a', snapshot!));
    await transact(db, (trx) => payments.finish(trx, charged.payment, charged.result!));
    expect((await t.call('GET', `/v1/payments/${payment.id}`)).json()).toMatchObject({
      status: 'succeeded',
      routing: { chosen: 'simulator-a', attempts: [{ provider: 'simulator-a', outcome: 'succeeded' }] },
    });
  });

  it('a takeover racing a failover: the worker without the lease never charges another provider', async () => {
    const c = await customer();
    const key = `race-takeover-${c}`;
    sim('simulator-a').state.faults.hold = true;
    const original = pay(c, 6000, { 'idempotency-key': key });
    await held('simulator-a', 1);
    const p = await paymentOf(c);
    // The original request looks dead (its idempotency claim ran out) and simulator-a goes down.
    await t.app.services.db
      .updateTable('idempotency_keys')
      .set({ locked_until: new Date(t.app.services.clock.now().getTime() - 1) })
      .where('key', '=', key)
      .execute();
    sim('simulator-a').state.faults.outage = true;
    const takeover = await pay(c, 6000, { 'idempotency-key': key });
    // simulator-a refused the takeover's call, but the original's may still be in flight there:
    // no move to simulator-b, the outcome is unknown.
    expect(takeover.statusCode).toBe(202);
    expect(takeover.json()).toMatchObject({ id: p.id, status: 'processing', provider: 'simulator-a' });
    expect(charges(p.id).filter((x) => x.sim === 'simulator-b')).toEqual([]);
    sim('simulator-a').state.faults.outage = false;
    await release('simulator-a');
    await original;
    await t.app.services.payments.reconcile(p.id);
    expect((await t.call('GET', `/v1/payments/${p.id}`)).json()).toMatchObject({
      status: 'succeeded',
      provider: 'simulator-a',
    });
    expect(charges(p.id).map((x) => [x.sim, x.captured])).toEqual([['simulator-a', true]]);
    expect(await ledgerKeys(p.id)).toEqual([`payment:${p.id}:captured`, `payment:${p.id}:fee`]);
    expect(await trialBalanced()).toBe(true);
  });
});

describe(`failover after an ambiguous attempt (${ENGINE})`, () => {
  let t: TestApp;
  beforeAll(async () => {
    // Short provider timeouts: an attempt the simulator processes but answers late is ambiguous.
    t = await startTestApp({ providerTimeoutMs: 300, breakerHalfOpenMs: 200 });
    await t.markets('SE');
  });
  afterAll(() => t.close());

  const sim = (id: string) => t.app.services.providers.embedded.find((e) => e.id === id)!;

  it('a payment that may be charged at one provider is never charged at another', async () => {
    const c = (await t.call('POST', '/v1/customers', { externalId: 'ambiguous-1', market: 'SE' })).json().id;
    await t.call('POST', `/v1/customers/${c}/payment-methods`, { provider: 'simulator', token: 'tok_visa' });
    const headers = { 'idempotency-key': 'ambiguous-pay-1' };
    const body = { customer: c, amount: 3000, currency: 'SEK', description: 'Ambiguous' };
    // simulator-a charges, but its answers never arrive in time.
    Object.assign(sim('simulator-a').state.faults, { timeoutRate: 1, timeoutMs: 1_500 });
    const first = await t.call('POST', '/v1/payments', body, { headers });
    expect(first.statusCode).toBe(202);
    const id = first.json().id as string;
    expect(first.json().provider).toBe('simulator-a');
    // Then simulator-a goes down, and the charge's deadline passes (no attempt can still land).
    Object.assign(sim('simulator-a').state.faults, { timeoutRate: 0, outage: true });
    await t.app.services.db
      .updateTable('payments')
      .set({ charge_deadline_at: new Date(t.app.services.clock.now().getTime() - 1_000) })
      .where('id', '=', id)
      .execute();
    const retry = await t.call('POST', '/v1/payments', body, { headers });
    // simulator-a may hold the money and cannot say: the payment stays there, unknown.
    expect(retry.statusCode).toBe(202);
    expect(retry.json()).toMatchObject({ id, provider: 'simulator-a', status: 'processing' });
    const chargesAt = (simId: string) =>
      [...sim(simId).state.charges.values()].filter((x) => x.idempotencyKey === id);
    expect(chargesAt('simulator-b')).toEqual([]);
    // simulator-a is back: the retry converges on the charge it held; booked once.
    sim('simulator-a').state.faults.outage = false;
    await new Promise((r) => setTimeout(r, 1_600));
    const last = await t.call('POST', '/v1/payments', body, { headers });
    expect(last.statusCode).toBe(201);
    expect(last.json()).toMatchObject({ id, status: 'succeeded', provider: 'simulator-a' });
    expect(chargesAt('simulator-a')).toHaveLength(1);
    expect(chargesAt('simulator-b')).toEqual([]);
    const ledger = (await t.call('GET', `/v1/ledger/transactions?reference=${id}`)).json().data as Array<{
      idempotencyKey: string;
    }>;
    expect(ledger.map((e) => e.idempotencyKey).sort()).toEqual([
      `payment:${id}:captured`,
      `payment:${id}:fee`,
    ]);
  });

  it('a provider refund is linked to ours by its key, never by its amount', async () => {
    const c = (await t.call('POST', '/v1/customers', { externalId: 'refund-link-1', market: 'SE' })).json()
      .id;
    await t.call('POST', `/v1/customers/${c}/payment-methods`, { provider: 'simulator', token: 'tok_visa' });
    const paid = await t.call('POST', '/v1/payments', {
      customer: c,
      amount: 10_000,
      currency: 'SEK',
      description: 'Refunds',
    });
    expect(paid.statusCode).toBe(201);
    const payment = paid.json().id as string;
    const provider = paid.json().provider as string;
    // R1 never reaches the provider (outage); R2 of the same amount is processed, its answer lost.
    sim(provider).state.faults.outage = true;
    const r1 = await t.call(
      'POST',
      '/v1/refunds',
      { payment, amount: 500 },
      { headers: { 'idempotency-key': 'r1' } },
    );
    expect(r1.statusCode).toBe(202);
    Object.assign(sim(provider).state.faults, { outage: false, timeoutRate: 1, timeoutMs: 1_500 });
    await new Promise((r) => setTimeout(r, 300));
    const r2 = await t.call(
      'POST',
      '/v1/refunds',
      { payment, amount: 500 },
      { headers: { 'idempotency-key': 'r2' } },
    );
    expect(r2.statusCode).toBe(202);
    sim(provider).state.faults.timeoutRate = 0;
    await new Promise((r) => setTimeout(r, 1_600));
    // The provider's news (a webhook or the job's lookup) arrives: it names R2, not "a 500".
    const snapshot = await t.app.services.providers.router.provider(provider).lookup(payment);
    await transact(t.app.services.db, (trx) =>
      t.app.services.payments.applySnapshot(trx, provider, snapshot!),
    );
    const status = async (id: string) => (await t.call('GET', `/v1/refunds/${id}`)).json().status;
    expect(await status(r2.json().id)).toBe('succeeded');
    expect(await status(r1.json().id)).toBe('pending');
    // R2's retry answers its refund; R1's retry now reaches the provider and refunds once more.
    const again = await t.call(
      'POST',
      '/v1/refunds',
      { payment, amount: 500 },
      { headers: { 'idempotency-key': 'r2' } },
    );
    expect(again.statusCode).toBe(201);
    expect(again.json().id).toBe(r2.json().id);
    await new Promise((r) => setTimeout(r, 300));
    const r1again = await t.call(
      'POST',
      '/v1/refunds',
      { payment, amount: 500 },
      { headers: { 'idempotency-key': 'r1' } },
    );
    expect(r1again.statusCode).toBe(201);
    expect((await t.call('GET', `/v1/payments/${payment}`)).json().amountRefunded).toBe(1_000);
    const atProvider = [...sim(provider).state.charges.values()].find((x) => x.idempotencyKey === payment)!;
    expect(atProvider.refunds.map((r) => r.amount)).toEqual([500, 500]);
  });

  it('a signed event of the wrong shape is refused with 400, never a 500', async () => {
    const a = sim('simulator-a');
    const signed = (body: string) => {
      const ts = Math.floor(Date.now() / 1000);
      const v1 = createHmac('sha256', a.webhookSecret).update(`${ts}.${body}`).digest('hex');
      return { 'simulator-signature': `t=${ts},v1=${v1}`, 'content-type': 'application/json' };
    };
    const charge = {
      id: 'ch_x',
      amount: 100,
      currency: 'SEK',
      status: 'succeeded',
      captured: true,
      fee: 33,
      declineCode: null,
      idempotencyKey: 'pay_unknown',
      refunds: [{ id: 're_x', amount: '100' }],
      dispute: null,
    };
    for (const object of [
      charge,
      { ...charge, refunds: [{ id: 're_x', amount: 1e15 }] },
      { ...charge, amount: -1 },
    ]) {
      const body = JSON.stringify({ id: `evt_${Math.random()}`, type: 'charge.refunded', data: { object } });
      const res = await t.app.server.inject({
        method: 'POST',
        url: '/v1/providers/simulator-a/webhooks',
        headers: signed(body),
        payload: body,
      });
      expect(res.statusCode, res.body).toBe(400);
      expect(res.json().errors[0]).toMatchObject({ path: 'body', in: 'body' });
    }
  });
});
