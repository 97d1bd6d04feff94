#!/bin/sh
# The row layouts and index sets of issue 20 as SQL, without a node: each run is a fresh
# database with migrations/postgres applied and one variant (variants/*.sql) on top, then
# pgbench drives batches of jobs through enqueue, claim and completion (enqueue.sql, the
# variant's claim, complete.sql) with CLIENTS clients (a queue and a worker each), and
# the WAL of the run is read back with pg_walinspect. One line per run:
#   variant round jobs jobs/s wal_records/job wal_bytes/job fpi_bytes/job load
# Variants alternate within each round. Usage, from the repository root:
#   benches/layout/run.sh URL ROUNDS VARIANT...   e.g.
#   benches/layout/run.sh postgres://postgres@127.0.0.1:55433 3 today no_jobs_finished
# URL names a server (no database): its database layout_bench is dropped and made again.
# Environment: BATCH (jobs per batch, 500), TXNS (batches per client, 40), CLIENTS (2),
# BREAKDOWN=1 (also the records of each run by relation and record type).
set -e
URL=$1; ROUNDS=$2; shift 2
BATCH=${BATCH:-500}; TXNS=${TXNS:-40}; CLIENTS=${CLIENTS:-2}
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
PSQL="psql -X -q -v ON_ERROR_STOP=1"
DB=layout_bench
SCRIPT=$(mktemp)
trap 'rm -f "$SCRIPT"' EXIT

for round in $(seq 1 "$ROUNDS"); do
  for variant in "$@"; do
    file="$HERE/variants/$variant.sql"
    claim=$(sed -n 's/^-- claim: //p' "$file")
    cat "$HERE/enqueue.sql" "$HERE/claim_$claim.sql" "$HERE/complete.sql" > "$SCRIPT"
    $PSQL -d "$URL/postgres" -c "SET client_min_messages = warning" -c "DROP DATABASE IF EXISTS $DB" -c "CREATE DATABASE $DB"
    for m in "$ROOT"/migrations/postgres/*.sql; do $PSQL -d "$URL/$DB" -f "$m"; done
    (cd "$HERE/variants" && $PSQL -d "$URL/$DB" -f "$file")
    $PSQL -d "$URL/$DB" -c "CREATE EXTENSION pg_walinspect" -c "VACUUM ANALYZE" -c "CHECKPOINT"
    start=$($PSQL -At -d "$URL/$DB" -c "SELECT pg_current_wal_insert_lsn()")
    out=$(pgbench -n -c "$CLIENTS" -j "$CLIENTS" -t "$TXNS" -D batch="$BATCH" -f "$SCRIPT" "$URL/$DB")
    end=$($PSQL -At -d "$URL/$DB" -c "SELECT pg_current_wal_flush_lsn()")
    tps=$(echo "$out" | sed -n 's/^tps = \([0-9.]*\) (without.*/\1/p')
    jobs=$($PSQL -At -d "$URL/$DB" -c "SELECT count(*) FROM jobs WHERE state = 'succeeded'")
    expected=$((BATCH * TXNS * CLIENTS))
    [ "$jobs" = "$expected" ] || { echo "$variant: $jobs jobs succeeded, expected $expected" >&2; exit 1; }
    wal=$($PSQL -At -F' ' -d "$URL/$DB" -c "
      SELECT round(sum(count)::numeric / $jobs, 2), round(sum(record_size)::numeric / $jobs),
             round(sum(fpi_size)::numeric / $jobs)
      FROM pg_get_wal_stats('$start', '$end')")
    echo "$variant $round $jobs $(echo "$tps * $BATCH" | bc | cut -d. -f1) $wal $(cut -d' ' -f1 /proc/loadavg)"
    if [ "${BREAKDOWN:-0}" = 1 ]; then
      $PSQL -d "$URL/$DB" -c "
        SELECT coalesce(c.relname, '-') AS relation, w.resource_manager, w.record_type,
               round(count(*)::numeric / $jobs, 2) AS per_job,
               round(sum(w.record_length)::numeric / $jobs) AS bytes_per_job
        FROM pg_get_wal_records_info('$start', '$end') AS w
        LEFT JOIN pg_class c
          ON c.relfilenode = (regexp_match(w.block_ref, 'rel \d+/\d+/(\d+)'))[1]::oid
        GROUP BY 1, 2, 3 HAVING count(*) >= $jobs / 100 ORDER BY 1, 2, 3"
    fi
  done
done
$PSQL -d "$URL/postgres" -c "DROP DATABASE IF EXISTS $DB"
