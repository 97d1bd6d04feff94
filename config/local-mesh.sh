#!/usr/bin/env bash
# Starts N jobmesh nodes (default 5, f = 1) on loopback sharing one SQLite file, each
# with its own key and config under DIR (default ./mesh-demo). Stop them with
#   pkill -f 'jobmesh --config DIR/'
# Usage: config/local-mesh.sh [N] [DIR] [BASE_PORT]
set -euo pipefail
n=${1:-5}
dir=$(realpath -m "${2:-mesh-demo}")
port=${3:-4101}
bin=${JOBMESH_BIN:-target/release/jobmesh}
[ -x "$bin" ] || cargo build --release -p jobmesh-cli
f=$(( (n - 1) / 3 ))
mkdir -p "$dir"
ids=()
for i in $(seq 1 "$n"); do
  cat > "$dir/n$i.toml" <<TOML
[node]
name = "n$i"
data_dir = "$dir/n$i"
[store]
sqlite_path = "$dir/shared.db"
TOML
  ids+=("\"$("$bin" --config "$dir/n$i.toml" mesh id)\"")
done
members=$(IFS=,; echo "${ids[*]}")
for i in $(seq 1 "$n"); do
  printf '[mesh]\nf = %d\nmembers = [%s]\n' "$f" "$members" >> "$dir/n$i.toml"
done
first="/ip4/127.0.0.1/tcp/$port/p2p/$(echo "${ids[0]}" | tr -d '"')"
for i in $(seq 1 "$n"); do
  join=()
  [ "$i" -gt 1 ] && join=(--join "$first")
  "$bin" --config "$dir/n$i.toml" node --listen "/ip4/127.0.0.1/tcp/$((port + i - 1))" "${join[@]}" \
    > "$dir/n$i.log" 2>&1 &
  echo "n$i pid $! config $dir/n$i.toml"
  [ "$i" -eq 1 ] && sleep 1
done
echo "members: $members (f = $f)"
