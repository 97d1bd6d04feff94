-- 1M jobs: 10 queues, 20 kinds, priorities -5..5, a mix of states, one customer id of
-- 1000 in each payload, one job created every 10 ms; finished states have finished_at.
-- Payload keys by how many jobs share one value: `half` (1 in 2), `pct` (1 in 100),
-- `customer.id` (1 in 1000), `rare` (1 in 10,000), `n` (one job each).
INSERT INTO jobs (queue, kind, payload, priority, state, attempt, max_attempts, run_at,
                  created_at, finished_at, lease_token)
SELECT 'q' || (i % 10), 'k' || (i % 20),
       jsonb_build_object('customer', jsonb_build_object('id', (i % 1000)::text), 'n', i,
                          'half', i % 2, 'pct', i % 100, 'rare', i % 10000),
       (i % 11) - 5,
       CASE WHEN i % 100 < 70 THEN 'succeeded' WHEN i % 100 < 80 THEN 'available'
            WHEN i % 100 < 85 THEN 'retryable' WHEN i % 100 < 90 THEN 'scheduled'
            WHEN i % 100 < 95 THEN 'discarded' WHEN i % 100 < 98 THEN 'cancelled'
            ELSE 'running' END,
       1, 25, 1700000000000 + i * 10, 1700000000000 + i * 10,
       CASE WHEN i % 100 < 70 OR (i % 100 >= 90 AND i % 100 < 98)
            THEN 1700000000000 + i * 10 + 500 END,
       1
FROM generate_series(1, 1000000) AS i;
-- 5M events: five per job.
INSERT INTO lifecycle_events (at, kind, job, attempt, detail)
SELECT 1700000000000 + (i / 5) * 10, (ARRAY['job.enqueued','job.claimed','job.failed','job.retry_scheduled','job.succeeded'])[i % 5 + 1],
       i / 5 + 1, 1, '{"x": 1}'::jsonb
FROM generate_series(0, 4999999) AS i;
VACUUM ANALYZE jobs;
VACUUM ANALYZE lifecycle_events;
