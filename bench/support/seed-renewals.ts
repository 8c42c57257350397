import { Agent, request } from 'node:http';
import { sql } from 'kysely';
import type { Services } from '../../src/app.js';
import { type MasterKey, newDataKey, seal } from '../../src/crypto/envelope.js';
import type { KeyStore } from '../../src/crypto/key-store.js';
import { transact } from '../../src/db/transaction.js';
import { newId } from '../../src/kernel/ids.js';
import { JOBS } from '../../src/modules/billing/context.js';
import { type BillingPeriod, periodByIndex } from '../../src/modules/billing/domain/periods.js';
import { seedDemoCatalog } from '../../src/seed/demo-catalog.js';

/** Markets of the demo catalog the seeded customers live in (four currencies, taxes in and out). */
export const SEED_MARKETS = ['SE', 'DE', 'GB', 'US'] as const;
const PRODUCTS = ['premium-individual', 'premium-duo', 'premium-family', 'premium-student'] as const;
/** One subscription in this many is on a yearly plan; the others are monthly. */
const YEARLY_EVERY = 5;
/** Rows per INSERT … SELECT FROM unnest(…) statement (and per transaction). */
export const SEED_CHUNK = 10_000;
/** Attach calls to the simulator in flight at once. */
const ATTACH_CONCURRENCY = 32;
/** The provider instance the bench's server processes know the simulator as. */
export const SIMULATOR_ID = 'simulator-a';
/** A card the simulator charges successfully (README "PSP simulator"). */
const TOKEN = 'tok_visa';

export interface SeededRun {
  subscriptions: number;
  monthly: number;
  yearly: number;
  /** The current period end of every seeded subscription: the renewal is due from here. */
  periodEnd: Date;
  /** The end of the period a renewal starts, by billing period. */
  nextEnd: Record<'month' | 'year', Date>;
  seedSeconds: number;
  attachSeconds: number;
}

interface Combo {
  planId: string;
  productId: string;
  marketId: string;
  period: BillingPeriod;
  priceVersionId: string;
  priceMinor: number;
  currency: string;
}

/**
 * The renewal's starting point, written as the product's own checkout (and, for the monthly plans,
 * the trial end that followed it) leaves it: the demo catalog; N customers with sealed personal
 * data (their data keys wrapped by the master key, in the key store); a default `tok_visa` card
 * each, attached at the simulator through its own API (it keeps methods in memory, so each is
 * tokenised there, as `attachMethod` does, with the method's id as the idempotency key); N
 * subscriptions `active`, billing anchor one period before `periodEnd`, priced on the catalog's
 * price version; the trial usage of the monthly ones; and the `billing.cycle` job of each at its
 * period end with checkout's payload and dedupe key. Not through the API: multi-row
 * `INSERT … SELECT FROM unnest(…)` in chunks, one transaction each.
 *
 * Not written: the sign-up's history (its first invoice, payment, ledger entries and events, the
 * finished jobs), which no renewal reads; so what the run finds in those tables is the renewal's.
 */
export async function seedRenewals(opts: {
  services: Services;
  keyStore: KeyStore;
  masterKey: MasterKey;
  simulator: { url: string; apiKey: string };
  subscriptions: number;
  runId: string;
  onProgress?: (done: number) => void;
}): Promise<SeededRun> {
  const started = performance.now();
  const { services, keyStore, masterKey } = opts;
  const db = services.db;
  await seedDemoCatalog(services);
  const { periodEnd, anchors, nextEnd } = renewalTimes(new Date());
  const combos: Combo[] = [];
  for (const code of SEED_MARKETS) {
    const market = await services.catalog.getMarket(code);
    for (const product of PRODUCTS) {
      for (const period of ['month', 'year'] as const) {
        const plan = await services.catalog.getPlan(
          `${product}-${period === 'month' ? 'monthly' : 'yearly'}`,
        );
        const price = await services.catalog.priceFor(plan.id, {
          market: market.id,
          at: createdAt(period, anchors),
        });
        combos.push({
          planId: plan.id,
          productId: plan.productId,
          marketId: market.id,
          period,
          priceVersionId: price.priceVersionId,
          priceMinor: price.amountMinor,
          currency: price.currency,
        });
      }
    }
  }
  const agent = new Agent({ keepAlive: true, maxSockets: ATTACH_CONCURRENCY });
  let attachMs = 0;
  let monthly = 0;
  try {
    /** A chunk's rows, sealed, with its cards' attach at the simulator under way. */
    const prepare = (from: number) => {
      const size = Math.min(SEED_CHUNK, opts.subscriptions - from);
      const rows = Array.from({ length: size }, (_, k) => {
        const i = from + k;
        const period: BillingPeriod = i % YEARLY_EVERY === YEARLY_EVERY - 1 ? 'year' : 'month';
        // Markets round-robin, products in turns of four: every market has every product.
        const market = i % SEED_MARKETS.length;
        const product = Math.floor(i / SEED_MARKETS.length) % PRODUCTS.length;
        const combo = combos[(market * PRODUCTS.length + product) * 2 + (period === 'year' ? 1 : 0)]!;
        return {
          i,
          combo,
          customerId: newId('customer'),
          subscriptionId: newId('subscription'),
          methodId: newId('paymentMethod'),
          jobId: newId('job'),
          created: createdAt(period, anchors),
        };
      });
      // Personal data sealed as CustomerService.create does: a data key per customer, wrapped by
      // the master key into the key store.
      const sealed = rows.map((r) => {
        const dataKey = newDataKey();
        return {
          wrapped: masterKey.wrap(dataKey, r.customerId),
          email: seal(dataKey, `renewal-${opts.runId}-${r.i}@example.com`, `${r.customerId}:email`),
          name: seal(dataKey, `Renewal Subscriber ${r.i}`, `${r.customerId}:name`),
        };
      });
      const attachStarted = performance.now();
      const tokens = attachAll(
        agent,
        opts.simulator,
        rows.map((r) => r.methodId),
      ).then((t) => {
        attachMs += performance.now() - attachStarted;
        return t;
      });
      // Settled even if the chunk before fails first (no unhandled rejection); awaited below.
      tokens.catch(() => undefined);
      return { from, size, rows, sealed, tokens };
    };
    let next: ReturnType<typeof prepare> | undefined = prepare(0);
    while (next) {
      const { from, size, rows, sealed, tokens: pendingTokens }: ReturnType<typeof prepare> = next;
      // The next chunk's cards attach at the simulator while this one is written.
      next = from + size < opts.subscriptions ? prepare(from + size) : undefined;
      // Keys first, so a failed chunk leaves orphan keys (the product's sweep deletes them), never
      // a customer without its key.
      await keyStore.putMany(
        rows.map((r, k) => ({
          subjectId: r.customerId,
          wrapped: sealed[k]!.wrapped,
          masterKeyId: masterKey.id,
          createdAt: r.created,
        })),
      );
      const tokens = await pendingTokens;
      const trials = rows.filter((r) => r.combo.period === 'month');
      monthly += trials.length;
      await transact(db, async (trx) => {
        const iso = (d: Date) => d.toISOString();
        await sql`
          INSERT INTO customers (id, external_id, market_id, billing_cycle_day, test_clock_id,
            email_cipher, name_cipher, erased_at, created_at)
          SELECT id, ext, market, NULL, NULL, decode(email, 'hex'), decode(name, 'hex'), NULL, created
          FROM unnest(${rows.map((r) => r.customerId)}::text[],
            ${rows.map((r) => `renewal-${opts.runId}-${r.i}`)}::text[],
            ${rows.map((r) => r.combo.marketId)}::text[],
            ${sealed.map((s) => s.email.toString('hex'))}::text[],
            ${sealed.map((s) => s.name.toString('hex'))}::text[],
            ${rows.map((r) => iso(r.created))}::timestamptz[]) AS t(id, ext, market, email, name, created)`.execute(
          trx,
        );
        await sql`
          INSERT INTO payment_methods (id, customer_id, provider_kind, brand, last4, is_default,
            request_key, request_hash, created_at)
          SELECT id, customer, 'simulator', 'visa', '4242', true, NULL, NULL, created
          FROM unnest(${rows.map((r) => r.methodId)}::text[], ${rows.map((r) => r.customerId)}::text[],
            ${rows.map((r) => iso(r.created))}::timestamptz[]) AS t(id, customer, created)`.execute(trx);
        await sql`
          INSERT INTO payment_method_tokens (payment_method_id, provider, provider_method_id)
          SELECT id, ${SIMULATOR_ID}, token
          FROM unnest(${rows.map((r) => r.methodId)}::text[], ${tokens}::text[]) AS t(id, token)`.execute(
          trx,
        );
        // As checkout + the first paid period leave it: active on [anchor, periodEnd); the monthly
        // plans had their 30-day trial (anchor = trial end), the yearly ones none.
        await sql`
          INSERT INTO subscriptions (id, customer_id, plan_id, product_id, price_version_id, price_minor,
            currency, status, billing_period, billing_anchor, billing_cycle_day, current_period_start,
            current_period_end, trial_end, cancel_at, ended_at, paused_at, past_due_since, version,
            request_key, request_hash, created_at, updated_at, pending_plan_id, pending_change_at,
            plan_started_at)
          SELECT id, customer, plan, product, pver, price, currency, 'active', period, anchor, NULL,
            anchor, ${iso(periodEnd)}::timestamptz,
            CASE WHEN period = 'month' THEN anchor END, NULL, NULL, NULL, NULL,
            CASE WHEN period = 'month' THEN 3 ELSE 2 END, NULL, NULL, created, anchor, NULL, NULL, NULL
          FROM unnest(${rows.map((r) => r.subscriptionId)}::text[], ${rows.map((r) => r.customerId)}::text[],
            ${rows.map((r) => r.combo.planId)}::text[], ${rows.map((r) => r.combo.productId)}::text[],
            ${rows.map((r) => r.combo.priceVersionId)}::text[], ${rows.map((r) => r.combo.priceMinor)}::bigint[],
            ${rows.map((r) => r.combo.currency)}::text[], ${rows.map((r) => r.combo.period)}::text[],
            ${rows.map((r) => iso(anchors[r.combo.period]))}::timestamptz[],
            ${rows.map((r) => iso(r.created))}::timestamptz[])
            AS t(id, customer, plan, product, pver, price, currency, period, anchor, created)`.execute(trx);
        if (trials.length > 0) {
          await sql`
            INSERT INTO trial_usage (customer_id, product_id, subscription_id, created_at)
            SELECT customer, product, sub, ${iso(createdAt('month', anchors))}::timestamptz
            FROM unnest(${trials.map((r) => r.customerId)}::text[], ${trials.map((r) => r.combo.productId)}::text[],
              ${trials.map((r) => r.subscriptionId)}::text[]) AS t(customer, product, sub)`.execute(trx);
        }
        // BillingContext.scheduleCycle's job, scheduled when the current period started.
        await sql`
          INSERT INTO scheduled_jobs (id, kind, run_at, test_clock_id, customer_id, payload, state,
            attempts, last_error, dedupe_key, created_at, done_at, finished_at, first_failed_at)
          SELECT id, ${JOBS.cycle}, ${iso(periodEnd)}::timestamptz, NULL, customer,
            jsonb_build_object('subscription', sub), 'pending', 0, NULL,
            ${`${JOBS.cycle}:`} || sub || ${`:${periodEnd.getTime()}`}, anchor, NULL, NULL, NULL
          FROM unnest(${rows.map((r) => r.jobId)}::text[], ${rows.map((r) => r.customerId)}::text[],
            ${rows.map((r) => r.subscriptionId)}::text[],
            ${rows.map((r) => iso(anchors[r.combo.period]))}::timestamptz[]) AS t(id, customer, sub, anchor)`.execute(
          trx,
        );
      });
      opts.onProgress?.(from + size);
    }
  } finally {
    agent.destroy();
  }
  await sql`ANALYZE`.execute(db);
  return {
    subscriptions: opts.subscriptions,
    monthly,
    yearly: opts.subscriptions - monthly,
    periodEnd,
    nextEnd,
    seedSeconds: (performance.now() - started) / 1000,
    attachSeconds: attachMs / 1000,
  };
}

/**
 * The seeded period end (a whole second, just past) and the anchors one period before it, such
 * that the product's own period arithmetic (no billing cycle day: the anchor's day and time)
 * gives exactly [anchor, periodEnd) as period 0. Near a month's end a shorter month would clamp
 * the anchor's day, so the period end moves back a day until both grids agree.
 */
export function renewalTimes(now: Date) {
  let end = new Date(Math.floor(now.getTime() / 1000) * 1000 - 1000);
  for (let tries = 0; tries < 4; tries++) {
    const month = shiftUtc(end, 0, -1);
    const year = shiftUtc(end, -1, 0);
    const m = { anchor: month, period: 'month' as const, billingCycleDay: null };
    const y = { anchor: year, period: 'year' as const, billingCycleDay: null };
    if (
      periodByIndex(m, 0).end.getTime() === end.getTime() &&
      periodByIndex(y, 0).end.getTime() === end.getTime()
    ) {
      return {
        periodEnd: end,
        anchors: { month, year, week: end } as Record<BillingPeriod, Date>,
        nextEnd: { month: periodByIndex(m, 1).end, year: periodByIndex(y, 1).end },
      };
    }
    end = new Date(end.getTime() - 86_400_000);
  }
  throw new Error(`no renewal period end found near ${now.toISOString()}`);
}

function shiftUtc(d: Date, years: number, months: number): Date {
  const out = new Date(d);
  out.setUTCFullYear(d.getUTCFullYear() + years, d.getUTCMonth() + months, d.getUTCDate());
  return out;
}

/** When the subscription was created: the monthly ones 30 trial days before their anchor. */
function createdAt(period: BillingPeriod, anchors: Record<BillingPeriod, Date>): Date {
  return period === 'month' ? new Date(anchors.month.getTime() - 30 * 86_400_000) : anchors[period];
}

/** Tokenises `tok_visa` at the simulator once per method id (its idempotency key); the tokens in order. */
async function attachAll(
  agent: Agent,
  simulator: { url: string; apiKey: string },
  methodIds: string[],
): Promise<string[]> {
  const out: string[] = new Array(methodIds.length);
  let next = 0;
  const worker = async () => {
    while (next < methodIds.length) {
      const k = next++;
      out[k] = await attachOne(agent, simulator, methodIds[k]!);
    }
  };
  await Promise.all(Array.from({ length: ATTACH_CONCURRENCY }, worker));
  return out;
}

function attachOne(agent: Agent, simulator: { url: string; apiKey: string }, key: string): Promise<string> {
  const body = JSON.stringify({ token: TOKEN });
  const url = new URL('/v1/payment_methods', simulator.url);
  return new Promise((resolve, reject) => {
    const req = request(
      url,
      {
        method: 'POST',
        agent,
        headers: {
          authorization: `Bearer ${simulator.apiKey}`,
          'content-type': 'application/json',
          'content-length': Buffer.byteLength(body),
          'idempotency-key': key,
        },
        timeout: 30_000,
      },
      (res) => {
        let text = '';
        res.setEncoding('utf8');
        res.on('data', (c: string) => {
          text += c;
        });
        res.on('end', () => {
          if (res.statusCode !== 200) return reject(new Error(`attach ${res.statusCode}: ${text}`));
          resolve((JSON.parse(text) as { id: string }).id);
        });
      },
    );
    req.on('timeout', () => req.destroy(new Error('attach timed out')));
    req.on('error', reject);
    req.end(body);
  });
}
