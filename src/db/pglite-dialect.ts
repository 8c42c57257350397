import type { PGlite } from '@electric-sql/pglite';
import {
  CompiledQuery,
  type DatabaseConnection,
  type Dialect,
  type Driver,
  type Kysely,
  PostgresAdapter,
  PostgresIntrospector,
  PostgresQueryCompiler,
  type QueryResult,
} from 'kysely';

/** Queries carrying this first line run as a multi-statement script (migrations). */
export const SCRIPT_MARKER = '-- reprise:script\n';

/**
 * Kysely dialect for PGlite. PGlite is one PostgreSQL session, so the driver hands out that one
 * connection to one holder at a time: a transaction keeps it until commit or rollback and every
 * other query waits its turn. (kysely-pglite 0.6 shares the session without this lock, so two
 * concurrent transactions interleave their statements: see docs/adr/0002-storage.md.)
 */
export class PGliteDialect implements Dialect {
  readonly #client: PGlite;
  #driver: PGliteDriver | undefined;
  constructor(client: PGlite) {
    this.#client = client;
  }
  /** Queries waiting for the session right now: the embedded engine's pool gauge. */
  get waiting(): number {
    return this.#driver?.waiting ?? 0;
  }
  createAdapter() {
    return new PostgresAdapter();
  }
  createDriver(): Driver {
    this.#driver = new PGliteDriver(this.#client);
    return this.#driver;
  }
  createIntrospector(db: Kysely<unknown>) {
    return new PostgresIntrospector(db);
  }
  createQueryCompiler() {
    return new PostgresQueryCompiler();
  }
}

class PGliteDriver implements Driver {
  readonly #client: PGlite;
  readonly #connection: PGliteConnection;
  #held = false;
  readonly #waiters: Array<() => void> = [];

  constructor(client: PGlite) {
    this.#client = client;
    this.#connection = new PGliteConnection(client);
  }
  async init(): Promise<void> {}

  async acquireConnection(): Promise<DatabaseConnection> {
    if (this.#held) {
      await new Promise<void>((resolve, reject) => {
        const waiter = () => {
          clearTimeout(timer);
          resolve();
        };
        // A query that waits this long is almost always a query issued outside an open
        // transaction by the code holding that transaction: say so instead of hanging forever.
        const timer = setTimeout(() => {
          const index = this.#waiters.indexOf(waiter);
          if (index >= 0) this.#waiters.splice(index, 1);
          reject(
            new Error(
              `PGlite session busy for ${ACQUIRE_TIMEOUT_MS} ms: is a query running outside its transaction?`,
            ),
          );
        }, ACQUIRE_TIMEOUT_MS);
        this.#waiters.push(waiter);
      });
    }
    this.#held = true;
    return this.#connection;
  }
  async releaseConnection(): Promise<void> {
    const next = this.#waiters.shift();
    if (next) next();
    else this.#held = false;
  }
  async beginTransaction(connection: DatabaseConnection): Promise<void> {
    await connection.executeQuery(CompiledQuery.raw('BEGIN'));
  }
  async commitTransaction(connection: DatabaseConnection): Promise<void> {
    await connection.executeQuery(CompiledQuery.raw('COMMIT'));
  }
  async rollbackTransaction(connection: DatabaseConnection): Promise<void> {
    await connection.executeQuery(CompiledQuery.raw('ROLLBACK'));
  }
  async destroy(): Promise<void> {
    if (!this.#client.closed) await this.#client.close();
  }
  get waiting(): number {
    return this.#waiters.length;
  }
}

const ACQUIRE_TIMEOUT_MS = 20_000;
const MUTATIONS = new Set(['INSERT', 'UPDATE', 'DELETE', 'MERGE']);

class PGliteConnection implements DatabaseConnection {
  readonly #client: PGlite;
  constructor(client: PGlite) {
    this.#client = client;
  }
  async executeQuery<R>(compiled: CompiledQuery): Promise<QueryResult<R>> {
    if (compiled.sql.startsWith(SCRIPT_MARKER)) {
      const results = await this.#client.exec(compiled.sql);
      const last = results.at(-1);
      return { rows: (last?.rows ?? []) as R[] };
    }
    const result = await this.#client.query<R>(compiled.sql, [...compiled.parameters]);
    const command = (result as { command?: string }).command ?? '';
    const affected = result.affectedRows;
    return {
      rows: result.rows,
      ...(affected !== undefined && MUTATIONS.has(command) ? { numAffectedRows: BigInt(affected) } : {}),
    };
  }
  // biome-ignore lint/correctness/useYield: PGlite cannot stream; the generator only throws.
  async *streamQuery<R>(): AsyncIterableIterator<QueryResult<R>> {
    throw new Error('PGlite does not support streaming');
  }
}
