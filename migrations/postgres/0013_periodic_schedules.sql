-- Periodic schedules kept in the store (see store::schedules): the set the `periodic`
-- leader enqueues ticks for, whichever node, API call or CLI command wrote it. origin
-- `config` rows are replaced by each node starting with a config; `api` rows are
-- created and deleted through the API, the CLI or the library. A tick's enqueue locks
-- its schedule's row (FOR SHARE) in its transaction, so a pause or delete (which
-- updates or deletes the row) is ordered with it: a paused (`paused_at` set) or
-- deleted schedule gets no job. Tick marks stay in periodic_ticks.
CREATE TABLE periodic_schedules (
    name         text     PRIMARY KEY,
    schedule     text     NOT NULL,
    timezone     text     NOT NULL,
    policy       text     NOT NULL CHECK (policy IN ('skip', 'catch_up')),
    backfill_ms  bigint,
    kind         text     NOT NULL,
    payload      jsonb    NOT NULL,
    queue        text     NOT NULL,
    priority     bigint   NOT NULL,
    max_attempts bigint   NOT NULL,
    timeout_ms   bigint,
    origin       text     NOT NULL CHECK (origin IN ('config', 'api')),
    paused_at    bigint,
    created_at   bigint   NOT NULL,
    updated_at   bigint   NOT NULL
);
