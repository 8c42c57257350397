import { assert } from '../../../kernel/assert.js';
import { amountMinorMax, divRoundHalfUp } from '../../../kernel/money.js';
import type { Posting, TransactionSpec } from '../../ledger/domain/transaction.js';
import type { Span } from './periods.js';
import { DAY_MS } from './periods.js';
import { MAX_RECOGNITION_DAYS, recognitionDays } from './recognition.js';

/**
 * Recognition and credit-note ledger transactions (ADR 0014), and the day arithmetic the daily job
 * shares with its SQL. Days are UTC day numbers (days since 1970-01-01).
 */

/** A line's recognition days as stored: [firstDay, lastDay], n = lastDay − firstDay + 1. */
export interface RecognitionDays {
  readonly firstDay: number;
  readonly lastDay: number;
}

/** The days a service period is recognised over (`recognitionDays`: at least one, its start's date first). */
export function recognitionDaysOf(span: Span): RecognitionDays {
  const n = recognitionDays(span);
  const firstDay = Math.floor(span.start.getTime() / DAY_MS);
  return { firstDay, lastDay: firstDay + n - 1 };
}

/**
 * What is recognised of `netMinor` over `days` once every day up to `throughDay` (inclusive) has
 * been: round(net × k/n) half-up, k the days elapsed. The same figure the job's daily sums reach.
 */
export function recognisedThrough(netMinor: number, days: RecognitionDays, throughDay: number): number {
  const n = days.lastDay - days.firstDay + 1;
  assert(n >= 1 && n <= MAX_RECOGNITION_DAYS, `recognition over ${n} days`);
  const k = Math.min(n, Math.max(0, throughDay - days.firstDay + 1));
  return Number(divRoundHalfUp(BigInt(netMinor) * BigInt(k), BigInt(n)));
}

/** `YYYY-MM-DD` of a UTC day number. */
export function dayString(day: number): string {
  return new Date(day * DAY_MS).toISOString().slice(0, 10);
}

/** At most this many debit/credit pairs in one recognition transaction (the ledger takes 100 postings). */
const PAIRS_MAX = 50;

/**
 * Deferred revenue → revenue for `amountMinor` (negative: back, for credits of unused time). A
 * day's aggregate can exceed what one posting may carry (`amountMinorMax`, 8 digits of minor units
 * for most currencies: 1,000,000 SEK): it is then split into several equal-sided pairs.
 */
function recognitionPostings(currency: string, amountMinor: number): Posting[] {
  const max = amountMinorMax(currency);
  const pieces: number[] = [];
  for (let left = Math.abs(amountMinor); left > 0; left -= Math.min(left, max))
    pieces.push(Math.min(left, max));
  assert(
    pieces.length <= PAIRS_MAX,
    `recognition of ${amountMinor} ${currency} needs more than ${PAIRS_MAX} postings`,
  );
  const deferred = { type: 'deferred_revenue' as const, currency };
  const revenue = { type: 'revenue' as const, currency };
  const forward = amountMinor > 0;
  return pieces.flatMap((p) => [
    forward ? { account: deferred, debit: p } : { account: deferred, credit: p },
    forward ? { account: revenue, credit: p } : { account: revenue, debit: p },
  ]);
}

/**
 * The daily recognition of one scope and currency: one transaction per day, keyed
 * `recognition:<scope>:<currency>:<YYYY-MM-DD>`, effective when the day ended. Null for 0.
 */
export function recognitionEntry(r: {
  scope: string;
  currency: string;
  day: number;
  amountMinor: number;
}): TransactionSpec | null {
  if (r.amountMinor === 0) return null;
  const date = dayString(r.day);
  return {
    idempotencyKey: `recognition:${r.scope}:${r.currency}:${date}`,
    reference: `recognition:${r.scope}`,
    description: `revenue recognised for ${date} (${r.scope})`,
    effectiveAt: new Date((r.day + 1) * DAY_MS),
    postings: recognitionPostings(r.currency, r.amountMinor),
  };
}

/**
 * A line written after the job had already recognised some of its days (a renewal that ran late,
 * a voided invoice's mirror): those days, caught up at once in the writer's transaction. Keyed by
 * the line (`recognition:<scope>:line:<source>:<position>`); filed under the same reference as the
 * scope's daily transactions.
 */
export function recognitionCatchUpEntry(r: {
  scope: string;
  currency: string;
  source: string;
  position: number;
  throughDay: number;
  amountMinor: number;
  at: Date;
}): TransactionSpec | null {
  if (r.amountMinor === 0) return null;
  return {
    idempotencyKey: `recognition:${r.scope}:line:${r.source}:${r.position}`,
    reference: `recognition:${r.scope}`,
    description: `revenue of ${r.source} line ${r.position} recognised through ${dayString(r.throughDay)} (caught up)`,
    effectiveAt: r.at,
    postings: recognitionPostings(r.currency, r.amountMinor),
  };
}

/**
 * A credit note's adjustment of what the payments module booked for the refund.
 *
 * The payments module books every refund as contra-revenue (`refundEntry`): Dr refunds (amount −
 * Tp), Dr tax payable Tp, Cr provider clearing amount, Tp being the payment's tax in proportion.
 * For an invoice's payment that is not yet right: the unserved part of the refund was never
 * revenue (it is still deferred), and the note's tax part Tc is the invoice's tax in cumulative
 * proportion of its total, which can differ from Tp by a minor unit (or more when account credit
 * paid part of the invoice). The books must end at: Dr tax payable Tc, Dr deferred revenue D (the
 * unserved part, `fromDeferred`), Dr refunds R (the part already earned, `fromRevenue`: revenue net
 * of refunds is what was earned). This posts the difference: tax payable Tc − Tp, deferred
 * revenue D, refunds −(Tc − Tp + D) (signed, debit positive; it balances by construction).
 */
export function creditNoteEntry(
  note: {
    id: string;
    invoiceId: string;
    currency: string;
    taxMinor: number;
    fromDeferredMinor: number;
  },
  paymentsTaxMinor: number,
  at: Date,
): TransactionSpec | null {
  const tax = { type: 'tax_payable' as const, currency: note.currency };
  const deferred = { type: 'deferred_revenue' as const, currency: note.currency };
  const refunds = { type: 'refunds' as const, currency: note.currency };
  const taxDelta = note.taxMinor - paymentsTaxMinor;
  const signed: Array<[Posting['account'], number]> = [
    [tax, taxDelta],
    [deferred, note.fromDeferredMinor],
    [refunds, -(taxDelta + note.fromDeferredMinor)],
  ];
  const postings = signed
    .filter(([, v]) => v !== 0)
    .map(([account, v]): Posting => (v > 0 ? { account, debit: v } : { account, credit: -v }));
  if (postings.length === 0) return null;
  return {
    idempotencyKey: `credit_note:${note.id}:booked`,
    reference: note.invoiceId,
    description: `credit note ${note.id} on invoice ${note.invoiceId}`,
    effectiveAt: at,
    postings,
  };
}
