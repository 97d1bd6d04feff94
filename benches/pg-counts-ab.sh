#!/usr/bin/env bash
# A/B of the Postgres count triggers (migration 0021): the same binary drains on a fresh
# database with the triggers, then with them dropped after migrating, ROUNDS times.
# Prints: round, variant, triggers present, drain/s, enqueue/s, pickup.
#   benches/pg-counts-ab.sh            (ROUNDS=5 JOBS=50000 BIN=target/release/jobmesh)
# Creates and drops the database jobmesh_ab on 127.0.0.1:5432 (user postgres, trust).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BIN=${BIN:-$ROOT/target/release/jobmesh}
PG="-h 127.0.0.1 -U postgres"
URL=postgres://postgres@127.0.0.1:5432/jobmesh_ab
[ -x "$BIN" ] || { echo "benches/pg-counts-ab.sh: $BIN missing: run cargo build --release" >&2; exit 2; }
for round in $(seq 1 "${ROUNDS:-5}"); do
  for variant in triggers none; do
    dropdb $PG --if-exists jobmesh_ab 2>/dev/null; createdb $PG jobmesh_ab
    # `limits` opens the store, which migrates it.
    JOBMESH__STORE__POSTGRES_URL=$URL "$BIN" --config "$ROOT/config/postgres.toml" limits >/dev/null
    if [ "$variant" = none ]; then
      psql $PG -q jobmesh_ab -c "DROP TRIGGER jobs_count_inserted ON jobs; DROP TRIGGER jobs_count_updated ON jobs; DROP TRIGGER jobs_count_deleted ON jobs; DROP TRIGGER jobs_count_truncated ON jobs;"
    fi
    n=$(psql $PG -tA jobmesh_ab -c "SELECT count(*) FROM pg_trigger WHERE tgname LIKE 'jobs_count_%'")
    JOBMESH__STORE__POSTGRES_URL=$URL "$BIN" --config "$ROOT/config/postgres.toml" \
      bench --jobs "${JOBS:-50000}" --concurrency 10 2>/dev/null | tail -1 |
      python3 -c 'import json,sys; d=json.load(sys.stdin); print(sys.argv[1], sys.argv[2], "triggers=" + sys.argv[3], round(d["drain_per_s"]), round(d["enqueue_per_s"]), d["pickup_ms"])' \
        "$round" "$variant" "$n"
  done
done
dropdb $PG --if-exists jobmesh_ab
