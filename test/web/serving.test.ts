import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Fastify, { type FastifyInstance } from 'fastify';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { installWeb } from '../../src/http/web.js';
import { startTestApp, type TestApp } from '../support/app.js';

describe('web pages served next to the API', () => {
  let dir: string;
  let web: FastifyInstance;
  let empty: FastifyInstance;
  let t: TestApp;

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'reprise-web-'));
    mkdirSync(join(dir, 'assets'));
    writeFileSync(join(dir, 'index.html'), '<!doctype html><title>Reprise</title>');
    writeFileSync(join(dir, 'assets', 'index-abc123.js'), 'console.log(1)');
    writeFileSync(join(dir, 'secret.txt'), 'not an asset');
    web = Fastify();
    await installWeb(web, { root: dir, frameSources: () => ['http://127.0.0.1:4100'] });
    empty = Fastify();
    await installWeb(empty, { root: join(dir, 'missing'), frameSources: () => [] });
    t = await startTestApp();
  });
  afterAll(async () => {
    await web.close();
    await empty.close();
    await t.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('answers the app for every page route, with a strict CSP that frames only the card providers', async () => {
    for (const url of [
      '/checkout/cs_1',
      '/checkout/cs_1/complete',
      '/portal/ps_1',
      '/admin',
      '/admin/customers/x',
    ]) {
      const res = await web.inject({ method: 'GET', url });
      expect(res.statusCode, url).toBe(200);
      expect(res.body).toContain('<title>Reprise</title>');
      expect(res.headers['content-type']).toBe('text/html; charset=utf-8');
      const csp = String(res.headers['content-security-policy']);
      expect(csp).toContain("script-src 'self'");
      expect(csp).toContain('frame-src http://127.0.0.1:4100');
      expect(csp).toContain("frame-ancestors 'none'");
      expect(res.headers['referrer-policy']).toBe('no-referrer');
      expect(res.headers['cache-control']).toBe('no-store');
      expect(res.headers['x-frame-options']).toBe('DENY');
      // The console only: a site that opened it keeps no window handle on it.
      expect(res.headers['cross-origin-opener-policy'], url).toBe(
        url.startsWith('/admin') ? 'same-origin' : undefined,
      );
    }
  });

  it('serves built assets by name only: no traversal, no other file', async () => {
    const ok = await web.inject({ method: 'GET', url: '/assets/index-abc123.js' });
    expect(ok.statusCode).toBe(200);
    expect(ok.headers['cache-control']).toContain('immutable');
    for (const url of [
      '/assets/../secret.txt',
      '/assets/%2e%2e/secret.txt',
      '/assets/..%2fsecret.txt',
      '/assets/%2e%2e%2fsecret.txt',
      '/assets/nope.js',
      '/assets/.hidden',
      '/assets/a/b.js',
    ]) {
      const res = await web.inject({ method: 'GET', url });
      expect(res.statusCode, url).toBe(404);
      expect(res.body).not.toContain('not an asset');
    }
  });

  it('says the pages are not built instead of failing when dist/web is missing', async () => {
    const res = await empty.inject({ method: 'GET', url: '/checkout/cs_1' });
    expect(res.statusCode).toBe(503);
    expect(res.json()).toMatchObject({ code: 'service_unavailable' });
  });

  it('page routes need no API key on the real server; the API still does', async () => {
    for (const url of ['/checkout/cs_1', '/portal/ps_1', '/admin', '/assets/x.js']) {
      const res = await t.call('GET', url, undefined, { key: null });
      expect([200, 404, 503], url).toContain(res.statusCode);
    }
    expect((await t.call('GET', '/v1/customers', undefined, { key: null })).statusCode).toBe(401);
    expect((await t.call('GET', '/checkoutx', undefined, { key: null })).statusCode).toBe(401);
  });
});
