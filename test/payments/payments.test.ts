import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestApp, type TestApp } from '../support/app.js';
import { ENGINE } from '../support/database.js';

describe(`payments through the PSP simulator (${ENGINE})`, () => {
  let t: TestApp;
  let n = 0;
  beforeAll(async () => {
    t = await startTestApp({ providerTimeoutMs: 1_000 });
    await t.markets('SE', 'US');
    // A tax-exclusive market with a nonzero rate: 7.25 % added on top.
    const ca = await t.call('POST', '/v1/markets', {
      code: 'CA',
      currency: 'CAD',
      taxRateBps: 725,
      taxInclusive: false,
    });
    if (ca.statusCode !== 201) throw new Error(ca.body);
  });
  afterAll(() => t.close());

  const customer = async (market = 'SE') =>
    (await t.call('POST', '/v1/customers', { externalId: `pay-user-${++n}`, market })).json().id as string;
  const attach = (c: string, token: string) =>
    t.call('POST', `/v1/customers/${c}/payment-methods`, { provider: 'simulator', token });
  const pay = (
    c: string,
    amount: number,
    extra: Record<string, unknown> = {},
    headers: Record<string, string> = {},
  ) =>
    t.call(
      'POST',
      '/v1/payments',
      { customer: c, amount, currency: 'SEK', description: 'Audiobook', ...extra },
      { headers },
    );
  const ledgerOf = async (reference: string) =>
    (await t.call('GET', `/v1/ledger/transactions?reference=${reference}`)).json().data as Array<{
      idempotencyKey: string;
      postings: Array<{ account: string; debit: number; credit: number }>;
    }>;
  const captured = (paymentId: string) =>
    t.app.services.providers.embedded
      .flatMap((e) => [...e.state.charges.values()])
      .filter((c) => c.idempotencyKey === paymentId && c.captured);
  const trialBalanced = async () =>
    (await t.call('GET', '/v1/ledger/trial-balance?verify=true'))
      .json()
      .currencies.every((c: { balanced: boolean }) => c.balanced);

  it.each([
    ['tok_visa', 'visa', '4242'],
    ['tok_mastercard', 'mastercard', '4444'],
  ])(
    '%s attaches and is charged; the ledger books cash, revenue net of VAT, VAT and the fee',
    async (token, brand, last4) => {
      const c = await customer();
      const pm = await attach(c, token);
      expect(pm.statusCode).toBe(201);
      expect(pm.json()).toMatchObject({
        brand,
        last4,
        isDefault: true,
        providers: ['simulator-a', 'simulator-b'],
      });
      const res = await pay(c, 13900, { reference: 'order-1' });
      expect(res.statusCode).toBe(201);
      const p = res.json();
      expect(p).toMatchObject({
        status: 'succeeded',
        amount: 13900,
        amountRefunded: 0,
        currency: 'SEK',
        tax: 2780,
        fee: 433,
        provider: 'simulator-a',
      });
      expect(captured(p.id)).toHaveLength(1);
      const entries = await ledgerOf(p.id);
      expect(entries.map((e) => e.idempotencyKey).sort()).toEqual([
        `payment:${p.id}:captured`,
        `payment:${p.id}:fee`,
      ]);
      const capture = entries.find((e) => e.idempotencyKey.endsWith(':captured'))!;
      expect(capture.postings).toEqual([
        { account: 'provider_clearing:simulator-a:SEK', currency: 'SEK', debit: 13900, credit: 0 },
        { account: 'revenue:-:SEK', currency: 'SEK', debit: 0, credit: 11120 },
        { account: 'tax_payable:-:SEK', currency: 'SEK', debit: 0, credit: 2780 },
      ]);
      expect(await trialBalanced()).toBe(true);
    },
  );

  it('an attach retried after its answer was lost finds the stored method', async () => {
    const c = await customer();
    const headers = { 'idempotency-key': `attach-${c}` };
    const first = await t.call(
      'POST',
      `/v1/customers/${c}/payment-methods`,
      { provider: 'simulator', token: 'tok_visa' },
      { headers },
    );
    // What a crash after the commit leaves: the method stored, the request's claim unanswered.
    await t.app.services.db.deleteFrom('idempotency_keys').where('key', '=', `attach-${c}`).execute();
    const again = await t.call(
      'POST',
      `/v1/customers/${c}/payment-methods`,
      { provider: 'simulator', token: 'tok_visa' },
      { headers },
    );
    expect(again.statusCode).toBe(201);
    expect(again.json().id).toBe(first.json().id);
    expect((await t.call('GET', `/v1/customers/${c}/payment-methods`)).json().data).toHaveLength(1);
  });

  it.each([
    ['tok_chargeDeclined', 'card_declined'],
    ['tok_chargeDeclinedInsufficientFunds', 'insufficient_funds'],
  ])('%s is declined when attached (402 %s) and nothing is stored', async (token, declineCode) => {
    const c = await customer();
    const res = await attach(c, token);
    expect(res.statusCode).toBe(402);
    expect(res.json()).toMatchObject({ code: 'payment_declined', declineCode });
    expect((await t.call('GET', `/v1/customers/${c}/payment-methods`)).json().data).toEqual([]);
  });

  it('tok_chargeCustomerFail attaches, then every charge is declined: 402 with the failed payment id', async () => {
    const c = await customer();
    expect((await attach(c, 'tok_chargeCustomerFail')).statusCode).toBe(201);
    const res = await pay(c, 5000);
    expect(res.statusCode).toBe(402);
    expect(res.headers['content-type']).toContain('application/problem+json');
    const body = res.json();
    expect(body).toMatchObject({ code: 'payment_declined', declineCode: 'card_declined' });
    const payment = (await t.call('GET', `/v1/payments/${body.payment}`)).json();
    expect(payment).toMatchObject({ status: 'failed', declineCode: 'card_declined' });
    expect(await ledgerOf(body.payment)).toEqual([]);
  });

  it('tok_processingError: the provider errs after charging; the retry with the same key succeeds once', async () => {
    const c = await customer();
    expect((await attach(c, 'tok_processingError')).statusCode).toBe(201);
    const res = await pay(c, 7900);
    expect(res.statusCode).toBe(201);
    expect(res.json().status).toBe('succeeded');
    expect(captured(res.json().id)).toHaveLength(1);
    expect(await ledgerOf(res.json().id)).toHaveLength(2);
  });

  it('a retried request (same Idempotency-Key) replays the payment and charges once', async () => {
    const c = await customer();
    await attach(c, 'tok_visa');
    const headers = { 'idempotency-key': `buy-${c}` };
    const first = await pay(c, 9900, {}, headers);
    const again = await pay(c, 9900, {}, headers);
    expect(again.headers['idempotent-replayed']).toBe('true');
    expect(again.json().id).toBe(first.json().id);
    expect(captured(first.json().id)).toHaveLength(1);
    expect((await t.call('GET', `/v1/payments?customer=${c}`)).json().data).toHaveLength(1);
  });

  it('refunds partly then fully, never above what was captured; VAT is given back in proportion', async () => {
    const c = await customer();
    await attach(c, 'tok_visa');
    const p = (await pay(c, 13900)).json();
    const r1 = await t.call('POST', '/v1/refunds', { payment: p.id, amount: 3333 });
    expect(r1.statusCode).toBe(201);
    expect(r1.json()).toMatchObject({ amount: 3333, status: 'succeeded' });
    expect((await t.call('GET', `/v1/payments/${p.id}`)).json()).toMatchObject({
      status: 'partially_refunded',
      amountRefunded: 3333,
    });
    const tooMuch = await t.call('POST', '/v1/refunds', { payment: p.id, amount: 10568 });
    expect(tooMuch.statusCode).toBe(400);
    expect(tooMuch.json().errors).toEqual([
      {
        path: 'amount',
        in: 'body',
        message: 'must be between 1 and 10567, what is left to refund of this payment',
      },
    ]);
    const rest = await t.call(
      'POST',
      '/v1/refunds',
      { payment: p.id },
      { headers: { 'idempotency-key': `refund-rest-${p.id}` } },
    );
    expect(rest.json()).toMatchObject({ amount: 10567, status: 'succeeded' });
    const replay = await t.call(
      'POST',
      '/v1/refunds',
      { payment: p.id },
      { headers: { 'idempotency-key': `refund-rest-${p.id}` } },
    );
    expect(replay.json().id).toBe(rest.json().id);
    expect((await t.call('GET', `/v1/payments/${p.id}`)).json()).toMatchObject({
      status: 'refunded',
      amountRefunded: 13900,
    });
    expect((await t.call('POST', '/v1/refunds', { payment: p.id, amount: 1 })).statusCode).toBe(409);
    // Each refund's entry is filed under the refund, not the payment.
    expect((await ledgerOf(p.id)).filter((e) => e.idempotencyKey.startsWith('refund:'))).toEqual([]);
    const refunds = [...(await ledgerOf(r1.json().id)), ...(await ledgerOf(rest.json().id))];
    expect(refunds.map((e) => e.idempotencyKey)).toEqual([
      `refund:${r1.json().id}:succeeded`,
      `refund:${rest.json().id}:succeeded`,
    ]);
    const vatBack = refunds
      .flatMap((e) => e.postings)
      .filter((x) => x.account === 'tax_payable:-:SEK')
      .reduce((s, x) => s + x.debit, 0);
    // 25 % VAT included in 139.00 is 27.80; 33.33 refunded gives back 6.67 (666.6 → 667), the rest 21.13.
    expect(vatBack).toBe(2780);
    expect(
      refunds
        .flatMap((e) => e.postings)
        .filter((x) => x.account === 'tax_payable:-:SEK')
        .map((x) => x.debit),
    ).toEqual([667, 2113]);
    expect(await trialBalanced()).toBe(true);
  });

  it('concurrent refunds cannot together exceed the payment', async () => {
    const c = await customer();
    await attach(c, 'tok_visa');
    const p = (await pay(c, 1000)).json();
    const results = await Promise.all(
      Array.from({ length: 5 }, () => t.call('POST', '/v1/refunds', { payment: p.id, amount: 400 })),
    );
    expect(results.filter((r) => r.statusCode === 201)).toHaveLength(2);
    expect((await t.call('GET', `/v1/payments/${p.id}`)).json().amountRefunded).toBe(800);
  });

  it('authorize only, then capture: money is booked at capture; authorize then void: nothing booked', async () => {
    const c = await customer();
    await attach(c, 'tok_visa');
    const held = await pay(c, 4900, { capture: false });
    expect(held.statusCode).toBe(201);
    expect(held.json()).toMatchObject({ status: 'authorized', fee: 0 });
    expect(await ledgerOf(held.json().id)).toEqual([]);
    const captureRes = await t.call('POST', `/v1/payments/${held.json().id}/capture`);
    expect(captureRes.statusCode).toBe(200);
    expect(captureRes.json()).toMatchObject({ status: 'succeeded', fee: 172 });
    expect((await ledgerOf(held.json().id)).map((e) => e.idempotencyKey).sort()).toEqual([
      `payment:${held.json().id}:captured`,
      `payment:${held.json().id}:fee`,
    ]);
    expect((await t.call('POST', `/v1/payments/${held.json().id}/void`)).statusCode).toBe(409);

    const other = (await pay(c, 4900, { capture: false })).json();
    const voided = await t.call('POST', `/v1/payments/${other.id}/void`);
    expect(voided.json()).toMatchObject({ status: 'voided' });
    expect((await t.call('POST', `/v1/payments/${other.id}/void`)).json().status).toBe('voided');
    expect((await t.call('POST', `/v1/payments/${other.id}/capture`)).statusCode).toBe(409);
    expect(await ledgerOf(other.id)).toEqual([]);
    expect(captured(other.id)).toHaveLength(0);
  });

  it('refuses bad input naming the field, and changes nothing', async () => {
    const c = await customer();
    expect((await pay(c, 100)).json().errors).toEqual([
      {
        path: 'paymentMethod',
        in: 'body',
        message: 'the customer has no default payment method; attach one or name one',
      },
    ]);
    const bad = await t.call('POST', '/v1/payments', { customer: c, amount: 10.5, currency: 'sek' });
    expect(bad.statusCode).toBe(400);
    expect(
      bad
        .json()
        .errors.map((e: { path: string }) => e.path)
        .sort(),
    ).toEqual(['amount', 'currency', 'description']);
    expect((await t.call('POST', '/v1/refunds', { payment: 'pay_nope' })).statusCode).toBe(404);
    expect((await attach(c, 'tok_unknown')).statusCode).toBe(400);
  });

  it('needs the right scopes', async () => {
    const reader = await t.keyWith('payments:read');
    const c = await customer();
    expect(
      (
        await t.call(
          'POST',
          '/v1/payments',
          { customer: c, amount: 100, currency: 'SEK', description: 'x' },
          { key: reader },
        )
      ).statusCode,
    ).toBe(403);
    const writer = await t.keyWith('payments:write');
    expect((await t.call('POST', '/v1/refunds', { payment: 'pay_x' }, { key: writer })).statusCode).toBe(403);
  });

  describe('one-off tax, priced like a catalog price of the market (issue 6 item 6)', () => {
    const payIn = (c: string, amount: number, currency: string) =>
      t.call('POST', '/v1/payments', { customer: c, amount, currency, description: 'One-off' });

    it('SE, 25 % included: 12500 charged, 2500 of it tax', async () => {
      const c = await customer('SE');
      await attach(c, 'tok_visa');
      const res = await payIn(c, 12500, 'SEK');
      expect(res.statusCode).toBe(201);
      expect(res.json()).toMatchObject({ amount: 12500, tax: 2500, subtotal: 10000 });
    });

    it('US, 0 % exclusive: 10000 charged, no tax', async () => {
      const c = await customer('US');
      await attach(c, 'tok_visa');
      const res = await payIn(c, 10000, 'USD');
      expect(res.statusCode).toBe(201);
      expect(res.json()).toMatchObject({ amount: 10000, tax: 0, subtotal: 10000, currency: 'USD' });
    });

    it('CA, 7.25 % exclusive: 10000 + 725 tax is charged 10725, and the ledger books 10000 revenue', async () => {
      const c = await customer('CA');
      await attach(c, 'tok_visa');
      const res = await payIn(c, 10000, 'CAD');
      expect(res.statusCode).toBe(201);
      const p = res.json();
      expect(p).toMatchObject({ amount: 10725, tax: 725, subtotal: 10000 });
      expect(captured(p.id)[0]).toMatchObject({ amount: 10725 });
      const capture = (await ledgerOf(p.id)).find((e) => e.idempotencyKey.endsWith(':captured'))!;
      expect(capture.postings).toEqual([
        { account: 'provider_clearing:simulator-a:CAD', currency: 'CAD', debit: 10725, credit: 0 },
        { account: 'revenue:-:CAD', currency: 'CAD', debit: 0, credit: 10000 },
        { account: 'tax_payable:-:CAD', currency: 'CAD', debit: 0, credit: 725 },
      ]);
      // A full refund gives back what was charged, tax included.
      const refund = await t.call('POST', '/v1/refunds', { payment: p.id });
      expect(refund.json()).toMatchObject({ amount: 10725, status: 'succeeded' });
    });

    it('a currency the customer market does not sell in is refused naming currency, nothing stored', async () => {
      const c = await customer('SE');
      await attach(c, 'tok_visa');
      const res = await payIn(c, 10000, 'USD');
      expect(res.statusCode).toBe(400);
      expect(res.json().errors).toEqual([
        { path: 'currency', in: 'body', message: "the customer's market SE sells in SEK; charge in SEK" },
      ]);
      expect((await t.call('GET', `/v1/payments?customer=${c}`)).json().data).toEqual([]);
    });
  });

  describe('bounds and closed states (issue 6 item 10)', () => {
    it('an amount above the currency bound, alone or with tax added, is refused naming amount', async () => {
      const se = await customer('SE');
      await attach(se, 'tok_visa');
      for (const amount of [Number.MAX_SAFE_INTEGER, 100_000_000]) {
        const res = await pay(se, amount);
        expect(res.statusCode).toBe(400);
        expect(res.json().errors[0]).toMatchObject({ path: 'amount' });
      }
      const ca = await customer('CA');
      await attach(ca, 'tok_visa');
      const taxed = await t.call('POST', '/v1/payments', {
        customer: ca,
        amount: 99_999_000,
        currency: 'CAD',
        description: 'x',
      });
      expect(taxed.statusCode).toBe(400);
      expect(taxed.json().errors[0].path).toBe('amount');
      expect((await t.call('GET', `/v1/payments?customer=${se}`)).json().data).toEqual([]);
      // The ledger reads keep working.
      expect((await t.call('GET', '/v1/ledger/trial-balance')).statusCode).toBe(200);
    });

    it('a refund above the currency bound is refused naming amount', async () => {
      const c = await customer();
      await attach(c, 'tok_visa');
      const p = (await pay(c, 1000)).json();
      const res = await t.call('POST', '/v1/refunds', { payment: p.id, amount: Number.MAX_SAFE_INTEGER });
      expect(res.statusCode).toBe(400);
      expect(res.json().errors[0].path).toBe('amount');
    });

    it('an erased customer takes no new payment method (409 invalid_state)', async () => {
      const c = await customer();
      expect((await t.call('POST', `/v1/customers/${c}/erase`)).statusCode).toBe(200);
      const res = await attach(c, 'tok_visa');
      expect(res.statusCode).toBe(409);
      expect(res.json().code).toBe('invalid_state');
      expect(
        await t.app.services.db
          .selectFrom('payment_methods')
          .where('customer_id', '=', c)
          .selectAll()
          .execute(),
      ).toEqual([]);
    });

    it('a provider instance id is refused with the kind to use', async () => {
      const c = await customer();
      const res = await t.call('POST', `/v1/customers/${c}/payment-methods`, {
        provider: 'simulator-a',
        token: 'tok_visa',
      });
      expect(res.statusCode).toBe(400);
      expect(res.json().errors).toEqual([
        {
          path: 'provider',
          in: 'body',
          message:
            "'simulator-a' is a provider instance; name its kind 'simulator' (the method is tokenized at every instance)",
        },
      ]);
    });
  });

  describe('same Idempotency-Key, other input, after the key row is gone (issue 6 item 5)', () => {
    const forget = (key: string) =>
      t.app.services.db.deleteFrom('idempotency_keys').where('key', '=', key).execute();

    it('attach: 422 idempotency_key_reused, no second method', async () => {
      const c = await customer();
      const headers = { 'idempotency-key': `attach-reuse-${c}` };
      const url = `/v1/customers/${c}/payment-methods`;
      expect(
        (await t.call('POST', url, { provider: 'simulator', token: 'tok_visa' }, { headers })).statusCode,
      ).toBe(201);
      await forget(headers['idempotency-key']);
      const other = await t.call(
        'POST',
        url,
        { provider: 'simulator', token: 'tok_mastercard' },
        { headers },
      );
      expect(other.statusCode).toBe(422);
      expect(other.json().code).toBe('idempotency_key_reused');
      expect((await t.call('GET', url)).json().data).toHaveLength(1);
    });

    it('refund: 422 idempotency_key_reused, nothing more refunded', async () => {
      const c = await customer();
      await attach(c, 'tok_visa');
      const p = (await pay(c, 5000)).json();
      const headers = { 'idempotency-key': `refund-reuse-${p.id}` };
      expect(
        (await t.call('POST', '/v1/refunds', { payment: p.id, amount: 1000 }, { headers })).statusCode,
      ).toBe(201);
      await forget(headers['idempotency-key']);
      const other = await t.call('POST', '/v1/refunds', { payment: p.id, amount: 2000 }, { headers });
      expect(other.statusCode).toBe(422);
      expect(other.json().code).toBe('idempotency_key_reused');
      expect((await t.call('GET', `/v1/payments/${p.id}`)).json().amountRefunded).toBe(1000);
      // The same input under the same key still resumes the same refund.
      await forget(headers['idempotency-key']);
      const same = await t.call('POST', '/v1/refunds', { payment: p.id, amount: 1000 }, { headers });
      expect(same.statusCode).toBe(201);
      expect((await t.call('GET', `/v1/payments/${p.id}`)).json().amountRefunded).toBe(1000);
    });

    it('payment: 422 idempotency_key_reused, one charge', async () => {
      const c = await customer();
      await attach(c, 'tok_visa');
      const headers = { 'idempotency-key': `pay-reuse-${c}` };
      const first = await pay(c, 3000, {}, headers);
      await forget(headers['idempotency-key']);
      const other = await pay(c, 3001, {}, headers);
      expect(other.statusCode).toBe(422);
      expect(other.json().code).toBe('idempotency_key_reused');
      expect((await t.call('GET', `/v1/payments?customer=${c}`)).json().data).toHaveLength(1);
      expect(captured(first.json().id)).toHaveLength(1);
    });
  });

  it("a customer's payment methods are paged by limit and cursor (issue 6 item 7)", async () => {
    const c = await customer();
    for (const token of ['tok_visa', 'tok_mastercard', 'tok_amex']) await attach(c, token);
    const url = `/v1/customers/${c}/payment-methods`;
    const first = (await t.call('GET', `${url}?limit=2`)).json();
    expect(first.data.map((m: { last4: string }) => m.last4)).toEqual(['4242', '4444']);
    expect(first.nextCursor).toEqual(expect.any(String));
    const second = (await t.call('GET', `${url}?limit=2&cursor=${first.nextCursor}`)).json();
    expect(second).toMatchObject({ data: [{ last4: '8431' }], nextCursor: null });
    expect((await t.call('GET', `${url}?limit=101`)).statusCode).toBe(400);
  });

  it('/docs lists 402 payment_declined and the simulator test tokens (issue 6 item 11)', async () => {
    const doc = (await t.call('GET', '/openapi.json')).json();
    const create = doc.paths['/v1/payments'].post;
    expect(Object.keys(create.responses)).toContain('402');
    expect(create.description).toContain('tok_chargeCustomerFail');
    const attachDoc = doc.paths['/v1/customers/{id}/payment-methods'].post;
    expect(Object.keys(attachDoc.responses)).toContain('402');
    expect(attachDoc.description).toContain('`simulator`');
    expect(attachDoc.description).toContain('tok_visa');
  });
});
