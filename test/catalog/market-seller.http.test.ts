import { sql } from 'kysely';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { transact } from '../../src/db/transaction.js';
import { canonicalLocale, defaultLocale } from '../../src/modules/catalog/domain/market-profile.js';
import { seedDemoCatalog } from '../../src/seed/demo-catalog.js';
import { startTestApp, type TestApp } from '../support/app.js';
import { ENGINE } from '../support/database.js';

const SELLER = {
  legalName: 'Lumen Sound AB',
  address: ['Tegnérgatan 12', '111 40 Stockholm', 'Sverige'],
  taxId: 'SE559900123401',
};

describe('market locales (pure rules)', () => {
  it('defaults to the language of the country, else English of the region', () => {
    expect(defaultLocale('SE')).toBe('sv-SE');
    expect(defaultLocale('US')).toBe('en-US');
    expect(defaultLocale('DE')).toBe('de-DE');
    expect(defaultLocale('JP')).toBe('ja-JP');
    expect(defaultLocale('KE')).toBe('en-KE');
  });

  it('accepts well-formed tags this server formats, in canonical form, and refuses the rest', () => {
    expect(canonicalLocale('SV-se')).toEqual({ ok: true, value: 'sv-SE' });
    expect(canonicalLocale('de-CH-u-nu-latn')).toEqual({ ok: true, value: 'de-CH-u-nu-latn' });
    expect(canonicalLocale('not a locale')).toMatchObject({ ok: false });
    expect(canonicalLocale('en_US')).toMatchObject({ ok: false });
    // Well-formed, but no language ICU knows: nothing to format with.
    expect(canonicalLocale('qaa-SE')).toMatchObject({
      ok: false,
      message: expect.stringContaining('format'),
    });
  });
});

describe(`markets: seller details and locale (${ENGINE})`, () => {
  let t: TestApp;
  beforeAll(async () => {
    t = await startTestApp();
  });
  afterAll(() => t.close());

  const create = (body: Record<string, unknown>, headers: Record<string, string> = {}) =>
    t.call(
      'POST',
      '/v1/markets',
      { currency: 'SEK', taxRateBps: 2500, taxInclusive: true, ...body },
      { headers },
    );
  const paths = (res: { json(): { errors: Array<{ path: string }> } }) =>
    res
      .json()
      .errors.map((e) => e.path)
      .sort();

  it('POST takes a seller and a locale; GET shows them; the locale defaults by country', async () => {
    const se = await create({ code: 'SE', name: 'Sweden', seller: SELLER });
    expect(se.statusCode, se.body).toBe(201);
    expect(se.json()).toMatchObject({ code: 'SE', locale: 'sv-SE', seller: SELLER });
    expect((await t.call('GET', '/v1/markets/SE')).json()).toEqual(se.json());
    expect((await t.call('GET', `/v1/markets/${se.json().id}`)).json()).toEqual(se.json());

    const us = await create({ code: 'US', currency: 'USD', taxRateBps: 0, taxInclusive: false });
    expect(us.json()).toMatchObject({ locale: 'en-US', seller: null });
    const fi = await create({
      code: 'FI',
      currency: 'EUR',
      locale: 'SV-fi',
      seller: { legalName: 'Lumen Sound Oy', address: ['Esimerkkikatu 1', '00100 Helsinki'] },
    });
    expect(fi.json()).toMatchObject({
      locale: 'sv-FI',
      seller: { legalName: 'Lumen Sound Oy', address: ['Esimerkkikatu 1', '00100 Helsinki'], taxId: null },
    });
    const listed = (await t.call('GET', '/v1/markets')).json().data;
    expect(listed.map((m: { code: string; locale: string }) => [m.code, m.locale])).toEqual([
      ['SE', 'sv-SE'],
      ['US', 'en-US'],
      ['FI', 'sv-FI'],
    ]);
  });

  it('refuses bad seller details and locales with 400 naming each field, creating nothing', async () => {
    const bad = await create({
      code: 'NO',
      locale: 'no such locale',
      seller: {
        legalName: '',
        address: ['Storgata 1', 'line\nbreak', ' padded'],
        taxId: 'x'.repeat(65),
      },
    });
    expect(bad.statusCode).toBe(400);
    expect(bad.json().code).toBe('validation_failed');
    expect(paths(bad)).toEqual([
      'locale',
      'seller.address[1]',
      'seller.address[2]',
      'seller.legalName',
      'seller.taxId',
    ]);
    const tooMany = await create({ code: 'NO', seller: { legalName: 'X AS', address: Array(7).fill('a') } });
    expect(paths(tooMany)).toEqual(['seller.address']);
    const noAddress = await create({ code: 'NO', seller: { legalName: 'X AS', address: [] } });
    expect(paths(noAddress)).toEqual(['seller.address']);
    const unknownField = await create({ code: 'NO', seller: { ...SELLER, iban: 'SE00' } });
    expect(unknownField.statusCode).toBe(400);
    expect(paths(unknownField)).toEqual(['seller.iban']);
    // Well-formed, but not a locale this server formats: refused by the service, by field.
    const unformattable = await create({ code: 'NO', locale: 'qaa-NO' });
    expect(unformattable.statusCode).toBe(400);
    expect(unformattable.json().errors).toEqual([
      {
        path: 'locale',
        in: 'body',
        message: "'qaa-NO' is not a locale this server can format amounts and dates in",
      },
    ]);
    expect((await t.call('GET', '/v1/markets/NO')).statusCode).toBe(404);
  });

  it('PATCH changes the locale and the seller, or removes the seller; audited, catalog:write', async () => {
    const patched = await t.call('PATCH', '/v1/markets/US', {
      locale: 'es-US',
      seller: { legalName: 'Lumen Sound, Inc.', address: ['500 Example Avenue', 'Wilmington, DE 19801'] },
    });
    expect(patched.statusCode, patched.body).toBe(200);
    expect(patched.json()).toMatchObject({
      code: 'US',
      currency: 'USD',
      locale: 'es-US',
      seller: { legalName: 'Lumen Sound, Inc.', taxId: null },
    });
    // Reads outside a transaction come from the catalog snapshot: the write dropped it.
    expect((await t.call('GET', '/v1/markets/US')).json()).toEqual(patched.json());

    const localeOnly = await t.call('PATCH', '/v1/markets/US', { locale: 'en-US' });
    expect(localeOnly.json()).toMatchObject({ locale: 'en-US', seller: { legalName: 'Lumen Sound, Inc.' } });
    const removed = await t.call('PATCH', `/v1/markets/${patched.json().id}`, { seller: null });
    expect(removed.json()).toMatchObject({ locale: 'en-US', seller: null });
    const nothing = await t.call('PATCH', '/v1/markets/US', {});
    expect(nothing.json()).toEqual(removed.json());

    const entries = (await t.call('GET', `/v1/audit-log?resource=${patched.json().id}`)).json().data;
    expect(entries.filter((e: { action: string }) => e.action === 'markets.update')).toHaveLength(4);

    const reader = await t.keyWith('catalog:read');
    const forbidden = await t.call('PATCH', '/v1/markets/US', { locale: 'en-GB' }, { key: reader });
    expect(forbidden.statusCode).toBe(403);
    expect(forbidden.json().requiredScope).toBe('catalog:write');
    expect((await t.call('PATCH', '/v1/markets/ZZ', { locale: 'en-GB' })).statusCode).toBe(404);
    expect((await t.call('GET', '/v1/markets/US')).json().locale).toBe('en-US');
  });

  it('PATCH refuses bad input by field and changes nothing', async () => {
    const before = (await t.call('GET', '/v1/markets/SE')).json();
    const bad = await t.call('PATCH', '/v1/markets/SE', {
      locale: 'sv-SE',
      seller: { legalName: 'Lumen Sound AB', address: ['ok', '\u0007bell'] },
    });
    expect(bad.statusCode).toBe(400);
    expect(paths(bad)).toEqual(['seller.address[1]']);
    const badLocale = await t.call('PATCH', '/v1/markets/SE', { locale: 'xx-XX-!!', seller: null });
    expect(paths(badLocale)).toEqual(['locale']);
    const notChangeable = await t.call('PATCH', '/v1/markets/SE', { currency: 'EUR' });
    expect(paths(notChangeable)).toEqual(['currency']);
    expect((await t.call('GET', '/v1/markets/SE')).json()).toEqual(before);
  });

  it('PATCH takes an Idempotency-Key: the same request replays, another one is 422', async () => {
    const headers = { 'idempotency-key': 'patch-se-1' };
    const body = { locale: 'en-SE' };
    const first = await t.call('PATCH', '/v1/markets/SE', body, { headers });
    expect(first.statusCode).toBe(200);
    await t.call('PATCH', '/v1/markets/SE', { locale: 'sv-SE' });
    const replay = await t.call('PATCH', '/v1/markets/SE', body, { headers });
    expect(replay.statusCode).toBe(200);
    expect(replay.headers['idempotent-replayed']).toBe('true');
    expect(replay.json()).toEqual(first.json());
    expect((await t.call('GET', '/v1/markets/SE')).json().locale).toBe('sv-SE'); // not run again
    const other = await t.call('PATCH', '/v1/markets/SE', { locale: 'de-SE' }, { headers });
    expect(other.statusCode).toBe(422);
    expect(other.json().code).toBe('idempotency_key_reused');
  });

  it('a market stored before locales existed reads with its default locale and no seller', async () => {
    const dk = await create({ code: 'DK', currency: 'DKK', locale: 'en-DK' });
    expect(dk.statusCode).toBe(201);
    await transact(t.app.services.db, (trx) =>
      sql`UPDATE markets SET locale = NULL WHERE code = 'DK'`.execute(trx),
    );
    const market = await transact(t.app.services.db, (trx) => t.app.services.catalog.getMarket('DK', trx));
    expect(market).toMatchObject({ locale: 'da-DK', seller: null });
  });

  it('names Market and MarketSeller in the OpenAPI document, and PATCH documents Idempotency-Key', async () => {
    const doc = (await t.call('GET', '/openapi.json', undefined, { key: null })).json();
    expect(doc.components.schemas.Market.properties).toMatchObject({
      locale: { type: 'string' },
      seller: { anyOf: [{ $ref: '#/components/schemas/MarketSeller' }, { type: 'null' }] },
    });
    expect(doc.components.schemas.MarketSeller.required).toEqual(['legalName', 'address', 'taxId']);
    expect(doc.components.securitySchemes.apiKey).toMatchObject({ type: 'http', scheme: 'bearer' });
    const patch = doc.paths['/v1/markets/{id}'].patch;
    expect(patch.responses['200'].content['application/json'].schema).toEqual({
      $ref: '#/components/schemas/Market',
    });
    expect(
      patch.parameters.filter((p: { in: string }) => p.in === 'header').map((p: { name: string }) => p.name),
    ).toEqual(['idempotency-key']);
  });
});

describe(`demo catalog sellers (${ENGINE})`, () => {
  let t: TestApp;
  beforeAll(async () => {
    t = await startTestApp();
  });
  afterAll(() => t.close());

  it('seeds every demo market with a fictional seller and its locale; fills a market seeded before', async () => {
    // A market created before sellers existed (the seed skips it, and gives it the demo seller).
    expect(
      (
        await t.call('POST', '/v1/markets', {
          code: 'DE',
          currency: 'EUR',
          taxRateBps: 1900,
          taxInclusive: true,
        })
      ).statusCode,
    ).toBe(201);
    await seedDemoCatalog(t.app.services);
    const markets = (await t.call('GET', '/v1/markets')).json().data as Array<{
      code: string;
      locale: string;
      seller: { legalName: string; address: string[]; taxId: string } | null;
    }>;
    expect(markets).toHaveLength(8);
    for (const m of markets) {
      expect(m.seller?.legalName, m.code).toMatch(/^Lumen Sound/);
      expect(m.seller?.address.length, m.code).toBeGreaterThanOrEqual(2);
      expect(m.seller?.taxId, m.code).toBeTruthy();
    }
    const byCode = new Map(markets.map((m) => [m.code, m]));
    expect(byCode.get('SE')).toMatchObject({ locale: 'sv-SE', seller: { legalName: 'Lumen Sound AB' } });
    expect(byCode.get('DE')).toMatchObject({ locale: 'de-DE', seller: { legalName: 'Lumen Sound GmbH' } });
    expect(byCode.get('US')?.locale).toBe('en-US');
  });
});
