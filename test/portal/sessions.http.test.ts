import { createHash } from 'node:crypto';
import { sql } from 'kysely';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ManualClock } from '../../src/kernel/clock.js';
import { LIVE_SESSIONS_MAX } from '../../src/modules/portal/service.js';
import { startTestApp, type TestApp } from '../support/app.js';
import { payingCustomer, smallCatalog, subscribeOk } from '../support/billing.js';
import { ENGINE } from '../support/database.js';
import { openPortal, pageCall } from './support.js';

const ORIGIN = 'https://billing.example.com';

/** Portal sessions: creation through the API, and the page's authentication by the session secret. */
describe(`portal sessions (${ENGINE})`, () => {
  let t: TestApp;
  const clock = new ManualClock('2027-03-01T10:00:00Z');
  let n = 0;

  beforeAll(async () => {
    t = await startTestApp(
      {
        publicUrl: ORIGIN,
        allowedRedirectOrigins: `${ORIGIN},https://app.example.com`,
        // This file refuses many secrets on purpose: the per-address budget must not cut in.
        authFailuresPerMinute: 1_000,
      },
      clock,
    );
    await smallCatalog(t);
  });
  afterAll(() => t.close());

  const customer = () => payingCustomer(t, `portal-user-${++n}`);
  const rows = async (id: string) =>
    (
      await sql<{
        id: string;
        secret_hash: string;
        customer_id: string;
        ended_at: Date | null;
      }>`SELECT * FROM portal_sessions WHERE id = ${id}`.execute(t.app.services.db)
    ).rows;

  it('creates a session: 201 with a link to the portal carrying the secret in its fragment, expiring in an hour', async () => {
    const c = await customer();
    const res = await t.call('POST', '/v1/portal-sessions', {
      customer: c.externalId,
      returnUrl: 'https://app.example.com/account?tab=billing',
    });
    expect(res.statusCode, res.body).toBe(201);
    const body = res.json();
    expect(body).toEqual({
      id: expect.stringMatching(/^ps_[0-9A-Z]{26}$/),
      object: 'portal_session',
      url: expect.any(String),
      customer: c.id,
      returnUrl: 'https://app.example.com/account?tab=billing',
      expiresAt: '2027-03-01T11:00:00Z',
      createdAt: '2027-03-01T10:00:00Z',
    });
    const url = new URL(body.url);
    expect(url.origin).toBe(ORIGIN);
    expect(url.pathname).toBe(`/portal/${body.id}`);
    expect(url.search).toBe('');
    const secret = url.hash.slice(1);
    expect(secret).toMatch(/^ps_secret_[A-Za-z0-9_-]{43}$/);
    // Only its SHA-256 is stored, never the secret.
    const [row] = await rows(body.id);
    expect(row).toMatchObject({ customer_id: c.id, ended_at: null });
    expect(row!.secret_hash).toBe(createHash('sha256').update(secret).digest('hex'));
    expect(JSON.stringify(row)).not.toContain(secret);
    // The secret opens the page.
    const page = await pageCall(t, { id: body.id, secret }, 'GET', '/overview');
    expect(page.statusCode, page.body).toBe(200);
    // Two sessions, two secrets.
    const other = await openPortal(t, c.id);
    expect(other.secret).not.toBe(secret);
    expect(other.body.returnUrl).toBeNull();
  });

  it('an idempotent replay answers the same session without its link (the secret is shown once); another request with the key is 422', async () => {
    const c = await customer();
    const headers = { 'idempotency-key': `portal-create-${c.id}` };
    const first = await t.call('POST', '/v1/portal-sessions', { customer: c.id }, { headers });
    const again = await t.call('POST', '/v1/portal-sessions', { customer: c.id }, { headers });
    expect(first.statusCode).toBe(201);
    expect(again.statusCode).toBe(201);
    expect(again.headers['idempotent-replayed']).toBe('true');
    expect(again.json()).toEqual({ ...first.json(), url: null });
    const secret = new URL(first.json().url).hash.slice(1);
    const stored = await sql<{
      n: string;
    }>`SELECT count(*) AS n FROM idempotency_keys WHERE response_body::text LIKE ${`%${secret}%`}`.execute(
      t.app.services.db,
    );
    expect(Number(stored.rows[0]!.n)).toBe(0);
    const count = await sql<{
      n: string;
    }>`SELECT count(*) AS n FROM portal_sessions WHERE customer_id = ${c.id}`.execute(t.app.services.db);
    expect(Number(count.rows[0]!.n)).toBe(1);
    const other = await t.call('POST', '/v1/portal-sessions', { customer: c.externalId }, { headers });
    expect(other.statusCode).toBe(422);
    expect(other.json().code).toBe('idempotency_key_reused');
  });

  it('refuses bad input naming the field, and creates nothing', async () => {
    const c = await customer();
    const before = await sql<{ n: string }>`SELECT count(*) AS n FROM portal_sessions`.execute(
      t.app.services.db,
    );
    const cases: Array<[unknown, string]> = [
      [{}, 'customer'],
      [{ customer: '' }, 'customer'],
      [{ customer: 'x'.repeat(256) }, 'customer'],
      [{ customer: c.id, returnUrl: 'https://evil.example.com/' }, 'returnUrl'],
      [{ customer: c.id, returnUrl: 'javascript:alert(1)' }, 'returnUrl'],
      [{ customer: c.id, returnUrl: `${ORIGIN}.evil.example/` }, 'returnUrl'],
      [{ customer: c.id, returnUrl: '/relative' }, 'returnUrl'],
      [{ customer: c.id, returnUrl: `${ORIGIN}/${'a'.repeat(2100)}` }, 'returnUrl'],
      [{ customer: c.id, secret: 'mine' }, 'secret'],
    ];
    for (const [body, field] of cases) {
      const res = await t.call('POST', '/v1/portal-sessions', body);
      expect(res.statusCode, JSON.stringify(body)).toBe(400);
      expect(res.headers['content-type']).toContain('application/problem+json');
      expect(
        res.json().errors.map((e: { path: string }) => e.path),
        JSON.stringify(body),
      ).toContain(field);
    }
    const after = await sql<{ n: string }>`SELECT count(*) AS n FROM portal_sessions`.execute(
      t.app.services.db,
    );
    expect(after.rows[0]!.n).toBe(before.rows[0]!.n);
  });

  it('404 for an unknown customer, 409 for an erased one; test-clock customers are welcome', async () => {
    const unknown = await t.call('POST', '/v1/portal-sessions', { customer: 'nobody-here' });
    expect(unknown.statusCode).toBe(404);
    expect(unknown.json().code).toBe('not_found');
    const c = await customer();
    expect((await t.call('POST', `/v1/customers/${c.id}/erase`)).statusCode).toBe(200);
    const erased = await t.call('POST', '/v1/portal-sessions', { customer: c.id });
    expect(erased.statusCode).toBe(409);
    expect(erased.json().code).toBe('invalid_state');
    const tc = (await t.call('POST', '/v1/test-clocks', { frozenTime: '2027-01-01T00:00:00Z' })).json();
    const simulated = await payingCustomer(t, `portal-clock-${++n}`, { testClock: tc.id });
    const session = await openPortal(t, simulated.id);
    expect((await pageCall(t, session, 'GET', '/overview')).statusCode).toBe(200);
  });

  it('needs an API key with subscriptions:write, customers:read and payments:write (what the link can do)', async () => {
    const c = await customer();
    const reader = await t.keyWith('subscriptions:read');
    const res = await t.call('POST', '/v1/portal-sessions', { customer: c.id }, { key: reader });
    expect(res.statusCode).toBe(403);
    expect(res.json().requiredScope).toBe('subscriptions:write');
    expect((await t.call('POST', '/v1/portal-sessions', { customer: c.id }, { key: null })).statusCode).toBe(
      401,
    );
    const writer = await t.keyWith('subscriptions:write');
    const short = await t.call('POST', '/v1/portal-sessions', { customer: c.id }, { key: writer });
    expect(short.statusCode).toBe(403);
    expect(short.json().requiredScope).toBe('customers:read');
    const full = await t.keyWith('subscriptions:write', 'customers:read', 'payments:write');
    expect((await t.call('POST', '/v1/portal-sessions', { customer: c.id }, { key: full })).statusCode).toBe(
      201,
    );
  });

  it('the page authenticates only with its own session secret: none, wrong, another session’s, an API key → 401', async () => {
    const c = await customer();
    const mine = await openPortal(t, c.id);
    const other = await openPortal(t, (await customer()).id);
    const sameCustomer = await openPortal(t, c.id);
    const refused = [
      null,
      'ps_secret_wrong',
      `ps_secret_${'A'.repeat(43)}`,
      other.secret,
      sameCustomer.secret,
      `${mine.secret}x`,
      mine.secret.slice(0, -1),
      'test-bootstrap-key-with-every-scope',
    ];
    for (const secret of refused) {
      const res = await pageCall(t, mine, 'GET', '/overview', undefined, { secret });
      expect(res.statusCode, String(secret)).toBe(401);
      expect(res.json().code).toBe('unauthenticated');
      expect(res.body).not.toContain(c.id);
    }
    // A session id that does not exist, and a secret on a path naming another session.
    const ghost = { id: 'ps_01JD0000000000000000000000', secret: mine.secret };
    expect((await pageCall(t, ghost, 'GET', '/overview')).statusCode).toBe(401);
    expect((await pageCall(t, { id: other.id, secret: mine.secret }, 'GET', '/overview')).statusCode).toBe(
      401,
    );
    // The secret is not an API key: the API's own routes refuse it.
    expect(
      (await t.call('GET', `/v1/subscriptions?customer=${c.id}`, undefined, { key: mine.secret })).statusCode,
    ).toBe(401);
    expect(
      (await t.call('POST', '/v1/portal-sessions', { customer: c.id }, { key: mine.secret })).statusCode,
    ).toBe(401);
    expect((await pageCall(t, mine, 'GET', '/overview')).statusCode).toBe(200);
  });

  it('expires an hour after creation (the platform clock)', async () => {
    const c = await customer();
    const session = await openPortal(t, c.id);
    clock.advanceMs(59 * 60_000);
    expect((await pageCall(t, session, 'GET', '/overview')).statusCode).toBe(200);
    clock.advanceMs(60_000);
    const expired = await pageCall(t, session, 'GET', '/overview');
    expect(expired.statusCode).toBe(401);
    expect(expired.json().detail).toMatch(/expired/);
    expect((await pageCall(t, session, 'POST', '/end')).statusCode).toBe(401);
  });

  it('ends on sign-out: 204, then every call is 401', async () => {
    const c = await customer();
    const session = await openPortal(t, c.id);
    const ended = await pageCall(t, session, 'POST', '/end');
    expect(ended.statusCode, ended.body).toBe(204);
    expect(ended.body).toBe('');
    expect((await rows(session.id))[0]!.ended_at).not.toBeNull();
    expect((await pageCall(t, session, 'GET', '/overview')).statusCode).toBe(401);
    expect((await pageCall(t, session, 'GET', '/invoices')).statusCode).toBe(401);
    expect((await pageCall(t, session, 'POST', '/end')).statusCode).toBe(401);
    // Audited as the session.
    const audit = await t.call('GET', `/v1/audit-log?apiKey=portal_session:${session.id}`);
    expect(audit.json().data).toEqual([
      expect.objectContaining({ action: 'portal.sessions.end', resource: session.id, status: 204 }),
    ]);
  });

  it(`a customer keeps at most ${LIVE_SESSIONS_MAX} live sessions: one more ends the oldest`, async () => {
    const c = await customer();
    const sessions = [];
    for (let i = 0; i <= LIVE_SESSIONS_MAX; i++) sessions.push(await openPortal(t, c.id));
    const live = await sql<{
      n: string;
    }>`SELECT count(*) AS n FROM portal_sessions WHERE customer_id = ${c.id} AND ended_at IS NULL`.execute(
      t.app.services.db,
    );
    expect(Number(live.rows[0]!.n)).toBe(LIVE_SESSIONS_MAX);
    expect((await pageCall(t, sessions[0]!, 'GET', '/overview')).statusCode).toBe(401);
    expect((await pageCall(t, sessions[1]!, 'GET', '/overview')).statusCode).toBe(200);
    expect((await pageCall(t, sessions.at(-1)!, 'GET', '/overview')).statusCode).toBe(200);
  });

  it('prunes sessions a day after they expired', async () => {
    const c = await customer();
    const old = await openPortal(t, c.id);
    clock.advanceMs(2 * 3_600_000);
    const recent = await openPortal(t, c.id);
    clock.advanceMs(23 * 3_600_000 + 60_000);
    // `old` expired 24 h 1 min ago, `recent` 22 h 1 min ago.
    const deleted = await t.app.services.portal.prune();
    expect(deleted).toBeGreaterThanOrEqual(1);
    expect(await rows(old.id)).toEqual([]);
    expect(await rows(recent.id)).toHaveLength(1);
  });

  it('a portal action is audited as its session, and its Idempotency-Key is the session’s own', async () => {
    const c = await customer();
    const sub = await subscribeOk(t, c.id, 'family-monthly');
    const session = await openPortal(t, c.id);
    const key = 'same-key-for-two-principals';
    const add = await pageCall(
      t,
      session,
      'POST',
      `/subscriptions/${sub.id}/members`,
      { externalId: 'kid-1' },
      {
        idempotencyKey: key,
      },
    );
    expect(add.statusCode, add.body).toBe(201);
    // The same key under the API key is another key: it runs (and is refused by billing: already a member).
    const api = await t.call(
      'POST',
      `/v1/subscriptions/${sub.id}/members`,
      { externalId: 'kid-1' },
      {
        headers: { 'idempotency-key': key },
      },
    );
    expect(api.statusCode).toBe(409);
    expect(api.headers['idempotent-replayed']).toBeUndefined();
    const audit = await t.call('GET', `/v1/audit-log?apiKey=portal_session:${session.id}`);
    expect(audit.json().data).toEqual([
      expect.objectContaining({
        apiKey: `portal_session:${session.id}`,
        action: 'portal.subscriptions.members.add',
        resource: sub.id,
        status: 201,
      }),
    ]);
  });
});
