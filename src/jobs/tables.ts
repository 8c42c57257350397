import type { Generated } from 'kysely';

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
}
