#!/usr/bin/env bash
# A million tenants: RSS, VmHWM, /metrics size and API latency of the release binary against
# Tansu (a separate broker) and Redis. Environment: KEYS ("5000 1000000"), KEEP (keep the files),
# MALLOC_ARENA_MAX (2, as deployed), THRESHOLDS (fixed, learned or learned_by_hour).
set -euo pipefail
cd "$(dirname "$0")/.."
for tool in redis-server; do
  command -v "$tool" >/dev/null || { echo "$tool not found: run scripts/setup" >&2; exit 1; }
done
# As the Dockerfile and the kustomize base run it; MALLOC_ARENA_MAX= (empty) for glibc's default.
export MALLOC_ARENA_MAX="${MALLOC_ARENA_MAX-2}"
cargo build --quiet --release --bin freshwatch --example produce_keys
exec python3 bench/cardinality.py
