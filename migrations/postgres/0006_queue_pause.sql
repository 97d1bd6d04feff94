-- Paused queues: claims skip a queue while it has a row here (see store::queues).
CREATE TABLE paused_queues (
    queue     text   PRIMARY KEY,
    paused_at bigint NOT NULL
);
