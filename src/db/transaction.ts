import type { Transaction } from 'kysely';
import type { Database, Db, Executor } from './schema.js';

const hooks = new WeakMap<object, Array<() => void>>();

/**
 * Registers `fn` to run once the transaction `executor` commits (never on rollback). Outside a
 * transaction it runs at once. Used for effects that must not see uncommitted state: dropping a
 * cache, waking a relay.
 */
export function afterCommit(executor: Executor, fn: () => void): void {
  if (!executor.isTransaction) {
    fn();
    return;
  }
  const list = hooks.get(executor) ?? [];
  list.push(fn);
  hooks.set(executor, list);
}

/** Attempts of one transaction that the database aborted to break a deadlock or a serialization conflict. */
export const TRANSACTION_ATTEMPTS_MAX = 3;
const RETRYABLE = new Set(['40P01', '40001']);

export function isRetryable(error: unknown): boolean {
  return (
    typeof error === 'object' && error !== null && RETRYABLE.has((error as { code?: unknown }).code as string)
  );
}

/**
 * Runs `work` in a transaction, then the transaction's after-commit hooks. A transaction the
 * database aborted as a deadlock victim (or for a serialization conflict) is run again, a bounded
 * number of times: it was rolled back, so nothing of it remains. `work` must therefore only touch
 * the database (provider calls happen outside transactions, see ADR 0009).
 */
export async function transact<T>(db: Db, work: (trx: Transaction<Database>) => Promise<T>): Promise<T> {
  for (let attempt = 1; ; attempt++) {
    let trxRef: Transaction<Database> | undefined;
    try {
      const result = await db.transaction().execute(async (trx) => {
        trxRef = trx;
        return work(trx);
      });
      const list = trxRef ? hooks.get(trxRef) : undefined;
      if (trxRef) hooks.delete(trxRef);
      for (const fn of list ?? []) fn();
      return result;
    } catch (error) {
      if (trxRef) hooks.delete(trxRef);
      if (!isRetryable(error) || attempt >= TRANSACTION_ATTEMPTS_MAX) throw error;
      await new Promise((r) => setTimeout(r, 5 + Math.floor(Math.random() * 20 * attempt)));
    }
  }
}
