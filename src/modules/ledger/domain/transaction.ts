import { canonicalJson, sha256Hex } from '../../../kernel/canonical-json.js';
import { isCurrency } from '../../../kernel/currency.js';
import type { FieldError } from '../../../kernel/errors.js';
import { amountProblem } from '../../../kernel/money.js';
import { type AccountKey, accountCode, checkAccountKey } from './chart.js';

/** One leg: a positive amount debited or credited to an account. */
export interface Posting {
  account: AccountKey;
  debit?: number;
  credit?: number;
}

export interface TransactionSpec {
  /** Derived from the cause (`payment:pay_…:captured`): a retry can never post twice. */
  idempotencyKey: string;
  postings: Posting[];
  reference?: string | null;
  description?: string | null;
  /** Business time of the movement (the customer's clock); defaults to now. */
  effectiveAt?: Date;
  /** The transaction this one undoes (set by `LedgerService.reverse`). */
  reverses?: string | null;
}

export const POSTINGS_MAX = 100;

/** Signed amount of a posting: debit positive, credit negative. */
export function signedAmount(p: Posting): number {
  return (p.debit ?? 0) - (p.credit ?? 0);
}

/**
 * Every reason a transaction cannot be stored, checked before any SQL runs (the database checks
 * the balance again at commit): at least two postings, each exactly one positive integer side,
 * amounts within the currency's bound (`amountMinorMax`), accounts that fit the chart, and debits
 * equal to credits in every currency.
 */
export function checkTransaction(spec: TransactionSpec): FieldError[] {
  const errors: FieldError[] = [];
  if (spec.idempotencyKey.length === 0 || spec.idempotencyKey.length > 300) {
    errors.push({ path: 'idempotencyKey', message: 'must be 1 to 300 characters' });
  }
  if (spec.postings.length < 2)
    errors.push({ path: 'postings', message: 'at least two postings are required' });
  if (spec.postings.length > POSTINGS_MAX)
    errors.push({ path: 'postings', message: `at most ${POSTINGS_MAX} postings` });
  const totals = new Map<string, bigint>();
  spec.postings.forEach((p, i) => {
    const at = `postings[${i}]`;
    const accountProblem = checkAccountKey(p.account);
    if (accountProblem) errors.push({ path: `${at}.account`, message: accountProblem });
    if (!isCurrency(p.account.currency))
      errors.push({
        path: `${at}.account.currency`,
        message: `'${p.account.currency}' is not an ISO 4217 currency`,
      });
    const sides = [p.debit, p.credit].filter((x) => x !== undefined);
    if (sides.length !== 1) {
      errors.push({ path: at, message: 'exactly one of debit or credit' });
      return;
    }
    const amount = sides[0]!;
    // Bounded per currency like prices and payments, so every sum a read makes stays small.
    const problem = amountProblem(amount, p.account.currency);
    if (problem) {
      errors.push({ path: `${at}.${p.debit !== undefined ? 'debit' : 'credit'}`, message: problem });
      return;
    }
    totals.set(p.account.currency, (totals.get(p.account.currency) ?? 0n) + BigInt(signedAmount(p)));
  });
  for (const [currency, total] of totals) {
    if (total !== 0n)
      errors.push({ path: 'postings', message: `debits and credits differ by ${total} in ${currency}` });
  }
  return errors;
}

/**
 * Hash of what a transaction moves: same key + same hash is a retry (answer the original), same
 * key + another hash is a bug in the caller (refuse). Order of postings does not matter.
 */
export function postingsHash(spec: TransactionSpec): string {
  const legs = spec.postings.map((p) => `${accountCode(p.account)}=${signedAmount(p)}`).sort();
  return sha256Hex(canonicalJson({ legs, reference: spec.reference ?? null }));
}

/** The postings that undo `postings`. */
export function reversed(postings: Posting[]): Posting[] {
  return postings.map((p) =>
    p.debit !== undefined
      ? { account: p.account, credit: p.debit }
      : { account: p.account, debit: p.credit! },
  );
}
