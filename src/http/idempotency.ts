import { createHmac, randomBytes } from 'node:crypto';
import type { FastifyReply, FastifyRequest } from 'fastify';
import { type Compilable, type Kysely, type OperationNodeSource, sql } from 'kysely';
import type { Db, Executor } from '../db/schema.js';
import { canonicalJson, sha256Hex } from '../kernel/canonical-json.js';
import type { Clock } from '../kernel/clock.js';
import { DomainError } from '../kernel/errors.js';
import { type IdempotencyTables, idempotencyTables, type PersonalRef } from './tables.js';

export type { PersonalRef } from './tables.js';

/** Reads the personal fields of a stored response as they are now (null once erased). */
export type Rehydrate = (ref: PersonalRef) => Promise<Record<string, unknown>>;

/** Default of how long a claim protects a running request before a retry may take over (it crashed). */
export const CLAIM_LEASE_MS = 60_000;
const KEY_LENGTH_MAX = 255;

export interface IdempotencyClaim {
  key: string;
  token: string;
  /** Set once the response is stored (by the unit of work or the onSend fallback). */
  settled: boolean;
}

declare module 'fastify' {
  interface FastifyRequest {
    idempotency?: IdempotencyClaim;
  }
}

/**
 * Fingerprint of a request: method, URL and body in canonical JSON, without the route's personal
 * fields (`config.personalFields`): whether a retry with another email replays or is refused must
 * not tell which email the key was first used with, even after the customer is erased. Keyed
 * (HMAC-SHA256) when the store has a key, as a second line: a plain hash of the other fields kept
 * for days would still be a guessable fingerprint.
 */
export function requestHash(request: FastifyRequest, hashKey?: Buffer): string {
  const personal = request.routeOptions?.config?.personalFields ?? [];
  let body = request.body ?? null;
  if (personal.length > 0 && typeof body === 'object' && body !== null && !Array.isArray(body)) {
    body = Object.fromEntries(Object.entries(body).filter(([field]) => !personal.includes(field)));
  }
  const text = canonicalJson({ method: request.method, url: request.url, body });
  return hashKey ? createHmac('sha256', hashKey).update(text).digest('hex') : sha256Hex(text);
}

/**
 * Idempotency keys as API.md specifies, scoped per API key:
 * - first request: claim the key (in_flight) and run;
 * - same key, same request, completed: replay the stored status and body, `Idempotent-Replayed: true`;
 * - same key, other request (hash of the canonical request differs): 422 `idempotency_key_reused`;
 * - same key while the first still runs: 409 `idempotency_key_in_use`;
 * - a claim whose lease ran out belongs to a request that died before committing (its effects and
 *   the completion commit together), so a retry takes the claim over and runs.
 */
/** No HMAC hex digest looks like this: a retired request matches nothing. */
const ERASED_FINGERPRINT = 'erased';

export class IdempotencyStore {
  /** The shared database seen through the store's tables, for work outside a transaction. */
  readonly #tables: Kysely<IdempotencyTables>;
  readonly #clock: Clock;
  readonly #retentionMs: number;
  readonly #leaseMs: number;
  readonly #rehydrate: Rehydrate;
  readonly #hashKey: Buffer | undefined;

  constructor(
    db: Db,
    clock: Clock,
    retentionHours: number,
    leaseMs: number = CLAIM_LEASE_MS,
    rehydrate: Rehydrate = async () => ({}),
    hashKey?: Buffer,
  ) {
    this.#tables = idempotencyTables(db);
    this.#clock = clock;
    this.#retentionMs = retentionHours * 3_600_000;
    this.#leaseMs = leaseMs;
    this.#rehydrate = rehydrate;
    this.#hashKey = hashKey;
  }

  /**
   * Claims the key for this request, or answers it (replay / conflict). Returns true when the
   * handler should run, false when the reply has been sent.
   */
  async begin(request: FastifyRequest, reply: FastifyReply, apiKeyId: string, key: string): Promise<boolean> {
    if (key.length === 0 || key.length > KEY_LENGTH_MAX) {
      throw new DomainError(
        'validation_failed',
        `Idempotency-Key must be 1 to ${KEY_LENGTH_MAX} characters.`,
        {
          errors: [
            { path: 'Idempotency-Key', in: 'header', message: `must be 1 to ${KEY_LENGTH_MAX} characters` },
          ],
        },
      );
    }
    const hash = requestHash(request, this.#hashKey);
    const token = randomBytes(16).toString('hex');
    const now = this.#clock.now();
    const lockedUntil = new Date(now.getTime() + this.#leaseMs);
    const inserted = await this.#tables
      .insertInto('idempotency_keys')
      .values({
        api_key_id: apiKeyId,
        key,
        request_hash: hash,
        method: request.method,
        path: request.url.slice(0, 2000),
        state: 'in_flight',
        lock_token: token,
        locked_until: lockedUntil,
        response_status: null,
        response_body: null,
        created_at: now,
        completed_at: null,
      })
      .onConflict((oc) => oc.columns(['api_key_id', 'key']).doNothing())
      .returning('key')
      .executeTakeFirst();
    if (inserted) {
      request.idempotency = { key, token, settled: false };
      return true;
    }
    const row = await this.#tables
      .selectFrom('idempotency_keys')
      .selectAll()
      .where('api_key_id', '=', apiKeyId)
      .where('key', '=', key)
      .executeTakeFirst();
    if (!row) {
      // Pruned between our insert and select: extremely unlikely; the client may retry.
      throw new DomainError('idempotency_key_in_use', 'The idempotency key is being recycled; retry.');
    }
    if (row.request_hash !== hash) {
      throw new DomainError(
        'idempotency_key_reused',
        `Idempotency-Key '${key}' was used with a different request (${row.method} ${row.path}).`,
      );
    }
    if (row.state === 'completed') {
      reply
        .code(row.response_status ?? 200)
        .header('Idempotent-Replayed', 'true')
        .type(
          row.response_status !== null && row.response_status >= 400
            ? 'application/problem+json; charset=utf-8'
            : 'application/json; charset=utf-8',
        )
        .send(
          row.personal_ref ? await this.#rebuild(row.response_body, row.personal_ref) : row.response_body,
        );
      return false;
    }
    if (row.locked_until && row.locked_until.getTime() > now.getTime()) {
      throw new DomainError(
        'idempotency_key_in_use',
        `A request with Idempotency-Key '${key}' is still running.`,
      );
    }
    const takenOver = await this.#tables
      .updateTable('idempotency_keys')
      .set({ lock_token: token, locked_until: lockedUntil })
      .where('api_key_id', '=', apiKeyId)
      .where('key', '=', key)
      .where('state', '=', 'in_flight')
      .where('lock_token', '=', row.lock_token)
      .executeTakeFirst();
    if (takenOver.numUpdatedRows !== 1n) {
      throw new DomainError(
        'idempotency_key_in_use',
        `A request with Idempotency-Key '${key}' is still running.`,
      );
    }
    request.idempotency = { key, token, settled: false };
    return true;
  }

  /** A stored response with its personal fields as they read now: null once erased. */
  async #rebuild(body: string | null, ref: PersonalRef): Promise<string> {
    const parsed = JSON.parse(body ?? 'null') as Record<string, unknown>;
    const values = await this.#rehydrate(ref);
    for (const field of ref.fields) parsed[field] = values[field] ?? null;
    return JSON.stringify(parsed);
  }

  /**
   * Stores the response. Inside a unit of work this runs in the business transaction, so the
   * effects and the stored response commit together; if another request took the claim over, this
   * throws and the transaction rolls back (never two effects). With `personal`, the named
   * top-level fields are stored as null and rebuilt on replay, so no personal data outlives its
   * erasure here (ADR 0012). `also`, an insert of another module's (the audit entry), is written
   * by the same statement (a CTE), so completing a request costs one round trip.
   */
  async complete(
    executor: Executor,
    apiKeyId: string,
    claim: IdempotencyClaim,
    status: number,
    body: string,
    personal?: PersonalRef,
    also?: Compilable & OperationNodeSource,
  ): Promise<void> {
    const update = idempotencyTables(executor)
      .updateTable('idempotency_keys')
      .set({
        state: 'completed',
        response_status: status,
        response_body: personal ? withoutPersonal(body, personal) : body,
        personal_ref: personal ? JSON.stringify(personal) : null,
        completed_at: this.#clock.now(),
        lock_token: null,
        locked_until: null,
      })
      .where('api_key_id', '=', apiKeyId)
      .where('key', '=', claim.key)
      .where('state', '=', 'in_flight')
      .where('lock_token', '=', claim.token)
      .returning('key');
    // Rolled back with the rest of the transaction when the claim was taken over (the throw below).
    const rows = also
      ? (await sql<{ key: string }>`WITH also AS (${also}) ${update}`.execute(executor)).rows
      : await update.execute();
    if (rows.length !== 1) {
      throw new DomainError(
        'idempotency_key_in_use',
        `Idempotency-Key '${claim.key}' was taken over by a retry.`,
      );
    }
    claim.settled = true;
  }

  /**
   * Retires the stored requests that carried a customer's personal data, in the erasure's
   * transaction: their fingerprint can no longer match any request, so a retry with the same key
   * answers 422 whatever its body (a replay or a 422 must not tell whether a guessed email was the
   * erased one), and nothing is replayed.
   */
  async forgetSubject(executor: Executor, customerId: string): Promise<number> {
    const result = await idempotencyTables(executor)
      .updateTable('idempotency_keys')
      .set({ request_hash: ERASED_FINGERPRINT, personal_ref: null })
      .where(sql<string>`personal_ref ->> 'customerId'`, '=', customerId)
      .where('personal_ref', 'is not', null)
      .executeTakeFirst();
    return Number(result.numUpdatedRows);
  }

  /** A 5xx is not an answer: release the claim so a retry runs the request again. */
  async release(apiKeyId: string, claim: IdempotencyClaim): Promise<void> {
    await this.#tables
      .deleteFrom('idempotency_keys')
      .where('api_key_id', '=', apiKeyId)
      .where('key', '=', claim.key)
      .where('lock_token', '=', claim.token)
      .execute();
    claim.settled = true;
  }

  /** Deletes keys older than the retention (at least 24 h). Bounded per call. */
  async prune(batchMax = 10_000): Promise<number> {
    const cutoff = new Date(this.#clock.now().getTime() - this.#retentionMs);
    const result = await sql<{ n: number }>`
      WITH doomed AS (
        SELECT api_key_id, key FROM idempotency_keys
        WHERE created_at < ${cutoff}
          AND (state = 'completed' OR locked_until < ${this.#clock.now()})
        ORDER BY created_at LIMIT ${batchMax}
      )
      DELETE FROM idempotency_keys k USING doomed d
      WHERE k.api_key_id = d.api_key_id AND k.key = d.key`.execute(this.#tables);
    return Number(result.numAffectedRows ?? 0n);
  }
}

/** `body` (a JSON object) with the personal fields set to null. */
export function withoutPersonal(body: string, personal: PersonalRef): string {
  const parsed = JSON.parse(body) as Record<string, unknown>;
  for (const field of personal.fields) if (field in parsed) parsed[field] = null;
  return JSON.stringify(parsed);
}
