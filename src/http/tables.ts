import type { ColumnType } from 'kysely';
import { type Executor, ownTables } from '../db/schema.js';

/** Which personal fields a stored response left out, and whose they are (rebuilt on replay). */
export interface PersonalRef {
  customerId: string;
  fields: string[];
}

export interface IdempotencyKeysTable {
  api_key_id: string;
  key: string;
  request_hash: string;
  method: string;
  path: string;
  state: 'in_flight' | 'completed';
  lock_token: string | null;
  locked_until: Date | null;
  response_status: number | null;
  response_body: string | null;
  personal_ref: ColumnType<PersonalRef | null, string | null | undefined, string | null>;
  created_at: Date;
  completed_at: Date | null;
}

/** The idempotency store's tables: only these can be queried through `idempotencyTables(executor)`. */
export interface IdempotencyTables {
  idempotency_keys: IdempotencyKeysTable;
}

export const idempotencyTables = (executor: Executor) => ownTables<IdempotencyTables>(executor);
