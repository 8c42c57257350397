import type { ChildProcess } from 'node:child_process';
import { randomBytes, randomInt } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { freePort } from '../../bench/support/server.js';
import { freshDatabase, freshKeyStore } from '../support/database.js';
import { spawnReprise, stop, waitForHttp } from '../support/processes.js';

const KEY = 'crash-test-bootstrap-key';
// Shared by the simulator process and the server: neither has a default.
const SIMULATOR_SECRETS = {
  REPRISE_SIMULATOR_API_KEY: `sk_crash_${randomBytes(16).toString('hex')}`,
  REPRISE_SIMULATOR_WEBHOOK_SECRET: `whsec_crash_${randomBytes(16).toString('hex')}`,
};
const simAuth = { authorization: `Bearer ${SIMULATOR_SECRETS.REPRISE_SIMULATOR_API_KEY}` };
const KILLS_MIN = 10;
/** Then the server is left alone so the clients finish (a loaded machine restarts it slowly). */
const KILLS_MAX = 14;
const PURCHASES = 60;
/** Clients keep buying until the kills are done too (a fast machine finishes 60 before them), up to this. */
const PURCHASES_MAX = 600;
const CLIENTS = 6;
const DEADLINE_MS = 150_000;

/**
 * A real server process under concurrent purchases is killed with SIGKILL at random moments; its
 * clients retry with the same idempotency keys, as a real client would. The PSP simulator is its
 * own process and outlives every kill. After the storm: every acknowledged payment is there and
 * succeeded, the simulator's captured charges and the succeeded payments match one to one (no
 * double charge), nothing is left processing, and the trial balance is zero.
 */
// PostgreSQL only (vitest.config.ts leaves this file out of the embedded run).
describe('crash test: SIGKILL under concurrent purchases (postgres)', () => {
  const dataDir = mkdtempSync(join(tmpdir(), 'reprise-crash-'));
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
    `loses nothing and charges nothing twice across ${KILLS_MIN}+ kills`,
    async () => {
      database = await freshDatabase();
      // A key store database of its own; the server opens it by URL (this handle only makes it).
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
        REPRISE_MASTER_KEY: Buffer.alloc(32, 3).toString('base64'),
        REPRISE_SIMULATORS: `simulator-a=${simUrl}`,
        ...SIMULATOR_SECRETS,
        REPRISE_IDEMPOTENCY_LEASE_MS: '3000',
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
          signal: AbortSignal.timeout(10_000),
        });
      expect(
        (
          await api('POST', '/v1/markets', {
            code: 'SE',
            currency: 'SEK',
            taxRateBps: 2500,
            taxInclusive: true,
          })
        ).status,
      ).toBe(201);
      const customers: string[] = [];
      for (let i = 0; i < 4; i++) {
        const c = (await (
          await api('POST', '/v1/customers', { externalId: `crash-${i}`, market: 'SE' })
        ).json()) as { id: string };
        expect(
          (
            await api('POST', `/v1/customers/${c.id}/payment-methods`, {
              provider: 'simulator',
              token: 'tok_visa',
            })
          ).status,
        ).toBe(201);
        customers.push(c.id);
      }

      const acknowledged = new Map<string, string>();
      const started = Date.now();
      let next = 0;
      let kills = 0;
      let interrupted = 0;
      let done = false;

      const client = async () => {
        while (
          (next < PURCHASES || kills < KILLS_MIN) &&
          next < PURCHASES_MAX &&
          Date.now() - started < DEADLINE_MS
        ) {
          const i = next++;
          const key = `purchase-${i}`;
          const body = {
            customer: customers[i % customers.length],
            amount: 1000 + i,
            currency: 'SEK',
            description: `purchase ${i}`,
          };
          for (let attempt = 0; Date.now() - started < DEADLINE_MS; attempt++) {
            try {
              const res = await api('POST', '/v1/payments', body, { 'idempotency-key': key });
              if (res.status === 201) {
                acknowledged.set(key, ((await res.json()) as { id: string }).id);
                break;
              }
              await res.body?.cancel();
              if (
                res.status === 402 ||
                (res.status >= 400 && res.status < 500 && res.status !== 409 && res.status !== 429)
              ) {
                throw new Error(`purchase ${i}: unexpected ${res.status}`);
              }
            } catch (error) {
              if (error instanceof Error && error.message.startsWith('purchase')) throw error;
              // connection refused or reset: the server is down; retry the same key
              interrupted++;
            }
            await new Promise((r) => setTimeout(r, Math.min(2_000, 100 * 2 ** Math.min(attempt, 4))));
          }
        }
      };

      const killer = async () => {
        while (!done && kills < KILLS_MAX && Date.now() - started < DEADLINE_MS) {
          await new Promise((r) => setTimeout(r, 300 + randomInt(1_200)));
          if (done) break;
          await stop(server!, 'SIGKILL');
          kills++;
          await startServer();
        }
      };

      const killing = killer();
      await Promise.all(Array.from({ length: CLIENTS }, client));
      // Keep killing until the minimum is reached, then stop.
      while (kills < KILLS_MIN && Date.now() - started < DEADLINE_MS)
        await new Promise((r) => setTimeout(r, 200));
      done = true;
      await killing;
      await waitForHttp(`${base}/health`, 60_000);

      expect(kills).toBeGreaterThanOrEqual(KILLS_MIN);
      // The kills did hit requests in flight (otherwise this test proves little).
      expect(interrupted).toBeGreaterThan(0);
      process.stderr.write(
        `crash test: ${kills} kills, ${interrupted} interrupted attempts, ${acknowledged.size} purchases acknowledged\n`,
      );
      // Every purchase a client started was acknowledged in the end, at least the planned 60.
      expect(acknowledged.size).toBe(next);
      expect(acknowledged.size).toBeGreaterThanOrEqual(PURCHASES);

      const payments: Array<{ id: string; status: string }> = [];
      let cursor: string | null = null;
      do {
        const page = (await (
          await api('GET', `/v1/payments?limit=100${cursor ? `&cursor=${cursor}` : ''}`)
        ).json()) as { data: Array<{ id: string; status: string }>; nextCursor: string | null };
        payments.push(...page.data);
        cursor = page.nextCursor;
      } while (cursor);
      const succeeded = payments
        .filter((p) => p.status === 'succeeded')
        .map((p) => p.id)
        .sort();
      // Every acknowledged payment is present and succeeded; one payment per purchase.
      expect(succeeded).toEqual([...acknowledged.values()].sort());
      expect(payments.filter((p) => p.status === 'processing')).toEqual([]);
      // The simulator's captured charges match the succeeded payments one to one.
      const sim = (await (await fetch(`${simUrl}/admin/state`, { headers: simAuth })).json()) as {
        charges: Array<{ idempotencyKey: string; captured: boolean }>;
      };
      const capturedKeys = sim.charges
        .filter((c) => c.captured)
        .map((c) => c.idempotencyKey)
        .sort();
      expect(capturedKeys).toEqual(succeeded);
      // The books balance, recomputed from every posting.
      const trial = (await (await api('GET', '/v1/ledger/trial-balance?verify=true')).json()) as {
        currencies: Array<{ balanced: boolean; debits: number }>;
      };
      expect(trial.currencies.length).toBeGreaterThan(0);
      expect(trial.currencies.every((c) => c.balanced)).toBe(true);
    },
    DEADLINE_MS + 60_000,
  );
});
