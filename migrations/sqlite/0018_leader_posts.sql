-- Posts (see store::capability::Leadership::post): what the holder of a leader lease
-- computed for every process to read, and what readers ask of it, one row per key,
-- replaced at each post. Today: the maintenance leader's queue counts, which every API
-- process serves instead of counting the jobs table itself, and the API's request for
-- fresher ones while dashboards are open.
CREATE TABLE leader_posts (
    key       TEXT    PRIMARY KEY,
    posted_at INTEGER NOT NULL,
    body      BLOB    NOT NULL
);
