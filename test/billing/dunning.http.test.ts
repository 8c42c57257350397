import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { startTestApp, type TestApp } from '../support/app.js';
import { ENGINE } from '../support/database.js';

/**
 * Dunning through HTTP on test clocks: a failed renewal is retried 1, 3, 5 and 7 days after the
 * first failure; entitled while past_due; the last failure cancels, makes the invoice uncollectible
 * and writes it off; a retry or `POST /v1/invoices/{id}/pay` that succeeds keeps the period.
 */
describe(`billing: dunning and invoice pay (${ENGINE})`, () => {
  let t: TestApp;
  let n = 0;

  beforeAll(async () => {
    t = await startTestApp({ providerTimeoutMs: 1_000 });
    await t.markets('US', 'SE');
    const ok = async (url: string, body: unknown) => {
      const res = await t.call('POST', url, body);
      if (res.statusCode !== 201) throw new Error(`${url}: ${res.body}`);
    };
    await ok('/v1/products', { code: 'music', name: 'Music', features: ['ad-free'], seats: 1 });
    await ok('/v1/plans', {
      code: 'music-monthly',
      product: 'music',
      billingPeriod: 'month',
      trialDays: 0,
      prices: [
        { currency: 'USD', amount: 1199 },
        { currency: 'SEK', amount: 10900 },
      ],
    });
  });
  afterAll(() => t.close());

  const customer = async (market: 'US' | 'SE', at: string) => {
    const clock = (await t.call('POST', '/v1/test-clocks', { frozenTime: at })).json();
    const externalId = `dunning-user-${++n}`;
    const res = await t.call('POST', '/v1/customers', { externalId, market, testClock: clock.id });
    expect(res.statusCode).toBe(201);
    const id = res.json().id as string;
    await attach(id, 'tok_visa');
    return { id, externalId, clock: clock.id as string };
  };
  const attach = async (customerId: string, token: string, makeDefault = false) => {
    const pm = await t.call('POST', `/v1/customers/${customerId}/payment-methods`, {
      provider: 'simulator',
      token,
    });
    expect(pm.statusCode).toBe(201);
    const id = pm.json().id as string;
    if (makeDefault) {
      expect(
        (await t.call('POST', `/v1/customers/${customerId}/payment-methods/${id}/default`)).statusCode,
      ).toBe(200);
    }
    return id;
  };
  const advance = async (clock: string, frozenTime: string) => {
    const res = await t.call('POST', `/v1/test-clocks/${clock}/advance`, { frozenTime });
    expect(res.statusCode).toBe(200);
  };
  const subscribe = async (customerId: string) => {
    const res = await t.call('POST', '/v1/subscriptions', { customer: customerId, plan: 'music-monthly' });
    expect(res.statusCode).toBe(201);
    return res.json() as { id: string };
  };
  const getSub = async (id: string) => (await t.call('GET', `/v1/subscriptions/${id}`)).json();
  const invoicesOf = async (subscription: string) =>
    (await t.call('GET', `/v1/invoices?subscription=${subscription}`)).json().data as Array<
      Record<string, unknown> & { id: string; status: string; payment: string | null }
    >;
  const paymentsOf = async (customerId: string) =>
    (await t.call('GET', `/v1/payments?customer=${customerId}&limit=100`)).json().data as Array<{
      status: string;
      amount: number;
      reference: string | null;
    }>;
  const entitled = async (externalId: string) =>
    (await t.call('GET', `/v1/entitlements/${externalId}`)).json().active as boolean;
  const eventsOf = async (id: string, group: string) =>
    (
      (await t.call('GET', `/v1/events?type=${group}.*&limit=100`)).json().data as Array<{
        type: string;
        data: { object: { id: string } };
      }>
    )
      .filter((e) => e.data.object.id === id)
      .map((e) => e.type);
  const expectEvents = (id: string, group: string, types: string[]) =>
    vi.waitFor(async () => expect(await eventsOf(id, group)).toEqual(types), {
      timeout: 10_000,
      interval: 50,
    });
  const trialBalanced = async () => {
    const currencies = (await t.call('GET', '/v1/ledger/trial-balance?verify=true')).json()
      .currencies as Array<{ debits: number; credits: number; balanced: boolean }>;
    return currencies.every((c) => c.balanced && c.debits === c.credits);
  };
  const ledgerOf = async (reference: string) =>
    (await t.call('GET', `/v1/ledger/transactions?reference=${reference}&limit=100`)).json().data as Array<{
      description: string;
      postings: Array<{ account: string; debit?: number; credit?: number }>;
    }>;

  it('retries on days 1, 3, 5 and 7, entitled meanwhile; the last failure cancels, invoice uncollectible, written off', async () => {
    const c = await customer('US', '2027-01-15T00:00:00Z');
    const sub = await subscribe(c.id);
    await attach(c.id, 'tok_chargeCustomerFail', true);

    await advance(c.clock, '2027-02-15T00:00:00Z');
    expect(await getSub(sub.id)).toMatchObject({
      status: 'past_due',
      currentPeriodStart: '2027-02-15T00:00:00Z',
    });
    const renewal = (await invoicesOf(sub.id))[1]!;
    const renewalPayments = async () => (await paymentsOf(c.id)).filter((p) => p.reference === renewal.id);
    expect(await renewalPayments()).toHaveLength(1);

    // Each retry day runs one more attempt; the subscription stays past_due and entitled.
    for (const [day, attempts] of [
      ['2027-02-16T00:00:00Z', 2],
      ['2027-02-17T23:00:00Z', 2],
      ['2027-02-18T00:00:00Z', 3],
      ['2027-02-20T00:00:00Z', 4],
      ['2027-02-21T23:59:00Z', 4],
    ] as const) {
      await advance(c.clock, day);
      expect((await renewalPayments()).map((p) => p.status)).toEqual(Array(attempts).fill('failed'));
      expect((await getSub(sub.id)).status).toBe('past_due');
      expect(await entitled(c.externalId)).toBe(true);
    }

    // Feb 22 = the first failure + 7 days: the last retry fails.
    await advance(c.clock, '2027-02-22T00:00:00Z');
    expect(await renewalPayments()).toHaveLength(5);
    expect(await getSub(sub.id)).toMatchObject({
      status: 'canceled',
      endedAt: '2027-02-22T00:00:00Z',
      currentPeriodEnd: '2027-03-15T00:00:00Z',
    });
    expect(await entitled(c.externalId)).toBe(false);
    const [, written] = await invoicesOf(sub.id);
    expect(written).toMatchObject({ status: 'uncollectible', amountDue: 1199, total: 1199 });
    const writeOff = (await ledgerOf(renewal.id)).find((tx) => tx.description.includes('written off'));
    expect(writeOff?.postings).toEqual(
      expect.arrayContaining([
        expect.objectContaining({ account: expect.stringMatching(/^bad_debt:/), debit: 1199 }),
        expect.objectContaining({ account: expect.stringMatching(/^customer_receivable:/), credit: 1199 }),
      ]),
    );
    // Nothing more is tried or billed.
    await advance(c.clock, '2027-04-01T00:00:00Z');
    expect(await renewalPayments()).toHaveLength(5);
    expect(await invoicesOf(sub.id)).toHaveLength(2);
    await expectEvents(sub.id, 'subscription', [
      'subscription.created',
      'subscription.activated',
      'subscription.past_due',
      'subscription.canceled',
    ]);
    // entitlement.updated on each change of what it entitles: activated, renewed (past_due: the
    // grace), canceled (nothing).
    await vi.waitFor(
      async () => {
        const ents = (
          (await t.call('GET', '/v1/events?type=entitlement.updated&limit=100')).json().data as Array<{
            data: {
              object: { subscription: string; owner: string; active: boolean; validUntil: string | null };
            };
          }>
        )
          .map((e) => e.data.object)
          .filter((o) => o.subscription === sub.id);
        expect(ents.map((o) => [o.owner, o.active, o.validUntil])).toEqual([
          [c.externalId, true, '2027-02-16T00:00:00Z'],
          // past_due from Feb 15: the grace ends with the last retry (Feb 22) plus the renewal margin.
          [c.externalId, true, '2027-02-23T00:00:00Z'],
          [c.externalId, false, null],
        ]);
      },
      { timeout: 10_000, interval: 50 },
    );
    await expectEvents(renewal.id, 'invoice', [
      'invoice.created',
      'invoice.finalized',
      'invoice.uncollectible',
    ]);
    expect(await trialBalanced()).toBe(true);
  });

  it('a retry that succeeds after the card is updated: active again, the period unchanged, renewals go on', async () => {
    const c = await customer('SE', '2027-01-15T00:00:00Z');
    const sub = await subscribe(c.id);
    await attach(c.id, 'tok_chargeCustomerFail', true);
    await advance(c.clock, '2027-02-16T12:00:00Z');
    expect((await getSub(sub.id)).status).toBe('past_due');

    await attach(c.id, 'tok_mastercard', true);
    await advance(c.clock, '2027-02-18T00:00:00Z');
    expect(await getSub(sub.id)).toMatchObject({
      status: 'active',
      currentPeriodStart: '2027-02-15T00:00:00Z',
      currentPeriodEnd: '2027-03-15T00:00:00Z',
    });
    const [, renewal] = await invoicesOf(sub.id);
    expect(renewal).toMatchObject({ status: 'paid', total: 10900, tax: 2180, amountDue: 10900 });
    const payments = (await paymentsOf(c.id)).filter((p) => p.reference === renewal!.id);
    expect(payments.map((p) => p.status)).toEqual(['failed', 'failed', 'succeeded']);

    // Later retry days find the invoice paid; the next renewal is on the same grid.
    await advance(c.clock, '2027-03-15T00:00:00Z');
    const all = await invoicesOf(sub.id);
    expect(all.map((i) => [i.status, i.periodStart])).toEqual([
      ['paid', '2027-01-15T00:00:00Z'],
      ['paid', '2027-02-15T00:00:00Z'],
      ['paid', '2027-03-15T00:00:00Z'],
    ]);
    expect((await paymentsOf(c.id)).filter((p) => p.reference === renewal!.id)).toHaveLength(3);
    await expectEvents(sub.id, 'subscription', [
      'subscription.created',
      'subscription.activated',
      'subscription.past_due',
      'subscription.activated',
      'subscription.renewed',
    ]);
    expect(await trialBalanced()).toBe(true);
  });

  it('POST /v1/invoices/{id}/pay: a decline is 402 with its code; with a new card it pays, once; a paid invoice is 409', async () => {
    const c = await customer('US', '2027-05-10T00:00:00Z');
    const sub = await subscribe(c.id);
    await attach(c.id, 'tok_chargeCustomerFail', true);
    await advance(c.clock, '2027-06-10T06:00:00Z');
    const renewal = (await invoicesOf(sub.id))[1]!;
    expect(renewal.status).toBe('open');

    const declined = await t.call('POST', `/v1/invoices/${renewal.id}/pay`, {});
    expect(declined.statusCode).toBe(402);
    expect(declined.headers['content-type']).toContain('application/problem+json');
    expect(declined.json()).toMatchObject({
      code: 'payment_declined',
      declineCode: 'card_declined',
      invoice: renewal.id,
      subscription: sub.id,
    });
    expect((await getSub(sub.id)).status).toBe('past_due');

    const visa = await attach(c.id, 'tok_visa');
    const paid = await t.call(
      'POST',
      `/v1/invoices/${renewal.id}/pay`,
      { paymentMethod: visa },
      {
        headers: { 'idempotency-key': `pay-${renewal.id}` },
      },
    );
    expect(paid.statusCode).toBe(200);
    expect(paid.json()).toMatchObject({ id: renewal.id, status: 'paid', amountDue: 1199 });
    expect(await getSub(sub.id)).toMatchObject({
      status: 'active',
      currentPeriodStart: '2027-06-10T00:00:00Z',
      currentPeriodEnd: '2027-07-10T00:00:00Z',
    });
    // The same request again is replayed; another one is refused: the invoice is paid.
    const replay = await t.call(
      'POST',
      `/v1/invoices/${renewal.id}/pay`,
      { paymentMethod: visa },
      {
        headers: { 'idempotency-key': `pay-${renewal.id}` },
      },
    );
    expect(replay.statusCode).toBe(200);
    expect(replay.headers['idempotent-replayed']).toBe('true');
    const again = await t.call('POST', `/v1/invoices/${renewal.id}/pay`, {});
    expect(again.statusCode).toBe(409);
    expect(again.json().code).toBe('invalid_state');

    // The dunning retries that were scheduled find the invoice paid: nothing more is charged.
    await advance(c.clock, '2027-06-20T00:00:00Z');
    const statuses = (await paymentsOf(c.id)).filter((p) => p.reference === renewal.id).map((p) => p.status);
    expect(statuses).toEqual(['failed', 'failed', 'succeeded']);
    expect((await getSub(sub.id)).status).toBe('active');
    expect(await trialBalanced()).toBe(true);
  });

  it('POST /v1/invoices/{id}/pay: unknown invoice 404, bad paymentMethod 400 naming it, unknown field 400', async () => {
    expect((await t.call('POST', '/v1/invoices/in_0000000000000000000000000/pay', {})).statusCode).toBe(404);
    const c = await customer('US', '2027-08-01T00:00:00Z');
    const sub = await subscribe(c.id);
    await attach(c.id, 'tok_chargeCustomerFail', true);
    await advance(c.clock, '2027-09-01T01:00:00Z');
    const renewal = (await invoicesOf(sub.id))[1]!;
    const bad = await t.call('POST', `/v1/invoices/${renewal.id}/pay`, { paymentMethod: 'pm_nope' });
    expect(bad.statusCode).toBe(400);
    expect(bad.json().errors).toEqual([expect.objectContaining({ path: 'paymentMethod' })]);
    const unknown = await t.call('POST', `/v1/invoices/${renewal.id}/pay`, { amount: 1 });
    expect(unknown.statusCode).toBe(400);
    expect((await invoicesOf(sub.id))[1]?.status).toBe('open');
  });
});
