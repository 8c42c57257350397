import type { Kysely } from 'kysely';
import { isUniqueViolation } from '../../db/errors.js';
import type { Db, Executor } from '../../db/schema.js';
import { afterCommit } from '../../db/transaction.js';
import type { Clock } from '../../kernel/clock.js';
import { isCurrency } from '../../kernel/currency.js';
import { alreadyExists, DomainError, invalid, invalidMany, notFound } from '../../kernel/errors.js';
import { isIdOf, newId } from '../../kernel/ids.js';
import {
  canonicalLocale,
  defaultLocale,
  joinAddress,
  type Seller,
  splitAddress,
} from './domain/market-profile.js';
import { type PriceVersion, type ResolvedPrice, resolvePrice } from './domain/price-resolution.js';
import { checkPrices, type PriceInput } from './domain/price-rules.js';
import {
  type CatalogTables,
  catalogTables,
  type MarketsTable,
  type PlansTable,
  type PriceVersionsTable,
  type ProductsTable,
} from './tables.js';

export type BillingPeriod = PlansTable['billing_period'];
export type Timing = 'immediate' | 'end_of_term';

export interface Market {
  id: string;
  code: string;
  name: string | null;
  currency: string;
  taxRateBps: number;
  taxInclusive: boolean;
  createdAt: Date;
  /** BCP 47 locale its amounts and dates are shown in (invoices, the web console). */
  locale: string;
  /** The seller its invoices name; null until set. */
  seller: Seller | null;
}

export type { Seller };

export interface Product {
  id: string;
  code: string;
  name: string;
  features: string[];
  seats: number;
  createdAt: Date;
}

export interface Plan {
  id: string;
  code: string;
  name: string;
  productId: string;
  billingPeriod: BillingPeriod;
  trialDays: number;
  changeTiming: Timing | null;
  cancelTiming: Timing | null;
  createdAt: Date;
  versions: PriceVersion[];
}

export interface SellerInput {
  legalName: string;
  address: string[];
  taxId?: string | null | undefined;
}

export interface MarketInput {
  code: string;
  name?: string | undefined;
  currency: string;
  taxRateBps: number;
  taxInclusive: boolean;
  locale?: string | undefined;
  seller?: SellerInput | null | undefined;
}

/** What `PATCH /v1/markets/{id}` may change; an absent field stays as it is, `seller: null` removes it. */
export interface MarketUpdate {
  locale?: string | undefined;
  seller?: SellerInput | null | undefined;
}

export interface ProductInput {
  code: string;
  name?: string | undefined;
  features: string[];
  seats: number;
}

export interface PlanInput {
  code: string;
  name?: string | undefined;
  product: string;
  billingPeriod: BillingPeriod;
  trialDays: number;
  prices: PriceInput[];
  changeTiming?: Timing | undefined;
  cancelTiming?: Timing | undefined;
}

export interface PriceVersionInput {
  prices: PriceInput[];
  effectiveAt: Date;
  existingSubscribersFrom?: Date | undefined;
}

const toMarket = (r: MarketsTable): Market => ({
  id: r.id,
  code: r.code,
  name: r.name,
  currency: r.currency,
  taxRateBps: r.tax_rate_bps,
  taxInclusive: r.tax_inclusive,
  createdAt: r.created_at,
  locale: r.locale ?? defaultLocale(r.code),
  seller:
    r.seller_legal_name !== null && r.seller_address !== null
      ? { legalName: r.seller_legal_name, address: splitAddress(r.seller_address), taxId: r.seller_tax_id }
      : null,
});

/** The seller columns of a market row for this input (all null when there is none). */
const sellerColumns = (seller: SellerInput | null | undefined) => ({
  seller_legal_name: seller ? seller.legalName : null,
  seller_address: seller ? joinAddress(seller.address) : null,
  seller_tax_id: seller?.taxId ?? null,
});

/** The canonical form of a locale given by a client; a bad one is 400 naming `locale`. */
function checkedLocale(tag: string): string {
  const checked = canonicalLocale(tag);
  if (!checked.ok) throw invalid('locale', checked.message);
  return checked.value;
}

const toProduct = (r: ProductsTable): Product => ({
  id: r.id,
  code: r.code,
  name: r.name,
  features: r.features,
  seats: r.seats,
  createdAt: r.created_at,
});

interface Page {
  limit: number;
  after?: string | undefined;
}

/** The whole catalog in memory: it is read on every checkout and changes rarely. */
interface Snapshot {
  generation: number;
  loadedAtMs: number;
  markets: Market[];
  products: Product[];
  plans: Plan[];
  marketByRef: Map<string, Market>;
  productByRef: Map<string, Product>;
  planByRef: Map<string, Plan>;
}

/**
 * How stale another node's view of the catalog may be. This node drops its snapshot as soon as
 * one of its own catalog writes commits.
 */
export const SNAPSHOT_TTL_MS = 2_000;

function page<T extends { id: string }>(items: T[], p: Page): T[] {
  const start = p.after ? items.findIndex((x) => x.id > p.after!) : 0;
  return start < 0 ? [] : items.slice(start, start + p.limit + 1);
}

/**
 * Markets, products, plans and their price versions. Everything that refers to one of them
 * accepts its id or its code.
 */
export class CatalogService {
  readonly #db: Db;
  /** The shared database seen through the catalog's tables, for reads outside a transaction. */
  readonly #tables: Kysely<CatalogTables>;
  readonly #clock: Clock;
  #snapshot: Snapshot | undefined;
  #loading: Promise<Snapshot> | undefined;
  #generation = 0;

  constructor(db: Db, clock: Clock) {
    this.#db = db;
    this.#tables = catalogTables(db);
    this.#clock = clock;
  }

  /** Reads outside a transaction are served from the snapshot; inside one, from the database. */
  async #cached(trx: Executor): Promise<Snapshot | undefined> {
    if (trx.isTransaction) return undefined;
    const snap = this.#snapshot;
    if (snap && snap.generation === this.#generation && performance.now() - snap.loadedAtMs < SNAPSHOT_TTL_MS)
      return snap;
    if (!this.#loading) {
      this.#loading = this.#load().finally(() => {
        this.#loading = undefined;
      });
    }
    return this.#loading;
  }

  async #load(): Promise<Snapshot> {
    const generation = this.#generation;
    // The age of a cache, not business time: a monotonic timer, never a (test) clock.
    const loadedAtMs = performance.now();
    const [marketRows, productRows, planRows] = await Promise.all([
      this.#tables.selectFrom('markets').selectAll().orderBy('id').execute(),
      this.#tables.selectFrom('products').selectAll().orderBy('id').execute(),
      this.#tables.selectFrom('plans').selectAll().orderBy('id').execute(),
    ]);
    const markets = marketRows.map(toMarket);
    const products = productRows.map(toProduct);
    const plans = await this.#hydrate(planRows, this.#tables);
    const snap: Snapshot = {
      generation,
      loadedAtMs,
      markets,
      products,
      plans,
      marketByRef: new Map(
        markets.flatMap(
          (m) =>
            [
              [m.id, m],
              [m.code, m],
            ] as const,
        ),
      ),
      productByRef: new Map(
        products.flatMap(
          (m) =>
            [
              [m.id, m],
              [m.code, m],
            ] as const,
        ),
      ),
      planByRef: new Map(
        plans.flatMap(
          (m) =>
            [
              [m.id, m],
              [m.code, m],
            ] as const,
        ),
      ),
    };
    // A write that committed while this loaded bumped the generation: do not keep stale data.
    if (generation === this.#generation) this.#snapshot = snap;
    return snap;
  }

  /**
   * An identity for what reads outside a transaction see now: it changes whenever the snapshot
   * is replaced (a write on this node, or the cross-node refresh), so rendered answers keyed by
   * it are never older than the snapshot itself.
   */
  async servedVersion(): Promise<object> {
    const snap = await this.#cached(this.#db);
    return snap ?? {};
  }

  /** Called by every catalog write: the snapshot goes now and again once the write commits. */
  #changed(trx: Executor): void {
    this.#generation++;
    this.#snapshot = undefined;
    afterCommit(trx, () => {
      this.#generation++;
      this.#snapshot = undefined;
    });
  }

  // ---- markets ---------------------------------------------------------------------------

  async createMarket(input: MarketInput, trx: Executor): Promise<Market> {
    if (!isCurrency(input.currency))
      throw invalid('currency', `'${input.currency}' is not an ISO 4217 currency`);
    const row: MarketsTable = {
      id: newId('market'),
      code: input.code,
      name: input.name ?? null,
      currency: input.currency,
      tax_rate_bps: input.taxRateBps,
      tax_inclusive: input.taxInclusive,
      created_at: this.#clock.now(),
      locale: input.locale === undefined ? defaultLocale(input.code) : checkedLocale(input.locale),
      ...sellerColumns(input.seller),
    };
    await this.#insertUnique('market', input.code, () =>
      catalogTables(trx).insertInto('markets').values(row).execute(),
    );
    this.#changed(trx);
    return toMarket(row);
  }

  /**
   * Changes a market's locale and seller (nothing else of a market changes: its code, currency
   * and tax are on every invoice and price already). One conditional statement: the row as it is
   * after this write.
   */
  async updateMarket(ref: string, input: MarketUpdate, trx: Executor): Promise<Market> {
    const set: Partial<MarketsTable> = {};
    if (input.locale !== undefined) set.locale = checkedLocale(input.locale);
    if (input.seller !== undefined) Object.assign(set, sellerColumns(input.seller));
    const db = catalogTables(trx);
    const where = isIdOf('market', ref) ? 'id' : 'code';
    const row =
      Object.keys(set).length === 0
        ? await db.selectFrom('markets').selectAll().where(where, '=', ref).executeTakeFirst()
        : await db.updateTable('markets').set(set).where(where, '=', ref).returningAll().executeTakeFirst();
    if (!row) throw notFound('market', ref);
    if (Object.keys(set).length > 0) this.#changed(trx);
    return toMarket(row);
  }

  async getMarket(ref: string, trx: Executor = this.#db): Promise<Market> {
    const snap = await this.#cached(trx);
    if (snap) {
      const found = snap.marketByRef.get(ref);
      if (!found) throw notFound('market', ref);
      return found;
    }
    const row = await catalogTables(trx)
      .selectFrom('markets')
      .selectAll()
      .where(isIdOf('market', ref) ? 'id' : 'code', '=', ref)
      .executeTakeFirst();
    if (!row) throw notFound('market', ref);
    return toMarket(row);
  }

  async listMarkets(p: Page): Promise<Market[]> {
    const snap = await this.#cached(this.#db);
    if (snap) return page(snap.markets, p);
    let q = this.#tables
      .selectFrom('markets')
      .selectAll()
      .orderBy('id')
      .limit(p.limit + 1);
    if (p.after) q = q.where('id', '>', p.after);
    return (await q.execute()).map(toMarket);
  }

  async #allMarkets(db: Kysely<CatalogTables>): Promise<Market[]> {
    return (await db.selectFrom('markets').selectAll().execute()).map(toMarket);
  }

  // ---- products --------------------------------------------------------------------------

  async createProduct(input: ProductInput, trx: Executor): Promise<Product> {
    const row: ProductsTable = {
      id: newId('product'),
      code: input.code,
      name: input.name ?? input.code,
      features: [...new Set(input.features)],
      seats: input.seats,
      created_at: this.#clock.now(),
    };
    await this.#insertUnique('product', input.code, () =>
      catalogTables(trx)
        .insertInto('products')
        .values({ ...row, features: JSON.stringify(row.features) as unknown as string[] })
        .execute(),
    );
    this.#changed(trx);
    return toProduct(row);
  }

  async getProduct(ref: string, trx: Executor = this.#db): Promise<Product> {
    const snap = await this.#cached(trx);
    if (snap) {
      const found = snap.productByRef.get(ref);
      if (!found) throw notFound('product', ref);
      return found;
    }
    const row = await catalogTables(trx)
      .selectFrom('products')
      .selectAll()
      .where(isIdOf('product', ref) ? 'id' : 'code', '=', ref)
      .executeTakeFirst();
    if (!row) throw notFound('product', ref);
    return toProduct(row);
  }

  async listProducts(p: Page): Promise<Product[]> {
    const snap = await this.#cached(this.#db);
    if (snap) return page(snap.products, p);
    let q = this.#tables
      .selectFrom('products')
      .selectAll()
      .orderBy('id')
      .limit(p.limit + 1);
    if (p.after) q = q.where('id', '>', p.after);
    return (await q.execute()).map(toProduct);
  }

  // ---- plans and prices ------------------------------------------------------------------

  async createPlan(input: PlanInput, trx: Executor): Promise<Plan> {
    const product = await this.getProduct(input.product, trx).catch((e: unknown) => {
      if (e instanceof DomainError && e.code === 'not_found')
        throw invalid('product', `unknown product '${input.product}'`);
      throw e;
    });
    const db = catalogTables(trx);
    const markets = await this.#allMarkets(db);
    const errors = checkPrices(input.prices, (ref) => markets.find((m) => m.code === ref || m.id === ref));
    if (errors.length > 0) throw invalidMany(errors);
    const now = this.#clock.now();
    const plan: PlansTable = {
      id: newId('plan'),
      code: input.code,
      product_id: product.id,
      name: input.name ?? input.code,
      billing_period: input.billingPeriod,
      trial_days: input.trialDays,
      change_timing: input.changeTiming ?? null,
      cancel_timing: input.cancelTiming ?? null,
      created_at: now,
    };
    await this.#insertUnique('plan', input.code, () => db.insertInto('plans').values(plan).execute());
    await this.#insertVersion(db, plan.id, 1, null, null, input.prices, markets, now);
    this.#changed(trx);
    return this.getPlan(plan.id, trx);
  }

  async addPriceVersion(planRef: string, input: PriceVersionInput, trx: Executor): Promise<PriceVersion> {
    const db = catalogTables(trx);
    const plan = await this.getPlan(planRef, trx, { lock: true });
    const markets = await this.#allMarkets(db);
    const errors = checkPrices(input.prices, (ref) => markets.find((m) => m.code === ref || m.id === ref));
    const last = plan.versions.at(-1);
    if (last?.effectiveAt && input.effectiveAt.getTime() <= last.effectiveAt.getTime()) {
      errors.push({
        path: 'effectiveAt',
        message: `must be after the latest version's effectiveAt (${last.effectiveAt.toISOString()})`,
      });
    }
    if (
      input.existingSubscribersFrom &&
      input.existingSubscribersFrom.getTime() < input.effectiveAt.getTime()
    ) {
      errors.push({ path: 'existingSubscribersFrom', message: 'must not be before effectiveAt' });
    }
    if (errors.length > 0) throw invalidMany(errors);
    const version = (last?.version ?? 0) + 1;
    const id = await this.#insertVersion(
      db,
      plan.id,
      version,
      input.effectiveAt,
      input.existingSubscribersFrom ?? null,
      input.prices,
      markets,
      this.#clock.now(),
    );
    this.#changed(trx);
    const versions = await this.#versionsOf([plan.id], db);
    const created = versions.get(plan.id)?.find((v) => v.id === id);
    if (!created) throw new Error('price version vanished inside its own transaction');
    return created;
  }

  async #insertVersion(
    db: Kysely<CatalogTables>,
    planId: string,
    version: number,
    effectiveAt: Date | null,
    existingFrom: Date | null,
    prices: PriceInput[],
    markets: Market[],
    now: Date,
  ): Promise<string> {
    const id = newId('priceVersion');
    await db
      .insertInto('price_versions')
      .values({
        id,
        plan_id: planId,
        version,
        effective_at: effectiveAt,
        existing_subscribers_from: existingFrom,
        created_at: now,
      })
      .execute();
    await db
      .insertInto('plan_prices')
      .values(
        prices.map((p) => ({
          price_version_id: id,
          currency: p.currency,
          market_id:
            p.market === undefined
              ? null
              : (markets.find((m) => m.code === p.market || m.id === p.market)?.id ?? null),
          amount_minor: p.amount,
        })),
      )
      .execute();
    return id;
  }

  async getPlan(ref: string, trx: Executor = this.#db, opts: { lock?: boolean } = {}): Promise<Plan> {
    const snap = opts.lock ? undefined : await this.#cached(trx);
    if (snap) {
      const found = snap.planByRef.get(ref);
      if (!found) throw notFound('plan', ref);
      return found;
    }
    const db = catalogTables(trx);
    let q = db
      .selectFrom('plans')
      .selectAll()
      .where(isIdOf('plan', ref) ? 'id' : 'code', '=', ref);
    if (opts.lock) q = q.forUpdate();
    const row = await q.executeTakeFirst();
    if (!row) throw notFound('plan', ref);
    const [plan] = await this.#hydrate([row], db);
    return plan!;
  }

  async listPlans(p: Page & { product?: string | undefined }): Promise<Plan[]> {
    const productId = p.product ? (await this.getProduct(p.product)).id : undefined;
    const snap = await this.#cached(this.#db);
    if (snap) return page(productId ? snap.plans.filter((x) => x.productId === productId) : snap.plans, p);
    let q = this.#tables
      .selectFrom('plans')
      .selectAll()
      .orderBy('id')
      .limit(p.limit + 1);
    if (p.after) q = q.where('id', '>', p.after);
    if (productId) q = q.where('product_id', '=', productId);
    return this.#hydrate(await q.execute(), this.#tables);
  }

  /** Three queries for a page of plans, however long: plans, their versions, their prices. */
  async #hydrate(rows: PlansTable[], db: Kysely<CatalogTables>): Promise<Plan[]> {
    const versions = await this.#versionsOf(
      rows.map((r) => r.id),
      db,
    );
    return rows.map((r) => ({
      id: r.id,
      code: r.code,
      name: r.name,
      productId: r.product_id,
      billingPeriod: r.billing_period,
      trialDays: r.trial_days,
      changeTiming: r.change_timing,
      cancelTiming: r.cancel_timing,
      createdAt: r.created_at,
      versions: versions.get(r.id) ?? [],
    }));
  }

  async #versionsOf(planIds: string[], db: Kysely<CatalogTables>): Promise<Map<string, PriceVersion[]>> {
    if (planIds.length === 0) return new Map();
    const versions = await db
      .selectFrom('price_versions')
      .selectAll()
      .where('plan_id', 'in', planIds)
      .orderBy('plan_id')
      .orderBy('version')
      .execute();
    return this.#withPrices(versions, db);
  }

  /** The prices of these version rows, grouped by plan, in the rows' order. */
  async #withPrices(
    versions: PriceVersionsTable[],
    db: Kysely<CatalogTables>,
  ): Promise<Map<string, PriceVersion[]>> {
    const out = new Map<string, PriceVersion[]>();
    const prices =
      versions.length === 0
        ? []
        : await db
            .selectFrom('plan_prices')
            .selectAll()
            .where(
              'price_version_id',
              'in',
              versions.map((v) => v.id),
            )
            .orderBy('currency')
            .orderBy('market_id', (ob) => ob.nullsFirst())
            .execute();
    for (const v of versions) {
      const list = out.get(v.plan_id) ?? [];
      list.push({
        id: v.id,
        version: v.version,
        effectiveAt: v.effective_at,
        existingSubscribersFrom: v.existing_subscribers_from,
        prices: prices
          .filter((p) => p.price_version_id === v.id)
          .map((p) => ({ currency: p.currency, marketId: p.market_id, amountMinor: p.amount_minor })),
      });
      out.set(v.plan_id, list);
    }
    return out;
  }

  /**
   * A page of a plan's price versions in version order (oldest first), `limit + 1` at most; the
   * cursor is the id of the last version seen.
   */
  async listPriceVersions(
    planRef: string,
    p: Page,
    trx: Executor = this.#db,
  ): Promise<{ planId: string; versions: PriceVersion[] }> {
    const snap = await this.#cached(trx);
    if (snap) {
      const plan = snap.planByRef.get(planRef);
      if (!plan) throw notFound('plan', planRef);
      let start = 0;
      if (p.after) {
        start = plan.versions.findIndex((v) => v.id === p.after) + 1;
        if (start === 0) throw invalid('cursor', 'is not a cursor of this list', 'query');
      }
      return { planId: plan.id, versions: plan.versions.slice(start, start + p.limit + 1) };
    }
    const db = catalogTables(trx);
    const plan = await db
      .selectFrom('plans')
      .select('id')
      .where(isIdOf('plan', planRef) ? 'id' : 'code', '=', planRef)
      .executeTakeFirst();
    if (!plan) throw notFound('plan', planRef);
    let after = 0;
    if (p.after) {
      const last = await db
        .selectFrom('price_versions')
        .select('version')
        .where('id', '=', p.after)
        .where('plan_id', '=', plan.id)
        .executeTakeFirst();
      if (!last) throw invalid('cursor', 'is not a cursor of this list', 'query');
      after = last.version;
    }
    const rows = await db
      .selectFrom('price_versions')
      .selectAll()
      .where('plan_id', '=', plan.id)
      .where('version', '>', after)
      .orderBy('version')
      .limit(p.limit + 1)
      .execute();
    return { planId: plan.id, versions: (await this.#withPrices(rows, db)).get(plan.id) ?? [] };
  }

  /**
   * The price of a plan for a customer in `market` at `at`: the pure rule of
   * domain/price-resolution.ts over this plan's versions.
   */
  async priceFor(
    planRef: string,
    query: { market: string; at: Date; subscribedAt?: Date | null },
    trx: Executor = this.#db,
  ): Promise<ResolvedPrice & { market: Market; planId: string }> {
    const [plan, market] = await Promise.all([this.getPlan(planRef, trx), this.getMarket(query.market, trx)]);
    const result = resolvePrice(plan.versions, {
      market: { id: market.id, currency: market.currency },
      at: query.at,
      subscribedAt: query.subscribedAt ?? null,
    });
    if (!result.ok) throw new DomainError('price_not_found', `Plan ${plan.code}: ${result.detail}.`);
    return { ...result.value, market, planId: plan.id };
  }

  async marketCodes(ids: readonly string[], trx: Executor = this.#db): Promise<Map<string, string>> {
    if (ids.length === 0) return new Map();
    const snap = await this.#cached(trx);
    if (snap) return new Map(ids.map((id) => [id, snap.marketByRef.get(id)?.code ?? id]));
    const rows = await catalogTables(trx)
      .selectFrom('markets')
      .select(['id', 'code'])
      .where('id', 'in', [...new Set(ids)])
      .execute();
    return new Map(rows.map((r) => [r.id, r.code]));
  }

  async #insertUnique(resource: string, code: string, insert: () => Promise<unknown>): Promise<void> {
    try {
      await insert();
    } catch (e) {
      if (isUniqueViolation(e)) throw alreadyExists(resource, 'code', code);
      throw e;
    }
  }
}
