-- Lease tokens that are never handed out twice, even when claims commit asynchronously
-- (`synchronous_commit = off`) and a crash loses the tail of those commits.
--
-- A claim used to set `lease_token = lease_token + 1`. If that claim is lost in a crash,
-- the row goes back to the old token, and the next claim of the job would hand the same
-- token to a second holder, whose completion the first holder's could then pass for.
-- Now every connection draws an incarnation of the store with a durable commit before
-- its first claim (and a connection never outlives a crash of the server: every backend
-- dies with it), and a claim sets the token to at least `incarnation << 24`. Every token
-- handed out before a crash is below `(highest incarnation drawn) + 1 << 24`, which the
-- first draw after the crash reaches, so a token issued after a crash is new. The low
-- 24 bits count the claims, rescues and cancels of one job within an incarnation (far
-- more than a job sees); tokens stay below 2^53 for 2^29 draws, so they stay exact as
-- JSON numbers and in Redis's Lua (the ready index compares them as epochs).
CREATE TABLE store_incarnation (
    only_row boolean PRIMARY KEY DEFAULT true CHECK (only_row),
    n        bigint  NOT NULL
);
INSERT INTO store_incarnation (only_row, n) VALUES (true, 0);

-- Draws this connection's incarnation with a durable commit (a database or session whose
-- `synchronous_commit` is `off` gets `on` for this one transaction), and keeps it, and
-- whether this connection's claims may commit asynchronously, in session settings.
-- Called alone, in a transaction of its own, before the connection's first claim.
CREATE FUNCTION jm_draw_incarnation(p_async_claims boolean) RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
    v_drawn bigint;
BEGIN
    IF current_setting('synchronous_commit') = 'off' THEN
        PERFORM set_config('synchronous_commit', 'on', true);
    END IF;
    UPDATE store_incarnation SET n = n + 1 RETURNING n INTO v_drawn;
    IF v_drawn >= (1::bigint << 38) THEN
        RAISE EXCEPTION 'store incarnations exhausted (%)', v_drawn;
    END IF;
    PERFORM set_config('jobmesh.incarnation', v_drawn::text, false);
    PERFORM set_config('jobmesh.async_claims', CASE WHEN p_async_claims THEN 'on' ELSE 'off' END,
                       false);
    RETURN v_drawn;
END $$;

-- The least token a claim on this connection hands out (`incarnation << 24`); evaluated
-- once per claim statement (as an uncorrelated subquery), it also lets the claim's
-- transaction commit asynchronously when the connection was drawn with async claims.
-- SQLSTATE JM001 when the connection has drawn no incarnation: the store draws one and
-- claims again.
CREATE FUNCTION jm_claim_base() RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
    v_incarnation text := current_setting('jobmesh.incarnation', true);
BEGIN
    IF coalesce(v_incarnation, '') = '' THEN
        RAISE EXCEPTION 'this connection has drawn no store incarnation' USING ERRCODE = 'JM001';
    END IF;
    IF current_setting('jobmesh.async_claims', true) = 'on' THEN
        PERFORM set_config('synchronous_commit', 'off', true);
    END IF;
    RETURN v_incarnation::bigint << 24;
END $$;
