import { assert } from '../../../kernel/assert.js';
import { minorUnitExponent } from '../../../kernel/currency.js';
import { formatMajor } from '../../../kernel/money.js';
import type { LineKind } from './invoice.js';

/**
 * What an invoice's PDF says, as text, built from the invoice, its market and its customer: every
 * amount formatted with `Intl.NumberFormat(locale, { style: 'currency' })` in exactly the
 * currency's minor-unit digits (the decimal string, never a float), every date with
 * `Intl.DateTimeFormat(locale)` in UTC. Pure: the PDF writer (billing/pdf.ts) only places this text.
 */

/** Credit notes listed on a PDF at most; more are summed in one line (refunds of one payment). */
export const PDF_CREDIT_NOTES_MAX = 50;

export interface InvoiceDocumentInput {
  readonly invoice: {
    readonly number: string;
    readonly status: 'open' | 'paid' | 'void' | 'uncollectible';
    readonly currency: string;
    readonly taxRateBps: number;
    readonly taxInclusive: boolean;
    readonly subtotalMinor: number;
    readonly taxMinor: number;
    readonly totalMinor: number;
    readonly creditAppliedMinor: number;
    /** Account credit a negative total created (a pause's unused time), tax included. */
    readonly creditCreatedMinor: number;
    readonly amountDueMinor: number;
    readonly periodStart: Date;
    readonly periodEnd: Date;
    /** When it was finalised (its number taken). */
    readonly issuedAt: Date;
    readonly paidAt: Date | null;
    readonly lines: ReadonlyArray<{
      readonly kind: LineKind;
      readonly description: string;
      readonly periodStart: Date;
      readonly periodEnd: Date;
      readonly amountMinor: number;
    }>;
    readonly creditNotes: ReadonlyArray<{
      readonly id: string;
      readonly amountMinor: number;
      readonly taxMinor: number;
      readonly reason: string;
      readonly createdAt: Date;
    }>;
  };
  readonly market: {
    readonly code: string;
    readonly name: string | null;
    readonly locale: string;
    readonly seller: {
      readonly legalName: string;
      readonly address: readonly string[];
      readonly taxId: string | null;
    } | null;
  };
  readonly customer: {
    readonly id: string;
    readonly externalId: string;
    readonly name: string | null;
    readonly email: string | null;
    readonly erased: boolean;
  };
}

export interface InvoiceLayout {
  /** The BCP 47 locale the values were formatted in (the PDF's language). */
  readonly locale: string;
  readonly title: string;
  readonly number: string;
  /** A banner over the page: invoices of test-clock customers (series `TEST-…`) are simulations. */
  readonly testBanner: string | null;
  readonly seller: { readonly name: string; readonly lines: readonly string[]; readonly missing: boolean };
  readonly billTo: readonly string[];
  /** Label and value pairs beside the customer: number, dates, period, status. */
  readonly facts: ReadonlyArray<{ readonly label: string; readonly value: string }>;
  readonly lines: ReadonlyArray<{
    readonly description: string;
    readonly period: string;
    readonly amount: string;
  }>;
  readonly totals: ReadonlyArray<{
    readonly label: string;
    readonly value: string;
    readonly strong: boolean;
  }>;
  readonly creditNotes: ReadonlyArray<{
    readonly date: string;
    readonly text: string;
    readonly amount: string;
  }>;
  readonly notes: readonly string[];
}

export interface LayoutOptions {
  /**
   * Whether the PDF's font can draw this text. A formatted value it cannot draw (a locale whose
   * dates use CJK characters, `ja-JP`'s full-width yen) is formatted again in English of the same
   * region, so every amount and date stays legible.
   */
  readonly covers?: (text: string) => boolean;
}

const STATUS_TEXT = {
  open: 'Open: payment due on receipt',
  void: 'Void: nothing is owed',
  uncollectible: 'Uncollectible: written off',
} as const;

/** The text of an invoice's PDF. */
export function invoiceLayout(input: InvoiceDocumentInput, options: LayoutOptions = {}): InvoiceLayout {
  const { invoice, market, customer } = input;
  assert(invoice.number.length > 0, 'an invoice with a number');
  const fmt = formatters(market.locale, invoice.currency, options.covers ?? (() => true));
  const rate = fmt.percent(invoice.taxRateBps);

  const charges = invoice.lines.filter((l) => l.kind !== 'tax' && l.kind !== 'credit_applied');
  const paid = invoice.status === 'paid';
  const totals: Array<{ label: string; value: string; strong: boolean }> = [
    { label: 'Subtotal', value: fmt.money(invoice.subtotalMinor), strong: false },
    {
      label: invoice.taxInclusive ? `Tax ${rate} (included)` : `Tax ${rate}`,
      value: fmt.money(invoice.taxMinor),
      strong: false,
    },
    { label: 'Total', value: fmt.money(invoice.totalMinor), strong: true },
  ];
  if (invoice.creditAppliedMinor > 0)
    totals.push({
      label: 'Account credit applied',
      value: fmt.money(-invoice.creditAppliedMinor),
      strong: false,
    });
  if (invoice.creditCreatedMinor > 0)
    totals.push({
      label: 'Credited to your account',
      value: fmt.money(invoice.creditCreatedMinor),
      strong: false,
    });
  totals.push({ label: 'Amount paid', value: fmt.money(paid ? invoice.amountDueMinor : 0), strong: false });
  const owed = invoice.status === 'open' || invoice.status === 'uncollectible' ? invoice.amountDueMinor : 0;
  totals.push({ label: 'Amount due', value: fmt.money(owed), strong: !paid });
  const refunded = invoice.creditNotes.reduce((sum, c) => sum + c.amountMinor, 0);
  if (invoice.creditNotes.length > 0)
    totals.push({ label: 'Refunded (credit notes)', value: fmt.money(-refunded), strong: false });

  const shown = invoice.creditNotes.slice(0, PDF_CREDIT_NOTES_MAX);
  const creditNotes = shown.map((c) => ({
    date: fmt.date(c.createdAt),
    text: `Credit note ${c.id}: ${c.reason.replaceAll('_', ' ')}, tax ${fmt.money(-c.taxMinor)}`,
    amount: fmt.money(-c.amountMinor),
  }));
  const rest = invoice.creditNotes.slice(PDF_CREDIT_NOTES_MAX);
  if (rest.length > 0)
    creditNotes.push({
      date: fmt.date(rest.at(-1)!.createdAt),
      text: `${rest.length} more credit notes`,
      amount: fmt.money(-rest.reduce((sum, c) => sum + c.amountMinor, 0)),
    });

  const seller = market.seller;
  return {
    locale: market.locale,
    title: 'Invoice',
    number: invoice.number,
    testBanner: invoice.number.startsWith('TEST-')
      ? 'Test mode: a simulated invoice of a test clock, not a legal document'
      : null,
    seller: seller
      ? {
          name: seller.legalName,
          lines: [...seller.address, ...(seller.taxId ? [`Tax id: ${seller.taxId}`] : [])],
          missing: false,
        }
      : {
          name: market.name ?? `Market ${market.code}`,
          lines: [`No seller details are set for market ${market.code}.`],
          missing: true,
        },
    // The id on a line of its own: with its label it is about the bill-to column's width, and
    // would wrap in the middle for some ids.
    billTo: customer.erased
      ? ['Erased customer', 'Customer id:', customer.id]
      : [
          ...(customer.name ? [customer.name] : []),
          ...(customer.email ? [customer.email] : []),
          `Customer: ${customer.externalId}`,
        ],
    facts: [
      { label: 'Invoice number', value: invoice.number },
      { label: 'Issue date', value: fmt.date(invoice.issuedAt) },
      { label: 'Service period', value: fmt.range(invoice.periodStart, invoice.periodEnd) },
      {
        label: 'Status',
        value: paid
          ? `Paid ${invoice.paidAt ? fmt.date(invoice.paidAt) : ''}`.trimEnd()
          : STATUS_TEXT[invoice.status as keyof typeof STATUS_TEXT],
      },
    ],
    lines: charges.map((l) => ({
      description: l.description,
      period: fmt.range(l.periodStart, l.periodEnd),
      amount: fmt.money(l.amountMinor),
    })),
    totals,
    creditNotes,
    notes: [
      invoice.taxInclusive ? `Prices include ${rate} tax.` : `Tax of ${rate} is added to prices.`,
      `Amounts in ${invoice.currency}. Dates in UTC.`,
    ],
  };
}

/**
 * Formatting in `locale`, each value again in English of the same region (`en-JP`) when `covers`
 * says the font cannot draw the first.
 */
export function formatters(locale: string, currency: string, covers: (text: string) => boolean) {
  const exponent = minorUnitExponent(currency);
  const region = safeRegion(locale);
  const fallback = region ? `en-${region}` : 'en';
  const build = (tag: string) => {
    const money = new Intl.NumberFormat(tag, {
      style: 'currency',
      currency,
      minimumFractionDigits: exponent,
      maximumFractionDigits: exponent,
    });
    const percent = new Intl.NumberFormat(tag, { style: 'percent', maximumFractionDigits: 2 });
    const date = new Intl.DateTimeFormat(tag, { dateStyle: 'medium', timeZone: 'UTC' });
    return {
      // The exact decimal string (Intl.NumberFormat v3): no float ever rounds a minor unit away.
      money: (minor: number) => money.format(formatMajor(minor, currency) as `${number}`),
      percent: (bps: number) => percent.format(bps / 10_000),
      date: (d: Date) => date.format(d),
      range: (a: Date, b: Date) => date.formatRange(a, b),
    };
  };
  const primary = build(locale);
  let second: ReturnType<typeof build> | undefined;
  const legible =
    <A extends unknown[]>(pick: (f: ReturnType<typeof build>) => (...args: A) => string) =>
    (...args: A): string => {
      const text = pick(primary)(...args);
      if (covers(text)) return text;
      second ??= build(fallback);
      return pick(second)(...args);
    };
  return {
    money: legible((f) => f.money),
    percent: legible((f) => f.percent),
    date: legible((f) => f.date),
    range: legible((f) => f.range),
  };
}

function safeRegion(locale: string): string | undefined {
  try {
    return new Intl.Locale(locale).region;
  } catch {
    return undefined;
  }
}

/** The market code of an invoice series (`SE-2027`, `TEST-SE-2027`: see `invoiceSeries`). */
export function marketCodeOfSeries(series: string): string {
  const match = /^(?:TEST-)?([A-Z]{2})-\d{4}$/.exec(series);
  assert(match?.[1] !== undefined, `invoice series ${series}`);
  return match[1];
}
