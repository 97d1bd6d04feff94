-- Counts per queue and state without reading the jobs table (GET /api/v1/queues, the
-- maintenance leader's posted counts). A grouped count of `jobs` reads every row: 1-4 s
-- at ten million jobs, and it grows with the jobs kept.
--
-- Every statement that inserts, updates or deletes jobs appends its net change per
-- queue and state to `job_count_deltas`: one statement-level trigger per statement, not
-- per row, and an append, so concurrent claimers and completers never wait on a shared
-- counter row. A reader folds the deltas into `job_counts` in one statement (a delta is
-- either still appended or already added, never both) and reads the totals. The
-- functions keep the store's schema, so a change made under another search_path (an
-- operator's psql) is counted in this store's tables.
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

-- No job changes between the first count and the triggers.
LOCK TABLE jobs IN SHARE ROW EXCLUSIVE MODE;
INSERT INTO job_counts (queue, state, n)
    SELECT queue, state, count(*) FROM jobs GROUP BY queue, state;

CREATE FUNCTION jm_count_inserted() RETURNS trigger LANGUAGE plpgsql
    SET search_path FROM CURRENT AS $$
BEGIN
    INSERT INTO job_count_deltas (queue, state, n)
        SELECT queue, state, count(*) FROM jm_new GROUP BY queue, state;
    RETURN NULL;
END $$;

CREATE FUNCTION jm_count_deleted() RETURNS trigger LANGUAGE plpgsql
    SET search_path FROM CURRENT AS $$
BEGIN
    INSERT INTO job_count_deltas (queue, state, n)
        SELECT queue, state, -count(*) FROM jm_old GROUP BY queue, state;
    RETURN NULL;
END $$;

-- An update that moves no job between states (a lease extension, progress) appends
-- nothing: the old and new rows cancel out.
CREATE FUNCTION jm_count_updated() RETURNS trigger LANGUAGE plpgsql
    SET search_path FROM CURRENT AS $$
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
