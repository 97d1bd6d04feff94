-- The retention purge finds finished jobs and old node/worker events by time. Without
-- these it read the whole `jobs` and `lifecycle_events` tables every purge interval,
-- inside a write transaction, so every writer waited for the scan. All are partial,
-- with the purge queries' own predicates (SQLite uses a partial index only when the
-- query repeats its WHERE term): a job enters one when it finishes; only events without
-- a job (node and worker events, few) enter `lifecycle_events_unowned`.
CREATE INDEX jobs_finished ON jobs (finished_at) WHERE state IN ('succeeded', 'cancelled');
CREATE INDEX jobs_dead ON jobs (finished_at) WHERE state = 'discarded';
CREATE INDEX lifecycle_events_unowned ON lifecycle_events (at) WHERE job IS NULL;
