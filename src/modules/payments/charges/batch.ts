import { sql } from 'kysely';
import type { Executor } from '../../../db/schema.js';
import { assert } from '../../../kernel/assert.js';
import { newId } from '../../../kernel/ids.js';
import type { ChargeResult } from '../../../providers/port.js';
import { factsOf, inputHash, type Payment, type PaymentsContext, statusOf } from '../context.js';
import { captureEntry, feeEntry } from '../domain/entries.js';
import { paymentObject } from '../events.js';
import { type PaymentMethodsTable, type PaymentsTable, paymentTables } from '../tables.js';
import { type ChargeLease, chargeDeadline, newLease } from './lease.js';
import { type PaymentInput, reconcileJob } from './start.js';

/**
 * Payments of a batch (renewals, ADR 0016), in the caller's transaction. The same rows, ledger
 * entries and events as `startPayment` / `finishPayment` of one payment, in a fixed number of
 * statements for the batch. Anything out of the common case is left to the one-payment path.
 */

/** A payment to start in a batch: an invoice's amount due (`input.taxMinor` decided by the invoice). */
export interface BatchPaymentInput {
  input: PaymentInput;
  marketCode: string;
  /** The payment's request key (the invoice's attempt key): a second start finds the first. */
  requestKey: string;
}

/**
 * Stores the payments as `processing`, each holding its charge lease since the insert, with
 * their reconciliation jobs, on each customer's default method. Answers by request key; a payment
 * not started here (no default method, no provider available, the key taken already) is absent,
 * and its invoice is charged by the one-payment path.
 */
export async function startPaymentsMany(
  ctx: PaymentsContext,
  trx: Executor,
  inputs: readonly BatchPaymentInput[],
): Promise<Map<string, { payment: Payment; lease: ChargeLease }>> {
  const started = new Map<string, { payment: Payment; lease: ChargeLease }>();
  if (inputs.length === 0) return started;
  const db = paymentTables(trx);
  // The default methods with their tokens (provider → the provider's method id) in one query;
  // the tokens ride on each lease to the charge, which then reads nothing.
  const found = await db
    .selectFrom('payment_methods as m')
    .leftJoin('payment_method_tokens as t', 't.payment_method_id', 'm.id')
    .selectAll('m')
    .select(['t.provider as token_provider', 't.provider_method_id as token_method_id'])
    .where('m.customer_id', 'in', [...new Set(inputs.map((i) => i.input.customer))])
    .where('m.is_default', '=', true)
    .orderBy('m.id')
    .orderBy('t.provider')
    .execute();
  const methods = new Map<string, { method: PaymentMethodsTable; tokens: Map<string, string> }>();
  for (const { token_provider, token_method_id, ...method } of found) {
    let entry = methods.get(method.customer_id);
    if (!entry) {
      entry = { method, tokens: new Map() };
      methods.set(method.customer_id, entry);
    }
    if (token_provider && token_method_id) entry.tokens.set(token_provider, token_method_id);
  }
  const now = ctx.clock.now();
  const rows: Array<{ row: PaymentsTable; lease: ChargeLease }> = [];
  for (const { input, marketCode, requestKey } of inputs) {
    const taxMinor = input.taxMinor ?? -1;
    assert(
      Number.isSafeInteger(input.amount) &&
        input.amount > 0 &&
        taxMinor >= 0 &&
        taxMinor <= input.amount &&
        input.paymentMethod === undefined &&
        input.capture !== false,
      'a batch payment captures a positive amount on the default method, its tax within it',
    );
    const entry = methods.get(input.customer);
    if (!entry) continue;
    const { method, tokens } = entry;
    const decision = ctx.router.plan(marketCode, method.brand, new Set(tokens.keys()));
    const first = decision.candidates[0];
    if (!first) continue;
    decision.chosen = first;
    const lease: ChargeLease = { ...newLease(true), tokens };
    // As startPayment hashes its input: a later start under this key with the same input resumes it.
    const hash = inputHash({ ...input, capture: true });
    rows.push({
      lease,
      row: {
        id: newId('payment'),
        customer_id: input.customer,
        payment_method_id: method.id,
        amount_minor: input.amount,
        currency: input.currency,
        tax_minor: taxMinor,
        fee_minor: 0,
        amount_refunded_minor: 0,
        tax_refunded_minor: 0,
        status: 'processing',
        captured: false,
        capture_method: 'automatic',
        provider: first,
        provider_payment_id: null,
        decline_code: null,
        description: input.description,
        reference: input.reference ?? null,
        routing: JSON.stringify(decision),
        request_key: requestKey,
        request_hash: hash,
        charge_token: lease.token,
        charge_deadline_at: chargeDeadline(ctx, first),
        version: 0,
        created_at: now,
        updated_at: now,
      },
    });
  }
  if (rows.length === 0) return started;
  const inserted = await db
    .insertInto('payments')
    .values(rows.map((r) => r.row))
    .onConflict((oc) => oc.column('request_key').doNothing())
    .returningAll()
    .execute();
  const leases = new Map(rows.map((r) => [r.row.id, r.lease]));
  for (const payment of inserted)
    started.set(payment.request_key!, { payment, lease: leases.get(payment.id)! });
  await ctx.jobs.scheduleMany(
    trx,
    inserted.map((p) => reconcileJob(p, p.charge_deadline_at!)),
  );
  return started;
}

/**
 * Records captures the provider answered synchronously for payments still `processing`: the
 * payment captured, its capture and fee booked, `payment.succeeded`. Returns the payments recorded
 * here; one not recorded (a webhook recorded it first, a dispute, another state) is the caller's
 * to finish through the one-payment path (`finishPayment`, which is idempotent).
 */
export async function finishCapturedMany(
  ctx: PaymentsContext,
  trx: Executor,
  items: ReadonlyArray<{ payment: Payment; result: ChargeResult & { status: 'succeeded' } }>,
): Promise<Map<string, Payment>> {
  const done = new Map<string, Payment>();
  if (items.length === 0) return done;
  const db = paymentTables(trx);
  const ids = items.map((i) => i.payment.id);
  const disputed = new Set(
    (await db.selectFrom('disputes').select('payment_id').where('payment_id', 'in', ids).execute()).map(
      (d) => d.payment_id,
    ),
  );
  const fresh = items.filter((i) => !disputed.has(i.payment.id));
  if (fresh.length === 0) return done;
  const now = ctx.clock.now();
  const col = <T>(f: (i: (typeof fresh)[number]) => T) => fresh.map(f);
  const updated = await sql<Payment>`
    UPDATE payments p SET
      captured = true,
      fee_minor = v.fee,
      provider = v.provider,
      provider_payment_id = v.provider_payment_id,
      routing = v.routing::jsonb,
      status = v.status,
      version = p.version + 1,
      updated_at = ${now.toISOString()}::timestamptz
    FROM unnest(
      ${col((i) => i.payment.id)}::text[], ${col((i) => i.result.feeMinor)}::bigint[],
      ${col((i) => i.payment.provider)}::text[], ${col((i) => i.result.providerPaymentId)}::text[],
      ${col((i) => (typeof i.payment.routing === 'string' ? i.payment.routing : JSON.stringify(i.payment.routing)))}::text[],
      ${col((i) => statusOf({ ...i.payment, captured: true }, null))}::text[]
    ) AS v(id, fee, provider, provider_payment_id, routing, status)
    WHERE p.id = v.id AND p.id = ANY(${col((i) => i.payment.id)}::text[])
      AND p.status = 'processing' AND NOT p.captured
    RETURNING p.*`.execute(trx);
  const rows = updated.rows;
  if (rows.length === 0) return done;
  const entries = rows.flatMap((p) => {
    const facts = factsOf(p);
    const fee = feeEntry(facts, p.fee_minor, now);
    return [captureEntry(facts, now), ...(fee ? [fee] : [])];
  });
  await ctx.ledger.postBatch(trx, entries);
  await ctx.events.appendMany(
    trx,
    rows.map((p) => ({
      type: 'payment.succeeded' as const,
      aggregate: { type: 'payment', id: p.id, version: p.version },
      customerId: p.customer_id,
      data: { object: paymentObject(p) },
    })),
  );
  // Their reconciliation is moot now (it ends at once for a payment no longer processing).
  await ctx.jobs.completeByKeys(
    trx,
    rows.flatMap((p) => (p.charge_deadline_at ? [reconcileJob(p, p.charge_deadline_at).dedupeKey] : [])),
    now,
  );
  for (const p of rows) done.set(p.id, p);
  return done;
}
