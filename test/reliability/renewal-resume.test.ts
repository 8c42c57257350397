import type { ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { freePort } from '../../bench/support/server.js';
import { freshDatabase, freshKeyStore } from '../support/database.js';
import { spawnReprise, stop, waitForHttp } from '../support/processes.js';

const KEY = 'crash-billing-bootstrap-key';
// Shared by the simulator process and the server: neither has a default.
const SIMULATOR_SECRETS = {
  REPRISE_SIMULATOR_API_KEY: `sk_crash_${randomBytes(16).toString('hex')}`,
  REPRISE_SIMULATOR_WEBHOOK_SECRET: `whsec_crash_${randomBytes(16).toString('hex')}`,
};
const simAuth = { authorization: `Bearer ${SIMULATOR_SECRETS.REPRISE_SIMULATOR_API_KEY}` };
const CLOCKS = 1;
const CUSTOMERS_PER_CLOCK = 1;
const PRICE = 10_900;
const START = '2027-01-10T00:00:00Z';
/** The periods every subscription is billed for: the checkout's, then one renewal per advance. */
const PERIODS = ['2027-01-10', '2027-02-10', '2027-03-10', '2027-04-10', '2027-05-10'].map(
  (d) => `${d}T00:00:00Z`,
);

interface Sub {
  id: string;
  status: string;
  currentPeriodStart: string | null;
  currentPeriodEnd: string | null;
}
interface Invoice {
  id: string;
  status: string;
  total: number;
  amountDue: number;
  periodStart: string;
  payment: string | null;
}
interface Payment {
  id: string;
  status: string;
  amount: number;
  reference: string | null;
}

/**
 * A renewal charge cut off by SIGKILL (regression: it stayed open for good). The renewal's charge
 * is parked at the simulator, the server is killed, the provider then completes the charge, and
 * the client's retried advance must resume it (same payment, the provider answers with the charge
 * it made): the invoice paid once, the subscription renewed, the next renewal as usual.
 */
// PostgreSQL only (vitest.config.ts leaves this file out of the embedded run).
describe('a renewal charge cut off by SIGKILL is resumed, not left open (postgres)', () => {
  const dataDir = mkdtempSync(join(tmpdir(), 'reprise-crash-billing-'));
  let server: ChildProcess | undefined;
  let simulator: ChildProcess | undefined;
  let database: Awaited<ReturnType<typeof freshDatabase>> | undefined;
  let keyStore: Awaited<ReturnType<typeof freshKeyStore>> | undefined;

  afterAll(async () => {
    if (server) await stop(server, 'SIGKILL');
    if (simulator) await stop(simulator);
    await database?.close();
    await keyStore?.close();
    rmSync(dataDir, { recursive: true, force: true });
  });

  it('the retried advance resumes the held charge at the provider: paid once, renewed', async () => {
    database = await freshDatabase();
    keyStore = await freshKeyStore();
    const [serverPort, simPort] = [await freePort(), await freePort()];
    const base = `http://127.0.0.1:${serverPort}`;
    const simUrl = `http://127.0.0.1:${simPort}`;
    simulator = spawnReprise(
      [
        'psp-simulator',
        '--port',
        String(simPort),
        '--webhook-url',
        `${base}/v1/providers/simulator-a/webhooks`,
      ],
      SIMULATOR_SECRETS,
    );
    await waitForHttp(`${simUrl}/admin/state`, 30_000);

    const env = {
      DATABASE_URL: database.url!,
      REPRISE_KEYSTORE_URL: keyStore.url!,
      PORT: String(serverPort),
      REPRISE_DATA_DIR: dataDir,
      REPRISE_SEED: 'none',
      REPRISE_BOOTSTRAP_KEY: KEY,
      REPRISE_MASTER_KEY: Buffer.alloc(32, 5).toString('base64'),
      REPRISE_SIMULATORS: `simulator-a=${simUrl}`,
      ...SIMULATOR_SECRETS,
      REPRISE_IDEMPOTENCY_LEASE_MS: '3000',
      REPRISE_TEST_CLOCK_LEASE_MS: '2000',
      REPRISE_PROVIDER_TIMEOUT_MS: '2000',
    };
    const startServer = async () => {
      server = spawnReprise(['serve'], env);
      await waitForHttp(`${base}/health`, 60_000);
    };
    await startServer();
    const api = (method: string, path: string, body?: unknown, headers: Record<string, string> = {}) =>
      fetch(`${base}${path}`, {
        method,
        headers: { authorization: `Bearer ${KEY}`, 'content-type': 'application/json', ...headers },
        body: body === undefined ? undefined : JSON.stringify(body),
        signal: AbortSignal.timeout(30_000),
      });
    const created = async (path: string, body: unknown) => {
      const res = await api('POST', path, body);
      const json = (await res.json()) as { id: string };
      expect(res.status, `${path}: ${JSON.stringify(json)}`).toBe(201);
      return json.id;
    };
    const list = async <T>(path: string): Promise<T[]> => {
      const out: T[] = [];
      let cursor: string | null = null;
      do {
        const sep = path.includes('?') ? '&' : '?';
        const res = await api('GET', `${path}${sep}limit=100${cursor ? `&cursor=${cursor}` : ''}`);
        const page = (await res.json()) as { data: T[]; nextCursor: string | null };
        out.push(...page.data);
        cursor = page.nextCursor;
      } while (cursor);
      return out;
    };

    await created('/v1/markets', { code: 'SE', currency: 'SEK', taxRateBps: 2500, taxInclusive: true });
    await created('/v1/products', { code: 'music', name: 'Music', features: ['ad-free'], seats: 1 });
    const plan = await created('/v1/plans', {
      code: 'music-monthly',
      product: 'music',
      billingPeriod: 'month',
      trialDays: 0,
      prices: [{ currency: 'SEK', amount: PRICE }],
    });
    const clocks: string[] = [];
    const customers: string[] = [];
    for (let c = 0; c < CLOCKS; c++) {
      const clock = await created('/v1/test-clocks', { frozenTime: START, name: `crash-${c}` });
      clocks.push(clock);
      for (let i = 0; i < CUSTOMERS_PER_CLOCK; i++) {
        const customer = await created('/v1/customers', {
          externalId: `crash-billing-${c}-${i}`,
          market: 'SE',
          testClock: clock,
        });
        await created(`/v1/customers/${customer}/payment-methods`, {
          provider: 'simulator',
          token: 'tok_visa',
        });
        customers.push(customer);
      }
    }

    const sub = await api(
      'POST',
      '/v1/subscriptions',
      { customer: customers[0], plan },
      { 'idempotency-key': 'k1' },
    );
    expect(sub.status).toBe(201);
    const subId = ((await sub.json()) as { id: string }).id;
    const simPost = (path: string, body: unknown) =>
      fetch(`${simUrl}${path}`, {
        method: 'POST',
        headers: { ...simAuth, 'content-type': 'application/json' },
        body: JSON.stringify(body),
      });
    // The renewal's charge is parked at the provider; the server dies while it waits.
    await simPost('/admin/faults', { hold: true });
    const state = async () =>
      (await (await fetch(`${simUrl}/admin/state`, { headers: simAuth })).json()) as {
        requests: number;
        charges: Array<{ idempotencyKey: string; captured: boolean }>;
      };
    const before = (await state()).requests;
    const dying = api('POST', `/v1/test-clocks/${clocks[0]}/advance`, { frozenTime: PERIODS[1] }).catch(
      () => 'died',
    );
    for (let i = 0; (await state()).requests === before; i++) {
      expect(i, 'the renewal charge reached the provider').toBeLessThan(400);
      await new Promise((r) => setTimeout(r, 50));
    }
    await stop(server!, 'SIGKILL');
    expect(await dying).toBe('died');
    // The provider completes the charge it held; the server comes back and the client retries.
    await simPost('/admin/release', {});
    await startServer();
    await new Promise((r) => setTimeout(r, 2_500));
    const again = await api('POST', `/v1/test-clocks/${clocks[0]}/advance`, { frozenTime: PERIODS[1] });
    expect(again.status).toBe(200);
    // The retry resumed the charge (the provider answered with the one it made): paid, renewed.
    const subNow = (await (await api('GET', `/v1/subscriptions/${subId}`)).json()) as Sub;
    expect([subNow.status, subNow.currentPeriodStart]).toEqual(['active', PERIODS[1]]);
    const invoices = await list<Invoice>(`/v1/invoices?subscription=${subId}`);
    expect(invoices.map((i) => [i.periodStart, i.status])).toEqual([
      [PERIODS[0], 'paid'],
      [PERIODS[1], 'paid'],
    ]);
    const payments = await list<Payment>('/v1/payments');
    expect(payments.map((p) => p.status)).toEqual(['succeeded', 'succeeded']);
    expect(payments.map((p) => p.id).sort()).toEqual(invoices.map((i) => i.payment).sort());
    // One capture per payment at the provider: no second charge.
    const captured = (await state()).charges.filter((c) => c.captured).map((c) => c.idempotencyKey);
    expect(captured.sort()).toEqual(payments.map((p) => p.id).sort());
    // The next renewal runs as usual.
    expect(
      (await api('POST', `/v1/test-clocks/${clocks[0]}/advance`, { frozenTime: PERIODS[2] })).status,
    ).toBe(200);
    const later = await list<Invoice>(`/v1/invoices?subscription=${subId}`);
    expect(later.map((i) => i.status)).toEqual(['paid', 'paid', 'paid']);
  }, 120_000);
});
