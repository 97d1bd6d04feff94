-- Running jobs under control: the progress a running attempt last reported (kept after
-- the attempt ends, so `jobs show` says how far a failed one got), and how many times a
-- handler snoozed the job (a snooze gives its attempt back, so `attempt` does not count
-- them; `workers.max_snoozes` bounds this). Nullable columns and a constant default:
-- no table rewrite.
ALTER TABLE jobs ADD COLUMN progress double precision;  -- 0.0..=1.0
ALTER TABLE jobs ADD COLUMN progress_message text;      -- cleaned and cut to 200 characters
ALTER TABLE jobs ADD COLUMN progress_at bigint;         -- when it was reported (ms)
ALTER TABLE jobs ADD COLUMN snoozes integer NOT NULL DEFAULT 0;
