-- When a job first failed (on its own clock): kinds registered with a retry window (retryForMs)
-- give up that long after the first failure, not after a count of attempts. The partial index
-- serves the failed-jobs gauge of /metrics.
ALTER TABLE scheduled_jobs ADD COLUMN first_failed_at timestamptz;
CREATE INDEX scheduled_jobs_failed ON scheduled_jobs (kind) WHERE state = 'failed';
