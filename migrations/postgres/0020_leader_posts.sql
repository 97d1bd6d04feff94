-- Posts (see store::capability::Leadership::post): what the holder of a leader lease
-- computed for every process to read, and what readers ask of it, one row per key,
-- replaced at each post. Today: the maintenance leader's queue counts, which every API
-- process serves instead of counting the jobs table itself (a grouped count: 111-130 ms
-- at a million jobs), and the API's request for fresher ones while dashboards are open.
CREATE TABLE leader_posts (
    key       TEXT   PRIMARY KEY,
    posted_at BIGINT NOT NULL,
    body      BYTEA  NOT NULL
);
