import { createHash } from 'node:crypto';
import { mkdirSync } from 'node:fs';
import { PGlite } from '@electric-sql/pglite';
import { Kysely, PostgresDialect } from 'kysely';
import pg from 'pg';
import { PGliteDialect } from './pglite-dialect.js';
import type { Database } from './schema.js';

export type EngineKind = 'pglite' | 'postgres';

export interface PoolStats {
  total: number;
  idle: number;
  waiting: number;
}

/** An open database: the Kysely handle plus what operations need to know about the engine. */
export interface DatabaseHandle {
  readonly kind: EngineKind;
  readonly db: Kysely<Database>;
  poolStats(): PoolStats;
  close(): Promise<void>;
}

export interface OpenOptions {
  /** PostgreSQL connection string; when absent the embedded engine is used. */
  databaseUrl?: string | undefined;
  /** Directory of the embedded database; `memory://` keeps it in memory. */
  dataDir?: string;
  poolMax?: number;
}

const INT8_OID = 20;

/**
 * bigint columns hold minor units and counters that fit a JS number exactly; anything larger is
 * refused loudly rather than silently rounded. Both engines parse int8 the same way.
 */
function parseInt8(text: string): number {
  const value = Number(text);
  if (!Number.isSafeInteger(value)) throw new RangeError(`int8 value ${text} exceeds the safe integer range`);
  return value;
}

export async function openDatabase(options: OpenOptions): Promise<DatabaseHandle> {
  if (options.databaseUrl) return openPostgres(options.databaseUrl, options.poolMax ?? 10);
  return openPGlite(options.dataDir ?? 'memory://');
}

/** SQL starting with this comment runs as a named prepared statement on PostgreSQL (hot paths). */
export const PREPARED_MARKER = '/* reprise:prepared */';
const STATEMENT_NAMES_MAX = 1_000;
const statementNames = new Map<string, string>();

function statementName(text: string): string {
  let name = statementNames.get(text);
  if (!name) {
    name = `reprise_${createHash('sha1').update(text).digest('hex').slice(0, 20)}`;
    if (statementNames.size < STATEMENT_NAMES_MAX) statementNames.set(text, name);
  }
  return name;
}

/**
 * A pg client that prepares marked statements once per connection, skipping parse and plan on
 * every later call (the ledger's one-statement post is planned once, then only executed).
 */
class PreparingClient extends pg.Client {
  // biome-ignore lint/suspicious/noExplicitAny: pg's query() has many overloads; this forwards them all.
  override query(config: any, values?: any, callback?: any): any {
    if (typeof config === 'string' && config.startsWith(PREPARED_MARKER)) {
      return super.query({ name: statementName(config), text: config, values }, callback);
    }
    return super.query(config, values, callback);
  }
}

function openPostgres(url: string, max: number): DatabaseHandle {
  const pool = new pg.Pool({
    Client: PreparingClient,
    connectionString: url,
    max,
    idleTimeoutMillis: 30_000,
    connectionTimeoutMillis: 10_000,
    types: {
      getTypeParser: ((oid: number, format?: 'text' | 'binary') =>
        oid === INT8_OID
          ? parseInt8
          : pg.types.getTypeParser(oid, format as 'text')) as typeof pg.types.getTypeParser,
    },
  });
  // An idle client losing its server must not crash the process; the next checkout reconnects.
  pool.on('error', () => {});
  const db = new Kysely<Database>({ dialect: new PostgresDialect({ pool }) });
  return {
    kind: 'postgres',
    db,
    poolStats: () => ({ total: pool.totalCount, idle: pool.idleCount, waiting: pool.waitingCount }),
    close: () => db.destroy(),
  };
}

async function openPGlite(dataDir: string): Promise<DatabaseHandle> {
  if (!dataDir.startsWith('memory://')) mkdirSync(dataDir, { recursive: true });
  const client = await PGlite.create({ dataDir, parsers: { [INT8_OID]: parseInt8 } });
  const dialect = new PGliteDialect(client);
  const db = new Kysely<Database>({ dialect });
  return {
    kind: 'pglite',
    db,
    poolStats: () => ({ total: 1, idle: 0, waiting: dialect.waiting }),
    close: () => db.destroy(),
  };
}
