import { randomBytes } from 'node:crypto';
import { type Kysely, type Selectable, sql } from 'kysely';
import { open, seal } from '../../crypto/envelope.js';
import type { Db, Executor } from '../../db/schema.js';
import { afterCommit, transact } from '../../db/transaction.js';
import type { BusEvent } from '../../events/bus.js';
import type { EventEnvelope, EventsOutbox } from '../../events/outbox.js';
import { eventToDto } from '../../events/routes.js';
import { assert } from '../../kernel/assert.js';
import type { Clock } from '../../kernel/clock.js';
import { DomainError, invalid, invalidState, notFound } from '../../kernel/errors.js';
import { newId } from '../../kernel/ids.js';
import { matchesEventType, parseEventTypes } from './domain/event-types.js';
import {
  afterFailure,
  DAY_MS,
  DEFAULT_RETRY,
  FAILING_DISABLE_MS,
  type RetryPolicy,
  shouldDisable,
} from './domain/retry.js';
import { newSecret } from './domain/signature.js';
import type { Cidr } from './domain/ssrf.js';
import { ERROR_LENGTH_MAX, type SendResult } from './sender.js';
import {
  type WebhookDeliveriesTable,
  type WebhookEndpointsTable,
  type WebhookTables,
  webhookTables,
} from './tables.js';
import { type Resolver, resolveTarget, systemResolver, TargetRefused } from './target.js';

/** Endpoints (not deleted) at most: each event is matched against all of them. */
export const ENDPOINTS_MAX = 100;
/** How long a rotated-out secret still signs. */
export const PREVIOUS_SECRET_MS = DAY_MS;
export const DESCRIPTION_MAX = 500;

export interface WebhookEndpoint {
  id: string;
  url: string;
  eventTypes: string[];
  description: string | null;
  status: 'enabled' | 'disabled';
  /** Why it is disabled: `requested` (the API) or `failing` (3 days without a success). */
  disabledReason: 'requested' | 'failing' | null;
  createdAt: Date;
  updatedAt: Date;
}

export interface WebhookDelivery {
  id: string;
  endpointId: string;
  eventId: string;
  eventType: string;
  status: 'pending' | 'succeeded' | 'failed';
  attempts: number;
  responseCode: number | null;
  lastError: string | null;
  lastAttemptAt: Date | null;
  nextAttemptAt: Date | null;
  createdAt: Date;
}

/** A delivery the dispatcher holds for one attempt: everything the attempt needs, no query. */
export interface ClaimedDelivery {
  id: string;
  endpointId: string;
  eventId: string;
  url: string;
  body: string;
  /** Secrets that sign: the current one, and the previous one while it is valid. */
  secrets: string[];
  token: string;
  attempts: number;
  firstAttemptAt: Date | null;
}

export interface WebhookOptions {
  /** `REPRISE_WEBHOOK_ALLOW_CIDRS`, parsed. */
  allowCidrs: readonly Cidr[];
  /** Host name resolution (tests inject one to prove DNS rebinding is caught). */
  resolve?: Resolver;
  retry?: RetryPolicy;
  /** An endpoint with no success this long since its first failure is disabled (3 days). */
  failingDisableMs?: number;
  /** Jitter source, [0, 1). */
  random?: () => number;
}

type EndpointRow = Selectable<WebhookEndpointsTable>;

/**
 * Webhook endpoints and their deliveries (ADR 0019). The endpoints API, the fan-out of bus events
 * to delivery rows, and what the dispatcher needs: claiming due deliveries under a lease and
 * recording each attempt's result in a short transaction. Never calls an endpoint itself.
 */
export class WebhookService {
  readonly #db: Db;
  readonly #tables: Kysely<WebhookTables>;
  readonly #clock: Clock;
  readonly #events: EventsOutbox;
  readonly #secretKey: Buffer;
  readonly allowCidrs: readonly Cidr[];
  readonly resolve: Resolver;
  readonly #retry: RetryPolicy;
  readonly #failingDisableMs: number;
  readonly #random: () => number;
  readonly #dueListeners = new Set<() => void>();

  constructor(db: Db, clock: Clock, events: EventsOutbox, secretKey: Buffer, opts: WebhookOptions) {
    assert(secretKey.length === 32, 'webhook secret key of 32 bytes');
    this.#db = db;
    this.#tables = webhookTables(db);
    this.#clock = clock;
    this.#events = events;
    this.#secretKey = secretKey;
    this.allowCidrs = opts.allowCidrs;
    this.resolve = opts.resolve ?? systemResolver;
    this.#retry = opts.retry ?? DEFAULT_RETRY;
    this.#failingDisableMs = opts.failingDisableMs ?? FAILING_DISABLE_MS;
    this.#random = opts.random ?? Math.random;
  }

  get clock(): Clock {
    return this.#clock;
  }

  /**
   * Forgets what is finished and old (bounded tables, as ADR 0013 prunes jobs): deliveries
   * `succeeded` or `failed` whose last attempt is older than `retentionMs`, then the bodies of
   * events older than that with no delivery left, then deleted endpoints with no delivery left.
   * `batch` rows per statement, at most `batches` statements per table. Returns rows deleted.
   */
  async prune(opts: { retentionMs: number; batch?: number; batches?: number }): Promise<number> {
    const batch = opts.batch ?? 1_000;
    const batches = opts.batches ?? 100;
    assert(Number.isInteger(batch) && batch >= 1 && batch <= 10_000, `prune batch ${batch}`);
    assert(Number.isInteger(batches) && batches >= 1 && batches <= 10_000, `prune batches ${batches}`);
    const cutoff = new Date(this.#clock.now().getTime() - opts.retentionMs);
    let deleted = 0;
    // Each statement deletes up to `batch` rows; repeated while a statement finds a full batch.
    const rounds = async (statement: () => ReturnType<typeof sql>) => {
      for (let i = 0; i < batches; i++) {
        const n = Number((await statement().execute(this.#db)).numAffectedRows ?? 0);
        deleted += n;
        if (n < batch) return;
      }
    };
    await rounds(
      () => sql`DELETE FROM webhook_deliveries WHERE id = ANY(ARRAY(
        SELECT id FROM webhook_deliveries
        WHERE status IN ('succeeded', 'failed') AND last_attempt_at < ${cutoff}
        LIMIT ${batch} FOR UPDATE SKIP LOCKED))`,
    );
    await rounds(
      () => sql`DELETE FROM webhook_payloads WHERE event_id = ANY(ARRAY(
        SELECT p.event_id FROM webhook_payloads p
        WHERE p.created_at < ${cutoff}
          AND NOT EXISTS (SELECT 1 FROM webhook_deliveries d WHERE d.event_id = p.event_id)
        LIMIT ${batch} FOR UPDATE SKIP LOCKED))`,
    );
    await rounds(
      () => sql`DELETE FROM webhook_endpoints WHERE id = ANY(ARRAY(
        SELECT e.id FROM webhook_endpoints e
        WHERE e.status = 'deleted' AND e.updated_at < ${cutoff}
          AND NOT EXISTS (SELECT 1 FROM webhook_deliveries d WHERE d.endpoint_id = e.id)
        LIMIT ${batch} FOR UPDATE SKIP LOCKED))`,
    );
    return deleted;
  }

  /** `listener` runs (on this node) after deliveries became due: the dispatcher wakes at once. */
  onDue(listener: () => void): () => void {
    this.#dueListeners.add(listener);
    return () => this.#dueListeners.delete(listener);
  }

  #notifyDue(): void {
    for (const listener of this.#dueListeners) listener();
  }

  /**
   * The URL's shape and every address its host resolves to, as a delivery would check them. A
   * network call (DNS): run it before the request's transaction. A refusal is a 400 naming `url`.
   */
  async checkUrl(url: string): Promise<void> {
    try {
      await resolveTarget(url, this.allowCidrs, this.resolve);
    } catch (error) {
      if (error instanceof TargetRefused) throw invalid('url', error.message);
      throw error;
    }
  }

  /** Checks the input that needs no network: event types and description. */
  validate(input: { eventTypes: readonly string[]; description?: string | null | undefined }): string[] {
    if (
      input.description !== undefined &&
      input.description !== null &&
      input.description.length > DESCRIPTION_MAX
    )
      throw invalid('description', `must be at most ${DESCRIPTION_MAX} characters`);
    return parseEventTypes(input.eventTypes);
  }

  /**
   * Creates an endpoint, enabled, with a new secret (returned here only). The URL must have been
   * checked (`checkUrl`) before the transaction. At most ENDPOINTS_MAX endpoints in all.
   */
  async create(
    input: { url: string; eventTypes: readonly string[]; description?: string | null | undefined },
    trx: Executor,
  ): Promise<{ endpoint: WebhookEndpoint; secret: string }> {
    assert(trx.isTransaction, 'an endpoint is created in a transaction');
    const eventTypes = this.validate(input);
    // Creations one at a time, so two cannot both take the last place.
    await sql`SELECT pg_advisory_xact_lock(hashtext('reprise:webhook_endpoints'))`.execute(trx);
    const { n } = await webhookTables(trx)
      .selectFrom('webhook_endpoints')
      .select((eb) => eb.fn.countAll<number>().as('n'))
      .where('status', '<>', 'deleted')
      .executeTakeFirstOrThrow();
    if (Number(n) >= ENDPOINTS_MAX)
      throw new DomainError(
        'invalid_state',
        `At most ${ENDPOINTS_MAX} webhook endpoints: delete one before creating another (an endpoint takes any number of event types).`,
      );
    const now = this.#clock.now();
    const id = newId('webhookEndpoint', now.getTime());
    const secret = newSecret();
    const row = await webhookTables(trx)
      .insertInto('webhook_endpoints')
      .values({
        id,
        url: input.url,
        event_types: eventTypes,
        description: input.description ?? null,
        status: 'enabled',
        disabled_reason: null,
        secret_cipher: this.#seal(id, secret),
        previous_secret_cipher: null,
        previous_secret_expires_at: null,
        failing_since: null,
        version: 1,
        created_at: now,
        updated_at: now,
      })
      .returningAll()
      .executeTakeFirstOrThrow();
    return { endpoint: toEndpoint(row), secret };
  }

  async list(page: { limit: number; after?: string | undefined }): Promise<WebhookEndpoint[]> {
    let q = this.#tables
      .selectFrom('webhook_endpoints')
      .selectAll()
      .where('status', '<>', 'deleted')
      .orderBy('id')
      .limit(page.limit);
    if (page.after) q = q.where('id', '>', page.after);
    return (await q.execute()).map(toEndpoint);
  }

  async get(id: string, trx: Executor = this.#db): Promise<WebhookEndpoint> {
    return toEndpoint(await this.#row(id, trx));
  }

  async #row(id: string, trx: Executor, forUpdate = false): Promise<EndpointRow> {
    let q = webhookTables(trx)
      .selectFrom('webhook_endpoints')
      .selectAll()
      .where('id', '=', id)
      .where('status', '<>', 'deleted');
    if (forUpdate) q = q.forUpdate();
    const row = await q.executeTakeFirst();
    if (!row) throw notFound('webhook endpoint', id);
    return row;
  }

  /**
   * Enables or disables an endpoint. A disabled endpoint gets no new deliveries and its pending
   * ones wait; enabling it again starts its failure count afresh and sends what waited.
   */
  async setEnabled(id: string, enabled: boolean, trx: Executor): Promise<WebhookEndpoint> {
    const row = await this.#row(id, trx, true);
    if ((row.status === 'enabled') === enabled) return toEndpoint(row);
    const updated = await webhookTables(trx)
      .updateTable('webhook_endpoints')
      .set({
        status: enabled ? 'enabled' : 'disabled',
        disabled_reason: enabled ? null : 'requested',
        failing_since: null,
        version: sql<number>`version + 1`,
        updated_at: this.#clock.now(),
      })
      .where('id', '=', id)
      .returningAll()
      .executeTakeFirstOrThrow();
    if (enabled) afterCommit(trx, () => this.#notifyDue());
    return toEndpoint(updated);
  }

  /**
   * Deletes an endpoint: it is no longer listed nor sent anything, and its secrets are erased.
   * The row stays (its deliveries refer to it) as `deleted`.
   */
  async remove(id: string, trx: Executor): Promise<{ id: string }> {
    await this.#row(id, trx, true);
    await webhookTables(trx)
      .updateTable('webhook_endpoints')
      .set({
        status: 'deleted',
        secret_cipher: null,
        previous_secret_cipher: null,
        previous_secret_expires_at: null,
        version: sql<number>`version + 1`,
        updated_at: this.#clock.now(),
      })
      .where('id', '=', id)
      .execute();
    return { id };
  }

  /**
   * A new secret; the current one keeps signing (a second `v1=` entry) for 24 hours, so
   * receivers can switch without losing a delivery. A previous secret still valid is dropped.
   */
  async rotateSecret(
    id: string,
    trx: Executor,
  ): Promise<{ id: string; secret: string; previousSecretExpiresAt: Date }> {
    const row = await this.#row(id, trx, true);
    const now = this.#clock.now();
    const expires = new Date(now.getTime() + PREVIOUS_SECRET_MS);
    const secret = newSecret();
    await webhookTables(trx)
      .updateTable('webhook_endpoints')
      .set({
        secret_cipher: this.#seal(id, secret),
        previous_secret_cipher: row.secret_cipher,
        previous_secret_expires_at: expires,
        version: sql<number>`version + 1`,
        updated_at: now,
      })
      .where('id', '=', id)
      .execute();
    return { id, secret, previousSecretExpiresAt: expires };
  }

  /**
   * One delivery per (enabled endpoint whose event types match, event created after the
   * endpoint), for a batch of bus events: two statements whatever the batch's size (the
   * endpoints; the deliveries with the bodies they need). Idempotent: a batch handed again
   * creates nothing (unique per endpoint and event). The endpoint's state is read for every
   * batch and checked again by the insert, so a creation or a disabling counts at once.
   */
  async fanOut(events: readonly BusEvent[]): Promise<void> {
    if (events.length === 0) return;
    const endpoints = await this.#tables
      .selectFrom('webhook_endpoints')
      .select(['id', 'event_types', 'created_at'])
      .where('status', '=', 'enabled')
      .execute();
    if (endpoints.length === 0) return;
    const now = this.#clock.now();
    const pairs: Array<{ id: string; endpoint: string; event: string; type: string }> = [];
    const bodies = new Map<string, string>();
    for (const event of events) {
      for (const e of endpoints) {
        if (e.created_at.getTime() > event.createdAt.getTime()) continue;
        if (!matchesEventType(e.event_types, event.type)) continue;
        pairs.push({
          id: newId('webhookDelivery', now.getTime()),
          endpoint: e.id,
          event: event.id,
          type: event.type,
        });
        if (!bodies.has(event.id)) bodies.set(event.id, bodyOf(event));
      }
    }
    if (pairs.length === 0) return;
    const inserted = await this.#insertDeliveries(this.#db, pairs, bodies, now);
    if (inserted > 0) this.#notifyDue();
  }

  /** The deliveries and (for those inserted) the bodies, one statement. Returns how many were new. */
  async #insertDeliveries(
    executor: Executor,
    pairs: ReadonlyArray<{ id: string; endpoint: string; event: string; type: string }>,
    bodies: ReadonlyMap<string, string>,
    now: Date,
  ): Promise<number> {
    const result = await sql<{ n: number }>`
      WITH pairs AS (
        SELECT * FROM unnest(
          ${pairs.map((p) => p.id)}::text[], ${pairs.map((p) => p.endpoint)}::text[],
          ${pairs.map((p) => p.event)}::text[], ${pairs.map((p) => p.type)}::text[]
        ) AS p(id, endpoint_id, event_id, event_type)
      ),
      ins AS (
        INSERT INTO webhook_deliveries (id, endpoint_id, event_id, event_type, status, attempts, next_attempt_at, created_at)
        SELECT p.id, p.endpoint_id, p.event_id, p.event_type, 'pending', 0, ${now}::timestamptz, ${now}::timestamptz
        FROM pairs p JOIN webhook_endpoints e ON e.id = p.endpoint_id AND e.status = 'enabled'
        ORDER BY p.id
        ON CONFLICT ON CONSTRAINT webhook_deliveries_once DO NOTHING
        RETURNING event_id
      ),
      bodies AS (
        INSERT INTO webhook_payloads (event_id, body, created_at)
        SELECT b.event_id, b.body, ${now}::timestamptz
        FROM unnest(${[...bodies.keys()]}::text[], ${[...bodies.values()]}::text[]) AS b(event_id, body)
        WHERE b.event_id IN (SELECT event_id FROM ins)
        ON CONFLICT (event_id) DO NOTHING
      )
      SELECT count(*)::int AS n FROM ins`.execute(executor);
    return Number(result.rows[0]?.n ?? 0);
  }

  /** An endpoint's deliveries, newest first. */
  async deliveries(
    endpointId: string,
    page: { limit: number; after?: string | undefined },
  ): Promise<WebhookDelivery[]> {
    await this.#row(endpointId, this.#db);
    let q = this.#tables
      .selectFrom('webhook_deliveries')
      .selectAll()
      .where('endpoint_id', '=', endpointId)
      .orderBy('id', 'desc')
      .limit(page.limit);
    if (page.after) q = q.where('id', '<', page.after);
    return (await q.execute()).map(toDelivery);
  }

  /**
   * Makes `event` due again now, for `endpointId` or every enabled endpoint that matches it and
   * existed when it was created, even where it was delivered before: a new retry window.
   * A delivery in flight is let go (its result is no longer recorded) and sent again.
   */
  async redeliver(
    event: EventEnvelope,
    endpointId: string | undefined,
    trx: Executor,
  ): Promise<WebhookDelivery[]> {
    let targets: EndpointRow[];
    if (endpointId !== undefined) {
      const row = await webhookTables(trx)
        .selectFrom('webhook_endpoints')
        .selectAll()
        .where('id', '=', endpointId)
        .where('status', '<>', 'deleted')
        .executeTakeFirst();
      if (!row) throw invalid('endpoint', `'${endpointId}' is not a webhook endpoint`);
      if (row.status !== 'enabled')
        throw invalidState(`Webhook endpoint ${endpointId} is disabled; enable it first.`);
      if (!matchesEventType(row.event_types, event.type))
        throw invalid('endpoint', `'${endpointId}' does not subscribe to ${event.type} events`);
      targets = [row];
    } else {
      const rows = await webhookTables(trx)
        .selectFrom('webhook_endpoints')
        .selectAll()
        .where('status', '=', 'enabled')
        .where('created_at', '<=', event.createdAt)
        .execute();
      targets = rows.filter((r) => matchesEventType(r.event_types, event.type));
    }
    if (targets.length === 0) return [];
    const now = this.#clock.now();
    const body = bodyOf(event);
    const rows = await sql<Selectable<WebhookDeliveriesTable>>`
      WITH body AS (
        INSERT INTO webhook_payloads (event_id, body, created_at)
        VALUES (${event.id}, ${body}, ${now}::timestamptz)
        ON CONFLICT (event_id) DO NOTHING
      )
      INSERT INTO webhook_deliveries (id, endpoint_id, event_id, event_type, status, attempts, next_attempt_at, created_at)
      SELECT p.id, p.endpoint_id, ${event.id}, ${event.type}, 'pending', 0, ${now}::timestamptz, ${now}::timestamptz
      FROM unnest(${targets.map(() => newId('webhookDelivery', now.getTime()))}::text[], ${targets.map((t) => t.id)}::text[])
        AS p(id, endpoint_id)
      ON CONFLICT ON CONSTRAINT webhook_deliveries_once DO UPDATE SET
        status = 'pending', next_attempt_at = EXCLUDED.next_attempt_at, first_attempt_at = NULL,
        lease_token = NULL, leased_until = NULL
      RETURNING *`.execute(trx);
    afterCommit(trx, () => this.#notifyDue());
    return rows.rows.map(toDelivery).sort((a, b) => (a.endpointId < b.endpointId ? -1 : 1));
  }

  /**
   * Claims due deliveries for one node's dispatcher (its own statement: a short transaction): at
   * most `total`, and per enabled endpoint at most `perEndpoint` minus what this node already has
   * in flight to it (`busy`), oldest due first, `FOR UPDATE SKIP LOCKED` so nodes never claim the
   * same one. Each is leased until `leaseMs` from now; a node that dies lets its claims lapse and
   * another takes them over.
   */
  async claim(opts: {
    total: number;
    perEndpoint: number;
    busy: ReadonlyMap<string, number>;
    leaseMs: number;
  }): Promise<ClaimedDelivery[]> {
    assert(opts.total >= 1 && opts.perEndpoint >= 1, 'claim sizes');
    const now = this.#clock.now();
    const until = new Date(now.getTime() + opts.leaseMs);
    const token = randomBytes(12).toString('hex');
    const busyIds = [...opts.busy.keys()];
    const busyN = busyIds.map((id) => opts.busy.get(id)!);
    const result = await sql<{
      id: string;
      endpoint_id: string;
      event_id: string;
      attempts: number;
      first_attempt_at: Date | null;
      url: string;
      secret_cipher: Uint8Array | null;
      previous_secret_cipher: Uint8Array | null;
      previous_secret_expires_at: Date | null;
      body: string;
    }>`
      WITH busy AS (
        SELECT * FROM unnest(${busyIds}::text[], ${busyN}::int[]) AS b(endpoint_id, n)
      ),
      candidates AS (
        SELECT d.id, d.endpoint_id, d.next_attempt_at
        FROM webhook_endpoints e
        CROSS JOIN LATERAL (
          SELECT id, endpoint_id, next_attempt_at FROM webhook_deliveries d
          WHERE d.endpoint_id = e.id AND d.status = 'pending' AND d.next_attempt_at <= ${now}::timestamptz
            AND (d.leased_until IS NULL OR d.leased_until <= ${now}::timestamptz)
          ORDER BY d.next_attempt_at
          LIMIT ${opts.perEndpoint}
          FOR UPDATE SKIP LOCKED
        ) d
        WHERE e.status = 'enabled'
      ),
      ranked AS (
        SELECT c.id, c.next_attempt_at,
               row_number() OVER (PARTITION BY c.endpoint_id ORDER BY c.next_attempt_at, c.id) + coalesce(b.n, 0) AS slot
        FROM candidates c LEFT JOIN busy b ON b.endpoint_id = c.endpoint_id
      ),
      picked AS (
        SELECT id FROM ranked WHERE slot <= ${opts.perEndpoint}
        ORDER BY next_attempt_at, id LIMIT ${opts.total}
      )
      UPDATE webhook_deliveries d SET lease_token = ${token}, leased_until = ${until}::timestamptz
      FROM picked, webhook_endpoints e, webhook_payloads p
      WHERE d.id = picked.id AND e.id = d.endpoint_id AND p.event_id = d.event_id
      RETURNING d.id, d.endpoint_id, d.event_id, d.attempts, d.first_attempt_at, e.url, e.secret_cipher,
                e.previous_secret_cipher, e.previous_secret_expires_at, p.body`.execute(this.#db);
    const out: ClaimedDelivery[] = [];
    for (const r of result.rows) {
      const secrets: string[] = [];
      if (r.secret_cipher) secrets.push(this.#open(r.endpoint_id, r.secret_cipher));
      if (
        r.previous_secret_cipher &&
        r.previous_secret_expires_at &&
        new Date(r.previous_secret_expires_at).getTime() > now.getTime()
      )
        secrets.push(this.#open(r.endpoint_id, r.previous_secret_cipher));
      out.push({
        id: r.id,
        endpointId: r.endpoint_id,
        eventId: r.event_id,
        url: r.url,
        body: r.body,
        secrets,
        token,
        attempts: Number(r.attempts),
        firstAttemptAt: r.first_attempt_at ? new Date(r.first_attempt_at) : null,
      });
    }
    return out;
  }

  /**
   * Records an attempt's result, if the claim still holds (a redelivery or a takeover after the
   * lease lapsed lets it go). Success: one statement (the delivery, and the endpoint no longer
   * failing). Failure: one short transaction: the delivery retried later or `failed`, the endpoint
   * failing since its first failure, disabled with a `webhook_endpoint.disabled` event once that
   * is 3 days ago.
   */
  async record(claimed: ClaimedDelivery, result: SendResult): Promise<void> {
    const now = this.#clock.now();
    const firstAttemptAt = claimed.firstAttemptAt ?? now;
    const attempts = claimed.attempts + 1;
    if (result.ok) {
      await sql`
        WITH d AS (
          UPDATE webhook_deliveries SET status = 'succeeded', attempts = ${attempts}, response_code = ${result.status},
            last_error = NULL, first_attempt_at = ${firstAttemptAt}::timestamptz, last_attempt_at = ${now}::timestamptz,
            next_attempt_at = NULL, lease_token = NULL, leased_until = NULL
          WHERE id = ${claimed.id} AND lease_token = ${claimed.token}
          RETURNING endpoint_id
        )
        UPDATE webhook_endpoints SET failing_since = NULL
        WHERE id IN (SELECT endpoint_id FROM d) AND failing_since IS NOT NULL`.execute(this.#db);
      return;
    }
    const next = afterFailure(this.#retry, { attempts, firstAttemptAt, now }, this.#random());
    await transact(this.#db, async (trx) => {
      const updated = await webhookTables(trx)
        .updateTable('webhook_deliveries')
        .set({
          status: next.status,
          attempts,
          response_code: result.status,
          last_error: (result.error ?? 'failed').slice(0, ERROR_LENGTH_MAX),
          first_attempt_at: firstAttemptAt,
          last_attempt_at: now,
          next_attempt_at: next.status === 'pending' ? next.nextAttemptAt : null,
          lease_token: null,
          leased_until: null,
        })
        .where('id', '=', claimed.id)
        .where('lease_token', '=', claimed.token)
        .executeTakeFirst();
      if (updated.numUpdatedRows !== 1n) return;
      const endpoint = await webhookTables(trx)
        .updateTable('webhook_endpoints')
        .set({ failing_since: sql<Date>`coalesce(failing_since, ${now}::timestamptz)` })
        .where('id', '=', claimed.endpointId)
        .returning(['status', 'failing_since'])
        .executeTakeFirst();
      if (endpoint?.status !== 'enabled') return;
      if (!shouldDisable(endpoint.failing_since, now, this.#failingDisableMs)) return;
      const disabled = await webhookTables(trx)
        .updateTable('webhook_endpoints')
        .set({
          status: 'disabled',
          disabled_reason: 'failing',
          version: sql<number>`version + 1`,
          updated_at: now,
        })
        .where('id', '=', claimed.endpointId)
        .where('status', '=', 'enabled')
        .returningAll()
        .executeTakeFirst();
      if (!disabled) return;
      await this.#events.appendMany(trx, [
        {
          type: 'webhook_endpoint.disabled',
          aggregate: { type: 'webhook_endpoint', id: disabled.id, version: disabled.version },
          customerId: null,
          data: {
            object: {
              id: disabled.id,
              status: 'disabled',
              disabledReason: 'failing',
              eventTypes: disabled.event_types,
              failingSince: disabled.failing_since ? disabled.failing_since.toISOString() : null,
            },
          },
        },
      ]);
    });
  }

  #seal(endpointId: string, secret: string): Buffer {
    return seal(this.#secretKey, secret, `webhook_endpoint:${endpointId}`);
  }

  #open(endpointId: string, sealed: Uint8Array): string {
    return open(this.#secretKey, sealed, `webhook_endpoint:${endpointId}`).toString('utf8');
  }
}

/** The body every delivery of `event` carries: the event exactly as `GET /v1/events/{id}` shows it. */
export function bodyOf(event: EventEnvelope): string {
  return JSON.stringify(eventToDto(event));
}

function toEndpoint(r: EndpointRow): WebhookEndpoint {
  assert(r.status !== 'deleted', 'a deleted endpoint is not shown');
  return {
    id: r.id,
    url: r.url,
    eventTypes: r.event_types,
    description: r.description,
    status: r.status,
    disabledReason: r.status === 'disabled' ? r.disabled_reason : null,
    createdAt: r.created_at,
    updatedAt: r.updated_at,
  };
}

function toDelivery(r: Selectable<WebhookDeliveriesTable>): WebhookDelivery {
  const date = (d: Date | string | null) => (d === null ? null : new Date(d));
  return {
    id: r.id,
    endpointId: r.endpoint_id,
    eventId: r.event_id,
    eventType: r.event_type,
    status: r.status,
    attempts: Number(r.attempts),
    responseCode: r.response_code,
    lastError: r.last_error,
    lastAttemptAt: date(r.last_attempt_at),
    nextAttemptAt: date(r.next_attempt_at),
    createdAt: new Date(r.created_at),
  };
}
