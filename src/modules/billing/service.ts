import { type Kysely, sql } from 'kysely';
import type { Before } from '../../db/keyset.js';
import type { Db, Executor } from '../../db/schema.js';
import { transact } from '../../db/transaction.js';
import type { EventsOutbox } from '../../events/outbox.js';
import type { JobScheduler } from '../../jobs/scheduler.js';
import { canonicalJson, sha256Hex } from '../../kernel/canonical-json.js';
import { type Clock, systemClock } from '../../kernel/clock.js';
import { DomainError, invalid, invalidState, notFound } from '../../kernel/errors.js';
import { newId } from '../../kernel/ids.js';
import { commitInTransaction } from '../../workflows/commit.js';
import { payInvoiceWorkflow } from '../../workflows/pay-invoice.js';
import type { CatalogService } from '../catalog/service.js';
import type { CustomerService } from '../customers/service.js';
import type { LedgerService } from '../ledger/service.js';
import type { Payment, PaymentInput, PaymentService } from '../payments/service.js';
import {
  CANCEL_JOBS,
  type Canceled,
  type CancelInput,
  type CancelRefund,
  cancelDue,
  cancelSubscription,
  reactivateSubscription,
  refundCancel,
  refundCancelJob,
} from './cancel.js';
import {
  applyPendingChange,
  type ChangeInput,
  type ChangePreview,
  type OpenedChange,
  openChange,
  previewChange,
} from './changes.js';
import {
  BillingContext,
  chargeJob,
  type Invoice,
  JOBS,
  lockInvoice,
  lockSubscription,
  mustExist,
  type Subscription,
  scheduleOf,
  stateOf,
} from './context.js';
import { creditNoteForRefund, creditNotesOf } from './credit-notes.js';
import { DEFAULT_RETRY_DAYS, retrySchedule } from './domain/dunning.js';
import { validUntil } from './domain/entitlement.js';
import { invoicePaymentKey, paidEntry, voidEntry } from './domain/entries.js';
import type { ChargeLine } from './domain/invoice.js';
import { applyEvent, incompleteExpiresAt, newSubscription } from './domain/lifecycle.js';
import { billingAnchor, DAY_MS, periodByIndex, trialEndFor } from './domain/periods.js';
import { periodFrom } from './domain/plan-change.js';
import { recurringLine } from './domain/proration.js';
import { InvoiceNumbers } from './invoice-numbers.js';
import {
  type ChargeCause,
  type ChargeClaim,
  type ChargeJobPayload,
  claimCharge,
  type InvoicePaymentOutcome,
  settleInvoice,
  settlePaidAtFinalize,
} from './invoice-payments.js';
import { addMember, removeMember } from './members.js';
import {
  type OpenedResume,
  openResume,
  PAUSE_JOBS,
  type PauseJob,
  pauseDue,
  requestPause,
  resumeDue,
} from './pause-resume.js';
import { RECOGNIZE_JOB, recognizeScope, reverseInvoiceRecognition } from './recognition.js';
import {
  chargeBatch,
  RENEWAL_BATCH_DEFAULT,
  RENEWAL_CONCURRENCY_DEFAULT,
  RENEWAL_LEASE_MS_DEFAULT,
  renewBatch,
} from './renewals.js';
import {
  churnedPerDay,
  customerRefs,
  type DayCount,
  type DunningEntry,
  dunningQueue,
  invoicesPage,
  type SubscriptionGroup,
  startedPerDay,
  subscriptionGroups,
  subscriptionsPage,
} from './reports.js';
import { type BillingTables, billingTables, type InvoicesTable, type SubscriptionsTable } from './tables.js';
import { type UpcomingRenewal, upcomingRenewal } from './upcoming.js';

export type { DayCount, DunningEntry, Invoice, Subscription, SubscriptionGroup, UpcomingRenewal };

export interface CheckoutInput {
  customer: string;
  plan: string;
  paymentMethod?: string | undefined;
}

/** What the checkout workflow charges next, if anything. */
export interface OpenedCheckout {
  subscriptionId: string;
  invoiceId: string;
  /** The first invoice's charge, or null when nothing is due (a trial, a 0 price) or it is settled. */
  charge: PaymentInput | null;
  /** What the charge must come to: the invoice's amount due. */
  amountDueMinor: number;
}

export interface CheckoutOutcome {
  subscription: Subscription;
  invoice: Invoice;
  /** The decline code when the first charge was declined (the subscription stays incomplete). */
  declineCode: string | null;
  payment: string | null;
}

/** A subscription's entitlement, as the entitlements module reads it. */
/** A subscription as the entitlement projection holds it (see `entitlementRecords`). */
export interface EntitlementRecord {
  subscription: string;
  /** The subscription's version: the `entitlement.updated` event of this version says the same. */
  version: number;
  role: 'owner' | 'member';
  productId: string;
  /** Until when it entitles (renewal margin included), or null when it does not. */
  validUntil: Date | null;
  /** The owner's test clock: such a subscription's time is simulated (never cached). */
  testClock: string | null;
}

export interface EntitlementSource {
  subscription: string;
  productId: string;
  role: 'owner' | 'member';
  validUntil: Date;
}

/** After every charge deadline of a first payment (attempts × provider timeout + margin). */
const SETTLE_AFTER_MS = 15 * 60_000;
/** As long as the payments module reconciles a payment. */
const SETTLE_RETRY_FOR_MS = 3 * 24 * 3_600_000;
/** A first payment still in flight at expiry: look again this much later. */
const EXPIRY_RECHECK_MS = 3_600_000;

/** `subscription.trial_will_end` goes out this long before the trial ends. */
const TRIAL_NOTICE_MS = 3 * DAY_MS;

/** Subscriptions a customer or member holds that entitlements look at, at most. */
const SOURCES_MAX = 100;
/** Subscriptions that no longer entitle, per id, the projection keeps as tombstones. */
const RECORDS_ENDED_MAX = 20;

/**
 * The billing module's door (ADR 0014): subscriptions and invoices. Checkout is a workflow
 * (`src/workflows/checkout.ts`): `openCheckout` (its own transaction) → the payments module's
 * start → charge → finish → `completeCheckout` (in the caller's unit of work).
 */
export class BillingService {
  readonly #db: Db;
  readonly #tables: Kysely<BillingTables>;
  readonly ctx: BillingContext;
  /** Gapless invoice numbers in blocks; `release()` them on shutdown. */
  readonly numbers: InvoiceNumbers;

  constructor(
    db: Db,
    readonly jobs: JobScheduler,
    readonly customers: CustomerService,
    readonly catalog: CatalogService,
    readonly ledger: LedgerService,
    readonly payments: PaymentService,
    readonly events: EventsOutbox,
    opts: {
      retryDays?: readonly number[] | undefined;
      clock?: Clock | undefined;
      numberBlock?: number | undefined;
      renewalBatch?: number | undefined;
      renewalConcurrency?: number | undefined;
      renewalLeaseMs?: number | undefined;
    } = {},
  ) {
    this.#db = db;
    this.#tables = billingTables(db);
    const dunning = retrySchedule(opts.retryDays ?? DEFAULT_RETRY_DAYS, 'REPRISE_DUNNING_RETRY_DAYS');
    this.numbers = new InvoiceNumbers(db, opts.clock ?? systemClock, { blockSize: opts.numberBlock });
    this.ctx = new BillingContext(
      db,
      jobs,
      customers,
      catalog,
      ledger,
      payments,
      events,
      this.numbers,
      dunning,
    );
    jobs.register(JOBS.expireIncomplete, (job, { trx, now }) =>
      this.expireIncomplete(trx, (job.payload as { subscription: string }).subscription, now),
    );
    // Retried while the first payment is in flight: the payments reconciliation converges it.
    jobs.register(
      JOBS.settleCheckout,
      (job, { trx, now }) =>
        this.settleCheckout(trx, (job.payload as { subscription: string }).subscription, now),
      { retryForMs: SETTLE_RETRY_FOR_MS },
    );
    jobs.register(JOBS.trialWillEnd, (job, { trx, now }) =>
      this.trialWillEnd(trx, (job.payload as { subscription: string }).subscription, now),
    );
    jobs.register(JOBS.cycle, (job, { trx, now }) =>
      this.invoiceCycle(trx, (job.payload as { subscription: string }).subscription, now),
    );
    // Wall-clock renewals run as a pipeline of batches (renewals.ts); a test clock's one by one.
    const concurrency = opts.renewalConcurrency ?? RENEWAL_CONCURRENCY_DEFAULT;
    const leaseMs = opts.renewalLeaseMs ?? RENEWAL_LEASE_MS_DEFAULT;
    jobs.registerBatch(
      JOBS.cycle,
      (claimed, now) => renewBatch(this, claimed, now, { concurrency, leaseMs }),
      {
        size: opts.renewalBatch ?? RENEWAL_BATCH_DEFAULT,
        leaseMs,
        // One batch writes while the other waits on the provider.
        parallel: 2,
      },
    );
    // Talks to the provider: no transaction held while it waits; retried while the charge is in flight.
    jobs.register(RECOGNIZE_JOB, async (job, { trx, now }) => {
      await recognizeScope(this.ctx, trx, (job.payload as { scope: string }).scope, now);
    });
    // A refund of an invoice's payment is a credit note on it, in the refund's transaction.
    payments.onRefunded((trx, refund) => creditNoteForRefund(this.ctx, trx, refund));
    jobs.register(JOBS.chargeInvoice, (job) => this.chargeInvoiceJob(job.payload as ChargeJobPayload), {
      external: true,
      retryForMs: SETTLE_RETRY_FOR_MS,
    });
    // Wall-clock charge jobs (a renewal batch's leftovers, dunning retries) in batches too.
    jobs.registerBatch(
      JOBS.chargeInvoice,
      (claimed, now) => chargeBatch(this, claimed, now, { concurrency }),
      {
        size: 50,
        leaseMs,
      },
    );
    jobs.register(CANCEL_JOBS.due, (job, { trx, now }) =>
      cancelDue(this.ctx, trx, (job.payload as { subscription: string }).subscription, now),
    );
    // Calls the provider: no transaction held; retried while the refund's outcome is unknown.
    jobs.register(CANCEL_JOBS.refund, (job) => refundCancelJob(this.ctx, job.payload as CancelRefund), {
      external: true,
      retryForMs: SETTLE_RETRY_FOR_MS,
    });
    jobs.register(PAUSE_JOBS.pause, (job, { trx }) => pauseDue(this.ctx, trx, job.payload as PauseJob));
    // Its charge, if any, is the charge job's (pay-invoice workflow).
    jobs.register(PAUSE_JOBS.resume, (job, { trx }) => resumeDue(this.ctx, trx, job.payload as PauseJob));
  }

  /** Pauses now, or schedules a pause at `at` (checked now and again then). */
  pause(trx: Executor, id: string, at: string | null | undefined) {
    return requestPause(this.ctx, trx, id, at);
  }

  /** The resume's first step, in a transaction of its own: its invoice finalised, or a resume scheduled. */
  openResume(id: string, at: string | null | undefined): Promise<OpenedResume> {
    return transact(this.#db, (trx) => openResume(this.ctx, trx, id, at));
  }

  // ---- cancel, reactivate, members, pause, resume (cancel.ts, members.ts, pause-resume.ts)

  /** Cancels now or at the term end, in the caller's transaction; a refund owed is run by `refundCancel`. */
  cancel(trx: Executor, id: string, input: CancelInput): Promise<Canceled> {
    return cancelSubscription(this.ctx, trx, id, input);
  }

  /** Cancels in a transaction of its own (the first step of the cancel workflow). */
  cancelNow(id: string, input: CancelInput): Promise<Canceled> {
    return transact(this.#db, (trx) => cancelSubscription(this.ctx, trx, id, input));
  }

  refundCancel(refund: CancelRefund) {
    return refundCancel(this.ctx, refund);
  }

  reactivate(trx: Executor, id: string) {
    return reactivateSubscription(this.ctx, trx, id);
  }

  addMember(trx: Executor, id: string, externalId: string): Promise<void> {
    return addMember(this.ctx, trx, id, externalId);
  }

  removeMember(trx: Executor, id: string, externalId: string): Promise<void> {
    return removeMember(this.ctx, trx, id, externalId);
  }

  /**
   * Creates the subscription and its first invoice, finalised (numbered, booked), or finds the
   * ones this request key created (same input only). With a trial the customer never had for
   * this product, the subscription is trialing at once on a paid 0 invoice.
   */
  async openCheckout(input: CheckoutInput, requestKey: string | null): Promise<OpenedCheckout> {
    const hash = sha256Hex(canonicalJson(input));
    if (requestKey) {
      const existing = await this.#tables
        .selectFrom('subscriptions')
        .selectAll()
        .where('request_key', '=', requestKey)
        .executeTakeFirst();
      if (existing) return this.#resume(existing, hash, input);
    }
    const customer = await this.customers.account(input.customer);
    if (customer.erasedAt) throw invalidState(`Customer ${customer.id} was erased.`);
    const plan = await this.catalog.getPlan(input.plan);
    const product = await this.catalog.getProduct(plan.productId);
    const now = await this.customers.now(customer.id);
    const price = await this.catalog.priceFor(plan.id, { market: customer.marketId, at: now });
    const market = price.market;
    const hadTrial = await this.#tables
      .selectFrom('trial_usage')
      .select('subscription_id')
      .where('customer_id', '=', customer.id)
      .where('product_id', '=', product.id)
      .executeTakeFirst();
    const trialEnd = hadTrial ? null : trialEndFor(now, plan.trialDays);
    if (!trialEnd) await this.#checkMethod(customer.id, input.paymentMethod);

    const anchor = billingAnchor({ startedAt: now, trialEnd });
    let line: ChargeLine;
    if (trialEnd) {
      line = {
        kind: 'recurring',
        description: `${plan.name} trial ${now.toISOString().slice(0, 10)} – ${trialEnd.toISOString().slice(0, 10)}`,
        periodStart: now,
        periodEnd: trialEnd,
        amountMinor: 0,
      };
    } else {
      const first = periodByIndex(
        { anchor, period: plan.billingPeriod, billingCycleDay: customer.billingCycleDay },
        0,
      );
      line = recurringLine({ name: plan.name, priceMinor: price.amountMinor }, first);
    }
    const state = newSubscription({ createdAt: now, trialEnd });
    const sub: SubscriptionsTable = {
      id: newId('subscription'),
      customer_id: customer.id,
      plan_id: plan.id,
      product_id: product.id,
      price_version_id: price.priceVersionId,
      price_minor: price.amountMinor,
      currency: price.currency,
      status: state.status,
      billing_period: plan.billingPeriod,
      billing_anchor: anchor,
      billing_cycle_day: plan.billingPeriod === 'week' ? null : customer.billingCycleDay,
      current_period_start: state.currentPeriodStart,
      current_period_end: state.currentPeriodEnd,
      trial_end: trialEnd,
      cancel_at: null,
      ended_at: null,
      paused_at: null,
      past_due_since: null,
      version: 1,
      request_key: requestKey,
      request_hash: requestKey ? hash : null,
      created_at: now,
      updated_at: now,
      pending_plan_id: null,
      pending_change_at: null,
      plan_started_at: null,
    };
    return transact(this.#db, async (trx) => {
      const db = billingTables(trx);
      const inserted = await db
        .insertInto('subscriptions')
        .values(sub)
        .onConflict((oc) => oc.column('request_key').doNothing())
        .returningAll()
        .executeTakeFirst();
      if (!inserted) {
        // A concurrent twin of this request created it first.
        const twin = await db
          .selectFrom('subscriptions')
          .selectAll()
          .where('request_key', '=', requestKey)
          .executeTakeFirstOrThrow();
        return this.#resume(twin, hash, input, trx);
      }
      if (trialEnd) {
        const claimed = await db
          .insertInto('trial_usage')
          .values({
            customer_id: customer.id,
            product_id: product.id,
            subscription_id: sub.id,
            created_at: now,
          })
          .onConflict((oc) => oc.columns(['customer_id', 'product_id']).doNothing())
          .returning('subscription_id')
          .executeTakeFirst();
        // Another checkout of the same customer and product took the trial meanwhile.
        if (!claimed)
          throw invalidState('A trial of this product was just started for this customer; retry.');
      }
      const invoice = await this.ctx.finalize(trx, {
        sub,
        lines: [line],
        tax: { rateBps: market.taxRateBps, inclusive: market.taxInclusive },
        marketCode: market.code,
        testClock: customer.testClockId !== null,
        at: now,
        reason: 'subscription_create',
      });
      await this.ctx.subscriptionEvent(trx, 'subscription.created', sub);
      if (sub.status === 'trialing') await this.ctx.entitlementEvent(trx, sub);
      if (sub.status === 'incomplete' && invoice.status === 'paid') {
        // Nothing due (account credit paid it all): active at once.
        await this.#markPaid(trx, sub, invoice, null, now);
        return {
          subscriptionId: sub.id,
          invoiceId: invoice.id,
          charge: null,
          amountDueMinor: 0,
        };
      }
      if (trialEnd) {
        const notice = new Date(trialEnd.getTime() - TRIAL_NOTICE_MS);
        if (notice.getTime() > now.getTime()) {
          await this.jobs.schedule(trx, {
            kind: JOBS.trialWillEnd,
            runAt: notice,
            customerId: sub.customer_id,
            testClockId: customer.testClockId,
            payload: { subscription: sub.id },
            dedupeKey: `${JOBS.trialWillEnd}:${sub.id}`,
          });
        }
        await this.ctx.scheduleCycle(trx, sub, trialEnd, customer.testClockId);
      }
      if (sub.status === 'incomplete') {
        // Completes the checkout if the request dies after the charge and the client never retries.
        await this.jobs.schedule(trx, {
          kind: JOBS.settleCheckout,
          runAt: new Date(now.getTime() + SETTLE_AFTER_MS),
          customerId: sub.customer_id,
          testClockId: customer.testClockId,
          payload: { subscription: sub.id },
          dedupeKey: `${JOBS.settleCheckout}:${sub.id}`,
        });
        await this.jobs.schedule(trx, {
          kind: JOBS.expireIncomplete,
          runAt: incompleteExpiresAt(now),
          customerId: sub.customer_id,
          testClockId: customer.testClockId,
          payload: { subscription: sub.id },
          dedupeKey: `${JOBS.expireIncomplete}:${sub.id}`,
        });
      }
      return {
        subscriptionId: sub.id,
        invoiceId: invoice.id,
        charge: this.ctx.chargeOf(invoice, input.paymentMethod),
        amountDueMinor: invoice.amount_due_minor,
      };
    });
  }

  /**
   * The first invoice's charge came back (or nothing was due): invoice paid and subscription
   * active, with the ledger and events; or, declined, the subscription stays incomplete. Runs in
   * the caller's transaction (the request's unit of work), after the payment was recorded there.
   */
  async completeCheckout(
    trx: Executor,
    subscriptionId: string,
    invoiceId: string,
    payment: Payment | null,
  ): Promise<CheckoutOutcome> {
    const db = billingTables(trx);
    const sub = await lockSubscription(db, subscriptionId).then(mustExist);
    const invoice = await lockInvoice(db, invoiceId);
    let declineCode: string | null = null;
    if (sub.status === 'incomplete' && invoice.status === 'open') {
      const now = await this.customers.now(sub.customer_id, trx);
      if (payment?.captured) {
        await this.#markPaid(trx, sub, invoice, payment, now);
      } else if (payment?.status === 'failed') {
        declineCode = payment.decline_code ?? 'card_declined';
        await db
          .updateTable('invoices')
          .set({ payment_id: payment.id, updated_at: now })
          .where('id', '=', invoice.id)
          .execute();
      }
    }
    return {
      subscription: await this.getSubscription(subscriptionId, trx),
      invoice: await this.getInvoice(invoiceId, trx),
      declineCode,
      payment: payment?.id ?? null,
    };
  }

  /**
   * The checkout's reconciliation: a first payment captured while nobody was waiting for its
   * answer (the request died, the provider answered late) activates the subscription; one still
   * in flight fails this job so it is retried; a decline or no payment leaves it to the expiry.
   */
  async settleCheckout(trx: Executor, subscriptionId: string, now: Date): Promise<void> {
    const signUp = await this.#unpaidSignUp(trx, subscriptionId, now);
    if (signUp?.inFlight) {
      throw new Error(
        `checkout ${subscriptionId}: payment ${signUp.payment?.id} is still ${signUp.payment?.status}`,
      );
    }
  }

  /**
   * 23 hours after an unpaid sign-up: the subscription expires and its invoice is voided (its
   * finalisation reversed). A first payment the provider captured meanwhile (its answer was lost,
   * then reconciled) activates the subscription instead; one still in flight postpones this by an
   * hour: money is never kept without a subscription.
   */
  async expireIncomplete(trx: Executor, subscriptionId: string, now: Date): Promise<void> {
    const signUp = await this.#unpaidSignUp(trx, subscriptionId, now);
    if (!signUp) return;
    const { db, sub, invoice } = signUp;
    if (signUp.inFlight) {
      await this.jobs.schedule(trx, {
        kind: JOBS.expireIncomplete,
        runAt: new Date(now.getTime() + EXPIRY_RECHECK_MS),
        customerId: sub.customer_id,
        testClockId: (await this.customers.account(sub.customer_id, trx)).testClockId,
        payload: { subscription: sub.id },
        dedupeKey: `${JOBS.expireIncomplete}:${sub.id}:${now.getTime()}`,
      });
      return;
    }
    const state = applyEvent(stateOf(sub), { type: 'expire_incomplete', at: now });
    const expired: SubscriptionsTable = {
      ...sub,
      status: state.status,
      ended_at: state.endedAt,
      version: sub.version + 1,
      updated_at: now,
    };
    await db
      .updateTable('subscriptions')
      .set({ status: expired.status, ended_at: expired.ended_at, version: expired.version, updated_at: now })
      .where('id', '=', sub.id)
      .execute();
    if (invoice.status === 'open') {
      await db
        .updateTable('invoices')
        .set({ status: 'void', version: invoice.version + 1, updated_at: now })
        .where('id', '=', invoice.id)
        .execute();
      await this.ctx.invoiceEvent(trx, 'invoice.voided', {
        ...invoice,
        status: 'void',
        version: invoice.version + 1,
        updated_at: now,
      });
      const entry = voidEntry(
        {
          id: invoice.id,
          customerId: invoice.customer_id,
          currency: invoice.currency,
          totalMinor: invoice.total_minor,
          taxMinor: invoice.tax_minor,
          netMinor: invoice.net_minor,
        },
        now,
      );
      if (entry) await this.ledger.post(trx, entry);
      await reverseInvoiceRecognition(this.ctx, trx, invoice, now);
    }
    await this.ctx.subscriptionEvent(trx, 'subscription.expired', expired);
  }

  /**
   * An `incomplete` sign-up, locked (subscription, then its first invoice), with its first payment.
   * A payment the provider captured meanwhile activates it here and null is returned, as for a
   * subscription that is no longer incomplete; `inFlight`: the payment may still be captured.
   */
  async #unpaidSignUp(trx: Executor, subscriptionId: string, now: Date) {
    const db = billingTables(trx);
    const sub = await lockSubscription(db, subscriptionId);
    if (sub?.status !== 'incomplete') return null;
    const invoice = await db
      .selectFrom('invoices')
      .selectAll()
      .where('subscription_id', '=', sub.id)
      .where('reason', '=', 'subscription_create')
      .forUpdate()
      .executeTakeFirstOrThrow();
    const payment = await this.payments.byRequestKey(invoicePaymentKey(invoice.id), trx);
    if (payment?.captured) {
      await this.#markPaid(trx, sub, invoice, payment, now);
      return null;
    }
    const inFlight =
      payment !== undefined &&
      payment !== null &&
      (payment.status === 'processing' || payment.status === 'authorized');
    return { db, sub, invoice, payment, inFlight };
  }

  /** Whether the customer already had a trial of this product (one trial per customer and product). */
  async hadTrial(customerId: string, productId: string): Promise<boolean> {
    const row = await this.#tables
      .selectFrom('trial_usage')
      .select('subscription_id')
      .where('customer_id', '=', customerId)
      .where('product_id', '=', productId)
      .executeTakeFirst();
    return row !== undefined;
  }

  /**
   * The subscription a checkout's request key created, if any (e.g. a hosted checkout session's
   * `checkout:<id>:subscribe`, found again after a crash before the session recorded it).
   */
  async subscriptionIdByRequestKey(requestKey: string): Promise<string | null> {
    const row = await this.#tables
      .selectFrom('subscriptions')
      .select('id')
      .where('request_key', '=', requestKey)
      .executeTakeFirst();
    return row?.id ?? null;
  }

  /** The checkout as it stands, without writing (an unsettled charge). */
  async checkoutState(subscriptionId: string, invoiceId: string, payment: Payment | null) {
    return {
      subscription: await this.getSubscription(subscriptionId),
      invoice: await this.getInvoice(invoiceId),
      declineCode: null,
      payment: payment?.id ?? null,
    } satisfies CheckoutOutcome;
  }

  // ---- reads

  async getSubscription(id: string, trx: Executor = this.#db): Promise<Subscription> {
    const db = billingTables(trx);
    const row = await db.selectFrom('subscriptions').selectAll().where('id', '=', id).executeTakeFirst();
    if (!row) throw notFound('subscription', id);
    const members = await db
      .selectFrom('subscription_members')
      .select('external_id')
      .where('subscription_id', '=', id)
      .orderBy('created_at')
      .orderBy('external_id')
      .execute();
    return { ...row, members: members.map((m) => m.external_id) };
  }

  async listSubscriptions(filter: {
    customer?: string | undefined;
    status?: string | undefined;
    limit: number;
    after?: string | undefined;
  }): Promise<Subscription[]> {
    let q = this.#tables
      .selectFrom('subscriptions')
      .selectAll()
      .orderBy('id')
      .limit(filter.limit + 1);
    if (filter.customer) q = q.where('customer_id', '=', await this.ctx.customerId(filter.customer));
    if (filter.status) q = q.where('status', '=', filter.status as SubscriptionsTable['status']);
    if (filter.after) q = q.where('id', '>', filter.after);
    const rows = await q.execute();
    const members = await this.#membersOf(rows.map((r) => r.id));
    return rows.map((r) => ({ ...r, members: members.get(r.id) ?? [] }));
  }

  /**
   * A customer's subscriptions that have not ended (trialing, active, past_due, paused; a scheduled
   * cancel still running included), newest first, at most `limit`.
   */
  async currentSubscriptions(customerId: string, limit: number): Promise<Subscription[]> {
    const rows = await this.#tables
      .selectFrom('subscriptions')
      .selectAll()
      .where('customer_id', '=', customerId)
      .where('status', 'in', ['trialing', 'active', 'past_due', 'paused'])
      .orderBy('id', 'desc')
      .limit(limit)
      .execute();
    const members = await this.#membersOf(rows.map((r) => r.id));
    return rows.map((r) => ({ ...r, members: members.get(r.id) ?? [] }));
  }

  /** What the next renewal of `sub` will bill, writing nothing (upcoming.ts); null when none is coming. */
  upcomingRenewal(sub: Subscription, trx: Executor = this.#db): Promise<UpcomingRenewal | null> {
    return upcomingRenewal(this.ctx, sub, trx);
  }

  async getInvoice(id: string, trx: Executor = this.#db): Promise<Invoice> {
    const db = billingTables(trx);
    const row = await db.selectFrom('invoices').selectAll().where('id', '=', id).executeTakeFirst();
    if (!row) throw notFound('invoice', id);
    const lines = await db
      .selectFrom('invoice_lines')
      .selectAll()
      .where('invoice_id', '=', id)
      .orderBy('position')
      .execute();
    const notes = await creditNotesOf(trx, [id]);
    return { ...row, lines, creditNotes: notes.get(id) ?? [] };
  }

  /** Invoices oldest first (newest first with `newestFirst`: `after` is then the last id seen, older ones follow). */
  async listInvoices(filter: {
    customer?: string | undefined;
    subscription?: string | undefined;
    limit: number;
    after?: string | undefined;
    newestFirst?: boolean | undefined;
  }): Promise<Invoice[]> {
    const desc = filter.newestFirst === true;
    let q = this.#tables
      .selectFrom('invoices')
      .selectAll()
      .orderBy('id', desc ? 'desc' : 'asc')
      .limit(filter.limit + 1);
    if (filter.customer) q = q.where('customer_id', '=', await this.ctx.customerId(filter.customer));
    if (filter.subscription) q = q.where('subscription_id', '=', filter.subscription);
    if (filter.after) q = q.where('id', desc ? '<' : '>', filter.after);
    return this.#withLines(await q.execute(), this.#db);
  }

  /** Invoice rows with their lines and credit notes, in two reads whatever their number. */
  async #withLines(rows: InvoicesTable[], trx: Executor): Promise<Invoice[]> {
    if (rows.length === 0) return [];
    const lines = await billingTables(trx)
      .selectFrom('invoice_lines')
      .selectAll()
      .where(
        'invoice_id',
        'in',
        rows.map((r) => r.id),
      )
      .orderBy('invoice_id')
      .orderBy('position')
      .execute();
    const notes = await creditNotesOf(
      trx,
      rows.map((r) => r.id),
    );
    return rows.map((r) => ({
      ...r,
      lines: lines.filter((l) => l.invoice_id === r.id),
      creditNotes: notes.get(r.id) ?? [],
    }));
  }

  // ---- reports (reports.ts): the dashboard's and the customer timeline's billing parts

  /** Live trialing, active and past_due subscriptions grouped by plan, market, status and price. */
  subscriptionGroups(trx: Executor): Promise<SubscriptionGroup[]> {
    return subscriptionGroups(trx);
  }

  /** Live subscriptions started, and canceled, per UTC day in [from, to). */
  async startsAndChurn(
    trx: Executor,
    from: Date,
    to: Date,
  ): Promise<{ started: DayCount[]; churned: DayCount[] }> {
    return { started: await startedPerDay(trx, from, to), churned: await churnedPerDay(trx, from, to) };
  }

  /** Open invoices of live past_due subscriptions: how many, and the first `limit` by next retry. */
  dunningQueue(trx: Executor, limit: number): Promise<{ count: number; invoices: DunningEntry[] }> {
    return dunningQueue(trx, this.ctx.dunning, limit);
  }

  /** A customer's subscriptions (with members), newest first, `limit` of them older than `before`. */
  async timelineSubscriptions(
    customerId: string,
    before: Before | undefined,
    limit: number,
  ): Promise<Subscription[]> {
    const rows = await subscriptionsPage(this.#db, customerId, before, limit);
    const members = await this.#membersOf(rows.map((r) => r.id));
    return rows.map((r) => ({ ...r, members: members.get(r.id) ?? [] }));
  }

  /** A customer's invoices with lines and credit notes, newest first, `limit` of them older than `before`. */
  async timelineInvoices(customerId: string, before: Before | undefined, limit: number): Promise<Invoice[]> {
    return this.#withLines(await invoicesPage(this.#db, customerId, before, limit), this.#db);
  }

  /** Ids of a customer's subscriptions and invoices (newest first, at most `max` each). */
  customerRefs(customerId: string, max: number): Promise<{ subscriptions: string[]; invoices: string[] }> {
    return customerRefs(this.#db, customerId, max);
  }

  /**
   * For the entitlement projection: every subscription each external id owns (as the customer
   * `owners` maps it to) or is a member of, with its version and until when it entitles (null:
   * it does not), in four reads whatever the number of ids. Subscriptions that entitle come
   * first (up to 100 per id and role); then up to 20 that no longer do, most recent first, so a
   * late event of theirs cannot bring them back (their version is known).
   */
  async entitlementRecords(
    externalIds: readonly string[],
    owners: ReadonlyMap<string, { id: string }>,
  ): Promise<Map<string, EntitlementRecord[]>> {
    const out = new Map<string, EntitlementRecord[]>(externalIds.map((x) => [x, []]));
    if (externalIds.length === 0) return out;
    const entitling = ['trialing', 'active', 'past_due'] as const;
    const customerIds = [...new Set([...owners.values()].map((o) => o.id))];
    const externalOf = new Map([...owners.entries()].map(([x, o]) => [o.id, x]));
    const [owned, memberships] = await Promise.all([
      customerIds.length === 0
        ? []
        : sql<SubscriptionsTable & { entitling: boolean }>`
            SELECT s.*, true AS entitling FROM unnest(${customerIds}::text[]) AS c(id)
            CROSS JOIN LATERAL (
              SELECT * FROM subscriptions WHERE customer_id = c.id AND status IN ('trialing', 'active', 'past_due')
              ORDER BY id LIMIT ${SOURCES_MAX}) s
            UNION ALL
            SELECT s.*, false AS entitling FROM unnest(${customerIds}::text[]) AS c(id)
            CROSS JOIN LATERAL (
              SELECT * FROM subscriptions WHERE customer_id = c.id AND status NOT IN ('trialing', 'active', 'past_due')
              ORDER BY updated_at DESC LIMIT ${RECORDS_ENDED_MAX}) s`
            .execute(this.#db)
            .then((r) => r.rows),
      this.#tables
        .selectFrom('subscription_members')
        .select(['subscription_id', 'external_id'])
        .where('external_id', 'in', [...new Set(externalIds)])
        .limit(externalIds.length * SOURCES_MAX)
        .execute(),
    ]);
    const shared =
      memberships.length === 0
        ? []
        : await this.#tables
            .selectFrom('subscriptions')
            .selectAll()
            .where('id', 'in', [...new Set(memberships.map((m) => m.subscription_id))])
            .execute();
    const sharedById = new Map(shared.map((s) => [s.id, s]));
    const ownerAccounts = await this.customers.accounts([
      ...new Set([...owned, ...shared].map((s) => s.customer_id)),
    ]);
    const record = (row: SubscriptionsTable, role: 'owner' | 'member'): EntitlementRecord => ({
      subscription: row.id,
      version: row.version,
      role,
      productId: row.product_id,
      validUntil: (entitling as readonly string[]).includes(row.status)
        ? validUntil(stateOf(row), this.ctx.dunning)
        : null,
      testClock: ownerAccounts.get(row.customer_id)?.testClockId ?? null,
    });
    for (const row of owned) {
      const x = externalOf.get(row.customer_id);
      if (x !== undefined) out.get(x)?.push(record(row, 'owner'));
    }
    for (const m of memberships) {
      const row = sharedById.get(m.subscription_id);
      if (row) out.get(m.external_id)?.push(record(row, 'member'));
    }
    return out;
  }

  /**
   * What entitles `externalId` at `at`: subscriptions it owns (as the customer of that external
   * id) and those it is a member of, each with its `validUntil`; ones that entitle nobody are left out.
   */
  async entitlementSources(
    externalId: string,
    customerId: string | null,
    at: (customerId: string) => Promise<Date>,
  ): Promise<EntitlementSource[]> {
    const owned = customerId
      ? await this.#tables
          .selectFrom('subscriptions')
          .selectAll()
          .where('customer_id', '=', customerId)
          .where('status', 'in', ['trialing', 'active', 'past_due'])
          .orderBy('id')
          .limit(SOURCES_MAX)
          .execute()
      : [];
    const memberOf = await this.#tables
      .selectFrom('subscription_members')
      .select('subscription_id')
      .where('external_id', '=', externalId)
      .limit(SOURCES_MAX)
      .execute();
    const shared =
      memberOf.length === 0
        ? []
        : await this.#tables
            .selectFrom('subscriptions')
            .selectAll()
            .where(
              'id',
              'in',
              memberOf.map((m) => m.subscription_id),
            )
            .where('status', 'in', ['trialing', 'active', 'past_due'])
            .execute();
    const out: EntitlementSource[] = [];
    for (const [role, rows] of [
      ['owner', owned],
      ['member', shared],
    ] as const) {
      for (const row of rows) {
        const until = validUntil(stateOf(row), this.ctx.dunning);
        if (until && (await at(row.customer_id)).getTime() < until.getTime()) {
          out.push({ subscription: row.id, productId: row.product_id, role, validUntil: until });
        }
      }
    }
    return out;
  }

  // ---- trial end and renewals

  /** Three days before a trial ends: `subscription.trial_will_end` (nothing when it ended or was canceled). */
  async trialWillEnd(trx: Executor, subscriptionId: string, now: Date): Promise<void> {
    const sub = await lockSubscription(billingTables(trx), subscriptionId);
    if (sub?.status !== 'trialing' || sub.cancel_at || !sub.trial_end) return;
    if (now.getTime() >= sub.trial_end.getTime()) return;
    // Every event of the aggregate takes the next version (ordering for consumers).
    const noticed = { ...sub, version: sub.version + 1, updated_at: now };
    await billingTables(trx)
      .updateTable('subscriptions')
      .set({ version: noticed.version, updated_at: now })
      .where('id', '=', sub.id)
      .execute();
    await this.ctx.subscriptionEvent(trx, 'subscription.trial_will_end', noticed);
  }

  /**
   * At a period end (the trial end first): the next period's invoice, finalised at the price in
   * force for this subscriber (grandfathering), and its charge job, which runs outside any
   * transaction. The unique (subscription, period start, reason) makes a second invoice of the
   * period impossible; a second run finds the first one and schedules nothing new.
   */
  async invoiceCycle(trx: Executor, subscriptionId: string, now: Date): Promise<void> {
    const db = billingTables(trx);
    const locked = await lockSubscription(db, subscriptionId);
    if (!locked || (locked.status !== 'trialing' && locked.status !== 'active') || locked.cancel_at) return;
    // Only at or after the current period end: a job left at an old period end (the period was
    // moved by an immediate plan change) finds the end elsewhere and does nothing.
    const end = locked.current_period_end;
    if (!end || now.getTime() < end.getTime()) return;
    // A pending end-of-term plan change takes effect now; the renewal bills the new plan.
    const sub = await applyPendingChange(this.ctx, trx, locked, now);
    const customer = await this.customers.account(sub.customer_id, trx);
    // From the period end (on an unchanged grid a boundary, so a full period; after an end-of-term
    // change to another billing period, the part of the new grid's period from there, prorated).
    const period = periodFrom(scheduleOf(sub), end);
    const existing = await db
      .selectFrom('invoices')
      .select('id')
      .where('subscription_id', '=', sub.id)
      .where('period_start', '=', period.start)
      .where('reason', '=', 'subscription_cycle')
      .executeTakeFirst();
    if (existing) return;
    const plan = await this.catalog.getPlan(sub.plan_id, trx);
    const price = await this.catalog.priceFor(
      sub.plan_id,
      // Grandfathering from the day the subscriber moved to this plan (a change restarts it).
      { market: customer.marketId, at: period.start, subscribedAt: sub.plan_started_at ?? sub.created_at },
      trx,
    );
    if (price.currency !== sub.currency) {
      throw invalidState(
        `Subscription ${sub.id} bills in ${sub.currency}; its market now sells in ${price.currency}.`,
      );
    }
    const invoice = await this.ctx.finalize(trx, {
      sub,
      lines: [recurringLine({ name: plan.name, priceMinor: price.amountMinor }, period)],
      tax: { rateBps: price.market.taxRateBps, inclusive: price.market.taxInclusive },
      marketCode: price.market.code,
      testClock: customer.testClockId !== null,
      at: now,
      reason: 'subscription_cycle',
    });
    // The subscriber's price from this period on (the one the invoice bills).
    if (price.priceVersionId !== sub.price_version_id || price.amountMinor !== sub.price_minor) {
      await db
        .updateTable('subscriptions')
        .set({ price_version_id: price.priceVersionId, price_minor: price.amountMinor })
        .where('id', '=', sub.id)
        .execute();
    }
    if (invoice.status === 'paid') {
      // Nothing due (a 0 price, or account credit paid it all).
      await settlePaidAtFinalize(this.ctx, trx, invoice, now);
      return;
    }
    await this.jobs.schedule(trx, chargeJob(invoice, now, customer.testClockId));
  }

  // ---- paying invoices (ADR 0014): first charges of renewals, dunning retries, manual pays

  /** The charge job: a cycle invoice's first charge or a dunning retry, through the pay-invoice workflow. */
  async chargeInvoiceJob(payload: ChargeJobPayload): Promise<void> {
    const invoice = await this.#tables
      .selectFrom('invoices')
      .select(['status', 'customer_id'])
      .where('id', '=', payload.invoice)
      .executeTakeFirst();
    if (invoice?.status !== 'open') return;
    const cause = { retry: payload.retry ?? null };
    try {
      const out = await payInvoiceWorkflow.run(
        { invoice: payload.invoice, cause: { ...cause, scheduled: true } },
        { billing: this, payments: this.payments, commit: commitInTransaction(this.#db) },
      );
      // Still in flight at the provider: the job is retried once the reconciliation settled it.
      if (!out.settled) throw new Error(`invoice ${payload.invoice}: its payment is still in flight`);
    } catch (e) {
      // No usable default method (removed since) or an erased customer: a failed charge, as a
      // decline is. Anything else (provider down, a bug) fails the job, which is retried.
      if (!(e instanceof DomainError) || (e.code !== 'validation_failed' && e.code !== 'invalid_state'))
        throw e;
      await transact(this.#db, async (trx) => {
        const current = await billingTables(trx)
          .selectFrom('invoices')
          .select('status')
          .where('id', '=', payload.invoice)
          .executeTakeFirstOrThrow();
        if (current.status !== 'open') return;
        await this.settleInvoice(trx, payload.invoice, null, { ...cause, refused: e.code });
      });
    }
  }

  /** Claims the next charge attempt of an open invoice (own transaction). */
  claimCharge(
    invoiceId: string,
    paymentMethod: string | undefined,
    cause: ChargeCause & { scheduled?: boolean },
  ): Promise<ChargeClaim> {
    return claimCharge(this.ctx, invoiceId, paymentMethod, cause);
  }

  /** Records an invoice's charge result in the caller's transaction (paid, or dunning). */
  async settleInvoice(
    trx: Executor,
    invoiceId: string,
    payment: Payment | null,
    cause: ChargeCause & { refused?: string | null },
  ): Promise<InvoicePaymentOutcome> {
    const { customer_id } = await billingTables(trx)
      .selectFrom('invoices')
      .select('customer_id')
      .where('id', '=', invoiceId)
      .executeTakeFirstOrThrow();
    const now = await this.customers.now(customer_id, trx);
    return settleInvoice(this.ctx, trx, invoiceId, payment, cause, now);
  }

  /** An invoice's payment as it stands, without writing (a charge the provider has not answered). */
  async invoicePaymentState(invoiceId: string, payment: Payment | null): Promise<InvoicePaymentOutcome> {
    const invoice = await this.getInvoice(invoiceId);
    return {
      invoice,
      subscription: await this.getSubscription(invoice.subscription_id),
      declineCode: null,
      payment: payment?.id ?? null,
    };
  }

  // ---- plan changes (changes.ts)

  /** What a plan change would do now, writing nothing. */
  previewChange(subscriptionId: string, input: ChangeInput): Promise<ChangePreview> {
    return previewChange(this.ctx, subscriptionId, input);
  }

  /** Applies a plan change (own transaction) or resumes the one of this request key. */
  openChange(subscriptionId: string, input: ChangeInput, requestKey: string | null): Promise<OpenedChange> {
    return openChange(this.ctx, subscriptionId, input, requestKey);
  }

  // ---- internals

  async #checkMethod(customerId: string, paymentMethod: string | undefined): Promise<void> {
    if (await this.payments.hasMethod(customerId, paymentMethod)) return;
    throw paymentMethod
      ? invalid('paymentMethod', `no payment method '${paymentMethod}' for this customer`)
      : invalid('paymentMethod', 'the customer has no default payment method; attach one or name one');
  }

  async #resume(
    sub: SubscriptionsTable,
    hash: string,
    input: CheckoutInput,
    trx: Executor = this.#db,
  ): Promise<OpenedCheckout> {
    if (sub.request_hash !== null && sub.request_hash !== hash) {
      throw new DomainError(
        'idempotency_key_reused',
        `This Idempotency-Key created subscription ${sub.id} with a different request; use a new key for new input.`,
      );
    }
    const invoice = await billingTables(trx)
      .selectFrom('invoices')
      .selectAll()
      .where('subscription_id', '=', sub.id)
      .where('reason', '=', 'subscription_create')
      .executeTakeFirstOrThrow();
    return {
      subscriptionId: sub.id,
      invoiceId: invoice.id,
      charge: this.ctx.chargeOf(invoice, input.paymentMethod),
      amountDueMinor: invoice.amount_due_minor,
    };
  }

  /** The first invoice is paid (by `payment`, or at finalisation when nothing was due): active. */
  async #markPaid(
    trx: Executor,
    sub: SubscriptionsTable,
    invoice: InvoicesTable,
    payment: Payment | null,
    at: Date,
  ): Promise<void> {
    const state = applyEvent(stateOf(sub), {
      type: 'first_payment_succeeded',
      at,
      period: { start: invoice.period_start, end: invoice.period_end },
    });
    if (payment) {
      await this.ctx.saveInvoice(
        trx,
        invoice,
        { status: 'paid', payment_id: payment.id, paid_at: at },
        at,
        'invoice.paid',
      );
      await this.ledger.post(
        trx,
        paidEntry(
          { id: invoice.id, customerId: sub.customer_id, currency: invoice.currency },
          { id: payment.id, amountMinor: payment.amount_minor, taxMinor: payment.tax_minor },
          at,
        ),
      );
    }
    const activated = await this.ctx.saveSubscription(
      trx,
      sub,
      {
        status: state.status,
        current_period_start: state.currentPeriodStart,
        current_period_end: state.currentPeriodEnd,
      },
      at,
      'subscription.activated',
    );
    if (activated.current_period_end) {
      const { testClockId } = await this.customers.account(sub.customer_id, trx);
      await this.ctx.scheduleCycle(trx, activated, activated.current_period_end, testClockId);
    }
  }

  async #membersOf(ids: string[]): Promise<Map<string, string[]>> {
    const out = new Map<string, string[]>();
    if (ids.length === 0) return out;
    const rows = await this.#tables
      .selectFrom('subscription_members')
      .select(['subscription_id', 'external_id'])
      .where('subscription_id', 'in', ids)
      .orderBy('created_at')
      .orderBy('external_id')
      .execute();
    for (const r of rows) out.set(r.subscription_id, [...(out.get(r.subscription_id) ?? []), r.external_id]);
    return out;
  }
}
