import { describe, expect, it } from 'vitest';
import {
  type InvoiceDocumentInput,
  invoiceLayout,
  marketCodeOfSeries,
  PDF_CREDIT_NOTES_MAX,
} from '../../src/modules/billing/domain/invoice-document.js';

const NBSP = '\u00a0';
const day = (iso: string) => new Date(`${iso}T00:00:00Z`);

/** A paid SE invoice: 109,00 kr with 25 % VAT included (21,80 kr), one recurring line. */
function seInvoice(over: Partial<InvoiceDocumentInput['invoice']> = {}): InvoiceDocumentInput {
  return {
    invoice: {
      number: 'SE-2027-000042',
      status: 'paid',
      currency: 'SEK',
      taxRateBps: 2500,
      taxInclusive: true,
      subtotalMinor: 10900,
      taxMinor: 2180,
      totalMinor: 10900,
      creditAppliedMinor: 0,
      creditCreatedMinor: 0,
      amountDueMinor: 10900,
      periodStart: day('2027-03-01'),
      periodEnd: day('2027-04-01'),
      issuedAt: new Date('2027-03-01T09:30:00Z'),
      paidAt: new Date('2027-03-01T09:30:05Z'),
      lines: [
        {
          kind: 'recurring',
          description: 'Musik Premium (månadsvis)',
          periodStart: day('2027-03-01'),
          periodEnd: day('2027-04-01'),
          amountMinor: 10900,
        },
        {
          kind: 'tax',
          description: 'Tax 25 % (included)',
          periodStart: day('2027-03-01'),
          periodEnd: day('2027-04-01'),
          amountMinor: 2180,
        },
      ],
      creditNotes: [],
      ...over,
    },
    market: {
      code: 'SE',
      name: 'Sweden',
      locale: 'sv-SE',
      seller: {
        legalName: 'Lumen Sound AB',
        address: ['Tegnérgatan 12', '111 40 Stockholm'],
        taxId: 'SE559900123401',
      },
    },
    customer: {
      id: 'cus_01',
      externalId: 'user-1',
      name: 'Åsa Öberg-Müller',
      email: 'asa@example.se',
      erased: false,
    },
  };
}

describe('invoice layout (the text of an invoice PDF)', () => {
  it('formats a Swedish invoice with sv-SE: amounts with no-break spaces, the rate, dates and period', () => {
    const layout = invoiceLayout(seInvoice());
    expect(layout.locale).toBe('sv-SE');
    expect(layout.testBanner).toBeNull();
    expect(layout.seller).toEqual({
      name: 'Lumen Sound AB',
      lines: ['Tegnérgatan 12', '111 40 Stockholm', 'Tax id: SE559900123401'],
      missing: false,
    });
    expect(layout.billTo).toEqual(['Åsa Öberg-Müller', 'asa@example.se', 'Customer: user-1']);
    expect(layout.facts).toEqual([
      { label: 'Invoice number', value: 'SE-2027-000042' },
      { label: 'Issue date', value: '1 mars 2027' },
      { label: 'Service period', value: '1 mars–1 apr. 2027' },
      { label: 'Status', value: 'Paid 1 mars 2027' },
    ]);
    // The tax line is a total, not a line of the table.
    expect(layout.lines).toEqual([
      { description: 'Musik Premium (månadsvis)', period: '1 mars–1 apr. 2027', amount: `109,00${NBSP}kr` },
    ]);
    expect(layout.totals).toEqual([
      { label: 'Subtotal', value: `109,00${NBSP}kr`, strong: false },
      { label: `Tax 25${NBSP}% (included)`, value: `21,80${NBSP}kr`, strong: false },
      { label: 'Total', value: `109,00${NBSP}kr`, strong: true },
      { label: 'Amount paid', value: `109,00${NBSP}kr`, strong: false },
      { label: 'Amount due', value: `0,00${NBSP}kr`, strong: false },
    ]);
    expect(layout.notes).toEqual([`Prices include 25${NBSP}% tax.`, 'Amounts in SEK. Dates in UTC.']);
  });

  it('formats a US test-clock invoice with en-US, tax added on top, open and due, with a banner', () => {
    const input = seInvoice({
      number: 'TEST-US-2027-000001',
      status: 'open',
      currency: 'USD',
      taxRateBps: 0,
      taxInclusive: false,
      subtotalMinor: 1199,
      taxMinor: 0,
      totalMinor: 1199,
      amountDueMinor: 1199,
      paidAt: null,
      periodStart: day('2027-01-15'),
      periodEnd: day('2027-02-15'),
      issuedAt: day('2027-01-15'),
      lines: [
        {
          kind: 'recurring',
          description: 'Music (monthly)',
          periodStart: day('2027-01-15'),
          periodEnd: day('2027-02-15'),
          amountMinor: 1199,
        },
      ],
    });
    const layout = invoiceLayout({ ...input, market: { ...input.market, code: 'US', locale: 'en-US' } });
    expect(layout.testBanner).toMatch(/^Test mode/);
    expect(layout.facts.map((f) => f.value)).toEqual([
      'TEST-US-2027-000001',
      'Jan 15, 2027',
      'Jan 15\u2009–\u2009Feb 15, 2027',
      'Open: payment due on receipt',
    ]);
    expect(layout.lines.map((l) => l.amount)).toEqual(['$11.99']);
    expect(layout.totals.map((t) => [t.label, t.value])).toEqual([
      ['Subtotal', '$11.99'],
      ['Tax 0%', '$0.00'],
      ['Total', '$11.99'],
      ['Amount paid', '$0.00'],
      ['Amount due', '$11.99'],
    ]);
    expect(layout.notes[0]).toBe('Tax of 0% is added to prices.');
  });

  it('shows an erased customer as erased, without personal data', () => {
    const input = seInvoice();
    const layout = invoiceLayout({
      ...input,
      customer: { ...input.customer, name: null, email: null, erased: true },
    });
    expect(layout.billTo).toEqual(['Erased customer', 'Customer id:', 'cus_01']);
  });

  it('says when the market has no seller details', () => {
    const input = seInvoice();
    const layout = invoiceLayout({ ...input, market: { ...input.market, seller: null } });
    expect(layout.seller).toEqual({
      name: 'Sweden',
      lines: ['No seller details are set for market SE.'],
      missing: true,
    });
  });

  it('formats exactly in the minor unit digits, however large, and signs credits with the minus sign', () => {
    const input = seInvoice({
      currency: 'EUR',
      subtotalMinor: 9_007_199_254_740_991,
      taxMinor: 0,
      totalMinor: 9_007_199_254_740_991,
      amountDueMinor: 9_007_199_254_740_991,
      creditAppliedMinor: 1234,
      taxRateBps: 1950,
    });
    const layout = invoiceLayout({ ...input, market: { ...input.market, locale: 'de-DE' } });
    expect(layout.totals[0]).toEqual({
      label: 'Subtotal',
      value: `90.071.992.547.409,91${NBSP}€`,
      strong: false,
    });
    expect(layout.totals[1]?.label).toBe(`Tax 19,5${NBSP}% (included)`);
    expect(layout.totals[3]).toEqual({
      label: 'Account credit applied',
      value: `-12,34${NBSP}€`,
      strong: false,
    });
    // sv-SE writes negatives with U+2212 MINUS SIGN.
    const sv = invoiceLayout(seInvoice({ creditAppliedMinor: 500 }));
    expect(sv.totals[3]?.value).toBe(`\u22125,00${NBSP}kr`);
  });

  it('formats a value again in English of the region when the font cannot draw it (ja-JP yen)', () => {
    const input = seInvoice({ currency: 'JPY', subtotalMinor: 980, totalMinor: 980, amountDueMinor: 980 });
    const ja = { ...input, market: { ...input.market, locale: 'ja-JP' } };
    expect(invoiceLayout(ja).totals[0]?.value).toBe('\uffe5980');
    const latin = (text: string) => [...text].every((c) => c.codePointAt(0)! < 0x3000);
    const layout = invoiceLayout(ja, { covers: latin });
    expect(layout.totals[0]?.value).toBe('¥980');
    expect(layout.facts[1]?.value).toBe('2027/03/01'); // drawable as it is: kept in ja-JP
  });

  it('a negative total (a pause) shows the account credit it created and nothing due', () => {
    const layout = invoiceLayout(
      seInvoice({
        subtotalMinor: -5450,
        taxMinor: -1090,
        totalMinor: -5450,
        creditCreatedMinor: 5450,
        amountDueMinor: 0,
        lines: [
          {
            kind: 'proration_credit',
            description: 'Unused time after pause',
            periodStart: day('2027-03-16'),
            periodEnd: day('2027-04-01'),
            amountMinor: -5450,
          },
        ],
      }),
    );
    expect(layout.lines).toEqual([
      {
        description: 'Unused time after pause',
        period: '16 mars–1 apr. 2027',
        amount: `\u221254,50${NBSP}kr`,
      },
    ]);
    expect(layout.totals.map((t) => [t.label, t.value])).toEqual([
      ['Subtotal', `\u221254,50${NBSP}kr`],
      [`Tax 25${NBSP}% (included)`, `\u221210,90${NBSP}kr`],
      ['Total', `\u221254,50${NBSP}kr`],
      ['Credited to your account', `54,50${NBSP}kr`],
      ['Amount paid', `0,00${NBSP}kr`],
      ['Amount due', `0,00${NBSP}kr`],
    ]);
  });

  it('lists credit notes, at most PDF_CREDIT_NOTES_MAX, the rest summed in one line', () => {
    const notes = Array.from({ length: PDF_CREDIT_NOTES_MAX + 3 }, (_, i) => ({
      id: `cn_${i}`,
      amountMinor: 100,
      taxMinor: 20,
      reason: 'requested_by_customer',
      createdAt: new Date(Date.UTC(2027, 2, 2, 0, i)),
    }));
    const layout = invoiceLayout(seInvoice({ creditNotes: notes }));
    expect(layout.creditNotes).toHaveLength(PDF_CREDIT_NOTES_MAX + 1);
    expect(layout.creditNotes[0]).toEqual({
      date: '2 mars 2027',
      text: `Credit note cn_0: requested by customer, tax \u22120,20${NBSP}kr`,
      amount: `\u22121,00${NBSP}kr`,
    });
    expect(layout.creditNotes.at(-1)).toMatchObject({
      text: '3 more credit notes',
      amount: `\u22123,00${NBSP}kr`,
    });
    expect(layout.totals.at(-1)).toEqual({
      label: 'Refunded (credit notes)',
      value: `\u221253,00${NBSP}kr`,
      strong: false,
    });
  });

  it('finds the market of an invoice series', () => {
    expect(marketCodeOfSeries('SE-2027')).toBe('SE');
    expect(marketCodeOfSeries('TEST-US-2030')).toBe('US');
    expect(() => marketCodeOfSeries('nonsense')).toThrow();
  });
});
