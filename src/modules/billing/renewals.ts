import { sql } from 'kysely';
import type { Executor } from '../../db/schema.js';
import { transact } from '../../db/transaction.js';
import { type Job, runInSavepoint } from '../../jobs/scheduler.js';
import { assert } from '../../kernel/assert.js';
import type { ChargeResult } from '../../providers/port.js';
import { resolvePrice } from '../catalog/domain/price-resolution.js';
import type { Market, Plan } from '../catalog/service.js';
import type { Payment } from '../payments/service.js';
import { type BuiltInvoice, buildInvoice, chargeJob, scheduleOf } from './context.js';
import { invoiceAttemptKey, invoiceSeries } from './domain/entries.js';
import { assembleInvoice } from './domain/invoice.js';
import { periodFrom } from './domain/plan-change.js';
import { recurringLine } from './domain/proration.js';
import { settleRenewalsPaid } from './invoice-payments.js';
import { LIVE_SCOPE } from './recognition.js';
import type { BillingService } from './service.js';
import { billingTables, type SubscriptionsTable } from './tables.js';

/** Cycle jobs one renewal batch claims (`REPRISE_RENEWAL_BATCH`). */
export const RENEWAL_BATCH_DEFAULT = 200;
/** Charges one batch has in flight at the provider at once (`REPRISE_RENEWAL_CONCURRENCY`). */
export const RENEWAL_CONCURRENCY_DEFAULT = 8;
/**
 * How long a batch holds its claimed cycle jobs and its charge jobs (`REPRISE_RENEWAL_LEASE_SECONDS`):
 * it charges them itself at once; if its worker dies, any runner takes them once the lease lapses.
 * A lease that lapses while the batch still works costs duplicate work, never a duplicate charge
 * (the subscription locks, the unique invoice per period, the payment's key and charge lease).
 */
export const RENEWAL_LEASE_MS_DEFAULT = 60_000;

/** One subscription of a batch, planned for the set-based path. */
interface Planned {
  job: Job;
  sub: SubscriptionsTable;
  built: BuiltInvoice;
  series: string;
  marketCode: string;
  price: { versionId: string; amountMinor: number };
}

/**
 * The renewal pipeline (ARCHITECTURE.md "The billing path", ADR 0016): a batch of due `billing.cycle`
 * jobs, claimed by the scheduler with SKIP LOCKED, is renewed in three steps.
 * 1. One transaction locks the batch's subscriptions and finalises their invoices set-based: one
 *    statement each for the invoices, their lines, their revenue lines, their ledger entries, their
 *    events and their charge jobs, and the numbers from blocks reserved beforehand in a short
 *    transaction of their own. A subscription out of the common case (a plan change taking effect,
 *    account credit, nothing due, a test clock) is renewed by the one-job path (`invoiceCycle`) in
 *    a savepoint of the same transaction. The cycle jobs are completed in it too.
 * 2. The invoices are charged with bounded concurrency, no transaction open, each through the
 *    pay-invoice workflow (its payment key derives from the invoice, so a second run never
 *    charges twice).
 * 3. Each charge settles the invoice (paid: the next period and its cycle job; declined: dunning);
 *    the charge jobs of the settled ones are completed in one statement. A charge left unsettled
 *    (the provider has not answered, the worker died) stays a due charge job after its lease.
 * Every step is keyed by (subscription, period): a batch claimed again finds the invoices made.
 */
export async function renewBatch(
  billing: BillingService,
  jobs: readonly Job[],
  now: Date,
  opts: { concurrency: number; leaseMs: number },
): Promise<Map<string, string>> {
  const { ctx } = billing;
  const failures = new Map<string, string>();
  const subIds = jobs.map((j) => (j.payload as { subscription: string }).subscription);
  await reserveNumbers(billing, subIds, now);

  // 1. Finalise, and start the first charge of each invoice (attempt 1 of the charge job).
  const charges = await transact(ctx.db, async (trx) => {
    // Run again on a serialization failure or a deadlock: only this run's failures count.
    failures.clear();
    const planned = await plan(billing, trx, jobs, now, failures);
    const built = planned.map((p) => p.built);
    for (const b of built) {
      b.invoice.attempts = 1;
      b.invoice.scheduled_attempts = 1;
    }
    await ctx.storeFinalized(trx, built, LIVE_SCOPE, now);
    // The subscriber's price from this period on (the one the invoice bills), where it moved.
    for (const p of planned) {
      if (p.price.versionId !== p.sub.price_version_id || p.price.amountMinor !== p.sub.price_minor) {
        await billingTables(trx)
          .updateTable('subscriptions')
          .set({ price_version_id: p.price.versionId, price_minor: p.price.amountMinor })
          .where('id', '=', p.sub.id)
          .execute();
      }
    }
    const started = await ctx.payments.startMany(
      trx,
      planned.map((p) => ({
        input: ctx.chargeOf(p.built.invoice, undefined)!,
        marketCode: p.marketCode,
        requestKey: invoiceAttemptKey(p.built.invoice.id, 1),
      })),
    );
    // Each invoice's charge job, leased: this batch charges them now; if its worker dies, any
    // runner takes them once the lease lapses (the pay-invoice workflow resumes the payment).
    const charges = built.map(({ invoice }) => ({
      invoice: invoice.id,
      job: chargeJob(invoice, new Date(now.getTime() + opts.leaseMs), null),
    }));
    const created = await billing.jobs.scheduleMany(
      trx,
      charges.map((c) => c.job),
    );
    await billing.jobs.complete(
      trx,
      jobs.filter((j) => !failures.has(j.id)).map((j) => j.id),
      now,
    );
    return charges.map((c) => ({
      invoice: c.invoice,
      job: created.get(c.job.dedupeKey) ?? null,
      started: started.get(invoiceAttemptKey(c.invoice, 1)) ?? null,
    }));
  });

  // 2. Charge at the provider, no transaction open, at most `concurrency` at once. An invoice
  // whose payment was not started here goes the one-invoice way (the charge job's work).
  const answered: Array<{ invoice: string; job: string | null; payment: Payment; result: ChargeResult }> = [];
  const settledJobs: string[] = [];
  await eachLimited(charges, opts.concurrency, async ({ invoice, job, started }) => {
    try {
      if (!started) {
        await billing.chargeInvoiceJob({ invoice });
        if (job) settledJobs.push(job);
        return;
      }
      const { payment, result } = await ctx.payments.charge(started.payment, started.lease);
      // No answer (a timeout, another worker holds it): the charge job resumes it after its lease.
      if (result) answered.push({ invoice, job, payment, result });
    } catch {
      // A database or provider error: the charge job runs it again once its lease lapses.
    }
  });

  // 3. Settle what came back in one transaction: set-based for captured renewals, one by one
  // (in savepoints) for the rest.
  // The cycle jobs are done (the finalising transaction completed them): a failure from here on
  // is not theirs. What does not settle stays with its charge job, due when the lease lapses.
  if (answered.length > 0) {
    await transact(ctx.db, async (trx) => {
      const done: string[] = [];
      const captured = answered.filter(
        (a): a is typeof a & { result: ChargeResult & { status: 'succeeded' } } =>
          a.result.status === 'succeeded',
      );
      const finished = await ctx.payments.finishCapturedMany(
        trx,
        captured.map((a) => ({ payment: a.payment, result: a.result })),
      );
      const payments = new Map<string, Payment>();
      for (const a of answered) {
        const recorded = finished.get(a.payment.id);
        if (recorded) {
          payments.set(a.invoice, recorded);
          continue;
        }
        try {
          payments.set(
            a.invoice,
            await runInSavepoint(trx, () => ctx.payments.finish(trx, a.payment, a.result)),
          );
        } catch {
          // Left to the charge job.
        }
      }
      const paid = await settleRenewalsPaid(
        ctx,
        trx,
        answered.flatMap((a) => {
          const p = payments.get(a.invoice);
          return p?.captured ? [{ invoiceId: a.invoice, payment: p }] : [];
        }),
        now,
      );
      for (const a of answered) {
        const payment = payments.get(a.invoice);
        if (!payment) continue;
        if (!paid.has(a.invoice)) {
          try {
            await runInSavepoint(trx, () => billing.settleInvoice(trx, a.invoice, payment, { retry: null }));
          } catch {
            continue;
          }
        }
        if (a.job) done.push(a.job);
      }
      await billing.jobs.complete(trx, done, now);
    }).catch(() => undefined);
  }
  if (settledJobs.length > 0) {
    await transact(ctx.db, (trx) => billing.jobs.complete(trx, settledJobs, now)).catch(() => undefined);
  }
  return failures;
}

/**
 * Locks the batch's subscriptions and plans the set-based renewals; renews the others one by one
 * (each in a savepoint: a failure is that job's, recorded in `failures`).
 */
async function plan(
  billing: BillingService,
  trx: Executor,
  jobs: readonly Job[],
  now: Date,
  failures: Map<string, string>,
): Promise<Planned[]> {
  const { ctx } = billing;
  const db = billingTables(trx);
  const bySub = new Map(jobs.map((j) => [(j.payload as { subscription: string }).subscription, j]));
  const subs = await db
    .selectFrom('subscriptions')
    .selectAll()
    .where('id', 'in', [...bySub.keys()])
    .orderBy('id')
    .forUpdate()
    .execute();
  const due = subs.filter(
    (s) =>
      (s.status === 'trialing' || s.status === 'active') &&
      !s.cancel_at &&
      s.current_period_end !== null &&
      now.getTime() >= s.current_period_end.getTime(),
  );
  const accounts = await ctx.customers.accounts(
    due.map((s) => s.customer_id),
    trx,
  );
  const withCredit = new Set(
    (
      await db
        .selectFrom('account_credits')
        .select('customer_id')
        .where('customer_id', 'in', due.length > 0 ? due.map((s) => s.customer_id) : [''])
        .where('balance_minor', '<>', 0)
        .execute()
    ).map((r) => r.customer_id),
  );

  const oneByOne: SubscriptionsTable[] = [];
  const candidates: Array<{ sub: SubscriptionsTable; period: ReturnType<typeof periodFrom> }> = [];
  for (const sub of due) {
    const account = accounts.get(sub.customer_id);
    const changing = sub.pending_plan_id !== null && sub.pending_change_at !== null;
    if (!account || account.testClockId !== null || changing || withCredit.has(sub.customer_id)) {
      oneByOne.push(sub);
      continue;
    }
    candidates.push({ sub, period: periodFrom(scheduleOf(sub), sub.current_period_end!) });
  }

  // Invoices of these periods made already (a batch claimed again after a crash): nothing to do.
  const made = new Set<string>();
  if (candidates.length > 0) {
    const existing = await sql<{ subscription_id: string }>`
      SELECT i.subscription_id FROM invoices i
      JOIN unnest(${candidates.map((c) => c.sub.id)}::text[], ${candidates.map((c) => c.period.start.toISOString())}::timestamptz[])
        AS k(subscription_id, period_start)
        ON i.subscription_id = k.subscription_id AND i.period_start = k.period_start
      WHERE i.reason = 'subscription_cycle' AND i.subscription_id = ANY(${candidates.map((c) => c.sub.id)}::text[])`.execute(
      trx,
    );
    for (const r of existing.rows) made.add(r.subscription_id);
  }

  const plans = new Map<string, Plan>();
  const markets = new Map<string, Market>();
  const planned: Array<
    Omit<Planned, 'built' | 'series' | 'marketCode'> & {
      assembled: ReturnType<typeof assembleInvoice>;
      market: Market;
    }
  > = [];
  for (const { sub, period } of candidates) {
    if (made.has(sub.id)) continue;
    const account = accounts.get(sub.customer_id)!;
    let planRow = plans.get(sub.plan_id);
    if (!planRow) {
      planRow = await ctx.catalog.getPlan(sub.plan_id, trx);
      plans.set(sub.plan_id, planRow);
    }
    let market = markets.get(account.marketId);
    if (!market) {
      market = await ctx.catalog.getMarket(account.marketId, trx);
      markets.set(account.marketId, market);
    }
    const price = resolvePrice(planRow.versions, {
      market: { id: market.id, currency: market.currency },
      at: period.start,
      // Grandfathering from the day the subscriber moved to this plan (a change restarts it).
      subscribedAt: sub.plan_started_at ?? sub.created_at,
    });
    if (!price.ok || price.value.currency !== sub.currency) {
      // The one-job path raises the error this deserves (no price, another currency).
      oneByOne.push(sub);
      continue;
    }
    const assembled = assembleInvoice({
      currency: sub.currency,
      tax: { rateBps: market.taxRateBps, inclusive: market.taxInclusive },
      lines: [recurringLine({ name: planRow.name, priceMinor: price.value.amountMinor }, period)],
      accountCreditMinor: 0,
    });
    if (assembled.amountDueMinor <= 0) {
      // Nothing due (a free price): settled at finalisation by the one-job path.
      oneByOne.push(sub);
      continue;
    }
    planned.push({
      job: bySub.get(sub.id)!,
      sub,
      price: { versionId: price.value.priceVersionId, amountMinor: price.value.amountMinor },
      assembled,
      market,
    });
  }

  // Numbers in batch order, one statement per series.
  const bySeries = new Map<string, typeof planned>();
  for (const p of planned) {
    const series = invoiceSeries(p.market.code, now, false);
    bySeries.set(series, [...(bySeries.get(series) ?? []), p]);
  }
  const out: Planned[] = [];
  for (const [series, group] of bySeries) {
    const numbers = await ctx.numbers.takeMany(trx, series, group.length);
    group.forEach((p, i) => {
      out.push({
        job: p.job,
        sub: p.sub,
        price: p.price,
        series,
        marketCode: p.market.code,
        built: buildInvoice({
          sub: p.sub,
          assembled: p.assembled,
          series,
          number: numbers[i]!,
          at: now,
          reason: 'subscription_cycle',
        }),
      });
    });
  }

  for (const sub of oneByOne) {
    const job = bySub.get(sub.id)!;
    try {
      await runInSavepoint(trx, () => billing.invoiceCycle(trx, sub.id, now));
    } catch (error) {
      failures.set(job.id, error instanceof Error ? error.message : String(error));
    }
  }
  return out;
}

/** Numbers for the batch's invoices, reserved before its transaction (ADR 0014: blocks). */
async function reserveNumbers(billing: BillingService, subIds: readonly string[], now: Date): Promise<void> {
  const { ctx } = billing;
  const subs = await billingTables(ctx.db)
    .selectFrom('subscriptions')
    .select('customer_id')
    .where('id', 'in', subIds.length > 0 ? [...subIds] : [''])
    .execute();
  const accounts = await ctx.customers.accounts(subs.map((s) => s.customer_id));
  const needs = new Map<string, number>();
  for (const account of accounts.values()) {
    if (account.testClockId !== null) continue;
    const market = await ctx.catalog.getMarket(account.marketId);
    const series = invoiceSeries(market.code, now, false);
    needs.set(series, (needs.get(series) ?? 0) + 1);
  }
  await ctx.numbers.reserve(needs);
}

/**
 * Due wall-clock charge jobs (a renewal whose batch could not charge it: the provider's circuit
 * open, a timeout, a worker that died) in batches: each runs the one-invoice pay workflow as the
 * single job would, `concurrency` at once, and the ones that finished are completed together.
 * Without this a tail of such jobs ran one at a time per node, about 17 a second.
 */
export async function chargeBatch(
  billing: BillingService,
  jobs: readonly Job[],
  now: Date,
  opts: { concurrency: number },
): Promise<Map<string, string>> {
  const failures = new Map<string, string>();
  const done: string[] = [];
  await eachLimited(jobs, opts.concurrency, async (job) => {
    try {
      await billing.chargeInvoiceJob(job.payload as Parameters<BillingService['chargeInvoiceJob']>[0]);
      done.push(job.id);
    } catch (error) {
      failures.set(job.id, error instanceof Error ? error.message : String(error));
    }
  });
  // Not completed (a database error here): claimed again after the lease, and the workflow finds
  // each invoice paid or its payment settled, so nothing is charged twice.
  if (done.length > 0) {
    await transact(billing.ctx.db, (trx) => billing.jobs.complete(trx, done, now)).catch(() => undefined);
  }
  return failures;
}

/** Runs `fn` over `items`, at most `limit` at once. */
async function eachLimited<T>(
  items: readonly T[],
  limit: number,
  fn: (item: T) => Promise<void>,
): Promise<void> {
  assert(Number.isInteger(limit) && limit >= 1, 'concurrency');
  let next = 0;
  const lane = async () => {
    while (next < items.length) {
      const item = items[next++]!;
      await fn(item);
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, lane));
}
