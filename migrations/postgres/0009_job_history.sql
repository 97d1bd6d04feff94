-- Node and worker events, for the nodes view (GET /api/v1/nodes): the newest of them by
-- seq without reading the job events around them. Partial, so only these events (a few
-- per node start, crash and stop) enter it; a job's own events never do. The predicate
-- is `member_kinds_sql!` in src/store/activity.rs. A job's events are found by
-- `lifecycle_events_job` (0001): a job has a handful, sorted by seq after the lookup.
CREATE INDEX lifecycle_events_members ON lifecycle_events (seq)
    WHERE kind IN ('node.joined', 'node.suspected', 'node.evicted', 'node.left',
                   'worker.started', 'worker.crashed', 'worker.restarted', 'worker.stopped');
