import type { Before } from '../../db/keyset.js';
import type { Db, Executor } from '../../db/schema.js';
import type { EventsOutbox } from '../../events/outbox.js';
import type { JobScheduler } from '../../jobs/scheduler.js';
import type { Clock } from '../../kernel/clock.js';
import type { ChargeResult, ProviderEvent, ProviderPaymentSnapshot } from '../../providers/port.js';
import type { ProviderRouter } from '../../providers/router.js';
import type { CatalogService } from '../catalog/service.js';
import type { CustomerService } from '../customers/service.js';
import type { LedgerService } from '../ledger/service.js';
import { capturePayment, finishCapture, finishVoid, voidPayment } from './charges/authorized.js';
import { type BatchPaymentInput, finishCapturedMany, startPaymentsMany } from './charges/batch.js';
import { chargePayment } from './charges/charge.js';
import { finishPayment } from './charges/finish.js';
import { type ChargeLease, newLease, releaseLease } from './charges/lease.js';
import { listPayments } from './charges/queries.js';
import { reconcilePayment } from './charges/reconcile.js';
import { type PaymentInput, startPayment } from './charges/start.js';
import {
  getPayment,
  type Payment,
  type PaymentsContext,
  type Refund,
  type RefundFact,
  type RefundListener,
} from './context.js';
import { type AttachInput, attachMethod } from './methods/attach.js';
import { listMethods, methodOf, type PaymentMethod, withProviders } from './methods/queries.js';
import { setDefaultMethod } from './methods/set-default.js';
import { applySnapshot } from './provider-events/apply-snapshot.js';
import { pruneProviderEvents } from './provider-events/prune.js';
import { knownSettled, receiveEvent, recordEventQuery } from './provider-events/receive.js';
import { callRefund, finishRefund, getRefund, type RefundOutcome, retryRefund } from './refunds/finish.js';
import { type RefundInput, startRefund } from './refunds/start.js';
import { customerRefs, failedPerDay, paymentsPage, refundsPage, refundsPerDay } from './reports.js';
import { paymentTables } from './tables.js';

/** How long reconciling a payment or a refund is retried after its first failure. */
const MONEY_RETRY_FOR_MS = 3 * 24 * 60 * 60_000;

export type {
  BatchPaymentInput,
  ChargeLease,
  Payment,
  PaymentInput,
  PaymentMethod,
  Refund,
  RefundFact,
  RefundInput,
  RefundListener,
  RefundOutcome,
};

/**
 * The payments module's door: payment methods, payments, refunds, disputes, provider webhooks.
 * Each use case lives in its own file; orchestration across a provider call is a workflow
 * (`src/workflows/`). Money never moves inside a database transaction that waits on a provider
 * (ADR 0009); races between workers, jobs and webhooks are settled by the charge lease and
 * monotone facts (ADR 0010).
 */
export class PaymentService {
  readonly ctx: PaymentsContext;

  constructor(
    readonly db: Db,
    readonly clock: Clock,
    readonly customers: CustomerService,
    readonly catalog: CatalogService,
    readonly ledger: LedgerService,
    readonly router: ProviderRouter,
    readonly jobs: JobScheduler,
    readonly events: EventsOutbox,
  ) {
    this.ctx = {
      db,
      tables: paymentTables(db),
      clock,
      customers,
      catalog,
      ledger,
      router,
      jobs,
      events,
      refundListeners: [],
    };
    // Both talk to providers: they run outside any database transaction (external jobs), and
    // money owed must converge through a long provider outage: retried for days, not 5 times.
    jobs.register(
      'payments.reconcile',
      (job) => this.reconcile((job.payload as { payment: string }).payment),
      { external: true, retryForMs: MONEY_RETRY_FOR_MS },
    );
    jobs.register(
      'refunds.reconcile',
      (job) => retryRefund(this.ctx, (job.payload as { refund: string }).refund),
      { external: true, retryForMs: MONEY_RETRY_FOR_MS },
    );
  }

  // ---- payment methods
  attachMethod(
    customerRef: string,
    input: AttachInput,
    requestKey: string | null = null,
  ): Promise<PaymentMethod> {
    return attachMethod(this.ctx, customerRef, input, requestKey);
  }
  listMethods(
    customerRef: string,
    page: { limit: number; after?: string | undefined },
  ): Promise<PaymentMethod[]> {
    return listMethods(this.ctx, customerRef, page);
  }
  /** Whether the customer (an id) has this method, or a default one when no id is given: one query. */
  async hasMethod(customerId: string, methodId: string | undefined): Promise<boolean> {
    return (await methodOf(this.ctx.tables, customerId, methodId)) !== undefined;
  }
  /** The customer's (an id) default method, or undefined when it has none. */
  async defaultMethod(customerId: string, trx: Executor = this.db): Promise<PaymentMethod | undefined> {
    const tables = paymentTables(trx);
    const row = await methodOf(tables, customerId, undefined);
    return row ? (await withProviders(tables, [row]))[0] : undefined;
  }
  setDefault(customerRef: string, methodId: string, trx: Executor): Promise<PaymentMethod> {
    return setDefaultMethod(this.ctx, customerRef, methodId, trx);
  }

  // ---- payments: start → charge → finish (the `payment` workflow), capture, void
  start(input: PaymentInput, requestKey: string | null): Promise<{ payment: Payment; lease: ChargeLease }> {
    return startPayment(this.ctx, input, requestKey);
  }
  charge(payment: Payment, lease: ChargeLease): Promise<{ payment: Payment; result: ChargeResult | null }> {
    return chargePayment(this.ctx, payment, lease);
  }
  finish(trx: Executor, payment: Payment, result: ChargeResult): Promise<Payment> {
    return finishPayment(this.ctx, trx, payment, result);
  }
  /** Payments of a batch (renewals) started in the caller's transaction; see charges/batch.ts. */
  startMany(
    trx: Executor,
    inputs: readonly BatchPaymentInput[],
  ): Promise<Map<string, { payment: Payment; lease: ChargeLease }>> {
    return startPaymentsMany(this.ctx, trx, inputs);
  }
  /** Synchronous captures of a batch recorded in the caller's transaction; see charges/batch.ts. */
  finishCapturedMany(
    trx: Executor,
    items: ReadonlyArray<{ payment: Payment; result: ChargeResult & { status: 'succeeded' } }>,
  ): Promise<Map<string, Payment>> {
    return finishCapturedMany(this.ctx, trx, items);
  }
  /** Gives back a lease under which no provider call was made (workflow compensation). */
  /**
   * A payment still `processing` whose charging worker died, ready to charge again: the charge
   * takes the lease by compare-and-set and calls the provider with the payment id as its
   * idempotency key, so the provider answers with the charge it already made, never a second one.
   */
  async resume(paymentId: string): Promise<{ payment: Payment; lease: ChargeLease }> {
    return { payment: await this.get(paymentId), lease: newLease() };
  }
  releaseLease(paymentId: string, lease: ChargeLease): Promise<void> {
    return releaseLease(this.ctx, paymentId, lease);
  }
  capture(paymentId: string): Promise<ChargeResult> {
    return capturePayment(this.ctx, paymentId);
  }
  finishCapture(trx: Executor, paymentId: string, result: ChargeResult): Promise<Payment> {
    return finishCapture(this.ctx, trx, paymentId, result);
  }
  voidPayment(paymentId: string): Promise<void> {
    return voidPayment(this.ctx, paymentId);
  }
  finishVoid(trx: Executor, paymentId: string): Promise<Payment> {
    return finishVoid(this.ctx, trx, paymentId);
  }
  get(id: string, trx: Executor = this.db): Promise<Payment> {
    return getPayment(this.ctx, id, trx);
  }
  list(filter: {
    customer?: string | undefined;
    limit: number;
    after?: string | undefined;
  }): Promise<Payment[]> {
    return listPayments(this.ctx, filter);
  }
  /** The payment a request key created (e.g. an invoice's charge, `invoice:<id>:charge`), if any. */
  async byRequestKey(requestKey: string, trx: Executor = this.db): Promise<Payment | undefined> {
    return paymentTables(trx)
      .selectFrom('payments')
      .selectAll()
      .where('request_key', '=', requestKey)
      .executeTakeFirst();
  }
  /** The reconciliation job's work, callable directly (tests, operators). */
  reconcile(paymentId: string): Promise<void> {
    return reconcilePayment(this.ctx, paymentId);
  }

  // ---- refunds
  /**
   * `listener` runs in the transaction that books every succeeded refund, after its ledger entry
   * (billing writes the credit note of an invoice's payment there). A failing listener fails it.
   */
  onRefunded(listener: RefundListener): void {
    this.ctx.refundListeners.push(listener);
  }
  startRefund(input: RefundInput, requestKey: string | null): Promise<{ refund: Refund; payment: Payment }> {
    return startRefund(this.ctx, input, requestKey);
  }
  callRefund(refund: Refund, payment: Payment): Promise<RefundOutcome | null> {
    return callRefund(this.ctx, refund, payment);
  }
  finishRefund(trx: Executor, refundId: string, outcome: RefundOutcome): Promise<Refund> {
    return finishRefund(this.ctx, trx, refundId, outcome);
  }
  getRefund(id: string, trx: Executor = this.db): Promise<Refund> {
    return getRefund(this.ctx, id, trx);
  }

  // ---- reports (reports.ts): the dashboard's and the customer timeline's payments parts
  /** Failed payments per UTC day in [from, to), without the customers listed (on a test clock). */
  failedPerDay(trx: Executor, from: Date, to: Date, excludeCustomers: readonly string[]) {
    return failedPerDay(trx, from, to, excludeCustomers);
  }

  /** Succeeded refunds per UTC day and currency (the admin dashboard). */
  refundsPerDay(trx: Executor, from: Date, to: Date, excludeCustomers: readonly string[]) {
    return refundsPerDay(trx, from, to, excludeCustomers);
  }
  /** A customer's payments, newest first, `limit` of them older than `before`. */
  timelinePayments(customerId: string, before: Before | undefined, limit: number): Promise<Payment[]> {
    return paymentsPage(this.db, customerId, before, limit);
  }
  /** Refunds of a customer's payments, newest first, `limit` of them older than `before`. */
  timelineRefunds(
    customerId: string,
    before: Before | undefined,
    limit: number,
  ): Promise<Array<Refund & { currency: string }>> {
    return refundsPage(this.db, customerId, before, limit);
  }
  /** Ids of a customer's payments, refunds and payment methods (newest first, at most `max` each). */
  customerRefs(customerId: string, max: number) {
    return customerRefs(this.db, customerId, max);
  }

  // ---- provider news
  receiveEvent(trx: Executor, provider: string, event: ProviderEvent) {
    return receiveEvent(this.ctx, trx, provider, event);
  }
  /** The payment an event only repeats (acknowledge it without a transaction), or null. */
  knownSettled(provider: string, event: ProviderEvent): Promise<string | null> {
    return knownSettled(this.ctx, provider, event);
  }
  /** The event's dedupe row as one statement (returns a row when new), unexecuted. */
  recordEventQuery(provider: string, event: ProviderEvent, paymentId: string | null) {
    return recordEventQuery(this.ctx, provider, event, paymentId);
  }
  applySnapshot(trx: Executor, provider: string, s: ProviderPaymentSnapshot): Promise<void> {
    return applySnapshot(this.ctx, trx, provider, s);
  }
  /** Forgets webhook event ids past the dedupe window (bounded batch); run by the app's prune hook. */
  pruneProviderEvents(batchMax?: number): Promise<number> {
    return pruneProviderEvents(this.ctx, batchMax);
  }
}
