import { createServer, type IncomingHttpHeaders, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { MasterKey } from '../../src/crypto/envelope.js';
import { transact } from '../../src/db/transaction.js';
import type { BusEvent } from '../../src/events/bus.js';
import type { EventType } from '../../src/events/types.js';
import type { Clock } from '../../src/kernel/clock.js';
import { newId } from '../../src/kernel/ids.js';
import { type DispatcherOptions, WebhookDispatcher } from '../../src/modules/webhooks/dispatcher.js';
import { parseAllowCidrs } from '../../src/modules/webhooks/domain/ssrf.js';
import { type WebhookOptions, WebhookService } from '../../src/modules/webhooks/service.js';
import { MASTER_KEY, type TestApp } from '../support/app.js';

export interface Received {
  path: string;
  headers: IncomingHttpHeaders;
  body: string;
  at: number;
}

export interface Receiver {
  url: string;
  port: number;
  received: Received[];
  /** What to answer: a status, after an optional delay (default 200 at once). */
  answer: (r: Received) => { status: number; delayMs?: number };
  close(): Promise<void>;
}

/** An HTTP server on 127.0.0.1 recording every request it gets. */
export async function startReceiver(): Promise<Receiver> {
  const received: Received[] = [];
  const sockets = new Set<import('node:net').Socket>();
  const receiver: Receiver = {
    url: '',
    port: 0,
    received,
    answer: () => ({ status: 200 }),
    close: async () => {
      for (const s of sockets) s.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
  const server: Server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const r: Received = {
        path: req.url ?? '',
        headers: req.headers,
        body: Buffer.concat(chunks).toString('utf8'),
        at: Date.now(),
      };
      received.push(r);
      const { status, delayMs } = receiver.answer(r);
      const reply = () => {
        if (!res.destroyed) res.writeHead(status, { 'content-type': 'text/plain' }).end('ok');
      };
      if (delayMs) setTimeout(reply, delayMs).unref();
      else reply();
    });
  });
  server.on('connection', (s) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  receiver.port = (server.address() as AddressInfo).port;
  receiver.url = `http://127.0.0.1:${receiver.port}`;
  return receiver;
}

let version = 0;
/** Appends events to the outbox (as a change would) and returns them as the bus carries them. */
export async function appendEvents(t: TestApp, types: EventType[]): Promise<BusEvent[]> {
  const envelopes = await transact(t.app.services.db, (trx) =>
    t.app.services.events.appendMany(
      trx,
      types.map((type) => ({
        type,
        aggregate: { type: type.split('.')[0]!, id: newId('invoice'), version: ++version },
        customerId: null,
        data: { object: { id: `obj_${version}`, amount: version, nested: { b: 2, a: 1 } } },
      })),
    ),
  );
  return envelopes.map((e) => ({ ...e, customerId: null }));
}

/** A webhook service over the test app's database and secrets key, with its own options. */
export function serviceFor(t: TestApp, clock: Clock, opts: Partial<WebhookOptions> = {}): WebhookService {
  return new WebhookService(
    t.app.services.db,
    clock,
    t.app.services.events,
    MasterKey.parse(MASTER_KEY).derive('webhook-secrets'),
    { allowCidrs: parseAllowCidrs('127.0.0.0/8,::1/128'), ...opts },
  );
}

export function dispatcherFor(
  service: WebhookService,
  opts: Partial<DispatcherOptions> = {},
): WebhookDispatcher {
  return new WebhookDispatcher(service, {
    concurrency: 64,
    timeoutMs: 5_000,
    pollMs: 50,
    // A failure to claim or record is a bug here: shown, and the test's own checks then fail.
    log: (message, error) => console.error(message, error),
    ...opts,
  });
}

/** Polls `check` until it holds, at most `timeoutMs`. */
export async function waitFor(
  check: () => boolean | Promise<boolean>,
  timeoutMs = 10_000,
  what = 'condition',
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (await check()) return;
    await new Promise((r) => setTimeout(r, 20));
  }
  throw new Error(`${what} not met within ${timeoutMs} ms`);
}
