-- The enqueue of :batch jobs, as src/store/postgres/enqueue.rs writes it, with its
-- job.enqueued events. Each pgbench client has a queue and a worker of its own.
SELECT jm_draw_incarnation(true) WHERE coalesce(current_setting('jobmesh.incarnation', true), '') = '';
WITH t AS (SELECT (extract(epoch FROM clock_timestamp()) * 1000)::bigint AS ms),
ins AS (
    INSERT INTO jobs (queue, kind, payload, priority, state, max_attempts, run_at, created_at,
                      timeout_ms, on_parent_failure)
    SELECT 'q' || :client_id, 'noop', '{}'::jsonb, 0, 'available', 3, t.ms, t.ms, NULL, 'discard'
    FROM generate_series(1, :batch) AS n, t ORDER BY n
    RETURNING id, queue, state, created_at
), ev AS (
    INSERT INTO lifecycle_events (at, kind, job, attempt)
    SELECT created_at, 'job.enqueued', id, 0 FROM ins ORDER BY id
), woke AS (
    SELECT jm_wake(array_agg(DISTINCT queue)) FROM ins WHERE state = 'available'
)
SELECT count(*) FROM ins, woke;
