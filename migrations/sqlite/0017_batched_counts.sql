-- The two transitions every job makes on the drain's hot path, a claim (available to
-- running) and a success (running to succeeded), are counted by the statements that
-- make them, once per batch and per queue and kind (`src/store/sqlite/counts.rs`),
-- instead of by this trigger once per job: its two row writes per job cost 11 % of the
-- embedded drain. Every other change of a job's state, queue or kind (failures,
-- retries, cancellation, rescue, promotion, redrive, bulk actions, and a statement
-- written by hand) is still counted here, row by row. So a new statement that claims
-- or marks jobs succeeded must count them the same way.
DROP TRIGGER job_counts_update;
CREATE TRIGGER job_counts_update AFTER UPDATE OF queue, kind, state ON jobs
    WHEN (OLD.state IS NOT NEW.state OR OLD.queue IS NOT NEW.queue OR OLD.kind IS NOT NEW.kind)
     AND NOT (OLD.queue IS NEW.queue AND OLD.kind IS NEW.kind
              AND ((OLD.state = 'available' AND NEW.state = 'running')
                OR (OLD.state = 'running' AND NEW.state = 'succeeded')))
BEGIN
    UPDATE job_counts SET n = n - 1
        WHERE queue = OLD.queue AND kind = OLD.kind AND state = OLD.state;
    INSERT INTO job_counts (queue, kind, state, n) VALUES (NEW.queue, NEW.kind, NEW.state, 1)
        ON CONFLICT (queue, kind, state) DO UPDATE SET n = n + 1;
END;
