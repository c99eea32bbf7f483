#!/usr/bin/env bash
# Scale figures: RSS per series at 1M keys, tick time, Redis flush rate. Starts its own Redis.
set -euo pipefail
cd "$(dirname "$0")/.."
command -v redis-server >/dev/null || { echo "redis-server not found: run scripts/setup" >&2; exit 1; }
keys="${1:-1000000}"
dir="$(mktemp -d)"
port="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
redis-server --port "$port" --bind 127.0.0.1 --dir "$dir" --save "" --appendonly no --daemonize no >"$dir/redis.log" 2>&1 &
redis_pid=$!
trap 'kill "$redis_pid" 2>/dev/null; rm -rf "$dir"' EXIT
until redis-cli -p "$port" ping >/dev/null 2>&1; do sleep 0.1; done
cargo run --quiet --release --example scale -- "$keys" "redis://127.0.0.1:$port/0"
