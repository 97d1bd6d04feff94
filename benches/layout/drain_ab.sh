#!/bin/sh
# The drain A/B of one index set through a real node: `jobmesh bench` on Postgres, a
# fresh database per run, "with" the schema as shipped and "without" after VARIANT's
# SQL (variants/VARIANT.sql, an index change), alternating; with each run's WAL per job
# from pg_walinspect (the bench's enqueue, claims, completions and pickup probes).
#   benches/layout/drain_ab.sh URL ROUNDS VARIANT [BENCH OPTIONS...]
# e.g. BIN=target/debug/jobmesh benches/layout/drain_ab.sh postgres://postgres@127.0.0.1:55433 3 \
#        no_jobs_finished --jobs 20000 --concurrency 10 --latency-samples 1
# Prints: variant round load wal_records/job wal_bytes/job and the bench's JSON line.
set -e
URL=$1; ROUNDS=$2; VARIANT=$3; shift 3
BIN=${BIN:-target/release/jobmesh}
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
PSQL="psql -X -q -v ON_ERROR_STOP=1"
DB=layout_drain
export JOBMESH__STORE__POSTGRES_URL="$URL/$DB"
for round in $(seq 1 "$ROUNDS"); do
  for side in with without; do
    $PSQL -d "$URL/postgres" -c "SET client_min_messages = warning" -c "DROP DATABASE IF EXISTS $DB" -c "CREATE DATABASE $DB"
    "$BIN" --config "$ROOT/config/postgres.toml" jobs stats > /dev/null
    [ $side = without ] && $PSQL -d "$URL/$DB" -f "$HERE/variants/$VARIANT.sql"
    $PSQL -d "$URL/$DB" -c "CREATE EXTENSION pg_walinspect" -c "CHECKPOINT"
    start=$($PSQL -At -d "$URL/$DB" -c "SELECT pg_current_wal_insert_lsn()")
    load=$(cut -d' ' -f1 /proc/loadavg)
    out=$("$BIN" --config "$ROOT/config/postgres.toml" bench "$@" 2>/dev/null | tail -1)
    wal=$($PSQL -At -F' ' -d "$URL/$DB" -c "
      SELECT round(sum(w.count)::numeric / j.n, 2), round(sum(w.record_size)::numeric / j.n)
      FROM pg_get_wal_stats('$start', pg_current_wal_flush_lsn()) AS w,
           (SELECT count(*) AS n FROM jobs) AS j GROUP BY j.n")
    echo "$VARIANT:$side $round $load $wal $out"
  done
done
$PSQL -d "$URL/postgres" -c "DROP DATABASE IF EXISTS $DB"
