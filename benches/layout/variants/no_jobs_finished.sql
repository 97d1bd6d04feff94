-- Without the purge index of 0004: jobs_finished_id of 0014 holds the same jobs (a job
-- has finished_at exactly while it is in a final state). Not a migration (yet): see the
-- README, "Where Postgres time goes per job".
-- claim: events
DROP INDEX jobs_finished;
