import type { Kysely } from 'kysely';
import { type Before, newestFirst, olderThan } from '../../db/keyset.js';
import type { Db, Executor } from '../../db/schema.js';
import type { Clock } from '../../kernel/clock.js';
import { newId } from '../../kernel/ids.js';
import { type AuditLogTable, type AuditTables, auditTables } from './tables.js';

export interface AuditEntry {
  id: string;
  apiKey: string;
  action: string;
  resourceType: string;
  resource: string | null;
  requestId: string | null;
  status: number;
  at: Date;
}

export interface AuditRecord {
  apiKeyId: string;
  action: string;
  resourceType: string;
  resourceId: string | null;
  requestId: string | null;
  status: number;
}

const toEntry = (r: AuditLogTable): AuditEntry => ({
  id: r.id,
  apiKey: r.api_key_id,
  action: r.action,
  resourceType: r.resource_type,
  resource: r.resource_id,
  requestId: r.request_id,
  status: r.status,
  at: r.at,
});

/** Who changed what, when, through which request. Written in the same transaction as the change. */
export class AuditService {
  /** The shared database seen through this module's tables, for reads outside a transaction. */
  readonly #tables: Kysely<AuditTables>;
  readonly #clock: Clock;
  constructor(db: Db, clock: Clock) {
    this.#tables = auditTables(db);
    this.#clock = clock;
  }

  async record(trx: Executor, entry: AuditRecord): Promise<void> {
    await this.recordQuery(trx, entry).execute();
  }

  /**
   * The insert of an entry, unexecuted: for a caller that writes it in a statement it runs anyway
   * (the unit of work puts it in a CTE of the stored idempotent response's update).
   */
  recordQuery(trx: Executor, entry: AuditRecord) {
    return auditTables(trx)
      .insertInto('audit_log')
      .values({
        id: newId('auditEntry'),
        api_key_id: entry.apiKeyId,
        action: entry.action,
        resource_type: entry.resourceType,
        resource_id: entry.resourceId,
        request_id: entry.requestId,
        status: entry.status,
        at: this.#clock.now(),
      });
  }

  /**
   * Entries about any of these resources (a customer and what it owns: the customer timeline),
   * newest first, `limit` of them older than `before`. The resource index finds them.
   */
  async forResources(
    resources: readonly string[],
    before: Before | undefined,
    limit: number,
  ): Promise<AuditEntry[]> {
    if (resources.length === 0) return [];
    const rows = await this.#tables
      .selectFrom('audit_log')
      .selectAll()
      .where('resource_id', 'in', [...new Set(resources)])
      .where(olderThan('at', 'id', before))
      .orderBy(newestFirst('at'))
      .orderBy('id', 'desc')
      .limit(limit)
      .execute();
    return rows.map(toEntry);
  }

  async list(filter: {
    limit: number;
    after?: string | undefined;
    resource?: string | undefined;
    apiKey?: string | undefined;
    action?: string | undefined;
  }): Promise<AuditEntry[]> {
    let q = this.#tables.selectFrom('audit_log').selectAll().orderBy('id').limit(filter.limit);
    if (filter.after) q = q.where('id', '>', filter.after);
    if (filter.resource) q = q.where('resource_id', '=', filter.resource);
    if (filter.apiKey) q = q.where('api_key_id', '=', filter.apiKey);
    if (filter.action) q = q.where('action', '=', filter.action);
    return (await q.execute()).map(toEntry);
  }
}
