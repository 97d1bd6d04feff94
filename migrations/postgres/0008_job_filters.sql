-- Listings and bulk actions by filter page through jobs by id (keyset, never OFFSET).
-- A filter on a state, a queue or a kind reads the jobs it names in id order from one
-- of these instead of walking the whole table by primary key. Time ranges and payload
-- matches are checked on the rows these or the primary key yield: a GIN index on
-- `payload` would serve payload matches (`payload @> ...`, as the store writes them)
-- but costs every enqueue, so it is left to operators who search payloads often:
--   CREATE INDEX CONCURRENTLY jobs_payload ON jobs USING gin (payload jsonb_path_ops);
CREATE INDEX jobs_state_id ON jobs (state, id);
CREATE INDEX jobs_queue_id ON jobs (queue, id);
CREATE INDEX jobs_kind_id ON jobs (kind, id);
