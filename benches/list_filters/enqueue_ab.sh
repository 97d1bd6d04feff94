#!/bin/sh
# What the listing indexes cost enqueues and drains: `jobmesh bench` on Postgres, a
# fresh database per run, the same release binary; "with" has jobs_finished_id
# (migration 0014) and the opt-in GIN index jobs_payload, "without" neither. Three
# rounds, each with an empty payload (the bench's default) and one of five leaf values.
# Run from the repository root after `cargo build --release`.
set -e
BIN=${BIN:-target/release/jobmesh}
CFG=config/postgres.toml
DB=${DB:-jobmesh_enqueue_ab}
export JOBMESH__STORE__POSTGRES_URL=postgres://postgres@127.0.0.1:5432/$DB
for round in 1 2 3; do
  for payload in '{}' '{"customer": {"id": "c-1042", "tier": "gold"}, "order": 981234, "email": "someone@example.com", "amount": 129.5}'; do
    for variant in with without; do
      dropdb -h 127.0.0.1 -U postgres --if-exists "$DB"
      createdb -h 127.0.0.1 -U postgres "$DB"
      "$BIN" --config $CFG jobs stats > /dev/null
      if [ $variant = with ]; then
        psql -h 127.0.0.1 -U postgres -d "$DB" -q \
          -c "CREATE INDEX IF NOT EXISTS jobs_payload ON jobs USING gin (payload jsonb_path_ops)"
      else
        psql -h 127.0.0.1 -U postgres -d "$DB" -q \
          -c "DROP INDEX IF EXISTS jobs_payload" -c "DROP INDEX jobs_finished_id"
      fi
      out=$("$BIN" --config $CFG bench --jobs 50000 --concurrency 10 --latency-samples 50 --payload "$payload" 2>/dev/null | tail -1)
      echo "round=$round indexes=$variant payload_bytes=${#payload} load=$(cut -d' ' -f1 /proc/loadavg) $out"
    done
  done
done
dropdb -h 127.0.0.1 -U postgres --if-exists "$DB"
