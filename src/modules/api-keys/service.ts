import { randomBytes, timingSafeEqual } from 'node:crypto';
import type { Kysely } from 'kysely';
import { LRUCache } from 'lru-cache';
import type { Db, Executor } from '../../db/schema.js';
import { afterCommit } from '../../db/transaction.js';
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
  /**
   * Set when a hosted page's session authenticated the request (no API key): which session, and
   * the one customer it may act for. `keyId` is then `<kind>_session:<id>` (audit, idempotency).
   */
  pageSession?: { kind: 'checkout' | 'portal'; id: string; customerId: string | null };
}

export const BOOTSTRAP_KEY_ID = 'key_bootstrap';
const SECRET_PREFIX = 'rpk_';
/** How stale this node's copy of the active keys may get (revocations elsewhere show within it). */
const ACTIVE_KEYS_TTL_MS = 5_000;
/** Active keys held in memory per node: far more than any deployment has; beyond it, lookups by hash. */
const ACTIVE_KEYS_MAX = 100_000;
/** Unknown secrets remembered (bounded), so a repeated wrong token costs no database lookup. */
const UNKNOWN_ENTRIES_MAX = 10_000;

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
 * (no dictionary to attack); lookups go by that hash. Each node holds the hashes of every active
 * key in memory (reloaded every ACTIVE_KEYS_TTL_MS, at once after a revocation on this node), so
 * authentication stays off the database on hot paths and a real key is recognised without a
 * lookup even while its client's address is over the failed-authentication budget. Unknown
 * secrets are remembered in their own bounded LRU: a flood of random tokens evicts no real key.
 */
export class ApiKeyService {
  readonly #db: Db;
  /** The shared database seen through this module's tables, for reads outside a transaction. */
  readonly #tables: Kysely<ApiKeyTables>;
  readonly #clock: Clock;
  readonly #bootstrap: Buffer | undefined;
  readonly #activeMax: number;
  #active = new Map<string, Principal>();
  #activeLoadedAtMs = Number.NEGATIVE_INFINITY;
  #activeLoading: Promise<void> | undefined;
  readonly #unknown: LRUCache<string, true>;

  constructor(
    db: Db,
    clock: Clock,
    bootstrapSecret: string | undefined,
    limits: { activeMax?: number; unknownMax?: number } = {},
  ) {
    this.#db = db;
    this.#tables = apiKeyTables(db);
    this.#clock = clock;
    this.#bootstrap = bootstrapSecret ? Buffer.from(sha256Hex(bootstrapSecret), 'hex') : undefined;
    this.#activeMax = limits.activeMax ?? ACTIVE_KEYS_MAX;
    this.#unknown = new LRUCache({ max: limits.unknownMax ?? UNKNOWN_ENTRIES_MAX, ttl: ACTIVE_KEYS_TTL_MS });
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
    afterCommit(trx, () => this.#expireActive());
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
    // Its admin console sessions end with it (they are looked up joined to the key as well).
    await apiKeyTables(trx).deleteFrom('admin_sessions').where('key_id', '=', id).execute();
    this.#expireActive();
    afterCommit(trx, () => this.#expireActive());
    return toApiKey(row);
  }

  /**
   * The principal of a secret this node knows to be an active key (or the bootstrap key), without
   * a lookup by hash: what a client over its failed-authentication budget may still use. A key
   * created on another node is known here within ACTIVE_KEYS_TTL_MS.
   */
  async knownPrincipal(secret: string): Promise<Principal | null> {
    const hash = sha256Hex(secret);
    const bootstrap = this.#bootstrapPrincipal(hash);
    if (bootstrap) return bootstrap;
    await this.#freshActive();
    return this.#active.get(hash) ?? null;
  }

  /** The principal for a bearer secret, or null when the secret is unknown or revoked. */
  async authenticate(secret: string): Promise<Principal | null> {
    const known = await this.knownPrincipal(secret);
    if (known) return known;
    const hash = sha256Hex(secret);
    if (this.#unknown.has(hash)) return null;
    // Created since the last reload (maybe on another node), or beyond what memory holds.
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
    if (this.#active.size < this.#activeMax) this.#active.set(hash, principal);
    return principal;
  }

  #expireActive(): void {
    this.#activeLoadedAtMs = Number.NEGATIVE_INFINITY;
  }

  /** Reloads the active keys when stale; concurrent callers share one reload. */
  async #freshActive(): Promise<void> {
    if (performance.now() - this.#activeLoadedAtMs < ACTIVE_KEYS_TTL_MS) return;
    this.#activeLoading ??= (async () => {
      try {
        const startedMs = performance.now();
        const rows = await this.#tables
          .selectFrom('api_keys')
          .select(['id', 'secret_hash', 'scopes'])
          .where('revoked_at', 'is', null)
          .orderBy('id')
          .limit(this.#activeMax)
          .execute();
        // More active keys than memory holds: the rest are found by a lookup on a miss.
        this.#active = new Map(rows.map((r) => [r.secret_hash, { keyId: r.id, scopes: r.scopes }]));
        this.#unknown.clear();
        this.#activeLoadedAtMs = startedMs;
      } finally {
        this.#activeLoading = undefined;
      }
    })();
    await this.#activeLoading;
  }

  #bootstrapPrincipal(hash: string): Principal | null {
    if (this.#bootstrap && timingSafeEqual(Buffer.from(hash, 'hex'), this.#bootstrap)) {
      return { keyId: BOOTSTRAP_KEY_ID, scopes: ['admin'] };
    }
    return null;
  }
}
