-- Not a design, a bound: the attempt row with no index on finished_seq (the event stream
-- could not read finished facts in order) and room on each page (fillfactor 50), so the
-- completion's update can be HOT. What the candidate could save at best.
-- claim: attempts
\ir ../attempts_table.sql
\ir ../candidate_complete.sql
ALTER TABLE job_attempts SET (fillfactor = 50);
