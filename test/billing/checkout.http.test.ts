import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { BOOTSTRAP_KEY_ID } from '../../src/modules/api-keys/service.js';
import { invoicePaymentKey } from '../../src/workflows/checkout.js';
import { startTestApp, type TestApp } from '../support/app.js';
import { ENGINE } from '../support/database.js';

/** Checkout through HTTP (POST /v1/subscriptions), on test clocks so periods are exact. */
describe(`checkout: POST /v1/subscriptions (${ENGINE})`, () => {
  let t: TestApp;
  let n = 0;
  const T0 = '2027-01-15T00:00:00Z';

  beforeAll(async () => {
    t = await startTestApp({ providerTimeoutMs: 1_000 });
    await t.markets('SE', 'US');
    const ok = async (url: string, body: unknown) => {
      const res = await t.call('POST', url, body);
      if (res.statusCode !== 201) throw new Error(`${url}: ${res.body}`);
    };
    await ok('/v1/products', { code: 'music', name: 'Music', features: ['ad-free', 'offline'], seats: 1 });
    await ok('/v1/products', { code: 'books', name: 'Books', features: ['audiobooks'], seats: 1 });
    await ok('/v1/plans', {
      code: 'music-monthly',
      product: 'music',
      billingPeriod: 'month',
      trialDays: 0,
      prices: [
        { currency: 'SEK', amount: 10900 },
        { currency: 'USD', amount: 1199 },
      ],
    });
    await ok('/v1/plans', {
      code: 'books-trial',
      product: 'books',
      billingPeriod: 'month',
      trialDays: 7,
      prices: [{ currency: 'SEK', amount: 16900 }],
    });
  });
  afterAll(() => t.close());

  /** A customer on a fresh test clock at `at`, with `token` attached (or no method). */
  const customer = async (market: 'SE' | 'US', token: string | null, extra: Record<string, unknown> = {}) => {
    const clock = (await t.call('POST', '/v1/test-clocks', { frozenTime: T0 })).json();
    const externalId = `checkout-user-${++n}`;
    const res = await t.call('POST', '/v1/customers', { externalId, market, testClock: clock.id, ...extra });
    expect(res.statusCode).toBe(201);
    const id = res.json().id as string;
    if (token) {
      const pm = await t.call('POST', `/v1/customers/${id}/payment-methods`, {
        provider: 'simulator',
        token,
      });
      expect(pm.statusCode).toBe(201);
    }
    return { id, externalId, clock: clock.id as string };
  };
  const advance = async (clock: string, frozenTime: string) => {
    const res = await t.call('POST', `/v1/test-clocks/${clock}/advance`, { frozenTime });
    expect(res.statusCode).toBe(200);
  };
  const subscribe = (body: Record<string, unknown>, headers: Record<string, string> = {}) =>
    t.call('POST', '/v1/subscriptions', body, { headers });
  const invoicesOf = async (subscription: string) =>
    (await t.call('GET', `/v1/invoices?subscription=${subscription}`)).json().data;
  const entitlement = async (externalId: string) =>
    (await t.call('GET', `/v1/entitlements/${encodeURIComponent(externalId)}`)).json();
  const ledgerOf = async (reference: string) =>
    (await t.call('GET', `/v1/ledger/transactions?reference=${reference}`)).json().data as Array<{
      idempotencyKey: string;
      postings: Array<{ account: string; debit: number; credit: number }>;
    }>;
  const trialBalanced = async () => {
    const currencies = (await t.call('GET', '/v1/ledger/trial-balance?verify=true')).json()
      .currencies as Array<{
      debits: number;
      credits: number;
      balanced: boolean;
    }>;
    return currencies.every((c) => c.balanced && c.debits === c.credits);
  };
  const legs = (entries: Awaited<ReturnType<typeof ledgerOf>>, key: string) =>
    entries
      .find((e) => e.idempotencyKey === key)
      ?.postings.map((p) => [p.account, p.debit, p.credit])
      .sort();

  it('SE (25 % inclusive): paid at once, active for [Jan 15, Feb 15), invoice numbered in the TEST series, booked, entitled', async () => {
    const c = await customer('SE', 'tok_visa');
    const res = await subscribe({ customer: c.id, plan: 'music-monthly' });
    expect(res.statusCode).toBe(201);
    const sub = res.json();
    expect(sub).toMatchObject({
      customer: c.id,
      status: 'active',
      currency: 'SEK',
      price: 10900,
      currentPeriodStart: '2027-01-15T00:00:00Z',
      currentPeriodEnd: '2027-02-15T00:00:00Z',
      trialEnd: null,
      cancelAt: null,
      members: [],
    });
    const [invoice, ...more] = await invoicesOf(sub.id);
    expect(more).toEqual([]);
    expect(invoice).toMatchObject({
      status: 'paid',
      currency: 'SEK',
      taxRateBps: 2500,
      taxInclusive: true,
      subtotal: 10900,
      tax: 2180,
      total: 10900,
      amountDue: 10900,
      periodStart: '2027-01-15T00:00:00Z',
      periodEnd: '2027-02-15T00:00:00Z',
    });
    expect(invoice.number).toMatch(/^TEST-SE-2027-\d{6}$/);
    expect(invoice.lines).toEqual([
      expect.objectContaining({
        kind: 'recurring',
        amount: 10900,
        periodStart: '2027-01-15T00:00:00Z',
        periodEnd: '2027-02-15T00:00:00Z',
      }),
      expect.objectContaining({
        kind: 'tax',
        amount: 2180,
        periodStart: '2027-01-15T00:00:00Z',
        periodEnd: '2027-02-15T00:00:00Z',
      }),
    ]);
    expect((await t.call('GET', `/v1/invoices/${invoice.id}`)).json()).toEqual(invoice);
    const payment = (await t.call('GET', `/v1/payments/${invoice.payment}`)).json();
    expect(payment).toMatchObject({ status: 'succeeded', amount: 10900, tax: 2180, reference: invoice.id });

    const entries = await ledgerOf(invoice.id);
    expect(legs(entries, `invoice:${invoice.id}:finalize`)).toEqual(
      [
        [`customer_receivable:${c.id}:SEK`, 10900, 0],
        ['deferred_revenue:-:SEK', 0, 8720],
        ['tax_payable:-:SEK', 0, 2180],
      ].sort(),
    );
    expect(legs(entries, `invoice:${invoice.id}:paid`)).toEqual(
      [
        ['revenue:-:SEK', 8720, 0],
        ['tax_payable:-:SEK', 2180, 0],
        [`customer_receivable:${c.id}:SEK`, 0, 10900],
      ].sort(),
    );
    expect(await trialBalanced()).toBe(true);

    expect(await entitlement(c.externalId)).toEqual({
      externalId: c.externalId,
      active: true,
      features: ['ad-free', 'offline'],
      sources: [{ subscription: sub.id, role: 'owner', validUntil: '2027-02-16T00:00:00Z' }],
    });
    // Events are listed once every older transaction on the server has ended (commit order): wait.
    await vi.waitFor(
      async () => {
        const events = (await t.call('GET', '/v1/events?limit=100')).json().data as Array<{
          type: string;
          data: { object: { id: string } };
        }>;
        expect(
          events.filter((e) => [sub.id, invoice.id].includes(e.data.object.id)).map((e) => e.type),
        ).toEqual([
          'invoice.created',
          'invoice.finalized',
          'subscription.created',
          'invoice.paid',
          'subscription.activated',
        ]);
      },
      { timeout: 10_000, interval: 50 },
    );
    expect(
      (await t.call('GET', `/v1/subscriptions?customer=${c.externalId}&status=active`)).json().data,
    ).toEqual([sub]);
    expect((await t.call('GET', `/v1/subscriptions/${sub.id}`)).json()).toEqual(sub);
  });

  it('SE with billing cycle day 1: the first period [Jan 15, Feb 1) is prorated 17/31 (5977, tax 1195)', async () => {
    const c = await customer('SE', 'tok_visa', { billingCycleDay: 1 });
    const sub = (await subscribe({ customer: c.id, plan: 'music-monthly' })).json();
    expect(sub).toMatchObject({
      status: 'active',
      billingCycleDay: 1,
      currentPeriodStart: '2027-01-15T00:00:00Z',
      currentPeriodEnd: '2027-02-01T00:00:00Z',
    });
    const [invoice] = await invoicesOf(sub.id);
    expect(invoice).toMatchObject({
      subtotal: 5977,
      tax: 1195,
      total: 5977,
      amountDue: 5977,
      status: 'paid',
    });
    expect(invoice.lines.map((l: { kind: string; amount: number }) => [l.kind, l.amount])).toEqual([
      ['recurring', 5977],
      ['tax', 1195],
    ]);
    expect(await trialBalanced()).toBe(true);
  });

  it('US (exclusive, 0 %): 1199 charged, no tax line, receivable settled, revenue deferred', async () => {
    const c = await customer('US', 'tok_visa');
    const res = await subscribe({ customer: c.externalId, plan: 'music-monthly' });
    expect(res.statusCode).toBe(201);
    const sub = res.json();
    expect(sub).toMatchObject({ status: 'active', currency: 'USD', price: 1199 });
    const [invoice] = await invoicesOf(sub.id);
    expect(invoice).toMatchObject({
      subtotal: 1199,
      tax: 0,
      total: 1199,
      amountDue: 1199,
      taxInclusive: false,
    });
    expect(invoice.number).toMatch(/^TEST-US-2027-\d{6}$/);
    expect(invoice.lines.map((l: { kind: string; amount: number }) => [l.kind, l.amount])).toEqual([
      ['recurring', 1199],
    ]);
    const entries = await ledgerOf(invoice.id);
    expect(legs(entries, `invoice:${invoice.id}:finalize`)).toEqual(
      [
        [`customer_receivable:${c.id}:USD`, 1199, 0],
        ['deferred_revenue:-:USD', 0, 1199],
      ].sort(),
    );
    expect(legs(entries, `invoice:${invoice.id}:paid`)).toEqual(
      [
        ['revenue:-:USD', 1199, 0],
        [`customer_receivable:${c.id}:USD`, 0, 1199],
      ].sort(),
    );
    expect(await trialBalanced()).toBe(true);
  });

  it('a trial: trialing on a paid 0 invoice, entitled to the trial end + 24 h; one trial per customer and product', async () => {
    const c = await customer('SE', null);
    const res = await subscribe({ customer: c.id, plan: 'books-trial' });
    expect(res.statusCode).toBe(201);
    const sub = res.json();
    expect(sub).toMatchObject({
      status: 'trialing',
      trialEnd: '2027-01-22T00:00:00Z',
      billingAnchor: '2027-01-22T00:00:00Z',
      currentPeriodStart: '2027-01-15T00:00:00Z',
      currentPeriodEnd: '2027-01-22T00:00:00Z',
    });
    const [invoice] = await invoicesOf(sub.id);
    expect(invoice).toMatchObject({
      status: 'paid',
      subtotal: 0,
      tax: 0,
      total: 0,
      amountDue: 0,
      payment: null,
    });
    expect(
      invoice.lines.map((l: { kind: string; amount: number; periodEnd: string }) => [
        l.kind,
        l.amount,
        l.periodEnd,
      ]),
    ).toEqual([
      ['recurring', 0, '2027-01-22T00:00:00Z'],
      ['tax', 0, '2027-01-22T00:00:00Z'],
    ]);
    expect(await ledgerOf(invoice.id)).toEqual([]);
    expect(await entitlement(c.externalId)).toMatchObject({
      active: true,
      features: ['audiobooks'],
      sources: [{ subscription: sub.id, role: 'owner', validUntil: '2027-01-23T00:00:00Z' }],
    });

    // The same product again: no second trial, so a payment method is needed and charged at once.
    const again = await subscribe({ customer: c.id, plan: 'books-trial' });
    expect(again.statusCode).toBe(400);
    expect(again.json().errors).toEqual([expect.objectContaining({ path: 'paymentMethod' })]);
    expect((await t.call('GET', `/v1/subscriptions?customer=${c.id}`)).json().data).toHaveLength(1);
    await t.call('POST', `/v1/customers/${c.id}/payment-methods`, {
      provider: 'simulator',
      token: 'tok_visa',
    });
    const paid = await subscribe({ customer: c.id, plan: 'books-trial' });
    expect(paid.statusCode).toBe(201);
    expect(paid.json()).toMatchObject({
      status: 'active',
      trialEnd: null,
      currentPeriodEnd: '2027-02-15T00:00:00Z',
    });
    const [second] = await invoicesOf(paid.json().id);
    expect(second).toMatchObject({ status: 'paid', total: 16900, tax: 3380 });
    expect(await trialBalanced()).toBe(true);
  });

  it('a decline: 402 payment_declined with declineCode and the incomplete subscription; nothing entitled', async () => {
    const c = await customer('SE', 'tok_chargeCustomerFail');
    const res = await subscribe({ customer: c.id, plan: 'music-monthly' });
    expect(res.statusCode).toBe(402);
    const body = res.json();
    expect(body).toMatchObject({ code: 'payment_declined', declineCode: 'card_declined' });
    expect(body.subscription).toMatch(/^sub_/);
    const sub = (await t.call('GET', `/v1/subscriptions/${body.subscription}`)).json();
    expect(sub).toMatchObject({ status: 'incomplete', currentPeriodStart: null, currentPeriodEnd: null });
    const [invoice] = await invoicesOf(sub.id);
    expect(invoice).toMatchObject({ status: 'open', amountDue: 10900, payment: body.payment });
    expect((await t.call('GET', `/v1/payments/${body.payment}`)).json()).toMatchObject({ status: 'failed' });
    expect(await entitlement(c.externalId)).toEqual({
      externalId: c.externalId,
      active: false,
      features: [],
      sources: [],
    });
    expect(legs(await ledgerOf(invoice.id), `invoice:${invoice.id}:paid`)).toBeUndefined();
    expect(await trialBalanced()).toBe(true);
  });

  it('an unpaid sign-up expires 23 hours after it was created: subscription expired, invoice void, booking reversed', async () => {
    const c = await customer('SE', 'tok_chargeCustomerFail');
    const res = await subscribe({ customer: c.id, plan: 'music-monthly' });
    expect(res.statusCode).toBe(402);
    const id = res.json().subscription as string;
    await advance(c.clock, '2027-01-15T22:59:59Z');
    expect((await t.call('GET', `/v1/subscriptions/${id}`)).json().status).toBe('incomplete');
    await advance(c.clock, '2027-01-15T23:00:00Z');
    expect((await t.call('GET', `/v1/subscriptions/${id}`)).json()).toMatchObject({
      status: 'expired',
      endedAt: '2027-01-15T23:00:00Z',
    });
    const [invoice] = await invoicesOf(id);
    expect(invoice).toMatchObject({ status: 'void', total: 10900 });
    const entries = await ledgerOf(invoice.id);
    expect(legs(entries, `invoice:${invoice.id}:void`)).toEqual(
      [
        [`customer_receivable:${c.id}:SEK`, 0, 10900],
        ['deferred_revenue:-:SEK', 8720, 0],
        ['tax_payable:-:SEK', 2180, 0],
      ].sort(),
    );
    await vi.waitFor(
      async () => {
        const events = (await t.call('GET', '/v1/events?type=subscription.*&limit=100')).json()
          .data as Array<{
          type: string;
          data: { object: { id: string } };
        }>;
        expect(events.filter((e) => e.data.object.id === id).map((e) => e.type)).toEqual([
          'subscription.created',
          'subscription.expired',
        ]);
      },
      { timeout: 10_000, interval: 50 },
    );
    await vi.waitFor(
      async () => {
        const invoiceEvents = (await t.call('GET', '/v1/events?type=invoice.*&limit=100')).json()
          .data as Array<{
          type: string;
          data: { object: { id: string; status: string } };
        }>;
        expect(
          invoiceEvents
            .filter((e) => e.data.object.id === invoice.id)
            .map((e) => [e.type, e.data.object.status]),
        ).toEqual([
          ['invoice.created', 'open'],
          ['invoice.finalized', 'open'],
          ['invoice.voided', 'void'],
        ]);
      },
      { timeout: 10_000, interval: 50 },
    );
    expect((await entitlement(c.externalId)).active).toBe(false);
    expect(await trialBalanced()).toBe(true);
  });

  it('an idempotent retry replays the answer: one subscription, one invoice, one charge; other input is 422', async () => {
    const c = await customer('SE', 'tok_visa');
    const headers = { 'idempotency-key': `checkout-${c.id}` };
    const first = await subscribe({ customer: c.id, plan: 'music-monthly' }, headers);
    expect(first.statusCode).toBe(201);
    const second = await subscribe({ customer: c.id, plan: 'music-monthly' }, headers);
    expect(second.statusCode).toBe(201);
    expect(second.headers['idempotent-replayed']).toBe('true');
    expect(second.json()).toEqual(first.json());
    expect((await t.call('GET', `/v1/subscriptions?customer=${c.id}`)).json().data).toHaveLength(1);
    expect(await invoicesOf(first.json().id)).toHaveLength(1);
    expect((await t.call('GET', `/v1/payments?customer=${c.id}`)).json().data).toHaveLength(1);
    const other = await subscribe({ customer: c.id, plan: 'books-trial' }, headers);
    expect(other.statusCode).toBe(422);
    expect(await trialBalanced()).toBe(true);
  });

  it('a crash after the charge, before its answer: the retry with the same key completes it once, never charging twice', async () => {
    const c = await customer('SE', 'tok_visa');
    const { billing, payments } = t.app.services;
    const input = { customer: c.id, plan: 'music-monthly' };
    const key = `crash-${c.id}`;
    // The first attempt opened the subscription and its invoice and charged the card, then died.
    const opened = await billing.openCheckout(input, `${BOOTSTRAP_KEY_ID}:${key}`);
    expect(opened.charge).not.toBeNull();
    const { payment, lease } = await payments.start(opened.charge!, invoicePaymentKey(opened.invoiceId));
    expect((await payments.charge(payment, lease)).result?.status).toBe('succeeded');
    expect((await t.call('GET', `/v1/subscriptions/${opened.subscriptionId}`)).json().status).toBe(
      'incomplete',
    );

    const res = await subscribe(input, { 'idempotency-key': key });
    expect(res.statusCode).toBe(201);
    expect(res.json()).toMatchObject({ id: opened.subscriptionId, status: 'active' });
    const [invoice, ...more] = await invoicesOf(opened.subscriptionId);
    expect(more).toEqual([]);
    expect(invoice).toMatchObject({ id: opened.invoiceId, status: 'paid', payment: payment.id });
    expect((await t.call('GET', `/v1/payments?customer=${c.id}`)).json().data).toHaveLength(1);
    const captures = t.app.services.providers.embedded
      .flatMap((e) => [...e.state.charges.values()])
      .filter((ch) => ch.idempotencyKey === payment.id && ch.captured);
    expect(captures).toHaveLength(1);
    expect(await trialBalanced()).toBe(true);
  });

  it('tok_processingError: the provider errs after charging; the checkout still charges once and activates', async () => {
    const c = await customer('SE', 'tok_processingError');
    const res = await subscribe({ customer: c.id, plan: 'music-monthly' });
    expect(res.statusCode).toBe(201);
    expect(res.json().status).toBe('active');
    const [invoice] = await invoicesOf(res.json().id);
    const captures = t.app.services.providers.embedded
      .flatMap((e) => [...e.state.charges.values()])
      .filter((ch) => ch.idempotencyKey === invoice.payment && ch.captured);
    expect(captures).toHaveLength(1);
    expect(await trialBalanced()).toBe(true);
  });

  it('scopes and unknown ids: a read-only key cannot subscribe; unknown subscription and invoice are 404', async () => {
    const c = await customer('SE', 'tok_visa');
    const reader = await t.keyWith('subscriptions:read');
    const denied = await t.call(
      'POST',
      '/v1/subscriptions',
      { customer: c.id, plan: 'music-monthly' },
      { key: reader },
    );
    expect(denied.statusCode).toBe(403);
    expect(
      (await t.call('GET', `/v1/subscriptions?customer=${c.id}`, undefined, { key: reader })).json().data,
    ).toEqual([]);
    expect((await t.call('GET', '/v1/subscriptions/sub_01JD0000000000000000000000')).statusCode).toBe(404);
    expect((await t.call('GET', '/v1/invoices/in_01JD0000000000000000000000')).statusCode).toBe(404);
  });

  it('a crash after the charge and no retry: the settle job (from 15 min on the clock, retried until the payment is settled) activates it once', async () => {
    const c = await customer('US', 'tok_visa');
    const { billing, payments } = t.app.services;
    const opened = await billing.openCheckout({ customer: c.id, plan: 'music-monthly' }, null);
    const { payment, lease } = await payments.start(opened.charge!, invoicePaymentKey(opened.invoiceId));
    expect((await payments.charge(payment, lease)).result?.status).toBe('succeeded');
    // The request died here: the payment is still `processing` in our database, so the settle job
    // due at 00:15 fails and is retried.
    await advance(c.clock, '2027-01-15T00:20:00Z');
    expect((await t.call('GET', `/v1/subscriptions/${opened.subscriptionId}`)).json().status).toBe(
      'incomplete',
    );
    // The payments reconciliation job learns the capture from the provider; the retry activates.
    await payments.reconcile(payment.id);
    await advance(c.clock, '2027-01-15T01:00:00Z');
    expect((await t.call('GET', `/v1/subscriptions/${opened.subscriptionId}`)).json()).toMatchObject({
      status: 'active',
      currentPeriodStart: '2027-01-15T00:00:00Z',
      currentPeriodEnd: '2027-02-15T00:00:00Z',
    });
    const [invoice] = await invoicesOf(opened.subscriptionId);
    expect(invoice).toMatchObject({ status: 'paid', payment: payment.id });
    expect((await t.call('GET', `/v1/payments/${payment.id}`)).json().status).toBe('succeeded');
    expect(await trialBalanced()).toBe(true);
  });

  it('refuses offer and coupon by name, and an unknown plan', async () => {
    const c = await customer('SE', 'tok_visa');
    for (const field of ['offer', 'coupon']) {
      const res = await subscribe({ customer: c.id, plan: 'music-monthly', [field]: 'SPRING' });
      expect(res.statusCode).toBe(400);
      expect(res.json().errors.map((e: { path: string }) => e.path)).toContain(field);
    }
    expect((await subscribe({ customer: c.id, plan: 'no-such-plan' })).statusCode).toBe(404);
    expect((await t.call('GET', `/v1/subscriptions?customer=${c.id}`)).json().data).toEqual([]);
  });

  it('entitlements in batch answer in the order asked; an unknown id is inactive', async () => {
    const c = await customer('US', 'tok_visa');
    expect((await subscribe({ customer: c.id, plan: 'music-monthly' })).statusCode).toBe(201);
    const res = await t.call('POST', '/v1/entitlements/batch', {
      externalIds: ['nobody-here', c.externalId],
    });
    expect(res.statusCode).toBe(200);
    const data = res.json().data;
    expect(data.map((e: { externalId: string; active: boolean }) => [e.externalId, e.active])).toEqual([
      ['nobody-here', false],
      [c.externalId, true],
    ]);
    const tooMany = await t.call('POST', '/v1/entitlements/batch', {
      externalIds: Array.from({ length: 1001 }, (_, i) => `u${i}`),
    });
    expect(tooMany.statusCode).toBe(400);
    expect((await t.call('GET', '/v1/entitlements/nobody-here')).json()).toEqual({
      externalId: 'nobody-here',
      active: false,
      features: [],
      sources: [],
    });
  });
});
