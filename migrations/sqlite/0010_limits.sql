-- Cluster-wide limits on claims (see jobmesh::limits): one row per queue or kind limit,
-- written at node start from [[limit]]; every claim reads them in its transaction.
CREATE TABLE job_limits (
    name        TEXT    PRIMARY KEY,           -- queue:NAME or kind:NAME
    queue       TEXT,                          -- exactly one of queue and kind is set
    kind        TEXT,
    max_running INTEGER,
    rate_count  INTEGER,
    rate_ms     INTEGER,
    burst       INTEGER,
    limit_by    TEXT,                          -- the path as written ($.customer_id)
    path        TEXT,                          -- the same as json_extract reads it
    set_at      INTEGER NOT NULL
) WITHOUT ROWID;
CREATE UNIQUE INDEX job_limits_queue ON job_limits (queue) WHERE queue IS NOT NULL;
CREATE UNIQUE INDEX job_limits_kind ON job_limits (kind) WHERE kind IS NOT NULL;

-- Token buckets of rate limits, per limit and partition key; a missing row is a full
-- bucket. Written by the claim that spends the tokens.
CREATE TABLE limit_buckets (
    lim         TEXT    NOT NULL,
    key         TEXT    NOT NULL,
    tokens      REAL    NOT NULL,
    refilled_at INTEGER NOT NULL,
    PRIMARY KEY (lim, key)
) WITHOUT ROWID;
