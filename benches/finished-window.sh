#!/usr/bin/env bash
# What one counts round of the maintenance leader costs on Postgres for the last
# minute's finishes (src/metrics/finished_window.rs): the recount of the whole minute
# against the kept window's two reads (the slices settled since the last round, and the
# open tail), at RATE jobs/s over the last minute.
#   benches/finished-window.sh            (RATE=10000 REPEAT=5; BIN: the debug build)
# Every job goes through the rows versions of a drain (inserted available, updated to
# running, updated to succeeded), and the table is not vacuumed, as in a busy minute.
# Creates and drops the database jobmesh_fw on 127.0.0.1:5432 (user postgres, trust).
# Prints the execution time of each statement per repeat (EXPLAIN ANALYZE), in ms.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
# The workspace's target directory, wherever cargo's configuration puts it.
TARGET=$(cd "$ROOT" && cargo metadata --format-version 1 --no-deps |
  python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')
BIN=${BIN:-$TARGET/debug/jobmesh}
RATE=${RATE:-10000}
PG="-h 127.0.0.1 -U postgres"
URL=postgres://postgres@127.0.0.1:5432/jobmesh_fw
[ -x "$BIN" ] || { echo "benches/finished-window.sh: $BIN missing: run cargo build" >&2; exit 2; }
dropdb $PG --if-exists jobmesh_fw 2>/dev/null; createdb $PG jobmesh_fw
trap 'dropdb $PG --if-exists jobmesh_fw' EXIT
# `limits` opens the store, which migrates it.
JOBMESH__STORE__POSTGRES_URL=$URL "$BIN" --config "$ROOT/config/postgres.toml" limits >/dev/null
now=$(( $(date +%s) * 1000 ))
jobs=$(( RATE * 60 ))
psql $PG -q jobmesh_fw <<SQL
INSERT INTO jobs (queue, kind, payload, state, max_attempts, run_at, created_at)
  SELECT 'q' || (g % 4), 'noop', '{}', 'available', 25, $now - 61000, $now - 61000
  FROM generate_series(1, $jobs) g;
UPDATE jobs SET state = 'running', attempt = 1, lease_token = 1, lease_owner = 'w',
  lease_node = 'n', lease_expires_at = $now + 60000;
UPDATE jobs SET state = 'succeeded', lease_owner = NULL, lease_node = NULL,
  lease_expires_at = NULL, finished_at = $now - 60000 + (id * 60000 / $jobs);
ANALYZE jobs;
SQL
read_ms() { # from, to, slice: the store's statement (src/store/postgres/history.rs)
  psql $PG -tA jobmesh_fw -c "EXPLAIN (ANALYZE, FORMAT JSON)
    SELECT (finished_at - $1) / $3, queue, state, count(*) FROM jobs
    WHERE state IN ('succeeded', 'discarded', 'cancelled') AND finished_at >= $1 AND finished_at < $2
    GROUP BY 1, 2, 3" | python3 -c 'import json,sys; print(round(json.load(sys.stdin)[0]["Execution Time"], 1))'
}
max=9223372036854775807
echo "rate=$RATE jobs/s, $jobs finishes in the last minute"
echo "repeat recount_ms settle_ms tail_ms"
for r in $(seq 1 "${REPEAT:-5}"); do
  recount=$(read_ms $(( now - 60000 )) $max $max)
  # A round 5 s after the last: the slices that ended 5-10 s ago settle, 5 s of tail.
  settle=$(read_ms $(( now - 10000 )) $(( now - 5000 )) 1000)
  tail=$(read_ms $(( now - 5000 )) $max $max)
  echo "$r $recount $settle $tail"
done
