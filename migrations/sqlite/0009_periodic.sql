-- Periodic schedules: per schedule name, the high-water mark of handled ticks. Every
-- tick at or before `last_tick` was enqueued or passed over by the missed-tick policy;
-- a tick's enqueue advances the mark with a compare-and-set in the transaction of the
-- job's insert, so one tick yields one job however many nodes race, restart or fail
-- over, and even after that job finished. One row per schedule: nothing to purge.
CREATE TABLE periodic_ticks (
    schedule   TEXT    PRIMARY KEY,
    last_tick  INTEGER NOT NULL,   -- epoch ms; set to the registration time at first sight
    last_job   INTEGER,            -- the job of `last_tick`, if one was enqueued
    updated_at INTEGER NOT NULL
) WITHOUT ROWID;
