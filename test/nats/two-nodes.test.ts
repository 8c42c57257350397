import { type ChildProcess, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:http';
import { connect as connectTcp } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import Stripe from 'stripe';
import { afterAll, describe, expect, it } from 'vitest';
import { freePort } from '../../bench/support/server.js';
import { NatsBus } from '../../src/events/nats-bus.js';
import { freshDatabase, freshKeyStore } from '../support/database.js';
import { spawnReprise, stop, waitForHttp } from '../support/processes.js';

const KEY = `two-nodes-${randomBytes(12).toString('hex')}`;
const DEADLINE_MS = 240_000;

/** Waits until `check` passes (or throws its last error after `ms`). */
async function until<T>(ms: number, check: () => Promise<T>): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    try {
      return await check();
    } catch (error) {
      if (Date.now() > deadline) throw error;
      await new Promise((r) => setTimeout(r, 50));
    }
  }
}

function portOpen(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connectTcp({ host: '127.0.0.1', port }, () => {
      socket.destroy();
      resolve(true);
    });
    socket.on('error', () => resolve(false));
  });
}

/**
 * Two server processes on one PostgreSQL database and one nats-server this test starts itself
 * (JetStream, its own store directory and port), as issue 9 asks:
 * - a subscription created through node A is entitled on node B, a cancel likewise;
 * - the node leading the relay is killed (SIGKILL) while writes go on through the other, and NATS
 *   is stopped for 10 s; then NATS and the killed node come back;
 * - afterwards every event in the outbox is in the streams (published at least once), the webhook
 *   endpoint received every event at least once and verified each signature (Stripe's SDK), both
 *   nodes' projections agree with what was done, and both report a relay lag back near 0.
 */
// PostgreSQL and NATS only (vitest.config.ts leaves test/nats out of the embedded run).
describe('two nodes, one PostgreSQL, one NATS: kill the relay leader and stop NATS mid-stream', () => {
  const cleanups: Array<() => Promise<void>> = [];
  afterAll(async () => {
    for (const c of cleanups.reverse()) await c().catch(() => undefined);
  });

  it(
    'entitlements follow across nodes; nothing is lost through a leader kill and a 10 s NATS outage',
    async () => {
      // ---- NATS of our own
      const natsPort = await freePort();
      const natsDir = mkdtempSync(join(tmpdir(), 'reprise-nats-'));
      let nats: ChildProcess | undefined;
      const startNats = async () => {
        nats = spawn('nats-server', ['-a', '127.0.0.1', '-p', String(natsPort), '-js', '-sd', natsDir], {
          stdio: 'ignore',
        });
        await until(15_000, async () => expect(await portOpen(natsPort)).toBe(true));
      };
      await startNats();
      cleanups.push(async () => {
        if (nats) await stop(nats);
        rmSync(natsDir, { recursive: true, force: true });
      });
      const natsUrl = `nats://127.0.0.1:${natsPort}`;

      // ---- two nodes
      const database = await freshDatabase();
      const keyStore = await freshKeyStore();
      cleanups.push(async () => {
        await keyStore.close();
        await database.close();
      });
      const ports = [await freePort(), await freePort()];
      const dirs = ports.map(() => mkdtempSync(join(tmpdir(), 'reprise-node-')));
      cleanups.push(async () => {
        for (const d of dirs) rmSync(d, { recursive: true, force: true });
      });
      const masterKey = randomBytes(32).toString('base64');
      const nodes: Array<ChildProcess | undefined> = [undefined, undefined];
      const base = (i: number) => `http://127.0.0.1:${ports[i]}`;
      const startNode = async (i: number) => {
        nodes[i] = spawnReprise(['serve'], {
          DATABASE_URL: database.url!,
          REPRISE_KEYSTORE_URL: keyStore.url!,
          REPRISE_MASTER_KEY: masterKey,
          REPRISE_BOOTSTRAP_KEY: KEY,
          REPRISE_SEED: 'none',
          PORT: String(ports[i]),
          REPRISE_DATA_DIR: dirs[i]!,
          NATS_URL: natsUrl,
          REPRISE_PROVIDER_TIMEOUT_MS: '2000',
          // The test's webhook receiver listens on loopback: an internal subscriber.
          REPRISE_WEBHOOK_ALLOW_CIDRS: '127.0.0.0/8',
        });
        await waitForHttp(`${base(i)}/health`, 60_000);
      };
      await startNode(0);
      await startNode(1);
      cleanups.push(async () => {
        for (const n of nodes) if (n) await stop(n);
      });

      const api = async (i: number, method: string, path: string, body?: unknown) => {
        const res = await fetch(`${base(i)}${path}`, {
          method,
          headers: { authorization: `Bearer ${KEY}`, 'content-type': 'application/json' },
          body: body === undefined ? undefined : JSON.stringify(body),
          signal: AbortSignal.timeout(15_000),
        });
        const text = await res.text();
        return { status: res.status, body: text ? JSON.parse(text) : null };
      };
      const ok = async (i: number, method: string, path: string, body?: unknown) => {
        const res = await api(i, method, path, body);
        expect(res.status, `${method} ${path}: ${JSON.stringify(res.body)}`).toBeLessThan(300);
        return res.body;
      };
      const entitled = async (i: number, externalId: string) =>
        (await ok(i, 'GET', `/v1/entitlements/${externalId}`)).active as boolean;
      const metric = async (i: number, name: string) => {
        const text = await (await fetch(`${base(i)}/metrics`, { signal: AbortSignal.timeout(5_000) })).text();
        const line = text.split('\n').find((l) => l.startsWith(`${name}{relay="bus"}`));
        return line === undefined ? undefined : Number(line.split(' ').at(-1));
      };

      await ok(0, 'POST', '/v1/markets', {
        code: 'SE',
        currency: 'SEK',
        taxRateBps: 2500,
        taxInclusive: true,
      });
      await ok(0, 'POST', '/v1/products', { code: 'music', name: 'Music', features: ['ad-free'], seats: 1 });
      await ok(0, 'POST', '/v1/plans', {
        code: 'music-monthly',
        product: 'music',
        billingPeriod: 'month',
        trialDays: 0,
        prices: [{ currency: 'SEK', amount: 10900 }],
      });
      // ---- a webhook endpoint on this machine, every event type, each delivery verified
      const stripe = new Stripe('sk_test_unused_for_verification');
      const verified = new Set<string>();
      const badSignatures: string[] = [];
      const receiver = createServer((req, res) => {
        const chunks: Buffer[] = [];
        req.on('data', (c: Buffer) => chunks.push(c));
        req.on('end', () => {
          const body = Buffer.concat(chunks).toString('utf8');
          try {
            const event = stripe.webhooks.constructEvent(
              body,
              String(req.headers['reprise-signature']),
              secret,
            );
            verified.add(event.id);
          } catch (error) {
            badSignatures.push((error as Error).message);
          }
          res.writeHead(200).end();
        });
      });
      await new Promise<void>((resolve) => receiver.listen(0, '127.0.0.1', resolve));
      cleanups.push(() => new Promise<void>((resolve) => receiver.close(() => resolve())));
      const receiverPort = (receiver.address() as { port: number }).port;
      const endpoint = await ok(0, 'POST', '/v1/webhook-endpoints', {
        url: `http://127.0.0.1:${receiverPort}/reprise`,
        eventTypes: ['*'],
      });
      const secret = endpoint.secret as string;
      expect(secret).toMatch(/^whsec_/);

      let users = 0;
      /** A listener subscribed through node i (its card lives at node i's in-process simulator). */
      const subscribe = async (i: number) => {
        const externalId = `two-nodes-${++users}`;
        const customer = await ok(i, 'POST', '/v1/customers', { externalId, market: 'SE' });
        await ok(i, 'POST', `/v1/customers/${customer.id}/payment-methods`, {
          provider: 'simulator',
          token: 'tok_visa',
        });
        const sub = await ok(i, 'POST', '/v1/subscriptions', {
          customer: customer.id,
          plan: 'music-monthly',
        });
        expect(sub.status).toBe('active');
        return { externalId, subscription: sub.id as string };
      };
      const expected = new Map<string, boolean>();

      // ---- 1. made on A, seen on B (B holds the user as inactive first, so it must be told)
      for (let k = 0; k < 3; k++) {
        const externalId = `two-nodes-${users + 1}`;
        expect(await entitled(1, externalId)).toBe(false);
        const started = Date.now();
        const u = await subscribe(0);
        await until(10_000, async () => expect(await entitled(1, u.externalId)).toBe(true));
        const lagMs = Date.now() - started;
        expect(lagMs).toBeLessThan(10_000);
        await ok(0, 'POST', `/v1/subscriptions/${u.subscription}/cancel`, { timing: 'immediate' });
        await until(10_000, async () => expect(await entitled(1, u.externalId)).toBe(false));
        expected.set(u.externalId, false);
      }

      // ---- 2. the relay's leader is killed mid-stream, and NATS goes away for 10 s
      const leaders = [await metric(0, 'reprise_relay_leader'), await metric(1, 'reprise_relay_leader')];
      expect(leaders.filter((l) => l === 1)).toHaveLength(1);
      const leader = leaders.indexOf(1);
      const survivor = 1 - leader;
      const written: Array<{ externalId: string; subscription: string }> = [];
      let writing = true;
      const writer = (async () => {
        while (writing) {
          const u = await subscribe(survivor);
          written.push(u);
          expected.set(u.externalId, true);
          if (written.length % 3 === 0) {
            await ok(survivor, 'POST', `/v1/subscriptions/${u.subscription}/cancel`, { timing: 'immediate' });
            expected.set(u.externalId, false);
          }
        }
      })();
      await until(30_000, async () => expect(written.length).toBeGreaterThanOrEqual(3));
      await stop(nodes[leader]!, 'SIGKILL');
      nodes[leader] = undefined;
      await until(30_000, async () => expect(written.length).toBeGreaterThanOrEqual(6));
      await stop(nats!, 'SIGTERM');
      nats = undefined;
      const outageStarted = Date.now();
      await new Promise((r) => setTimeout(r, 10_000));
      const duringOutage = written.length;
      await startNats();
      const outageSeconds = (Date.now() - outageStarted) / 1000;
      await until(30_000, async () => expect(written.length).toBeGreaterThanOrEqual(duringOutage + 3));
      writing = false;
      await writer;
      await startNode(leader);
      expect(outageSeconds).toBeGreaterThanOrEqual(10);
      expect(duringOutage).toBeGreaterThan(6);

      // ---- 3. afterwards: the lag returns to ~0 on both nodes, every event is in the streams
      for (const i of [0, 1]) {
        await until(60_000, async () => {
          expect(await metric(i, 'reprise_relay_backlog')).toBe(0);
          expect(await metric(i, 'reprise_relay_lag_seconds')).toBe(0);
        });
      }
      const client = new pg.Client({ connectionString: database.url });
      await client.connect();
      const outbox = (await client.query<{ id: string }>('SELECT id FROM events')).rows.map((r) => r.id);
      await client.end();
      const reader = new NatsBus({ url: natsUrl });
      const published = new Set<string>();
      try {
        await reader.replay({ seq: 1 }, (e) => published.add(e.id));
      } finally {
        await reader.close();
      }
      const missing = outbox.filter((id) => !published.has(id));
      expect(missing).toEqual([]);
      expect(outbox.length).toBeGreaterThan(written.length * 3);

      // ---- every event reached the webhook endpoint at least once, each signature verified
      await until(90_000, async () => expect(outbox.filter((id) => !verified.has(id))).toEqual([]));
      expect(badSignatures).toEqual([]);
      const deliveries = await ok(0, 'GET', `/v1/webhook-endpoints/${endpoint.id}/deliveries?limit=5`);
      expect(deliveries.data[0]).toMatchObject({ endpoint: endpoint.id, status: 'succeeded' });

      // ---- both projections agree with what was done (B's and the restarted node's)
      for (const [externalId, active] of expected) {
        for (const i of [0, 1]) {
          await until(10_000, async () => expect(await entitled(i, externalId)).toBe(active));
        }
      }
      // And a change now is still seen across (the restarted node's subscription is live).
      const last = await subscribe(survivor);
      await until(10_000, async () => expect(await entitled(leader, last.externalId)).toBe(true));
    },
    DEADLINE_MS,
  );
});
