import type { FastifyReply, FastifyRequest } from 'fastify';
import { type Compilable, type OperationNodeSource, sql } from 'kysely';
import type { Db, Executor } from '../db/schema.js';
import { transact } from '../db/transaction.js';
import { assert } from '../kernel/assert.js';
import type { AuditService } from '../modules/audit/service.js';
import type { IdempotencyStore, PersonalRef } from './idempotency.js';
import './context.js';

export interface Outcome {
  status: number;
  body: unknown;
  /** The resource the call created or changed, for the audit log. */
  resourceId?: string | null;
  /** Defaults to JSON; problem documents (e.g. a 402 decline that changed state) set theirs. */
  contentType?: string;
  /** Top-level fields of `body` holding a customer's personal data: never stored for replay. */
  personal?: PersonalRef;
  /** Top-level fields of `body` shown once (a new secret): stored for replay as null, never rebuilt. */
  redact?: readonly string[];
}

/**
 * Runs a mutating request as one database transaction: the change, its audit entry and the stored
 * idempotent response commit together or not at all. A retry after a crash therefore finds either
 * nothing (and runs again) or the stored response (and replays it): never a second effect.
 */
export class UnitOfWork {
  readonly #db: Db;
  readonly #idempotency: IdempotencyStore;
  readonly #audit: AuditService;

  constructor(db: Db, idempotency: IdempotencyStore, audit: AuditService) {
    this.#db = db;
    this.#idempotency = idempotency;
    this.#audit = audit;
  }

  async run(
    request: FastifyRequest,
    reply: FastifyReply,
    work: (trx: Executor) => Promise<Outcome>,
  ): Promise<void> {
    const principal = request.principal;
    // Every change is someone's: an API key, or a public route's caller it authenticated itself
    // (a provider webhook sets its provider as principal once the signature is verified).
    assert(principal, `unit of work without a principal on ${request.method} ${request.routeOptions.url}`);
    const config = request.routeOptions.config;
    const { status, json, contentType } = await transact(this.#db, async (trx) => {
      const outcome = await work(trx);
      const isProblem = outcome.contentType?.startsWith('application/problem+json') === true;
      // A problem a unit of work answers (a decline that changed state) names its request like any other.
      const body =
        isProblem && outcome.body !== null && typeof outcome.body === 'object'
          ? { ...(outcome.body as object), requestId: request.id }
          : outcome.body;
      const text = JSON.stringify(body);
      const audit = this.#audit.recordQuery(trx, {
        apiKeyId: principal.keyId,
        action: config.action ?? `${request.method} ${request.routeOptions.url}`,
        resourceType: config.resourceType ?? 'unknown',
        resourceId: outcome.resourceId ?? null,
        requestId: request.id,
        status: outcome.status,
      });
      // The audit entry rides in the statement storing the response: one round trip for both.
      if (request.idempotency) {
        await this.#idempotency.complete(
          trx,
          principal.keyId,
          request.idempotency,
          outcome.status,
          outcome.redact ? withoutFields(text, outcome.redact) : text,
          outcome.personal,
          audit,
        );
      } else await audit.execute();
      return {
        status: outcome.status,
        json: text,
        contentType: outcome.contentType ?? 'application/json; charset=utf-8',
      };
    });
    request.audited = true;
    await reply.code(status).type(contentType).send(json);
  }

  /**
   * A request whose whole effect is one statement (`effect`, e.g. an insert that returns a row when
   * it changed something): the audit entry rides in it as a CTE, so the effect and its entry still
   * commit together, without a transaction around them. Only for requests without an
   * Idempotency-Key (nothing to store for replay); `respond` sees the statement's rows.
   */
  async runStatement<R>(
    request: FastifyRequest,
    reply: FastifyReply,
    audit: { status: number; resourceId: string | null },
    effect: Compilable<R> & OperationNodeSource,
    respond: (rows: R[]) => unknown,
  ): Promise<void> {
    const principal = request.principal;
    assert(principal, `unit of work without a principal on ${request.method} ${request.routeOptions.url}`);
    assert(!request.idempotency, 'a single-statement unit of work stores no idempotent response');
    const config = request.routeOptions.config;
    const entry = this.#audit.recordQuery(this.#db, {
      apiKeyId: principal.keyId,
      action: config.action ?? `${request.method} ${request.routeOptions.url}`,
      resourceType: config.resourceType ?? 'unknown',
      resourceId: audit.resourceId,
      requestId: request.id,
      status: audit.status,
    });
    const { rows } = await sql<R>`WITH audit AS (${entry}) ${effect}`.execute(this.#db);
    request.audited = true;
    await reply
      .code(audit.status)
      .type('application/json; charset=utf-8')
      .send(JSON.stringify(respond(rows)));
  }

  /**
   * Answers without settling the request: the outcome is not known yet (a provider did not answer
   * in time), so nothing is stored for replay and the Idempotency-Key is released; a retry with
   * it runs again and resumes the work by its request key.
   */
  async unsettled(
    request: FastifyRequest,
    reply: FastifyReply,
    status: number,
    body: unknown,
  ): Promise<void> {
    if (request.idempotency && request.principal)
      await this.#idempotency.release(request.principal.keyId, request.idempotency);
    await reply.code(status).type('application/json; charset=utf-8').send(JSON.stringify(body));
  }
}

/** `body` (a JSON object) with these top-level fields set to null. */
function withoutFields(body: string, fields: readonly string[]): string {
  const parsed = JSON.parse(body) as Record<string, unknown>;
  for (const field of fields) if (field in parsed) parsed[field] = null;
  return JSON.stringify(parsed);
}

/**
 * `<api key id>:<Idempotency-Key>` of a request, or null without a key: stored on what the request
 * creates, so a retry after a crash finds it and resumes instead of creating a second one.
 */
export function requestKeyOf(request: FastifyRequest): string | null {
  return request.idempotency && request.principal
    ? `${request.principal.keyId}:${request.idempotency.key}`
    : null;
}
