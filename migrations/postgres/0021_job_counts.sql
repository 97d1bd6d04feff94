-- Counts per queue and state without reading the jobs table (GET /api/v1/queues, the
-- maintenance leader's posted counts). A grouped count of `jobs` reads every row: 1-4 s
-- at ten million jobs, and it grows with the jobs kept.
--
-- Every statement that inserts, updates or deletes jobs appends its net change per
-- queue and state to `job_count_deltas`: one statement-level trigger per statement, not
-- per row, and an append, so concurrent claimers and completers never wait on a shared
-- counter row. A reader folds the deltas into `job_counts` in one statement (a delta is
-- either still appended or already added, never both) and reads the totals.
CREATE TABLE job_counts (
    queue TEXT   NOT NULL,
    state TEXT   NOT NULL,
    n     BIGINT NOT NULL,
    PRIMARY KEY (queue, state)
);

CREATE TABLE job_count_deltas (
    queue TEXT   NOT NULL,
    state TEXT   NOT NULL,
    n     BIGINT NOT NULL
);
-- No key: a database that publishes all its tables (change data capture, an upgrade by
-- logical replication) still lets the fold delete from it.
ALTER TABLE job_count_deltas REPLICA IDENTITY FULL;

-- No job changes between the first count and the triggers.
LOCK TABLE jobs IN SHARE ROW EXCLUSIVE MODE;
INSERT INTO job_counts (queue, state, n)
    SELECT queue, state, count(*) FROM jobs GROUP BY queue, state;

CREATE FUNCTION jm_count_inserted() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO job_count_deltas (queue, state, n)
        SELECT queue, state, count(*) FROM jm_new GROUP BY queue, state;
    RETURN NULL;
END $$;

CREATE FUNCTION jm_count_deleted() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO job_count_deltas (queue, state, n)
        SELECT queue, state, -count(*) FROM jm_old GROUP BY queue, state;
    RETURN NULL;
END $$;

-- An update that moves no job between states (a lease extension, progress) appends
-- nothing: the old and new rows cancel out.
CREATE FUNCTION jm_count_updated() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO job_count_deltas (queue, state, n)
        SELECT queue, state, sum(d) FROM (
            SELECT queue, state, -1 AS d FROM jm_old
            UNION ALL
            SELECT queue, state, 1 AS d FROM jm_new
        ) moved
        GROUP BY queue, state HAVING sum(d) <> 0;
    RETURN NULL;
END $$;

CREATE TRIGGER jobs_count_inserted AFTER INSERT ON jobs
    REFERENCING NEW TABLE AS jm_new
    FOR EACH STATEMENT EXECUTE FUNCTION jm_count_inserted();
CREATE TRIGGER jobs_count_deleted AFTER DELETE ON jobs
    REFERENCING OLD TABLE AS jm_old
    FOR EACH STATEMENT EXECUTE FUNCTION jm_count_deleted();
CREATE TRIGGER jobs_count_updated AFTER UPDATE ON jobs
    REFERENCING OLD TABLE AS jm_old NEW TABLE AS jm_new
    FOR EACH STATEMENT EXECUTE FUNCTION jm_count_updated();

-- TRUNCATE jobs empties the counts too.
CREATE FUNCTION jm_count_truncated() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM job_count_deltas;
    DELETE FROM job_counts;
    RETURN NULL;
END $$;
CREATE TRIGGER jobs_count_truncated AFTER TRUNCATE ON jobs
    FOR EACH STATEMENT EXECUTE FUNCTION jm_count_truncated();

-- The functions name this store's schema (the one the tables were just created in),
-- whoever writes to `jobs` and whatever that session's search_path: an operator's psql
-- under another role (where "$user" names another schema) counts in these tables.
DO $$
DECLARE f text;
BEGIN
    FOREACH f IN ARRAY ARRAY['jm_count_inserted', 'jm_count_deleted', 'jm_count_updated',
                             'jm_count_truncated'] LOOP
        EXECUTE format('ALTER FUNCTION %I() SET search_path = %I, pg_temp', f, current_schema());
    END LOOP;
END $$;
