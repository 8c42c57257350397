import type { Kysely } from 'kysely';
import { isUniqueViolation } from '../../db/errors.js';
import type { Db, Executor } from '../../db/schema.js';
import type { AppendInput, EventsOutbox } from '../../events/outbox.js';
import type { EventType, JsonObject } from '../../events/types.js';
import type { JobScheduler, ScheduleInput } from '../../jobs/scheduler.js';
import { assert } from '../../kernel/assert.js';
import { isoSeconds } from '../../kernel/clock.js';
import { invalidState } from '../../kernel/errors.js';
import { isIdOf, newId } from '../../kernel/ids.js';
import type { CatalogService } from '../catalog/service.js';
import type { CustomerService } from '../customers/service.js';
import type { LedgerService } from '../ledger/service.js';
import type { PaymentInput, PaymentService } from '../payments/service.js';
import { DEFAULT_RETRY_SCHEDULE, type RetrySchedule } from './domain/dunning.js';
import { validUntil } from './domain/entitlement.js';
import {
  creditAppliedEntry,
  finalizeCreditEntry,
  finalizeEntry,
  invoiceNumber,
  invoiceSeries,
} from './domain/entries.js';
import {
  type AssembledInvoice,
  assembleInvoice,
  type ChargeLine,
  lineNets,
  taxOfAmountDue,
} from './domain/invoice.js';
import type { SubscriptionState } from './domain/lifecycle.js';
import type { BillingSchedule } from './domain/periods.js';
import type { InvoiceNumbers } from './invoice-numbers.js';
import type { ChargeJobPayload } from './invoice-payments.js';
import { addRecognitionLines, invoiceRecognitionLines, LIVE_SCOPE, scopeOf } from './recognition.js';
import {
  type BillingTables,
  billingTables,
  type CreditNotesTable,
  type InvoiceLinesTable,
  type InvoicesTable,
  type SubscriptionsTable,
} from './tables.js';

export type Subscription = SubscriptionsTable & { members: string[] };
/** An invoice with its lines and, where read for display, its credit notes (refunds of its payment). */
export type Invoice = InvoicesTable & { lines: InvoiceLinesTable[]; creditNotes?: CreditNotesTable[] };

/** The job kinds of the billing module (their handlers are registered by `BillingService`). */
export const JOBS = {
  expireIncomplete: 'billing.expire_incomplete',
  settleCheckout: 'billing.settle_checkout',
  cycle: 'billing.cycle',
  chargeInvoice: 'billing.charge_invoice',
  trialWillEnd: 'billing.trial_will_end',
} as const;

/** What the charge job of a cycle invoice carries: the price it billed, stored on the subscription once paid. */
export interface ChargePayload {
  invoice: string;
  priceVersionId: string;
  priceMinor: number;
}

/** The subscription row, locked for the caller's transaction (subscription before invoice, always). */
export function lockSubscription(
  db: Kysely<BillingTables>,
  id: string,
): Promise<SubscriptionsTable | undefined> {
  return db.selectFrom('subscriptions').selectAll().where('id', '=', id).forUpdate().executeTakeFirst();
}

/** The invoice row, locked for the caller's transaction (it must exist). */
export function lockInvoice(db: Kysely<BillingTables>, id: string): Promise<InvoicesTable> {
  return db.selectFrom('invoices').selectAll().where('id', '=', id).forUpdate().executeTakeFirstOrThrow();
}

export function mustExist<T>(row: T | undefined): T {
  assert(row !== undefined, 'locked row does not exist');
  return row;
}

/** The fields of a subscription a use case may change (the version and `updated_at` follow). */
export type SubscriptionPatch = Partial<
  Omit<SubscriptionsTable, 'id' | 'customer_id' | 'version' | 'created_at' | 'updated_at' | 'request_key'>
>;

/** The fields of an invoice a use case may change after finalisation. */
export type InvoicePatch = Partial<Pick<InvoicesTable, 'status' | 'payment_id' | 'paid_at'>>;

/**
 * What every billing use case shares (ADR 0014): the module's tables, the modules it calls, and
 * the steps that must be done one way only: finalising an invoice (number, account credit,
 * ledger, events), saving a subscription or invoice with its next version and event.
 */
export class BillingContext {
  readonly tables: Kysely<BillingTables>;

  constructor(
    readonly db: Db,
    readonly jobs: JobScheduler,
    readonly customers: CustomerService,
    readonly catalog: CatalogService,
    readonly ledger: LedgerService,
    readonly payments: PaymentService,
    readonly events: EventsOutbox,
    /** Gapless invoice numbers, taken in blocks. */
    readonly numbers: InvoiceNumbers,
    /** When a failed renewal is retried (ADR 0014; `REPRISE_DUNNING_RETRY_DAYS`). */
    readonly dunning: RetrySchedule = DEFAULT_RETRY_SCHEDULE,
  ) {
    this.tables = billingTables(db);
  }

  /**
   * Saves a locked subscription with `patch`, its next version, and appends `event` (when given)
   * describing the result. Returns the row as saved.
   */
  async saveSubscription(
    trx: Executor,
    sub: SubscriptionsTable,
    patch: SubscriptionPatch,
    at: Date,
    event: EventType | null,
    extra: JsonObject = {},
    opts: { membersChanged?: boolean; previousMembers?: string[] } = {},
  ): Promise<SubscriptionsTable> {
    const next: SubscriptionsTable = { ...sub, ...patch, version: sub.version + 1, updated_at: at };
    await billingTables(trx)
      .updateTable('subscriptions')
      .set({ ...patch, version: next.version, updated_at: at })
      .where('id', '=', sub.id)
      .execute();
    if (event) await this.subscriptionEvent(trx, event, next, extra);
    if (entitlementChanged(sub, next, this.dunning) || opts.membersChanged) {
      await this.entitlementEvent(trx, next, opts.previousMembers);
    }
    return next;
  }

  /**
   * `entitlement.updated`: who a subscription entitles to what, until when, after a change of it
   * (activation, renewal, past_due, cancel, pause, plan or members). One event per subscription
   * change, ordered by the subscription's version; consumers (the entitlement projections) key it
   * by subscription and replace what they held for it. Members dropped are listed as `removed`.
   */
  async entitlementEvent(
    trx: Executor,
    sub: SubscriptionsTable,
    previousMembers: string[] = [],
  ): Promise<void> {
    await this.events.appendMany(trx, await this.entitlementEventInputs(trx, [{ sub, previousMembers }]));
  }

  /** `entitlement.updated` of each subscription as saved, in three reads whatever their number. */
  async entitlementEventInputs(
    trx: Executor,
    items: ReadonlyArray<{ sub: SubscriptionsTable; previousMembers?: string[] }>,
  ): Promise<AppendInput[]> {
    if (items.length === 0) return [];
    const subs = items.map((i) => i.sub);
    const [owners, products, members] = await Promise.all([
      this.customers.accounts(
        subs.map((s) => s.customer_id),
        trx,
      ),
      Promise.all([...new Set(subs.map((s) => s.product_id))].map((id) => this.catalog.getProduct(id, trx))),
      billingTables(trx)
        .selectFrom('subscription_members')
        .select(['subscription_id', 'external_id'])
        .where(
          'subscription_id',
          'in',
          subs.map((s) => s.id),
        )
        .orderBy('external_id')
        .execute(),
    ]);
    const productById = new Map(products.map((p) => [p.id, p]));
    return items.map(({ sub, previousMembers = [] }) => {
      const until = validUntil(stateOf(sub), this.dunning);
      const owner = owners.get(sub.customer_id);
      assert(owner !== undefined, `customer ${sub.customer_id} of ${sub.id}`);
      const product = productById.get(sub.product_id)!;
      const current = members.filter((m) => m.subscription_id === sub.id).map((m) => m.external_id);
      return {
        type: 'entitlement.updated' as const,
        aggregate: { type: 'entitlement', id: sub.id, version: sub.version },
        customerId: sub.customer_id,
        data: {
          object: {
            subscription: sub.id,
            owner: owner.externalId,
            members: current,
            removed: previousMembers.filter((m) => !current.includes(m)),
            product: sub.product_id,
            features: [...product.features].sort(),
            active: until !== null,
            validUntil: until ? isoSeconds(until) : null,
            status: sub.status,
            // Simulated time: projections do not cache what a test clock decides.
            testClock: owner.testClockId,
          },
        },
      };
    });
  }

  /** Saves a locked invoice with `patch` and its next version, and appends `event` when given. */
  async saveInvoice(
    trx: Executor,
    invoice: InvoicesTable,
    patch: InvoicePatch,
    at: Date,
    event: EventType | null,
  ): Promise<InvoicesTable> {
    const next: InvoicesTable = { ...invoice, ...patch, version: invoice.version + 1, updated_at: at };
    await billingTables(trx)
      .updateTable('invoices')
      .set({ ...patch, version: next.version, updated_at: at })
      .where('id', '=', invoice.id)
      .execute();
    if (event) await this.invoiceEvent(trx, event, next);
    return next;
  }

  async subscriptionEvent(
    trx: Executor,
    type: EventType,
    sub: SubscriptionsTable,
    extra: JsonObject = {},
  ): Promise<void> {
    await this.events.append(trx, subscriptionEventInput(type, sub, extra));
  }

  async invoiceEvent(trx: Executor, type: EventType, invoice: InvoicesTable): Promise<void> {
    await this.events.append(trx, invoiceEventInput(type, invoice));
  }

  /** The customer's account credit in `currency` (tax included), locked until commit when asked. */
  async accountCredit(trx: Executor, customerId: string, currency: string, lock = false): Promise<number> {
    let q = billingTables(trx)
      .selectFrom('account_credits')
      .select('balance_minor')
      .where('customer_id', '=', customerId)
      .where('currency', '=', currency);
    if (lock) q = q.forUpdate();
    return (await q.executeTakeFirst())?.balance_minor ?? 0;
  }

  /**
   * Moves the customer's account credit by `deltaMinor` (the ledger's `customer_credit` posting is
   * the caller's): one statement, so it never reads a stale balance. Below 0 is refused by the
   * table's check.
   */
  async addAccountCredit(
    trx: Executor,
    customerId: string,
    currency: string,
    deltaMinor: number,
    at: Date,
  ): Promise<void> {
    const db = billingTables(trx);
    if (deltaMinor < 0) {
      // Spending credit: the row exists (the check on a proposed insert would refuse a negative).
      await db
        .updateTable('account_credits')
        .set((eb) => ({ balance_minor: eb('balance_minor', '+', deltaMinor), updated_at: at }))
        .where('customer_id', '=', customerId)
        .where('currency', '=', currency)
        .executeTakeFirstOrThrow();
      return;
    }
    await db
      .insertInto('account_credits')
      .values({ customer_id: customerId, currency, balance_minor: deltaMinor, updated_at: at })
      .onConflict((oc) =>
        oc.columns(['customer_id', 'currency']).doUpdateSet((eb) => ({
          balance_minor: eb('account_credits.balance_minor', '+', deltaMinor),
          updated_at: at,
        })),
      )
      .execute();
  }

  /**
   * Assembles and stores an invoice, finalised: the customer's account credit applied first (or
   * created by a negative total), numbered from its series (`InvoiceNumbers`: gapless, taken in
   * blocks), booked, `invoice.created` and
   * `invoice.finalized` (and `invoice.paid` when nothing is due or `paid` says it is settled).
   */
  async finalize(
    trx: Executor,
    p: {
      sub: SubscriptionsTable;
      lines: readonly ChargeLine[];
      tax: { rateBps: number; inclusive: boolean };
      marketCode: string;
      testClock: boolean;
      at: Date;
      reason: InvoicesTable['reason'];
    },
  ): Promise<InvoicesTable> {
    const { sub, at } = p;
    const credit = await this.accountCredit(trx, sub.customer_id, sub.currency, true);
    const a: AssembledInvoice = assembleInvoice({
      currency: sub.currency,
      tax: p.tax,
      lines: p.lines,
      accountCreditMinor: credit,
    });
    const series = invoiceSeries(p.marketCode, at, p.testClock);
    const number = await this.numbers.next(trx, series);
    const built = buildInvoice({ sub, assembled: a, series, number, at, reason: p.reason });
    const scope = p.testClock ? await scopeOf(this, trx, sub.customer_id) : LIVE_SCOPE;
    try {
      await this.storeFinalized(trx, [built], scope, at);
    } catch (error) {
      // One invoice per (subscription, period start, reason): a second pause, resume or change at
      // the same instant (a frozen test clock, two requests at once) is refused, not a 500.
      if (isUniqueViolation(error)) {
        throw invalidState(
          `Subscription ${sub.id} already has a ${p.reason} invoice from ${at.toISOString()}; retry in a moment.`,
        );
      }
      throw error;
    }
    const { invoice } = built;
    if (a.creditAppliedMinor > 0)
      await this.ledger.post(trx, creditAppliedEntry(factsOf(invoice), a.creditAppliedMinor, at));
    if (a.accountCreditAfterMinor !== credit) {
      await this.addAccountCredit(trx, sub.customer_id, sub.currency, a.accountCreditAfterMinor - credit, at);
    }
    return invoice;
  }

  /**
   * Stores finalised invoices (built by `buildInvoice`, numbered) in a fixed number of statements
   * whatever their count: the invoices, their lines, their revenue to recognise in `scope`, their
   * ledger entries, and `invoice.created`, `invoice.finalized` (and `invoice.paid` when nothing is
   * due). The account credit they applied or created is the caller's.
   */
  async storeFinalized(
    trx: Executor,
    built: readonly BuiltInvoice[],
    scope: string,
    at: Date,
  ): Promise<void> {
    if (built.length === 0) return;
    const db = billingTables(trx);
    await db
      .insertInto('invoices')
      .values(built.map((b) => b.invoice))
      .execute();
    await db
      .insertInto('invoice_lines')
      .values(built.flatMap((b) => b.lines))
      .execute();
    // Revenue of the lines, recognised daily from here (deferred until served).
    await addRecognitionLines(
      this,
      trx,
      scope,
      built.flatMap((b) => invoiceRecognitionLines(b.invoice, b.lines)),
      at,
    );
    const entries = built.flatMap(({ invoice }) => {
      const facts = factsOf(invoice);
      const entry = invoice.total_minor < 0 ? finalizeCreditEntry(facts, at) : finalizeEntry(facts, at);
      return entry ? [entry] : [];
    });
    await this.ledger.postBatch(trx, entries);
    await this.events.appendMany(
      trx,
      built.flatMap(({ invoice }) => {
        const open = { ...invoice, status: 'open' as const, paid_at: null };
        return [
          invoiceEventInput('invoice.created', { ...open, version: 1 }),
          invoiceEventInput('invoice.finalized', { ...open, version: 2 }),
          ...(invoice.status === 'paid' ? [invoiceEventInput('invoice.paid', invoice)] : []),
        ];
      }),
    );
  }

  /**
   * The payment of an open invoice: its amount due, tax part in proportion (the invoice decided its
   * tax; account credit paid the rest). Null when nothing is due.
   */
  chargeOf(invoice: InvoicesTable, paymentMethod: string | undefined): PaymentInput | null {
    if (invoice.status !== 'open' || invoice.amount_due_minor === 0) return null;
    return {
      customer: invoice.customer_id,
      amount: invoice.amount_due_minor,
      taxMinor: taxOfAmountDue({
        totalMinor: invoice.total_minor,
        taxMinor: invoice.tax_minor,
        amountDueMinor: invoice.amount_due_minor,
      }),
      currency: invoice.currency,
      paymentMethod,
      description: `Invoice ${invoice.number}`,
      reference: invoice.id,
    };
  }

  /** The cycle job of the period ending at `at` (one per subscription and period end). */
  async scheduleCycle(
    trx: Executor,
    sub: SubscriptionsTable,
    at: Date,
    testClockId: string | null,
  ): Promise<void> {
    await this.jobs.schedule(trx, cycleJob(sub, at, testClockId));
  }

  async customerId(ref: string): Promise<string> {
    if (isIdOf('customer', ref)) return ref;
    return (await this.customers.account(ref)).id;
  }
}

/** Whether a save changed what the subscription entitles (status, until when, product). */
export function entitlementChanged(
  before: SubscriptionsTable,
  after: SubscriptionsTable,
  dunning: RetrySchedule,
): boolean {
  const a = validUntil(stateOf(before), dunning);
  const b = validUntil(stateOf(after), dunning);
  return a?.getTime() !== b?.getTime() || before.product_id !== after.product_id;
}

/** A stored subscription's billing schedule: every boundary derives from its anchor and day. */
export function scheduleOf(row: SubscriptionsTable): BillingSchedule {
  return { anchor: row.billing_anchor, period: row.billing_period, billingCycleDay: row.billing_cycle_day };
}

/** The lifecycle state of a stored subscription. */
export function stateOf(row: SubscriptionsTable): SubscriptionState {
  return {
    status: row.status,
    createdAt: row.created_at,
    trialEnd: row.trial_end,
    currentPeriodStart: row.current_period_start,
    currentPeriodEnd: row.current_period_end,
    cancelAt: row.cancel_at,
    endedAt: row.ended_at,
    pausedAt: row.paused_at,
    pastDueSince: row.past_due_since,
  };
}

const iso = (d: Date | null): string | null => (d ? isoSeconds(d) : null);

/** Event payloads: ids, statuses and amounts only (events never carry personal data). */
export function subscriptionObject(s: SubscriptionsTable): JsonObject {
  return {
    id: s.id,
    customer: s.customer_id,
    plan: s.plan_id,
    status: s.status,
    currentPeriodStart: iso(s.current_period_start),
    currentPeriodEnd: iso(s.current_period_end),
    trialEnd: iso(s.trial_end),
    cancelAt: iso(s.cancel_at),
  };
}

/** A subscription event as the outbox takes it. */
export function subscriptionEventInput(
  type: EventType,
  sub: SubscriptionsTable,
  extra: JsonObject = {},
): AppendInput {
  assert(type.startsWith('subscription.'), `${type} is not a subscription event`);
  return {
    type,
    aggregate: { type: 'subscription', id: sub.id, version: sub.version },
    customerId: sub.customer_id,
    data: { object: subscriptionObject(sub), ...extra },
  };
}

/** The cycle job of the period of `sub` ending at `at` (one per subscription and period end). */
export function cycleJob(
  sub: Pick<SubscriptionsTable, 'id' | 'customer_id'>,
  at: Date,
  testClockId: string | null,
): ScheduleInput {
  return {
    kind: JOBS.cycle,
    runAt: at,
    customerId: sub.customer_id,
    testClockId,
    payload: { subscription: sub.id },
    dedupeKey: `${JOBS.cycle}:${sub.id}:${at.getTime()}`,
  };
}

/** The charge job of an open invoice (one per invoice; a retry of dunning carries its number). */
export function chargeJob(
  invoice: Pick<InvoicesTable, 'id' | 'customer_id'>,
  runAt: Date,
  testClockId: string | null,
): ScheduleInput & { dedupeKey: string } {
  const payload: ChargeJobPayload = { invoice: invoice.id };
  return {
    kind: JOBS.chargeInvoice,
    runAt,
    customerId: invoice.customer_id,
    testClockId,
    payload,
    dedupeKey: `${JOBS.chargeInvoice}:${invoice.id}`,
  };
}

/** An invoice event as the outbox takes it. */
export function invoiceEventInput(type: EventType, invoice: InvoicesTable): AppendInput {
  assert(type.startsWith('invoice.'), `${type} is not an invoice event`);
  return {
    type,
    aggregate: { type: 'invoice', id: invoice.id, version: invoice.version },
    customerId: invoice.customer_id,
    data: { object: invoiceObject(invoice) },
  };
}

/** A finalised invoice and its lines, ready to store (`BillingContext.storeFinalized`). */
export interface BuiltInvoice {
  invoice: InvoicesTable;
  lines: InvoiceLinesTable[];
}

/**
 * The rows of an assembled invoice, finalised at `at` with its number: `paid` when nothing is due.
 * Each charge line carries its net (the invoice's tax spread by cumulative rounding; `lineNets`
 * follows the charge lines in order, which come first); tax and credit_applied lines carry none.
 */
export function buildInvoice(p: {
  sub: Pick<SubscriptionsTable, 'id' | 'customer_id'>;
  assembled: AssembledInvoice;
  series: string;
  number: number;
  at: Date;
  reason: InvoicesTable['reason'];
}): BuiltInvoice {
  const { assembled: a, at } = p;
  const paid = a.amountDueMinor === 0;
  const invoice: InvoicesTable = {
    id: newId('invoice'),
    series: p.series,
    number: invoiceNumber(p.series, p.number),
    customer_id: p.sub.customer_id,
    subscription_id: p.sub.id,
    reason: p.reason,
    status: paid ? 'paid' : 'open',
    currency: a.currency,
    tax_rate_bps: a.taxRateBps,
    tax_inclusive: a.taxInclusive,
    subtotal_minor: a.subtotalMinor,
    tax_minor: a.taxMinor,
    total_minor: a.totalMinor,
    net_minor: a.netMinor,
    credit_applied_minor: a.creditAppliedMinor,
    credit_created_minor: a.creditCreatedMinor,
    amount_due_minor: a.amountDueMinor,
    period_start: a.periodStart,
    period_end: a.periodEnd,
    payment_id: null,
    attempts: 0,
    scheduled_attempts: 0,
    // invoice.created (1), invoice.finalized (2), invoice.paid (3) when nothing is due.
    version: paid ? 3 : 2,
    finalized_at: at,
    paid_at: paid ? at : null,
    created_at: at,
    updated_at: at,
  };
  const nets = lineNets(a);
  const lines: InvoiceLinesTable[] = a.lines.map((l, position) => ({
    invoice_id: invoice.id,
    position,
    kind: l.kind,
    description: l.description,
    period_start: l.periodStart,
    period_end: l.periodEnd,
    amount_minor: l.amountMinor,
    net_minor: l.kind === 'tax' || l.kind === 'credit_applied' ? 0 : (nets[position] ?? 0),
  }));
  return { invoice, lines };
}

function factsOf(invoice: InvoicesTable) {
  return {
    id: invoice.id,
    customerId: invoice.customer_id,
    currency: invoice.currency,
    totalMinor: invoice.total_minor,
    taxMinor: invoice.tax_minor,
    netMinor: invoice.net_minor,
  };
}

export function invoiceObject(i: InvoicesTable): JsonObject {
  return {
    id: i.id,
    number: i.number,
    customer: i.customer_id,
    subscription: i.subscription_id,
    status: i.status,
    currency: i.currency,
    subtotal: i.subtotal_minor,
    tax: i.tax_minor,
    total: i.total_minor,
    amountDue: i.amount_due_minor,
    payment: i.payment_id,
  };
}
