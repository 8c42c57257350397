import type { Generated, Kysely, Transaction } from 'kysely';
import type { IdempotencyKeysTable } from '../http/tables.js';
import type { ScheduledJobsTable } from '../jobs/tables.js';
import type { ApiKeysTable } from '../modules/api-keys/tables.js';
import type { AuditLogTable } from '../modules/audit/tables.js';
import type {
  MarketsTable,
  PlanPricesTable,
  PlansTable,
  PriceVersionsTable,
  ProductsTable,
} from '../modules/catalog/tables.js';
import type { CustomersTable } from '../modules/customers/tables.js';
import type {
  LedgerAccountsTable,
  LedgerBalanceSlotsTable,
  LedgerPostingsTable,
  LedgerTransactionsTable,
} from '../modules/ledger/tables.js';
import type {
  DisputesTable,
  PaymentMethodsTable,
  PaymentMethodTokensTable,
  PaymentsTable,
  ProviderEventsTable,
  RefundsTable,
} from '../modules/payments/tables.js';
import type { TestClocksTable } from '../modules/test-clocks/tables.js';

interface RepriseMetaTable {
  key: string;
  value: unknown;
  updated_at: Generated<Date>;
}

/** Every table, keyed by name. Each module touches only its own tables (docs/ARCHITECTURE.md). */
export interface Database {
  reprise_meta: RepriseMetaTable;
  api_keys: ApiKeysTable;
  idempotency_keys: IdempotencyKeysTable;
  audit_log: AuditLogTable;
  markets: MarketsTable;
  products: ProductsTable;
  plans: PlansTable;
  price_versions: PriceVersionsTable;
  plan_prices: PlanPricesTable;
  customers: CustomersTable;
  test_clocks: TestClocksTable;
  scheduled_jobs: ScheduledJobsTable;
  ledger_accounts: LedgerAccountsTable;
  ledger_transactions: LedgerTransactionsTable;
  ledger_postings: LedgerPostingsTable;
  ledger_balance_slots: LedgerBalanceSlotsTable;
  payment_methods: PaymentMethodsTable;
  payment_method_tokens: PaymentMethodTokensTable;
  payments: PaymentsTable;
  refunds: RefundsTable;
  disputes: DisputesTable;
  provider_events: ProviderEventsTable;
}

export type Db = Kysely<Database>;
/** A query executor: the database itself or an open transaction. */
export type Executor = Kysely<Database> | Transaction<Database>;
