-- The schema before migration 0018: with the purge index of 0004 back beside
-- jobs_finished_id of 0014 (both hold exactly the finished jobs).
-- claim: events
CREATE INDEX jobs_finished ON jobs (finished_at) WHERE state IN ('succeeded', 'discarded', 'cancelled');
