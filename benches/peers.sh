#!/usr/bin/env bash
# Side-by-side benchmark against the peers in ../shared/peers, in one run: each round
# runs jobmesh and the peer back to back with the same job count and concurrency, on
# fresh databases (nothing left by an earlier round slows the next), and prints drain
# throughput, pickup p50/p99 and the same-round ratio.
#
#   benches/peers.sh [rounds] [jobs]          (PATHS="postgres sqlite" picks paths)
#
#   Postgres path: jobmesh (config/postgres.toml) vs graphile-worker and apalis
#                  (apalis-postgres), concurrency 10.
#   Redis path:    jobmesh (config/production.toml) vs BullMQ, concurrency 50.
#   SQLite path:   jobmesh (`bench --scratch`, a fresh SQLite file) vs apalis
#                  (apalis-sqlite on a fresh file), concurrency 10.
#
# Needs: a release build (`cargo build --release`), the apalis peer built in release
# (`cd benches/apalis && cargo build --release`, its own project and target directory),
# PostgreSQL on 127.0.0.1:5432 (user postgres, trust), Redis on 127.0.0.1:6379, Node.js
# and npm. The databases it creates and drops are `jobmesh_bench`, `graphile_bench` and
# `apalis_bench`; Redis keys under `jobmesh-bench:*` and BullMQ's own `bull:bench*`
# queues, which it removes; SQLite files in a temporary directory it removes.
set -euo pipefail

ROUNDS=${1:-3}
JOBS=${2:-20000}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
PEERS=${PEERS:-$ROOT/../shared/peers}
BIN=${BIN:-$ROOT/target/release/jobmesh}
APALIS=${APALIS:-$ROOT/benches/apalis/target/release/apalis-peer}
PATHS=${PATHS:-postgres redis sqlite}
PG="-h 127.0.0.1 -U postgres"
PGURL=postgres://postgres@127.0.0.1:5432

need() { command -v "$1" >/dev/null || { echo "benches/peers.sh: $1 not found: $2" >&2; exit 2; }; }
need psql "install PostgreSQL (apt-get install postgresql)"
need redis-cli "install Redis (apt-get install redis-server)"
need node "install Node.js 20"
need python3 "install Python 3"
[ -x "$BIN" ] || { echo "benches/peers.sh: $BIN missing: run cargo build --release" >&2; exit 2; }
[ -x "$APALIS" ] || { echo "benches/peers.sh: $APALIS missing: cd benches/apalis && cargo build --release" >&2; exit 2; }
[ -d "$PEERS" ] || { echo "benches/peers.sh: peers not found at $PEERS (set PEERS=)" >&2; exit 2; }
[ -d "$PEERS/node_modules" ] || (cd "$PEERS" && npm install --no-audit --no-fund >/dev/null)

fresh_db() { dropdb $PG --if-exists "$1" 2>/dev/null; createdb $PG "$1"; }
clear_redis() { redis-cli --scan --pattern 'jobmesh-bench:*' | xargs -r -n 500 redis-cli del >/dev/null; }
field() { python3 -c 'import json,sys; d=json.loads(sys.stdin.read().strip().splitlines()[-1]); print(d["drain_per_s"], d["pickup_ms"]["p50"], d["pickup_ms"]["p99"])'; }

ours_pg() {
  fresh_db jobmesh_bench
  JOBMESH__STORE__POSTGRES_URL=$PGURL/jobmesh_bench \
    "$BIN" --config "$ROOT/config/postgres.toml" bench --jobs "$JOBS" --concurrency 10 2>/dev/null | field
}
peer_pg() {
  fresh_db graphile_bench
  (cd "$PEERS" && node graphile-bench-lq.mjs "$JOBS" 10 $PGURL/graphile_bench 2>/dev/null) | field
}
ours_redis() {
  fresh_db jobmesh_bench
  clear_redis
  JOBMESH__STORE__POSTGRES_URL=$PGURL/jobmesh_bench JOBMESH__STORE__REDIS_PREFIX=jobmesh-bench \
    "$BIN" --config "$ROOT/config/production.toml" bench --jobs "$JOBS" --concurrency 50 2>/dev/null | field
  clear_redis
}
peer_redis() { (cd "$PEERS" && node bullmq-bench.mjs "$JOBS" 50 2>/dev/null) | field; }
apalis_pg() { fresh_db apalis_bench; "$APALIS" postgres "$JOBS" 10 $PGURL/apalis_bench 2>/dev/null | field; }
ours_sqlite() { "$BIN" bench --scratch --jobs "$JOBS" --concurrency 10 2>/dev/null | field; }
apalis_sqlite() { "$APALIS" sqlite "$JOBS" 10 "$SCRATCH/apalis-$RANDOM.db" 2>/dev/null | field; }
SCRATCH=$(mktemp -d); trap 'rm -rf "$SCRATCH"' EXIT

# One row per system; a peer's row carries jobmesh's drain over the peer's, same round.
row() { printf '%-8s %-5s %-22s %10s %8s %8s %7s\n' "$@"; }
vs() {
  local name=$1 pd pp50 pp99; read -r pd pp50 pp99 < <("$2")
  row "$path" "$r" "$name" "$pd" "$pp50" "$pp99" "$(python3 -c "print(f'{$od/$pd:.2f}x')")"
}
row path round system "drain/s" "p50 ms" "p99 ms" ratio
for r in $(seq 1 "$ROUNDS"); do
  for path in $PATHS; do
    case "$path" in
      postgres) read -r od op50 op99 < <(ours_pg) ;;
      redis) read -r od op50 op99 < <(ours_redis) ;;
      sqlite) read -r od op50 op99 < <(ours_sqlite) ;;
      *) echo "benches/peers.sh: unknown path $path (postgres, redis, sqlite)" >&2; exit 2 ;;
    esac
    row "$path" "$r" jobmesh "$od" "$op50" "$op99" ""
    case "$path" in
      postgres) vs graphile-worker peer_pg; vs apalis apalis_pg ;;
      redis) vs bullmq peer_redis ;;
      sqlite) vs apalis apalis_sqlite ;;
    esac
  done
done
for db in jobmesh_bench graphile_bench apalis_bench; do dropdb $PG --if-exists $db 2>/dev/null; done
