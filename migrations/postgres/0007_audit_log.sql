-- The audit log of operator actions (see store::audit): who (a token by id and name, a
-- CLI user@host, or the node), what, on which jobs, queues or tokens, when, from which
-- address, and the result (ok, refused, failed) with its detail. Written in the
-- transaction of the change it records. Identity ids are never reused.
CREATE TABLE audit_log (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at          bigint NOT NULL,
    actor_kind  text   NOT NULL CHECK (actor_kind IN ('token', 'cli', 'system')),
    actor_token bigint,
    actor_name  text   NOT NULL,
    address     text,
    action      text   NOT NULL,
    target      jsonb  NOT NULL,
    result      text   NOT NULL CHECK (result IN ('ok', 'refused', 'failed')),
    detail      jsonb
);
-- Listing newest first reads the primary key backwards; these serve the filters
-- (newest first within an action or an actor) and the purge by time.
CREATE INDEX audit_log_action ON audit_log (action, id);
CREATE INDEX audit_log_actor ON audit_log (actor_name, id);
CREATE INDEX audit_log_at ON audit_log (at);
