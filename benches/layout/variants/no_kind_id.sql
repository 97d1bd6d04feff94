-- Without jobs_kind_id: three entries per job fewer; a listing by kind walks by another
-- index and filters.
-- claim: events
DROP INDEX jobs_kind_id;
