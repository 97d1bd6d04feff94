-- Listings that met issue 16's target only for state, queue, kind and priority filters
-- (p95 at 1M jobs: payload matches 223 ms, a one-hour finished range 90 ms):
--
-- A filter with a finished range lists by (finished_at, id) (see src/store/filter.rs,
-- `SortKey`), so a page of a narrow window is the next `limit` entries of this index
-- past the cursor, whatever the history around it. Partial: only finished jobs.
CREATE INDEX jobs_finished_id ON jobs (finished_at, id) WHERE finished_at IS NOT NULL;
-- A payload match (`payload @> $1`, written for a checked path and scalar) on a value
-- too rare for a walk of the listing's order to find a page is read from this index
-- (src/store/postgres/listing.rs). jsonb_path_ops: one hashed entry per leaf value and
-- path, smaller and faster for `@>` than the default jsonb_ops, which the store never
-- needs (no key-existence operators). IF NOT EXISTS: migration 0008 suggested that
-- operators create it by this name.
CREATE INDEX IF NOT EXISTS jobs_payload ON jobs USING gin (payload jsonb_path_ops);
