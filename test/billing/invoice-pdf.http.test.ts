import { sql } from 'kysely';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { transact } from '../../src/db/transaction.js';
import { ManualClock } from '../../src/kernel/clock.js';
import { startTestApp, type TestApp } from '../support/app.js';
import { payingCustomer } from '../support/billing.js';
import { ENGINE } from '../support/database.js';
import { pdfText, plainSpaces } from '../support/pdf.js';

/** GET /v1/invoices/{id}/pdf: an SE invoice (25 % VAT included, SEK) and a US one (test clock). */
describe(`invoice PDFs (${ENGINE})`, () => {
  let t: TestApp;
  const clock = new ManualClock('2027-03-01T09:30:00Z');
  const SE_SELLER = {
    legalName: 'Lumen Sound AB',
    address: ['Tegnérgatan 12', '111 40 Stockholm', 'Sverige'],
    taxId: 'SE559900123401',
  };
  const US_SELLER = {
    legalName: 'Lumen Sound, Inc.',
    address: ['500 Example Avenue, Suite 120', 'Wilmington, DE 19801'],
    taxId: '99-0012345',
  };

  beforeAll(async () => {
    t = await startTestApp({}, clock);
    const ok = async (url: string, body: unknown) => {
      const res = await t.call('POST', url, body);
      if (res.statusCode !== 201) throw new Error(`${url}: ${res.body}`);
      return res.json();
    };
    await ok('/v1/markets', {
      code: 'SE',
      name: 'Sweden',
      currency: 'SEK',
      taxRateBps: 2500,
      taxInclusive: true,
      seller: SE_SELLER,
    });
    await ok('/v1/markets', {
      code: 'US',
      currency: 'USD',
      taxRateBps: 0,
      taxInclusive: false,
      locale: 'en-US',
      seller: US_SELLER,
    });
    await ok('/v1/products', { code: 'music', name: 'Music', features: ['ad-free'], seats: 1 });
    await ok('/v1/plans', {
      code: 'music-monthly',
      name: 'Musik Premium – månadsvis',
      product: 'music',
      billingPeriod: 'month',
      trialDays: 0,
      prices: [
        { currency: 'SEK', amount: 10900 },
        { currency: 'USD', amount: 1199 },
      ],
    });
  });
  afterAll(() => t.close());

  /** A customer subscribed to music-monthly; its first invoice (paid). */
  const firstInvoice = async (customer: { id: string }) => {
    const sub = await t.call('POST', '/v1/subscriptions', { customer: customer.id, plan: 'music-monthly' });
    expect(sub.statusCode, sub.body).toBe(201);
    const invoices = (await t.call('GET', `/v1/invoices?subscription=${sub.json().id}`)).json().data;
    expect(invoices).toHaveLength(1);
    return invoices[0] as { id: string; number: string; payment: string; status: string };
  };
  const pdfOf = async (id: string, key?: string) => {
    const res = await t.call('GET', `/v1/invoices/${id}/pdf`, undefined, key ? { key } : {});
    return res;
  };
  const seCustomer = async (externalId: string) => {
    const c = await payingCustomer(t, externalId, { market: 'SE' });
    const named = await t.call('GET', `/v1/customers/${c.id}`);
    expect(named.statusCode).toBe(200);
    return c;
  };

  it('an SE invoice: seller, customer, number, lines, 25 % VAT included and totals in sv-SE', async () => {
    const res0 = await t.call('POST', '/v1/customers', {
      externalId: 'pdf-se-1',
      market: 'SE',
      name: 'Åsa Öberg-Müller',
      email: 'asa.oberg@example.se',
    });
    expect(res0.statusCode).toBe(201);
    const customer = res0.json();
    expect(
      (
        await t.call('POST', `/v1/customers/${customer.id}/payment-methods`, {
          provider: 'simulator',
          token: 'tok_visa',
        })
      ).statusCode,
    ).toBe(201);
    const invoice = await firstInvoice(customer);
    expect(invoice.number).toBe('SE-2027-000001');
    expect(invoice.status).toBe('paid');

    const res = await pdfOf(invoice.id);
    expect(res.statusCode, res.body).toBe(200);
    expect(res.headers['content-type']).toBe('application/pdf');
    expect(res.headers['content-disposition']).toBe('attachment; filename="SE-2027-000001.pdf"');
    expect(res.headers['cache-control']).toBe('private, no-store');
    const bytes = res.rawPayload;
    expect(bytes.subarray(0, 5).toString('latin1')).toBe('%PDF-');

    // The font is embedded as a TrueType subset (FontFile2, a six-letter subset tag), and no
    // standard font is referenced: every glyph comes from the file.
    const raw = bytes.toString('latin1');
    expect(raw).toContain('/FontFile2');
    expect(raw).toMatch(/\/BaseFont \/[A-Z]{6}\+DejaVuSans\b/);
    expect(raw).toMatch(/\/BaseFont \/[A-Z]{6}\+DejaVuSans-Bold\b/);
    expect(raw).not.toMatch(/\/BaseFont \/(Helvetica|Times|Courier)/);
    expect(bytes.length).toBeLessThan(100_000); // subsets, not the 1.5 MB of the two faces

    const { pages, runs } = await pdfText(bytes);
    expect(pages).toBe(1);
    const text = runs.map(plainSpaces);
    // Intl on this Node (sv-SE): "109,00 kr" with U+00A0, the rate "25 %" with U+00A0, a range
    // with an en dash; the reader gives the no-break spaces back as spaces.
    const sek = (s: string) => plainSpaces(s);
    expect(text).toEqual(
      expect.arrayContaining([
        'Invoice',
        'SE-2027-000001',
        'Lumen Sound AB',
        'Tegnérgatan 12',
        '111 40 Stockholm',
        'Sverige',
        'Tax id: SE559900123401',
        'Åsa Öberg-Müller',
        'asa.oberg@example.se',
        'Customer: pdf-se-1',
        'Invoice number',
        'Issue date',
        '1 mars 2027',
        'Service period',
        '1 mars–1 apr. 2027',
        'Paid 1 mars 2027',
        sek('109,00\u00a0kr'),
        'Subtotal',
        sek('Tax 25\u00a0% (included)'),
        sek('21,80\u00a0kr'),
        'Total',
        'Amount paid',
        'Amount due',
        sek('0,00\u00a0kr'),
        sek('Prices include 25\u00a0% tax.'),
        'Amounts in SEK. Dates in UTC.',
      ]),
    );
    // The line's description (wrapped as the column needs), its period and amount.
    expect(text.join(' ')).toContain(
      'Musik Premium – månadsvis 2027-03-01 – 2027-04-01 1 mars–1 apr. 2027 109,00 kr',
    );
    expect(text.filter((s) => s === sek('109,00\u00a0kr'))).toHaveLength(4); // line, subtotal, total, paid
    expect(text.join('\n')).not.toContain('Test mode');
  });

  it('a US invoice on a test clock: en-US amounts and dates, tax 0 % on top, the Test mode banner', async () => {
    const tc = (await t.call('POST', '/v1/test-clocks', { frozenTime: '2027-01-15T00:00:00Z' })).json();
    const customer = await payingCustomer(t, 'pdf-us-1', { market: 'US', testClock: tc.id });
    const invoice = await firstInvoice(customer);
    expect(invoice.number).toBe('TEST-US-2027-000001');

    const res = await pdfOf(invoice.id);
    expect(res.statusCode).toBe(200);
    expect(res.headers['content-disposition']).toBe('attachment; filename="TEST-US-2027-000001.pdf"');
    const text = (await pdfText(res.rawPayload)).runs.map(plainSpaces);
    expect(text).toEqual(
      expect.arrayContaining([
        'Test mode: a simulated invoice of a test clock, not a legal document',
        'Lumen Sound, Inc.',
        '500 Example Avenue, Suite 120',
        'Wilmington, DE 19801',
        'Tax id: 99-0012345',
        'Customer: pdf-us-1',
        'TEST-US-2027-000001',
        'Jan 15, 2027',
        plainSpaces('Jan 15\u2009–\u2009Feb 15, 2027'),
        'Paid Jan 15, 2027',
        '$11.99',
        'Tax 0%',
        '$0.00',
        'Tax of 0% is added to prices.',
        'Amounts in USD. Dates in UTC.',
      ]),
    );
  });

  it('shows credit notes once the payment is refunded, and the seller as the market has it now', async () => {
    const customer = await seCustomer('pdf-se-refund');
    const invoice = await firstInvoice(customer);
    const refund = await t.call('POST', '/v1/refunds', { payment: invoice.payment, amount: 2500 });
    expect(refund.statusCode, refund.body).toBe(201);
    const patched = await t.call('PATCH', '/v1/markets/SE', {
      seller: { ...SE_SELLER, legalName: 'Lumen Sound Sverige AB' },
    });
    expect(patched.statusCode).toBe(200);

    const text = (await pdfText((await pdfOf(invoice.id)).rawPayload)).runs.map(plainSpaces);
    expect(text).toEqual(
      expect.arrayContaining([
        'Lumen Sound Sverige AB',
        'CREDIT NOTES',
        'Refunded (credit notes)',
        plainSpaces('\u221225,00\u00a0kr'),
      ]),
    );
    expect(text.join(' ')).toMatch(/Credit note \w+: requested by customer, tax −5,00 kr −25,00 kr/);
    expect(text).not.toContain('Lumen Sound AB');
    await t.call('PATCH', '/v1/markets/SE', { seller: SE_SELLER });
  });

  it('an erased customer shows as erased: no name, no email', async () => {
    const created = await t.call('POST', '/v1/customers', {
      externalId: 'pdf-se-erased',
      market: 'SE',
      name: 'Björn Ängström',
      email: 'bjorn@example.se',
    });
    const customer = created.json();
    await t.call('POST', `/v1/customers/${customer.id}/payment-methods`, {
      provider: 'simulator',
      token: 'tok_visa',
    });
    const invoice = await firstInvoice(customer);
    const before = (await pdfText((await pdfOf(invoice.id)).rawPayload)).runs;
    expect(before).toContain('Björn Ängström');
    expect((await t.call('POST', `/v1/customers/${customer.id}/erase`)).statusCode).toBe(200);

    const after = (await pdfText((await pdfOf(invoice.id)).rawPayload)).runs;
    expect(after).toEqual(expect.arrayContaining(['Erased customer', 'Customer id:', customer.id]));
    expect(after.join('\n')).not.toMatch(/Björn|bjorn@example/);
  });

  it('a market without a seller says so on the PDF', async () => {
    const customer = await seCustomer('pdf-se-noseller');
    const invoice = await firstInvoice(customer);
    expect((await t.call('PATCH', '/v1/markets/SE', { seller: null })).json().seller).toBeNull();
    const text = (await pdfText((await pdfOf(invoice.id)).rawPayload)).runs;
    expect(text).toEqual(expect.arrayContaining(['Sweden', 'No seller details are set for market SE.']));
    await t.call('PATCH', '/v1/markets/SE', { seller: SE_SELLER });
  });

  it('401 without a key, 403 without subscriptions:read, 404 unknown, 409 for a draft', async () => {
    const customer = await seCustomer('pdf-se-auth');
    const invoice = await firstInvoice(customer);

    const anonymous = await t.call('GET', `/v1/invoices/${invoice.id}/pdf`, undefined, { key: null });
    expect(anonymous.statusCode).toBe(401);
    expect(anonymous.json().code).toBe('unauthenticated');
    const catalogOnly = await t.keyWith('catalog:read', 'customers:read');
    const forbidden = await pdfOf(invoice.id, catalogOnly);
    expect(forbidden.statusCode).toBe(403);
    expect(forbidden.json()).toMatchObject({ code: 'forbidden', requiredScope: 'subscriptions:read' });
    const reader = await t.keyWith('subscriptions:read');
    expect((await pdfOf(invoice.id, reader)).statusCode).toBe(200);

    const unknown = await pdfOf('in_01JZZZZZZZZZZZZZZZZZZZZZZZ');
    expect(unknown.statusCode).toBe(404);
    expect(unknown.json().code).toBe('not_found');

    // Drafts are never left behind by the API; one made by hand is refused with a clear code.
    const draftId = `${invoice.id.slice(0, -4)}DRFT`;
    await transact(t.app.services.db, (trx) =>
      sql`INSERT INTO invoices (id, series, number, customer_id, subscription_id, reason, status, currency,
            tax_rate_bps, tax_inclusive, subtotal_minor, tax_minor, total_minor, net_minor,
            credit_applied_minor, credit_created_minor, amount_due_minor, period_start, period_end,
            payment_id, attempts, scheduled_attempts, version, finalized_at, paid_at, created_at, updated_at)
          SELECT ${draftId}, NULL, NULL, customer_id, subscription_id, 'subscription_update', 'draft', currency,
            tax_rate_bps, tax_inclusive, subtotal_minor, tax_minor, total_minor, net_minor,
            credit_applied_minor, credit_created_minor, amount_due_minor, period_start, period_end,
            NULL, 0, 0, 1, NULL, NULL, created_at, updated_at
          FROM invoices WHERE id = ${invoice.id}`.execute(trx),
    );
    const draft = await pdfOf(draftId);
    expect(draft.statusCode).toBe(409);
    expect(draft.headers['content-type']).toContain('application/problem+json');
    expect(draft.json()).toMatchObject({ code: 'invoice_not_finalized', invoice: draftId });
  });

  it('is documented in the OpenAPI document as application/pdf', async () => {
    const doc = (await t.call('GET', '/openapi.json', undefined, { key: null })).json();
    const op = doc.paths['/v1/invoices/{id}/pdf'].get;
    expect(Object.keys(op.responses['200'].content)).toEqual(['application/pdf']);
    expect(op.responses['200'].content['application/pdf'].schema).toMatchObject({
      type: 'string',
      format: 'binary',
    });
  });
});
