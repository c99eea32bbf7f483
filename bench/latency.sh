#!/usr/bin/env bash
# Alert latency: threshold crossing to Alertmanager holding the alert, p50/p99 over KEYS (300)
# crossings spread across the evaluation phase. Environment: KEYS, INTERVAL (1), SPREAD_SECONDS.
set -euo pipefail
cd "$(dirname "$0")/.."
for binary in kcat prometheus-alertmanager; do
  command -v "$binary" >/dev/null || { echo "$binary not found: run scripts/setup" >&2; exit 1; }
done
cargo build --quiet --release --bin freshwatch --example mock_broker
exec python3 bench/latency.py
