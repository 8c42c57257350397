import type { Executor } from '../../db/schema.js';
import { isIdOf, newId } from '../../kernel/ids.js';
import type { RefundFact } from '../payments/service.js';
import type { BillingContext } from './context.js';
import { creditNote } from './domain/credit-note.js';
import { creditNoteEntry, recognisedThrough } from './domain/revenue-entries.js';
import { addRecognitionLines, dayOf, recognitionLinesOf } from './recognition.js';
import { billingTables, type CreditNotesTable } from './tables.js';

/**
 * A refund of an invoice's payment is a credit note on that invoice (ADR 0014), written in the
 * refund's transaction (the payments module calls this through `onRefunded`, holding the payment's
 * row lock, so the notes of one payment are written one at a time). Refunds of other payments
 * (one-off purchases, a payment that did not pay its invoice) are left as the payments module
 * booked them. Idempotent per refund.
 *
 * The note's tax part is the invoice's tax in cumulative proportion of the refunded amount to its
 * total (`creditNote`); its net reduces deferred revenue for the part not yet served, then revenue.
 * The ledger entry adjusts what the payments module booked for the refund (`creditNoteEntry`), and
 * the unserved part is taken off the invoice's future recognition: a negative recognition line
 * from the refund's day to the invoice's last day, so deferred revenue for the invoice still ends
 * at exactly 0. Access does not change.
 */
export async function creditNoteForRefund(ctx: BillingContext, trx: Executor, r: RefundFact): Promise<void> {
  if (r.reference === null || !isIdOf('invoice', r.reference)) return;
  const db = billingTables(trx);
  const invoice = await db
    .selectFrom('invoices')
    .selectAll()
    .where('id', '=', r.reference)
    .executeTakeFirst();
  if (!invoice || invoice.payment_id !== r.paymentId || invoice.status !== 'paid') return;
  const known = await db
    .selectFrom('credit_notes')
    .select('id')
    .where('refund_id', '=', r.refundId)
    .executeTakeFirst();
  if (known) return;
  const before = await db
    .selectFrom('credit_notes')
    .select((eb) => eb.fn.coalesce(eb.fn.sum<number>('amount_minor'), eb.lit(0)).as('total'))
    .where('invoice_id', '=', invoice.id)
    .executeTakeFirstOrThrow();
  const at = await ctx.customers.now(invoice.customer_id, trx);
  // What is still deferred of the invoice: every day before today's date is recognised (or will be
  // by the job, whose sums include the lines written here only from today on).
  const lines = await recognitionLinesOf(trx, invoice.id);
  const yesterday = dayOf(at) - 1;
  const deferred = lines.reduce(
    (sum, l) => sum + l.netMinor - recognisedThrough(l.netMinor, l.days, yesterday),
    0,
  );
  const note = creditNote({
    invoice: { totalMinor: invoice.total_minor, taxMinor: invoice.tax_minor },
    paidMinor: r.paymentAmountMinor,
    refundedBeforeMinor: Number(before.total),
    amountMinor: r.amountMinor,
    deferredRemainingMinor: deferred,
    reason: 'requested_by_customer',
  });
  const row: CreditNotesTable = {
    id: newId('creditNote'),
    invoice_id: invoice.id,
    refund_id: r.refundId,
    payment_id: r.paymentId,
    currency: invoice.currency,
    amount_minor: note.amountMinor,
    tax_minor: note.taxMinor,
    net_minor: note.netMinor,
    from_deferred_minor: note.fromDeferredMinor,
    from_revenue_minor: note.fromRevenueMinor,
    reason: note.reason,
    created_at: at,
  };
  await db.insertInto('credit_notes').values(row).execute();
  const entry = creditNoteEntry(
    {
      id: row.id,
      invoiceId: invoice.id,
      currency: invoice.currency,
      taxMinor: note.taxMinor,
      fromDeferredMinor: note.fromDeferredMinor,
    },
    r.taxMinor,
    at,
  );
  if (entry) await ctx.ledger.post(trx, entry);
  if (note.fromDeferredMinor > 0 && lines.length > 0) {
    const lastDay = Math.max(...lines.map((l) => l.days.lastDay));
    await addRecognitionLines(
      ctx,
      trx,
      lines[0]!.scope,
      [
        {
          source: row.id,
          position: 0,
          invoiceId: invoice.id,
          currency: invoice.currency,
          days: { firstDay: Math.min(dayOf(at), lastDay), lastDay },
          netMinor: -note.fromDeferredMinor,
        },
      ],
      at,
    );
  }
}

/** The credit notes of these invoices, oldest first per invoice. */
export async function creditNotesOf(
  trx: Executor,
  invoiceIds: readonly string[],
): Promise<Map<string, CreditNotesTable[]>> {
  const out = new Map<string, CreditNotesTable[]>();
  if (invoiceIds.length === 0) return out;
  const rows = await billingTables(trx)
    .selectFrom('credit_notes')
    .selectAll()
    .where('invoice_id', 'in', invoiceIds)
    .orderBy('invoice_id')
    .orderBy('id')
    .execute();
  for (const r of rows) out.set(r.invoice_id, [...(out.get(r.invoice_id) ?? []), r]);
  return out;
}
