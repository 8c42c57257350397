import { type Executor, ownTables } from '../../db/schema.js';

export type AccountType =
  | 'customer_receivable'
  | 'provider_clearing'
  | 'deferred_revenue'
  | 'revenue'
  | 'tax_payable'
  | 'customer_credit'
  | 'refunds'
  | 'bad_debt'
  | 'provider_fees'
  | 'disputed_funds'
  | 'transfer_test';

export interface LedgerAccountsTable {
  id: string;
  code: string;
  type: AccountType;
  owner: string | null;
  currency: string;
  normal_side: 'debit' | 'credit';
  created_at: Date;
}

export interface LedgerTransactionsTable {
  id: string;
  idempotency_key: string;
  postings_hash: string;
  reference: string | null;
  description: string | null;
  reverses: string | null;
  effective_at: Date;
  created_at: Date;
}

export interface LedgerPostingsTable {
  transaction_id: string;
  seq: number;
  account_id: string;
  currency: string;
  amount_minor: number;
}

export interface LedgerBalanceSlotsTable {
  account_id: string;
  slot: number;
  currency: string;
  debits_minor: number;
  credits_minor: number;
}

/** The ledger's tables: only these can be queried through `ledgerTables(executor)`. */
export interface LedgerTables {
  ledger_accounts: LedgerAccountsTable;
  ledger_transactions: LedgerTransactionsTable;
  ledger_postings: LedgerPostingsTable;
  ledger_balance_slots: LedgerBalanceSlotsTable;
}

export const ledgerTables = (executor: Executor) => ownTables<LedgerTables>(executor);
