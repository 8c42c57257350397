import { type Executor, ownTables } from '../../db/schema.js';

export interface PortalSessionsTable {
  id: string;
  /** SHA-256 (hex) of the session secret; the secret itself is never stored. */
  secret_hash: string;
  customer_id: string;
  return_url: string | null;
  created_at: Date;
  expires_at: Date;
  ended_at: Date | null;
  /** Cards this session asked to attach, declined ones included (capped: CARD_ATTACHES_MAX). */
  card_attaches: number;
}

/** The portal module's tables: only these can be queried through `portalTables(executor)`. */
export interface PortalTables {
  portal_sessions: PortalSessionsTable;
}

export const portalTables = (executor: Executor) => ownTables<PortalTables>(executor);
