-- Batch runners (renewals) claim the due wall-clock jobs of one kind a batch at a time: this index
-- finds them in due order without walking the other kinds' due jobs.
CREATE INDEX scheduled_jobs_kind_due ON scheduled_jobs (kind, run_at, id)
  WHERE state = 'pending' AND test_clock_id IS NULL;
