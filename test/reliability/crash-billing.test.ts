import type { ChildProcess } from 'node:child_process';
import { randomBytes, randomInt } from 'node:crypto';
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
const CLOCKS = 4;
const CUSTOMERS_PER_CLOCK = 6;
const CHECKOUT_CLIENTS = 6;
const PRICE = 10_900;
const START = '2027-01-10T00:00:00Z';
/** The periods every subscription is billed for: the checkout's, then one renewal per advance. */
const PERIODS = ['2027-01-10', '2027-02-10', '2027-03-10', '2027-04-10', '2027-05-10'].map(
  (d) => `${d}T00:00:00Z`,
);
/** Kills in each phase at most (a restart takes seconds). */
const KILLS_PER_PHASE = 4;
const DEADLINE_MS = 90_000;

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
 * The crash test of billing: a real server process is killed with SIGKILL at random moments while
 * its clients check out subscriptions (phase 1) and then advance the test clocks those customers
 * live on through three renewals (phase 2), retrying with the same Idempotency-Key or the same
 * advance, as a real client would. The PSP simulator is its own process and outlives every kill.
 * Afterwards: every acknowledged checkout is an active subscription with 4 invoices, one per
 * period, each paid by exactly one succeeded payment (the invoice its reference), the simulator
 * captured exactly those, nothing is left processing, and the trial balance is zero.
 *
 * Known open bug this test can meet (rarely: a kill must land while a renewal's charge is at the
 * provider): the resumed charge job finds that payment `processing` and waits instead of resuming
 * it; its retries (`retryForMs`, 3 days) are counted in simulated time while the payment's
 * reconciliation runs on the wall clock, so the next advance spends them all in a second and the
 * job fails: the invoice stays open, the subscription never renews (see the report of branch wt-E).
 */
// PostgreSQL only (vitest.config.ts leaves this file out of the embedded run).
describe('crash test: SIGKILL during checkouts and renewals (postgres)', () => {
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

  it(
    `every acknowledged checkout ends active with its 4 periods paid once, across kills in both phases`,
    async () => {
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

      const started = Date.now();
      const left = () => DEADLINE_MS - (Date.now() - started);
      const debug = (line: string) => {
        if (process.env.CRASH_DEBUG) process.stderr.write(`${Date.now() - started} ${line}\n`);
      };
      let kills = 0;
      /** Requests cut off by a kill (sent, then the connection reset) or answered 5xx. */
      let interrupted = 0;
      let done = false;
      // The server is up for a second or two between kills: a refused connection is retried soon.
      const pause = (ms: number) => new Promise((r) => setTimeout(r, ms));

      /** Sends one request until `ok` answers; connection errors, 5xx, 409, 429 and 202 are retried. */
      const untilOk = async (what: string, ok: number, send: () => Promise<Response>) => {
        for (let attempt = 0; left() > 0; attempt++) {
          let res: Response;
          try {
            res = await send();
          } catch (error) {
            // The server is down (refused) or died under the request (reset): send it again.
            if ((error as { cause?: { code?: string } }).cause?.code !== 'ECONNREFUSED') interrupted++;
            await pause(50);
            continue;
          }
          const body = await res.text();
          debug(`${what} ${res.status} ${body.slice(0, 120)}`);
          if (res.status === ok) return JSON.parse(body) as Record<string, unknown>;
          if (res.status >= 500) interrupted++;
          else if (![202, 409, 429].includes(res.status))
            throw new Error(`${what}: unexpected ${res.status} ${body}`);
          await pause(Math.min(500, 50 * 2 ** Math.min(attempt, 4)));
        }
        throw new Error(`${what}: not acknowledged before the deadline`);
      };

      // Each phase gets its kills: the first soon after the phase starts (mid-work), then at random;
      // a restart takes seconds, so a bounded number of kills lets the clients finish in time.
      let allowed = KILLS_PER_PHASE;
      let wake = () => {};
      const killer = async () => {
        let soon = true;
        while (!done && left() > 0) {
          if (kills >= allowed) {
            await new Promise<void>((r) => {
              wake = r;
            });
            soon = true;
            continue;
          }
          await pause(soon ? 100 + randomInt(500) : 400 + randomInt(1_600));
          soon = false;
          if (done || kills >= allowed) continue;
          await stop(server!, 'SIGKILL');
          kills++;
          debug(`kill ${kills}`);
          await startServer();
          debug('up');
        }
      };
      const killing = killer();

      // Phase 1: checkouts, one Idempotency-Key per customer.
      const acknowledged = new Map<string, string>();
      let next = 0;
      const checkoutClient = async () => {
        while (next < customers.length) {
          const customer = customers[next++]!;
          const sub = await untilOk(`checkout of ${customer}`, 201, () =>
            api(
              'POST',
              '/v1/subscriptions',
              { customer, plan },
              { 'idempotency-key': `checkout-${customer}` },
            ),
          );
          acknowledged.set(customer, sub.id as string);
        }
      };
      await Promise.all(Array.from({ length: CHECKOUT_CLIENTS }, checkoutClient));
      const killsInCheckouts = kills;

      // Phase 2: one month at a time, every clock; renewals run inside each advance.
      allowed = kills + KILLS_PER_PHASE;
      wake();
      await Promise.all(
        clocks.map(async (clock) => {
          for (const frozenTime of PERIODS.slice(1, 4)) {
            const out = await untilOk(`advance of ${clock} to ${frozenTime}`, 200, () =>
              api('POST', `/v1/test-clocks/${clock}/advance`, { frozenTime }),
            );
            expect(out).toMatchObject({ frozenTime, status: 'ready' });
          }
        }),
      );
      done = true;
      wake();
      await killing;
      await waitForHttp(`${base}/health`, 60_000);
      process.stderr.write(
        `crash test (billing): ${kills} kills (${killsInCheckouts} during checkouts, ${kills - killsInCheckouts} during renewals), ${interrupted} interrupted attempts, ${acknowledged.size} checkouts acknowledged, ${Date.now() - started} ms\n`,
      );
      // Both phases were hit, and the kills did cut off requests in flight.
      expect(killsInCheckouts).toBeGreaterThanOrEqual(1);
      expect(kills - killsInCheckouts).toBeGreaterThanOrEqual(1);
      expect(interrupted).toBeGreaterThan(0);
      expect(acknowledged.size).toBe(customers.length);

      // Every acknowledged checkout: one active subscription in its fourth period.
      const subs = await list<Sub & { customer: string }>('/v1/subscriptions');
      if (process.env.CRASH_DEBUG) {
        const db = database.db;
        for (const sub of subs.filter((s) => s.currentPeriodStart !== PERIODS[3] || s.status !== 'active')) {
          const dump = {
            sub,
            invoices: await db
              .selectFrom('invoices')
              .select(['id', 'status', 'period_start', 'attempts', 'scheduled_attempts', 'payment_id'])
              .where('subscription_id', '=', sub.id)
              .orderBy('period_start')
              .execute(),
            payments: await db
              .selectFrom('payments')
              .select([
                'id',
                'status',
                'reference',
                'request_key',
                'decline_code',
                'created_at',
                'updated_at',
              ])
              .where('customer_id', '=', sub.customer)
              .orderBy('created_at')
              .execute(),
            jobs: await db
              .selectFrom('scheduled_jobs')
              .select(['kind', 'state', 'run_at', 'attempts', 'last_error', 'payload'])
              .where('customer_id', '=', sub.customer)
              .orderBy('run_at')
              .execute(),
          };
          process.stderr.write(`STUCK ${JSON.stringify(dump, null, 1)}\n`);
        }
      }
      expect(subs.map((s) => s.id).sort()).toEqual([...acknowledged.values()].sort());
      for (const sub of subs) {
        expect(sub, sub.id).toMatchObject({
          status: 'active',
          currentPeriodStart: PERIODS[3],
          currentPeriodEnd: PERIODS[4],
        });
      }
      // 4 invoices per subscription, one per period, each paid by one succeeded payment of it.
      const payments = await list<Payment>('/v1/payments');
      expect(payments.filter((p) => p.status === 'processing')).toEqual([]);
      const succeeded = payments.filter((p) => p.status === 'succeeded');
      const paidBy = new Map<string, Payment[]>();
      for (const p of succeeded) paidBy.set(p.reference ?? '', [...(paidBy.get(p.reference ?? '') ?? []), p]);
      const invoiceIds: string[] = [];
      for (const sub of subs) {
        const invoices = await list<Invoice>(`/v1/invoices?subscription=${sub.id}`);
        expect(
          invoices.map((i) => [i.periodStart, i.status, i.total, i.amountDue]),
          sub.id,
        ).toEqual(PERIODS.slice(0, 4).map((p) => [p, 'paid', PRICE, PRICE]));
        for (const invoice of invoices) {
          invoiceIds.push(invoice.id);
          const by = paidBy.get(invoice.id) ?? [];
          expect(
            by.map((p) => [p.id, p.amount]),
            invoice.id,
          ).toEqual([[invoice.payment, PRICE]]);
        }
      }
      // No succeeded payment without its invoice (nothing charged twice for a period).
      expect(succeeded.map((p) => p.reference).sort()).toEqual(invoiceIds.sort());
      // The simulator's captured charges match the succeeded payments one to one.
      const sim = (await (await fetch(`${simUrl}/admin/state`, { headers: simAuth })).json()) as {
        charges: Array<{ idempotencyKey: string; captured: boolean }>;
      };
      expect(
        sim.charges
          .filter((c) => c.captured)
          .map((c) => c.idempotencyKey)
          .sort(),
      ).toEqual(succeeded.map((p) => p.id).sort());
      // The books balance, recomputed from every posting.
      const trial = (await (await api('GET', '/v1/ledger/trial-balance?verify=true')).json()) as {
        currencies: Array<{ currency: string; balanced: boolean }>;
      };
      expect(trial.currencies.map((c) => [c.currency, c.balanced])).toEqual([['SEK', true]]);
    },
    DEADLINE_MS + 120_000,
  );
});
