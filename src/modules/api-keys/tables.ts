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

/** The api-keys module's tables: only these can be queried through `apiKeyTables(executor)`. */
export interface ApiKeyTables {
  api_keys: ApiKeysTable;
}

export const apiKeyTables = (executor: Executor) => ownTables<ApiKeyTables>(executor);
