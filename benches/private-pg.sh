#!/usr/bin/env bash
# A private PostgreSQL cluster for long benchmarks, from the system binaries, set up as a
# production server would be (the machine's own server may run CI settings such as
# autovacuum = off and the 128 MB default shared_buffers):
#   benches/private-pg.sh start [PORT] [DIR]   (default 5499, /tmp/jobmesh-private-pg)
#   benches/private-pg.sh stop  [PORT] [DIR]
# Then point the bench at it, e.g. PGPORT=5499 for benches/curves.sh.
# Settings: shared_buffers = 25 % of RAM (at most 8 GB), max_wal_size = 8 GB,
# autovacuum on (the default); trust authentication on 127.0.0.1 only.
set -euo pipefail
cmd=${1:?start or stop}
PORT=${2:-5499}
DIR=${3:-/tmp/jobmesh-private-pg}
BIN=${PGBIN:-$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)}
[ -x "$BIN/initdb" ] || { echo "benches/private-pg.sh: initdb not found: apt-get install postgresql" >&2; exit 2; }
as_pg() { if [ "$(id -u)" = 0 ]; then su postgres -s /bin/sh -c "$*"; else sh -c "$*"; fi; }
case "$cmd" in
  start)
    if [ ! -d "$DIR" ]; then
      mkdir -p "$DIR"; [ "$(id -u)" = 0 ] && chown postgres "$DIR"
      as_pg "'$BIN/initdb' -D '$DIR' -U postgres --auth=trust >/dev/null"
      mem_mb=$(awk '/MemTotal/ { print int($2 / 1024) }' /proc/meminfo)
      sb=$(( mem_mb / 4 )); [ "$sb" -gt 8192 ] && sb=8192
      cat >> "$DIR/postgresql.conf" <<CONF
listen_addresses = '127.0.0.1'
port = $PORT
unix_socket_directories = '$DIR'
shared_buffers = ${sb}MB
max_wal_size = 8GB
autovacuum = on
CONF
    fi
    as_pg "'$BIN/pg_ctl' -D '$DIR' -l '$DIR/log' -w start >/dev/null"
    echo "PostgreSQL on 127.0.0.1:$PORT (data $DIR)"
    ;;
  stop) as_pg "'$BIN/pg_ctl' -D '$DIR' -m fast -w stop >/dev/null" ;;
  *) echo "benches/private-pg.sh: start or stop" >&2; exit 2 ;;
esac
