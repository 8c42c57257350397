import type { FastifyReply, FastifyRequest } from 'fastify';
import type { Db, Executor } from '../db/schema.js';
import { transact } from '../db/transaction.js';
import type { Outcome, UnitOfWork } from '../http/unit-of-work.js';

/** Runs a workflow's final writes in one transaction and returns what they produced. */
export type Commit<T> = (work: (trx: Executor) => Promise<T>) => Promise<T>;

/**
 * The final writes of a workflow run by an HTTP request: in its unit of work, so the effect, the
 * audit entry and the stored idempotent response commit together; `respond` says what the
 * client is answered (computed in the same transaction, which it may read).
 */
export function commitThroughUnitOfWork<T>(
  uow: UnitOfWork,
  request: FastifyRequest,
  reply: FastifyReply,
  respond: (value: T, trx: Executor) => Outcome | Promise<Outcome>,
): Commit<T> {
  return async (work) => {
    let value: T | undefined;
    let produced = false;
    await uow.run(request, reply, async (trx) => {
      value = await work(trx);
      produced = true;
      return respond(value, trx);
    });
    if (!produced) throw new Error('unit of work returned without running its work');
    return value as T;
  };
}

/** The final writes of a workflow run by a job or a service: a plain transaction. */
export function commitInTransaction<T>(db: Db): Commit<T> {
  return (work) => transact(db, work);
}
