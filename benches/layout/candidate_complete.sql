-- The candidate's jm_complete: today's (migration 0001) with the execution insert turned
-- into an update of the attempt row the claim inserted (which takes the finished fact's
-- place in the event sequence), and no job.succeeded event (the attempt row is that
-- fact). Failure events stay events. Only what differs from 0001 is commented.
CREATE OR REPLACE FUNCTION jm_complete(
    p_job bigint[], p_token bigint[], p_attempt integer[], p_worker text[], p_node text[],
    p_started bigint[], p_finished bigint[], p_outcome text[], p_error text[],
    p_run_at bigint[], p_output jsonb[]
) RETURNS SETOF bigint LANGUAGE plpgsql AS $$
DECLARE
    v_now      bigint;
    v_applied  bigint[];
    v_parents  bigint[];
    v_failed   bigint[];
    v_wake     text[];
BEGIN
    WITH upd AS (
        UPDATE jobs j SET
            state = CASE c.outcome WHEN 'succeeded' THEN 'succeeded' WHEN 'retry' THEN 'retryable'
                                   WHEN 'discard' THEN 'discarded' ELSE 'cancelled' END,
            finished_at = CASE WHEN c.outcome = 'retry' THEN j.finished_at ELSE c.finished END,
            run_at = CASE WHEN c.outcome = 'retry' THEN c.run_at ELSE j.run_at END,
            output = CASE WHEN c.outcome = 'succeeded' THEN c.output ELSE j.output END,
            last_error = CASE WHEN c.outcome = 'succeeded' THEN j.last_error ELSE c.error END,
            lease_expires_at = NULL
        FROM unnest(p_job, p_token, p_attempt, p_worker, p_node, p_started, p_finished,
                    p_outcome, p_error, p_run_at, p_output)
             WITH ORDINALITY AS c(job, token, attempt, worker, node, started, finished, outcome,
                                  error, run_at, output, ord)
        WHERE j.id = c.job AND j.lease_token = c.token AND j.state = 'running'
        RETURNING c.ord, c.job AS id, c.attempt, c.worker, c.node, c.started, c.finished, c.outcome,
                  c.error, c.run_at, j.queue, j.has_children
    ), exe AS (
        -- The attempt row of (job, attempt), found by job_attempts_job.
        UPDATE job_attempts a SET started_at = u.started, finished_at = u.finished,
            finished_seq = nextval('lifecycle_events_seq_seq'),
            outcome = CASE u.outcome WHEN 'retry' THEN 'failed' WHEN 'discard' THEN 'discarded'
                                     ELSE u.outcome END,
            error = u.error
        FROM (SELECT * FROM upd ORDER BY ord) AS u
        WHERE a.job = u.id AND a.attempt = u.attempt
    ), ev AS (
        INSERT INTO lifecycle_events (at, kind, job, attempt, worker, node, detail)
        SELECT at, kind, job, attempt, worker, node, detail FROM (
            SELECT u.ord, e.sub, u.finished AS at, e.kind, u.id AS job, u.attempt, u.worker, u.node, e.detail
            FROM upd u
            CROSS JOIN LATERAL (VALUES
                (0, 'job.failed', jsonb_build_object('error', u.error), u.outcome IN ('retry', 'discard')),
                (1, 'job.retry_scheduled', jsonb_build_object('run_at', u.run_at), u.outcome = 'retry'),
                (1, 'job.discarded', jsonb_build_object('reason', u.error), u.outcome = 'discard'),
                (0, 'job.cancelled', jsonb_build_object('reason', u.error), u.outcome = 'cancelled')
            ) AS e(sub, kind, detail, keep)
            WHERE u.outcome <> 'succeeded' AND e.keep
        ) evs ORDER BY ord, sub
    ), dlq AS (
        INSERT INTO dead_letter_queue (job, queue, reason, discarded_at)
        SELECT id, queue, coalesce(error, 'discarded'), finished FROM upd WHERE outcome = 'discard'
        ON CONFLICT (job) DO UPDATE SET queue = EXCLUDED.queue, reason = EXCLUDED.reason,
            discarded_at = EXCLUDED.discarded_at
    )
    SELECT coalesce(array_agg(ord), '{}'),
           coalesce(array_agg(id) FILTER (WHERE has_children AND outcome = 'succeeded'), '{}'),
           coalesce(array_agg(id) FILTER (WHERE has_children AND outcome IN ('discard', 'cancelled')), '{}')
    INTO v_applied, v_parents, v_failed
    FROM upd;
    -- (the children's release and the cascade are unchanged; the bench's jobs have none)
    IF cardinality(v_parents) > 0 OR cardinality(v_failed) > 0 THEN
        RAISE EXCEPTION 'the layout bench does not model dependencies';
    END IF;
    RETURN QUERY SELECT unnest(v_applied);
END
$$;
