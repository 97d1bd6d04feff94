-- jobmesh embedded store. Times are epoch milliseconds (UTC).

CREATE TABLE jobs (
    id                INTEGER PRIMARY KEY,
    queue             TEXT    NOT NULL,
    kind              TEXT    NOT NULL,
    payload           TEXT    NOT NULL,            -- JSON
    priority          INTEGER NOT NULL DEFAULT 0,  -- higher runs first
    state             TEXT    NOT NULL CHECK (state IN
                        ('waiting','scheduled','available','running','retryable','succeeded','discarded','cancelled')),
    attempt           INTEGER NOT NULL DEFAULT 0,
    max_attempts      INTEGER NOT NULL,
    run_at            INTEGER NOT NULL,
    created_at        INTEGER NOT NULL,
    finished_at       INTEGER,
    timeout_ms        INTEGER,
    unique_key        TEXT,
    lease_token       INTEGER NOT NULL DEFAULT 0,  -- fencing token, bumped by claim, rescue, cancel
    lease_owner       TEXT,
    lease_node        TEXT,
    lease_expires_at  INTEGER,
    last_error        TEXT,
    output            TEXT,                        -- JSON
    on_parent_failure TEXT    NOT NULL DEFAULT 'discard' CHECK (on_parent_failure IN ('discard','hold')),
    pending_parents   INTEGER NOT NULL DEFAULT 0   -- parents not yet succeeded
);

-- Claim: the next available jobs of a queue in dispatch order.
CREATE INDEX jobs_claim ON jobs (queue, priority DESC, run_at, id) WHERE state = 'available';
-- Promotion of delayed and retrying jobs.
CREATE INDEX jobs_due ON jobs (run_at) WHERE state IN ('scheduled', 'retryable');
-- Rescue of lapsed leases and revocation of a node's leases.
CREATE INDEX jobs_lease_expiry ON jobs (lease_expires_at) WHERE state = 'running';
CREATE INDEX jobs_lease_node ON jobs (lease_node) WHERE state = 'running';
-- At most one unfinished job per unique key (as River).
CREATE UNIQUE INDEX jobs_unique_key ON jobs (unique_key)
    WHERE unique_key IS NOT NULL AND state NOT IN ('succeeded', 'discarded', 'cancelled');

CREATE TABLE job_dependencies (
    parent INTEGER NOT NULL REFERENCES jobs (id),
    child  INTEGER NOT NULL REFERENCES jobs (id),
    PRIMARY KEY (parent, child)
) WITHOUT ROWID;
CREATE INDEX job_dependencies_child ON job_dependencies (child, parent);

-- One row per finished attempt.
CREATE TABLE job_executions (
    id          INTEGER PRIMARY KEY,
    job         INTEGER NOT NULL,
    attempt     INTEGER NOT NULL,
    worker      TEXT,
    node        TEXT,
    started_at  INTEGER,
    finished_at INTEGER NOT NULL,
    outcome     TEXT    NOT NULL,
    error       TEXT
);
CREATE INDEX job_executions_job ON job_executions (job);

CREATE TABLE dead_letter_queue (
    job          INTEGER PRIMARY KEY REFERENCES jobs (id),
    queue        TEXT    NOT NULL,
    reason       TEXT    NOT NULL,
    discarded_at INTEGER NOT NULL
);

CREATE TABLE lifecycle_events (
    seq     INTEGER PRIMARY KEY,
    at      INTEGER NOT NULL,
    kind    TEXT    NOT NULL,
    job     INTEGER,
    attempt INTEGER,
    worker  TEXT,
    node    TEXT,
    detail  TEXT                                   -- JSON
);
CREATE INDEX lifecycle_events_job ON lifecycle_events (job) WHERE job IS NOT NULL;
