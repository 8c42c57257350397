import { sql } from 'kysely';
import type { Executor } from '../../db/schema.js';
import { assert } from '../../kernel/assert.js';
import type { BillingContext } from './context.js';
import { DAY_MS } from './domain/periods.js';
import {
  dayString,
  type RecognitionDays,
  recognisedThrough,
  recognitionCatchUpEntry,
  recognitionDaysOf,
  recognitionEntry,
} from './domain/revenue-entries.js';
import { billingTables, type InvoiceLinesTable, type InvoicesTable } from './tables.js';

/**
 * Daily revenue recognition (ADR 0014): every line with a net is recognised day by day over its
 * service period, deferred revenue → revenue, one ledger transaction per scope, currency and day.
 *
 * A scope is `live` (customers on the wall clock) or a test clock's id (its customers, recognised
 * on the clock's own time when it advances). Each scope has a cursor (the last day recognised) and
 * one job chain: `billing.recognize` runs after each UTC day has ended (00:05 for live, 00:00 on a
 * clock), recognises every ended day after the cursor (at most 366 per run, then it runs again at
 * once), and schedules the next day's run while some line of the scope still has days to come.
 * Every writer of a line schedules that run too (deduplicated), so a chain that stopped restarts.
 */

export const RECOGNIZE_JOB = 'billing.recognize';
export const LIVE_SCOPE = 'live';
/** Days one run recognises at most: a long outage is caught up a year per run. */
export const RECOGNITION_DAYS_PER_RUN_MAX = 366;
/** The live run waits a few minutes past midnight (renewals due at midnight go first). */
const LIVE_RUN_OFFSET_MS = 5 * 60_000;

export interface NewRecognitionLine {
  /** The invoice id, the credit note id, or `<invoice id>:void`. */
  readonly source: string;
  readonly position: number;
  readonly invoiceId: string;
  readonly currency: string;
  readonly days: RecognitionDays;
  readonly netMinor: number;
}

export const dayOf = (at: Date): number => Math.floor(at.getTime() / DAY_MS);

/** The recognition scope of a customer: its test clock's id, or `live`. */
export async function scopeOf(ctx: BillingContext, trx: Executor, customerId: string): Promise<string> {
  return (await ctx.customers.account(customerId, trx)).testClockId ?? LIVE_SCOPE;
}

/** When the scope's run after `at` is due: the end of `at`'s day (plus a margin when live). */
function nextRunAt(scope: string, at: Date): Date {
  const end = (dayOf(at) + 1) * DAY_MS;
  return new Date(scope === LIVE_SCOPE ? end + LIVE_RUN_OFFSET_MS : end);
}

/** One run per scope and instant; a catch-up run is keyed by the day it starts from as well. */
async function scheduleRun(
  ctx: BillingContext,
  trx: Executor,
  scope: string,
  runAt: Date,
  fromDay?: number,
): Promise<void> {
  await ctx.jobs.schedule(trx, {
    kind: RECOGNIZE_JOB,
    runAt,
    testClockId: scope === LIVE_SCOPE ? null : scope,
    payload: { scope },
    dedupeKey: `${RECOGNIZE_JOB}:${scope}:${runAt.getTime()}${fromDay === undefined ? '' : `:${fromDay}`}`,
  });
}

/** The recognition lines of a finalised invoice's charge lines (nets from `lineNets`). */
export function invoiceRecognitionLines(
  invoice: Pick<InvoicesTable, 'id' | 'currency'>,
  lines: ReadonlyArray<Pick<InvoiceLinesTable, 'position' | 'period_start' | 'period_end' | 'net_minor'>>,
): NewRecognitionLine[] {
  return lines
    .filter((l) => l.net_minor !== 0)
    .map((l) => ({
      source: invoice.id,
      position: l.position,
      invoiceId: invoice.id,
      currency: invoice.currency,
      days: recognitionDaysOf({ start: l.period_start, end: l.period_end }),
      netMinor: l.net_minor,
    }));
}

/**
 * Stores lines to recognise in the writer's transaction. A line that starts on a day the scope has
 * already recognised (a renewal that ran after midnight, a voided invoice's mirror) is caught up at
 * once: the cursor is read `FOR SHARE`, so either the job that holds it `FOR UPDATE` has committed
 * (its day is caught up here) or it waits for this transaction and its sums see the line.
 */
export async function addRecognitionLines(
  ctx: BillingContext,
  trx: Executor,
  scope: string,
  lines: readonly NewRecognitionLine[],
  at: Date,
): Promise<void> {
  const owed = lines.filter((l) => l.netMinor !== 0);
  if (owed.length === 0) return;
  const db = billingTables(trx);
  await db
    .insertInto('recognition_lines')
    .values(
      owed.map((l) => ({
        source: l.source,
        position: l.position,
        invoice_id: l.invoiceId,
        scope,
        currency: l.currency,
        first_day: l.days.firstDay,
        last_day: l.days.lastDay,
        net_minor: l.netMinor,
      })),
    )
    .execute();
  const firstDay = Math.min(...owed.map((l) => l.days.firstDay));
  await db
    .insertInto('recognition_cursors')
    .values({ scope, recognised_through: firstDay - 1, updated_at: at })
    .onConflict((oc) => oc.column('scope').doNothing())
    .execute();
  if (firstDay < dayOf(at)) {
    const cursor = await db
      .selectFrom('recognition_cursors')
      .select('recognised_through')
      .where('scope', '=', scope)
      .forShare()
      .executeTakeFirstOrThrow();
    const through = cursor.recognised_through;
    for (const l of owed) {
      if (l.days.firstDay > through) continue;
      const last = Math.min(through, l.days.lastDay);
      const entry = recognitionCatchUpEntry({
        scope,
        currency: l.currency,
        source: l.source,
        position: l.position,
        throughDay: last,
        amountMinor: recognisedThrough(l.netMinor, l.days, last),
        at,
      });
      if (entry) await ctx.ledger.post(trx, entry);
    }
  }
  await scheduleRun(ctx, trx, scope, nextRunAt(scope, at));
}

/** The recognition lines of a finalised invoice, for the credit note of a refund. */
export async function recognitionLinesOf(
  trx: Executor,
  invoiceId: string,
): Promise<Array<{ days: RecognitionDays; netMinor: number; scope: string }>> {
  const rows = await billingTables(trx)
    .selectFrom('recognition_lines')
    .select(['first_day', 'last_day', 'net_minor', 'scope'])
    .where('invoice_id', '=', invoiceId)
    .execute();
  return rows.map((r) => ({
    days: { firstDay: r.first_day, lastDay: r.last_day },
    netMinor: r.net_minor,
    scope: r.scope,
  }));
}

/**
 * A voided invoice's revenue, undone: its lines mirrored with the opposite net (so every later day
 * nets to 0) and the days already recognised reversed at once (the mirror's catch-up).
 */
export async function reverseInvoiceRecognition(
  ctx: BillingContext,
  trx: Executor,
  invoice: Pick<InvoicesTable, 'id' | 'currency' | 'customer_id'>,
  at: Date,
): Promise<void> {
  const rows = await billingTables(trx)
    .selectFrom('recognition_lines')
    .selectAll()
    .where('source', '=', invoice.id)
    .orderBy('position')
    .execute();
  if (rows.length === 0) return;
  const scope = rows[0]!.scope;
  await addRecognitionLines(
    ctx,
    trx,
    scope,
    rows.map((r) => ({
      source: `${invoice.id}:void`,
      position: r.position,
      invoiceId: invoice.id,
      currency: r.currency,
      days: { firstDay: r.first_day, lastDay: r.last_day },
      netMinor: -r.net_minor,
    })),
    at,
  );
}

/**
 * The job: recognises every ended day of `scope` after its cursor (at most
 * `RECOGNITION_DAYS_PER_RUN_MAX`), one set-based sum over the lines running on those days, one
 * ledger transaction per currency and day, then schedules the next run.
 */
export async function recognizeScope(
  ctx: BillingContext,
  trx: Executor,
  scope: string,
  now: Date,
): Promise<{ days: number; posted: number }> {
  const db = billingTables(trx);
  const cursor = await db
    .selectFrom('recognition_cursors')
    .select('recognised_through')
    .where('scope', '=', scope)
    .forUpdate()
    .executeTakeFirst();
  if (!cursor) return { days: 0, posted: 0 };
  const yesterday = dayOf(now) - 1;
  const from = cursor.recognised_through + 1;
  const to = Math.min(yesterday, cursor.recognised_through + RECOGNITION_DAYS_PER_RUN_MAX);
  let posted = 0;
  if (from <= to) {
    // Day k of n of a line recognises hu(net × k, n) − hu(net × (k − 1), n), hu being the division
    // rounded half away from zero (`divRoundHalfUp`), in bigint: exactly the domain's figures.
    const rows = await sql<{ day: number; currency: string; amount: string }>`
      SELECT d.day, l.currency, sum(
        CASE WHEN l.net_minor >= 0
          THEN (2 * l.net_minor * (d.day - l.first_day + 1) + n.n) / (2 * n.n)
             - (2 * l.net_minor * (d.day - l.first_day) + n.n) / (2 * n.n)
          ELSE (2 * l.net_minor * -(d.day - l.first_day) + n.n) / (2 * n.n)
             - (2 * l.net_minor * -(d.day - l.first_day + 1) + n.n) / (2 * n.n)
        END)::text AS amount
      FROM generate_series(${from}::integer, ${to}::integer) AS d(day)
      JOIN recognition_lines l
        ON l.scope = ${scope} AND l.last_day >= d.day AND l.first_day <= d.day
      CROSS JOIN LATERAL (SELECT (l.last_day - l.first_day + 1)::bigint AS n) n
      GROUP BY d.day, l.currency
      ORDER BY d.day, l.currency`.execute(trx);
    const sums = rows.rows.map((r) => ({
      day: Number(r.day),
      currency: r.currency,
      amountMinor: Number(r.amount),
    }));
    for (const s of sums) assert(Number.isSafeInteger(s.amountMinor), `recognition sum ${s.amountMinor}`);
    if (sums.length > 0) {
      await db
        .insertInto('revenue_recognitions')
        .values(
          sums.map((s) => ({
            scope,
            currency: s.currency,
            day: dayString(s.day),
            amount_minor: s.amountMinor,
            created_at: now,
          })),
        )
        .execute();
      const entries = sums.flatMap((s) => {
        const e = recognitionEntry({ scope, ...s });
        return e ? [e] : [];
      });
      posted = entries.length;
      if (entries.length > 0) await ctx.ledger.postBatch(trx, entries);
    }
    await db
      .updateTable('recognition_cursors')
      .set({ recognised_through: to, updated_at: now })
      .where('scope', '=', scope)
      .execute();
  }
  const done = Math.max(to, cursor.recognised_through);
  if (done < yesterday) {
    // More than a run's worth of days behind: go on at once.
    await scheduleRun(ctx, trx, scope, now, done + 1);
  } else {
    const ahead = await db
      .selectFrom('recognition_lines')
      .select('source')
      .where('scope', '=', scope)
      .where('last_day', '>', done)
      .limit(1)
      .executeTakeFirst();
    if (ahead) await scheduleRun(ctx, trx, scope, nextRunAt(scope, now));
  }
  return { days: Math.max(0, to - from + 1), posted };
}
