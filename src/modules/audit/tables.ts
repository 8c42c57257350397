import { type Executor, ownTables } from '../../db/schema.js';

export interface AuditLogTable {
  id: string;
  api_key_id: string;
  action: string;
  resource_type: string;
  resource_id: string | null;
  request_id: string | null;
  status: number;
  at: Date;
}

/** The audit module's tables: only these can be queried through `auditTables(executor)`. */
export interface AuditTables {
  audit_log: AuditLogTable;
}

export const auditTables = (executor: Executor) => ownTables<AuditTables>(executor);
