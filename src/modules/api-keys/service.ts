import { randomBytes, timingSafeEqual } from 'node:crypto';
import type { Kysely } from 'kysely';
import { LRUCache } from 'lru-cache';
import type { Db, Executor } from '../../db/schema.js';
import { sha256Hex } from '../../kernel/canonical-json.js';
import type { Clock } from '../../kernel/clock.js';
import { notFound } from '../../kernel/errors.js';
import { newId } from '../../kernel/ids.js';
import type { Scope } from './scopes.js';
import { type ApiKeysTable, type ApiKeyTables, apiKeyTables } from './tables.js';

export interface ApiKey {
  id: string;
  name: string;
  scopes: string[];
  secretHint: string;
  createdAt: Date;
  revokedAt: Date | null;
}

/** Who is calling: resolved from the bearer secret on every request. */
export interface Principal {
  keyId: string;
  scopes: readonly string[];
}

export const BOOTSTRAP_KEY_ID = 'key_bootstrap';
const SECRET_PREFIX = 'rpk_';
const CACHE_TTL_MS = 5_000;
/** Known keys cached per node: far more than any deployment has keys. */
const KNOWN_ENTRIES_MAX = 10_000;
/** Unknown secrets are remembered apart, so a flood of random tokens never evicts a known key. */
const UNKNOWN_ENTRIES_MAX = 10_000;
const RECENTLY_VALID_MS = 60 * 60_000;

const toApiKey = (row: ApiKeysTable): ApiKey => ({
  id: row.id,
  name: row.name,
  scopes: row.scopes,
  secretHint: row.secret_hint,
  createdAt: row.created_at,
  revokedAt: row.revoked_at,
});

/**
 * API keys: secrets are 256 random bits, so one SHA-256 is as good as a slow hash for storage
 * (no dictionary to attack); lookups go by that hash. A short per-node cache keeps authentication
 * off the database on hot paths; revocation clears it on the node that revokes, and other nodes
 * see it within CACHE_TTL_MS.
 */
export class ApiKeyService {
  readonly #db: Db;
  /** The shared database seen through this module's tables, for reads outside a transaction. */
  readonly #tables: Kysely<ApiKeyTables>;
  readonly #clock: Clock;
  readonly #bootstrap: Buffer | undefined;
  readonly #known: LRUCache<string, Principal>;
  readonly #unknown: LRUCache<string, true>;
  /** Secrets that authenticated recently: still looked up for a client over its failure budget. */
  readonly #recentlyValid: LRUCache<string, true>;

  constructor(
    db: Db,
    clock: Clock,
    bootstrapSecret: string | undefined,
    cache: { knownMax?: number; unknownMax?: number } = {},
  ) {
    this.#db = db;
    this.#tables = apiKeyTables(db);
    this.#clock = clock;
    this.#bootstrap = bootstrapSecret ? Buffer.from(sha256Hex(bootstrapSecret), 'hex') : undefined;
    this.#known = new LRUCache({ max: cache.knownMax ?? KNOWN_ENTRIES_MAX, ttl: CACHE_TTL_MS });
    this.#unknown = new LRUCache({ max: cache.unknownMax ?? UNKNOWN_ENTRIES_MAX, ttl: CACHE_TTL_MS });
    this.#recentlyValid = new LRUCache({ max: cache.knownMax ?? KNOWN_ENTRIES_MAX, ttl: RECENTLY_VALID_MS });
  }

  async create(
    input: { name: string; scopes: Scope[] },
    trx: Executor = this.#db,
  ): Promise<{ key: ApiKey; secret: string }> {
    const secret = SECRET_PREFIX + randomBytes(32).toString('base64url');
    const row: ApiKeysTable = {
      id: newId('apiKey'),
      name: input.name,
      secret_hash: sha256Hex(secret),
      secret_hint: `${secret.slice(0, 8)}…${secret.slice(-4)}`,
      scopes: [...new Set(input.scopes)].sort(),
      created_at: this.#clock.now(),
      revoked_at: null,
      last_used_at: null,
    };
    await apiKeyTables(trx).insertInto('api_keys').values(row).execute();
    return { key: toApiKey(row), secret };
  }

  async list(page: { limit: number; after?: string | undefined }): Promise<ApiKey[]> {
    let q = this.#tables.selectFrom('api_keys').selectAll().orderBy('id').limit(page.limit);
    if (page.after) q = q.where('id', '>', page.after);
    return (await q.execute()).map(toApiKey);
  }

  async get(id: string, trx: Executor = this.#db): Promise<ApiKey> {
    const row = await apiKeyTables(trx)
      .selectFrom('api_keys')
      .selectAll()
      .where('id', '=', id)
      .executeTakeFirst();
    if (!row) throw notFound('api key', id);
    return toApiKey(row);
  }

  async revoke(id: string, trx: Executor): Promise<ApiKey> {
    const existing = await this.get(id, trx);
    if (existing.revokedAt) return existing;
    const row = await apiKeyTables(trx)
      .updateTable('api_keys')
      .set({ revoked_at: this.#clock.now() })
      .where('id', '=', id)
      .returningAll()
      .executeTakeFirstOrThrow();
    this.#known.clear();
    return toApiKey(row);
  }

  /**
   * Whether this secret authenticated on this node in the last hour (or is the bootstrap key),
   * without touching the database: a client whose address is over its failed-authentication
   * budget keeps working with a real key, while guesses are refused unseen.
   */
  authenticatedRecently(secret: string): boolean {
    const hash = sha256Hex(secret);
    return this.#bootstrapPrincipal(hash) !== null || this.#recentlyValid.has(hash);
  }

  /** The principal for a bearer secret, or null when the secret is unknown or revoked. */
  async authenticate(secret: string): Promise<Principal | null> {
    const hash = sha256Hex(secret);
    const bootstrap = this.#bootstrapPrincipal(hash);
    if (bootstrap) return bootstrap;
    const known = this.#known.get(hash);
    if (known) return known;
    if (this.#unknown.has(hash)) return null;
    const row = await this.#tables
      .selectFrom('api_keys')
      .select(['id', 'scopes', 'revoked_at'])
      .where('secret_hash', '=', hash)
      .executeTakeFirst();
    if (!row || row.revoked_at) {
      this.#unknown.set(hash, true);
      return null;
    }
    const principal: Principal = { keyId: row.id, scopes: row.scopes };
    this.#known.set(hash, principal);
    this.#recentlyValid.set(hash, true);
    return principal;
  }

  #bootstrapPrincipal(hash: string): Principal | null {
    if (this.#bootstrap && timingSafeEqual(Buffer.from(hash, 'hex'), this.#bootstrap)) {
      return { keyId: BOOTSTRAP_KEY_ID, scopes: ['admin'] };
    }
    return null;
  }
}
