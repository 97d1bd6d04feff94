-- The attempt row, with a B-tree on finished_seq (partial: only finished attempts) so the
-- event stream reads finished facts in sequence order. The completion's update changes
-- an indexed column, so it is not HOT: a new entry in every index of the table.
-- claim: attempts
\ir ../attempts_table.sql
\ir ../candidate_complete.sql
CREATE INDEX job_attempts_finished_seq ON job_attempts (finished_seq) WHERE finished_seq IS NOT NULL;
