-- The attempt row, with a BRIN index on finished_seq (cheap to keep at the table's end,
-- where ranges are unsummarised). On Postgres 15 an update of a BRIN-indexed column is
-- still not HOT (16 lifts that): every B-tree of the table gets an entry too.
-- claim: attempts
\ir ../attempts_table.sql
\ir ../candidate_complete.sql
CREATE INDEX job_attempts_finished_seq ON job_attempts USING brin (finished_seq);
