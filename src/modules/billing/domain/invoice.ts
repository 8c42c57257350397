import { assert } from '../../../kernel/assert.js';
import { minorUnitExponent } from '../../../kernel/currency.js';
import { AMOUNT_MINOR_MAX, applyBasisPoints, divRoundHalfUp, inclusiveTax } from '../../../kernel/money.js';

/**
 * Invoice assembly and arithmetic (ADR 0014): subtotal, one tax per invoice, total, account
 * credit applied or created, amount due. Pure: the caller stores what this returns.
 */

export type LineKind =
  | 'recurring'
  | 'fixed'
  | 'proration_credit'
  | 'proration_charge'
  | 'credit_applied'
  | 'discount'
  | 'tax';

/** The kinds that make up the subtotal (everything but `credit_applied` and `tax`). */
export type SubtotalKind = 'recurring' | 'fixed' | 'proration_credit' | 'proration_charge' | 'discount';
export const SUBTOTAL_KINDS: readonly SubtotalKind[] = [
  'recurring',
  'fixed',
  'proration_credit',
  'proration_charge',
  'discount',
];

export interface InvoiceLine {
  readonly kind: LineKind;
  readonly description: string;
  readonly periodStart: Date;
  readonly periodEnd: Date;
  /** Signed, in the invoice currency's minor unit; tax included in tax-inclusive markets. */
  readonly amountMinor: number;
}

export interface ChargeLine extends InvoiceLine {
  readonly kind: SubtotalKind;
}

/** Lines per invoice: a renewal has one or two, a change a handful; more is a bug. */
export const MAX_INVOICE_LINES = 100;
/** Tax rates above 100 % are a bug (markets are validated on input). */
export const MAX_TAX_RATE_BPS = 10_000;

export interface TaxRule {
  /** The market's rate in basis points (2500 = 25 %), stored on the invoice. */
  readonly rateBps: number;
  /** EU style: line amounts include tax. */
  readonly inclusive: boolean;
}

export interface InvoiceInput {
  readonly currency: string;
  readonly tax: TaxRule;
  /** The lines that make the subtotal, in display order. */
  readonly lines: readonly ChargeLine[];
  /** The customer's account credit before this invoice (≥ 0, tax included). */
  readonly accountCreditMinor: number;
}

export interface AssembledInvoice {
  readonly currency: string;
  readonly taxRateBps: number;
  readonly taxInclusive: boolean;
  /** The charge lines, then the `tax` line (when the rate is not 0), then `credit_applied` (when any). */
  readonly lines: readonly InvoiceLine[];
  readonly subtotalMinor: number;
  readonly taxMinor: number;
  readonly totalMinor: number;
  /** Revenue net of tax: subtotal − tax when inclusive, subtotal when exclusive. */
  readonly netMinor: number;
  /** Account credit consumed by this invoice (≥ 0; the `credit_applied` line is its negative). */
  readonly creditAppliedMinor: number;
  /** `max(0, total + Σ credit_applied)`. */
  readonly amountDueMinor: number;
  /** Account credit created by a negative total, tax included (≥ 0). */
  readonly creditCreatedMinor: number;
  /** The customer's account credit after this invoice. */
  readonly accountCreditAfterMinor: number;
  /** The span of the charge lines: the earliest start to the latest end. */
  readonly periodStart: Date;
  readonly periodEnd: Date;
}

const SIGN: Record<SubtotalKind, 'positive' | 'negative'> = {
  recurring: 'positive',
  fixed: 'positive',
  proration_charge: 'positive',
  proration_credit: 'negative',
  discount: 'negative',
};

function checkLine(line: ChargeLine, i: number): void {
  const a = line.amountMinor;
  assert(Number.isSafeInteger(a), `line ${i}: amount ${a} is not a safe integer`);
  assert(SUBTOTAL_KINDS.includes(line.kind), `line ${i}: kind ${line.kind} is not a subtotal kind`);
  assert(
    SIGN[line.kind] === 'positive' ? a >= 0 : a <= 0,
    `line ${i}: ${line.kind} of ${a} has the wrong sign`,
  );
  assert(line.periodStart.getTime() <= line.periodEnd.getTime(), `line ${i}: period ends before it starts`);
}

/** Tax of an invoice whose subtotal is `subtotalMinor`: once per invoice, half-up. */
export function invoiceTax(subtotalMinor: number, tax: TaxRule): { taxMinor: number; totalMinor: number } {
  assert(
    Number.isInteger(tax.rateBps) && tax.rateBps >= 0 && tax.rateBps <= MAX_TAX_RATE_BPS,
    `bad tax rate ${tax.rateBps}`,
  );
  if (tax.inclusive) {
    return { taxMinor: inclusiveTax(subtotalMinor, tax.rateBps), totalMinor: subtotalMinor };
  }
  const taxMinor = applyBasisPoints(subtotalMinor, tax.rateBps);
  return { taxMinor, totalMinor: subtotalMinor + taxMinor };
}

/** Assembles an invoice from its charge lines and the customer's account credit. */
export function assembleInvoice(input: InvoiceInput): AssembledInvoice {
  minorUnitExponent(input.currency);
  const { lines, tax } = input;
  assert(
    lines.length >= 1 && lines.length <= MAX_INVOICE_LINES,
    `an invoice has 1..${MAX_INVOICE_LINES} lines`,
  );
  assert(
    Number.isSafeInteger(input.accountCreditMinor) && input.accountCreditMinor >= 0,
    `account credit ${input.accountCreditMinor} must be ≥ 0`,
  );
  lines.forEach(checkLine);

  const subtotalMinor = lines.reduce((sum, l) => sum + l.amountMinor, 0);
  assert(Math.abs(subtotalMinor) <= AMOUNT_MINOR_MAX, 'subtotal overflow');
  const { taxMinor, totalMinor } = invoiceTax(subtotalMinor, tax);
  const netMinor = tax.inclusive ? subtotalMinor - taxMinor : subtotalMinor;

  const periodStart = new Date(Math.min(...lines.map((l) => l.periodStart.getTime())));
  const periodEnd = new Date(Math.max(...lines.map((l) => l.periodEnd.getTime())));

  // A positive total consumes credit; a negative one becomes credit, tax included (amount due 0).
  const creditAppliedMinor = totalMinor > 0 ? Math.min(input.accountCreditMinor, totalMinor) : 0;
  const creditCreatedMinor = totalMinor < 0 ? -totalMinor : 0;
  const amountDueMinor = Math.max(0, totalMinor - creditAppliedMinor);

  const out: InvoiceLine[] = [...lines];
  if (tax.rateBps !== 0) {
    out.push({
      kind: 'tax',
      description: taxDescription(tax),
      periodStart,
      periodEnd,
      amountMinor: taxMinor,
    });
  }
  if (creditAppliedMinor > 0) {
    out.push({
      kind: 'credit_applied',
      description: 'Account credit applied',
      periodStart,
      periodEnd,
      amountMinor: -creditAppliedMinor,
    });
  }
  return {
    currency: input.currency,
    taxRateBps: tax.rateBps,
    taxInclusive: tax.inclusive,
    lines: out,
    subtotalMinor,
    taxMinor,
    totalMinor,
    netMinor,
    creditAppliedMinor,
    amountDueMinor,
    creditCreatedMinor,
    accountCreditAfterMinor: input.accountCreditMinor - creditAppliedMinor + creditCreatedMinor,
    periodStart,
    periodEnd,
  };
}

function taxDescription(tax: TaxRule): string {
  const whole = Math.floor(tax.rateBps / 100);
  const frac = tax.rateBps % 100;
  const pct = frac === 0 ? `${whole}` : `${whole}.${String(frac).padStart(2, '0').replace(/0$/, '')}`;
  return `Tax ${pct} %${tax.inclusive ? ' (included)' : ''}`;
}

/**
 * The net (tax-free) amount of each charge line, in the order given: the invoice's tax is spread
 * over its lines in proportion to their amounts by cumulative rounding, so the nets sum exactly to
 * `netMinor` and each share is within one minor unit of its exact proportion. Exclusive invoices
 * carry tax on top, so each net is the line's amount.
 */
export function lineNets(invoice: AssembledInvoice): number[] {
  const charges = invoice.lines.filter((l) => l.kind !== 'tax' && l.kind !== 'credit_applied');
  if (!invoice.taxInclusive || invoice.taxMinor === 0 || invoice.subtotalMinor === 0) {
    return charges.map((l) => l.amountMinor);
  }
  const tax = BigInt(invoice.taxMinor);
  const subtotal = BigInt(invoice.subtotalMinor);
  let prefix = 0n;
  let allocated = 0n;
  return charges.map((l) => {
    prefix += BigInt(l.amountMinor);
    const cumulative = divRoundHalfUp(tax * prefix, subtotal);
    const share = cumulative - allocated;
    allocated = cumulative;
    return l.amountMinor - Number(share);
  });
}

/**
 * The tax part of what is charged for an invoice: its tax in proportion of the amount due to the
 * total (half-up), all of it when nothing was paid by credit. What a later refund returns in
 * proportion (credit notes) derives from the same figures.
 */
export function taxOfAmountDue(invoice: {
  readonly totalMinor: number;
  readonly taxMinor: number;
  readonly amountDueMinor: number;
}): number {
  const { totalMinor, taxMinor, amountDueMinor } = invoice;
  assert(amountDueMinor >= 0 && amountDueMinor <= Math.max(0, totalMinor), 'amount due within the total');
  if (amountDueMinor === totalMinor) return taxMinor;
  if (amountDueMinor === 0 || totalMinor <= 0) return 0;
  return Number(divRoundHalfUp(BigInt(taxMinor) * BigInt(amountDueMinor), BigInt(totalMinor)));
}
