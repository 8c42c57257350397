import { sql } from 'kysely';
import type { Services } from '../../src/app.js';
import { transact } from '../../src/db/transaction.js';
import { newId } from '../../src/kernel/ids.js';
import { RENEWAL_MARGIN_MS } from '../../src/modules/billing/domain/entitlement.js';
import { periodByIndex } from '../../src/modules/billing/domain/periods.js';
import { seedDemoCatalog } from '../../src/seed/demo-catalog.js';

/** Rows per multi-row insert (one transaction each). */
const CHUNK = 10_000;
/** One subscription in this many is a Family plan with two members besides its owner. */
const FAMILY_EVERY = 10;

export interface SeededUsers {
  /** External ids of everybody entitled: owners, then members. */
  users: number;
  owners: number;
  members: number;
  /** What each kind of user must see. */
  expected: { individual: string[]; family: string[] };
  validUntil: string;
  seconds: number;
  /** The external id of user `i` (0 ≤ i < users). */
  userAt(i: number): string;
}

/**
 * N entitled listeners straight into the database (multi-row INSERT … SELECT FROM unnest, not
 * through the API), as checkout leaves them: customers (no personal data: the entitlement path
 * reads none), `active` monthly subscriptions in their current period, and on every tenth a
 * Family plan with two members. The demo catalog first.
 */
export async function seedEntitled(opts: {
  services: Services;
  owners: number;
  runId: string;
  onProgress?: (done: number) => void;
}): Promise<SeededUsers> {
  const started = performance.now();
  const { services } = opts;
  await seedDemoCatalog(services);
  const market = await services.catalog.getMarket('SE');
  const individual = await services.catalog.getPlan('premium-individual-monthly');
  const family = await services.catalog.getPlan('premium-family-monthly');
  const priceOf = async (planId: string) =>
    services.catalog.priceFor(planId, { market: market.id, at: new Date() });
  const prices = { individual: await priceOf(individual.id), family: await priceOf(family.id) };
  const products = {
    individual: await services.catalog.getProduct(individual.productId),
    family: await services.catalog.getProduct(family.productId),
  };
  // Anchored ten days ago at a whole second: the current period is period 0 of that anchor.
  const anchor = new Date(Math.floor(Date.now() / 1000) * 1000 - 10 * 86_400_000);
  const period = periodByIndex({ anchor, period: 'month', billingCycleDay: null }, 0);
  const owner = (i: number) => `listener-${opts.runId}-${i}`;
  const member = (i: number, k: number) => `member-${opts.runId}-${i}-${k}`;
  const familyCount = Math.floor((opts.owners + FAMILY_EVERY - 1) / FAMILY_EVERY);
  const iso = (d: Date) => d.toISOString();
  for (let from = 0; from < opts.owners; from += CHUNK) {
    const size = Math.min(CHUNK, opts.owners - from);
    const rows = Array.from({ length: size }, (_, k) => {
      const i = from + k;
      const isFamily = i % FAMILY_EVERY === 0;
      return {
        i,
        isFamily,
        customerId: newId('customer'),
        subscriptionId: newId('subscription'),
        plan: isFamily ? family : individual,
        price: isFamily ? prices.family : prices.individual,
      };
    });
    await transact(services.db, async (trx) => {
      await sql`
        INSERT INTO customers (id, external_id, market_id, created_at)
        SELECT id, ext, ${market.id}, ${iso(anchor)}::timestamptz
        FROM unnest(${rows.map((r) => r.customerId)}::text[], ${rows.map((r) => owner(r.i))}::text[]) AS t(id, ext)`.execute(
        trx,
      );
      await sql`
        INSERT INTO subscriptions (id, customer_id, plan_id, product_id, price_version_id, price_minor,
          currency, status, billing_period, billing_anchor, current_period_start, current_period_end,
          version, created_at, updated_at)
        SELECT id, customer, plan, product, pver, price, ${market.currency}, 'active', 'month',
          ${iso(anchor)}::timestamptz, ${iso(period.start)}::timestamptz, ${iso(period.end)}::timestamptz,
          2, ${iso(anchor)}::timestamptz, ${iso(anchor)}::timestamptz
        FROM unnest(${rows.map((r) => r.subscriptionId)}::text[], ${rows.map((r) => r.customerId)}::text[],
          ${rows.map((r) => r.plan.id)}::text[], ${rows.map((r) => r.plan.productId)}::text[],
          ${rows.map((r) => r.price.priceVersionId)}::text[], ${rows.map((r) => r.price.amountMinor)}::bigint[])
          AS t(id, customer, plan, product, pver, price)`.execute(trx);
      const families = rows.filter((r) => r.isFamily);
      if (families.length > 0) {
        await sql`
          INSERT INTO subscription_members (subscription_id, external_id, created_at)
          SELECT sub, ext, ${iso(anchor)}::timestamptz
          FROM unnest(${families.flatMap((r) => [r.subscriptionId, r.subscriptionId])}::text[],
            ${families.flatMap((r) => [member(r.i, 0), member(r.i, 1)])}::text[]) AS t(sub, ext)`.execute(
          trx,
        );
      }
    });
    opts.onProgress?.(from + size);
  }
  await sql`ANALYZE`.execute(services.db);
  const members = familyCount * 2;
  return {
    users: opts.owners + members,
    owners: opts.owners,
    members,
    expected: {
      individual: [...products.individual.features].sort(),
      family: [...products.family.features].sort(),
    },
    validUntil: new Date(period.end.getTime() + RENEWAL_MARGIN_MS).toISOString().replace(/\.\d{3}Z$/, 'Z'),
    seconds: (performance.now() - started) / 1000,
    userAt(i: number) {
      if (i < opts.owners) return owner(i);
      const m = i - opts.owners;
      return member(Math.floor(m / 2) * FAMILY_EVERY, m % 2);
    },
  };
}
