-- The candidate's attempt row: inserted by the claim, updated by the completion. `seq`
-- is the claimed fact's place in the event sequence (drawn from lifecycle_events'
-- identity), `finished_seq` the finished fact's; the event stream reads lifecycle_events
-- by seq, claimed facts by the primary key and finished facts by the variant's index on
-- finished_seq, and merges the three in sequence order.
CREATE TABLE job_attempts (
    seq          bigint PRIMARY KEY DEFAULT nextval('lifecycle_events_seq_seq'),
    job          bigint NOT NULL,
    attempt      integer NOT NULL,
    worker       text,
    node         text,
    claimed_at   bigint NOT NULL,
    started_at   bigint,
    finished_at  bigint,
    finished_seq bigint,
    outcome      text,
    error        text
);
CREATE INDEX job_attempts_job ON job_attempts (job);
