#!/usr/bin/env bash
# CPU per record, freshwatch against kcat on the same topic in the same run, alternating.
# Environment: RECORDS (5000000), PARTITIONS (512), ROUNDS (5), FRESHWATCH_BIN, KAFKA_PROPERTIES.
set -euo pipefail
cd "$(dirname "$0")/.."
command -v kcat >/dev/null || { echo "kcat not found: run scripts/setup (apt-get install kcat)" >&2; exit 1; }
cargo build --quiet --release --bin freshwatch --example mock_broker
exec python3 bench/cpu.py
