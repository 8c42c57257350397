import type { Kysely, Transaction } from 'kysely';
import type { EventTables } from '../events/tables.js';
import type { IdempotencyTables } from '../http/tables.js';
import type { JobTables } from '../jobs/tables.js';
import type { ApiKeyTables } from '../modules/api-keys/tables.js';
import type { AuditTables } from '../modules/audit/tables.js';
import type { BillingTables } from '../modules/billing/tables.js';
import type { CatalogTables } from '../modules/catalog/tables.js';
import type { CheckoutTables } from '../modules/checkout/tables.js';
import type { CustomerTables } from '../modules/customers/tables.js';
import type { LedgerTables } from '../modules/ledger/tables.js';
import type { PaymentTables } from '../modules/payments/tables.js';
import type { PortalTables } from '../modules/portal/tables.js';
import type { TestClockTables } from '../modules/test-clocks/tables.js';
import type { WebhookTables } from '../modules/webhooks/tables.js';
import type { MetaTables } from './meta.js';

/**
 * Every table, keyed by name: the union of each owner's tables (`XTables` in its `tables.ts`).
 * A module queries only through `Kysely<XTables>` from `ownTables` (docs/ARCHITECTURE.md).
 */
export interface Database
  extends MetaTables,
    ApiKeyTables,
    CatalogTables,
    TestClockTables,
    JobTables,
    IdempotencyTables,
    AuditTables,
    CustomerTables,
    LedgerTables,
    PaymentTables,
    EventTables,
    BillingTables,
    WebhookTables,
    PortalTables,
    CheckoutTables {}

export type Db = Kysely<Database>;
/** A query executor: the database itself or an open transaction. Shared between modules. */
export type Executor = Kysely<Database> | Transaction<Database>;

/** Tables `T` must be tables of `Database`, with the same row types. */
type TablesOf<T> = { [K in keyof T]: K extends keyof Database ? Database[K] : never };

/**
 * The shared executor seen through one owner's tables: a query naming another module's table no
 * longer compiles. The single escape hatch of the rule: a cast, sound because `T` is a part of
 * `Database` and the object (database or transaction) is the same one, so transactions,
 * `isTransaction` and after-commit hooks keep working. Only an owner's `tables.ts` calls it.
 */
export function ownTables<T extends TablesOf<T>>(executor: Executor): Kysely<T> {
  return executor as unknown as Kysely<T>;
}
