#!/usr/bin/env bash
# Side-by-side benchmark against the peers in ../shared/peers, in one run: each round
# runs jobmesh and the peer back to back with the same job count and concurrency, on
# fresh databases (nothing left by an earlier round slows the next), and prints drain
# throughput, pickup p50/p99 and the same-round ratio.
#
#   benches/peers.sh [rounds] [jobs]
#
#   Postgres path: jobmesh (config/postgres.toml) vs graphile-worker, concurrency 10.
#   Redis path:    jobmesh (config/production.toml) vs BullMQ, concurrency 50.
#
# Needs: a release build (`cargo build --release`), PostgreSQL on 127.0.0.1:5432 (user
# postgres, trust), Redis on 127.0.0.1:6379, Node.js and npm. The databases it creates and
# drops are `jobmesh_bench` and `graphile_bench`; Redis keys under `jobmesh-bench:*` and
# BullMQ's own `bull:bench*` queues, which it removes.
set -euo pipefail

ROUNDS=${1:-3}
JOBS=${2:-20000}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
PEERS=${PEERS:-$ROOT/../shared/peers}
BIN=$ROOT/target/release/jobmesh
PG="-h 127.0.0.1 -U postgres"
PGURL=postgres://postgres@127.0.0.1:5432

need() { command -v "$1" >/dev/null || { echo "benches/peers.sh: $1 not found: $2" >&2; exit 2; }; }
need psql "install PostgreSQL (apt-get install postgresql)"
need redis-cli "install Redis (apt-get install redis-server)"
need node "install Node.js 20"
need python3 "install Python 3"
[ -x "$BIN" ] || { echo "benches/peers.sh: $BIN missing: run cargo build --release" >&2; exit 2; }
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

printf '%-8s %-5s %-22s %10s %8s %8s %7s\n' path round system "drain/s" "p50 ms" "p99 ms" ratio
for r in $(seq 1 "$ROUNDS"); do
  for path in postgres redis; do
    if [ "$path" = postgres ]; then
      read -r od op50 op99 < <(ours_pg); read -r pd pp50 pp99 < <(peer_pg); peer=graphile-worker
    else
      read -r od op50 op99 < <(ours_redis); read -r pd pp50 pp99 < <(peer_redis); peer=bullmq
    fi
    ratio=$(python3 -c "print(f'{$od/$pd:.2f}x')")
    printf '%-8s %-5s %-22s %10s %8s %8s %7s\n' "$path" "$r" jobmesh "$od" "$op50" "$op99" "$ratio"
    printf '%-8s %-5s %-22s %10s %8s %8s %7s\n' "$path" "$r" "$peer" "$pd" "$pp50" "$pp99" ""
  done
done
dropdb $PG --if-exists jobmesh_bench 2>/dev/null; dropdb $PG --if-exists graphile_bench 2>/dev/null
