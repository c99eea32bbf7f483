#!/usr/bin/env bash
# A million tenants: RSS, VmHWM, /metrics size and API latency of the release binary against
# Tansu (a separate broker) and Redis. Environment: KEYS ("5000 1000000"), KEEP (keep the files).
set -euo pipefail
cd "$(dirname "$0")/.."
for tool in redis-server; do
  command -v "$tool" >/dev/null || { echo "$tool not found: run scripts/setup" >&2; exit 1; }
done
cargo build --quiet --release --bin freshwatch --example produce_keys
exec python3 bench/cardinality.py
