import type { Services } from '../app.js';
import { hasMeta, setMeta } from '../db/meta.js';
import type { Executor } from '../db/schema.js';
import { transact } from '../db/transaction.js';
import { DomainError } from '../kernel/errors.js';
import { parseMajor } from '../kernel/money.js';
import type { BillingPeriod } from '../modules/catalog/service.js';

/**
 * The demo catalog of a music-streaming service: four products (Individual, Duo with 2 seats,
 * Family with 6, Student), monthly and yearly plans, eight markets with their own currencies
 * (JPY has no minor unit), tax-inclusive in the EU style where local law shows prices that way.
 * Prices are written in major units here and converted exactly by the currency's exponent.
 */
const MARKETS = [
  { code: 'SE', name: 'Sweden', currency: 'SEK', taxRateBps: 2500, taxInclusive: true },
  { code: 'DE', name: 'Germany', currency: 'EUR', taxRateBps: 1900, taxInclusive: true },
  { code: 'FR', name: 'France', currency: 'EUR', taxRateBps: 2000, taxInclusive: true },
  { code: 'GB', name: 'United Kingdom', currency: 'GBP', taxRateBps: 2000, taxInclusive: true },
  { code: 'US', name: 'United States', currency: 'USD', taxRateBps: 0, taxInclusive: false },
  { code: 'JP', name: 'Japan', currency: 'JPY', taxRateBps: 1000, taxInclusive: true },
  { code: 'IN', name: 'India', currency: 'INR', taxRateBps: 1800, taxInclusive: true },
  { code: 'BR', name: 'Brazil', currency: 'BRL', taxRateBps: 0, taxInclusive: false },
] as const;

/**
 * The seller on each demo market's invoices: a fictional company, Lumen Sound, with a subsidiary
 * per region. Every name, address and tax id here is made up (shaped like the real formats).
 */
const SELLERS: Record<string, { legalName: string; address: string[]; taxId: string }> = {
  SE: {
    legalName: 'Lumen Sound AB',
    address: ['Tegnérgatan 12', '111 40 Stockholm', 'Sverige'],
    taxId: 'SE559900123401',
  },
  DE: {
    legalName: 'Lumen Sound GmbH',
    address: ['Schönhauser Allee 99', '10439 Berlin', 'Deutschland'],
    taxId: 'DE299001234',
  },
  FR: {
    legalName: 'Lumen Sound SAS',
    address: ['18 rue des Écoles', '75005 Paris', 'France'],
    taxId: 'FR40990012345',
  },
  GB: {
    legalName: 'Lumen Sound Ltd',
    address: ['4 Example Yard', 'London N1 9ZZ', 'United Kingdom'],
    taxId: 'GB990012345',
  },
  US: {
    legalName: 'Lumen Sound, Inc.',
    address: ['500 Example Avenue, Suite 120', 'Wilmington, DE 19801', 'United States'],
    taxId: '99-0012345',
  },
  JP: {
    legalName: 'Lumen Sound K.K.',
    address: ['2-9-1 Example-cho, Minato-ku', 'Tokyo 105-0000', 'Japan'],
    taxId: 'T9990012345678',
  },
  IN: {
    legalName: 'Lumen Sound India Private Limited',
    address: ['7th Floor, 99 Example Road', 'Bengaluru 560001', 'India'],
    taxId: '29AAACL9900Z1Z5',
  },
  BR: {
    legalName: 'Lumen Sound Brasil Ltda.',
    address: ['Avenida Exemplo, 990', 'São Paulo - SP, 01310-000', 'Brasil'],
    taxId: '99.001.234/0001-99',
  },
};

const FEATURES = ['ad-free', 'on-demand-playback', 'offline-downloads', 'high-fidelity-audio'];

const PRODUCTS = [
  { code: 'premium-individual', name: 'Premium Individual', seats: 1, features: FEATURES },
  { code: 'premium-duo', name: 'Premium Duo', seats: 2, features: [...FEATURES, 'duo-mix'] },
  {
    code: 'premium-family',
    name: 'Premium Family',
    seats: 6,
    features: [...FEATURES, 'family-mix', 'parental-controls'],
  },
  { code: 'premium-student', name: 'Premium Student', seats: 1, features: FEATURES },
];

/** Monthly prices in major units per currency; yearly is ten months (two free). */
const MONTHLY: Record<string, Record<string, string>> = {
  'premium-individual': {
    SEK: '139',
    EUR: '10.99',
    GBP: '11.99',
    USD: '11.99',
    JPY: '980',
    INR: '119',
    BRL: '21.90',
  },
  'premium-duo': {
    SEK: '179',
    EUR: '14.99',
    GBP: '16.99',
    USD: '16.99',
    JPY: '1280',
    INR: '149',
    BRL: '27.90',
  },
  'premium-family': {
    SEK: '209',
    EUR: '17.99',
    GBP: '19.99',
    USD: '19.99',
    JPY: '1580',
    INR: '179',
    BRL: '34.90',
  },
  'premium-student': {
    SEK: '75',
    EUR: '5.99',
    GBP: '5.99',
    USD: '5.99',
    JPY: '480',
    INR: '59',
    BRL: '11.90',
  },
};
/** Market-specific prices that win over the currency price (France's Individual differs from Germany's). */
const MARKET_OVERRIDES: Record<string, Array<{ market: string; currency: string; monthly: string }>> = {
  'premium-individual': [{ market: 'FR', currency: 'EUR', monthly: '11.12' }],
};
const TRIAL_DAYS: Record<string, number> = {
  'premium-individual': 30,
  'premium-duo': 30,
  'premium-family': 30,
  'premium-student': 30,
};

function amount(major: string, currency: string, period: BillingPeriod): number {
  const monthly = parseMajor(major, currency);
  return period === 'year' ? monthly * 10 : monthly;
}

export interface SeedResult {
  markets: number;
  products: number;
  plans: number;
  skipped: boolean;
}

/** Creates what is missing of the demo catalog (by code), once per deployment. */
export async function seedDemoCatalog(
  services: Services,
  opts: { force?: boolean } = {},
): Promise<SeedResult> {
  return transact(services.db, async (trx) => {
    if ((await hasMeta(trx, 'demo_seeded_at')) && !opts.force)
      return { markets: 0, products: 0, plans: 0, skipped: true };
    const result = { markets: 0, products: 0, plans: 0, skipped: false };
    // Through the catalog's service and db/meta: the seed owns no tables of its own.
    const catalog = services.catalog;
    const exists = async (kind: 'markets' | 'products' | 'plans', code: string, t: Executor) => {
      try {
        if (kind === 'markets') await catalog.getMarket(code, t);
        else if (kind === 'products') await catalog.getProduct(code, t);
        else await catalog.getPlan(code, t);
        return true;
      } catch (e) {
        if (e instanceof DomainError && e.code === 'not_found') return false;
        throw e;
      }
    };

    for (const m of MARKETS) {
      const seller = SELLERS[m.code] ?? null;
      if (await exists('markets', m.code, trx)) {
        // A market seeded before markets had sellers gets the demo seller, never over one set since.
        const market = await catalog.getMarket(m.code, trx);
        if (market.seller === null && seller) await catalog.updateMarket(m.code, { seller }, trx);
        continue;
      }
      await services.catalog.createMarket({ ...m, seller }, trx);
      result.markets++;
    }
    for (const p of PRODUCTS) {
      if (!(await exists('products', p.code, trx))) {
        await services.catalog.createProduct(p, trx);
        result.products++;
      }
      for (const period of ['month', 'year'] as const) {
        const code = `${p.code}-${period === 'month' ? 'monthly' : 'yearly'}`;
        if (await exists('plans', code, trx)) continue;
        const prices = [
          ...Object.entries(MONTHLY[p.code] ?? {}).map(([currency, major]) => ({
            currency,
            amount: amount(major, currency, period),
          })),
          ...(MARKET_OVERRIDES[p.code] ?? []).map((o) => ({
            currency: o.currency,
            market: o.market,
            amount: amount(o.monthly, o.currency, period),
          })),
        ];
        await services.catalog.createPlan(
          {
            code,
            name: `${p.name} (${period === 'month' ? 'monthly' : 'yearly'})`,
            product: p.code,
            billingPeriod: period,
            trialDays: period === 'month' ? (TRIAL_DAYS[p.code] ?? 0) : 0,
            prices,
            cancelTiming: 'end_of_term',
          },
          trx,
        );
        result.plans++;
      }
    }
    await setMeta(trx, 'demo_seeded_at', services.clock.now().toISOString());
    return result;
  });
}
