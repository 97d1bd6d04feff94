-- The retention purge finds finished jobs and old node/worker events by time. Without
-- these it read the whole `jobs` and `lifecycle_events` tables once a minute (about
-- 150 ms each at a million rows, growing with the history kept). Both are partial: a
-- job enters `jobs_finished` when it finishes; only events without a job (node and
-- worker events, few) enter `lifecycle_events_unowned`.
CREATE INDEX jobs_finished ON jobs (finished_at)
    WHERE state IN ('succeeded', 'discarded', 'cancelled');
CREATE INDEX lifecycle_events_unowned ON lifecycle_events (at) WHERE job IS NULL;
