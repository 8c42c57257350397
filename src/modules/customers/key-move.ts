import { sql } from 'kysely';
import type { KeyStore } from '../../crypto/key-store.js';
import type { Db } from '../../db/schema.js';

const BATCH = 500;

/**
 * Upgrade path to the key store (ADR 0012): data keys that an older version kept in
 * `customers.wrapped_data_key` are copied to the key store, then cleared from the row, a batch
 * at a time. Runs before the migrations, whose 0014 drops the column and refuses to if a key is
 * still there. Idempotent: a run interrupted anywhere is completed by the next start.
 */
export async function moveDataKeysToKeyStore(
  db: Db,
  keys: KeyStore,
  fallbackMasterKeyId: string,
): Promise<number> {
  const column = await sql<{ one: number }>`
    SELECT 1 AS one FROM information_schema.columns
    WHERE table_schema = current_schema() AND table_name = 'customers' AND column_name = 'wrapped_data_key'`.execute(
    db,
  );
  if (column.rows.length === 0) return 0;
  let moved = 0;
  for (;;) {
    const { rows } = await sql<{
      id: string;
      wrapped_data_key: Uint8Array;
      master_key_id: string | null;
      created_at: Date;
    }>`
      SELECT id, wrapped_data_key, master_key_id, created_at FROM customers
      WHERE wrapped_data_key IS NOT NULL ORDER BY id LIMIT ${BATCH}`.execute(db);
    if (rows.length === 0) return moved;
    // Copied (and committed there) before cleared here: a crash in between copies again, harmlessly.
    await keys.putMany(
      rows.map((r) => ({
        subjectId: r.id,
        wrapped: r.wrapped_data_key,
        // Rows always recorded it; the old code had no other key to wrap with.
        masterKeyId: r.master_key_id ?? fallbackMasterKeyId,
        createdAt: r.created_at,
      })),
    );
    await sql`UPDATE customers SET wrapped_data_key = NULL WHERE id IN (${sql.join(rows.map((r) => r.id))})`.execute(
      db,
    );
    moved += rows.length;
  }
}
