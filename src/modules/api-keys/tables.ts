import { type Executor, ownTables } from '../../db/schema.js';

export interface ApiKeysTable {
  id: string;
  name: string;
  secret_hash: string;
  secret_hint: string;
  scopes: string[];
  created_at: Date;
  revoked_at: Date | null;
  last_used_at: Date | null;
}

/** An admin console session (migration 0057): the SHA-256 of its cookie's secret, never the secret. */
export interface AdminSessionsTable {
  id: string;
  secret_hash: string;
  key_id: string;
  /** SHA-256 of the bootstrap key a `key_bootstrap` session was opened with; null otherwise. */
  bootstrap_hash: string | null;
  created_at: Date;
  /** Absolute end (created + 12 h); the idle end is last_seen_at + 30 min. */
  expires_at: Date;
  last_seen_at: Date;
}

/** The api-keys module's tables: only these can be queried through `apiKeyTables(executor)`. */
export interface ApiKeyTables {
  api_keys: ApiKeysTable;
  admin_sessions: AdminSessionsTable;
}

export const apiKeyTables = (executor: Executor) => ownTables<ApiKeyTables>(executor);
