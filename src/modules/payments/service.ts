import type { Db, Executor } from '../../db/schema.js';
import { transact } from '../../db/transaction.js';
import type { JobScheduler } from '../../jobs/scheduler.js';
import { assert } from '../../kernel/assert.js';
import type { Clock } from '../../kernel/clock.js';
import { isCurrency } from '../../kernel/currency.js';
import { DomainError, invalid, invalidState, notFound } from '../../kernel/errors.js';
import { newId } from '../../kernel/ids.js';
import { inclusiveTax } from '../../kernel/money.js';
import {
  type ChargeResult,
  type PaymentProvider,
  ProviderError,
  type ProviderEvent,
  type ProviderPaymentSnapshot,
} from '../../providers/port.js';
import type { ProviderRouter, RoutingDecision } from '../../providers/router.js';
import type { CatalogService } from '../catalog/service.js';
import type { CustomerService } from '../customers/service.js';
import type { LedgerService } from '../ledger/service.js';
import {
  captureEntry,
  disputeClosedEntry,
  disputeOpenedEntry,
  feeEntry,
  refundEntry,
  refundTaxPart,
} from './domain/entries.js';
import { baseOf, deriveStatus } from './domain/status.js';
import type { PaymentMethodsTable, PaymentsTable, RefundsTable } from './tables.js';

export interface PaymentMethod {
  id: string;
  customerId: string;
  provider: string;
  brand: string;
  last4: string;
  isDefault: boolean;
  providers: string[];
  createdAt: Date;
}

export type Payment = PaymentsTable;
export type Refund = RefundsTable;

export interface PaymentInput {
  customer: string;
  amount: number;
  currency: string;
  paymentMethod?: string | undefined;
  description: string;
  reference?: string | undefined;
  /** false: authorize only; capture or void later. */
  capture?: boolean | undefined;
}

/** How long after creation a payment still processing is looked up at its provider. */
const RECONCILE_AFTER_MS = 30_000;

/**
 * Payment methods, payments, refunds, disputes. Money never moves inside a database transaction
 * that waits on a provider: a payment is first stored as `processing` (with the route chosen),
 * then charged with its own id as the provider's idempotency key, then finalised in one
 * transaction with its ledger entries. A crash in between leaves a `processing` payment that a
 * retry of the request, a webhook or the reconciliation job completes, and never a second charge.
 */
export class PaymentService {
  constructor(
    readonly db: Db,
    readonly clock: Clock,
    readonly customers: CustomerService,
    readonly catalog: CatalogService,
    readonly ledger: LedgerService,
    readonly router: ProviderRouter,
    readonly jobs: JobScheduler,
  ) {
    // Both talk to providers: they run outside any database transaction (external jobs).
    jobs.register(
      'payments.reconcile',
      async (job) => this.reconcile((job.payload as { payment: string }).payment),
      { external: true },
    );
    jobs.register(
      'refunds.reconcile',
      async (job) => this.#retryRefund((job.payload as { refund: string }).refund),
      { external: true },
    );
  }

  // ---- payment methods ---------------------------------------------------------------------

  /**
   * Tokenizes at every instance of the provider kind (so payments can fail over). A decline at
   * any of them refuses the card and stores nothing.
   */
  async attachMethod(
    customerRef: string,
    input: { provider: string; token: string },
    requestKey: string | null = null,
  ): Promise<PaymentMethod> {
    const customer = await this.customers.get(customerRef);
    if (requestKey) {
      // The same request, retried after a crash that stored the method but lost the answer.
      const existing = await this.db
        .selectFrom('payment_methods')
        .selectAll()
        .where('request_key', '=', requestKey)
        .execute();
      const [found] = await this.#withProviders(this.db, existing);
      if (found) return found;
    }
    const instances = this.router.instancesOf(input.provider);
    if (instances.length === 0) throw invalid('provider', `unknown provider '${input.provider}'`);
    const tokens: Array<{ provider: string; providerMethodId: string; brand: string; last4: string }> = [];
    // One key per attach (the method's future id), so a retried call tokenizes once.
    const methodId = newId('paymentMethod');
    let lastError: unknown;
    for (const instance of instances) {
      try {
        const result = await this.router.call(instance.id, (p) =>
          p.attach({ token: input.token, idempotencyKey: methodId }),
        );
        if (!result.ok) {
          throw new DomainError('payment_declined', `The card was declined (${result.declineCode}).`, {
            extra: { declineCode: result.declineCode },
          });
        }
        tokens.push({
          provider: instance.id,
          providerMethodId: result.providerMethodId,
          brand: result.brand,
          last4: result.last4,
        });
      } catch (error) {
        if (error instanceof DomainError) throw error;
        if (error instanceof ProviderError && error.kind === 'rejected')
          throw invalid('token', error.message);
        lastError = error;
      }
    }
    const first = tokens[0];
    if (!first) {
      throw new DomainError(
        'provider_unavailable',
        `No ${input.provider} instance could tokenize the card: ${(lastError as Error)?.message}`,
      );
    }
    return transact(this.db, async (trx) => {
      const hasDefault = await trx
        .selectFrom('payment_methods')
        .select('id')
        .where('customer_id', '=', customer.id)
        .where('is_default', '=', true)
        .executeTakeFirst();
      const row: PaymentMethodsTable = {
        id: methodId,
        customer_id: customer.id,
        provider_kind: input.provider,
        brand: first.brand,
        last4: first.last4,
        is_default: !hasDefault,
        request_key: requestKey,
        created_at: this.clock.now(),
      };
      await trx.insertInto('payment_methods').values(row).execute();
      await trx
        .insertInto('payment_method_tokens')
        .values(
          tokens.map((t) => ({
            payment_method_id: row.id,
            provider: t.provider,
            provider_method_id: t.providerMethodId,
          })),
        )
        .execute();
      return this.#toMethod(
        row,
        tokens.map((t) => t.provider),
      );
    });
  }

  async listMethods(customerRef: string): Promise<PaymentMethod[]> {
    const customer = await this.customers.get(customerRef);
    const rows = await this.db
      .selectFrom('payment_methods')
      .selectAll()
      .where('customer_id', '=', customer.id)
      .orderBy('id')
      .execute();
    return this.#withProviders(this.db, rows);
  }

  async setDefault(customerRef: string, methodId: string, trx: Executor): Promise<PaymentMethod> {
    const customer = await this.customers.get(customerRef, trx);
    const method = await this.#methodOf(trx, customer.id, methodId);
    if (!method) throw notFound('payment method', methodId);
    await trx
      .updateTable('payment_methods')
      .set({ is_default: false })
      .where('customer_id', '=', customer.id)
      .where('is_default', '=', true)
      .execute();
    await trx.updateTable('payment_methods').set({ is_default: true }).where('id', '=', methodId).execute();
    const [updated] = await this.#withProviders(trx, [{ ...method, is_default: true }]);
    return updated!;
  }

  /** A customer's method by id, or its default one when no id is given. */
  #methodOf(
    executor: Executor,
    customerId: string,
    methodId: string | undefined,
  ): Promise<PaymentMethodsTable | undefined> {
    const q = executor.selectFrom('payment_methods').selectAll().where('customer_id', '=', customerId);
    return (methodId ? q.where('id', '=', methodId) : q.where('is_default', '=', true)).executeTakeFirst();
  }

  /** The methods with the provider instances holding a token for each (one query for all). */
  async #withProviders(executor: Executor, rows: PaymentMethodsTable[]): Promise<PaymentMethod[]> {
    if (rows.length === 0) return [];
    const tokens = await executor
      .selectFrom('payment_method_tokens')
      .select(['payment_method_id', 'provider'])
      .where(
        'payment_method_id',
        'in',
        rows.map((r) => r.id),
      )
      .execute();
    return rows.map((r) =>
      this.#toMethod(
        r,
        tokens.filter((t) => t.payment_method_id === r.id).map((t) => t.provider),
      ),
    );
  }

  #toMethod(r: PaymentMethodsTable, providers: string[]): PaymentMethod {
    return {
      id: r.id,
      customerId: r.customer_id,
      provider: r.provider_kind,
      brand: r.brand,
      last4: r.last4,
      isDefault: r.is_default,
      providers,
      createdAt: r.created_at,
    };
  }

  // ---- payments ----------------------------------------------------------------------------

  /**
   * Phase 1: validate, route, store the payment as `processing` (or find the one this request
   * already created). Returns the payment to charge.
   */
  async start(input: PaymentInput, requestKey: string | null): Promise<Payment> {
    if (requestKey) {
      const existing = await this.db
        .selectFrom('payments')
        .selectAll()
        .where('request_key', '=', requestKey)
        .executeTakeFirst();
      if (existing) return existing;
    }
    if (!isCurrency(input.currency))
      throw invalid('currency', `'${input.currency}' is not an ISO 4217 currency`);
    if (!Number.isSafeInteger(input.amount) || input.amount <= 0)
      throw invalid('amount', 'must be a positive integer in minor units');
    const customer = await this.customers.get(input.customer);
    if (customer.erasedAt) throw invalidState(`Customer ${customer.id} was erased.`);
    const market = await this.catalog.getMarket(customer.marketId);
    const method = await this.#methodOf(this.db, customer.id, input.paymentMethod);
    if (!method) {
      throw input.paymentMethod
        ? invalid('paymentMethod', `no payment method '${input.paymentMethod}' for this customer`)
        : invalid('paymentMethod', 'the customer has no default payment method; attach one or name one');
    }
    const [{ providers }] = (await this.#withProviders(this.db, [method])) as [PaymentMethod];
    const decision = this.router.plan(market.code, method.brand, new Set(providers));
    const first = decision.candidates[0];
    if (!first) {
      throw new DomainError(
        'provider_unavailable',
        'No payment provider is available for this payment method right now.',
        {
          extra: { routing: decision },
        },
      );
    }
    const now = this.clock.now();
    const taxMinor = market.currency === input.currency ? inclusiveTax(input.amount, market.taxRateBps) : 0;
    const row: PaymentsTable = {
      id: newId('payment'),
      customer_id: customer.id,
      payment_method_id: method.id,
      amount_minor: input.amount,
      currency: input.currency,
      tax_minor: taxMinor,
      fee_minor: 0,
      amount_refunded_minor: 0,
      tax_refunded_minor: 0,
      status: 'processing',
      captured: false,
      capture_method: input.capture === false ? 'manual' : 'automatic',
      provider: first,
      provider_payment_id: null,
      decline_code: null,
      description: input.description,
      reference: input.reference ?? null,
      routing: JSON.stringify(decision),
      request_key: requestKey,
      created_at: now,
      updated_at: now,
    };
    return transact(this.db, async (trx) => {
      const inserted = await trx
        .insertInto('payments')
        .values(row)
        .onConflict((oc) => oc.column('request_key').doNothing())
        .returningAll()
        .executeTakeFirst();
      if (!inserted) {
        // A concurrent twin of this request created it first.
        return trx
          .selectFrom('payments')
          .selectAll()
          .where('request_key', '=', requestKey)
          .executeTakeFirstOrThrow();
      }
      await this.jobs.schedule(trx, {
        kind: 'payments.reconcile',
        runAt: new Date(Date.now() + RECONCILE_AFTER_MS),
        payload: { payment: row.id },
        dedupeKey: `payments.reconcile:${row.id}`,
      });
      return inserted;
    });
  }

  /**
   * Phase 2: charge at the payment's provider, failing over to the next candidate only when the
   * provider certainly did not process it. Returns the provider's answer, or `null` when the
   * outcome is unknown (the payment stays `processing` until a retry, a webhook or the job).
   */
  async charge(payment: Payment): Promise<ChargeResult | null> {
    if (payment.status !== 'processing') return null;
    const routing = (
      typeof payment.routing === 'string' ? JSON.parse(payment.routing) : payment.routing
    ) as RoutingDecision;
    const order = [
      payment.provider,
      ...routing.candidates.filter(
        (c) => c !== payment.provider && !routing.attempts.some((a) => a.provider === c),
      ),
    ];
    let provider = payment.provider;
    for (const candidate of order) {
      if (candidate !== provider) {
        // Move the payment before charging elsewhere, so a crash leaves it pointing at the
        // provider that may hold the charge.
        routing.attempts.push({ provider, outcome: 'unavailable' });
        routing.chosen = candidate;
        await this.db
          .updateTable('payments')
          .set({ provider: candidate, routing: JSON.stringify(routing), updated_at: this.clock.now() })
          .where('id', '=', payment.id)
          .where('status', '=', 'processing')
          .execute();
        this.router.count(candidate, 'failover');
        provider = candidate;
      }
      const token = await this.db
        .selectFrom('payment_method_tokens')
        .select('provider_method_id')
        .where('payment_method_id', '=', payment.payment_method_id)
        .where('provider', '=', provider)
        .executeTakeFirst();
      if (!token) continue;
      try {
        const result = await this.router.call(provider, (p) =>
          p.charge({
            providerMethodId: token.provider_method_id,
            amountMinor: payment.amount_minor,
            currency: payment.currency,
            capture: payment.capture_method === 'automatic',
            idempotencyKey: payment.id,
            metadata: { payment: payment.id, customer: payment.customer_id },
          }),
        );
        if (provider === payment.provider) this.router.count(provider, 'primary');
        payment.provider = provider;
        payment.routing = JSON.stringify({
          ...routing,
          chosen: provider,
          attempts: [...routing.attempts, { provider, outcome: result.status }],
        });
        return result;
      } catch (error) {
        if (!(error instanceof ProviderError)) throw error;
        this.router.count(provider, error.kind);
        // The provider refused the request itself: nothing was charged, the payment fails.
        if (error.kind === 'rejected')
          return { status: 'declined', declineCode: 'provider_rejected', providerPaymentId: null };
        if (error.kind !== 'unavailable') return null;
      }
    }
    return null;
  }

  /**
   * Phase 3, inside the caller's transaction: record the provider's answer and post the ledger.
   * Conditional on the payment still being `processing`, so a webhook that got there first wins
   * and this becomes a no-op.
   */
  async finish(trx: Executor, payment: Payment, result: ChargeResult): Promise<Payment> {
    const now = this.clock.now();
    if (result.status === 'declined') {
      await trx
        .updateTable('payments')
        .set({
          status: 'failed',
          decline_code: result.declineCode,
          provider: payment.provider,
          provider_payment_id: result.providerPaymentId,
          routing: asJson(payment.routing),
          updated_at: now,
        })
        .where('id', '=', payment.id)
        .where('status', '=', 'processing')
        .execute();
    } else {
      await this.#applyCapture(
        trx,
        payment.id,
        payment.provider,
        result.providerPaymentId,
        result.status === 'succeeded',
        result.feeMinor,
        asJson(payment.routing),
      );
    }
    return this.get(payment.id, trx);
  }

  async #applyCapture(
    trx: Executor,
    paymentId: string,
    provider: string,
    providerPaymentId: string,
    captured: boolean,
    feeMinor: number,
    routing?: string,
  ) {
    const now = this.clock.now();
    const current = await trx
      .selectFrom('payments')
      .selectAll()
      .where('id', '=', paymentId)
      .forUpdate()
      .executeTakeFirstOrThrow();
    const base = baseOf(current.status, current.captured);
    if (captured && !current.captured && (base === 'processing' || base === 'authorized')) {
      const updated = {
        ...current,
        captured: true,
        fee_minor: feeMinor,
        provider,
        provider_payment_id: providerPaymentId,
      };
      await trx
        .updateTable('payments')
        .set({
          captured: true,
          fee_minor: feeMinor,
          provider,
          provider_payment_id: providerPaymentId,
          status: this.#status(updated, await this.#disputeState(trx, paymentId)),
          ...(routing ? { routing } : {}),
          updated_at: now,
        })
        .where('id', '=', paymentId)
        .execute();
      const facts = factsOf(updated);
      await this.ledger.post(trx, captureEntry(facts, now));
      const fee = feeEntry(facts, feeMinor, now);
      if (fee) await this.ledger.post(trx, fee);
    } else if (!captured && base === 'processing') {
      await trx
        .updateTable('payments')
        .set({ status: 'authorized', provider, provider_payment_id: providerPaymentId, updated_at: now })
        .where('id', '=', paymentId)
        .execute();
    }
  }

  /** Captures an authorized payment (manual capture). Idempotent at the provider by payment id. */
  async capture(paymentId: string): Promise<ChargeResult> {
    return this.#onAuthorized(paymentId, 'captured', (p, payment) =>
      p.capture(payment.provider_payment_id!, `${payment.id}:capture`),
    );
  }

  /**
   * Runs a provider call on an authorized payment: refused (409) in any other state, 503 when the
   * provider did not confirm (retry: the call's idempotency key makes that safe).
   */
  async #onAuthorized<T>(
    paymentId: string,
    verb: string,
    call: (p: PaymentProvider, payment: Payment) => Promise<T>,
  ): Promise<T> {
    const payment = await this.get(paymentId);
    if (payment.status !== 'authorized')
      throw invalidState(
        `Payment ${payment.id} is ${payment.status}: only an authorized payment can be ${verb}.`,
      );
    assert(payment.provider_payment_id, `authorized payment ${payment.id} has no provider payment id`);
    try {
      return await this.router.call(payment.provider, (p) => call(p, payment));
    } catch (error) {
      if (!(error instanceof ProviderError)) throw error;
      if (error.kind === 'rejected') throw invalidState(`${payment.provider} refused: ${error.message}`);
      throw new DomainError(
        'provider_unavailable',
        `Not confirmed by ${payment.provider}: ${error.message}; retry.`,
      );
    }
  }

  async finishCapture(trx: Executor, paymentId: string, result: ChargeResult): Promise<Payment> {
    const payment = await this.get(paymentId, trx);
    if (result.status === 'succeeded')
      await this.#applyCapture(
        trx,
        paymentId,
        payment.provider,
        result.providerPaymentId,
        true,
        result.feeMinor,
      );
    return this.get(paymentId, trx);
  }

  /** Voids an authorized payment: the hold is released, no money moved, nothing to book. */
  async voidPayment(paymentId: string): Promise<void> {
    if ((await this.get(paymentId)).status === 'voided') return;
    await this.#onAuthorized(paymentId, 'voided', (p, payment) =>
      p.void(payment.provider_payment_id!, `${payment.id}:void`),
    );
  }

  async finishVoid(trx: Executor, paymentId: string): Promise<Payment> {
    await trx
      .updateTable('payments')
      .set({ status: 'voided', updated_at: this.clock.now() })
      .where('id', '=', paymentId)
      .where('status', '=', 'authorized')
      .execute();
    return this.get(paymentId, trx);
  }

  #status(p: Payment, dispute: 'open' | 'won' | 'lost' | null) {
    return deriveStatus({
      base: baseOf(p.status, p.captured),
      amountMinor: p.amount_minor,
      amountRefundedMinor: p.amount_refunded_minor,
      dispute,
    });
  }

  async #disputeState(trx: Executor, paymentId: string): Promise<'open' | 'won' | 'lost' | null> {
    const d = await trx
      .selectFrom('disputes')
      .select('status')
      .where('payment_id', '=', paymentId)
      .orderBy('created_at', 'desc')
      .executeTakeFirst();
    return d?.status ?? null;
  }

  async get(id: string, trx: Executor = this.db): Promise<Payment> {
    const row = await trx.selectFrom('payments').selectAll().where('id', '=', id).executeTakeFirst();
    if (!row) throw notFound('payment', id);
    return row;
  }

  async list(filter: {
    customer?: string | undefined;
    limit: number;
    after?: string | undefined;
  }): Promise<Payment[]> {
    let q = this.db
      .selectFrom('payments')
      .selectAll()
      .orderBy('id')
      .limit(filter.limit + 1);
    if (filter.customer) q = q.where('customer_id', '=', (await this.customers.get(filter.customer)).id);
    if (filter.after) q = q.where('id', '>', filter.after);
    return q.execute();
  }

  /**
   * What the provider knows about a `processing` payment, applied (the reconciliation job). The
   * lookup happens outside any database transaction; the outcome is applied in one.
   */
  async reconcile(paymentId: string): Promise<void> {
    const payment = await this.get(paymentId);
    if (payment.status !== 'processing') return;
    const snapshot = await this.router.call(payment.provider, (p) => p.lookup(payment.id));
    await transact(this.db, async (trx) => {
      if (snapshot) {
        await this.applySnapshot(trx, payment.provider, snapshot);
        return;
      }
      // The provider never received the charge: nothing was taken, the payment failed.
      await trx
        .updateTable('payments')
        .set({ status: 'failed', decline_code: 'provider_unreachable', updated_at: this.clock.now() })
        .where('id', '=', paymentId)
        .where('status', '=', 'processing')
        .execute();
    });
  }

  // ---- refunds -----------------------------------------------------------------------------

  /** Phase 1 of a refund: checked against what is left under a row lock, stored as pending. */
  async startRefund(
    input: { payment: string; amount?: number | undefined },
    requestKey: string | null,
  ): Promise<{ refund: Refund; payment: Payment }> {
    if (requestKey) {
      const existing = await this.db
        .selectFrom('refunds')
        .selectAll()
        .where('request_key', '=', requestKey)
        .executeTakeFirst();
      if (existing) return { refund: existing, payment: await this.get(existing.payment_id) };
    }
    return transact(this.db, async (trx) => {
      const payment = await trx
        .selectFrom('payments')
        .selectAll()
        .where('id', '=', input.payment)
        .forUpdate()
        .executeTakeFirst();
      if (!payment) throw notFound('payment', input.payment);
      if (!payment.captured || !['succeeded', 'partially_refunded', 'dispute_won'].includes(payment.status)) {
        throw invalidState(
          `Payment ${payment.id} is ${payment.status}: only captured payments can be refunded.`,
        );
      }
      const pending = await trx
        .selectFrom('refunds')
        .select((eb) => eb.fn.sum<number>('amount_minor').as('total'))
        .where('payment_id', '=', payment.id)
        .where('status', '=', 'pending')
        .executeTakeFirst();
      const left = payment.amount_minor - payment.amount_refunded_minor - Number(pending?.total ?? 0);
      const amount = input.amount ?? left;
      if (amount <= 0 || amount > left) {
        throw invalid('amount', `must be between 1 and ${left}, what is left to refund of this payment`);
      }
      const now = this.clock.now();
      const refund: RefundsTable = {
        id: newId('refund'),
        payment_id: payment.id,
        amount_minor: amount,
        status: 'pending',
        provider_refund_id: null,
        failure_reason: null,
        request_key: requestKey,
        created_at: now,
        updated_at: now,
      };
      await trx.insertInto('refunds').values(refund).execute();
      await this.jobs.schedule(trx, {
        kind: 'refunds.reconcile',
        runAt: new Date(Date.now() + RECONCILE_AFTER_MS),
        payload: { refund: refund.id },
        dedupeKey: `refunds.reconcile:${refund.id}`,
      });
      return { refund, payment };
    });
  }

  /** Phase 2: the provider refunds (idempotency key: the refund id). Null when unknown. */
  async callRefund(
    refund: Refund,
    payment: Payment,
  ): Promise<{ providerRefundId: string } | { failed: string } | null> {
    if (refund.status !== 'pending') return null;
    assert(payment.provider_payment_id, `captured payment ${payment.id} has no provider payment id`);
    try {
      const r = await this.router.call(payment.provider, (p) =>
        p.refund(payment.provider_payment_id!, refund.amount_minor, refund.id),
      );
      return { providerRefundId: r.providerRefundId };
    } catch (error) {
      if (error instanceof ProviderError && error.kind === 'rejected') return { failed: error.message };
      if (error instanceof ProviderError) return null;
      throw error;
    }
  }

  /** Phase 3: the refund succeeded (or failed), with its ledger entry. Idempotent. */
  async finishRefund(
    trx: Executor,
    refundId: string,
    outcome: { providerRefundId: string } | { failed: string },
  ): Promise<Refund> {
    const refund = await trx
      .selectFrom('refunds')
      .selectAll()
      .where('id', '=', refundId)
      .forUpdate()
      .executeTakeFirstOrThrow();
    if (refund.status !== 'pending') return refund;
    const now = this.clock.now();
    if ('failed' in outcome) {
      await trx
        .updateTable('refunds')
        .set({ status: 'failed', failure_reason: outcome.failed, updated_at: now })
        .where('id', '=', refundId)
        .execute();
    } else {
      await trx
        .updateTable('refunds')
        .set({ status: 'succeeded', provider_refund_id: outcome.providerRefundId, updated_at: now })
        .where('id', '=', refundId)
        .execute();
      await this.#bookRefund(trx, refund.payment_id, refund.id, refund.amount_minor);
    }
    return trx.selectFrom('refunds').selectAll().where('id', '=', refundId).executeTakeFirstOrThrow();
  }

  async #bookRefund(trx: Executor, paymentId: string, refundId: string, amountMinor: number) {
    const payment = await trx
      .selectFrom('payments')
      .selectAll()
      .where('id', '=', paymentId)
      .forUpdate()
      .executeTakeFirstOrThrow();
    const facts = factsOf(payment);
    const taxPart = refundTaxPart(
      facts,
      payment.amount_refunded_minor,
      payment.tax_refunded_minor,
      amountMinor,
    );
    const updated = {
      ...payment,
      amount_refunded_minor: payment.amount_refunded_minor + amountMinor,
      tax_refunded_minor: payment.tax_refunded_minor + taxPart,
    };
    await trx
      .updateTable('payments')
      .set({
        amount_refunded_minor: updated.amount_refunded_minor,
        tax_refunded_minor: updated.tax_refunded_minor,
        status: this.#status(updated, await this.#disputeState(trx, paymentId)),
        updated_at: this.clock.now(),
      })
      .where('id', '=', paymentId)
      .execute();
    await this.ledger.post(trx, refundEntry(facts, refundId, amountMinor, taxPart, this.clock.now()));
  }

  async #retryRefund(refundId: string): Promise<void> {
    const refund = await this.db
      .selectFrom('refunds')
      .selectAll()
      .where('id', '=', refundId)
      .executeTakeFirstOrThrow();
    if (refund.status !== 'pending') return;
    const payment = await this.get(refund.payment_id);
    const outcome = await this.callRefund(refund, payment);
    if (!outcome) throw new Error(`refund ${refundId}: provider still unavailable`);
    await transact(this.db, (trx) => this.finishRefund(trx, refundId, outcome));
  }

  async getRefund(id: string, trx: Executor = this.db): Promise<Refund> {
    const row = await trx.selectFrom('refunds').selectAll().where('id', '=', id).executeTakeFirst();
    if (!row) throw notFound('refund', id);
    return row;
  }

  // ---- provider news -----------------------------------------------------------------------

  /**
   * A verified provider webhook: stored once by event id (duplicates are answered and ignored),
   * then the payment converges on the provider's snapshot. Events may arrive in any order.
   */
  async receiveEvent(
    trx: Executor,
    provider: string,
    event: ProviderEvent,
  ): Promise<{ duplicate: boolean; payment: string | null }> {
    const payment = await this.#findBySnapshot(trx, provider, event.payment);
    const inserted = await trx
      .insertInto('provider_events')
      .values({
        provider,
        event_id: event.id,
        type: event.type,
        payment_id: payment?.id ?? null,
        received_at: this.clock.now(),
      })
      .onConflict((oc) => oc.columns(['provider', 'event_id']).doNothing())
      .returning('event_id')
      .executeTakeFirst();
    if (!inserted) return { duplicate: true, payment: payment?.id ?? null };
    if (payment) await this.applySnapshot(trx, provider, event.payment);
    return { duplicate: false, payment: payment?.id ?? null };
  }

  async #findBySnapshot(
    trx: Executor,
    provider: string,
    s: ProviderPaymentSnapshot,
  ): Promise<Payment | undefined> {
    const byProviderId = await trx
      .selectFrom('payments')
      .selectAll()
      .where('provider', '=', provider)
      .where('provider_payment_id', '=', s.providerPaymentId)
      .executeTakeFirst();
    if (byProviderId) return byProviderId;
    // Our payment id is the charge's idempotency key: the link when the charge's answer was lost.
    return trx
      .selectFrom('payments')
      .selectAll()
      .where('id', '=', s.idempotencyKey)
      .where('provider', '=', provider)
      .executeTakeFirst();
  }

  /** Moves a payment toward what the provider reports; facts only grow, so order does not matter. */
  async applySnapshot(trx: Executor, provider: string, s: ProviderPaymentSnapshot): Promise<void> {
    const payment = await this.#findBySnapshot(trx, provider, s);
    if (!payment) return;
    const now = this.clock.now();
    if (s.status === 'failed' && payment.status === 'processing') {
      await trx
        .updateTable('payments')
        .set({
          status: 'failed',
          decline_code: s.declineCode,
          provider_payment_id: s.providerPaymentId,
          updated_at: now,
        })
        .where('id', '=', payment.id)
        .where('status', '=', 'processing')
        .execute();
      return;
    }
    if (s.status === 'voided' && (payment.status === 'authorized' || payment.status === 'processing')) {
      await trx
        .updateTable('payments')
        .set({ status: 'voided', provider_payment_id: s.providerPaymentId, updated_at: now })
        .where('id', '=', payment.id)
        .execute();
      return;
    }
    if (s.status === 'authorized' || s.status === 'succeeded') {
      await this.#applyCapture(
        trx,
        payment.id,
        provider,
        s.providerPaymentId,
        s.status === 'succeeded',
        s.feeMinor,
      );
    }
    if (s.status !== 'succeeded') return;
    for (const r of s.refunds) {
      const known = await trx
        .selectFrom('refunds')
        .selectAll()
        .where('provider_refund_id', '=', r.providerRefundId)
        .executeTakeFirst();
      if (known) continue;
      // A refund we started whose answer we lost, or one made at the provider directly.
      const pending = await trx
        .selectFrom('refunds')
        .selectAll()
        .where('payment_id', '=', payment.id)
        .where('status', '=', 'pending')
        .where('amount_minor', '=', r.amountMinor)
        .orderBy('id')
        .forUpdate()
        .executeTakeFirst();
      if (pending) {
        await this.finishRefund(trx, pending.id, { providerRefundId: r.providerRefundId });
      } else {
        const id = newId('refund');
        await trx
          .insertInto('refunds')
          .values({
            id,
            payment_id: payment.id,
            amount_minor: r.amountMinor,
            status: 'succeeded',
            provider_refund_id: r.providerRefundId,
            failure_reason: null,
            request_key: null,
            created_at: now,
            updated_at: now,
          })
          .execute();
        await this.#bookRefund(trx, payment.id, id, r.amountMinor);
      }
    }
    if (s.dispute) await this.#applyDispute(trx, payment.id, s.dispute);
  }

  async #applyDispute(trx: Executor, paymentId: string, d: NonNullable<ProviderPaymentSnapshot['dispute']>) {
    const now = this.clock.now();
    let dispute = await trx
      .selectFrom('disputes')
      .selectAll()
      .where('provider_dispute_id', '=', d.providerDisputeId)
      .forUpdate()
      .executeTakeFirst();
    const payment = await trx
      .selectFrom('payments')
      .selectAll()
      .where('id', '=', paymentId)
      .forUpdate()
      .executeTakeFirstOrThrow();
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
      await trx.insertInto('disputes').values(dispute).execute();
      await this.ledger.post(trx, disputeOpenedEntry(facts, dispute.id, d.amountMinor, d.feeMinor, now));
    }
    if (d.status !== 'open' && dispute.status === 'open') {
      await trx
        .updateTable('disputes')
        .set({ status: d.status, closed_at: now })
        .where('id', '=', dispute.id)
        .execute();
      const closing = disputeClosedEntry(facts, dispute.id, d.status, dispute.amount_minor, now);
      if (closing) await this.ledger.post(trx, closing);
    }
    const state = d.status !== 'open' ? d.status : dispute.status;
    await trx
      .updateTable('payments')
      .set({ status: this.#status(payment, state), updated_at: now })
      .where('id', '=', paymentId)
      .execute();
  }
}

function factsOf(p: Pick<Payment, 'id' | 'provider' | 'currency' | 'amount_minor' | 'tax_minor'>) {
  return {
    id: p.id,
    provider: p.provider,
    currency: p.currency,
    amountMinor: p.amount_minor,
    taxMinor: p.tax_minor,
  };
}

function asJson(value: unknown): string {
  return typeof value === 'string' ? value : JSON.stringify(value);
}
