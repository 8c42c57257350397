-- When a job finished (done or failed) on the wall clock. done_at is the job's own time, which on a
-- test clock may be years from now; pruning needs real time. Finished jobs are deleted a retention
-- after finished_at (see jobs/scheduler.ts), in bounded batches, through the partial index below.
ALTER TABLE scheduled_jobs ADD COLUMN finished_at timestamptz;
UPDATE scheduled_jobs
  SET finished_at = CASE WHEN test_clock_id IS NULL THEN coalesce(done_at, created_at) ELSE created_at END
  WHERE state <> 'pending';
ALTER TABLE scheduled_jobs
  ADD CONSTRAINT scheduled_jobs_finished_at CHECK ((state = 'pending') = (finished_at IS NULL));
CREATE INDEX scheduled_jobs_finished ON scheduled_jobs (finished_at) WHERE state <> 'pending';
