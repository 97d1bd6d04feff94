-- Periodic schedules kept in the store (see store::schedules): the set the `periodic`
-- leader enqueues ticks for, whichever node, API call or CLI command wrote it. origin
-- `config` rows are replaced by each node starting with a config; `api` rows are
-- created and deleted through the API, the CLI or the library. A tick's enqueue reads
-- its schedule's row in its transaction: a paused (`paused_at` set) or deleted
-- schedule gets no job. Tick marks stay in periodic_ticks.
CREATE TABLE periodic_schedules (
    name         TEXT    PRIMARY KEY,
    schedule     TEXT    NOT NULL,   -- cron expression or `every <duration>`
    timezone     TEXT    NOT NULL,   -- IANA name
    policy       TEXT    NOT NULL,   -- skip | catch_up
    backfill_ms  INTEGER,            -- catch_up only
    kind         TEXT    NOT NULL,
    payload      TEXT    NOT NULL,   -- JSON
    queue        TEXT    NOT NULL,
    priority     INTEGER NOT NULL,
    max_attempts INTEGER NOT NULL,
    timeout_ms   INTEGER,
    origin       TEXT    NOT NULL,   -- config | api
    paused_at    INTEGER,            -- epoch ms, while paused
    created_at   INTEGER NOT NULL,
    updated_at   INTEGER NOT NULL
) WITHOUT ROWID;
