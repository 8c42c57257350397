import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import { type Kysely, sql } from 'kysely';
import type { Db, Executor } from '../../db/schema.js';
import { assert } from '../../kernel/assert.js';
import type { Clock } from '../../kernel/clock.js';
import { invalidState, tooManyAttempts } from '../../kernel/errors.js';
import { isIdOf, newId } from '../../kernel/ids.js';
import type { Principal } from '../api-keys/service.js';
import type { CustomerService } from '../customers/service.js';
import { type PortalSessionsTable, type PortalTables, portalTables } from './tables.js';

/** A portal link works this long (Stripe's portal sessions are short-lived too). */
export const SESSION_TTL_MS = 60 * 60_000;
/** Live sessions one customer may hold: creating one more ends the oldest. */
export const LIVE_SESSIONS_MAX = 50;
/**
 * Cards one session may ask to attach, declined and refused ones included: a customer's typos
 * and a second card fit; testing a list of stolen cards through a leaked link does not. Beyond
 * it the card attach is 429 `too_many_attempts` (the hosted checkout caps its confirms the same
 * way); the rest of the portal keeps working, and a new link starts afresh.
 */
export const CARD_ATTACHES_MAX = 10;
/** Sessions are deleted this long after they expired. */
export const RETAIN_AFTER_EXPIRY_MS = 24 * 60 * 60_000;
const SECRET_PREFIX = 'ps_secret_';
/** `ps_secret_` and 32 random bytes in base64url (43 characters). */
const SECRET_SHAPE = /^ps_secret_[A-Za-z0-9_-]{43}$/;
/** Compared against when the session does not exist, so an unknown id costs the same. */
const NO_HASH = Buffer.alloc(32);

export interface PortalSession {
  id: string;
  customerId: string;
  returnUrl: string | null;
  createdAt: Date;
  expiresAt: Date;
  endedAt: Date | null;
}

const toSession = (r: PortalSessionsTable): PortalSession => ({
  id: r.id,
  customerId: r.customer_id,
  returnUrl: r.return_url,
  createdAt: r.created_at,
  expiresAt: r.expires_at,
  endedAt: r.ended_at,
});

const sha256 = (text: string): Buffer => createHash('sha256').update(text, 'utf8').digest();

/**
 * Customer portal sessions (ADR 0024): a link for one customer, valid for an hour, whose secret
 * (in the link's fragment) authenticates the portal page's calls instead of an API key. Only its
 * SHA-256 is stored; it is compared in constant time. Sessions end on sign-out, when the
 * customer's 51st is created (the oldest), or expire; they are deleted a day after expiry.
 */
export class PortalService {
  readonly #db: Db;
  readonly #tables: Kysely<PortalTables>;
  readonly #clock: Clock;
  readonly #customers: CustomerService;

  constructor(db: Db, clock: Clock, customers: CustomerService) {
    this.#db = db;
    this.#tables = portalTables(db);
    this.#clock = clock;
    this.#customers = customers;
  }

  /**
   * A new session for `customer` (id or externalId; 404 when unknown, 409 once erased) in the
   * caller's transaction, with its secret: the only time the secret exists outside the link.
   */
  async create(
    trx: Executor,
    input: { customer: string; returnUrl: string | null },
  ): Promise<{ session: PortalSession; secret: string }> {
    const customer = await this.#customers.account(input.customer, trx);
    if (customer.erasedAt) throw invalidState(`Customer ${customer.id} was erased: it has no portal.`);
    const now = this.#clock.now();
    const secret = `${SECRET_PREFIX}${randomBytes(32).toString('base64url')}`;
    const row: PortalSessionsTable = {
      id: newId('portalSession'),
      secret_hash: sha256(secret).toString('hex'),
      customer_id: customer.id,
      return_url: input.returnUrl,
      created_at: now,
      expires_at: new Date(now.getTime() + SESSION_TTL_MS),
      ended_at: null,
      card_attaches: 0,
    };
    const db = portalTables(trx);
    await db.insertInto('portal_sessions').values(row).execute();
    // Bounded per customer: the oldest beyond the newest LIVE_SESSIONS_MAX are ended (one
    // statement over the customer's unended sessions, found by the partial index).
    await db
      .updateTable('portal_sessions')
      .set({ ended_at: now })
      .where('customer_id', '=', customer.id)
      .where('ended_at', 'is', null)
      .where(
        'id',
        'not in',
        db
          .selectFrom('portal_sessions')
          .select('id')
          .where('customer_id', '=', customer.id)
          .where('ended_at', 'is', null)
          .orderBy('id', 'desc')
          .limit(LIVE_SESSIONS_MAX),
      )
      .execute();
    return { session: toSession(row), secret };
  }

  /**
   * The principal of a portal page's request: `secret` must be the secret of session `sessionId`
   * (the matched route's `:id`), which must be neither expired nor ended. Null otherwise.
   */
  async authenticate(secret: string, sessionId: unknown): Promise<Principal | null> {
    if (typeof sessionId !== 'string' || !isIdOf('portalSession', sessionId) || !SECRET_SHAPE.test(secret))
      return null;
    const row = await this.#tables
      .selectFrom('portal_sessions')
      .select(['id', 'secret_hash', 'customer_id', 'expires_at', 'ended_at'])
      .where('id', '=', sessionId)
      .executeTakeFirst();
    const matches = timingSafeEqual(sha256(secret), row ? Buffer.from(row.secret_hash, 'hex') : NO_HASH);
    if (!row || !matches || row.ended_at !== null) return null;
    if (row.expires_at.getTime() <= this.#clock.now().getTime()) return null;
    // An erased customer's open links stop working at once (their data is gone).
    if ((await this.#customers.account(row.customer_id)).erasedAt) return null;
    return {
      keyId: `portal_session:${row.id}`,
      scopes: [],
      pageSession: { kind: 'portal', id: row.id, customerId: row.customer_id },
    };
  }

  async get(id: string, trx: Executor = this.#db): Promise<PortalSession> {
    const row = await portalTables(trx)
      .selectFrom('portal_sessions')
      .selectAll()
      .where('id', '=', id)
      .executeTakeFirst();
    assert(row, `portal session ${id} authenticated but not found`);
    return toSession(row);
  }

  /**
   * Counts one card attach of session `id` before it reaches the provider, or refuses it with 429
   * `too_many_attempts` once the session has asked for `CARD_ATTACHES_MAX`. One conditional
   * statement (committed on its own, whatever the attach does next): concurrent attaches never
   * get past the cap, and a decline or a crash after it still counts.
   */
  async countCardAttach(id: string): Promise<number> {
    const row = await this.#tables
      .updateTable('portal_sessions')
      .set((eb) => ({ card_attaches: eb('card_attaches', '+', 1) }))
      .where('id', '=', id)
      .where('card_attaches', '<', CARD_ATTACHES_MAX)
      .returning('card_attaches')
      .executeTakeFirst();
    if (!row) {
      throw tooManyAttempts(
        `This portal link has tried ${CARD_ATTACHES_MAX} cards; open the portal again to add another.`,
        CARD_ATTACHES_MAX,
      );
    }
    return row.card_attaches;
  }

  /** Ends the session (sign-out): its secret authenticates nothing from now on. */
  async end(trx: Executor, id: string): Promise<void> {
    await portalTables(trx)
      .updateTable('portal_sessions')
      .set({ ended_at: this.#clock.now() })
      .where('id', '=', id)
      .where('ended_at', 'is', null)
      .execute();
  }

  /**
   * Deletes sessions that expired more than a day ago, `batch` rows per statement, at most
   * `batches` statements (run hourly by the app). Returns the rows deleted.
   */
  async prune(opts: { batch?: number; batches?: number } = {}): Promise<number> {
    const batch = opts.batch ?? 1_000;
    const batches = opts.batches ?? 100;
    assert(Number.isInteger(batch) && batch >= 1 && batch <= 10_000, `prune batch ${batch}`);
    assert(Number.isInteger(batches) && batches >= 1 && batches <= 10_000, `prune batches ${batches}`);
    const cutoff = new Date(this.#clock.now().getTime() - RETAIN_AFTER_EXPIRY_MS);
    let deleted = 0;
    for (let i = 0; i < batches; i++) {
      const result = await sql`DELETE FROM portal_sessions WHERE id = ANY(ARRAY(
        SELECT id FROM portal_sessions WHERE expires_at < ${cutoff}
        LIMIT ${batch} FOR UPDATE SKIP LOCKED))`.execute(this.#db);
      const n = Number(result.numAffectedRows ?? 0);
      deleted += n;
      if (n < batch) break;
    }
    return deleted;
  }
}
