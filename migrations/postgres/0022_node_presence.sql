-- Node presence (see store::presence): one row per node, upserted when it starts and
-- every refresh interval after, deleted when it stops gracefully. It says which queues
-- the node serves, its slots (workers) and what each slot runs, and when the node last
-- wrote it: a row not refreshed within three of its own intervals is a lost node (killed,
-- or cut off from the store), and a queue whose servers' rows all lapsed has no live
-- server. One small row per node per refresh (seconds apart), so the write load is a few
-- updates a second at most even for a large cluster.
CREATE TABLE node_presence (
    node       text   PRIMARY KEY,
    queues     jsonb  NOT NULL,  -- array of queue names
    slots      integer NOT NULL,
    working    jsonb  NOT NULL,  -- array, per slot: {"job", "at"} or null
    started_at bigint NOT NULL,
    seen_at    bigint NOT NULL,
    every_ms   bigint NOT NULL
);
