-- The audit log of operator actions (see store::audit): who (a token by id and name, a
-- CLI user@host, or the node), what, on which jobs, queues or tokens (JSON), when, from
-- which address, and the result (ok, refused, failed) with its detail (JSON). Written in
-- the transaction of the change it records. AUTOINCREMENT: an id is never reused after
-- a purge, so a listing's cursor never meets a newer row under an old id.
CREATE TABLE audit_log (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    at          INTEGER NOT NULL,
    actor_kind  TEXT    NOT NULL,
    actor_token INTEGER,
    actor_name  TEXT    NOT NULL,
    address     TEXT,
    action      TEXT    NOT NULL,
    target      TEXT    NOT NULL,
    result      TEXT    NOT NULL,
    detail      TEXT
);
-- Listing newest first reads the primary key backwards; these serve the filters
-- (newest first within an action or an actor) and the purge by time.
CREATE INDEX audit_log_action ON audit_log (action, id);
CREATE INDEX audit_log_actor ON audit_log (actor_name, id);
CREATE INDEX audit_log_at ON audit_log (at);
