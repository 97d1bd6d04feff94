-- The plans of every statement that reads jobs_finished (0004) or the listing indexes
-- (0008), on the 1M-job mix of benches/list_filters/fill.sql. Run once per index set:
--   psql URL -v variant=NAME -f benches/layout/explain.sql
-- (the database prepared by explain.sh). Each statement is written as the store writes
-- it (the file named before it), with the values of a page or a purge.
\pset pager off
\timing off
SET plan_cache_mode = force_custom_plan;
\echo '== purge, finished (retention.rs): the oldest 1000 of 20% expired, of 1%, and none expired'
EXPLAIN (ANALYZE, BUFFERS, COSTS OFF) SELECT id FROM jobs WHERE state IN ('succeeded', 'cancelled') AND finished_at < 1700002000000
    LIMIT 1000 FOR UPDATE SKIP LOCKED;
EXPLAIN (ANALYZE, BUFFERS, COSTS OFF) SELECT id FROM jobs WHERE state IN ('succeeded', 'cancelled') AND finished_at < 1700000100000
    LIMIT 1000 FOR UPDATE SKIP LOCKED;
EXPLAIN (ANALYZE, BUFFERS, COSTS OFF) SELECT id FROM jobs WHERE state IN ('succeeded', 'cancelled') AND finished_at < 1700000000000
    LIMIT 1000 FOR UPDATE SKIP LOCKED;
\echo '== purge, dead letters (retention.rs)'
EXPLAIN (ANALYZE, BUFFERS, COSTS OFF) SELECT id FROM jobs WHERE state = 'discarded' AND finished_at < 1700002000000
    LIMIT 1000 FOR UPDATE SKIP LOCKED;
EXPLAIN (ANALYZE, BUFFERS, COSTS OFF) SELECT id FROM jobs WHERE state = 'discarded' AND finished_at < 1700000100000
    LIMIT 1000 FOR UPDATE SKIP LOCKED;
\echo '== the last minute finished, by queue and state (history.rs finished_since)'
EXPLAIN (ANALYZE, BUFFERS, COSTS OFF) SELECT queue, state, count(*) FROM jobs
    WHERE state IN ('succeeded', 'discarded', 'cancelled') AND finished_at >= 1700009940000
    GROUP BY queue, state;
\echo '== the same three as generic plans (sqlx prepares statements; Postgres may switch to these)'
SET plan_cache_mode = force_generic_plan;
PREPARE purge_finished AS SELECT id FROM jobs WHERE state IN ('succeeded', 'cancelled') AND finished_at < $1
    LIMIT $2 FOR UPDATE SKIP LOCKED;
EXPLAIN (ANALYZE, BUFFERS, COSTS OFF) EXECUTE purge_finished(1700002000000, 1000);
PREPARE purge_dead AS SELECT id FROM jobs WHERE state = 'discarded' AND finished_at < $1
    LIMIT $2 FOR UPDATE SKIP LOCKED;
EXPLAIN (ANALYZE, BUFFERS, COSTS OFF) EXECUTE purge_dead(1700002000000, 1000);
PREPARE finished_since AS SELECT queue, state, count(*) FROM jobs
    WHERE state IN ('succeeded', 'discarded', 'cancelled') AND finished_at >= $1 GROUP BY queue, state;
EXPLAIN (ANALYZE, BUFFERS, COSTS OFF) EXECUTE finished_since(1700009940000);
\echo '== the purges as generic plans when nothing has expired (the usual case)'
EXPLAIN (ANALYZE, BUFFERS, COSTS OFF) EXECUTE purge_finished(1700000000000, 1000);
EXPLAIN (ANALYZE, BUFFERS, COSTS OFF) EXECUTE purge_dead(1700000000000, 1000);
\echo '== the purges with ORDER BY finished_at (not what retention.rs says today), generic then custom'
PREPARE purge_finished_ordered AS SELECT id FROM jobs WHERE state IN ('succeeded', 'cancelled') AND finished_at < $1
    ORDER BY finished_at LIMIT $2 FOR UPDATE SKIP LOCKED;
PREPARE purge_dead_ordered AS SELECT id FROM jobs WHERE state = 'discarded' AND finished_at < $1
    ORDER BY finished_at LIMIT $2 FOR UPDATE SKIP LOCKED;
EXPLAIN (ANALYZE, BUFFERS, COSTS OFF) EXECUTE purge_finished_ordered(1700000000000, 1000);
EXPLAIN (ANALYZE, BUFFERS, COSTS OFF) EXECUTE purge_finished_ordered(1700002000000, 1000);
EXPLAIN (ANALYZE, BUFFERS, COSTS OFF) EXECUTE purge_dead_ordered(1700000000000, 1000);
EXPLAIN (ANALYZE, BUFFERS, COSTS OFF) EXECUTE purge_dead_ordered(1700002000000, 1000);
SET plan_cache_mode = force_custom_plan;
EXPLAIN (ANALYZE, BUFFERS, COSTS OFF) EXECUTE purge_finished_ordered(1700002000000, 1000);
EXPLAIN (ANALYZE, BUFFERS, COSTS OFF) EXECUTE purge_dead_ordered(1700000100000, 1000);
SET plan_cache_mode = force_custom_plan;
\echo '== listing by finish time, a 1 h range past a cursor, with and without state=discarded (listing.rs, filter_sql.rs)'
EXPLAIN (ANALYZE, BUFFERS, COSTS OFF) SELECT * FROM jobs WHERE true AND finished_at >= 1700004000000 AND finished_at < 1700007600000
    AND finished_at IS NOT NULL AND (finished_at, id) > (1700005000500, 500000) ORDER BY finished_at, id LIMIT 100;
EXPLAIN (ANALYZE, BUFFERS, COSTS OFF) SELECT * FROM jobs WHERE true AND state = 'discarded' AND finished_at >= 1700004000000
    AND finished_at < 1700007600000 AND finished_at IS NOT NULL AND (finished_at, id) > (1700005000500, 500000)
    ORDER BY finished_at, id LIMIT 100;
\echo '== listings by state, queue, kind (newest first, a page of 100)'
EXPLAIN (ANALYZE, BUFFERS, COSTS OFF) SELECT * FROM jobs WHERE true AND state = 'running' ORDER BY id DESC LIMIT 100;
EXPLAIN (ANALYZE, BUFFERS, COSTS OFF) SELECT * FROM jobs WHERE true AND state = 'available' ORDER BY id DESC LIMIT 100;
EXPLAIN (ANALYZE, BUFFERS, COSTS OFF) SELECT * FROM jobs WHERE true AND queue = 'q3' ORDER BY id DESC LIMIT 100;
EXPLAIN (ANALYZE, BUFFERS, COSTS OFF) SELECT * FROM jobs WHERE true AND kind = 'k3' ORDER BY id DESC LIMIT 100;
EXPLAIN (ANALYZE, BUFFERS, COSTS OFF) SELECT * FROM jobs WHERE true AND kind = 'krare' ORDER BY id DESC LIMIT 100;
EXPLAIN (ANALYZE, BUFFERS, COSTS OFF) SELECT * FROM jobs WHERE true AND queue = 'q3' AND state = 'running' ORDER BY id DESC LIMIT 100;
\echo '== the same state listing as a generic plan'
SET plan_cache_mode = force_generic_plan;
PREPARE by_state AS SELECT * FROM jobs WHERE true AND state = $1 ORDER BY id DESC LIMIT $2;
EXPLAIN (ANALYZE, BUFFERS, COSTS OFF) EXECUTE by_state('available', 100);
EXPLAIN (ANALYZE, BUFFERS, COSTS OFF) EXECUTE by_state('running', 100);
