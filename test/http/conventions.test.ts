import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestApp, type TestApp } from '../support/app.js';
import { ENGINE } from '../support/database.js';

const PROBLEM = 'application/problem+json; charset=utf-8';

describe(`HTTP conventions of API.md (${ENGINE})`, () => {
  let t: TestApp;
  beforeAll(async () => {
    t = await startTestApp({ rateLimitPerMinute: 1000 });
    await t.markets('SE');
  });
  afterAll(() => t.close());

  describe('authentication and scopes', () => {
    it('401 without a key, as problem+json with a stable code', async () => {
      const res = await t.call('GET', '/v1/markets', undefined, { key: null });
      expect(res.statusCode).toBe(401);
      expect(res.headers['content-type']).toBe(PROBLEM);
      expect(res.json()).toMatchObject({
        status: 401,
        code: 'unauthenticated',
        title: 'Authentication required',
      });
    });

    it('401 with an unknown key', async () => {
      const res = await t.call('GET', '/v1/markets', undefined, { key: 'rpk_not-a-real-key' });
      expect(res.statusCode).toBe(401);
      expect(res.json().code).toBe('unauthenticated');
    });

    it('403 with a valid key that lacks the scope, naming the scope', async () => {
      const reader = await t.keyWith('catalog:read');
      expect((await t.call('GET', '/v1/markets', undefined, { key: reader })).statusCode).toBe(200);
      const res = await t.call(
        'POST',
        '/v1/markets',
        { code: 'NO', currency: 'NOK', taxRateBps: 2500, taxInclusive: true },
        { key: reader },
      );
      expect(res.statusCode).toBe(403);
      expect(res.json()).toMatchObject({ code: 'forbidden', requiredScope: 'catalog:write' });
      const listed = await t.call('GET', '/v1/markets/NO');
      expect(listed.statusCode).toBe(404);
    });

    it('a write scope implies its read scope, and nothing else', async () => {
      const writer = await t.keyWith('customers:write');
      expect((await t.call('GET', '/v1/customers', undefined, { key: writer })).statusCode).toBe(200);
      expect((await t.call('GET', '/v1/plans', undefined, { key: writer })).statusCode).toBe(403);
    });

    it('operational endpoints need no key', async () => {
      expect((await t.call('GET', '/health', undefined, { key: null })).json()).toEqual({ status: 'ok' });
      expect((await t.call('GET', '/openapi.json', undefined, { key: null })).statusCode).toBe(200);
    });
  });

  describe('validation', () => {
    it('400 validation_failed naming every bad body field', async () => {
      const res = await t.call('POST', '/v1/products', { code: 'Bad Code', features: 'ad-free', seats: 0 });
      expect(res.statusCode).toBe(400);
      expect(res.headers['content-type']).toBe(PROBLEM);
      const body = res.json();
      expect(body.code).toBe('validation_failed');
      expect(body.errors.map((e: { path: string }) => e.path).sort()).toEqual(['code', 'features', 'seats']);
      expect(body.errors.every((e: { in: string }) => e.in === 'body')).toBe(true);
    });

    it('names nested fields with their index', async () => {
      const res = await t.call('POST', '/v1/plans', {
        code: 'p1',
        product: 'x',
        billingPeriod: 'month',
        prices: [
          { currency: 'SEK', amount: 100 },
          { currency: 'sek', amount: -5 },
        ],
      });
      expect(res.statusCode).toBe(400);
      expect(
        res
          .json()
          .errors.map((e: { path: string }) => e.path)
          .sort(),
      ).toEqual(['prices[1].amount', 'prices[1].currency']);
    });

    it('validates the query string and path parameters too', async () => {
      const q = await t.call('GET', '/v1/markets?limit=1000');
      expect(q.statusCode).toBe(400);
      expect(q.json().errors).toEqual([expect.objectContaining({ path: 'limit', in: 'query' })]);
      // Only digits: forms Number() would read are not a page size.
      for (const limit of ['1e1', '0x10', '5.0', '+5', '%205', '0', '']) {
        const odd = await t.call('GET', `/v1/markets?limit=${limit}`);
        expect(odd.statusCode, `limit=${limit}`).toBe(400);
      }
      expect((await t.call('GET', '/v1/markets?limit=7')).statusCode).toBe(200);
      const c = await t.call('GET', '/v1/markets?cursor=garbage');
      expect(c.statusCode).toBe(400);
      expect(c.json().errors[0].path).toBe('cursor');
      const p = await t.call('GET', `/v1/markets/${'x'.repeat(100)}`);
      expect(p.statusCode).toBe(400);
      expect(p.json().errors[0]).toMatchObject({ path: 'id', in: 'path' });
    });

    it('400 for a body that is not JSON, 415 for another media type', async () => {
      const broken = await t.app.server.inject({
        method: 'POST',
        url: '/v1/markets',
        headers: {
          authorization: 'Bearer test-bootstrap-key-with-every-scope',
          'content-type': 'application/json',
        },
        payload: '{"code":',
      });
      expect(broken.statusCode).toBe(400);
      expect(broken.json().code).toBe('validation_failed');
      const xml = await t.app.server.inject({
        method: 'POST',
        url: '/v1/markets',
        headers: {
          authorization: 'Bearer test-bootstrap-key-with-every-scope',
          'content-type': 'application/xml',
        },
        payload: '<market/>',
      });
      expect(xml.statusCode).toBe(415);
      expect(xml.json().code).toBe('unsupported_media_type');
    });

    it('a bad request changes nothing', async () => {
      const before = (await t.call('GET', '/v1/products')).json().data.length;
      await t.call('POST', '/v1/products', { code: 'ok-code', features: [], seats: 500 });
      expect((await t.call('GET', '/v1/products')).json().data.length).toBe(before);
    });
  });

  describe('errors', () => {
    it('404 not_found for an unknown resource and for an unknown route', async () => {
      const res = await t.call('GET', '/v1/customers/cus_01ARZ3NDEKTSV4RRFFQ69G5FAV');
      expect(res.statusCode).toBe(404);
      expect(res.json()).toMatchObject({ code: 'not_found', status: 404 });
      const route = await t.call('GET', '/v1/no-such-thing');
      expect(route.statusCode).toBe(404);
      expect(route.headers['content-type']).toBe(PROBLEM);
    });

    it('409 already_exists for a duplicate code', async () => {
      const res = await t.call('POST', '/v1/markets', {
        code: 'SE',
        currency: 'SEK',
        taxRateBps: 2500,
        taxInclusive: true,
      });
      expect(res.statusCode).toBe(409);
      expect(res.json()).toMatchObject({ code: 'already_exists', errors: [{ path: 'code' }] });
    });

    it('413 for a body over the limit', async () => {
      const res = await t.call('POST', '/v1/products', {
        code: 'big',
        features: ['x'],
        seats: 1,
        name: 'x'.repeat(300_000),
      });
      expect(res.statusCode).toBe(413);
      expect(res.json().code).toBe('payload_too_large');
    });

    it('every response carries a request id, taken from X-Request-Id when sane', async () => {
      const res = await t.call('GET', '/v1/markets/NOPE', undefined, {
        headers: { 'x-request-id': 'trace-abc.123' },
      });
      expect(res.headers['request-id']).toBe('trace-abc.123');
      expect(res.json().requestId).toBe('trace-abc.123');
      const generated = await t.call('GET', '/health', undefined, {
        key: null,
        headers: { 'x-request-id': 'bad id with spaces' },
      });
      expect(generated.headers['request-id']).toMatch(/^req_/);
    });
  });

  describe('idempotency', () => {
    const body = { code: 'idem-product', features: ['ad-free'], seats: 1 };

    it('replays the original status and body with Idempotent-Replayed: true', async () => {
      const headers = { 'idempotency-key': 'k-replay' };
      const first = await t.call('POST', '/v1/products', body, { headers });
      expect(first.statusCode).toBe(201);
      expect(first.headers['idempotent-replayed']).toBeUndefined();
      const again = await t.call(
        'POST',
        '/v1/products',
        { seats: 1, features: ['ad-free'], code: 'idem-product' },
        { headers },
      );
      expect(again.statusCode).toBe(201);
      expect(again.headers['idempotent-replayed']).toBe('true');
      expect(again.body).toBe(first.body);
      const all = (await t.call('GET', '/v1/products?limit=100')).json().data;
      expect(all.filter((p: { code: string }) => p.code === 'idem-product')).toHaveLength(1);
    });

    it('422 idempotency_key_reused when the body differs', async () => {
      const headers = { 'idempotency-key': 'k-reused' };
      expect(
        (await t.call('POST', '/v1/products', { ...body, code: 'idem-a' }, { headers })).statusCode,
      ).toBe(201);
      const res = await t.call('POST', '/v1/products', { ...body, code: 'idem-b' }, { headers });
      expect(res.statusCode).toBe(422);
      expect(res.json().code).toBe('idempotency_key_reused');
      expect((await t.call('GET', '/v1/products/idem-b')).statusCode).toBe(404);
    });

    it('409 idempotency_key_in_use while the first request runs', async () => {
      const headers = { 'idempotency-key': 'k-in-use' };
      // Hold the first request after it claimed the key, before its unit of work (on PGlite a held
      // transaction would hold the one database session and stall the second request too).
      let release!: () => void;
      const gate = new Promise<void>((r) => {
        release = r;
      });
      const uow = t.app.services.uow;
      const original = uow.run.bind(uow);
      uow.run = async (req, reply, work) => {
        await gate;
        return original(req, reply, work);
      };
      try {
        const first = t.call('POST', '/v1/products', { ...body, code: 'idem-slow' }, { headers });
        await new Promise((r) => setTimeout(r, 200));
        const second = await t.call('POST', '/v1/products', { ...body, code: 'idem-slow' }, { headers });
        expect(second.statusCode).toBe(409);
        expect(second.json().code).toBe('idempotency_key_in_use');
        release();
        expect((await first).statusCode).toBe(201);
      } finally {
        release();
        uow.run = original;
      }
      const replay = await t.call('POST', '/v1/products', { ...body, code: 'idem-slow' }, { headers });
      expect(replay.headers['idempotent-replayed']).toBe('true');
    });

    it('keys are scoped per API key', async () => {
      const other = await t.keyWith('catalog:write');
      const headers = { 'idempotency-key': 'k-scoped' };
      expect(
        (await t.call('POST', '/v1/products', { ...body, code: 'scoped-a' }, { headers })).statusCode,
      ).toBe(201);
      const res = await t.call(
        'POST',
        '/v1/products',
        { ...body, code: 'scoped-b' },
        { key: other, headers },
      );
      expect(res.statusCode).toBe(201);
      expect(res.headers['idempotent-replayed']).toBeUndefined();
    });

    it('errors are replayed too (a 409 stays a 409)', async () => {
      const headers = { 'idempotency-key': 'k-error' };
      const first = await t.call(
        'POST',
        '/v1/markets',
        { code: 'SE', currency: 'SEK', taxRateBps: 2500, taxInclusive: true },
        { headers },
      );
      expect(first.statusCode).toBe(409);
      const again = await t.call(
        'POST',
        '/v1/markets',
        { code: 'SE', currency: 'SEK', taxRateBps: 2500, taxInclusive: true },
        { headers },
      );
      expect(again.statusCode).toBe(409);
      expect(again.headers['idempotent-replayed']).toBe('true');
      expect(again.headers['content-type']).toBe(PROBLEM);
    });
  });

  describe('pagination', () => {
    it('walks a collection oldest first with a cursor', async () => {
      for (const code of ['pg-1', 'pg-2', 'pg-3', 'pg-4', 'pg-5']) {
        await t.call('POST', '/v1/products', { code, features: [], seats: 1 });
      }
      const seen: string[] = [];
      let cursor: string | null = '';
      let pages = 0;
      while (cursor !== null && pages < 50) {
        const res = await t.call('GET', `/v1/products?limit=2${cursor ? `&cursor=${cursor}` : ''}`);
        expect(res.statusCode).toBe(200);
        const page = res.json() as { data: Array<{ id: string; code: string }>; nextCursor: string | null };
        expect(page.data.length).toBeLessThanOrEqual(2);
        seen.push(...page.data.map((p) => p.id));
        cursor = page.nextCursor;
        pages++;
      }
      expect(seen).toEqual([...seen].sort());
      expect(new Set(seen).size).toBe(seen.length);
      const all = (await t.call('GET', '/v1/products?limit=100'))
        .json()
        .data.map((p: { id: string }) => p.id);
      expect(seen).toEqual(all);
    });
  });

  describe('OpenAPI, docs and metrics', () => {
    it('serves an OpenAPI 3.1 document generated from the route schemas', async () => {
      const doc = (await t.call('GET', '/openapi.json', undefined, { key: null })).json();
      expect(doc.openapi).toBe('3.1.0');
      expect(Object.keys(doc.paths)).toEqual(
        expect.arrayContaining(['/v1/plans', '/v1/customers/{id}/erase', '/v1/test-clocks/{id}/advance']),
      );
      const plan = doc.paths['/v1/plans'].post.requestBody.content['application/json'].schema;
      expect(plan.required).toEqual(expect.arrayContaining(['code', 'product', 'billingPeriod', 'prices']));
      const headers = doc.paths['/v1/customers'].post.parameters.filter(
        (p: { in: string }) => p.in === 'header',
      );
      expect(headers.map((p: { name: string }) => p.name)).toEqual(['idempotency-key']);
    });

    it('serves a readable reference at /docs', async () => {
      const res = await t.app.server.inject({ method: 'GET', url: '/docs/' });
      expect(res.statusCode).toBe(200);
      expect(res.body).toContain('swagger');
    });

    it('exposes Prometheus metrics by route template and the database pool', async () => {
      await t.call('GET', '/v1/markets/SE');
      const text = (await t.call('GET', '/metrics', undefined, { key: null })).body;
      expect(text).toMatch(
        /reprise_http_requests_total\{method="GET",route="\/v1\/markets\/:id",status="200"\} \d+/,
      );
      expect(text).toContain('reprise_http_request_duration_seconds_bucket');
      expect(text).toMatch(/reprise_db_pool_connections\{state="total",engine="(pglite|postgres)"\}/);
    });
  });
});

describe(`rate limits (${ENGINE})`, () => {
  let t: TestApp;
  beforeAll(async () => {
    t = await startTestApp({ rateLimitPerMinute: 5 });
  });
  afterAll(() => t.close());

  it('429 problem+json once a key spends its budget; other keys are unaffected', async () => {
    const busy = await t.keyWith('catalog:read');
    const calm = await t.keyWith('catalog:read');
    const statuses: number[] = [];
    for (let i = 0; i < 7; i++)
      statuses.push((await t.call('GET', '/v1/markets', undefined, { key: busy })).statusCode);
    expect(statuses.slice(0, 5)).toEqual([200, 200, 200, 200, 200]);
    const limited = await t.call('GET', '/v1/markets', undefined, { key: busy });
    expect(limited.statusCode).toBe(429);
    expect(limited.headers['content-type']).toBe(PROBLEM);
    expect(limited.json().code).toBe('rate_limited');
    expect(limited.headers['retry-after']).toBeDefined();
    expect((await t.call('GET', '/v1/markets', undefined, { key: calm })).statusCode).toBe(200);
    expect((await t.call('GET', '/health', undefined, { key: null })).statusCode).toBe(200);
  });
});
