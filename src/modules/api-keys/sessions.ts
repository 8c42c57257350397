import { randomBytes, timingSafeEqual } from 'node:crypto';
import { type Kysely, sql } from 'kysely';
import type { Db, Executor } from '../../db/schema.js';
import { assert } from '../../kernel/assert.js';
import { sha256Hex } from '../../kernel/canonical-json.js';
import type { Clock } from '../../kernel/clock.js';
import { newId } from '../../kernel/ids.js';
import { BOOTSTRAP_KEY_ID, type Principal } from './service.js';
import { type ApiKeyTables, apiKeyTables } from './tables.js';

/** A session ends this long after it was last used (sliding). */
export const SESSION_IDLE_MS = 30 * 60_000;
/** A session ends this long after it was opened, however busy. */
export const SESSION_ABSOLUTE_MS = 12 * 3_600_000;
/** Live sessions one API key may have; opening another drops the oldest. */
export const SESSIONS_PER_KEY_MAX = 10;
/** `last_seen_at` is written at most this often per session: sliding expiry without a write per request. */
const TOUCH_EVERY_MS = 60_000;

/** A console session as the API shows it; `expiresAt` is when it ends unless used again. */
export interface AdminSession {
  id: string;
  keyId: string;
  scopes: readonly string[];
  expiresAt: Date;
}

/**
 * Admin console sessions (ADR 0022): an API key exchanged for a cookie whose secret (256 random
 * bits) is stored only as its SHA-256 and looked up by it, as API keys are. Every lookup reads the
 * database (no cache), joined to the key: a sign-out, a revocation or an expiry ends the session
 * on every node at once. Bounded: `SESSIONS_PER_KEY_MAX` per key, expired ones pruned hourly.
 */
export class AdminSessionService {
  readonly #db: Db;
  readonly #tables: Kysely<ApiKeyTables>;
  readonly #clock: Clock;
  readonly #bootstrapHash: string | undefined;

  constructor(db: Db, clock: Clock, bootstrapSecret: string | undefined) {
    this.#db = db;
    this.#tables = apiKeyTables(db);
    this.#clock = clock;
    this.#bootstrapHash = bootstrapSecret ? sha256Hex(bootstrapSecret) : undefined;
  }

  /**
   * Opens a session for an authenticated key, in the caller's transaction; returns the cookie's
   * secret (never stored). The key's oldest sessions beyond `SESSIONS_PER_KEY_MAX` are dropped.
   */
  async open(principal: Principal, trx: Executor): Promise<{ session: AdminSession; secret: string }> {
    const secret = randomBytes(32).toString('base64url');
    const now = this.#clock.now();
    const bootstrap = principal.keyId === BOOTSTRAP_KEY_ID;
    assert(!bootstrap || this.#bootstrapHash, 'a bootstrap principal without a bootstrap key');
    const db = apiKeyTables(trx);
    // One opener per key at a time, so the bound holds under concurrent sign-ins.
    await sql`SELECT pg_advisory_xact_lock(hashtext(${`reprise:admin_sessions:${principal.keyId}`}))`.execute(
      trx,
    );
    const id = newId('adminSession');
    const expiresAt = new Date(now.getTime() + SESSION_ABSOLUTE_MS);
    await db
      .insertInto('admin_sessions')
      .values({
        id,
        secret_hash: sha256Hex(secret),
        key_id: principal.keyId,
        bootstrap_hash: bootstrap ? (this.#bootstrapHash ?? null) : null,
        created_at: now,
        expires_at: expiresAt,
        last_seen_at: now,
      })
      .execute();
    await db
      .deleteFrom('admin_sessions')
      .where('key_id', '=', principal.keyId)
      .where(
        'id',
        'not in',
        db
          .selectFrom('admin_sessions')
          .select('id')
          .where('key_id', '=', principal.keyId)
          .orderBy('created_at', 'desc')
          .orderBy('id', 'desc')
          .limit(SESSIONS_PER_KEY_MAX),
      )
      .execute();
    return {
      session: { id, keyId: principal.keyId, scopes: principal.scopes, expiresAt: idleEnd(now, expiresAt) },
      secret,
    };
  }

  /**
   * The session of a cookie's secret, or null when it is unknown, expired (idle or absolute) or
   * its key was revoked. Slides the idle expiry (a write at most once a minute per session).
   */
  async authenticate(secret: string): Promise<AdminSession | null> {
    const row = await this.#tables
      .selectFrom('admin_sessions as s')
      .leftJoin('api_keys as k', 'k.id', 's.key_id')
      .select([
        's.id',
        's.key_id',
        's.bootstrap_hash',
        's.expires_at',
        's.last_seen_at',
        'k.scopes',
        'k.revoked_at',
        'k.id as found_key',
      ])
      .where('s.secret_hash', '=', sha256Hex(secret))
      .executeTakeFirst();
    if (!row) return null;
    const now = this.#clock.now();
    if (now.getTime() >= row.expires_at.getTime()) return null;
    if (now.getTime() >= row.last_seen_at.getTime() + SESSION_IDLE_MS) return null;
    let scopes: readonly string[];
    if (row.key_id === BOOTSTRAP_KEY_ID) {
      // Valid only while this node has the bootstrap key the session was opened with.
      if (!this.#bootstrapHash || !row.bootstrap_hash || !sameHex(row.bootstrap_hash, this.#bootstrapHash))
        return null;
      scopes = ['admin'];
    } else {
      if (!row.found_key || row.revoked_at || !row.scopes) return null;
      scopes = row.scopes;
    }
    let lastSeen = row.last_seen_at;
    if (now.getTime() - lastSeen.getTime() >= TOUCH_EVERY_MS) {
      await this.#tables
        .updateTable('admin_sessions')
        .set({ last_seen_at: now })
        .where('id', '=', row.id)
        .where('last_seen_at', '<', now)
        .execute();
      lastSeen = now;
    }
    return { id: row.id, keyId: row.key_id, scopes, expiresAt: idleEnd(lastSeen, row.expires_at) };
  }

  /** Ends a session (sign-out), in the caller's transaction. True when it existed. */
  async close(id: string, trx: Executor): Promise<boolean> {
    const result = await apiKeyTables(trx)
      .deleteFrom('admin_sessions')
      .where('id', '=', id)
      .executeTakeFirst();
    return Number(result.numDeletedRows) > 0;
  }

  /**
   * Deletes sessions past their absolute or idle end, `batch` rows per statement, at most
   * `batches` statements (the hourly prune). Returns how many were deleted.
   */
  async prune(opts: { batch?: number; batches?: number } = {}): Promise<number> {
    const batch = opts.batch ?? 1_000;
    const batches = opts.batches ?? 100;
    assert(Number.isInteger(batch) && batch >= 1 && batch <= 10_000, `prune batch ${batch}`);
    assert(Number.isInteger(batches) && batches >= 1 && batches <= 10_000, `prune batches ${batches}`);
    const now = this.#clock.now();
    const idleCutoff = new Date(now.getTime() - SESSION_IDLE_MS);
    let deleted = 0;
    for (let i = 0; i < batches; i++) {
      const result = await sql`DELETE FROM admin_sessions WHERE id = ANY(ARRAY(
          SELECT id FROM admin_sessions WHERE expires_at <= ${now} OR last_seen_at <= ${idleCutoff}
          LIMIT ${batch} FOR UPDATE SKIP LOCKED))`.execute(this.#db);
      const n = Number(result.numAffectedRows ?? 0);
      deleted += n;
      if (n < batch) break;
    }
    return deleted;
  }
}

/** When a session last seen at `lastSeen` ends: its idle end, capped by its absolute end. */
function idleEnd(lastSeen: Date, absolute: Date): Date {
  return new Date(Math.min(lastSeen.getTime() + SESSION_IDLE_MS, absolute.getTime()));
}

function sameHex(a: string, b: string): boolean {
  const x = Buffer.from(a, 'hex');
  const y = Buffer.from(b, 'hex');
  return x.length === y.length && timingSafeEqual(x, y);
}
