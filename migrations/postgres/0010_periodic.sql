-- Periodic schedules: per schedule name, the high-water mark of handled ticks. Every
-- tick at or before `last_tick` was enqueued or passed over by the missed-tick policy;
-- a tick's enqueue advances the mark with a compare-and-set (an upsert that updates
-- only to a later tick, and locks the row) in the transaction of the job's insert, so
-- one tick yields one job however many nodes race, restart or fail over, and even
-- after that job finished. One row per schedule: nothing to purge.
CREATE TABLE periodic_ticks (
    schedule   text   PRIMARY KEY,
    last_tick  bigint NOT NULL,   -- epoch ms; set to the registration time at first sight
    last_job   bigint,            -- the job of `last_tick`, if one was enqueued
    updated_at bigint NOT NULL
);
