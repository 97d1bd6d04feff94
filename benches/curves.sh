#!/usr/bin/env bash
# Cost curves: how drain rate and pickup latency change with the work around them.
# Each point is one `jobmesh bench` run on a fresh store, appended as a JSON line to
# benches/curves/DIMENSION.jsonl; `jobmesh plot` draws benches/curves/DIMENSION.svg.
#
#   benches/curves.sh [dimension...]      (default: backlog nodes queues)
#
#   backlog  drain and pickup with 0, 1M and 10M finished jobs in the tables, and with
#            1M available jobs waiting on another queue (Postgres).
#   nodes    1, 2 and 4 nodes on one Postgres, and on the production mode.
#   queues   1 and 200 queues, same total load (Postgres).
#   soak     SOAK_RATE jobs/s for SOAK_DURATION on Postgres, per-30s windows of pickup,
#            throughput and resident memory (run it by hand: 30 minutes by default),
#            into benches/curves/$SOAK_OUT.{jsonl,svg} (default soak).
#   mesh     the simulator (`cargo build --release -p jobmesh-sim`; SIM= names another
#            binary) at MESH_NODES members: crash to suspicion, to the first eviction
#            certificate and to the last live node applying it, and bytes per node per
#            second in steady state (run it by hand: about half an hour at 2000 nodes).
#
# Dead rows: a queue table lives on vacuum. A server with `autovacuum = off` (some CI
# images) measures a table that only grows; the script says so, and AUTOVACUUM=on turns
# it on for the run (ALTER SYSTEM, reset when the script exits).
#
# Sizes can be cut for a quick look: JOBS=20000 BACKLOGS="0 100000" benches/curves.sh backlog
# Needs: a release build (`cargo build --release`; BIN= names another binary), PostgreSQL on 127.0.0.1:$PGPORT (5432; user
# postgres, trust) and, for the production mode, Redis on 127.0.0.1:6379. Creates and drops
# the database `jobmesh_curves`, Redis keys under `jobmesh-curves:*`.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
BIN=${BIN:-$ROOT/target/release/jobmesh}
OUT=$ROOT/benches/curves
PGPORT=${PGPORT:-5432}
PG="-h 127.0.0.1 -p $PGPORT -U postgres"
PGURL=postgres://postgres@127.0.0.1:$PGPORT/jobmesh_curves
JOBS=${JOBS:-50000}
BACKLOGS=${BACKLOGS:-"0 1000000 10000000"}
SOAK_RATE=${SOAK_RATE:-2000}
SOAK_DURATION=${SOAK_DURATION:-30m}
SOAK_OUT=${SOAK_OUT:-soak}
[[ $SOAK_OUT =~ ^[A-Za-z0-9._-]+$ ]] ||
  { echo "benches/curves.sh: SOAK_OUT must be a file name under benches/curves (letters, digits, . _ -), not '$SOAK_OUT'" >&2; exit 2; }
SIM=${SIM:-$ROOT/target/release/jobmesh-sim}
MESH_NODES=${MESH_NODES:-10,20,50,100,200,500,1000,2000}

need() { command -v "$1" >/dev/null || { echo "benches/curves.sh: $1 not found: $2" >&2; exit 2; }; }
need psql "install PostgreSQL (apt-get install postgresql)"
need redis-cli "install Redis (apt-get install redis-server)"
[ -x "$BIN" ] || { echo "benches/curves.sh: $BIN missing: run cargo build --release" >&2; exit 2; }
mkdir -p "$OUT"

autovacuum_check() {
  local now
  now=$(psql $PG -tAc 'SHOW autovacuum')
  if [ "${AUTOVACUUM:-}" = on ] && [ "$now" = off ]; then
    psql $PG -qc 'ALTER SYSTEM SET autovacuum = on' -c 'SELECT pg_reload_conf()' >/dev/null
    trap "psql $PG -qc 'ALTER SYSTEM RESET autovacuum' -c 'SELECT pg_reload_conf()' >/dev/null" EXIT
    echo "benches/curves.sh: autovacuum turned on for this run (reset at exit)" >&2
  elif [ "$now" = off ]; then
    echo "benches/curves.sh: this server runs with autovacuum = off: dead rows are never" \
      "removed, so backlogs and soaks measure a table that only grows (AUTOVACUUM=on turns it on for the run)" >&2
  fi
}
autovacuum_check

fresh_db() { dropdb $PG --if-exists jobmesh_curves 2>/dev/null; createdb $PG jobmesh_curves; }
clear_redis() { redis-cli --scan --pattern 'jobmesh-curves:*' | xargs -r -n 500 redis-cli del >/dev/null; }
pg() { fresh_db; JOBMESH__STORE__POSTGRES_URL=$PGURL "$BIN" --config "$ROOT/config/postgres.toml" bench "$@"; }
prod() {
  fresh_db; clear_redis
  JOBMESH__STORE__POSTGRES_URL=$PGURL JOBMESH__STORE__REDIS_PREFIX=jobmesh-curves \
    "$BIN" --config "$ROOT/config/production.toml" bench "$@"
  clear_redis
}
plot() { "$BIN" plot "$OUT/$1.jsonl" --x "$2" --y "$3" --series system --title "$1" --out "$OUT/$1.svg"; }

backlog() {
  : > "$OUT/backlog.jsonl"
  for n in $BACKLOGS; do
    pg --jobs "$JOBS" --concurrency 10 --backlog-finished "$n" --out "$OUT/backlog.jsonl"
    "$BIN" bench --scratch --jobs "$JOBS" --backlog-finished "$n" --out "$OUT/backlog.jsonl"
  done
  pg --jobs "$JOBS" --concurrency 10 --backlog-available 1000000 --out "$OUT/backlog-available.jsonl"
  plot backlog backlog_finished drain_per_s,pickup_ms.p50,pickup_ms.p99
}

nodes() {
  : > "$OUT/nodes.jsonl"
  for n in 1 2 4; do
    pg --jobs "$JOBS" --concurrency 10 --nodes "$n" --out "$OUT/nodes.jsonl"
    prod --jobs "$JOBS" --concurrency 50 --nodes "$n" --out "$OUT/nodes.jsonl"
  done
  plot nodes nodes drain_per_s,pickup_ms.p99
}

queues() {
  : > "$OUT/queues.jsonl"
  for q in 1 200; do
    pg --jobs "$JOBS" --concurrency 10 --queues "$q" --out "$OUT/queues.jsonl"
  done
  plot queues queues drain_per_s,pickup_ms.p99
}

soak() {
  : > "$OUT/$SOAK_OUT.jsonl"
  pg --concurrency 10 --rate "$SOAK_RATE" --duration "$SOAK_DURATION" --window 30s --out "$OUT/$SOAK_OUT.jsonl"
  "$BIN" plot "$OUT/$SOAK_OUT.jsonl" --x 'windows[].t_s' \
    --y 'windows[].done_per_s,windows[].pickup_p99_ms,windows[].rss_mb' --title "$SOAK_OUT" --out "$OUT/$SOAK_OUT.svg"
}

mesh() {
  [ -x "$SIM" ] || { echo "benches/curves.sh: $SIM missing: run cargo build --release -p jobmesh-sim" >&2; exit 2; }
  # One process runs the sizes in order and appends each run's report as it ends, so a
  # sweep cut short keeps the sizes it finished.
  : > "$OUT/mesh.jsonl"
  "$SIM" --nodes "$MESH_NODES" --seed 7 --scenario crash --jsonl "$OUT/mesh.jsonl" | tee "$OUT/mesh.md"
  "$BIN" plot "$OUT/mesh.jsonl" --x config.nodes --series scenario --title mesh --out "$OUT/mesh.svg" \
    --y metrics.suspicion.p50_ms,metrics.detection.p50_ms,metrics.convergence.max_ms,metrics.gossip_bytes_per_node_s,metrics.bytes_per_node_s
}

for dim in "${@:-backlog nodes queues}"; do
  for d in $dim; do
    case "$d" in
      backlog|nodes|queues|soak|mesh) "$d" ;;
      *) echo "benches/curves.sh: unknown dimension $d (backlog, nodes, queues, soak, mesh)" >&2; exit 2 ;;
    esac
  done
done
