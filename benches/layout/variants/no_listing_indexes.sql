-- Without any of the three listing indexes of 0008: the bound of what they cost.
-- claim: events
DROP INDEX jobs_state_id;
DROP INDEX jobs_queue_id;
DROP INDEX jobs_kind_id;
