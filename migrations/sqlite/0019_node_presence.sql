-- Node presence (see store::presence): one row per node, upserted when it starts and
-- every refresh interval after, deleted when it stops gracefully. It says which queues
-- the node serves, its slots (workers) and what each slot runs, and when the node last
-- wrote it: a row not refreshed within three of its own intervals is a lost node (killed,
-- or cut off from the store), and a queue whose servers' rows all lapsed has no live
-- server. One small row per node, so every read is a scan of a few rows.
CREATE TABLE node_presence (
    node       TEXT    PRIMARY KEY,
    queues     TEXT    NOT NULL,  -- JSON array of queue names
    slots      INTEGER NOT NULL,
    working    TEXT    NOT NULL,  -- JSON array, per slot: {"job", "at"} or null
    started_at INTEGER NOT NULL,
    seen_at    INTEGER NOT NULL,
    every_ms   INTEGER NOT NULL
);
