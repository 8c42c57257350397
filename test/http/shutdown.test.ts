import { describe, expect, it } from 'vitest';
import { startTestApp } from '../support/app.js';
import { ENGINE } from '../support/database.js';

describe(`graceful shutdown (${ENGINE})`, () => {
  it('finishes the requests in flight, then stops listening', async () => {
    const t = await startTestApp();
    const server = t.app.server;
    await server.listen({ port: 0, host: '127.0.0.1' });
    const address = server.server.address();
    const url = `http://127.0.0.1:${typeof address === 'object' && address ? address.port : 0}`;
    const catalog = t.app.services.catalog;
    const original = catalog.createMarket.bind(catalog);
    let entered!: () => void;
    const inside = new Promise<void>((r) => {
      entered = r;
    });
    catalog.createMarket = async (input, trx) => {
      entered();
      await new Promise((r) => setTimeout(r, 300));
      return original(input, trx);
    };
    const slow = fetch(`${url}/v1/markets`, {
      method: 'POST',
      headers: {
        authorization: 'Bearer test-bootstrap-key-with-every-scope',
        'content-type': 'application/json',
        connection: 'close',
      },
      body: JSON.stringify({ code: 'SE', currency: 'SEK', taxRateBps: 2500, taxInclusive: true }),
    });
    await inside;
    const closing = t.close();
    const res = await slow;
    expect(res.status).toBe(201);
    await closing;
    await expect(fetch(`${url}/health`)).rejects.toThrow();
  });
});
