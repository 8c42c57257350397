import { connect } from 'node:net';
import type { FastifyReply, FastifyRequest } from 'fastify';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { UnitOfWork } from '../../src/http/unit-of-work.js';
import { AssertionError } from '../../src/kernel/assert.js';
import { ApiKeyService } from '../../src/modules/api-keys/service.js';
import { startTestApp, type TestApp } from '../support/app.js';
import { ENGINE } from '../support/database.js';

/** Sends `head` (and `body`) as bytes on a raw socket: no client library normalises the path. */
function rawRequest(
  port: number,
  head: string,
  body = '',
  waitMs = 5_000,
): Promise<{ status: number; text: string }> {
  return new Promise((resolve, reject) => {
    const socket = connect(port, '127.0.0.1');
    let data = '';
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new Error(`no answer within ${waitMs} ms`));
    }, waitMs);
    socket.on('data', (chunk) => {
      data += chunk.toString('latin1');
    });
    socket.on('error', () => undefined);
    socket.on('close', () => {
      clearTimeout(timer);
      const status = Number(/^HTTP\/1\.1 (\d{3})/.exec(data)?.[1] ?? 0);
      resolve({ status, text: data });
    });
    socket.write(`${head}\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n${body}`, 'latin1');
  });
}

describe(`authentication on every spelling of a path (${ENGINE})`, () => {
  let t: TestApp;
  let port: number;
  beforeAll(async () => {
    // Every request here comes from one address without a key: keep the failure budget out of the way.
    t = await startTestApp({ authFailuresPerMinute: 100_000 });
    await t.markets('SE');
    const created = await t.call('POST', '/v1/customers', {
      externalId: 'victim-1',
      market: 'SE',
      email: 'victim@example.com',
    });
    expect(created.statusCode).toBe(201);
    await t.app.server.listen({ port: 0, host: '127.0.0.1' });
    const address = t.app.server.server.address();
    port = typeof address === 'object' && address ? address.port : 0;
  });
  afterAll(() => t.close());

  const spellings = [
    '/v1/customers',
    '/%761/customers',
    '/v%31/customers',
    '/%76%31/%63ustomers',
    '/v1/%63ustomers',
    '/V1/customers',
    '/v1/CUSTOMERS',
    '//v1/customers',
    '/v1//customers',
    '/./v1/customers',
    '/v1/./customers',
    '/x/../v1/customers',
    '/v1/x/../customers',
    '/v1/customers/',
    '/v1;a=b/customers',
    '/v1/customers;a=b',
    '/v1%2Fcustomers',
    '/v1/customers%2F',
    '/%2e/v1/customers',
    '/v1/customers?externalId=victim-1',
    'http://127.0.0.1/v1/customers',
    'http://evil.example/v1/customers',
    'HTTP://127.0.0.1/v%31/customers',
  ];

  it.each(spellings)('GET %s without a key never lists customers', async (path) => {
    const res = await rawRequest(port, `GET ${path} HTTP/1.1`);
    expect(res.status, res.text).toBeGreaterThanOrEqual(400);
    expect(res.status).not.toBe(500);
    expect(res.text).not.toContain('victim');
    expect(res.text).toMatch(/content-type: application\/problem\+json/i);
  });

  it.each([
    '/v1/api-keys',
    '/%761/api-keys',
    '/v%31/api-keys',
    'http://127.0.0.1/v1/api-keys',
    '/x/../v1/api-keys',
  ])('POST %s without a key creates no API key', async (path) => {
    const body = JSON.stringify({ name: 'attacker', scopes: ['admin'] });
    const res = await rawRequest(
      port,
      `POST ${path} HTTP/1.1\r\nContent-Type: application/json\r\nContent-Length: ${body.length}`,
      body,
    );
    expect(res.status, res.text).toBe(401);
    expect(res.text).not.toContain('"secret"');
    const keys = await t.app.services.db
      .selectFrom('api_keys')
      .select('id')
      .where('name', '=', 'attacker')
      .execute();
    expect(keys).toEqual([]);
  });

  it('an encoded spelling that matches a route is that route: with a key it answers', async () => {
    const res = await rawRequest(
      port,
      `GET /v%31/customers?externalId=victim-1 HTTP/1.1\r\nAuthorization: Bearer ${'test-bootstrap-key-with-every-scope'}`,
    );
    expect(res.status).toBe(200);
    expect(res.text).toContain('victim-1');
  });

  it('an Expect header other than 100-continue is a 417 problem document naming the header', async () => {
    const res = await rawRequest(port, 'GET /health HTTP/1.1\r\nExpect: banana\r\nX-Request-Id: expect-1');
    expect(res.status).toBe(417);
    expect(res.text).toMatch(/^content-type: application\/problem\+json/im);
    expect(res.text).toMatch(/^request-id: expect-1\r$/im);
    const body = JSON.parse(res.text.slice(res.text.indexOf('\r\n\r\n') + 4));
    expect(body).toMatchObject({
      status: 417,
      code: 'validation_failed',
      requestId: 'expect-1',
      errors: [{ path: 'Expect', in: 'header', message: expect.any(String) }],
    });
  });

  it('public routes are the declared ones only: health, metrics, docs, the OpenAPI document', async () => {
    for (const path of ['/health', '/metrics', '/openapi.json', '/docs/']) {
      const res = await rawRequest(port, `GET ${path} HTTP/1.1`);
      expect([200, 302], `${path}: ${res.text.slice(0, 200)}`).toContain(res.status);
    }
    // An unknown path does not say whether it exists to a caller without a key.
    expect((await rawRequest(port, 'GET /v1/nothing-here HTTP/1.1')).status).toBe(401);
    expect((await t.call('GET', '/v1/nothing-here')).statusCode).toBe(404);
  });

  it.each([
    ['a TAB in the path', 'GET /v1/cus\ttomers HTTP/1.1', 400, 'validation_failed'],
    [
      'Content-Length with chunked',
      'POST /v1/customers HTTP/1.1\r\nContent-Length: 5\r\nTransfer-Encoding: chunked',
      400,
      'validation_failed',
    ],
    [
      'a NUL in a header',
      'GET /v1/customers HTTP/1.1\r\nAuthorization: Bearer a\u0000b',
      400,
      'validation_failed',
    ],
    [
      'headers over the limit',
      `GET /v1/customers HTTP/1.1\r\nAuthorization: Bearer ${'k'.repeat(70_000)}`,
      431,
      'headers_too_large',
    ],
  ])('what the HTTP parser refuses (%s) is problem+json too', async (_what, head, status, code) => {
    const res = await rawRequest(port, head, '');
    expect(res.status, res.text.slice(0, 300)).toBe(status);
    expect(res.text).toMatch(/content-type: application\/problem\+json/i);
    expect(res.text).toContain(`"code":"${code}"`);
  });

  it('a plugin refusal keeps a code that agrees with its status; text/plain is 415', async () => {
    const traversal = await rawRequest(port, 'GET /docs/static/../../v1/customers HTTP/1.1');
    expect(traversal.text).not.toContain('victim');
    if (traversal.status === 403) expect(traversal.text).toContain('"code":"forbidden"');
    const res = await t.app.server.inject({
      method: 'POST',
      url: '/v1/customers',
      headers: { authorization: 'Bearer test-bootstrap-key-with-every-scope', 'content-type': 'text/plain' },
      payload: '{"externalId":"plain-1","market":"SE"}',
    });
    expect(res.statusCode).toBe(415);
    expect(res.json().code).toBe('unsupported_media_type');
  });

  it('a unit of work without a principal is a bug, never a silent write', async () => {
    const uow = new UnitOfWork(t.app.services.db, t.app.services.idempotency, t.app.services.audit);
    const request = {
      method: 'POST',
      id: 'req_test',
      routeOptions: { url: '/v1/x', config: {} },
    } as unknown as FastifyRequest;
    let ran = false;
    await expect(
      uow.run(request, {} as FastifyReply, async () => {
        ran = true;
        return { status: 201, body: {} };
      }),
    ).rejects.toBeInstanceOf(AssertionError);
    expect(ran).toBe(false);
  });
});

describe(`input every route refuses (${ENGINE})`, () => {
  let t: TestApp;
  beforeAll(async () => {
    t = await startTestApp();
    await t.markets('SE');
  });
  afterAll(() => t.close());

  it('a NUL character in a body string is 400 naming the field', async () => {
    const res = await t.call('POST', '/v1/refunds', { payment: '\u0000' });
    expect(res.statusCode).toBe(400);
    expect(res.headers['content-type']).toContain('application/problem+json');
    expect(res.json().code).toBe('validation_failed');
    expect(res.json().errors).toEqual([expect.objectContaining({ path: 'payment', in: 'body' })]);
  });

  it('lone surrogates and NULs anywhere (nested fields, query, path) are named', async () => {
    const nested = await t.call('POST', '/v1/plans', {
      code: 'p1',
      product: 'x',
      billingPeriod: 'month',
      prices: [{ currency: 'SEK', amount: 100, market: 'S\uD800E' }],
    });
    expect(nested.statusCode).toBe(400);
    expect(nested.json().errors).toEqual([expect.objectContaining({ path: 'prices[0].market' })]);
    const low = await t.call('POST', '/v1/customers', { externalId: 'a\uDC00', market: 'SE' });
    expect(low.statusCode).toBe(400);
    expect(low.json().errors[0].path).toBe('externalId');
    const query = await t.call('GET', '/v1/customers?externalId=a%00b');
    expect(query.statusCode).toBe(400);
    expect(query.json().errors[0]).toMatchObject({ path: 'externalId', in: 'query' });
    const path = await t.call('GET', '/v1/customers/cus_%00');
    expect(path.statusCode).toBe(400);
    expect(path.json().errors[0]).toMatchObject({ path: 'id', in: 'path' });
    // A well-formed pair (an emoji) is text like any other.
    const emoji = await t.call('POST', '/v1/customers', { externalId: 'fan-🎧', market: 'SE' });
    expect(emoji.statusCode).toBe(201);
  });

  it('externalId refuses invisible characters (C*, Zl, Zp) by name; inner spaces stay allowed', async () => {
    for (const externalId of [
      '\u200b',
      'a\u200b',
      'a\u0007b',
      'a\u2028b',
      'a\u2029b',
      'a\ue000',
      'a\u0378',
      'a\u00adb',
    ]) {
      const res = await t.call('POST', '/v1/customers', { externalId, market: 'SE' });
      expect(res.statusCode, JSON.stringify(externalId)).toBe(400);
      expect(res.json().errors).toEqual([expect.objectContaining({ path: 'externalId', in: 'body' })]);
    }
    expect((await t.call('GET', '/v1/customers?externalId=a%E2%80%8B')).json().data).toEqual([]);
    const spaced = await t.call('POST', '/v1/customers', { externalId: 'Jane Doe 42', market: 'SE' });
    expect(spaced.statusCode).toBe(201);
  });

  it('unknown fields are refused by name, at any depth, in body and query', async () => {
    const top = await t.call('POST', '/v1/customers', { externalId: 'u1', market: 'SE', plan: 'x' });
    expect(top.statusCode).toBe(400);
    expect(top.json().errors).toEqual([expect.objectContaining({ path: 'plan', in: 'body' })]);
    expect((await t.call('GET', '/v1/customers?externalId=u1')).json().data).toEqual([]);

    const deep = await t.call('POST', '/v1/markets', {
      code: 'NO',
      currency: 'NOK',
      taxRateBps: 2500,
      taxInclusive: true,
      extra: { nested: 1 },
    });
    expect(deep.statusCode).toBe(400);
    expect(deep.json().errors[0].path).toBe('extra');

    const query = await t.call('GET', '/v1/customers?externalID=u1');
    expect(query.statusCode).toBe(400);
    expect(query.json().errors[0]).toMatchObject({ path: 'externalID', in: 'query' });
  });

  it('a body sent to a route that takes none is refused, not ignored (capture with an amount)', async () => {
    const res = await t.call('POST', '/v1/payments/pay_0000000000000000000000000/capture', { amount: 1001 });
    expect(res.statusCode).toBe(400);
    expect(res.json().errors).toEqual([expect.objectContaining({ path: 'amount', in: 'body' })]);
  });

  it('an externalId or a code shaped like an id is refused: "id or externalId" never means another resource', async () => {
    const victim = (await t.call('POST', '/v1/customers', { externalId: 'victim-x', market: 'SE' })).json();
    const squat = await t.call('POST', '/v1/customers', { externalId: victim.id, market: 'SE' });
    expect(squat.statusCode).toBe(400);
    expect(squat.json().errors[0]).toMatchObject({ path: 'externalId', in: 'body' });
    expect((await t.call('GET', `/v1/customers/${victim.id}`)).json().externalId).toBe('victim-x');
    for (const blank of ['   ', ' lead', 'trail ']) {
      const res = await t.call('POST', '/v1/customers', { externalId: blank, market: 'SE' });
      expect(res.statusCode).toBe(400);
      expect(res.json().errors[0].path).toBe('externalId');
    }
    const product = await t.call('POST', '/v1/products', {
      code: 'prod_01234567890123456789012345',
      name: 'Squat',
      features: ['x'],
      seats: 1,
    });
    expect(product.statusCode).toBe(400);
    expect(product.json().errors[0].path).toBe('code');
  });

  it('framework refusals are problem+json with stable codes', async () => {
    const badUrl = await t.call('GET', '/v1/customers/%ff');
    expect(badUrl.statusCode).toBe(400);
    expect(badUrl.headers['content-type']).toContain('application/problem+json');
    expect(badUrl.json().code).toBe('validation_failed');

    // An externalId of 255 characters is a valid id in a path.
    const long = 'x'.repeat(255);
    const created = await t.call('POST', '/v1/customers', { externalId: long, market: 'SE' });
    expect(created.statusCode).toBe(201);
    const read = await t.call('GET', `/v1/customers/${long}`);
    expect(read.statusCode).toBe(200);
    expect(read.json().externalId).toBe(long);

    const tooLong = await t.call('GET', `/v1/customers/${'y'.repeat(5000)}`);
    expect(tooLong.statusCode).toBe(414);
    expect(tooLong.headers['content-type']).toContain('application/problem+json');
    expect(tooLong.json().code).toBe('uri_too_long');

    const unknown = await t.call('GET', '/v1/customers/cus_unknown');
    expect(unknown.headers['content-type']).toContain('application/problem+json');
    expect(unknown.json().code).toBe('not_found');
  });
});

describe(`failed authentications are limited per client address (${ENGINE})`, () => {
  let t: TestApp;
  beforeAll(async () => {
    t = await startTestApp({ authFailuresPerMinute: 5, trustProxy: '10.0.0.0/8' });
  });
  afterAll(() => t.close());

  const as = (address: string, key: string | null, forwardedFor?: string) =>
    t.app.server.inject({
      method: 'GET',
      url: '/v1/plans',
      remoteAddress: address,
      headers: {
        ...(key ? { authorization: `Bearer ${key}` } : {}),
        ...(forwardedFor ? { 'x-forwarded-for': forwardedFor } : {}),
      },
    });

  it('guessing is cut off after the budget; the same address keeps working with a real key', async () => {
    const good = await t.keyWith('catalog:read');
    expect((await as('192.0.2.7', good)).statusCode).toBe(200);
    for (let i = 0; i < 5; i++) expect((await as('192.0.2.7', `rpk_guess${i}`)).statusCode).toBe(401);
    const blocked = await as('192.0.2.7', 'rpk_guess-more');
    expect(blocked.statusCode).toBe(429);
    expect(blocked.json().code).toBe('rate_limited');
    expect(Number(blocked.headers['retry-after'])).toBeGreaterThan(0);
    // Missing keys count as failures too, and are refused the same way while over budget.
    expect((await as('192.0.2.7', null)).statusCode).toBe(429);
    // Authenticated traffic from the blocked address is not slowed.
    expect((await as('192.0.2.7', good)).statusCode).toBe(200);
    // Other addresses have their own budget.
    expect((await as('192.0.2.8', 'rpk_other')).statusCode).toBe(401);
  });

  it('behind a trusted proxy the forwarded address is the client; from elsewhere the header is ignored', async () => {
    for (let i = 0; i < 5; i++) {
      expect((await as('10.1.2.3', `rpk_x${i}`, '198.51.100.1')).statusCode).toBe(401);
    }
    expect((await as('10.1.2.3', 'rpk_x', '198.51.100.1')).statusCode).toBe(429);
    // Another client behind the same proxy is not blocked by the first one's failures.
    expect((await as('10.1.2.3', 'rpk_y', '198.51.100.2')).statusCode).toBe(401);
    // An untrusted peer cannot pick its address by sending the header.
    for (let i = 0; i < 5; i++) {
      expect((await as('203.0.113.9', `rpk_z${i}`, `198.51.100.${10 + i}`)).statusCode).toBe(401);
    }
    expect((await as('203.0.113.9', 'rpk_z', '198.51.100.99')).statusCode).toBe(429);
  });

  it('a flood of unknown tokens evicts no real key, and the active keys are known without a lookup', async () => {
    const db = t.app.services.db;
    const apiKeys = new ApiKeyService(db, t.app.services.clock, undefined, { unknownMax: 4 });
    const secret = await t.keyWith('catalog:read');
    const principal = await apiKeys.authenticate(secret);
    expect(principal).not.toBeNull();
    for (let i = 0; i < 40; i++) expect(await apiKeys.authenticate(`rpk_flood${i}`)).toBeNull();
    // Revoked behind this node's back: only its in-memory copy can still answer, so it still has it.
    await db
      .updateTable('api_keys')
      .set({ revoked_at: new Date() })
      .where('id', '=', principal!.keyId)
      .execute();
    expect(await apiKeys.authenticate(secret)).toEqual(principal);
    expect(await apiKeys.knownPrincipal(secret)).toEqual(principal);
    expect(await apiKeys.knownPrincipal('rpk_flood1')).toBeNull();
  });

  it('a key created after the flood started is served at the flooded address (no restart, no prior use)', async () => {
    for (let i = 0; i < 6; i++) await as('192.0.2.50', `rpk_more${i}`);
    expect((await as('192.0.2.50', 'rpk_more')).statusCode).toBe(429);
    const fresh = await t.keyWith('catalog:read');
    expect((await as('192.0.2.50', fresh)).statusCode).toBe(200);
  });

  it('a revocation on this node takes effect at once', async () => {
    const secret = await t.keyWith('catalog:read');
    expect((await as('192.0.2.60', secret)).statusCode).toBe(200);
    const id = (await t.app.services.apiKeys.knownPrincipal(secret))!.keyId;
    expect((await t.call('POST', `/v1/api-keys/${id}/revoke`)).statusCode).toBe(200);
    expect((await as('192.0.2.60', secret)).statusCode).toBe(401);
  });
});

describe(`slow clients (${ENGINE})`, () => {
  let t: TestApp;
  let port: number;
  beforeAll(async () => {
    t = await startTestApp({ requestTimeoutMs: 1_000 });
    await t.app.server.listen({ port: 0, host: '127.0.0.1' });
    const address = t.app.server.server.address();
    port = typeof address === 'object' && address ? address.port : 0;
  });
  afterAll(() => t.close());

  it('a body that never completes does not hold its socket (slowloris)', async () => {
    const started = performance.now();
    const res = await rawRequest(
      port,
      'POST /v1/customers HTTP/1.1\r\nContent-Type: application/json\r\nContent-Length: 1000\r\nAuthorization: Bearer test-bootstrap-key-with-every-scope',
      '{"externalId":',
      10_000,
    );
    const elapsedMs = performance.now() - started;
    expect(elapsedMs).toBeLessThan(8_000);
    expect([0, 408]).toContain(res.status);
  });
});

describe(`problems a unit of work answers (${ENGINE})`, () => {
  let t: TestApp;
  beforeAll(async () => {
    t = await startTestApp({ providerTimeoutMs: 1_000 });
    await t.markets('SE');
  });
  afterAll(() => t.close());

  it('a declined payment’s 402 carries its requestId like every other problem, also on replay', async () => {
    const c = (await t.call('POST', '/v1/customers', { externalId: 'declined-1', market: 'SE' })).json().id;
    const pm = await t.call('POST', `/v1/customers/${c}/payment-methods`, {
      provider: 'simulator',
      token: 'tok_chargeCustomerFail',
    });
    expect(pm.statusCode).toBe(201);
    const headers = { 'idempotency-key': 'declined-pay-1' };
    const body = { customer: c, amount: 1000, currency: 'SEK', description: 'Audiobook' };
    const res = await t.call('POST', '/v1/payments', body, { headers });
    expect(res.statusCode).toBe(402);
    expect(res.json().code).toBe('payment_declined');
    expect(res.json().requestId).toBe(res.headers['request-id']);
    const replay = await t.call('POST', '/v1/payments', body, { headers });
    expect(replay.headers['idempotent-replayed']).toBe('true');
    expect(replay.json().requestId).toBe(res.headers['request-id']);
  });
});
