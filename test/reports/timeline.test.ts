import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ManualClock } from '../../src/kernel/clock.js';
import { startTestApp, type TestApp } from '../support/app.js';
import { smallCatalog } from '../support/billing.js';
import { ENGINE } from '../support/database.js';

interface Item {
  at: string;
  kind: string;
  id: string;
  summary: string;
  data: Record<string, unknown>;
}

/**
 * GET /v1/customers/{id}/timeline: one newest-first list of what every module holds about a
 * customer, paged by cursor. The clock stands still during each request, so many items share an
 * instant: the (at, kind, id) order and the cursor must still page exactly.
 */
describe(`reports: the customer timeline (${ENGINE})`, () => {
  const clock = new ManualClock('2027-04-01T09:00:00Z');
  let t: TestApp;
  let customer: { id: string; externalId: string };
  let subscription: string;
  let payment: string;
  let refund: string;

  const ok = async (method: 'POST' | 'GET', url: string, body?: unknown) => {
    const res = await t.call(method, url, body);
    expect(res.statusCode, `${url}: ${res.body}`).toBeLessThan(300);
    return res.json();
  };

  beforeAll(async () => {
    t = await startTestApp({}, clock);
    await smallCatalog(t);
    const c = await ok('POST', '/v1/customers', { externalId: 'timeline-user', market: 'SE' });
    customer = { id: c.id, externalId: 'timeline-user' };
    await ok('POST', `/v1/customers/${c.id}/payment-methods`, { provider: 'simulator', token: 'tok_visa' });
    clock.set('2027-04-01T09:05:00Z');
    subscription = (await ok('POST', '/v1/subscriptions', { customer: c.id, plan: 'music-monthly' })).id;
    clock.set('2027-04-02T10:00:00Z');
    payment = (
      await ok('POST', '/v1/payments', {
        customer: c.id,
        amount: 4900,
        currency: 'SEK',
        description: 'Concert',
      })
    ).id;
    clock.set('2027-04-03T11:00:00Z');
    refund = (await ok('POST', '/v1/refunds', { payment, amount: 1000 })).id;
    clock.set('2027-04-04T12:00:00Z');
    await ok('POST', `/v1/subscriptions/${subscription}/cancel`, { timing: 'immediate' });
    // Someone else's history never shows.
    const other = await ok('POST', '/v1/customers', { externalId: 'someone-else', market: 'SE' });
    await ok('POST', `/v1/customers/${other.id}/payment-methods`, {
      provider: 'simulator',
      token: 'tok_visa',
    });
    await ok('POST', '/v1/subscriptions', { customer: other.id, plan: 'books-monthly' });
  });
  afterAll(() => t.close());

  const page = (ref: string, query: string, key?: string) =>
    t.call('GET', `/v1/customers/${encodeURIComponent(ref)}/timeline${query}`, undefined, key ? { key } : {});

  const all = async (ref: string, limit: number, key?: string) => {
    const items: Item[] = [];
    let cursor: string | null = null;
    for (let i = 0; i < 200; i++) {
      const res = await page(ref, `?limit=${limit}${cursor ? `&cursor=${cursor}` : ''}`, key);
      expect(res.statusCode, res.body).toBe(200);
      const body = res.json() as { data: Item[]; nextCursor: string | null };
      expect(body.data.length).toBeLessThanOrEqual(limit);
      items.push(...body.data);
      cursor = body.nextCursor;
      if (!cursor) return items;
      expect(body.data).toHaveLength(limit);
    }
    throw new Error('more than 200 pages');
  };

  it('merges every kind, newest first, and pages exactly through items sharing an instant', async () => {
    const whole = await all(customer.id, 100);
    const kinds = new Set(whole.map((i) => i.kind));
    expect([...kinds].sort()).toEqual([
      'audit',
      'entitlement',
      'event',
      'invoice',
      'ledger_transaction',
      'payment',
      'refund',
      'subscription',
    ]);
    // Newest first by (at, kind, id), each item once.
    const keys = whole.map((i) => `${i.at}|${i.kind}|${i.id}`);
    expect(new Set(keys).size).toBe(keys.length);
    expect([...keys].sort().reverse()).toEqual(keys);
    // The checkout's many items share one instant; pages of 1, 2 and 7 give the same list.
    expect(whole.filter((i) => i.at === '2027-04-01T09:05:00.000Z').length).toBeGreaterThan(7);
    for (const limit of [1, 2, 7]) {
      expect((await all(customer.id, limit)).map((i) => `${i.kind}:${i.id}`)).toEqual(
        whole.map((i) => `${i.kind}:${i.id}`),
      );
    }
    // The externalId names the same customer.
    expect((await all(customer.externalId, 100)).map((i) => i.id)).toEqual(whole.map((i) => i.id));
    // Nothing of the other customer: every payment, invoice and subscription is this one's.
    for (const i of whole) {
      if (['subscription', 'invoice', 'payment'].includes(i.kind)) expect(i.data.customer).toBe(customer.id);
    }
  });

  it('shows each kind as its own GET shows it, with a one-line summary', async () => {
    const whole = await all(customer.id, 100);
    const one = (kind: string, id?: string) => whole.find((i) => i.kind === kind && (!id || i.id === id))!;
    const sub = one('subscription', subscription);
    expect(sub.data).toEqual((await t.call('GET', `/v1/subscriptions/${subscription}`)).json());
    expect(sub.summary).toBe('Subscription to music-monthly: canceled');
    const invoice = one('invoice');
    expect(invoice.data).toEqual((await t.call('GET', `/v1/invoices/${invoice.id}`)).json());
    expect((invoice.data.lines as unknown[]).length).toBeGreaterThan(0);
    expect(invoice.summary).toBe(`Invoice ${invoice.data.number} (subscription create): 109.00 SEK, paid`);
    const pay = one('payment', payment);
    expect(pay.data).toEqual((await t.call('GET', `/v1/payments/${payment}`)).json());
    expect(pay.summary).toBe('Payment of 49.00 SEK: partially_refunded');
    expect(pay.at).toBe('2027-04-02T10:00:00.000Z');
    const re = one('refund', refund);
    expect(re.data).toEqual((await t.call('GET', `/v1/refunds/${refund}`)).json());
    expect(re.summary).toBe('Refund of 10.00 SEK: succeeded');
    const txn = whole.find((i) => i.kind === 'ledger_transaction' && i.data.reference === refund)!;
    expect([txn.data]).toEqual(
      (await t.call('GET', `/v1/ledger/transactions?reference=${refund}`)).json().data,
    );
    const entitlement = one('entitlement');
    expect(entitlement.data.type).toBe('entitlement.updated');
    expect(entitlement.summary).toMatch(/^Entitlement (active|ended)/);
    const canceled = whole.find((i) => i.kind === 'event' && i.data.type === 'subscription.canceled')!;
    expect(canceled.data).toEqual((await t.call('GET', `/v1/events/${canceled.id}`)).json());
    expect(canceled.summary).toBe(`subscription.canceled (subscription ${subscription})`);
    const audits = whole.filter((i) => i.kind === 'audit').map((i) => i.data.action);
    expect(audits).toEqual(
      expect.arrayContaining([
        'customers.create',
        'payment_methods.attach',
        'subscriptions.create',
        'payments.create',
        'refunds.create',
        'subscriptions.cancel',
      ]),
    );
  });

  it('shows a key only the kinds its scopes can list', async () => {
    const payer = await t.keyWith('customers:read', 'payments:read');
    expect(new Set((await all(customer.id, 100, payer)).map((i) => i.kind))).toEqual(
      new Set(['payment', 'refund']),
    );
    const reader = await t.keyWith('customers:read', 'subscriptions:read', 'ledger:read', 'events:read');
    expect([...new Set((await all(customer.id, 100, reader)).map((i) => i.kind))].sort()).toEqual([
      'event',
      'invoice',
      'ledger_transaction',
      'subscription',
    ]);
    const none = await t.keyWith('subscriptions:read');
    expect((await page(customer.id, '', none)).statusCode).toBe(403);
  });

  it('refuses a bad cursor or limit by name and an unknown customer with 404, and is in the OpenAPI document', async () => {
    for (const cursor of ['nope', Buffer.from('{"at":1,"kind":"x","id":"y"}').toString('base64url')]) {
      const res = await page(customer.id, `?cursor=${cursor}`);
      expect(res.statusCode).toBe(400);
      expect(res.json().errors[0]).toMatchObject({ path: 'cursor', in: 'query' });
    }
    for (const limit of ['0', '101', 'x']) {
      const res = await page(customer.id, `?limit=${limit}`);
      expect(res.statusCode).toBe(400);
      expect(res.json().errors[0].path).toBe('limit');
    }
    expect((await page('cus_01ARZ3NDEKTSV4RRFFQ69G5FAV', '')).statusCode).toBe(404);
    const doc = (await t.call('GET', '/openapi.json', undefined, { key: null })).json();
    expect(
      doc.paths['/v1/customers/{id}/timeline'].get.responses['200'].content['application/json'].schema,
    ).toEqual({ $ref: '#/components/schemas/CustomerTimeline' });
    expect(doc.components.schemas.TimelineInvoice.properties.data).toEqual({
      $ref: '#/components/schemas/Invoice',
    });
  });

  it('customers are found by externalId for the console search', async () => {
    const found = (await ok('GET', `/v1/customers?externalId=${customer.externalId}`)) as {
      data: Array<{ id: string }>;
    };
    expect(found.data.map((c) => c.id)).toEqual([customer.id]);
    expect((await ok('GET', '/v1/customers?externalId=nobody')).data).toEqual([]);
  });
});
