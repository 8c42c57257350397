import { assert } from '../../../kernel/assert.js';
import type { TransactionSpec } from '../../ledger/domain/transaction.js';

/**
 * The ledger transactions of an invoice (ADR 0014), as pure functions. Keys derive from the
 * cause (`invoice:<id>:finalize`), so a retry posts once.
 *
 * The payments module books every capture as cash at the provider against revenue and tax
 * (`payments/domain/entries.ts`, kept for one-off payments). An invoice is different: finalising
 * it already booked receivable against deferred revenue and tax. So when its payment is captured,
 * `paidEntry` moves the capture's revenue and tax back onto the receivable. Net effect of
 * finalise + capture + paid: provider clearing Dr total, deferred revenue Cr net, tax payable Cr
 * tax, receivable and revenue unchanged; each transaction balances, so the trial balance stays 0.
 */
export interface InvoiceFacts {
  readonly id: string;
  readonly customerId: string;
  readonly currency: string;
  readonly totalMinor: number;
  readonly taxMinor: number;
  /** Revenue net of tax. */
  readonly netMinor: number;
}

const nonZero = (spec: TransactionSpec): TransactionSpec => ({
  ...spec,
  postings: spec.postings.filter((x) => (x.debit ?? x.credit ?? 0) !== 0),
});

const receivable = (i: { customerId: string; currency: string }) => ({
  type: 'customer_receivable' as const,
  owner: i.customerId,
  currency: i.currency,
});

/** Finalising: the customer owes the total; revenue is deferred until served; tax is owed. Null for a 0 invoice. */
export function finalizeEntry(invoice: InvoiceFacts, at: Date): TransactionSpec | null {
  assert(invoice.totalMinor >= 0, 'a negative invoice becomes account credit, not a receivable');
  assert(invoice.netMinor + invoice.taxMinor === invoice.totalMinor, 'net + tax = total');
  if (invoice.totalMinor === 0) return null;
  return nonZero({
    idempotencyKey: `invoice:${invoice.id}:finalize`,
    reference: invoice.id,
    description: `invoice ${invoice.id} finalized`,
    effectiveAt: at,
    postings: [
      { account: receivable(invoice), debit: invoice.totalMinor },
      { account: { type: 'deferred_revenue', currency: invoice.currency }, credit: invoice.netMinor },
      { account: { type: 'tax_payable', currency: invoice.currency }, credit: invoice.taxMinor },
    ],
  });
}

/**
 * The invoice's payment was captured (the capture booked clearing / revenue / tax): the
 * receivable is settled, and the capture's revenue and tax, already booked at finalisation as
 * deferred revenue and tax, are taken back.
 */
export function paidEntry(
  invoice: Pick<InvoiceFacts, 'id' | 'customerId' | 'currency'>,
  payment: { readonly id: string; readonly amountMinor: number; readonly taxMinor: number },
  at: Date,
): TransactionSpec {
  assert(payment.taxMinor >= 0 && payment.taxMinor <= payment.amountMinor, 'tax within the amount');
  return nonZero({
    idempotencyKey: `invoice:${invoice.id}:paid`,
    reference: invoice.id,
    description: `invoice ${invoice.id} paid by ${payment.id}`,
    effectiveAt: at,
    postings: [
      {
        account: { type: 'revenue', currency: invoice.currency },
        debit: payment.amountMinor - payment.taxMinor,
      },
      { account: { type: 'tax_payable', currency: invoice.currency }, debit: payment.taxMinor },
      { account: receivable(invoice), credit: payment.amountMinor },
    ],
  });
}

/**
 * A payment captured for an invoice that was no longer open when it came back (a cancel voided
 * it, dunning wrote it off, an expiry voided it while the charge was at the provider): the money
 * is the customer's, kept as account credit, tax included, which later invoices spend. The
 * capture booked revenue and tax; both are taken back onto the customer's credit.
 */
export function unappliedPaymentEntry(
  invoice: Pick<InvoiceFacts, 'id' | 'customerId' | 'currency'>,
  payment: { readonly id: string; readonly amountMinor: number; readonly taxMinor: number },
  at: Date,
): TransactionSpec {
  assert(payment.taxMinor >= 0 && payment.taxMinor <= payment.amountMinor, 'tax within the amount');
  return nonZero({
    idempotencyKey: `payment:${payment.id}:unapplied`,
    reference: invoice.id,
    description: `payment ${payment.id} for invoice ${invoice.id}, no longer open, kept as account credit`,
    effectiveAt: at,
    postings: [
      {
        account: { type: 'revenue', currency: invoice.currency },
        debit: payment.amountMinor - payment.taxMinor,
      },
      { account: { type: 'tax_payable', currency: invoice.currency }, debit: payment.taxMinor },
      { account: customerCredit(invoice), credit: payment.amountMinor },
    ],
  });
}

/** Voiding a finalised invoice nobody paid (an expired sign-up): the finalisation, undone. Null for a 0 invoice. */
export function voidEntry(invoice: InvoiceFacts, at: Date): TransactionSpec | null {
  const finalized = finalizeEntry(invoice, at);
  if (!finalized) return null;
  return {
    ...finalized,
    idempotencyKey: `invoice:${invoice.id}:void`,
    description: `invoice ${invoice.id} voided`,
    postings: finalized.postings.map((p) =>
      p.debit !== undefined
        ? { account: p.account, credit: p.debit }
        : { account: p.account, debit: p.credit ?? 0 },
    ),
  };
}

/** `SE-2026-000042`; customers on a test clock number in `TEST-SE-2026` so simulations never use the legal series. */
export function invoiceSeries(marketCode: string, at: Date, testClock: boolean): string {
  return `${testClock ? 'TEST-' : ''}${marketCode}-${at.getUTCFullYear()}`;
}

export function invoiceNumber(series: string, n: number): string {
  assert(Number.isSafeInteger(n) && n >= 1, `invoice number ${n}`);
  return `${series}-${String(n).padStart(6, '0')}`;
}

/** The payment of an invoice is keyed by the invoice: one first charge per invoice, whoever retries. */
export const invoicePaymentKey = (invoiceId: string): string => `invoice:${invoiceId}:charge`;

/** Attempt n (1-based) of an invoice's charge: the first is `invoicePaymentKey`, retries add their number. */
export function invoiceAttemptKey(invoiceId: string, attempt: number): string {
  assert(Number.isInteger(attempt) && attempt >= 1, `attempt ${attempt}`);
  return attempt === 1 ? invoicePaymentKey(invoiceId) : `${invoicePaymentKey(invoiceId)}:${attempt}`;
}

const customerCredit = (i: { customerId: string; currency: string }) => ({
  type: 'customer_credit' as const,
  owner: i.customerId,
  currency: i.currency,
});

/**
 * Finalising an invoice whose total is negative (a downgrade's or a pause's unused time): the
 * unserved revenue and its tax are taken back, and the customer is owed the total as account
 * credit, tax included. Same key as `finalizeEntry`: one finalisation per invoice.
 */
export function finalizeCreditEntry(invoice: InvoiceFacts, at: Date): TransactionSpec {
  assert(invoice.totalMinor < 0, 'only a negative invoice creates credit');
  assert(invoice.netMinor + invoice.taxMinor === invoice.totalMinor, 'net + tax = total');
  return nonZero({
    idempotencyKey: `invoice:${invoice.id}:finalize`,
    reference: invoice.id,
    description: `invoice ${invoice.id} finalized as account credit`,
    effectiveAt: at,
    postings: [
      { account: { type: 'deferred_revenue', currency: invoice.currency }, debit: -invoice.netMinor },
      { account: { type: 'tax_payable', currency: invoice.currency }, debit: -invoice.taxMinor },
      { account: customerCredit(invoice), credit: -invoice.totalMinor },
    ],
  });
}

/** Account credit paying part of an invoice: what we owed the customer settles what they owe. */
export function creditAppliedEntry(
  invoice: Pick<InvoiceFacts, 'id' | 'customerId' | 'currency'>,
  amountMinor: number,
  at: Date,
): TransactionSpec {
  assert(Number.isSafeInteger(amountMinor) && amountMinor > 0, 'credit applied is positive');
  return {
    idempotencyKey: `invoice:${invoice.id}:credit_applied`,
    reference: invoice.id,
    description: `account credit applied to invoice ${invoice.id}`,
    effectiveAt: at,
    postings: [
      { account: customerCredit(invoice), debit: amountMinor },
      { account: receivable(invoice), credit: amountMinor },
    ],
  };
}

/** An invoice whose last payment attempt failed: the receivable is written off to bad debt. */
export function writeOffEntry(
  invoice: Pick<InvoiceFacts, 'id' | 'customerId' | 'currency'>,
  amountMinor: number,
  at: Date,
): TransactionSpec | null {
  assert(Number.isSafeInteger(amountMinor) && amountMinor >= 0, 'write-off is not negative');
  if (amountMinor === 0) return null;
  return {
    idempotencyKey: `invoice:${invoice.id}:write_off`,
    reference: invoice.id,
    description: `invoice ${invoice.id} uncollectible, written off`,
    effectiveAt: at,
    postings: [
      { account: { type: 'bad_debt', currency: invoice.currency }, debit: amountMinor },
      { account: receivable(invoice), credit: amountMinor },
    ],
  };
}
