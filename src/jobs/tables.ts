import type { Generated } from 'kysely';
import { type Executor, ownTables } from '../db/schema.js';

export interface ScheduledJobsTable {
  id: string;
  kind: string;
  run_at: Date;
  test_clock_id: string | null;
  customer_id: string | null;
  payload: unknown;
  state: 'pending' | 'done' | 'failed';
  attempts: Generated<number>;
  last_error: string | null;
  dedupe_key: string | null;
  created_at: Date;
  done_at: Date | null;
  /** Wall-clock time the job reached done or failed (done_at is the job's own, maybe simulated, time). */
  finished_at: Date | null;
  /** The job's own time of its first failure; a retry window (retryForMs) counts from here. */
  first_failed_at: Date | null;
}

/** The scheduler's tables: only these can be queried through `jobTables(executor)`. */
export interface JobTables {
  scheduled_jobs: ScheduledJobsTable;
}

export const jobTables = (executor: Executor) => ownTables<JobTables>(executor);
