import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ProviderError } from '../../src/providers/port.js';
import { SimulatorProvider } from '../../src/providers/simulator/client.js';

/**
 * The simulator's port adapter over node:http, against a server that answers as no simulator
 * should: what the payments module gets is always a ProviderError of the right kind, never a
 * TypeError, and a keyed call that may have been processed is asked again with the same key.
 */
describe('simulator client: odd answers', () => {
  let server: Server;
  let base = '';
  let answer: (path: string, res: import('node:http').ServerResponse) => void = () => {};
  const seen: Array<{ path: string; key: string | undefined }> = [];

  beforeAll(async () => {
    server = createServer((req, res) => {
      seen.push({ path: req.url ?? '', key: req.headers['idempotency-key'] as string | undefined });
      req.resume();
      req.on('end', () => answer(req.url ?? '', res));
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });
  afterAll(() => new Promise<void>((r) => server.close(() => r())));

  const client = () =>
    new SimulatorProvider({
      id: 'odd',
      baseUrl: base,
      apiKey: 'k'.repeat(32),
      webhookSecret: 's'.repeat(32),
      timeoutMs: 500,
      retriesMax: 2,
      retryBaseMs: 1,
    });
  const charge = () =>
    client().charge({
      providerMethodId: 'pm_1',
      amountMinor: 1000,
      currency: 'SEK',
      capture: true,
      idempotencyKey: 'pay_1',
      metadata: {},
    });
  const kindOf = async (p: Promise<unknown>) => {
    const error = await p.then(
      () => null,
      (e: unknown) => e,
    );
    expect(error).toBeInstanceOf(ProviderError);
    return (error as ProviderError).kind;
  };

  it('an unreadable success is asked again with the same key, then ambiguous', async () => {
    seen.length = 0;
    answer = (_path, res) => {
      res.writeHead(200, { 'content-type': 'text/html' });
      res.end('<html>not json</html>');
    };
    expect(await kindOf(charge())).toBe('ambiguous');
    expect(seen).toHaveLength(3);
    expect(new Set(seen.map((s) => s.key))).toEqual(new Set(['pay_1']));
  });

  it('a redirect is not followed and processed nothing: rejected, asked once', async () => {
    seen.length = 0;
    answer = (_path, res) => {
      res.writeHead(302, { location: 'http://169.254.169.254/latest/meta-data/' });
      res.end();
    };
    expect(await kindOf(charge())).toBe('rejected');
    expect(seen).toHaveLength(1);
  });

  it('a JSON answer that is not an object (null, an array) is unreadable too', async () => {
    for (const body of ['null', '[1,2]', '42']) {
      answer = (_path, res) => {
        res.writeHead(400, { 'content-type': 'application/json' });
        res.end(body);
      };
      expect(await kindOf(charge())).toBe('rejected');
    }
  });

  it('an answer that never ends times out: ambiguous for a keyed call', async () => {
    answer = (_path, res) => {
      res.writeHead(200, { 'content-type': 'application/json' });
      res.write('{"id":');
    };
    expect(await kindOf(charge())).toBe('ambiguous');
  });
});
