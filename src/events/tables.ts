import type { Generated } from 'kysely';
import { type Executor, ownTables } from '../db/schema.js';

export interface EventsTable {
  /** Global counter; with `xact_id` the commit-safe position of the event (ADR 0015). */
  seq: Generated<number>;
  /** `pg_current_xact_id()` of the writing transaction, set by the database. */
  xact_id: Generated<number>;
  id: string;
  type: string;
  aggregate_type: string;
  aggregate_id: string;
  aggregate_version: number;
  customer_id: string | null;
  data: unknown;
  created_at: Date;
}

/** Where a relay has published up to (ADR 0018). */
export interface RelayPositionsTable {
  name: string;
  xact_id: number;
  seq: number;
  /** Events published in all (a counter for operators). */
  published: number;
  updated_at: Date;
}

/** The outbox's tables: only these can be queried through `eventTables(executor)`. */
export interface EventTables {
  events: EventsTable;
  relay_positions: RelayPositionsTable;
}

export const eventTables = (executor: Executor) => ownTables<EventTables>(executor);
