-- jobs_state_id without the running versions (a job's middle one): one entry per job
-- fewer. A listing of running jobs then has no (state, id) index to walk.
-- claim: events
DROP INDEX jobs_state_id;
CREATE INDEX jobs_state_id ON jobs (state, id) WHERE state <> 'running';
