import { type Executor, ownTables } from '../../db/schema.js';

export interface MarketsTable {
  id: string;
  code: string;
  name: string | null;
  currency: string;
  tax_rate_bps: number;
  tax_inclusive: boolean;
  created_at: Date;
  /** BCP 47 (migration 0056); null on markets created before it: read as `defaultLocale(code)`. */
  locale: string | null;
  /** The seller its invoices name (migration 0056): all null, or legal name and address set. */
  seller_legal_name: string | null;
  /** Address lines joined by newlines. */
  seller_address: string | null;
  seller_tax_id: string | null;
}

export interface ProductsTable {
  id: string;
  code: string;
  name: string;
  features: string[];
  seats: number;
  created_at: Date;
}

export interface PlansTable {
  id: string;
  code: string;
  product_id: string;
  name: string;
  billing_period: 'week' | 'month' | 'year';
  trial_days: number;
  change_timing: 'immediate' | 'end_of_term' | null;
  cancel_timing: 'immediate' | 'end_of_term' | null;
  created_at: Date;
}

export interface PriceVersionsTable {
  id: string;
  plan_id: string;
  version: number;
  effective_at: Date | null;
  existing_subscribers_from: Date | null;
  created_at: Date;
}

export interface PlanPricesTable {
  price_version_id: string;
  currency: string;
  market_id: string | null;
  amount_minor: number;
}

/** The catalog's tables: only these can be queried through `catalogTables(executor)`. */
export interface CatalogTables {
  markets: MarketsTable;
  products: ProductsTable;
  plans: PlansTable;
  price_versions: PriceVersionsTable;
  plan_prices: PlanPricesTable;
}

export const catalogTables = (executor: Executor) => ownTables<CatalogTables>(executor);
