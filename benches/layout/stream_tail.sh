#!/bin/sh
# What the candidate's event stream pays to read its tail of finished facts: 100k jobs
# through one attempts variant (pgbench, as run.sh), then the newest 100 finished facts
# past a sequence number, in order, by the variant's index on finished_seq; for a BRIN
# index also after brin_summarize_new_values (autovacuum, off on this machine, would
# summarise ranges as it goes). Usage, from the repository root:
#   benches/layout/stream_tail.sh URL attempts_btree|attempts_brin
set -e
URL=$1; VARIANT=$2
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
PSQL="psql -X -q -v ON_ERROR_STOP=1"
DB=layout_stream
SCRIPT=$(mktemp)
trap 'rm -f "$SCRIPT"' EXIT
cat "$HERE/enqueue.sql" "$HERE/claim_attempts.sql" "$HERE/complete.sql" > "$SCRIPT"
$PSQL -d "$URL/postgres" -c "SET client_min_messages = warning" -c "DROP DATABASE IF EXISTS $DB" -c "CREATE DATABASE $DB"
for m in "$ROOT"/migrations/postgres/*.sql; do $PSQL -d "$URL/$DB" -f "$m"; done
(cd "$HERE/variants" && $PSQL -d "$URL/$DB" -f "$VARIANT.sql")
pgbench -n -c 2 -j 2 -t 100 -D batch=500 -f "$SCRIPT" "$URL/$DB" > /dev/null
tail_read() {
  $PSQL -d "$URL/$DB" -c "EXPLAIN (ANALYZE, BUFFERS, COSTS OFF)
    SELECT * FROM job_attempts WHERE finished_seq > $1 ORDER BY finished_seq LIMIT 100" |
    grep -E 'Scan|Buffers: shared|Execution'
}
from=$($PSQL -At -d "$URL/$DB" -c "ANALYZE job_attempts" -c "SELECT max(finished_seq) - 300 FROM job_attempts")
tail_read "$from"
if [ "$VARIANT" = attempts_brin ]; then
  $PSQL -d "$URL/$DB" -c "SELECT brin_summarize_new_values('job_attempts_finished_seq')" > /dev/null
  echo "after brin_summarize_new_values:"
  tail_read "$from"
fi
$PSQL -d "$URL/postgres" -c "DROP DATABASE $DB"
