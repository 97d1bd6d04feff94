-- Running jobs under control: the progress a running attempt last reported (kept after
-- the attempt ends, so `jobs show` says how far a failed one got), and how many times a
-- handler snoozed the job (a snooze gives its attempt back, so `attempt` does not count
-- them; `workers.max_snoozes` bounds this).
ALTER TABLE jobs ADD COLUMN progress REAL;              -- 0.0..=1.0
ALTER TABLE jobs ADD COLUMN progress_message TEXT;      -- cleaned and cut to 200 characters
ALTER TABLE jobs ADD COLUMN progress_at INTEGER;        -- when it was reported (ms)
ALTER TABLE jobs ADD COLUMN snoozes INTEGER NOT NULL DEFAULT 0;
