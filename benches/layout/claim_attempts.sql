-- The candidate's claim: the same pick and update, and instead of a job.claimed event an
-- attempt row whose key is the claimed fact's place in the event sequence.
WITH t AS (SELECT (extract(epoch FROM clock_timestamp()) * 1000)::bigint AS ms),
picked AS (
    SELECT id AS pick FROM jobs
    WHERE state = 'available' AND queue = 'q' || :client_id
      AND NOT EXISTS (SELECT 1 FROM paused_queues WHERE queue = 'q' || :client_id)
      AND NOT EXISTS (SELECT 1 FROM job_limits l WHERE l.queue = 'q' || :client_id OR l.kind IS NOT NULL)
    ORDER BY priority DESC, run_at, id
    LIMIT :batch
    FOR UPDATE SKIP LOCKED
), claimed AS (
    UPDATE jobs SET state = 'running', attempt = attempt + 1,
        lease_token = greatest(lease_token + 1, (SELECT jm_claim_base())),
        lease_owner = 'w' || :client_id, lease_node = 'bench',
        lease_expires_at = (SELECT ms FROM t) + 60000
    FROM picked WHERE id = picked.pick
    RETURNING id, attempt
), att AS (
    INSERT INTO job_attempts (job, attempt, worker, node, claimed_at)
    SELECT id, attempt, 'w' || :client_id, 'bench', (SELECT ms FROM t) FROM claimed ORDER BY id
)
SELECT count(*) FROM claimed;
