import type { Generated } from 'kysely';
import { type Executor, ownTables } from './schema.js';

/** Deployment-wide facts (e.g. when the demo catalog was seeded), owned by `db/`. */
export interface RepriseMetaTable {
  key: string;
  value: unknown;
  updated_at: Generated<Date>;
}

export interface MetaTables {
  reprise_meta: RepriseMetaTable;
}

const metaTables = (executor: Executor) => ownTables<MetaTables>(executor);

/** Whether `key` is set. */
export async function hasMeta(executor: Executor, key: string): Promise<boolean> {
  const row = await metaTables(executor)
    .selectFrom('reprise_meta')
    .select('key')
    .where('key', '=', key)
    .executeTakeFirst();
  return row !== undefined;
}

/** Sets `key` to `value` (stored as JSON). */
export async function setMeta(executor: Executor, key: string, value: unknown): Promise<void> {
  const json = JSON.stringify(value);
  await metaTables(executor)
    .insertInto('reprise_meta')
    .values({ key, value: json })
    .onConflict((oc) => oc.column('key').doUpdateSet({ value: json }))
    .execute();
}
