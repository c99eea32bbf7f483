#!/usr/bin/env bash
# End to end: freshwatch (JSON split) against kcat reading the same 5M records, alternating, plus
# tail mode's CPU cost. Environment: RECORDS (5000000), PARTITIONS (512), ROUNDS (3), TAIL_SECONDS.
set -euo pipefail
cd "$(dirname "$0")/.."
command -v kcat >/dev/null || { echo "kcat not found: run scripts/setup (apt-get install kcat)" >&2; exit 1; }
cargo build --quiet --release --bin freshwatch --example mock_broker
exec python3 bench/e2e.py
