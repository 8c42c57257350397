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

/** Runs `work` in a transaction, then the transaction's after-commit hooks. */
export async function transact<T>(db: Db, work: (trx: Transaction<Database>) => Promise<T>): Promise<T> {
  let trxRef: Transaction<Database> | undefined;
  const result = await db.transaction().execute(async (trx) => {
    trxRef = trx;
    return work(trx);
  });
  const list = trxRef ? hooks.get(trxRef) : undefined;
  if (trxRef) hooks.delete(trxRef);
  for (const fn of list ?? []) fn();
  return result;
}
