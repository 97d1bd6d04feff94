-- Counts kept as jobs change, and the indexes the
-- throughput history reads alone.
--
-- Job counts per queue, kind and state, kept by triggers in the statement that changes
-- a job (so always exact, in the same transaction). `GET /api/v1/queues` and a bulk
-- action's count by queues, kinds and states read this small table instead of
-- grouping the whole jobs table (seconds at a million jobs). SQLite has one writer, so
-- the two extra row writes per state change wait for no one; Postgres, where
-- concurrent writers would queue on these rows, keeps counting the table.
CREATE TABLE job_counts (
    queue TEXT    NOT NULL,
    kind  TEXT    NOT NULL,
    state TEXT    NOT NULL,
    n     INTEGER NOT NULL,
    PRIMARY KEY (queue, kind, state)
) WITHOUT ROWID;
INSERT INTO job_counts (queue, kind, state, n)
    SELECT queue, kind, state, count(*) FROM jobs GROUP BY queue, kind, state;
CREATE TRIGGER job_counts_insert AFTER INSERT ON jobs BEGIN
    INSERT INTO job_counts (queue, kind, state, n) VALUES (NEW.queue, NEW.kind, NEW.state, 1)
        ON CONFLICT (queue, kind, state) DO UPDATE SET n = n + 1;
END;
CREATE TRIGGER job_counts_delete AFTER DELETE ON jobs BEGIN
    UPDATE job_counts SET n = n - 1
        WHERE queue = OLD.queue AND kind = OLD.kind AND state = OLD.state;
END;
CREATE TRIGGER job_counts_update AFTER UPDATE OF queue, kind, state ON jobs
    WHEN OLD.state IS NOT NEW.state OR OLD.queue IS NOT NEW.queue OR OLD.kind IS NOT NEW.kind
BEGIN
    UPDATE job_counts SET n = n - 1
        WHERE queue = OLD.queue AND kind = OLD.kind AND state = OLD.state;
    INSERT INTO job_counts (queue, kind, state, n) VALUES (NEW.queue, NEW.kind, NEW.state, 1)
        ON CONFLICT (queue, kind, state) DO UPDATE SET n = n + 1;
END;
-- The throughput history (GET /api/v1/stats/throughput, src/store/throughput.rs): jobs
-- enqueued, succeeded and dead-lettered per queue and interval, each a grouped count
-- read from one index alone (no row visited): by enqueue time here, and by finish
-- time from the purge's two partial indexes, rebuilt with the state and queue in them
-- (same entries, same predicates: the purge reads them as before).
CREATE INDEX jobs_created ON jobs (created_at, queue);
DROP INDEX jobs_finished;
CREATE INDEX jobs_finished ON jobs (finished_at, state, queue) WHERE state IN ('succeeded', 'cancelled');
DROP INDEX jobs_dead;
CREATE INDEX jobs_dead ON jobs (finished_at, queue) WHERE state = 'discarded';
