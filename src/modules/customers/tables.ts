import { type Executor, ownTables } from '../../db/schema.js';

/** Personal data is sealed here; its data key lives in the key store (src/crypto/key-store.ts). */
export interface CustomersTable {
  id: string;
  external_id: string;
  market_id: string;
  billing_cycle_day: number | null;
  test_clock_id: string | null;
  email_cipher: Uint8Array | null;
  name_cipher: Uint8Array | null;
  erased_at: Date | null;
  created_at: Date;
}

/** The customers module's tables: only these can be queried through `customerTables(executor)`. */
export interface CustomerTables {
  customers: CustomersTable;
}

export const customerTables = (executor: Executor) => ownTables<CustomerTables>(executor);
