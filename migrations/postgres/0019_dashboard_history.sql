-- The indexes the throughput history reads alone
-- (GET /api/v1/stats/throughput, src/store/throughput.rs): jobs enqueued, succeeded and
-- dead-lettered per queue and interval, each a grouped count from an index-only scan,
-- by enqueue time here and by finish time from the purge's partial index, rebuilt with
-- the state and queue in it (same entries and predicate: the purge reads it as before).
-- On a large table an operator may build them first without blocking writes:
--   CREATE INDEX CONCURRENTLY jobs_created ON jobs (created_at, queue);
CREATE INDEX IF NOT EXISTS jobs_created ON jobs (created_at, queue);
DROP INDEX jobs_finished;
CREATE INDEX jobs_finished ON jobs (finished_at, state, queue)
    WHERE state IN ('succeeded', 'discarded', 'cancelled');
