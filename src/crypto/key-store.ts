import { type Kysely, sql } from 'kysely';
import { type DatabaseHandle, type EngineKind, openDatabase } from '../db/engine.js';

/**
 * The key store: the wrapped data keys, in a database of their own (ADR 0012), so a backup of
 * the data database never holds a key and erasure destroys the one copy that opens the data.
 * It knows nothing of customers: a key belongs to a subject id.
 */
export interface DataKeysTable {
  subject_id: string;
  wrapped_key: Uint8Array;
  /** Fingerprint (`mk_…`) of the master key that wrapped it. */
  master_key_id: string;
  created_at: Date;
}

interface KeyStoreSchema {
  data_keys: DataKeysTable;
}

export interface StoredKey {
  wrapped: Uint8Array;
  masterKeyId: string;
  createdAt: Date;
}

export interface KeyStoreOptions {
  /** PostgreSQL connection string (`REPRISE_KEYSTORE_URL`); otherwise an embedded PGlite. */
  url?: string | undefined;
  /** Directory of the embedded key store; `memory://` keeps it in memory. */
  dataDir?: string;
}

/** Any constant will do, as long as every node uses the same one (not the data migrations' id). */
const SCHEMA_LOCK_ID = 7_262_022_012;
/** Keys looked up in one statement. */
export const KEY_BATCH_MAX = 500;

/**
 * The key store's whole schema, created by the key store itself and never by the data database's
 * migrations. Statements are idempotent; a later change appends statements that are too.
 */
const SCHEMA = [
  `CREATE TABLE IF NOT EXISTS data_keys (
    subject_id text PRIMARY KEY CHECK (length(subject_id) BETWEEN 1 AND 100),
    wrapped_key bytea NOT NULL,
    master_key_id text NOT NULL,
    created_at timestamptz NOT NULL
  )`,
  'CREATE INDEX IF NOT EXISTS data_keys_created ON data_keys (created_at, subject_id)',
];

export class KeyStore {
  readonly kind: EngineKind;
  readonly #handle: DatabaseHandle;
  readonly #db: Kysely<KeyStoreSchema>;

  private constructor(handle: DatabaseHandle) {
    this.kind = handle.kind;
    this.#handle = handle;
    // The engine opener types its handle for the data schema; the key store has its own tables.
    this.#db = handle.db as unknown as Kysely<KeyStoreSchema>;
  }

  static async open(options: KeyStoreOptions): Promise<KeyStore> {
    const handle = await openDatabase({
      databaseUrl: options.url,
      dataDir: options.dataDir ?? 'memory://',
      poolMax: 4,
    });
    const store = new KeyStore(handle);
    try {
      await store.#db.transaction().execute(async (trx) => {
        await sql`SELECT pg_advisory_xact_lock(${SCHEMA_LOCK_ID})`.execute(trx);
        for (const statement of SCHEMA) await sql.raw(statement).execute(trx);
      });
      if (store.kind === 'pglite') {
        // WAL segments are never renamed for reuse, so a deleted key's bytes do not survive in
        // one (see purgeDeleted). ALTER SYSTEM persists it in postgresql.auto.conf, read at the
        // next startup before crash recovery (which recycles too); SET covers this session,
        // which does the checkpoints of an embedded store.
        await sql.raw('ALTER SYSTEM SET wal_recycle = off').execute(store.#db);
        await sql.raw('SET wal_recycle = off').execute(store.#db);
      }
    } catch (error) {
      await handle.close();
      throw error;
    }
    return store;
  }

  /** Stores a subject's key; a key already stored for it is kept (a copy run twice changes nothing). */
  async put(subjectId: string, key: Omit<StoredKey, 'createdAt'>, at: Date): Promise<void> {
    await this.putMany([{ subjectId, ...key, createdAt: at }]);
  }

  async putMany(keys: Array<{ subjectId: string } & StoredKey>): Promise<void> {
    for (let i = 0; i < keys.length; i += KEY_BATCH_MAX) {
      await this.#db
        .insertInto('data_keys')
        .values(
          keys.slice(i, i + KEY_BATCH_MAX).map((k) => ({
            subject_id: k.subjectId,
            wrapped_key: k.wrapped,
            master_key_id: k.masterKeyId,
            created_at: k.createdAt,
          })),
        )
        .onConflict((oc) => oc.column('subject_id').doNothing())
        .execute();
    }
  }

  async get(subjectIds: readonly string[]): Promise<Map<string, StoredKey>> {
    const found = new Map<string, StoredKey>();
    const unique = [...new Set(subjectIds)];
    for (let i = 0; i < unique.length; i += KEY_BATCH_MAX) {
      const rows = await this.#db
        .selectFrom('data_keys')
        .selectAll()
        .where('subject_id', 'in', unique.slice(i, i + KEY_BATCH_MAX))
        .execute();
      for (const r of rows)
        found.set(r.subject_id, {
          wrapped: r.wrapped_key,
          masterKeyId: r.master_key_id,
          createdAt: r.created_at,
        });
    }
    return found;
  }

  /** Destroys a subject's key: whatever it sealed, wherever a copy is, can no longer be opened. */
  async delete(subjectId: string): Promise<void> {
    await this.#db.deleteFrom('data_keys').where('subject_id', '=', subjectId).execute();
  }

  /**
   * Ids of keys created in [from, to), in order, after `after`: a bounded page for sweeping the
   * keys of subjects that never came to exist (their creating transaction rolled back).
   */
  async createdBetween(from: Date, to: Date, limit: number, after?: { at: Date; id: string }) {
    let q = this.#db
      .selectFrom('data_keys')
      .select(['subject_id', 'created_at'])
      .where('created_at', '>=', from)
      .where('created_at', '<', to)
      .orderBy('created_at')
      .orderBy('subject_id')
      .limit(limit);
    if (after)
      q = q.where((eb) =>
        eb.or([
          eb('created_at', '>', after.at),
          eb.and([eb('created_at', '=', after.at), eb('subject_id', '>', after.id)]),
        ]),
      );
    return (await q.execute()).map((r) => ({ id: r.subject_id, at: r.created_at }));
  }

  /**
   * Physically removes deleted keys from the embedded key store's files. A DELETE leaves the row's
   * bytes in the table's pages and in the write-ahead log until they are overwritten, and anyone
   * holding the directory could read an erased customer's key back from them. So after an erasure
   * the embedded store rewrites the table into a new file (the old one is unlinked), checkpoints,
   * and moves to a new WAL segment with recycling off (set for good at open), so the segments
   * that held the key are unlinked rather than renamed for reuse. Cost: one table rewrite and one 16 MB segment per call.
   *
   * A PostgreSQL key store is the operator's server: its WAL, replicas and archives follow the
   * server's settings, so this is a no-op there; ADR 0012 says what to configure.
   */
  async purgeDeleted(): Promise<void> {
    if (this.kind !== 'pglite') return;
    for (const statement of [
      'SET wal_recycle = off',
      'VACUUM FULL data_keys',
      'CHECKPOINT',
      'SELECT pg_switch_wal()',
      'CHECKPOINT',
    ]) {
      await sql.raw(statement).execute(this.#db);
    }
  }

  async close(): Promise<void> {
    await this.#handle.close();
  }
}
