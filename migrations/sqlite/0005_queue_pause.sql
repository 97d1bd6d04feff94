-- Paused queues: claims skip a queue while it has a row here (see store::queues).
CREATE TABLE paused_queues (
    queue     TEXT    PRIMARY KEY,
    paused_at INTEGER NOT NULL
) WITHOUT ROWID;
