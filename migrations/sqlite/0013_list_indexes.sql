-- A filter with a finished range lists by (finished_at, id) (see src/store/filter.rs,
-- `SortKey`), so a page of a narrow window is the next `limit` entries of this index
-- past the cursor. Partial: only finished jobs (the listing repeats the predicate,
-- which SQLite needs to use a partial index).
CREATE INDEX jobs_finished_id ON jobs (finished_at, id) WHERE finished_at IS NOT NULL;
