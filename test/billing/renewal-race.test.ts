import { sql } from 'kysely';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ManualClock } from '../../src/kernel/clock.js';
import { render } from '../../src/modules/entitlements/projection.js';
import { startTestApp, type TestApp } from '../support/app.js';
import { expectGaplessSeries, payingCustomer } from '../support/billing.js';
import { ENGINE } from '../support/database.js';

/**
 * Changes racing the renewal pipeline: while batches renew due subscriptions, clients cancel,
 * change plans, pause, add members and try to pay the same subscriptions. Whatever interleaving
 * happens, no request fails with a 5xx, no period is billed twice, nothing due is skipped, the
 * books balance, invoice numbers stay gapless and every entitlement answer is the database's.
 */
describe(`billing: changes racing renewal batches (${ENGINE})`, () => {
  const T0 = '2027-01-15T00:00:00Z';
  const RENEW = '2027-02-15T00:00:00Z';
  const clock = new ManualClock(T0);
  let t: TestApp;

  beforeAll(async () => {
    t = await startTestApp({ providerTimeoutMs: 5_000, renewalBatch: 4, renewalConcurrency: 2 }, clock);
    await t.markets('SE');
    const ok = async (url: string, body: unknown) => {
      const res = await t.call('POST', url, body);
      if (res.statusCode !== 201) throw new Error(`${url}: ${res.body}`);
    };
    await ok('/v1/products', {
      code: 'family',
      name: 'Family',
      features: ['ad-free', 'family-mix'],
      seats: 4,
    });
    for (const [code, amount] of [
      ['family-monthly', 17900],
      ['family-plus', 21900],
    ] as const) {
      await ok('/v1/plans', {
        code,
        product: 'family',
        billingPeriod: 'month',
        trialDays: 0,
        prices: [{ currency: 'SEK', amount }],
      });
    }
  });
  afterAll(() => t.close());

  it('cancel, change, pause, members and pay during the batches: no 5xx, nothing billed twice or skipped, books balanced', async () => {
    const COUNT = 16;
    const subs: Array<{ id: string; customer: string; externalId: string }> = [];
    for (let i = 0; i < COUNT; i++) {
      const c = await payingCustomer(t, `race-${ENGINE}-${i}`);
      const res = await t.call('POST', '/v1/subscriptions', { customer: c.id, plan: 'family-monthly' });
      expect(res.statusCode, res.body).toBe(201);
      subs.push({ id: res.json().id, customer: c.id, externalId: c.externalId });
    }
    clock.set(RENEW);
    const actions = [
      (s: (typeof subs)[number]) =>
        t.call('POST', `/v1/subscriptions/${s.id}/cancel`, { timing: 'immediate' }),
      (s: (typeof subs)[number]) => t.call('POST', `/v1/subscriptions/${s.id}/cancel`, {}),
      (s: (typeof subs)[number]) =>
        t.call('POST', `/v1/subscriptions/${s.id}/change`, { plan: 'family-plus', timing: 'immediate' }),
      (s: (typeof subs)[number]) => t.call('POST', `/v1/subscriptions/${s.id}/pause`, {}),
      (s: (typeof subs)[number]) =>
        t.call('POST', `/v1/subscriptions/${s.id}/members`, { externalId: `${s.externalId}-kid` }),
      async (s: (typeof subs)[number]) => {
        // Pay whatever is open for it right now (the renewal's invoice, if the batch got there first).
        const open = (await t.call('GET', `/v1/invoices?subscription=${s.id}`))
          .json()
          .data.filter((i: { status: string }) => i.status === 'open');
        return open.length > 0
          ? t.call('POST', `/v1/invoices/${open[0].id}/pay`, {})
          : t.call('GET', `/v1/subscriptions/${s.id}`);
      },
    ];
    const answers: number[] = [];
    const racing = subs.map(async (s, i) => {
      // Spread over the batches' run: some land before a subscription's batch, some during, some after.
      await new Promise((r) => setTimeout(r, (i * 53) % 400));
      const res = await actions[i % actions.length]!(s);
      answers.push(res.statusCode);
    });
    const renewing = (async () => {
      for (let round = 0; round < 3; round++) await t.app.services.jobs.runDue();
    })();
    await Promise.all([...racing, renewing]);
    // Whatever is due now (charge jobs of batches, cancels at the period end) runs to the end.
    for (let round = 0; round < 3; round++) await t.app.services.jobs.runDue();

    expect(answers.filter((code) => code >= 500)).toEqual([]);
    expect(answers.every((code) => [200, 201, 402, 409].includes(code))).toBe(true);

    const db = t.app.services.db;
    // One invoice per subscription and period at most (the unique constraint holds; none skipped).
    const cycles = await sql<{ subscription_id: string; n: number }>`
      SELECT subscription_id, count(*)::int AS n FROM invoices
      WHERE reason = 'subscription_cycle' GROUP BY subscription_id`.execute(db);
    for (const row of cycles.rows) expect(row.n).toBe(1);
    for (const s of subs) {
      const sub = (await t.call('GET', `/v1/subscriptions/${s.id}`)).json();
      const cycled = cycles.rows.some((r) => r.subscription_id === s.id);
      if (sub.status === 'active' || sub.status === 'past_due') {
        // Still billing: it moved to the next period, whichever path got there.
        expect(sub.currentPeriodStart, `${s.id} ${sub.status}`).toBe(RENEW);
      }
      if (sub.status === 'canceled' && !cycled) {
        // Canceled before its renewal: nothing was billed for the new period.
        const invoices = (await t.call('GET', `/v1/invoices?subscription=${s.id}`)).json().data;
        expect(invoices.filter((i: { periodStart: string }) => i.periodStart === RENEW)).toEqual([]);
      }
      // The answer of the hot path is the database's, whatever happened.
      const hot = (await t.call('GET', `/v1/entitlements/${s.externalId}`)).json();
      expect(hot).toEqual(
        JSON.parse(render(await t.app.services.entitlements.forExternalId(s.externalId)).toString()),
      );
    }
    // Nothing left behind: no failed job, nothing processing, gapless numbers, balanced books.
    const failed = await sql<{
      n: number;
    }>`SELECT count(*)::int AS n FROM scheduled_jobs WHERE state = 'failed'`.execute(db);
    expect(failed.rows[0]!.n).toBe(0);
    const processing = await sql<{
      n: number;
    }>`SELECT count(*)::int AS n FROM payments WHERE status = 'processing'`.execute(db);
    expect(processing.rows[0]!.n).toBe(0);
    await expectGaplessSeries(db, 'SE-2027');
    const balance = (await t.call('GET', '/v1/ledger/trial-balance?verify=true')).json();
    for (const c of balance.currencies) expect(c).toMatchObject({ balanced: true });
  });
});
