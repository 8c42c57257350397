import { type Kysely, sql } from 'kysely';
import type { Db, Executor } from '../../db/schema.js';
import { transact } from '../../db/transaction.js';
import type { EventsOutbox } from '../../events/outbox.js';
import type { PublicOrigin } from '../../http/public-origin.js';
import { assert } from '../../kernel/assert.js';
import { type Clock, isoSeconds } from '../../kernel/clock.js';
import {
  DomainError,
  type FieldError,
  invalid,
  invalidMany,
  invalidState,
  notFound,
  tooManyAttempts,
} from '../../kernel/errors.js';
import { newId } from '../../kernel/ids.js';
import type { ProviderRouter } from '../../providers/router.js';
import type { Principal } from '../api-keys/service.js';
import type { AuditService } from '../audit/service.js';
import type { BillingService } from '../billing/service.js';
import type { CatalogService, Market } from '../catalog/service.js';
import type { CustomerAccount, CustomerService } from '../customers/service.js';
import type { PaymentService } from '../payments/service.js';
import {
  ATTEMPTS_MAX,
  CONFIRM_CLAIM_MS,
  marketLocale,
  newClientSecret,
  redirectUrlOf,
  SESSION_RETENTION_MS,
  SESSION_TTL_MS,
  type SessionStatus,
  secretMatches,
  sha256,
  statusAt,
} from './domain/session.js';
import { type CheckoutSessionsTable, type CheckoutTables, checkoutTables } from './tables.js';

export interface CreateSessionInput {
  plan: string;
  externalId?: string | undefined;
  customer?: string | undefined;
  market?: string | undefined;
  successUrl?: string | undefined;
  cancelUrl?: string | undefined;
}

/** A session as the API shows it (`url` only in the create call's answer). */
export interface CheckoutSession {
  id: string;
  status: SessionStatus;
  planId: string;
  marketId: string;
  marketCode: string;
  customerId: string | null;
  externalId: string;
  successUrl: string | null;
  cancelUrl: string | null;
  subscriptionId: string | null;
  expiresAt: Date;
  createdAt: Date;
  completedAt: Date | null;
}

/** What the hosted page needs to show and confirm a session. */
export interface CheckoutPage {
  id: string;
  status: SessionStatus;
  expiresAt: string;
  product: { code: string; name: string; features: string[] };
  plan: { code: string; name: string; billingPeriod: 'month' | 'year' | 'week'; trialDays: number };
  price: { amount: number; currency: string };
  trialDays: number;
  market: { code: string; currency: string; locale: string; taxRateBps: number; taxInclusive: boolean };
  customer: { externalId: string };
  successUrl: string | null;
  cancelUrl: string | null;
  provider: { kind: string; elementsUrl: string; origin: string };
  subscription: string | null;
}

/** A confirm's hold on its session: attempt `attempt` runs until it settles or releases it. */
export interface ConfirmClaim {
  session: CheckoutSessionsTable;
  attempt: number;
}

/** The request that acts for a session: its principal (the audit actor) and request id. */
export interface Actor {
  keyId: string;
  requestId: string;
}

/**
 * Hosted checkout sessions (ADR 0023): a link with an unguessable secret that lets one customer
 * subscribe to one plan, paying with a card the provider's own frame tokenizes. This module owns
 * `checkout_sessions`; customers, plans, subscriptions and cards are other modules', reached
 * through their services. Confirming runs in steps each keyed by the session (the routes'
 * `confirm`), so a retry or a crash never makes a second customer, card, subscription or charge.
 */
export class CheckoutService {
  readonly #db: Db;
  readonly #tables: Kysely<CheckoutTables>;

  constructor(
    db: Db,
    readonly clock: Clock,
    readonly deps: {
      customers: CustomerService;
      catalog: CatalogService;
      billing: BillingService;
      payments: PaymentService;
      router: ProviderRouter;
      publicOrigin: PublicOrigin;
      audit: AuditService;
      events: EventsOutbox;
    },
  ) {
    this.#db = db;
    this.#tables = checkoutTables(db);
  }

  // ---- the merchant's API ------------------------------------------------------------------

  /**
   * Checks a new session's input (outside any transaction: catalog and customer reads): exactly
   * one of `externalId` / `customer`; an existing customer's market wins (another `market` is a
   * 400); a new externalId needs `market`; the plan must have a price there (422); redirect URLs
   * on an allowed origin. Returns the row to insert, without its secret.
   */
  async prepare(input: CreateSessionInput): Promise<Omit<CheckoutSessionsTable, 'secret_hash'>> {
    const { customers, catalog, publicOrigin } = this.deps;
    const errors: FieldError[] = [];
    if (input.externalId !== undefined && input.customer !== undefined) {
      errors.push({ path: 'customer', in: 'body', message: 'give either customer or externalId, not both' });
    }
    if (input.externalId === undefined && input.customer === undefined) {
      errors.push(
        { path: 'externalId', in: 'body', message: 'required unless customer is given' },
        { path: 'customer', in: 'body', message: 'required unless externalId is given' },
      );
    }
    if (errors.length > 0) throw invalidMany(errors);
    const successUrl =
      input.successUrl === undefined ? null : publicOrigin.checkRedirect(input.successUrl, 'successUrl');
    const cancelUrl =
      input.cancelUrl === undefined ? null : publicOrigin.checkRedirect(input.cancelUrl, 'cancelUrl');

    const plan = await catalog.getPlan(input.plan).catch(refuseAs('plan', `unknown plan '${input.plan}'`));
    const ref = (input.customer ?? input.externalId)!;
    let customer: CustomerAccount | null = await customers.account(ref).catch((e: unknown) => {
      if (e instanceof DomainError && e.code === 'not_found') return null;
      throw e;
    });
    if (customer && input.customer === undefined && customer.externalId !== input.externalId) {
      // An externalId names a customer by its externalId only (never by an id).
      customer = null;
    }
    if (!customer && input.customer !== undefined) throw invalid('customer', `unknown customer '${ref}'`);
    if (customer?.erasedAt) throw invalidState(`Customer ${customer.id} was erased.`);

    let market: Market;
    if (customer) {
      market = await catalog.getMarket(customer.marketId);
      if (input.market !== undefined) {
        const asked = await catalog
          .getMarket(input.market)
          .catch(refuseAs('market', `unknown market '${input.market}'`));
        if (asked.id !== market.id) {
          throw invalid(
            'market',
            `the customer is in market ${market.code}; leave market out or give ${market.code}`,
          );
        }
      }
    } else {
      if (input.market === undefined) throw invalid('market', 'required for a new customer (externalId)');
      market = await catalog
        .getMarket(input.market)
        .catch(refuseAs('market', `unknown market '${input.market}'`));
    }
    const now = this.clock.now();
    const at = customer ? await customers.now(customer.id) : now;
    // 422 price_not_found when the plan has no price in the market's currency.
    await catalog.priceFor(plan.id, { market: market.id, at });

    return {
      id: newId('checkoutSession', now.getTime()),
      plan_id: plan.id,
      market_id: market.id,
      customer_id: customer?.id ?? null,
      external_id: customer?.externalId ?? input.externalId!,
      success_url: successUrl,
      cancel_url: cancelUrl,
      status: 'open',
      expires_at: new Date(now.getTime() + SESSION_TTL_MS),
      subscription_id: null,
      attempts: 0,
      payment_method_id: null,
      attempt_token_hash: null,
      busy_until: null,
      created_at: now,
      completed_at: null,
      updated_at: now,
    };
  }

  /** Stores a prepared session in the caller's transaction; returns it and its client secret (shown once). */
  async create(
    trx: Executor,
    prepared: Omit<CheckoutSessionsTable, 'secret_hash'>,
  ): Promise<{ session: CheckoutSession; clientSecret: string; url: string }> {
    const clientSecret = newClientSecret();
    const row: CheckoutSessionsTable = { ...prepared, secret_hash: sha256(clientSecret) };
    await checkoutTables(trx).insertInto('checkout_sessions').values(row).execute();
    const session = await this.#toSession(row, trx);
    return {
      session,
      clientSecret,
      url: `${this.deps.publicOrigin.origin}/checkout/${row.id}#${clientSecret}`,
    };
  }

  async get(id: string, trx: Executor = this.#db): Promise<CheckoutSession> {
    return this.#toSession(await this.#row(id, trx), trx);
  }

  /** Sessions oldest first (keyset by id). */
  async list(page: { limit: number; after?: string | undefined }): Promise<CheckoutSession[]> {
    let q = this.#tables.selectFrom('checkout_sessions').selectAll().orderBy('id').limit(page.limit);
    if (page.after) q = q.where('id', '>', page.after);
    const rows = await q.execute();
    const codes = await this.deps.catalog.marketCodes([...new Set(rows.map((r) => r.market_id))]);
    const now = this.clock.now();
    return rows.map((r) => toSession(r, codes.get(r.market_id) ?? r.market_id, now));
  }

  /**
   * Expires an open session now (in the caller's transaction): it can no longer be opened or
   * confirmed. An expired one stays so; a complete one, or one a confirm is running on, is a 409.
   */
  async expire(trx: Executor, id: string): Promise<CheckoutSession> {
    const db = checkoutTables(trx);
    const row = await db
      .selectFrom('checkout_sessions')
      .selectAll()
      .where('id', '=', id)
      .forUpdate()
      .executeTakeFirst();
    if (!row) throw notFound('checkout session', id);
    const now = this.clock.now();
    const status = statusAt(row, now);
    if (status === 'complete') throw invalidState(`Checkout session ${id} is complete.`);
    if (status === 'open' && row.busy_until && row.busy_until.getTime() > now.getTime()) {
      throw invalidState(`A payment of checkout session ${id} is in progress; retry in a moment.`);
    }
    if (row.status === 'open') {
      await db
        .updateTable('checkout_sessions')
        .set({
          status: 'expired',
          expires_at: row.expires_at.getTime() < now.getTime() ? row.expires_at : now,
          updated_at: now,
        })
        .where('id', '=', id)
        .execute();
    }
    return this.get(id, trx);
  }

  /** Deletes sessions that expired more than 30 days ago, in bounded batches; returns how many. */
  async prune(opts: { retentionMs?: number; batch?: number; batches?: number } = {}): Promise<number> {
    const batch = opts.batch ?? 1_000;
    const batches = opts.batches ?? 100;
    assert(Number.isInteger(batch) && batch >= 1 && batch <= 10_000, `prune batch ${batch}`);
    const cutoff = new Date(this.clock.now().getTime() - (opts.retentionMs ?? SESSION_RETENTION_MS));
    let deleted = 0;
    for (let i = 0; i < batches; i++) {
      const result = await sql`DELETE FROM checkout_sessions WHERE id = ANY(ARRAY(
        SELECT id FROM checkout_sessions WHERE expires_at < ${cutoff}
        LIMIT ${batch} FOR UPDATE SKIP LOCKED))`.execute(this.#db);
      const n = Number(result.numAffectedRows ?? 0);
      deleted += n;
      if (n < batch) break;
    }
    return deleted;
  }

  // ---- the hosted page ----------------------------------------------------------------------

  /**
   * The page session's check (registered with PageSessionAuth): the secret must hash to the
   * session's, compared in constant time (against a stand-in hash when the id is unknown), and
   * the session must not be expired; an open one found past its expiry is marked expired.
   */
  async verify(secret: string, id: string): Promise<Principal | null> {
    if (id.length > 64) return null;
    const row = await this.#tables
      .selectFrom('checkout_sessions')
      .select(['id', 'secret_hash', 'status', 'expires_at', 'customer_id'])
      .where('id', '=', id)
      .executeTakeFirst();
    const matches = secretMatches(secret, row?.secret_hash ?? STAND_IN_HASH);
    if (!row || !matches) return null;
    const now = this.clock.now();
    if (statusAt(row, now) === 'expired') {
      if (row.status === 'open') await this.#markExpired(this.#db, id, now);
      return null;
    }
    return {
      keyId: `checkout_session:${row.id}`,
      scopes: [],
      pageSession: { kind: 'checkout', id: row.id, customerId: row.customer_id },
    };
  }

  /** What the hosted page shows: product, plan, the price in the market's currency, trial, tax, the card frame. */
  async page(id: string): Promise<CheckoutPage> {
    const { catalog, customers, billing, router } = this.deps;
    const row = await this.#row(id);
    const plan = await catalog.getPlan(row.plan_id);
    const [product, market] = await Promise.all([
      catalog.getProduct(plan.productId),
      catalog.getMarket(row.market_id),
    ]);
    const at = row.customer_id ? await customers.now(row.customer_id) : this.clock.now();
    const price = await catalog.priceFor(plan.id, { market: market.id, at });
    const hadTrial =
      plan.trialDays > 0 && row.customer_id !== null && (await billing.hadTrial(row.customer_id, product.id));
    const elements = router.cardElements();
    if (!elements) throw new DomainError('provider_unavailable', 'No payment provider offers a card frame.');
    return {
      id: row.id,
      status: statusAt(row, this.clock.now()),
      expiresAt: isoSeconds(row.expires_at),
      product: { code: product.code, name: product.name, features: product.features },
      plan: {
        code: plan.code,
        name: plan.name,
        billingPeriod: plan.billingPeriod,
        trialDays: plan.trialDays,
      },
      price: { amount: price.amountMinor, currency: price.currency },
      trialDays: hadTrial ? 0 : plan.trialDays,
      market: {
        code: market.code,
        currency: market.currency,
        locale: marketLocale(market),
        taxRateBps: market.taxRateBps,
        taxInclusive: market.taxInclusive,
      },
      customer: { externalId: row.external_id },
      successUrl: row.success_url,
      cancelUrl: row.cancel_url,
      provider: { kind: elements.kind, elementsUrl: elements.url, origin: elements.origin },
      subscription: row.subscription_id,
    };
  }

  /** The provider kind the page's card tokens are attached with. */
  elementsKind(): string {
    const elements = this.deps.router.cardElements();
    if (!elements) throw new DomainError('provider_unavailable', 'No payment provider offers a card frame.');
    return elements.kind;
  }

  // ---- confirm, step by step (routes.ts runs them) -----------------------------------------

  /**
   * Claims the session for one confirm (own transaction): 409 when it is complete, expired (made
   * so here when its time has passed) or another confirm holds it. The same card token as an
   * attempt that never concluded (a crash, a provider that has not answered) resumes that attempt,
   * so its card is not attached twice; another token begins attempt n + 1.
   */
  async claim(id: string, token: string): Promise<ConfirmClaim> {
    const tokenHash = sha256(token);
    const result = await transact(this.#db, async (trx) => {
      const db = checkoutTables(trx);
      const row = await db
        .selectFrom('checkout_sessions')
        .selectAll()
        .where('id', '=', id)
        .forUpdate()
        .executeTakeFirst();
      if (!row) return { refused: notFound('checkout session', id) };
      const now = this.clock.now();
      const status = statusAt(row, now);
      if (status === 'complete') return { refused: invalidState('This checkout is already complete.') };
      if (status === 'expired') {
        if (row.status === 'open') await this.#markExpired(trx, id, now);
        return { refused: invalidState('This checkout has expired.') };
      }
      if (row.busy_until && row.busy_until.getTime() > now.getTime()) {
        return { refused: invalidState('A payment of this checkout is in progress.') };
      }
      const resumes =
        row.attempt_token_hash !== null && Buffer.from(row.attempt_token_hash).equals(tokenHash);
      const attempt = resumes ? row.attempts : row.attempts + 1;
      if (attempt > ATTEMPTS_MAX) {
        return {
          refused: tooManyAttempts(
            `This checkout has had ${ATTEMPTS_MAX} payment attempts; start a new checkout.`,
            ATTEMPTS_MAX,
          ),
        };
      }
      await db
        .updateTable('checkout_sessions')
        .set({
          attempts: attempt,
          attempt_token_hash: tokenHash,
          busy_until: new Date(now.getTime() + CONFIRM_CLAIM_MS),
          updated_at: now,
        })
        .where('id', '=', id)
        .execute();
      return { claim: { session: { ...row, attempts: attempt }, attempt } };
    });
    if ('refused' in result) throw result.refused;
    return result.claim;
  }

  /**
   * The session's customer: the one it names, or the customer with its externalId (made now in
   * the market of the session, recorded on the session and audited in the same transaction; a
   * customer made meanwhile by another path is taken when it is in that market).
   */
  async ensureCustomer(claim: ConfirmClaim, actor: Actor): Promise<string> {
    const session = claim.session;
    if (session.customer_id) return session.customer_id;
    const { customers, audit } = this.deps;
    for (let round = 0; round < 2; round++) {
      // By externalId only: an externalId shaped like a customer id never names that customer.
      const existing = (await customers.accountsByExternalIds([session.external_id])).get(
        session.external_id,
      );
      if (existing) {
        if (existing.marketId !== session.market_id) {
          throw invalidState(
            `Customer '${session.external_id}' exists in another market than this checkout's; create a new checkout.`,
          );
        }
        if (existing.erasedAt) throw invalidState(`Customer ${existing.id} was erased.`);
        await this.#tables
          .updateTable('checkout_sessions')
          .set({ customer_id: existing.id })
          .where('id', '=', session.id)
          .where('customer_id', 'is', null)
          .execute();
        return existing.id;
      }
      try {
        return await transact(this.#db, async (trx) => {
          const created = await customers.create(
            { externalId: session.external_id, market: session.market_id },
            trx,
          );
          await checkoutTables(trx)
            .updateTable('checkout_sessions')
            .set({ customer_id: created.id })
            .where('id', '=', session.id)
            .execute();
          await audit.record(trx, {
            apiKeyId: actor.keyId,
            action: 'customers.create',
            resourceType: 'customer',
            resourceId: created.id,
            requestId: actor.requestId,
            status: 201,
          });
          return created.id;
        });
      } catch (e) {
        // Made by another path between our read and insert: take it (next round).
        if (!(e instanceof DomainError && e.code === 'already_exists')) throw e;
      }
    }
    throw invalidState(`Customer '${session.external_id}' is being created; retry.`);
  }

  /** Records the card an attempt attached (audited once per card, in the same statement's transaction). */
  async recordMethod(claim: ConfirmClaim, methodId: string, actor: Actor): Promise<void> {
    await transact(this.#db, async (trx) => {
      const changed = await checkoutTables(trx)
        .updateTable('checkout_sessions')
        .set({ payment_method_id: methodId })
        .where('id', '=', claim.session.id)
        .where((eb) => eb.or([eb('payment_method_id', 'is', null), eb('payment_method_id', '!=', methodId)]))
        .executeTakeFirst();
      if (Number(changed.numUpdatedRows) === 0) return;
      await this.deps.audit.record(trx, {
        apiKeyId: actor.keyId,
        action: 'payment_methods.attach',
        resourceType: 'payment_method',
        resourceId: methodId,
        requestId: actor.requestId,
        status: 201,
      });
    });
  }

  /**
   * The subscription this session made, if any: recorded on it, or found by the checkout's
   * request key (a crash between the subscription and the session recording it).
   */
  async subscriptionOf(claim: ConfirmClaim): Promise<string | null> {
    return (
      claim.session.subscription_id ??
      (await this.deps.billing.subscriptionIdByRequestKey(subscribeKey(claim.session.id)))
    );
  }

  /**
   * The attempt succeeded (in the confirm's unit of work): the session is complete with its
   * customer and subscription, the card that paid is the customer's default, and
   * `checkout_session.completed` is appended. Completing a complete session changes nothing.
   */
  async complete(
    trx: Executor,
    claim: ConfirmClaim,
    done: { customerId: string; subscriptionId: string; methodId: string },
  ): Promise<CheckoutSession> {
    const db = checkoutTables(trx);
    const row = await db
      .selectFrom('checkout_sessions')
      .selectAll()
      .where('id', '=', claim.session.id)
      .forUpdate()
      .executeTakeFirstOrThrow();
    if (row.status !== 'complete') {
      const now = this.clock.now();
      await db
        .updateTable('checkout_sessions')
        .set({
          status: 'complete',
          customer_id: done.customerId,
          subscription_id: done.subscriptionId,
          payment_method_id: done.methodId,
          completed_at: now,
          busy_until: null,
          attempt_token_hash: null,
          updated_at: now,
        })
        .where('id', '=', row.id)
        .execute();
      await this.deps.payments.setDefault(done.customerId, done.methodId, trx);
      const session = await this.get(row.id, trx);
      await this.deps.events.append(trx, {
        type: 'checkout_session.completed',
        aggregate: { type: 'checkout_session', id: row.id, version: 1 },
        customerId: done.customerId,
        data: {
          object: {
            id: session.id,
            object: 'checkout_session',
            status: session.status,
            plan: session.planId,
            market: session.marketCode,
            customer: session.customerId,
            externalId: session.externalId,
            subscription: session.subscriptionId,
            completedAt: session.completedAt ? isoSeconds(session.completedAt) : null,
          },
        },
      });
      return session;
    }
    return this.get(row.id, trx);
  }

  /**
   * The attempt ended without completing: declined (`concluded`: the next confirm begins a new
   * attempt, whatever its token), or not settled yet (a provider that has not answered: the same
   * token resumes it). The session is free for the next confirm; the subscription is recorded.
   */
  async release(
    claim: ConfirmClaim,
    opts: { concluded: boolean; subscriptionId?: string | null | undefined },
    trx: Executor = this.#db,
  ): Promise<void> {
    await checkoutTables(trx)
      .updateTable('checkout_sessions')
      .set((eb) => ({
        busy_until: null,
        ...(opts.concluded ? { attempt_token_hash: null } : {}),
        subscription_id: opts.subscriptionId
          ? eb.fn.coalesce('subscription_id', eb.val(opts.subscriptionId))
          : eb.ref('subscription_id'),
        updated_at: this.clock.now(),
      }))
      .where('id', '=', claim.session.id)
      .where('attempts', '=', claim.attempt)
      .where('status', '=', 'open')
      .execute();
  }

  /** Where the customer goes once the checkout is complete. */
  redirectUrl(claim: ConfirmClaim): string {
    return redirectUrlOf(claim.session, this.deps.publicOrigin.origin);
  }

  // ---- internals

  async #markExpired(executor: Executor, id: string, now: Date): Promise<void> {
    await checkoutTables(executor)
      .updateTable('checkout_sessions')
      .set({ status: 'expired', updated_at: now })
      .where('id', '=', id)
      .where('status', '=', 'open')
      .where('expires_at', '<=', now)
      .execute();
  }

  async #row(id: string, executor: Executor = this.#db): Promise<CheckoutSessionsTable> {
    const row = await checkoutTables(executor)
      .selectFrom('checkout_sessions')
      .selectAll()
      .where('id', '=', id)
      .executeTakeFirst();
    if (!row) throw notFound('checkout session', id);
    return row;
  }

  async #toSession(row: CheckoutSessionsTable, executor: Executor): Promise<CheckoutSession> {
    const market = await this.deps.catalog.getMarket(row.market_id, executor);
    return toSession(row, market.code, this.clock.now());
  }
}

/** The request key of the subscription a session makes (one per session, whatever the attempts). */
export const subscribeKey = (sessionId: string) => `checkout:${sessionId}:subscribe`;
/** The request key of the card attempt `attempt` of a session attaches. */
export const cardKey = (sessionId: string, attempt: number) => `checkout:${sessionId}:${attempt}:card`;

/** Compared against when a session id is unknown, so an unknown id costs what a known one does. */
const STAND_IN_HASH = sha256('checkout session stand-in');

function toSession(row: CheckoutSessionsTable, marketCode: string, now: Date): CheckoutSession {
  return {
    id: row.id,
    status: statusAt(row, now),
    planId: row.plan_id,
    marketId: row.market_id,
    marketCode,
    customerId: row.customer_id,
    externalId: row.external_id,
    successUrl: row.success_url,
    cancelUrl: row.cancel_url,
    subscriptionId: row.subscription_id,
    expiresAt: row.expires_at,
    createdAt: row.created_at,
    completedAt: row.completed_at,
  };
}

/** A `not_found` of a referenced resource as a 400 naming the body field that referenced it. */
function refuseAs(field: string, message: string) {
  return (e: unknown): never => {
    if (e instanceof DomainError && e.code === 'not_found') throw invalid(field, message);
    throw e;
  };
}
