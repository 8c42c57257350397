import { sql } from 'kysely';
import type { Executor } from '../../db/schema.js';
import { transact } from '../../db/transaction.js';
import { invalidState } from '../../kernel/errors.js';
import type { Payment, PaymentInput } from '../payments/service.js';
import {
  type BillingContext,
  cycleJob,
  entitlementChanged,
  invoiceEventInput,
  JOBS,
  lockInvoice,
  lockSubscription,
  mustExist,
  stateOf,
  subscriptionEventInput,
} from './context.js';
import { isLastFailure, retryAt } from './domain/dunning.js';
import { invoiceAttemptKey, paidEntry, unappliedPaymentEntry, writeOffEntry } from './domain/entries.js';
import { applyEvent } from './domain/lifecycle.js';
import { resumePaid } from './pause-resume.js';
import { billingTables, type InvoicesTable, type SubscriptionsTable } from './tables.js';

/**
 * Paying an open invoice (ADR 0014): the first charge of a renewal or trial end, every dunning
 * retry, `POST /v1/invoices/{id}/pay`, a plan change's or a resume's charge. One path for all:
 * `claimCharge` (its own transaction) names the attempt and its payment key, the payments module
 * starts and charges it with no transaction open, and `settleInvoice` (one transaction) records
 * what came back and moves the subscription by the invoice's reason and its state.
 */

/** What `claimCharge` found: charge this, settle a payment that already came back, or wait. */
export type ChargeClaim =
  | { kind: 'charge'; invoiceId: string; key: string; input: PaymentInput }
  | { kind: 'settle'; invoiceId: string; payment: Payment }
  | { kind: 'in_flight'; invoiceId: string; payment: Payment };

/** Why a charge is made: a retry of the dunning schedule (its number) or anything else. */
export interface ChargeCause {
  /** The dunning retry this charge is (1-based), or null (a first charge, a manual pay). */
  retry: number | null;
}

export interface InvoicePaymentOutcome {
  invoice: InvoicesTable;
  subscription: SubscriptionsTable;
  /** Set when this charge was declined. */
  declineCode: string | null;
  payment: string | null;
}

/** Payload of the charge job (a cycle invoice's first charge, or a dunning retry). */
export interface ChargeJobPayload {
  invoice: string;
  retry?: number | undefined;
}

const inFlight = (p: Payment): boolean => p.status === 'processing' || p.status === 'authorized';

/**
 * Claims the next charge attempt of an open invoice. The attempt's key is derived from the invoice
 * and the attempt number, and a new number is taken only once the last attempt's payment failed:
 * two claimers at once get the same key, and the payments module makes one payment of it. A
 * payment of the last attempt that was captured (its answer lost) is settled instead of charging
 * again; one still in flight is waited for.
 */
export async function claimCharge(
  ctx: BillingContext,
  invoiceId: string,
  paymentMethod: string | undefined,
  cause: ChargeCause & { scheduled?: boolean },
): Promise<ChargeClaim> {
  return transact(ctx.db, async (trx) => {
    const db = billingTables(trx);
    const head = await db
      .selectFrom('invoices')
      .select(['subscription_id'])
      .where('id', '=', invoiceId)
      .executeTakeFirst();
    if (!head) throw invalidState(`Invoice ${invoiceId} does not exist.`);
    await lockSubscription(db, head.subscription_id);
    const invoice = await lockInvoice(db, invoiceId);
    if (invoice.status !== 'open') {
      throw invalidState(`Invoice ${invoice.id} is ${invoice.status}; only an open invoice can be paid.`);
    }
    // The first charge of a sign-up may have run before attempts were counted.
    const last = Math.max(invoice.attempts, 1);
    const previous = await ctx.payments.byRequestKey(invoiceAttemptKey(invoice.id, last), trx);
    // A step of the charge job (first charge 1, retry r → r + 1) that was already made: settle the
    // attempt it made rather than making another (the job ran twice).
    const step = cause.scheduled ? (cause.retry ?? 0) + 1 : null;
    const madeAlready = step !== null && invoice.scheduled_attempts >= step;
    let attempt = last;
    if (previous) {
      if (previous.captured) return { kind: 'settle', invoiceId, payment: previous };
      if (inFlight(previous)) return { kind: 'in_flight', invoiceId, payment: previous };
      if (madeAlready) return { kind: 'settle', invoiceId, payment: previous };
      attempt = last + 1;
    }
    if (attempt !== invoice.attempts || (step !== null && !madeAlready)) {
      await db
        .updateTable('invoices')
        .set({
          attempts: attempt,
          scheduled_attempts: step !== null && !madeAlready ? step : invoice.scheduled_attempts,
        })
        .where('id', '=', invoice.id)
        .execute();
    }
    const input = ctx.chargeOf(invoice, paymentMethod);
    if (!input) throw invalidState(`Invoice ${invoice.id} has nothing due.`);
    return { kind: 'charge', invoiceId, key: invoiceAttemptKey(invoice.id, attempt), input };
  });
}

/**
 * Records what an invoice's charge came to, in the caller's transaction: paid → the invoice paid
 * and booked, the subscription moved on by the invoice's reason (activated, renewed, back from
 * past_due); declined (or refused: no usable payment method) → dunning: past_due with its first
 * retry scheduled, the next retry, or after the last one the subscription canceled, the invoice
 * uncollectible and written off. Settling an invoice that is no longer open changes nothing.
 */
export async function settleInvoice(
  ctx: BillingContext,
  trx: Executor,
  invoiceId: string,
  payment: Payment | null,
  cause: ChargeCause & { refused?: string | null },
  now: Date,
): Promise<InvoicePaymentOutcome> {
  const db = billingTables(trx);
  const { subscription_id } = await db
    .selectFrom('invoices')
    .select('subscription_id')
    .where('id', '=', invoiceId)
    .executeTakeFirstOrThrow();
  // Subscription before invoice, as every locking path: no deadlock.
  let sub = await lockSubscription(db, subscription_id).then(mustExist);
  let invoice = await lockInvoice(db, invoiceId);
  const outcome = (declineCode: string | null): InvoicePaymentOutcome => ({
    invoice,
    subscription: sub,
    declineCode,
    payment: payment?.id ?? null,
  });
  if (invoice.status !== 'open') {
    // A charge that came back captured after the invoice stopped being open (a cancel voided it
    // meanwhile): the money is not lost, it becomes the customer's account credit (once per payment).
    if (payment?.captured && invoice.payment_id !== payment.id) {
      const posted = await ctx.ledger.post(
        trx,
        unappliedPaymentEntry(
          { id: invoice.id, customerId: sub.customer_id, currency: invoice.currency },
          { id: payment.id, amountMinor: payment.amount_minor, taxMinor: payment.tax_minor },
          now,
        ),
      );
      if (!posted.replayed) {
        await ctx.addAccountCredit(trx, sub.customer_id, invoice.currency, payment.amount_minor, now);
      }
    }
    return outcome(null);
  }
  if (payment && !payment.captured && payment.status !== 'failed') {
    throw new Error(`invoice ${invoice.id}: payment ${payment.id} is still ${payment.status}`);
  }
  const paid = payment ? payment.captured : (cause.refused ?? null) === null;
  const testClockId = async () => (await ctx.customers.account(sub.customer_id, trx)).testClockId;

  if (paid) {
    invoice = await ctx.saveInvoice(
      trx,
      invoice,
      { status: 'paid', payment_id: payment?.id ?? null, paid_at: now },
      now,
      'invoice.paid',
    );
    if (payment) {
      await ctx.ledger.post(
        trx,
        paidEntry(
          { id: invoice.id, customerId: sub.customer_id, currency: invoice.currency },
          { id: payment.id, amountMinor: payment.amount_minor, taxMinor: payment.tax_minor },
          now,
        ),
      );
    }
    sub = await onPaid(ctx, trx, sub, invoice, now, testClockId);
    return outcome(null);
  }

  const declineCode = payment?.decline_code ?? cause.refused ?? 'card_declined';
  if (payment) invoice = await ctx.saveInvoice(trx, invoice, { payment_id: payment.id }, now, null);
  sub = await onDeclined(ctx, trx, sub, invoice, cause, now, testClockId);
  return outcome(declineCode);
}

/**
 * Captured charges of renewal invoices (a batch of the renewal pipeline, ADR 0016), settled in
 * the caller's transaction as `settleInvoice` settles each, in a fixed number of statements: the
 * invoices paid and booked, `invoice.paid`; the subscriptions in their next period,
 * `subscription.renewed` (`.activated` after a trial) and `entitlement.updated`; the next cycle
 * jobs. Returns the invoices settled here; any other (no longer open, not the next period, a
 * payment not captured) is the caller's to settle one by one.
 */
export async function settleRenewalsPaid(
  ctx: BillingContext,
  trx: Executor,
  items: ReadonlyArray<{ invoiceId: string; payment: Payment }>,
  now: Date,
): Promise<Set<string>> {
  const settled = new Set<string>();
  if (items.length === 0) return settled;
  const db = billingTables(trx);
  const paymentOf = new Map(items.map((i) => [i.invoiceId, i.payment]));
  const heads = await db
    .selectFrom('invoices')
    .select(['id', 'subscription_id'])
    .where('id', 'in', [...paymentOf.keys()])
    .execute();
  // Subscriptions before invoices, each in id order, as every locking path: no deadlock.
  const subs = await db
    .selectFrom('subscriptions')
    .selectAll()
    .where('id', 'in', [...new Set(heads.map((h) => h.subscription_id))])
    .orderBy('id')
    .forUpdate()
    .execute();
  const invoices = await db
    .selectFrom('invoices')
    .selectAll()
    .where('id', 'in', [...paymentOf.keys()])
    .orderBy('id')
    .forUpdate()
    .execute();
  const subById = new Map(subs.map((s) => [s.id, s]));
  const accounts = await ctx.customers.accounts(
    subs.map((s) => s.customer_id),
    trx,
  );
  const work = invoices.flatMap((invoice) => {
    const sub = subById.get(invoice.subscription_id);
    const payment = paymentOf.get(invoice.id)!;
    const ok =
      sub !== undefined &&
      invoice.status === 'open' &&
      payment.captured &&
      payment.reference === invoice.id &&
      accounts.get(sub.customer_id)?.testClockId === null &&
      isNextPeriod(sub, invoice);
    return ok ? [{ invoice, sub: sub!, payment }] : [];
  });
  // Two invoices of one subscription in one batch: the second is settled one by one, after.
  const seen = new Set<string>();
  const batch = work.filter((w) => !seen.has(w.sub.id) && seen.add(w.sub.id));
  if (batch.length === 0) return settled;

  const paidInvoices = batch.map((w) => ({
    ...w.invoice,
    status: 'paid' as const,
    payment_id: w.payment.id,
    paid_at: now,
    version: w.invoice.version + 1,
    updated_at: now,
  }));
  await sql`
    UPDATE invoices i SET status = 'paid', payment_id = v.payment_id, paid_at = ${now.toISOString()}::timestamptz,
      version = v.version, updated_at = ${now.toISOString()}::timestamptz
    FROM unnest(${paidInvoices.map((i) => i.id)}::text[], ${paidInvoices.map((i) => i.payment_id)}::text[],
                ${paidInvoices.map((i) => i.version)}::int[]) AS v(id, payment_id, version)
    WHERE i.id = v.id AND i.id = ANY(${paidInvoices.map((i) => i.id)}::text[])`.execute(trx);
  await ctx.ledger.postBatch(
    trx,
    batch.map(({ invoice, sub, payment }) =>
      paidEntry(
        { id: invoice.id, customerId: sub.customer_id, currency: invoice.currency },
        { id: payment.id, amountMinor: payment.amount_minor, taxMinor: payment.tax_minor },
        now,
      ),
    ),
  );

  const moved = batch.map(({ invoice, sub }) => {
    const trial = sub.status === 'trialing';
    const state = applyEvent(stateOf(sub), {
      type: trial ? 'trial_ended' : 'renewed',
      at: now,
      paid: true,
      period: { start: invoice.period_start, end: invoice.period_end },
    });
    const next: SubscriptionsTable = {
      ...sub,
      status: state.status,
      current_period_start: state.currentPeriodStart,
      current_period_end: state.currentPeriodEnd,
      past_due_since: state.pastDueSince,
      version: sub.version + 1,
      updated_at: now,
    };
    return {
      sub,
      next,
      event: trial ? ('subscription.activated' as const) : ('subscription.renewed' as const),
    };
  });
  const iso = (d: Date | null) => (d ? d.toISOString() : null);
  await sql`
    UPDATE subscriptions s SET status = v.status, current_period_start = v.cps, current_period_end = v.cpe,
      past_due_since = v.pds, version = v.version, updated_at = ${now.toISOString()}::timestamptz
    FROM unnest(${moved.map((m) => m.next.id)}::text[], ${moved.map((m) => m.next.status)}::text[],
                ${moved.map((m) => iso(m.next.current_period_start))}::timestamptz[],
                ${moved.map((m) => iso(m.next.current_period_end))}::timestamptz[],
                ${moved.map((m) => iso(m.next.past_due_since))}::timestamptz[],
                ${moved.map((m) => m.next.version)}::int[]) AS v(id, status, cps, cpe, pds, version)
    WHERE s.id = v.id AND s.id = ANY(${moved.map((m) => m.next.id)}::text[])`.execute(trx);

  const entitled = await ctx.entitlementEventInputs(
    trx,
    moved.filter((m) => entitlementChanged(m.sub, m.next, ctx.dunning)).map((m) => ({ sub: m.next })),
  );
  await ctx.events.appendMany(trx, [
    ...paidInvoices.map((i) => invoiceEventInput('invoice.paid', i)),
    ...moved.map((m) => subscriptionEventInput(m.event, m.next)),
    ...entitled,
  ]);
  await ctx.jobs.scheduleMany(
    trx,
    moved.map(({ next }) => cycleJob(next, next.current_period_end!, null)),
  );
  for (const w of batch) settled.add(w.invoice.id);
  return settled;
}

/**
 * An invoice paid at finalisation (nothing due: a 0 price, or account credit paid it all) moves
 * the subscription on as a captured charge would, in the finalising transaction.
 */
export async function settlePaidAtFinalize(
  ctx: BillingContext,
  trx: Executor,
  invoice: InvoicesTable,
  now: Date,
): Promise<SubscriptionsTable> {
  const sub = await lockSubscription(billingTables(trx), invoice.subscription_id).then(mustExist);
  return onPaid(
    ctx,
    trx,
    sub,
    invoice,
    now,
    async () => (await ctx.customers.account(sub.customer_id, trx)).testClockId,
  );
}

/** The subscription after its invoice was paid. */
async function onPaid(
  ctx: BillingContext,
  trx: Executor,
  sub: SubscriptionsTable,
  invoice: InvoicesTable,
  now: Date,
  testClockId: () => Promise<string | null>,
): Promise<SubscriptionsTable> {
  const period = { start: invoice.period_start, end: invoice.period_end };
  if (sub.status === 'incomplete' && invoice.reason === 'subscription_create') {
    const state = applyEvent(stateOf(sub), { type: 'first_payment_succeeded', at: now, period });
    const next = await ctx.saveSubscription(
      trx,
      sub,
      { status: state.status, current_period_start: period.start, current_period_end: period.end },
      now,
      'subscription.activated',
    );
    await ctx.scheduleCycle(trx, next, period.end, await testClockId());
    return next;
  }
  if (isNextPeriod(sub, invoice)) {
    const next = await startPeriod(ctx, trx, sub, invoice, true, now);
    await ctx.scheduleCycle(trx, next, invoice.period_end, await testClockId());
    return next;
  }
  if (sub.status === 'paused' && invoice.reason === 'subscription_resume') {
    // A resume's charge was paid: active from the resume on.
    return resumePaid(ctx, trx, sub, invoice, now, await testClockId());
  }
  if (sub.status === 'past_due') {
    // Back in good standing once no invoice of the subscription is left unpaid.
    const unpaid = await billingTables(trx)
      .selectFrom('invoices')
      .select('id')
      .where('subscription_id', '=', sub.id)
      .where('status', '=', 'open')
      .where('id', '!=', invoice.id)
      .executeTakeFirst();
    if (unpaid) return sub;
    const state = applyEvent(stateOf(sub), { type: 'retry_succeeded', at: now });
    const next = await ctx.saveSubscription(
      trx,
      sub,
      { status: state.status, past_due_since: null },
      now,
      'subscription.activated',
    );
    // The period boundaries are unchanged; the next renewal runs at the period end (at once if passed).
    if (next.current_period_end)
      await ctx.scheduleCycle(trx, next, next.current_period_end, await testClockId());
    return next;
  }
  return sub;
}

/** Whether `invoice` bills the period after the trialing or active subscription's current one. */
function isNextPeriod(sub: SubscriptionsTable, invoice: InvoicesTable): boolean {
  return (
    (sub.status === 'trialing' || sub.status === 'active') &&
    invoice.reason === 'subscription_cycle' &&
    sub.current_period_end !== null &&
    invoice.period_start.getTime() >= sub.current_period_end.getTime()
  );
}

/**
 * The trial end or renewal the invoice billed, settled: the subscription moves to its period,
 * active when paid (`subscription.activated` after a trial, `.renewed` after a period), else
 * past_due (`subscription.past_due`, the dunning clock started).
 */
async function startPeriod(
  ctx: BillingContext,
  trx: Executor,
  sub: SubscriptionsTable,
  invoice: InvoicesTable,
  paid: boolean,
  now: Date,
): Promise<SubscriptionsTable> {
  const trial = sub.status === 'trialing';
  const state = applyEvent(stateOf(sub), {
    type: trial ? 'trial_ended' : 'renewed',
    at: now,
    paid,
    period: { start: invoice.period_start, end: invoice.period_end },
  });
  return ctx.saveSubscription(
    trx,
    sub,
    {
      status: state.status,
      current_period_start: state.currentPeriodStart,
      current_period_end: state.currentPeriodEnd,
      past_due_since: state.pastDueSince,
    },
    now,
    paid ? (trial ? 'subscription.activated' : 'subscription.renewed') : 'subscription.past_due',
  );
}

/** The subscription after its invoice's charge was declined: dunning. */
async function onDeclined(
  ctx: BillingContext,
  trx: Executor,
  sub: SubscriptionsTable,
  invoice: InvoicesTable,
  cause: ChargeCause,
  now: Date,
  testClockId: () => Promise<string | null>,
): Promise<SubscriptionsTable> {
  const period = { start: invoice.period_start, end: invoice.period_end };
  if (isNextPeriod(sub, invoice)) {
    const next = await startPeriod(ctx, trx, sub, invoice, false, now);
    await scheduleRetry(ctx, trx, next, invoice, 1, await testClockId());
    return next;
  }
  if (
    sub.status === 'active' &&
    (invoice.reason === 'subscription_update' || invoice.reason === 'subscription_resume')
  ) {
    // A change's or a resume's charge failed: the subscription owes it, as a failed renewal does.
    const next = await ctx.saveSubscription(
      trx,
      sub,
      { status: 'past_due', past_due_since: now },
      now,
      'subscription.past_due',
    );
    await scheduleRetry(ctx, trx, next, invoice, 1, await testClockId());
    return next;
  }
  if (sub.status === 'paused' && invoice.reason === 'subscription_resume') {
    // A resume's charge failed: the resumed period is owed, in dunning (and its grace) as a failed renewal.
    const next = await ctx.saveSubscription(
      trx,
      sub,
      {
        status: 'past_due',
        paused_at: null,
        past_due_since: now,
        current_period_start: period.start,
        current_period_end: period.end,
      },
      now,
      'subscription.past_due',
    );
    await scheduleRetry(ctx, trx, next, invoice, 1, await testClockId());
    return next;
  }
  if (sub.status === 'past_due' && cause.retry !== null && sub.past_due_since) {
    const last = isLastFailure(ctx.dunning, cause.retry + 1);
    const state = applyEvent(stateOf(sub), { type: 'retry_failed', at: now, last });
    if (!last) {
      await scheduleRetry(ctx, trx, sub, invoice, cause.retry + 1, await testClockId());
      return sub;
    }
    return endUnpaid(ctx, trx, sub, invoice, state.endedAt ?? now, now);
  }
  // A manual pay that failed, or a first charge of a sign-up (checkout settles those): no change.
  return sub;
}

/** The last retry failed: canceled, every open invoice of it uncollectible and written off. */
async function endUnpaid(
  ctx: BillingContext,
  trx: Executor,
  sub: SubscriptionsTable,
  failed: InvoicesTable,
  endedAt: Date,
  now: Date,
): Promise<SubscriptionsTable> {
  const next = await ctx.saveSubscription(
    trx,
    sub,
    { status: 'canceled', ended_at: endedAt, past_due_since: null, cancel_at: null, paused_at: null },
    now,
    'subscription.canceled',
    { reason: 'payment_failed' },
  );
  const open = await billingTables(trx)
    .selectFrom('invoices')
    .selectAll()
    .where('subscription_id', '=', sub.id)
    .where('status', '=', 'open')
    .orderBy('id')
    .forUpdate()
    .execute();
  for (const row of open) {
    const invoice = row.id === failed.id ? { ...row, payment_id: failed.payment_id } : row;
    await ctx.saveInvoice(trx, invoice, { status: 'uncollectible' }, now, 'invoice.uncollectible');
    const entry = writeOffEntry(
      { id: invoice.id, customerId: invoice.customer_id, currency: invoice.currency },
      invoice.amount_due_minor,
      now,
    );
    if (entry) await ctx.ledger.post(trx, entry);
  }
  return next;
}

/** Retry number `retry` of the dunning schedule, counted from the first failure. */
async function scheduleRetry(
  ctx: BillingContext,
  trx: Executor,
  sub: SubscriptionsTable,
  invoice: InvoicesTable,
  retry: number,
  testClockId: string | null,
): Promise<void> {
  const since = sub.past_due_since;
  if (!since) return;
  const payload: ChargeJobPayload = { invoice: invoice.id, retry };
  await ctx.jobs.schedule(trx, {
    kind: JOBS.chargeInvoice,
    runAt: retryAt(ctx.dunning, since, retry),
    customerId: sub.customer_id,
    testClockId,
    payload: { ...payload },
    dedupeKey: `${JOBS.chargeInvoice}:${invoice.id}:retry:${retry}`,
  });
}
