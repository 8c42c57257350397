import type { Executor } from '../../../db/schema.js';
import { newId } from '../../../kernel/ids.js';
import type { ProviderPaymentSnapshot } from '../../../providers/port.js';
import { factsOf, lockPayment, type PaymentsContext, statusOf } from '../context.js';
import { disputeClosedEntry, disputeOpenedEntry } from '../domain/entries.js';
import { paymentTables } from '../tables.js';

/** A dispute the provider reports: opened once, closed once, each with its ledger entry. */
export async function applyDispute(
  ctx: PaymentsContext,
  trx: Executor,
  paymentId: string,
  d: NonNullable<ProviderPaymentSnapshot['dispute']>,
): Promise<void> {
  const db = paymentTables(trx);
  const now = ctx.clock.now();
  let dispute = await db
    .selectFrom('disputes')
    .selectAll()
    .where('provider_dispute_id', '=', d.providerDisputeId)
    .forUpdate()
    .executeTakeFirst();
  const payment = await lockPayment(db, paymentId);
  const facts = factsOf(payment);
  if (!dispute) {
    dispute = {
      id: newId('dispute'),
      payment_id: paymentId,
      provider_dispute_id: d.providerDisputeId,
      status: 'open',
      amount_minor: d.amountMinor,
      fee_minor: d.feeMinor,
      created_at: now,
      closed_at: null,
    };
    await db.insertInto('disputes').values(dispute).execute();
    await ctx.ledger.post(trx, disputeOpenedEntry(facts, dispute.id, d.amountMinor, d.feeMinor, now));
  }
  if (d.status !== 'open' && dispute.status === 'open') {
    await db
      .updateTable('disputes')
      .set({ status: d.status, closed_at: now })
      .where('id', '=', dispute.id)
      .execute();
    const closing = disputeClosedEntry(facts, dispute.id, d.status, dispute.amount_minor, now);
    if (closing) await ctx.ledger.post(trx, closing);
  }
  const state = d.status !== 'open' ? d.status : dispute.status;
  await db
    .updateTable('payments')
    .set({ status: statusOf(payment, state), updated_at: now })
    .where('id', '=', paymentId)
    .execute();
}
