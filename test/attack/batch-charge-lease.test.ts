import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { transact } from '../../src/db/transaction.js';
import { ManualClock } from '../../src/kernel/clock.js';
import { startTestApp, type TestApp } from '../support/app.js';
import { ENGINE } from '../support/database.js';

/**
 * A renewal batch starts all its payments in one transaction (each holding its charge lease from
 * the insert) and charges them afterwards, a few at a time. A payment charged late in a long batch
 * may find its lease lapsed: the reconciliation at the deadline found nothing at the provider and
 * failed it, or another worker took the payment. Charging it then under the insert's lease takes
 * money for a closed payment (booked, refunded, its invoice paid by a refunded payment or charged
 * again by dunning). The batch's charge must hold a live lease when it calls the provider.
 */
describe(`attack: a batch charge after its insert's lease lapsed (${ENGINE})`, () => {
  const clock = new ManualClock('2027-03-01T00:00:00Z');
  let t: TestApp;
  let n = 0;

  beforeAll(async () => {
    t = await startTestApp({ providerTimeoutMs: 1_000 }, clock);
    await t.markets('SE');
  });
  afterAll(() => t.close());

  const customer = async () => {
    const id = (
      await t.call('POST', '/v1/customers', { externalId: `lease-user-${++n}`, market: 'SE' })
    ).json().id as string;
    const pm = await t.call('POST', `/v1/customers/${id}/payment-methods`, {
      provider: 'simulator',
      token: 'tok_visa',
    });
    expect(pm.statusCode, pm.body).toBe(201);
    return id;
  };
  const chargesAtProviders = (paymentId: string) =>
    t.app.services.providers.embedded
      .flatMap((e) => [...e.state.charges.values()])
      .filter((c) => c.idempotencyKey === paymentId);
  const start = async (customerId: string) => {
    const { payments, db } = t.app.services;
    const key = `lease-attack-${n}`;
    const started = await transact(db, (trx) =>
      payments.startMany(trx, [
        {
          input: {
            customer: customerId,
            amount: 10_900,
            taxMinor: 2_180,
            currency: 'SEK',
            description: 'Renewal',
          },
          marketCode: 'SE',
          requestKey: key,
        },
      ]),
    );
    const s = started.get(key);
    expect(s).toBeDefined();
    return s!;
  };

  it('a payment the reconciliation failed at its deadline is not charged by the batch afterwards', async () => {
    const { payments } = t.app.services;
    const c = await customer();
    const { payment, lease } = await start(c);
    // The batch is busy with the payments before this one: the deadline passes, the
    // reconciliation looks the payment up (nothing there: not charged yet) and fails it.
    clock.set(new Date(payment.charge_deadline_at!.getTime() + 1_000));
    await payments.reconcile(payment.id);
    expect((await t.call('GET', `/v1/payments/${payment.id}`)).json().status).toBe('failed');

    // Now the batch's lane reaches it, holding the payment as it inserted it.
    const out = await payments.charge(payment, lease);
    expect(out.result).toBeNull();
    expect(chargesAtProviders(payment.id)).toEqual([]);
    const after = (await t.call('GET', `/v1/payments/${payment.id}`)).json();
    expect(after).toMatchObject({ status: 'failed', amountRefunded: 0 });
  });

  it('a payment whose lapsed lease nobody took is charged once, its lease renewed first', async () => {
    const { payments, db } = t.app.services;
    const c = await customer();
    const { payment, lease } = await start(c);
    clock.set(new Date(payment.charge_deadline_at!.getTime() + 1_000));
    const out = await payments.charge(payment, lease);
    expect(out.result).toMatchObject({ status: 'succeeded' });
    expect(chargesAtProviders(payment.id)).toHaveLength(1);
    // The call ran under a renewed lease: a reconciliation at the old deadline finds it live.
    const row = await db
      .selectFrom('payments')
      .select(['charge_deadline_at', 'charge_token'])
      .where('id', '=', payment.id)
      .executeTakeFirstOrThrow();
    expect(row.charge_deadline_at!.getTime()).toBeGreaterThan(clock.now().getTime());
    expect(row.charge_token).toBe(lease.token);
  });

  it('the usual batch charge, right after the insert, needs no second lease statement', async () => {
    const { payments, db } = t.app.services;
    const c = await customer();
    const { payment, lease } = await start(c);
    const before = await db
      .selectFrom('payments')
      .select(['charge_deadline_at', 'updated_at'])
      .where('id', '=', payment.id)
      .executeTakeFirstOrThrow();
    clock.advanceMs(1_000);
    const out = await payments.charge(payment, lease);
    expect(out.result).toMatchObject({ status: 'succeeded' });
    const after = await db
      .selectFrom('payments')
      .select(['charge_deadline_at', 'updated_at'])
      .where('id', '=', payment.id)
      .executeTakeFirstOrThrow();
    expect(after).toEqual(before);
  });
});
