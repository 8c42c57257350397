import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestApp, type TestApp } from '../support/app.js';
import { ENGINE } from '../support/database.js';

/**
 * A property test of the whole engine through HTTP: random sequences of clock moves, card
 * failures and fixes, manual pays, plan changes, pauses, resumes, cancels and reactivations over
 * a simulated year, on a test clock. After each sequence every invoice obeys the invoice
 * arithmetic, no period of a subscription is billed twice, revenue is conserved (deferred +
 * recognised = invoiced net) and the trial balance is zero.
 *
 * Small in CI; a long run by hand: REPRISE_SCENARIO_RUNS=200 npx vitest run test/billing/scenarios.
 * A failure prints its seed and path; REPRISE_SCENARIO_SEED=<seed> (with REPRISE_SCENARIO_PATH) replays it.
 */
const RUNS = Number(process.env.REPRISE_SCENARIO_RUNS ?? 4);
const SEED = process.env.REPRISE_SCENARIO_SEED ? Number(process.env.REPRISE_SCENARIO_SEED) : undefined;
const PATH = process.env.REPRISE_SCENARIO_PATH;

type Op =
  | { op: 'advance'; hours: number }
  | { op: 'card'; ok: boolean }
  | { op: 'pay' }
  | { op: 'change'; plan: string; timing: 'immediate' | 'end_of_term' | null }
  | { op: 'pause' }
  | { op: 'resume' }
  | { op: 'cancel'; timing: 'immediate' | 'end_of_term' }
  | { op: 'reactivate' };

const PLANS = ['basic-monthly', 'plus-monthly', 'plus-yearly', 'basic-weekly'] as const;

const opArb: fc.Arbitrary<Op> = fc.oneof(
  {
    weight: 6,
    arbitrary: fc.record({
      op: fc.constant('advance' as const),
      hours: fc.integer({ min: 1, max: 24 * 45 }),
    }),
  },
  { weight: 2, arbitrary: fc.record({ op: fc.constant('card' as const), ok: fc.boolean() }) },
  { weight: 1, arbitrary: fc.record({ op: fc.constant('pay' as const) }) },
  {
    weight: 2,
    arbitrary: fc.record({
      op: fc.constant('change' as const),
      plan: fc.constantFrom(...PLANS),
      timing: fc.constantFrom('immediate' as const, 'end_of_term' as const, null),
    }),
  },
  { weight: 1, arbitrary: fc.record({ op: fc.constant('pause' as const) }) },
  { weight: 1, arbitrary: fc.record({ op: fc.constant('resume' as const) }) },
  {
    weight: 1,
    arbitrary: fc.record({
      op: fc.constant('cancel' as const),
      timing: fc.constantFrom('immediate' as const, 'end_of_term' as const),
    }),
  },
  { weight: 1, arbitrary: fc.record({ op: fc.constant('reactivate' as const) }) },
);

interface InvoiceDto {
  id: string;
  currency: string;
  subscription: string;
  status: string;
  taxRateBps: number;
  taxInclusive: boolean;
  subtotal: number;
  tax: number;
  total: number;
  amountDue: number;
  periodStart: string;
  periodEnd: string;
  billingReason: string;
  lines: Array<{ kind: string; amount: number; periodStart: string; periodEnd: string }>;
}

/** Half away from zero of n / d, written apart from the code under test. */
const round = (n: bigint, d: bigint): bigint => {
  const neg = n < 0n !== d < 0n;
  const an = n < 0n ? -n : n;
  const ad = d < 0n ? -d : d;
  const q = (2n * an + ad) / (2n * ad);
  return neg ? -q : q;
};

function checkInvoice(i: InvoiceDto): void {
  const subtotalKinds = ['recurring', 'fixed', 'proration_credit', 'proration_charge', 'discount'];
  const subtotal = i.lines.filter((l) => subtotalKinds.includes(l.kind)).reduce((s, l) => s + l.amount, 0);
  expect(i.subtotal, `${i.id} subtotal`).toBe(subtotal);
  const r = BigInt(i.taxRateBps);
  if (i.taxInclusive) {
    expect(i.total, `${i.id} total`).toBe(i.subtotal);
    expect(i.tax, `${i.id} tax`).toBe(Number(round(BigInt(i.total) * r, 10_000n + r)));
  } else {
    expect(i.tax, `${i.id} tax`).toBe(Number(round(BigInt(i.subtotal) * r, 10_000n)));
    expect(i.total, `${i.id} total`).toBe(i.subtotal + i.tax);
  }
  const taxLines = i.lines.filter((l) => l.kind === 'tax');
  if (i.taxRateBps > 0) expect(taxLines.map((l) => l.amount)).toEqual([i.tax]);
  const applied = i.lines.filter((l) => l.kind === 'credit_applied').reduce((s, l) => s + l.amount, 0);
  expect(applied).toBeLessThanOrEqual(0);
  expect(i.amountDue, `${i.id} amountDue`).toBe(Math.max(0, i.total + applied));
  for (const l of i.lines) expect(Date.parse(l.periodStart)).toBeLessThanOrEqual(Date.parse(l.periodEnd));
}

describe(`billing: random subscription histories over a year (${ENGINE})`, () => {
  let t: TestApp;
  let run = 0;

  beforeAll(async () => {
    t = await startTestApp({ providerTimeoutMs: 1_000 });
    await t.markets('SE', 'US');
    const ok = async (url: string, body: unknown) => {
      const res = await t.call('POST', url, body);
      if (res.statusCode !== 201) throw new Error(`${url}: ${res.body}`);
    };
    await ok('/v1/products', { code: 'stream', name: 'Stream', features: ['ad-free'], seats: 1 });
    const plan = (code: string, billingPeriod: string, sek: number, usd: number) =>
      ok('/v1/plans', {
        code,
        product: 'stream',
        billingPeriod,
        trialDays: code === 'basic-monthly' ? 7 : 0,
        prices: [
          { currency: 'SEK', amount: sek },
          { currency: 'USD', amount: usd },
        ],
      });
    await plan('basic-monthly', 'month', 10900, 1199);
    await plan('plus-monthly', 'month', 16900, 1699);
    await plan('plus-yearly', 'year', 169000, 16990);
    await plan('basic-weekly', 'week', 2900, 299);
  });
  afterAll(() => t.close());

  const json = async (method: 'GET' | 'POST', url: string, body?: unknown) => {
    const res = await t.call(method, url, body);
    if (res.statusCode >= 500) throw new Error(`${method} ${url}: ${res.statusCode} ${res.body}`);
    return { status: res.statusCode, body: res.json() };
  };

  it('every invoice obeys the arithmetic, no period is billed twice, revenue is conserved, the books balance', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.constantFrom('SE' as const, 'US' as const),
        fc.array(opArb, { minLength: 5, maxLength: 25 }),
        async (market, ops) => {
          const start = Date.UTC(2027, 0, 1 + (run % 28), run % 24);
          run++;
          let now = start;
          const clock = (await json('POST', '/v1/test-clocks', { frozenTime: new Date(now).toISOString() }))
            .body.id;
          const customer = (
            await json('POST', '/v1/customers', {
              externalId: `prop-${run}-${Date.now()}`,
              market,
              testClock: clock,
            })
          ).body.id as string;
          const visa = (
            await json('POST', `/v1/customers/${customer}/payment-methods`, {
              provider: 'simulator',
              token: 'tok_visa',
            })
          ).body.id;
          const failing = (
            await json('POST', `/v1/customers/${customer}/payment-methods`, {
              provider: 'simulator',
              token: 'tok_chargeCustomerFail',
            })
          ).body.id;
          await json('POST', `/v1/customers/${customer}/payment-methods/${visa}/default`);
          const created = await json('POST', '/v1/subscriptions', { customer, plan: 'basic-monthly' });
          expect(created.status).toBe(201);
          const sub = created.body.id as string;

          for (const o of ops) {
            if (now > start + 366 * 86_400_000) break;
            switch (o.op) {
              case 'advance':
                now += o.hours * 3_600_000;
                expect(
                  (
                    await json('POST', `/v1/test-clocks/${clock}/advance`, {
                      frozenTime: new Date(now).toISOString(),
                    })
                  ).status,
                ).toBe(200);
                break;
              case 'card':
                await json(
                  'POST',
                  `/v1/customers/${customer}/payment-methods/${o.ok ? visa : failing}/default`,
                );
                break;
              case 'pay': {
                const open = (await json('GET', `/v1/invoices?subscription=${sub}`)).body.data.find(
                  (i: InvoiceDto) => i.status === 'open',
                );
                if (open) {
                  const res = await json('POST', `/v1/invoices/${open.id}/pay`, {});
                  expect([200, 402], `pay: ${JSON.stringify(res.body)}`).toContain(res.status);
                }
                break;
              }
              case 'change': {
                const res = await json('POST', `/v1/subscriptions/${sub}/change`, {
                  plan: o.plan,
                  ...(o.timing ? { timing: o.timing } : {}),
                });
                // 400 only for the plan it already has (nothing to change).
                if (res.status === 400)
                  expect(res.body.errors?.[0]?.path, JSON.stringify(res.body)).toBe('plan');
                else expect([200, 402, 409], JSON.stringify(res.body)).toContain(res.status);
                break;
              }
              case 'pause':
              case 'resume':
              case 'reactivate': {
                const res = await json('POST', `/v1/subscriptions/${sub}/${o.op}`, {});
                expect([200, 402, 409], `${o.op}: ${JSON.stringify(res.body)}`).toContain(res.status);
                break;
              }
              case 'cancel': {
                const res = await json('POST', `/v1/subscriptions/${sub}/cancel`, { timing: o.timing });
                expect([200, 409], `cancel: ${JSON.stringify(res.body)}`).toContain(res.status);
                break;
              }
            }
          }

          const invoices = (await json('GET', `/v1/invoices?subscription=${sub}&limit=100`)).body
            .data as InvoiceDto[];
          if (process.env.REPRISE_SCENARIO_DEBUG) {
            const subNow = (await json('GET', `/v1/subscriptions/${sub}`)).body;
            process.stderr.write(`${JSON.stringify(subNow)}\n`);
            for (const i of invoices)
              process.stderr.write(
                `${i.status} ${i.total} ${i.lines.map((l) => `${l.kind}:${l.amount}[${l.periodStart}..${l.periodEnd}]`).join(' ')}\n`,
              );
          }
          for (const i of invoices) checkInvoice(i);
          // No period billed twice: one invoice per (period start, reason), and renewals never overlap.
          const live = invoices.filter((i) => i.status !== 'void');
          const keys = live.map((i) => `${i.billingReason}@${i.periodStart}`);
          expect(new Set(keys).size, 'an invoice raised twice').toBe(keys.length);
          // At every instant, what is charged (recurring, proration_charge) less what was given back
          // (proration_credit) covers it at most once.
          const edges: Array<[number, number]> = [];
          for (const l of live.flatMap((i) => i.lines)) {
            const w =
              l.kind === 'recurring' || l.kind === 'proration_charge'
                ? 1
                : l.kind === 'proration_credit'
                  ? -1
                  : 0;
            if (w === 0 || l.periodStart === l.periodEnd) continue;
            edges.push([Date.parse(l.periodStart), w], [Date.parse(l.periodEnd), -w]);
          }
          // Ends before starts at the same instant: [a, b) then [b, c) never overlap.
          edges.sort((a, b) => a[0] - b[0] || a[1] - b[1]);
          let cover = 0;
          for (const [at, w] of edges) {
            cover += w;
            expect(cover, `a period billed twice at ${new Date(at).toISOString()}`).toBeLessThanOrEqual(1);
          }
          // Revenue is conserved: what every invoice of the platform billed net of tax (void ones
          // undone) is either still deferred or recognised, per currency.
          const all: InvoiceDto[] = [];
          for (let cursor: string | null = null, first = true; first || cursor; first = false) {
            const page: { data: InvoiceDto[]; nextCursor: string | null } = (
              await json('GET', `/v1/invoices?limit=100${cursor ? `&cursor=${cursor}` : ''}`)
            ).body;
            all.push(...page.data);
            cursor = page.nextCursor;
          }
          for (const currency of ['SEK', 'USD']) {
            const billed = all
              .filter((i) => i.status !== 'void' && i.lines.length > 0 && i.currency === currency)
              .reduce((sum, i) => sum + (i.taxInclusive ? i.total - i.tax : i.subtotal), 0);
            const balance = async (type: string) =>
              (
                (await json('GET', `/v1/ledger/accounts?type=${type}&currency=${currency}&limit=100`)).body
                  .data as Array<{
                  balance: number;
                }>
              ).reduce((sum, a) => sum + Number(a.balance), 0);
            expect(
              (await balance('deferred_revenue')) + (await balance('revenue')),
              `${currency} revenue`,
            ).toBe(billed);
          }
          const trial = (await json('GET', '/v1/ledger/trial-balance?verify=true')).body.currencies as Array<{
            balanced: boolean;
            debits: number;
            credits: number;
          }>;
          expect(trial.every((c) => c.balanced && c.debits === c.credits)).toBe(true);
        },
      ),
      {
        numRuns: RUNS,
        endOnFailure: true,
        ...(SEED !== undefined ? { seed: SEED } : {}),
        ...(PATH ? { path: PATH } : {}),
      },
    );
  }, 600_000);
});
