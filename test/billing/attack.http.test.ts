import type { LightMyRequestResponse } from 'fastify';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestApp, type TestApp } from '../support/app.js';
import { ENGINE } from '../support/database.js';

/**
 * The billing engine attacked through HTTP as a stranger would: money races (the same invoice paid
 * at once, changes, cancels and pauses interleaved, two trial checkouts at once), idempotency replays,
 * scopes, odd ids, malformed input and every operation on every status. Whatever happens: never a
 * 500, never two captured payments for one invoice, the trial balance zero, account credit never
 * negative, and a refused request changes nothing.
 */
describe(`billing under attack (${ENGINE})`, () => {
  let t: TestApp;
  let n = 0;
  const planIds: Record<string, string> = {};

  beforeAll(async () => {
    t = await startTestApp({ providerTimeoutMs: 1_000 });
    await t.markets('SE');
    const ok = async (url: string, body: unknown) => {
      const res = await t.call('POST', url, body);
      if (res.statusCode !== 201) throw new Error(`${url}: ${res.body}`);
    };
    await ok('/v1/products', { code: 'at-music', name: 'Music', features: ['ad-free'], seats: 1 });
    await ok('/v1/products', { code: 'at-books', name: 'Books', features: ['audiobooks'], seats: 1 });
    await ok('/v1/products', { code: 'at-family', name: 'Family', features: ['family-hd'], seats: 3 });
    const plan = (code: string, product: string, amount: number, extra: Record<string, unknown> = {}) =>
      ok('/v1/plans', {
        code,
        product,
        billingPeriod: 'month',
        trialDays: 0,
        prices: [{ currency: 'SEK', amount }],
        ...extra,
      });
    await plan('at-basic', 'at-music', 10000);
    await plan('at-plus', 'at-music', 15000);
    await plan('at-premium', 'at-music', 20000);
    await plan('at-yearly', 'at-music', 100000, { billingPeriod: 'year' });
    await plan('at-books-trial', 'at-books', 16900, { trialDays: 14 });
    await plan('at-family', 'at-family', 17900);
    await plan('at-music-trial', 'at-music', 10000, { trialDays: 7 });
    for (const p of (await t.call('GET', '/v1/plans?limit=100')).json().data as Array<{
      id: string;
      code: string;
    }>) {
      planIds[p.code] = p.id;
    }
  });
  afterAll(() => t.close());

  // ---------------------------------------------------------------- helpers
  type Sub = { id: string; status: string; plan: string; cancelAt: string | null; [k: string]: unknown };
  const customer = async (at = '2027-01-15T00:00:00Z', token = 'tok_visa') => {
    const clock = (await t.call('POST', '/v1/test-clocks', { frozenTime: at })).json();
    const externalId = `attack-user-${++n}`;
    const res = await t.call('POST', '/v1/customers', { externalId, market: 'SE', testClock: clock.id });
    expect(res.statusCode).toBe(201);
    const id = res.json().id as string;
    await attach(id, token);
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
      const res = await t.call('POST', `/v1/customers/${customerId}/payment-methods/${id}/default`);
      expect(res.statusCode).toBe(200);
    }
    return id;
  };
  const advance = async (clock: string, frozenTime: string) => {
    const res = await t.call('POST', `/v1/test-clocks/${clock}/advance`, { frozenTime });
    expect(res.statusCode, res.body).toBe(200);
    return res;
  };
  const subscribe = async (customerId: string, plan: string, status = 201) => {
    const res = await t.call('POST', '/v1/subscriptions', { customer: customerId, plan });
    expect(res.statusCode, res.body).toBe(status);
    return (status === 201 ? res.json() : { id: res.json().subscription, status: 'incomplete' }) as Sub;
  };
  const post = (id: string, action: string, body?: unknown, headers?: Record<string, string>) =>
    t.call('POST', `/v1/subscriptions/${id}/${action}`, body, headers ? { headers } : {});
  const getSub = async (id: string) => (await t.call('GET', `/v1/subscriptions/${id}`)).json() as Sub;
  type Invoice = { id: string; status: string; total: number; amountDue: number; payment: string | null };
  const invoicesOf = async (subscription: string) =>
    (await t.call('GET', `/v1/invoices?subscription=${subscription}&limit=100`)).json().data as Invoice[];
  const paymentsOf = async (customerId: string) =>
    (await t.call('GET', `/v1/payments?customer=${customerId}&limit=100`)).json().data as Array<{
      id: string;
      status: string;
      amount: number;
      amountRefunded: number;
      reference: string | null;
    }>;
  const captured = (p: { status: string }) =>
    ['succeeded', 'partially_refunded', 'refunded'].includes(p.status);
  const no500 = (res: LightMyRequestResponse) => expect(res.statusCode, res.body).toBeLessThan(500);

  /** The money invariants: balanced ledger, no negative account credit, no invoice paid twice. */
  const invariants = async (customerId: string) => {
    const tb = (await t.call('GET', '/v1/ledger/trial-balance?verify=true')).json();
    for (const c of tb.currencies as Array<{ debits: number; credits: number; balanced: boolean }>) {
      expect(c.balanced).toBe(true);
      expect(c.debits).toBe(c.credits);
    }
    const credits = (
      await t.call('GET', `/v1/ledger/accounts?type=customer_credit&owner=${customerId}&limit=100`)
    ).json().data as Array<{ balance: number }>;
    for (const a of credits) expect(Number(a.balance)).toBeGreaterThanOrEqual(0);
    const payments = await paymentsOf(customerId);
    const byInvoice = new Map<string, number>();
    for (const p of payments.filter(captured)) {
      if (p.reference) byInvoice.set(p.reference, (byInvoice.get(p.reference) ?? 0) + 1);
    }
    for (const [invoice, count] of byInvoice) expect(count, `captured payments of ${invoice}`).toBe(1);
  };
  /** A subscription past_due on its Feb 15 renewal (the card declines), then a good default card. */
  const pastDue = async () => {
    const c = await customer();
    const sub = await subscribe(c.id, 'at-basic');
    await attach(c.id, 'tok_chargeCustomerFail', true);
    await advance(c.clock, '2027-02-15T12:00:00Z');
    expect((await getSub(sub.id)).status).toBe('past_due');
    const renewal = (await invoicesOf(sub.id))[1]!;
    expect(renewal).toMatchObject({ status: 'open', amountDue: 10000 });
    return { c, sub, renewal };
  };

  // ---------------------------------------------------------------- money races
  describe('money races', () => {
    it('the same invoice paid four times at once (two without a key, two with one key): one capture', async () => {
      const { c, sub, renewal } = await pastDue();
      await attach(c.id, 'tok_visa', true);
      const pay = (key?: string) =>
        t.call(
          'POST',
          `/v1/invoices/${renewal.id}/pay`,
          {},
          key ? { headers: { 'idempotency-key': key } } : {},
        );
      const answers = await Promise.all([pay(), pay(), pay('pay-race-1'), pay('pay-race-1')]);
      for (const a of answers) no500(a);
      const codes = answers.map((a) => a.statusCode);
      expect(codes.filter((s) => s === 200).length).toBeGreaterThanOrEqual(1);
      for (const a of answers) {
        if (a.statusCode !== 200)
          expect(['invalid_state', 'idempotency_key_in_use']).toContain(a.json().code);
      }
      expect((await invoicesOf(sub.id))[1]).toMatchObject({ status: 'paid', amountDue: 10000 });
      const renewalPayments = (await paymentsOf(c.id)).filter((p) => p.reference === renewal.id);
      expect(renewalPayments.filter(captured)).toHaveLength(1);
      expect(await getSub(sub.id)).toMatchObject({
        status: 'active',
        currentPeriodStart: '2027-02-15T00:00:00Z',
      });
      // A later pay of the paid invoice is refused and changes nothing.
      const again = await pay();
      expect(again.statusCode).toBe(409);
      expect(again.json().code).toBe('invalid_state');
      await invariants(c.id);
    });

    it('a pay at once with the advance that runs its dunning retry: one capture', async () => {
      const { c, sub, renewal } = await pastDue();
      await attach(c.id, 'tok_visa', true);
      const [paid, advanced] = await Promise.all([
        t.call('POST', `/v1/invoices/${renewal.id}/pay`, {}),
        t.call('POST', `/v1/test-clocks/${c.clock}/advance`, { frozenTime: '2027-02-16T12:00:00Z' }),
      ]);
      no500(paid);
      expect(advanced.statusCode, advanced.body).toBe(200);
      expect([200, 409]).toContain(paid.statusCode);
      expect((await invoicesOf(sub.id))[1]).toMatchObject({ status: 'paid' });
      expect(
        (await paymentsOf(c.id)).filter((p) => p.reference === renewal.id).filter(captured),
      ).toHaveLength(1);
      expect((await getSub(sub.id)).status).toBe('active');
      await invariants(c.id);
    });

    it('two immediate upgrades at once: one wins, the other is refused unchanged; a later one prorates against the winner', async () => {
      const c = await customer();
      const sub = await subscribe(c.id, 'at-basic');
      await advance(c.clock, '2027-01-25T00:00:00Z');
      const answers = await Promise.all([
        post(sub.id, 'change', { plan: 'at-plus', timing: 'immediate' }),
        post(sub.id, 'change', { plan: 'at-premium', timing: 'immediate' }),
      ]);
      for (const a of answers) no500(a);
      // One immediate change per instant (a test clock stands still): the loser is 409 and changes nothing.
      expect(answers.map((a) => a.statusCode).sort()).toEqual([200, 409]);
      const winner = answers.find((a) => a.statusCode === 200)!.json() as Sub;
      expect(answers.find((a) => a.statusCode === 409)!.json().code).toBe('invalid_state');
      expect(await getSub(sub.id)).toEqual(winner);
      type Lined = Invoice & { lines: Array<{ kind: string; amount: number }> };
      const [, first] = (await invoicesOf(sub.id)) as Lined[];
      // Jan 25 → Feb 15 is 21 of 31 days: −10000 × 21/31 = −6774; plus 10161 or premium 13548.
      expect(first!.lines.find((l) => l.kind === 'proration_credit')!.amount).toBe(-6774);
      const charged = first!.lines.find((l) => l.kind === 'proration_charge')!.amount;
      expect(charged).toBe(winner.plan === planIds['at-plus'] ? 10161 : 13548);

      await advance(c.clock, '2027-01-25T01:00:00Z');
      const other = winner.plan === planIds['at-plus'] ? 'at-premium' : 'at-plus';
      const again = await post(sub.id, 'change', { plan: other, timing: 'immediate' });
      expect(again.statusCode, again.body).toBe(200);
      const invoices = (await invoicesOf(sub.id)) as Lined[];
      expect(invoices).toHaveLength(3);
      expect(invoices[2]!.lines.find((l) => l.kind === 'proration_credit')!.amount).toBe(-charged);
      const payments = (await paymentsOf(c.id)).filter(captured);
      expect(payments.map((p) => p.amount).sort()).toEqual(
        invoices
          .filter((i) => i.amountDue > 0)
          .map((i) => i.amountDue)
          .sort(),
      );
      await invariants(c.id);
    });

    it('cancel and change at once: one wins, the other sees its result', async () => {
      const c = await customer();
      const sub = await subscribe(c.id, 'at-basic');
      await advance(c.clock, '2027-01-25T00:00:00Z');
      const [cancel, change] = await Promise.all([
        post(sub.id, 'cancel', { timing: 'immediate', refund: 'prorated' }),
        post(sub.id, 'change', { plan: 'at-premium', timing: 'immediate' }),
      ]);
      no500(cancel);
      no500(change);
      expect(cancel.statusCode).toBe(200);
      const after = await getSub(sub.id);
      expect(after.status).toBe('canceled');
      await invariants(c.id);
      // Whatever was captured beyond what the served time cost was refunded or is account credit.
      const payments = await paymentsOf(c.id);
      const net = payments.filter(captured).reduce((s, p) => s + p.amount - p.amountRefunded, 0);
      expect(net).toBeGreaterThan(0);
    });

    it('pause, resume, pause at one frozen instant: the second pause invoice is refused (409), not a 500', async () => {
      const c = await customer();
      const sub = await subscribe(c.id, 'at-basic');
      await advance(c.clock, '2027-01-25T00:00:00Z');
      expect((await post(sub.id, 'pause', {})).statusCode).toBe(200);
      expect([200, 402]).toContain((await post(sub.id, 'resume', {})).statusCode);
      const again = await post(sub.id, 'pause', {});
      no500(again);
      if (again.statusCode !== 200) expect(again.json().code, again.body).toBe('invalid_state');
      await invariants(c.id);
    });

    it('pause, resume and cancel interleaved: the state machine holds, money balances', async () => {
      const c = await customer();
      const sub = await subscribe(c.id, 'at-basic');
      await advance(c.clock, '2027-01-25T00:00:00Z');
      const answers = await Promise.all([
        post(sub.id, 'pause', {}),
        post(sub.id, 'resume', {}),
        post(sub.id, 'cancel', { timing: 'immediate' }),
        post(sub.id, 'pause', {}),
      ]);
      for (const a of answers) {
        no500(a);
        if (a.statusCode !== 200) expect(a.json().code, a.body).toBe('invalid_state');
      }
      expect((await getSub(sub.id)).status).toBe('canceled');
      await invariants(c.id);
    });

    it('two checkouts at once with a trial for the same customer and product: one trial only', async () => {
      const c = await customer();
      const answers = await Promise.all([
        t.call('POST', '/v1/subscriptions', { customer: c.id, plan: 'at-books-trial' }),
        t.call('POST', '/v1/subscriptions', { customer: c.id, plan: 'at-books-trial' }),
      ]);
      for (const a of answers) no500(a);
      const subs = (await t.call('GET', `/v1/subscriptions?customer=${c.id}`)).json().data as Sub[];
      expect(subs.filter((s) => s.status === 'trialing')).toHaveLength(1);
      await invariants(c.id);
    });
  });

  describe('more races and foreign references', () => {
    it('a past_due invoice paid at once with a cancel that voids it: either order, no money lost', async () => {
      for (let round = 0; round < 2; round++) {
        const { c, sub, renewal } = await pastDue();
        await attach(c.id, 'tok_visa', true);
        const pay = () => t.call('POST', `/v1/invoices/${renewal.id}/pay`, {});
        const cancel = () => post(sub.id, 'cancel', { timing: 'immediate' });
        const [first, second] =
          round === 0 ? await Promise.all([pay(), cancel()]) : await Promise.all([cancel(), pay()]);
        no500(first!);
        no500(second!);
        expect((await getSub(sub.id)).status).toBe('canceled');
        const invoice = (await invoicesOf(sub.id))[1]!;
        const payments = (await paymentsOf(c.id)).filter((p) => p.reference === renewal.id && captured(p));
        expect(payments).toHaveLength(invoice.status === 'paid' ? 1 : payments.length);
        expect(payments.length).toBeLessThanOrEqual(1);
        await invariants(c.id);
      }
    });

    it('a charge that comes back after a cancel voided its invoice becomes account credit, which the next invoice spends', async () => {
      const { c, sub, renewal } = await pastDue();
      await attach(c.id, 'tok_visa', true);
      // Hold the charge at the provider (no transaction is open then, ADR 0010) while the cancel runs.
      const payments = t.app.services.payments;
      const original = payments.charge.bind(payments);
      let entered!: () => void;
      const charging = new Promise<void>((r) => {
        entered = r;
      });
      let release!: () => void;
      const gate = new Promise<void>((r) => {
        release = r;
      });
      payments.charge = async (payment, lease) => {
        entered();
        await gate;
        return original(payment, lease);
      };
      let paid: LightMyRequestResponse;
      try {
        const paying = t.call('POST', `/v1/invoices/${renewal.id}/pay`, {});
        await charging;
        const canceled = await post(sub.id, 'cancel', { timing: 'immediate' });
        expect(canceled.statusCode, canceled.body).toBe(200);
        expect((await invoicesOf(sub.id))[1]!.status).toBe('void');
        release();
        paid = await paying;
      } finally {
        release();
        payments.charge = original;
      }
      no500(paid);
      expect((await getSub(sub.id)).status).toBe('canceled');
      expect((await invoicesOf(sub.id))[1]!.status).toBe('void');
      const captures = (await paymentsOf(c.id)).filter((p) => p.reference === renewal.id && captured(p));
      expect(captures.map((p) => [p.amount, p.amountRefunded])).toEqual([[10000, 0]]);
      const credit = async () =>
        (
          (await t.call('GET', `/v1/ledger/accounts?type=customer_credit&owner=${c.id}&limit=100`)).json()
            .data as Array<{ balance: number }>
        ).reduce((sum, a) => sum + Number(a.balance), 0);
      // The 100.00 SEK taken is the customer's account credit (ledger and balance agree)…
      expect(await credit()).toBe(10000);
      await invariants(c.id);
      // …which the next sign-up spends: nothing charged.
      const next = await subscribe(c.id, 'at-basic');
      expect(next.status).toBe('active');
      const first = (await invoicesOf(next.id))[0] as Invoice & {
        lines: Array<{ kind: string; amount: number }>;
      };
      expect(first).toMatchObject({ status: 'paid', total: 10000, amountDue: 0 });
      expect(first.lines.find((l) => l.kind === 'credit_applied')?.amount).toBe(-10000);
      expect(await credit()).toBe(0);
      expect((await paymentsOf(c.id)).filter(captured)).toHaveLength(2);
      await invariants(c.id);
    });

    it("another customer's payment method or an unknown one is refused, never charged", async () => {
      const { c, sub, renewal } = await pastDue();
      const stranger = await customer();
      const theirs = (await t.call('GET', `/v1/customers/${stranger.id}/payment-methods`)).json().data[0]
        .id as string;
      for (const paymentMethod of [theirs, 'pm_01ZZZZZZZZZZZZZZZZZZZZZZZZ', 'nope']) {
        const res = await t.call('POST', `/v1/invoices/${renewal.id}/pay`, { paymentMethod });
        no500(res);
        expect([400, 404, 409], `${paymentMethod}: ${res.body}`).toContain(res.statusCode);
        const checkout = await t.call('POST', '/v1/subscriptions', {
          customer: c.id,
          plan: 'at-family',
          paymentMethod,
        });
        no500(checkout);
        expect([400, 404, 409], `${paymentMethod}: ${checkout.body}`).toContain(checkout.statusCode);
      }
      expect(await paymentsOf(stranger.id)).toHaveLength(0);
      expect((await invoicesOf(sub.id))[1]!.status).toBe('open');
      expect((await t.call('GET', `/v1/subscriptions?customer=${c.id}`)).json().data).toHaveLength(1);
      // Unknown customer and plan: 404, nothing created.
      for (const body of [
        { customer: 'cus_01ZZZZZZZZZZZZZZZZZZZZZZZZ', plan: 'at-basic' },
        { customer: c.id, plan: 'plan_01ZZZZZZZZZZZZZZZZZZZZZZZZ' },
        { customer: c.id, plan: 'no-such-plan' },
      ]) {
        const res = await t.call('POST', '/v1/subscriptions', body);
        expect(res.statusCode, res.body).toBe(404);
      }
      const unknownPlan = await post(sub.id, 'change', { plan: 'no-such-plan' });
      expect(unknownPlan.statusCode, unknownPlan.body).toBe(404);
      await invariants(c.id);
      await invariants(stranger.id);
    });

    it('a change and a pause at once, and an advance over the renewal at once with a change', async () => {
      const c = await customer();
      const sub = await subscribe(c.id, 'at-basic');
      await advance(c.clock, '2027-01-25T00:00:00Z');
      const [changed, paused] = await Promise.all([
        post(sub.id, 'change', { plan: 'at-premium', timing: 'immediate' }),
        post(sub.id, 'pause', {}),
      ]);
      no500(changed);
      no500(paused);
      await invariants(c.id);

      const d = await customer();
      const other = await subscribe(d.id, 'at-basic');
      await advance(d.clock, '2027-02-14T23:00:00Z');
      const [moved, change] = await Promise.all([
        t.call('POST', `/v1/test-clocks/${d.clock}/advance`, { frozenTime: '2027-03-20T00:00:00Z' }),
        post(other.id, 'change', { plan: 'at-yearly' }),
      ]);
      expect(moved.statusCode, moved.body).toBe(200);
      no500(change);
      const after = await getSub(other.id);
      expect(['active']).toContain(after.status);
      for (const i of await invoicesOf(other.id)) expect(i.status).toBe('paid');
      await invariants(d.id);
    });
  });

  describe('trials', () => {
    it("a trial changed to another product's plan counts as that product's trial: no second trial of it later", async () => {
      const c = await customer();
      const books = await subscribe(c.id, 'at-books-trial');
      expect(books.status).toBe('trialing');
      const changed = await post(books.id, 'change', { plan: 'at-plus' });
      expect(changed.statusCode, changed.body).toBe(200);
      expect(changed.json()).toMatchObject({ status: 'trialing', plan: planIds['at-plus'] });
      expect((await post(books.id, 'cancel', { timing: 'immediate' })).statusCode).toBe(200);
      // The music trial was had (through the change): a music trial plan now starts paid.
      const music = await subscribe(c.id, 'at-music-trial');
      expect(music).toMatchObject({ status: 'active', trialEnd: null });
      // And the books trial too.
      const again = await subscribe(c.id, 'at-books-trial');
      expect(again).toMatchObject({ status: 'active', trialEnd: null });
      await invariants(c.id);
    });
  });

  // ---------------------------------------------------------------- idempotency
  describe('idempotency', () => {
    const keyed = (key: string) => ({ headers: { 'idempotency-key': key } });
    const replays = async (url: string, body: unknown, key: string) => {
      const first = await t.call('POST', url, body, keyed(key));
      no500(first);
      const again = await t.call('POST', url, body, keyed(key));
      expect(again.statusCode, `${url}: ${again.body}`).toBe(first.statusCode);
      expect(again.headers['idempotent-replayed'], url).toBe('true');
      expect(again.json()).toEqual(first.json());
      return first;
    };
    const reused = async (url: string, body: unknown, key: string) => {
      const res = await t.call('POST', url, body, keyed(key));
      expect(res.statusCode, `${url}: ${res.body}`).toBe(422);
      expect(res.json().code).toBe('idempotency_key_reused');
    };

    it('every billing POST replays its answer with the same key, and refuses the key with another body', async () => {
      const c = await customer();
      const family = await customer();
      const checkout = await replays(
        '/v1/subscriptions',
        { customer: c.id, plan: 'at-basic' },
        'idem-checkout',
      );
      expect(checkout.statusCode).toBe(201);
      const sub = checkout.json() as Sub;
      expect((await t.call('GET', `/v1/subscriptions?customer=${c.id}`)).json().data).toHaveLength(1);
      await reused('/v1/subscriptions', { customer: c.id, plan: 'at-plus' }, 'idem-checkout');
      await advance(c.clock, '2027-01-25T00:00:00Z');

      const base = `/v1/subscriptions/${sub.id}`;
      expect((await replays(`${base}/change/preview`, { plan: 'at-plus' }, 'idem-preview')).statusCode).toBe(
        200,
      );
      await reused(`${base}/change/preview`, { plan: 'at-premium' }, 'idem-preview');
      expect((await replays(`${base}/change`, { plan: 'at-plus' }, 'idem-change')).statusCode).toBe(200);
      await reused(`${base}/change`, { plan: 'at-premium' }, 'idem-change');
      expect(await invoicesOf(sub.id)).toHaveLength(2);
      expect((await replays(`${base}/cancel`, {}, 'idem-cancel')).statusCode).toBe(200);
      await reused(`${base}/cancel`, { timing: 'immediate' }, 'idem-cancel');
      expect((await replays(`${base}/reactivate`, undefined, 'idem-reactivate')).statusCode).toBe(200);
      expect((await replays(`${base}/pause`, {}, 'idem-pause')).statusCode).toBe(200);
      await reused(`${base}/pause`, { at: '2027-01-26T00:00:00Z' }, 'idem-pause');
      expect(await invoicesOf(sub.id)).toHaveLength(3);
      expect((await replays(`${base}/resume`, {}, 'idem-resume')).statusCode).toBe(200);
      await reused(`${base}/resume`, { at: '2027-01-26T00:00:00Z' }, 'idem-resume');
      expect(await invoicesOf(sub.id)).toHaveLength(4);
      // A key reused on another route of the same subscription.
      await reused(`${base}/cancel`, {}, 'idem-pause');
      await reused(`${base}/pause`, {}, 'idem-cancel');
      expect((await getSub(sub.id)).status).toBe('active');

      const fam = await subscribe(family.id, 'at-family');
      const members = `/v1/subscriptions/${fam.id}/members`;
      expect((await replays(members, { externalId: 'idem-member-1' }, 'idem-member')).statusCode).toBe(201);
      await reused(members, { externalId: 'idem-member-2' }, 'idem-member');
      expect((await getSub(fam.id)).members).toEqual(['idem-member-1']);
      // A refusal (4xx) is replayed too, and changes nothing.
      const refused = await replays(`${base}/members`, { externalId: 'x' }, 'idem-member-refused');
      expect(refused.statusCode).toBe(409);

      // Pay: a past_due invoice paid with a key, replayed without a second charge.
      const { c: pd, renewal } = await pastDue();
      await attach(pd.id, 'tok_visa', true);
      expect((await replays(`/v1/invoices/${renewal.id}/pay`, {}, 'idem-pay')).statusCode).toBe(200);
      await reused(`/v1/invoices/${renewal.id}/pay`, { paymentMethod: 'pm_other' }, 'idem-pay');
      expect(
        (await paymentsOf(pd.id)).filter((p) => p.reference === renewal.id).filter(captured),
      ).toHaveLength(1);
      await invariants(c.id);
      await invariants(pd.id);
    });
  });

  // ---------------------------------------------------------------- authorization and paths
  describe('authorization and paths', () => {
    it('each billing route refuses a key without its scope (403), whatever other scopes it has', async () => {
      const c = await customer();
      const sub = await subscribe(c.id, 'at-basic');
      const invoice = (await invoicesOf(sub.id))[0]!;
      const before = { sub: await getSub(sub.id), invoices: await invoicesOf(sub.id) };
      const readOnly = await t.keyWith('subscriptions:read');
      const writeOnly = await t.keyWith('subscriptions:write');
      const others = await t.keyWith('customers:write', 'payments:write', 'payments:refund', 'catalog:write');
      const entitlementsOnly = await t.keyWith('entitlements:read');
      const writes: Array<[string, string, unknown]> = [
        ['POST', '/v1/subscriptions', { customer: c.id, plan: 'at-plus' }],
        ['POST', `/v1/subscriptions/${sub.id}/change`, { plan: 'at-plus' }],
        ['POST', `/v1/subscriptions/${sub.id}/cancel`, { timing: 'immediate' }],
        ['POST', `/v1/subscriptions/${sub.id}/reactivate`, undefined],
        ['POST', `/v1/subscriptions/${sub.id}/pause`, {}],
        ['POST', `/v1/subscriptions/${sub.id}/resume`, {}],
        ['POST', `/v1/subscriptions/${sub.id}/members`, { externalId: 'm' }],
        ['DELETE', `/v1/subscriptions/${sub.id}/members/m`, undefined],
        ['POST', `/v1/invoices/${invoice.id}/pay`, {}],
      ];
      const reads: Array<[string, string, unknown]> = [
        ['GET', `/v1/subscriptions/${sub.id}`, undefined],
        ['GET', `/v1/subscriptions?customer=${c.id}`, undefined],
        ['GET', `/v1/invoices/${invoice.id}`, undefined],
        ['GET', `/v1/invoices?subscription=${sub.id}`, undefined],
        ['POST', `/v1/subscriptions/${sub.id}/change/preview`, { plan: 'at-plus' }],
      ];
      const entitlementRoutes: Array<[string, string, unknown]> = [
        ['GET', `/v1/entitlements/${c.externalId}`, undefined],
        ['POST', '/v1/entitlements/batch', { externalIds: [c.externalId] }],
      ];
      const refused = async (key: string, routes: Array<[string, string, unknown]>, scope: string) => {
        for (const [method, url, body] of routes) {
          const res = await t.call(method as 'GET', url, body, { key });
          expect(res.statusCode, `${method} ${url}: ${res.body}`).toBe(403);
          expect(res.json()).toMatchObject({ code: 'forbidden', requiredScope: scope });
        }
      };
      await refused(readOnly, writes, 'subscriptions:write');
      await refused(others, writes, 'subscriptions:write');
      await refused(entitlementsOnly, writes, 'subscriptions:write');
      await refused(others, reads, 'subscriptions:read');
      await refused(entitlementsOnly, reads, 'subscriptions:read');
      await refused(writeOnly, entitlementRoutes, 'entitlements:read');
      await refused(readOnly, entitlementRoutes, 'entitlements:read');
      for (const [method, url, body] of reads) {
        expect((await t.call(method as 'GET', url, body, { key: readOnly })).statusCode, url).toBe(200);
        expect((await t.call(method as 'GET', url, body, { key: writeOnly })).statusCode, url).toBe(200);
      }
      for (const [method, url, body] of entitlementRoutes) {
        expect((await t.call(method as 'GET', url, body, { key: entitlementsOnly })).statusCode, url).toBe(
          200,
        );
      }
      for (const [method, url, body] of [...writes, ...reads]) {
        expect((await t.call(method as 'GET', url, body, { key: null })).statusCode, url).toBe(401);
        expect((await t.call(method as 'GET', url, body, { key: 'nope' })).statusCode, url).toBe(401);
      }
      expect({ sub: await getSub(sub.id), invoices: await invoicesOf(sub.id) }).toEqual(before);
    });

    it('odd and unknown ids in paths: 404 (or 400 naming the id), never 500', async () => {
      const long = `sub_${'A'.repeat(5000)}`;
      const ids = [
        'sub_01ZZZZZZZZZZZZZZZZZZZZZZZZ',
        'inv_01ZZZZZZZZZZZZZZZZZZZZZZZZ',
        '%2F',
        '%2E%2E',
        '..',
        'a%2Fb',
        '%F0%9F%98%80',
        'caf%C3%A9',
        "x'%20OR%201=1--",
        `sub_${'A'.repeat(60)}`,
        '%25',
        '%E0%A4%A',
        '%00',
        '%ED%A0%80',
        'undefined',
        'null',
        long,
      ];
      for (const id of ids) {
        const routes: Array<[string, string, unknown]> = [
          ['GET', `/v1/subscriptions/${id}`, undefined],
          ['GET', `/v1/invoices/${id}`, undefined],
          ['POST', `/v1/invoices/${id}/pay`, {}],
          ['POST', `/v1/subscriptions/${id}/change`, { plan: 'at-plus' }],
          ['POST', `/v1/subscriptions/${id}/change/preview`, { plan: 'at-plus' }],
          ['POST', `/v1/subscriptions/${id}/cancel`, {}],
          ['POST', `/v1/subscriptions/${id}/reactivate`, undefined],
          ['POST', `/v1/subscriptions/${id}/pause`, {}],
          ['POST', `/v1/subscriptions/${id}/resume`, {}],
          ['POST', `/v1/subscriptions/${id}/members`, { externalId: 'm' }],
          ['DELETE', `/v1/subscriptions/${id}/members/${id}`, undefined],
          ['GET', `/v1/entitlements/${id}`, undefined],
          ['GET', `/v1/invoices?subscription=${id}`, undefined],
          ['GET', `/v1/subscriptions?customer=${id}`, undefined],
        ];
        for (const [method, url, body] of routes) {
          const res = await t.call(method as 'GET', url, body);
          expect(res.statusCode, `${method} ${url.slice(0, 120)}: ${res.body.slice(0, 300)}`).toBeLessThan(
            500,
          );
          if (res.statusCode >= 400) {
            expect(
              ['not_found', 'validation_failed', 'uri_too_long'],
              `${method} ${url.slice(0, 80)}`,
            ).toContain(res.json().code);
          }
        }
      }
    });
  });

  // ---------------------------------------------------------------- input
  describe('input', () => {
    /** 400 validation_failed naming `path`, and the subscription (and its invoices) unchanged. */
    const refusedNaming = async (res: LightMyRequestResponse, path: string) => {
      expect(res.statusCode, res.body).toBe(400);
      expect(res.json().code).toBe('validation_failed');
      expect(
        (res.json().errors as Array<{ path: string }>).map((e) => e.path),
        res.body,
      ).toContain(path);
    };

    it('malformed, oversized, mistyped and unknown input is 400 naming the field and changes nothing', async () => {
      const c = await customer();
      const sub = await subscribe(c.id, 'at-basic');
      const snapshot = async () => ({
        sub: await getSub(sub.id),
        invoices: await invoicesOf(sub.id),
        payments: await paymentsOf(c.id),
      });
      const before = await snapshot();
      const base = `/v1/subscriptions/${sub.id}`;

      await refusedNaming(await t.call('POST', '/v1/subscriptions', { customer: c.id, plan: 123 }), 'plan');
      await refusedNaming(await t.call('POST', '/v1/subscriptions', { customer: c.id }), 'plan');
      await refusedNaming(
        await t.call('POST', '/v1/subscriptions', { customer: c.id, plan: 'at-plus', trialDays: 0 }),
        'trialDays',
      );
      await refusedNaming(
        await t.call('POST', '/v1/subscriptions', { customer: c.id, plan: 'at-plus', coupon: 'FREE' }),
        'coupon',
      );
      await refusedNaming(await post(sub.id, 'change', { plan: 'at-plus', timing: 'later' }), 'timing');
      await refusedNaming(
        await post(sub.id, 'change', { plan: 'at-plus', prorationUnit: 'hour' }),
        'prorationUnit',
      );
      await refusedNaming(await post(sub.id, 'change', { plan: ['at-plus'] }), 'plan');
      await refusedNaming(await post(sub.id, 'change', { plan: 'at-plus', price: 1 }), 'price');
      await refusedNaming(await post(sub.id, 'change/preview', { plan: 'at-plus', price: 1 }), 'price');
      await refusedNaming(await post(sub.id, 'change', { plan: 'at-basic' }), 'plan');
      await refusedNaming(await post(sub.id, 'cancel', { timing: 'never' }), 'timing');
      await refusedNaming(await post(sub.id, 'cancel', { refund: 'full' }), 'refund');
      await refusedNaming(
        await post(sub.id, 'cancel', { timing: 'end_of_term', refund: 'prorated' }),
        'refund',
      );
      await refusedNaming(await post(sub.id, 'cancel', { timing: 'immediate', reason: 'x' }), 'reason');
      await refusedNaming(await post(sub.id, 'cancel', { timing: 1 }), 'timing');
      for (const at of [
        'tomorrow',
        '2027-13-01T00:00:00Z',
        '2027-02-30T00:00:00Z',
        '',
        '+275760-09-13T00:00:00Z',
      ]) {
        const res = await post(sub.id, 'pause', { at });
        expect(res.statusCode, `${at}: ${res.body}`).toBe(400);
        expect((res.json().errors as Array<{ path: string }>).map((e) => e.path)).toContain('at');
      }
      for (const at of [
        '1900-01-01T00:00:00Z',
        '2026-01-01T00:00:00Z',
        '2030-01-01T00:00:00Z',
        '9999-12-31T23:59:59Z',
        12,
      ]) {
        const res = await post(sub.id, 'pause', { at });
        no500(res);
        expect([400, 409], `${at}: ${res.body}`).toContain(res.statusCode);
      }
      await refusedNaming(await post(sub.id, 'pause', { at: '2027-01-20T00:00:00Z', until: 'x' }), 'until');
      await refusedNaming(await post(sub.id, 'resume', { at: '2030-01-01T00:00:00Z', x: 1 }), 'x');
      await refusedNaming(await post(sub.id, 'members', { externalId: 'x'.repeat(300) }), 'externalId');
      await refusedNaming(await post(sub.id, 'members', { externalId: '' }), 'externalId');
      await refusedNaming(await post(sub.id, 'members', { externalId: 'a\u0000b' }), 'externalId');
      await refusedNaming(await post(sub.id, 'members', { externalId: 'a\ud800b' }), 'externalId');
      await refusedNaming(await post(sub.id, 'members', { externalId: 7 }), 'externalId');
      await refusedNaming(await post(sub.id, 'members', { externalId: 'm', role: 'owner' }), 'role');
      const pay = await t.call('POST', `/v1/invoices/${before.invoices[0]!.id}/pay`, { paymentMethod: 5 });
      await refusedNaming(pay, 'paymentMethod');
      await refusedNaming(
        await t.call('POST', `/v1/invoices/${before.invoices[0]!.id}/pay`, { amount: 5 }),
        'amount',
      );

      // Not JSON, JSON that is not an object, a deep nest, a body over the limit.
      const raw = (url: string, payload: string, type = 'application/json') =>
        t.app.server.inject({
          method: 'POST',
          url,
          payload,
          headers: { authorization: `Bearer ${t.config.bootstrapKey}`, 'content-type': type },
        });
      for (const payload of ['{', '{"plan":', 'null', '[]', '"x"', '123', 'true', '{"plan":"at-plus"}}']) {
        const res = await raw(`${base}/change`, payload);
        no500(res);
        expect(res.statusCode, `${payload}: ${res.body}`).toBe(400);
      }
      const deep = `${'{"a":'.repeat(5000)}1${'}'.repeat(5000)}`;
      no500(await raw(`${base}/cancel`, deep));
      expect((await raw(`${base}/cancel`, deep)).statusCode).toBe(400);
      const huge = JSON.stringify({ plan: 'at-plus', pad: 'x'.repeat(t.config.bodyLimitBytes + 10) });
      const tooLarge = await raw(`${base}/change`, huge);
      expect(tooLarge.statusCode, tooLarge.body.slice(0, 200)).toBe(413);
      const text = await raw(`${base}/cancel`, 'timing=immediate', 'application/x-www-form-urlencoded');
      expect(text.statusCode, text.body).toBe(415);
      const wide = await raw(
        `${base}/cancel`,
        JSON.stringify(Object.fromEntries(Array.from({ length: 5000 }, (_, i) => [`f${i}`, i]))),
      );
      no500(wide);
      expect(wide.statusCode).toBe(400);

      expect(await snapshot()).toEqual(before);
      await invariants(c.id);
    });

    it('members are bounded by seats however many are sent; batch entitlements of 1000, 1001 and duplicates', async () => {
      const c = await customer();
      const fam = await subscribe(c.id, 'at-family');
      const base = `/v1/subscriptions/${fam.id}/members`;
      expect((await t.call('POST', base, { externalId: 'seat-1' })).statusCode).toBe(201);
      const dup = await t.call('POST', base, { externalId: 'seat-1' });
      expect(dup.statusCode).toBe(409);
      expect(dup.json().code).toBe('already_exists');
      await refusedNaming(await t.call('POST', base, { externalId: c.externalId }), 'externalId');
      // Many at once after that: exactly one more fits (3 seats = the owner + 2 members).
      const many = await Promise.all(
        Array.from({ length: 40 }, (_, i) => t.call('POST', base, { externalId: `seat-more-${i}` })),
      );
      for (const res of many) no500(res);
      expect(many.filter((r) => r.statusCode === 201)).toHaveLength(1);
      for (const res of many.filter((r) => r.statusCode !== 201)) {
        expect(res.statusCode).toBe(409);
        expect(res.json().detail).toMatch(/seat/);
      }
      // One by one, more: each refused.
      for (let i = 0; i < 60; i++) {
        expect((await t.call('POST', base, { externalId: `seat-late-${i}` })).statusCode).toBe(409);
      }
      const members = (await getSub(fam.id)).members as string[];
      expect(members).toHaveLength(2);
      expect(members[0]).toBe('seat-1');
      const notMember = await t.call('DELETE', `${base}/nobody`);
      expect(notMember.statusCode).toBe(404);
      const encoded = await t.call('DELETE', `${base}/${encodeURIComponent('seat-1')}`);
      expect(encoded.statusCode).toBe(200);
      expect((await getSub(fam.id)).members).toHaveLength(1);

      const ids = Array.from({ length: 1000 }, (_, i) => (i % 3 === 0 ? members[1]! : `nobody-${i}`));
      ids[1] = c.externalId;
      ids[2] = c.externalId;
      const batch = await t.call('POST', '/v1/entitlements/batch', { externalIds: ids });
      expect(batch.statusCode, batch.body.slice(0, 300)).toBe(200);
      const data = batch.json().data as Array<{ externalId: string; active: boolean }>;
      expect(data.map((d) => d.externalId)).toEqual(ids);
      expect(data[0]!.active).toBe(true);
      expect(data[1]!.active).toBe(true);
      expect(data[2]).toEqual(data[1]);
      expect(data[4]!.active).toBe(false);
      await refusedNaming(
        await t.call('POST', '/v1/entitlements/batch', { externalIds: [...ids, 'one-too-many'] }),
        'externalIds',
      );
      await refusedNaming(await t.call('POST', '/v1/entitlements/batch', { externalIds: [] }), 'externalIds');
      await refusedNaming(
        await t.call('POST', '/v1/entitlements/batch', { externalIds: ['ok', 'x'.repeat(300)] }),
        'externalIds[1]',
      );
      await invariants(c.id);
    });
  });

  // ---------------------------------------------------------------- state machine
  describe('state machine', () => {
    type Status =
      | 'incomplete'
      | 'trialing'
      | 'active'
      | 'cancel_scheduled'
      | 'past_due'
      | 'paused'
      | 'canceled'
      | 'expired';
    const build: Record<Status, () => Promise<{ c: { id: string; clock: string }; sub: Sub }>> = {
      incomplete: async () => {
        const c = await customer('2027-01-15T00:00:00Z', 'tok_chargeCustomerFail');
        return { c, sub: await subscribe(c.id, 'at-basic', 402) };
      },
      expired: async () => {
        const c = await customer('2027-01-15T00:00:00Z', 'tok_chargeCustomerFail');
        const sub = await subscribe(c.id, 'at-basic', 402);
        await advance(c.clock, '2027-01-16T00:00:00Z');
        return { c, sub };
      },
      trialing: async () => {
        const c = await customer();
        return { c, sub: await subscribe(c.id, 'at-books-trial') };
      },
      active: async () => {
        const c = await customer();
        const sub = await subscribe(c.id, 'at-basic');
        await advance(c.clock, '2027-01-25T00:00:00Z');
        return { c, sub };
      },
      cancel_scheduled: async () => {
        const c = await customer();
        const sub = await subscribe(c.id, 'at-basic');
        await advance(c.clock, '2027-01-25T00:00:00Z');
        expect((await post(sub.id, 'cancel', { timing: 'end_of_term' })).json().cancelAt).toBe(
          '2027-02-15T00:00:00Z',
        );
        return { c, sub };
      },
      past_due: async () => {
        const { c, sub } = await pastDue();
        return { c, sub };
      },
      paused: async () => {
        const c = await customer();
        const sub = await subscribe(c.id, 'at-basic');
        await advance(c.clock, '2027-01-25T00:00:00Z');
        expect((await post(sub.id, 'pause', {})).statusCode).toBe(200);
        return { c, sub };
      },
      canceled: async () => {
        const c = await customer();
        const sub = await subscribe(c.id, 'at-basic');
        await advance(c.clock, '2027-01-25T00:00:00Z');
        expect((await post(sub.id, 'cancel', { timing: 'immediate' })).statusCode).toBe(200);
        return { c, sub };
      },
    };
    const lastInvoice = async (sub: string) => (await invoicesOf(sub)).at(-1)!.id;
    const ops: Record<string, (sub: Sub) => Promise<LightMyRequestResponse>> = {
      changeNow: (sub) => post(sub.id, 'change', { plan: 'at-plus', timing: 'immediate' }),
      changeLater: (sub) => post(sub.id, 'change', { plan: 'at-plus', timing: 'end_of_term' }),
      preview: (sub) => post(sub.id, 'change/preview', { plan: 'at-plus' }),
      cancelLater: (sub) => post(sub.id, 'cancel', { timing: 'end_of_term' }),
      cancelNow: (sub) => post(sub.id, 'cancel', { timing: 'immediate' }),
      cancelRefund: (sub) => post(sub.id, 'cancel', { timing: 'immediate', refund: 'prorated' }),
      reactivate: (sub) => post(sub.id, 'reactivate'),
      pause: (sub) => post(sub.id, 'pause', {}),
      resume: (sub) => post(sub.id, 'resume', {}),
      member: (sub) => post(sub.id, 'members', { externalId: `member-of-${sub.id}` }),
      pay: async (sub) => t.call('POST', `/v1/invoices/${await lastInvoice(sub.id)}/pay`, {}),
    };
    /** What each operation answers on each status (the status after it, or the refusal's code). */
    const expected: Record<Status, Record<string, string>> = {
      incomplete: {
        changeNow: '409 invalid_state',
        changeLater: '409 invalid_state',
        preview: '409 invalid_state',
        cancelLater: '409 invalid_state',
        cancelNow: '409 invalid_state',
        cancelRefund: '409 invalid_state',
        reactivate: '409 invalid_state',
        pause: '409 invalid_state',
        resume: '409 invalid_state',
        member: '409 invalid_state',
        pay: '402 incomplete',
      },
      expired: {
        changeNow: '409 invalid_state',
        changeLater: '409 invalid_state',
        preview: '409 invalid_state',
        cancelLater: '409 invalid_state',
        cancelNow: '409 invalid_state',
        cancelRefund: '409 invalid_state',
        reactivate: '409 invalid_state',
        pause: '409 invalid_state',
        resume: '409 invalid_state',
        member: '409 invalid_state',
        pay: '409 invalid_state',
      },
      trialing: {
        changeNow: '200 trialing',
        changeLater: '200 trialing',
        preview: '200 trialing',
        cancelLater: '200 trialing',
        cancelNow: '200 canceled',
        cancelRefund: '200 canceled',
        reactivate: '409 invalid_state',
        pause: '409 invalid_state',
        resume: '409 invalid_state',
        member: '409 invalid_state',
        pay: '409 invalid_state',
      },
      active: {
        changeNow: '200 active',
        changeLater: '200 active',
        preview: '200 active',
        cancelLater: '200 active',
        cancelNow: '200 canceled',
        cancelRefund: '200 canceled',
        reactivate: '409 invalid_state',
        pause: '200 paused',
        resume: '409 invalid_state',
        member: '409 invalid_state',
        pay: '409 invalid_state',
      },
      cancel_scheduled: {
        changeNow: '409 invalid_state',
        changeLater: '409 invalid_state',
        preview: '409 invalid_state',
        cancelLater: '200 active',
        cancelNow: '200 canceled',
        cancelRefund: '200 canceled',
        reactivate: '200 active',
        pause: '409 invalid_state',
        resume: '409 invalid_state',
        member: '409 invalid_state',
        pay: '409 invalid_state',
      },
      past_due: {
        changeNow: '409 invalid_state',
        changeLater: '409 invalid_state',
        preview: '409 invalid_state',
        cancelLater: '200 canceled',
        cancelNow: '200 canceled',
        cancelRefund: '200 canceled',
        reactivate: '409 invalid_state',
        pause: '409 invalid_state',
        resume: '409 invalid_state',
        member: '409 invalid_state',
        pay: '402 past_due',
      },
      paused: {
        changeNow: '409 invalid_state',
        changeLater: '409 invalid_state',
        preview: '409 invalid_state',
        cancelLater: '200 canceled',
        cancelNow: '200 canceled',
        cancelRefund: '200 canceled',
        reactivate: '409 invalid_state',
        pause: '409 invalid_state',
        resume: '200 active',
        member: '409 invalid_state',
        pay: '409 invalid_state',
      },
      canceled: {
        changeNow: '409 invalid_state',
        changeLater: '409 invalid_state',
        preview: '409 invalid_state',
        cancelLater: '409 invalid_state',
        cancelNow: '409 invalid_state',
        cancelRefund: '409 invalid_state',
        reactivate: '409 invalid_state',
        pause: '409 invalid_state',
        resume: '409 invalid_state',
        member: '409 invalid_state',
        pay: '409 invalid_state',
      },
    };

    it('every operation on every status: 2xx or a documented refusal (which changes nothing), never 500', async () => {
      const observed: Record<string, Record<string, string>> = {};
      for (const status of Object.keys(build) as Status[]) {
        observed[status] = {};
        let current: Awaited<ReturnType<(typeof build)[Status]>> | null = null;
        for (const [name, op] of Object.entries(ops)) {
          current ??= await build[status]();
          expect((await getSub(current.sub.id)).status).toBe(
            status === 'cancel_scheduled' ? 'active' : status,
          );
          const snapshot = async (id: string, customerId: string) => ({
            sub: await getSub(id),
            invoices: await invoicesOf(id),
            payments: await paymentsOf(customerId),
          });
          const before = await snapshot(current.sub.id, current.c.id);
          const res = await op(current.sub);
          no500(res);
          const after = await snapshot(current.sub.id, current.c.id);
          if (res.statusCode < 300 || res.statusCode === 402) {
            observed[status]![name] = `${res.statusCode} ${after.sub.status}`;
            if (name !== 'preview') current = null;
          } else {
            observed[status]![name] = `${res.statusCode} ${res.json().code}`;
            expect(['invalid_state', 'validation_failed', 'already_exists'], `${status} ${name}`).toContain(
              res.json().code,
            );
            expect(after, `${status} ${name} refused but changed: ${res.body}`).toEqual(before);
          }
          await invariants(current?.c.id ?? (before.sub.customer as string));
        }
      }
      expect(observed).toEqual(expected);
    });
  });
});
