#!/bin/sh
# The plans of explain.sql at a million jobs (benches/list_filters/fill.sql, plus 100
# jobs of a rare kind), once per index set, in one database changed in place:
#   benches/layout/explain.sh URL > plans.txt      (URL names a server, no database)
# Sets: today (as shipped), no_jobs_finished, then today's without the running jobs in
# jobs_state_id, and today's without jobs_kind_id.
set -e
URL=$1
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
PSQL="psql -X -q -v ON_ERROR_STOP=1"
DB=layout_million
$PSQL -d "$URL/postgres" -c "SET client_min_messages = warning" -c "DROP DATABASE IF EXISTS $DB" -c "CREATE DATABASE $DB"
for m in "$ROOT"/migrations/postgres/*.sql; do $PSQL -d "$URL/$DB" -f "$m"; done
$PSQL -d "$URL/$DB" -f "$ROOT/benches/list_filters/fill.sql"
$PSQL -d "$URL/$DB" -c "UPDATE jobs SET kind = 'krare' WHERE id % 10000 = 7" -c "VACUUM ANALYZE jobs"
plans() { echo "######## $1"; $PSQL -d "$URL/$DB" -f "$HERE/explain.sql"; }
plans today
$PSQL -d "$URL/$DB" -f "$HERE/variants/no_jobs_finished.sql" -c "ANALYZE jobs"
plans no_jobs_finished
$PSQL -d "$URL/$DB" -c "CREATE INDEX jobs_finished ON jobs (finished_at)
    WHERE state IN ('succeeded', 'discarded', 'cancelled')" \
  -f "$HERE/variants/state_not_running.sql" -c "ANALYZE jobs"
plans state_not_running
$PSQL -d "$URL/$DB" -c "DROP INDEX jobs_state_id" -c "CREATE INDEX jobs_state_id ON jobs (state, id)" \
  -f "$HERE/variants/no_kind_id.sql" -c "ANALYZE jobs"
plans no_kind_id
