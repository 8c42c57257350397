import type { AccountType } from '../tables.js';

/**
 * The chart of accounts. Each account is one currency; customer and provider accounts are per
 * owner. Normal side: where increases are booked (assets and expenses on the debit side,
 * liabilities and revenue on the credit side).
 */
export const CHART: Record<
  AccountType,
  { normalSide: 'debit' | 'credit'; owner: 'customer' | 'provider' | 'none' | 'any'; meaning: string }
> = {
  customer_receivable: { normalSide: 'debit', owner: 'customer', meaning: 'what a customer owes us' },
  provider_clearing: {
    normalSide: 'debit',
    owner: 'provider',
    meaning: 'cash held for us at a payment provider, until payout',
  },
  deferred_revenue: {
    normalSide: 'credit',
    owner: 'none',
    meaning: 'billed, not yet earned (service still to deliver)',
  },
  revenue: { normalSide: 'credit', owner: 'none', meaning: 'earned' },
  tax_payable: { normalSide: 'credit', owner: 'none', meaning: 'tax collected, owed to tax authorities' },
  customer_credit: { normalSide: 'credit', owner: 'customer', meaning: 'account credit we owe a customer' },
  refunds: { normalSide: 'debit', owner: 'none', meaning: 'contra-revenue: money given back' },
  bad_debt: {
    normalSide: 'debit',
    owner: 'none',
    meaning: 'written off: receivables never collected, disputes lost',
  },
  provider_fees: { normalSide: 'debit', owner: 'provider', meaning: 'fees a provider charged us' },
  disputed_funds: {
    normalSide: 'debit',
    owner: 'provider',
    meaning: 'funds a provider withheld while a dispute is open',
  },
  transfer_test: { normalSide: 'debit', owner: 'any', meaning: 'accounts for tests and benchmarks' },
};

export interface AccountKey {
  type: AccountType;
  owner?: string | null;
  currency: string;
}

export function accountCode(key: AccountKey): string {
  return `${key.type}:${key.owner ?? '-'}:${key.currency}`;
}

/** Null when the key fits the chart; otherwise why not. */
export function checkAccountKey(key: AccountKey): string | null {
  const rule = CHART[key.type];
  if (!rule) return `unknown account type '${key.type}'`;
  const owner = key.owner ?? null;
  if ((rule.owner === 'customer' || rule.owner === 'provider') && !owner)
    return `${key.type} needs a ${rule.owner} owner`;
  if (rule.owner === 'none' && owner) return `${key.type} has no owner`;
  if (owner !== null && (owner.length > 100 || owner.includes(':')))
    return 'owner must be at most 100 characters, without ":"';
  return null;
}
