import type { Executor } from '../../db/schema.js';
import { transact } from '../../db/transaction.js';
import type { JsonObject } from '../../events/types.js';
import { canonicalJson, sha256Hex } from '../../kernel/canonical-json.js';
import { isoSeconds } from '../../kernel/clock.js';
import { DomainError, invalid, invalidState } from '../../kernel/errors.js';
import { newId } from '../../kernel/ids.js';
import type { PaymentInput } from '../payments/service.js';
import { type BillingContext, lockSubscription, scheduleOf, stateOf } from './context.js';
import type { ChangeTiming } from './domain/change-timing.js';
import { type AssembledInvoice, assembleInvoice } from './domain/invoice.js';
import { changeBillingCycleDay, type PlannedChange, planChange } from './domain/plan-change.js';
import type { ProrationUnit } from './domain/proration.js';
import { billingTables, type InvoicesTable, type SubscriptionsTable } from './tables.js';

/**
 * Plan changes (ADR 0014, "Plan changes"): `POST /v1/subscriptions/{id}/change` and its preview.
 * Both load the same facts and call the same pure `planChange`, so a preview shows exactly what
 * the change then bills. The change itself is one transaction (subscription locked): the
 * subscription updated, its invoice finalised (account credit applied, negative totals turned into
 * credit), `subscription.changed`, the cycle job re-scheduled, and a `subscription_changes` row
 * holding the request key. The invoice's amount due, if any, is charged after that commit, outside
 * any transaction (ADR 0010), and settled in the request's unit of work.
 */

export interface ChangeInput {
  plan: string;
  timing?: ChangeTiming | undefined;
  prorationUnit?: ProrationUnit | undefined;
}

export interface PreviewInvoice {
  currency: string;
  subtotal: number;
  tax: number;
  total: number;
  amountDue: number;
  lines: Array<{ kind: string; description: string; periodStart: string; periodEnd: string; amount: number }>;
}

export interface ChangePreview {
  subscription: string;
  plan: string;
  timing: ChangeTiming;
  effectiveAt: string;
  invoice: PreviewInvoice | null;
  nextRenewal: string;
}

/** What the change committed, and what is left to charge. */
export interface OpenedChange {
  subscriptionId: string;
  /** The change's invoice (immediate changes of an active subscription), or null. */
  invoiceId: string | null;
  /** Its charge when something is due and it is still open. */
  charge: PaymentInput | null;
  amountDueMinor: number;
}

interface Facts {
  sub: SubscriptionsTable;
  at: Date;
  planned: PlannedChange;
  tax: { rateBps: number; inclusive: boolean };
  marketCode: string;
  testClockId: string | null;
  target: {
    planId: string;
    productId: string;
    billingPeriod: SubscriptionsTable['billing_period'];
    priceMinor: number;
    priceVersionId: string;
    billingCycleDay: number | null;
  };
}

/** Loads everything the plan needs and plans the change (no write). */
async function plan(
  ctx: BillingContext,
  trx: Executor,
  sub: SubscriptionsTable,
  input: ChangeInput,
  at: Date,
  withRenewal: boolean,
): Promise<Facts> {
  const customer = await ctx.customers.account(sub.customer_id, trx);
  const [current, target] = await Promise.all([
    ctx.catalog.getPlan(sub.plan_id, trx),
    ctx.catalog.getPlan(input.plan, trx),
  ]);
  const product = await ctx.catalog.getProduct(target.productId, trx);
  // The price a new subscriber of the target plan pays at the change instant (422 price_not_found
  // when the customer's market has none).
  const price = await ctx.catalog.priceFor(target.id, { market: customer.marketId, at }, trx);
  if (price.currency !== sub.currency) {
    throw invalid(
      'plan',
      `is priced in ${price.currency} for this market; the subscription bills in ${sub.currency}`,
    );
  }
  const members = await billingTables(trx)
    .selectFrom('subscription_members')
    .select((eb) => eb.fn.countAll<string>().as('n'))
    .where('subscription_id', '=', sub.id)
    .executeTakeFirstOrThrow();
  const billingCycleDay = changeBillingCycleDay(
    { period: sub.billing_period, billingCycleDay: sub.billing_cycle_day },
    customer.billingCycleDay,
  );
  let termEndPrice: { priceMinor: number; priceVersionId: string } | null = null;
  if (withRenewal && sub.status === 'active' && sub.current_period_end) {
    const p = await ctx.catalog.priceFor(
      target.id,
      { market: customer.marketId, at: sub.current_period_end },
      trx,
    );
    termEndPrice = { priceMinor: p.amountMinor, priceVersionId: p.priceVersionId };
  }
  const planned = planChange({
    at,
    state: stateOf(sub),
    schedule: { ...scheduleOf(sub), billingCycleDay },
    current: {
      planId: current.id,
      name: current.name,
      billingPeriod: sub.billing_period,
      priceMinor: sub.price_minor,
    },
    target: {
      planId: target.id,
      name: target.name,
      billingPeriod: target.billingPeriod,
      priceMinor: price.amountMinor,
      priceVersionId: price.priceVersionId,
      productId: product.id,
      seats: product.seats,
      changeTiming: target.changeTiming,
    },
    pending:
      sub.pending_plan_id && sub.pending_change_at
        ? { planId: sub.pending_plan_id, at: sub.pending_change_at }
        : null,
    memberCount: Number(members.n),
    requested: input.timing ?? null,
    unit: input.prorationUnit ?? 'day',
    targetPriceAtTermEnd: termEndPrice,
  });
  return {
    sub,
    at,
    planned,
    tax: { rateBps: price.market.taxRateBps, inclusive: price.market.taxInclusive },
    marketCode: price.market.code,
    testClockId: customer.testClockId,
    target: {
      planId: target.id,
      productId: product.id,
      billingPeriod: target.billingPeriod,
      priceMinor: price.amountMinor,
      priceVersionId: price.priceVersionId,
      billingCycleDay: target.billingPeriod === 'week' ? null : billingCycleDay,
    },
  };
}

const linesOf = (a: AssembledInvoice): PreviewInvoice['lines'] =>
  a.lines.map((l) => ({
    kind: l.kind,
    description: l.description,
    periodStart: isoSeconds(l.periodStart),
    periodEnd: isoSeconds(l.periodEnd),
    amount: l.amountMinor,
  }));

/**
 * What `changePlan` would do now, writing nothing: the immediate change's invoice, or for an
 * end-of-term change the renewal invoice at the term end (with the account credit as it stands
 * now); null for a change during a trial (free) or a return to the current plan.
 */
export async function previewChange(
  ctx: BillingContext,
  subscriptionId: string,
  input: ChangeInput,
): Promise<ChangePreview> {
  return transact(ctx.db, async (trx) => {
    const db = billingTables(trx);
    const sub = await db
      .selectFrom('subscriptions')
      .selectAll()
      .where('id', '=', subscriptionId)
      .executeTakeFirst();
    if (!sub)
      throw new DomainError('not_found', `No subscription found for '${subscriptionId}'.`, {
        extra: { resource: 'subscription' },
      });
    const at = await ctx.customers.now(sub.customer_id, trx);
    const facts = await plan(ctx, trx, sub, input, at, true);
    const { planned } = facts;
    const lines =
      planned.kind === 'immediate'
        ? planned.lines
        : planned.kind === 'end_of_term'
          ? planned.renewalLines
          : null;
    let invoice: PreviewInvoice | null = null;
    if (lines) {
      const a = assembleInvoice({
        currency: sub.currency,
        tax: facts.tax,
        lines,
        accountCreditMinor: await ctx.accountCredit(trx, sub.customer_id, sub.currency),
      });
      invoice = {
        currency: a.currency,
        subtotal: a.subtotalMinor,
        tax: a.taxMinor,
        total: a.totalMinor,
        amountDue: a.amountDueMinor,
        lines: linesOf(a),
      };
    }
    return {
      subscription: sub.id,
      plan: facts.target.planId,
      timing: planned.timing,
      effectiveAt: isoSeconds(planned.effectiveAt),
      invoice,
      nextRenewal: isoSeconds(planned.nextRenewal),
    };
  });
}

const iso = (d: Date | null): string | null => (d ? isoSeconds(d) : null);

/**
 * Applies a plan change in its own transaction, or finds the one this request key applied (same
 * input only: another is 422 `idempotency_key_reused`), and says what is left to charge.
 */
export async function openChange(
  ctx: BillingContext,
  subscriptionId: string,
  input: ChangeInput,
  requestKey: string | null,
): Promise<OpenedChange> {
  const hash = sha256Hex(canonicalJson({ subscription: subscriptionId, ...input }));
  return transact(ctx.db, async (trx) => {
    const db = billingTables(trx);
    if (requestKey) {
      const done = await db
        .selectFrom('subscription_changes')
        .selectAll()
        .where('request_key', '=', requestKey)
        .executeTakeFirst();
      if (done) {
        if (done.request_hash !== hash || done.subscription_id !== subscriptionId) {
          throw new DomainError(
            'idempotency_key_reused',
            `This Idempotency-Key changed subscription ${done.subscription_id} with a different request; use a new key for new input.`,
          );
        }
        return opened(ctx, trx, subscriptionId, done.invoice_id);
      }
    }
    const sub = await lockSubscription(db, subscriptionId);
    if (!sub)
      throw new DomainError('not_found', `No subscription found for '${subscriptionId}'.`, {
        extra: { resource: 'subscription' },
      });
    const at = await ctx.customers.now(sub.customer_id, trx);
    const facts = await plan(ctx, trx, sub, input, at, false);
    const invoice = await apply(ctx, trx, facts);
    await db
      .insertInto('subscription_changes')
      .values({
        id: newId('subscriptionChange'),
        subscription_id: sub.id,
        request_key: requestKey,
        request_hash: requestKey ? hash : null,
        from_plan_id: sub.plan_id,
        to_plan_id: facts.target.planId,
        timing: facts.planned.timing,
        effective_at: facts.planned.effectiveAt,
        invoice_id: invoice?.id ?? null,
        created_at: at,
      })
      .execute();
    return opened(ctx, trx, sub.id, invoice?.id ?? null);
  });
}

async function opened(
  ctx: BillingContext,
  trx: Executor,
  subscriptionId: string,
  invoiceId: string | null,
): Promise<OpenedChange> {
  if (!invoiceId) return { subscriptionId, invoiceId: null, charge: null, amountDueMinor: 0 };
  const invoice = await billingTables(trx)
    .selectFrom('invoices')
    .selectAll()
    .where('id', '=', invoiceId)
    .executeTakeFirstOrThrow();
  return {
    subscriptionId,
    invoiceId,
    charge: ctx.chargeOf(invoice, undefined),
    amountDueMinor: invoice.amount_due_minor,
  };
}

/** The writes of a planned change. Returns the change's invoice (immediate, active), else null. */
async function apply(ctx: BillingContext, trx: Executor, f: Facts): Promise<InvoicesTable | null> {
  const { sub, at, planned, target } = f;
  const pendingBefore: JsonObject | null =
    sub.pending_plan_id && sub.pending_change_at
      ? { plan: sub.pending_plan_id, effectiveAt: isoSeconds(sub.pending_change_at) }
      : null;
  const swap = {
    plan_id: target.planId,
    product_id: target.productId,
    price_version_id: target.priceVersionId,
    price_minor: target.priceMinor,
    billing_period: target.billingPeriod,
    billing_cycle_day: target.billingCycleDay,
    plan_started_at: at,
    pending_plan_id: null,
    pending_change_at: null,
  };
  const previous: JsonObject = {
    plan: sub.plan_id,
    price: sub.price_minor,
    billingPeriod: sub.billing_period,
    pendingChange: pendingBefore,
  };
  switch (planned.kind) {
    case 'revert':
      await ctx.saveSubscription(
        trx,
        sub,
        { pending_plan_id: null, pending_change_at: null },
        at,
        'subscription.changed',
        { previousAttributes: { pendingChange: pendingBefore } },
      );
      return null;
    case 'trial':
      // Free: no invoice, the trial end (and so the anchor) does not move. A trial moved to
      // another product is that product's trial too (one trial per customer and product).
      if (target.productId !== sub.product_id) {
        await billingTables(trx)
          .insertInto('trial_usage')
          .values({
            customer_id: sub.customer_id,
            product_id: target.productId,
            subscription_id: sub.id,
            created_at: at,
          })
          .onConflict((oc) => oc.columns(['customer_id', 'product_id']).doNothing())
          .execute();
      }
      await ctx.saveSubscription(trx, sub, swap, at, 'subscription.changed', {
        previousAttributes: previous,
      });
      return null;
    case 'end_of_term':
      await ctx.saveSubscription(
        trx,
        sub,
        { pending_plan_id: target.planId, pending_change_at: planned.effectiveAt },
        at,
        'subscription.changed',
        { previousAttributes: { pendingChange: pendingBefore } },
      );
      return null;
    case 'immediate': {
      // The unique (subscription, period start, reason) allows one change invoice per instant.
      const twin = await billingTables(trx)
        .selectFrom('invoices')
        .select('id')
        .where('subscription_id', '=', sub.id)
        .where('period_start', '=', at)
        .where('reason', '=', 'subscription_update')
        .executeTakeFirst();
      if (twin) {
        throw invalidState(
          `The plan of subscription ${sub.id} was already changed at ${isoSeconds(at)} (invoice ${twin.id}).`,
        );
      }
      const invoice = await ctx.finalize(trx, {
        sub,
        lines: planned.lines,
        tax: f.tax,
        marketCode: f.marketCode,
        testClock: f.testClockId !== null,
        at,
        reason: 'subscription_update',
      });
      const changed = await ctx.saveSubscription(
        trx,
        sub,
        { ...swap, current_period_start: planned.period.start, current_period_end: planned.period.end },
        at,
        'subscription.changed',
        {
          previousAttributes: {
            ...previous,
            currentPeriodStart: iso(sub.current_period_start),
            currentPeriodEnd: iso(sub.current_period_end),
          },
          invoice: invoice.id,
        },
      );
      // The job at the old period end finds the period moved and does nothing.
      await ctx.scheduleCycle(trx, changed, planned.period.end, f.testClockId);
      return invoice;
    }
  }
}

/**
 * At a period end, before the renewal is billed: a pending end-of-term change takes effect (plan,
 * product, billing period; the renewal then bills the new plan's price for a new subscriber at
 * that instant, and grandfathering restarts there). Returns the subscription as it now is.
 */
export async function applyPendingChange(
  ctx: BillingContext,
  trx: Executor,
  sub: SubscriptionsTable,
  now: Date,
): Promise<SubscriptionsTable> {
  if (!sub.pending_plan_id || !sub.pending_change_at) return sub;
  if (now.getTime() < sub.pending_change_at.getTime()) return sub;
  const [target, customer] = await Promise.all([
    ctx.catalog.getPlan(sub.pending_plan_id, trx),
    ctx.customers.account(sub.customer_id, trx),
  ]);
  const billingCycleDay = changeBillingCycleDay(
    { period: sub.billing_period, billingCycleDay: sub.billing_cycle_day },
    customer.billingCycleDay,
  );
  return ctx.saveSubscription(
    trx,
    sub,
    {
      plan_id: target.id,
      product_id: target.productId,
      billing_period: target.billingPeriod,
      billing_cycle_day: target.billingPeriod === 'week' ? null : billingCycleDay,
      plan_started_at: sub.pending_change_at,
      pending_plan_id: null,
      pending_change_at: null,
    },
    now,
    'subscription.changed',
    {
      previousAttributes: {
        plan: sub.plan_id,
        billingPeriod: sub.billing_period,
        pendingChange: { plan: target.id, effectiveAt: isoSeconds(sub.pending_change_at) },
      },
    },
  );
}
