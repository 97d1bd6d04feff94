-- Cluster-wide limits on claims (see jobmesh::limits): one row per queue or kind limit,
-- written at node start from [[limit]]; every claim reads them in its statement.
CREATE TABLE job_limits (
    name        text    PRIMARY KEY,           -- queue:NAME or kind:NAME
    queue       text    UNIQUE,                -- exactly one of queue and kind is set
    kind        text    UNIQUE,
    max_running integer,
    rate_count  integer,
    rate_ms     bigint,
    burst       integer,
    limit_by    text,                          -- the path as written ($.customer_id)
    path        text[],                        -- the same as #>> reads it
    set_at      bigint  NOT NULL,
    CHECK ((queue IS NULL) <> (kind IS NULL))
);

-- Token buckets of rate limits, per limit and partition key; a missing row is a full
-- bucket. Written by the claim that spends the tokens.
CREATE TABLE limit_buckets (
    lim         text             NOT NULL,
    key         text             NOT NULL,
    tokens      double precision NOT NULL,
    refilled_at bigint           NOT NULL,
    PRIMARY KEY (lim, key)
);
